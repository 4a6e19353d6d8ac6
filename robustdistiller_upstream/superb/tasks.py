"""The 12 downstream tasks of the RobustDistiller evaluation and how the stock s3prl experts see their data.

Each ``TaskSpec`` names the s3prl downstream expert and our config, the metric the stock expert prints in
``-m evaluate`` (a regex over the runner's output), the config key that points at the test data, and which
parts of the test data a noisy condition replaces (``test_parts``: paths relative to that folder; ``"."`` is
the whole folder). Everything else under the folder stays the clean original (linked), because most experts
build their train/dev datasets even in evaluate mode (DESIGN 5).
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.superb.prepare import prepare_asr, prepare_asv, prepare_er, prepare_pr, prepare_sf

_NUMBER = r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"


_REQUIRED = object()


def get_key(config: Mapping[str, Any], dotted: str, where: str, default: Any = _REQUIRED) -> Any:
    """``config["a"]["b"]`` for ``"a.b"``; a missing key is ``default``, without one a ``ConfigError`` naming
    ``where``."""
    node: Any = config
    for name in dotted.split("."):
        if not isinstance(node, Mapping) or name not in node:
            if default is not _REQUIRED:
                return default
            raise ConfigError(f"{where}: key {dotted!r} missing")
        node = node[name]
    return node


def set_key(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Sets ``config["a"]["b"] = value`` for ``"a.b"`` (sections created as needed)."""
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
        node = node.setdefault(name, {})
    node[leaf] = value


def _whole(_: Mapping[str, Any], __: Path) -> list[str]:
    return ["."]


def _listed(key: str) -> Callable[[Mapping[str, Any], Path], list[str]]:
    """Split folders named by a list-valued config key (LibriSpeech-style ``test: [test-clean]``)."""

    def parts(expert: Mapping[str, Any], _: Path) -> list[str]:
        value = get_key(expert, key, "downstream_expert")
        return [value] if isinstance(value, str) else list(value)

    return parts


def _fluent_commands(_: Mapping[str, Any], root: Path) -> list[str]:
    with open(root / "data" / "test_data.csv", newline="") as f:
        return sorted({row["path"] for row in csv.DictReader(f)})


def _voxceleb1_sid(expert: Mapping[str, Any], root: Path) -> list[str]:
    # veri_test_class.txt / iden_split.txt: "3 id10270/5r0dWxy17C8/00001.wav" (3 = test); audio in */wav/
    meta = Path(get_key(expert, "datarc.meta_data", "downstream_expert"))
    parts = set()
    for line in meta.read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "3":
            parts.update(p.relative_to(root).as_posix() for p in root.glob(f"*/wav/{fields[1]}"))
    return sorted(parts)


def _iemocap(expert: Mapping[str, Any], _: Path) -> list[str]:
    datarc = get_key(expert, "datarc", "downstream_expert")
    fold = str(datarc.get("test_fold", "fold1")).replace("fold", "Session")
    meta = Path(datarc["meta_data"]) / fold / "test_meta_data.json"
    return sorted({entry["path"] for entry in json.loads(meta.read_text())["meta_data"]})


def _snips(expert: Mapping[str, Any], root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for split in get_key(expert, "corpus.test", "downstream_expert")
                  for p in (root / split).rglob("*.wav"))


def _quesst14(_: Mapping[str, Any], root: Path) -> list[str]:
    # "quesst14Database/Audio/quesst14_00001.wav nnenglish": the expert drops the first folder and reads English only
    parts = set()
    for lst in ("language_key_utterances.lst", "language_key_eval.lst"):
        for line in (root / "scoring" / lst).read_text().splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[1] == "nnenglish":
                parts.add(fields[0].split("/", 1)[-1])
    return sorted(parts)


QUESST_SCORER = "scoring/score-TWV-Cnxe.sh"


def _quesst14_scorer(expert: Mapping[str, Any]) -> None:
    """QbE's MTWV comes from the scorer only QUESST 2014 ships (its ``score-TWV-Cnxe.sh`` runs MediaEval's Java
    tool ``MediaEvalQUESST2014.jar``): without it, or without ``java`` for it, the runs could not be scored."""
    script = Path(get_key(expert, "datarc.dataset_root", "downstream_expert")) / QUESST_SCORER
    if not script.is_file():
        raise ConfigError(f"{script} not found: QbE's MTWV comes from the NIST/MediaEval scorer that only the QUESST "
                          f"2014 download ships (score-TWV-Cnxe.sh + MediaEvalQUESST2014.jar); the runner alone "
                          f"writes benchmark.stdlist.xml but no metric")
    if ".jar" in script.read_text(errors="replace") and shutil.which("java") is None:
        raise ConfigError(f"{script} runs a Java tool (MediaEvalQUESST2014.jar) and there is no java on PATH "
                          f"(Debian: apt-get install default-jre-headless)")


def _voxceleb1_test(_: Mapping[str, Any], __: Path) -> list[str]:
    return ["test"]  # the expert reads <file_path>/test/wav/<pair paths>


def _scp_dirs(expert: Mapping[str, Any], _: Path) -> list[str]:
    # enhancement/separation: only the input side ("noisy", "mix_clean") is contaminated, targets stay clean
    return list(get_key(expert, "datarc.src", "downstream_expert"))


@dataclass(frozen=True)
class Metric:
    """A number the stock expert prints in ``-m evaluate``: ``pattern`` (a regex with group ``value``, the last
    match counts) times ``scale`` (1 or 100 for fractions shown in %)."""

    name: str
    pattern: str
    higher_better: bool
    scale: float = 1.0


@dataclass(frozen=True)
class TaskSpec:
    """One downstream task: expert, config, metrics (the first is the task's score) and its test data."""

    name: str
    title: str
    downstream: str
    config: str
    dataset: str
    metrics: tuple[Metric, ...]
    evaluate_split: str
    test_key: str
    test_parts: Callable[[Mapping[str, Any], Path], list[str]]
    layout: str
    trains: bool = True
    needs_s3prl_dir: bool = False
    # derives missing data files into a cache folder and points the config there (before training)
    prepare: Optional[Callable[[dict[str, Any], Path], None]] = None
    # cross-validation folds (ER: IEMOCAP's 5 sessions, each the test set once; the score is their mean)
    folds: int = 0
    # raises ConfigError naming what the dataset lacks that the runs need beyond the test data (planning time)
    check: Optional[Callable[[Mapping[str, Any]], None]] = None

    @property
    def metric(self) -> Metric:
        return self.metrics[0]


def _printed(split: str, key: str) -> str:
    """The ``print(f"{split} {key}: {value}")`` line of the stock utterance-level and ctc experts."""
    return rf"^{split} {key}: {_NUMBER}\s*$"


def _acc() -> tuple[Metric, ...]:
    return (Metric("Acc", _printed("test", "acc"), True, 100.0),)


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("PR", "phoneme recognition", "ctc", "pr.yaml", "LibriSpeech",
                 (Metric("PER", _printed("test", "per"), False, 100.0),), "test", "corpus.path",
                 _listed("corpus.test"),
                 "LibriSpeech/{train-clean-100,dev-clean,test-clean}/SPK/CH/*.flac + *.trans.txt; lexicons from "
                 "S3PRL_DIR or PR_LEXICON; phoneme.txt written when missing", prepare=prepare_pr),
        TaskSpec("KS", "keyword spotting", "speech_commands", "ks.yaml", "Speech Commands v0.01", _acc(), "test",
                 "datarc.speech_commands_test_root", _whole,
                 "speech_commands_v0.01/WORD/*.wav (+ _background_noise_/), speech_commands_test_set_v0.01/WORD/*.wav"),
        TaskSpec("IC", "intent classification", "fluent_commands", "ic.yaml", "Fluent Speech Commands", _acc(),
                 "test", "datarc.file_path", _fluent_commands,
                 "fluent_speech_commands_dataset/data/{train,valid,test}_data.csv + wavs/speakers/SPK/*.wav"),
        TaskSpec("SID", "speaker identification", "voxceleb1", "sid.yaml", "VoxCeleb1", _acc(), "test",
                 "datarc.file_path", _voxceleb1_sid,
                 "VoxCeleb1/{dev,test}/wav/idXXXXX/VIDEO/*.wav + iden_split.txt"),
        TaskSpec("ER", "emotion recognition", "emotion", "er.yaml", "IEMOCAP (5 folds)", _acc(), "test",
                 "datarc.root", _iemocap,
                 "IEMOCAP_full_release/SessionN/{sentences/wav,dialog/EmoEvaluation}/...; meta_data/SessionN/*.json "
                 "derived when missing", prepare=prepare_er, folds=5),
        TaskSpec("ASR", "speech recognition", "asr", "asr.yaml", "LibriSpeech",
                 (Metric("WER", _printed("test-clean", "wer"), False),), "test-clean", "datarc.libri_root",
                 _listed("datarc.test-clean"),
                 "LibriSpeech/... (as PR); len_for_bucket/*.csv and char.dict are derived when missing",
                 prepare=prepare_asr),
        TaskSpec("QbE", "query by example", "quesst14_dtw", "qbe.yaml", "QUESST 2014",
                 (Metric("MTWV", rf"maxTWV:?\s*{_NUMBER}", True),), "eval", "datarc.dataset_root", _quesst14,
                 "quesst14Database/{Audio,dev_queries,eval_queries}/*.wav + scoring/ (NIST scoring scripts)",
                 trains=False, check=_quesst14_scorer),
        TaskSpec("SF", "slot filling", "ctc", "sf.yaml", "Audio SNIPS",
                 (Metric("SlotF1", _printed("test", "slot_type_f1"), True, 100.0),
                  Metric("SlotCER", _printed("test", "slot_value_cer"), False, 100.0)), "test", "corpus.path",
                 _snips, "SNIPS/{train,valid,test}/*.wav + all.iob.snips.txt + slots.txt; character.txt written "
                 "when missing", prepare=prepare_sf),
        TaskSpec("ASV", "speaker verification", "sv_voxceleb1", "asv.yaml", "VoxCeleb1",
                 (Metric("EER", rf"^sv-voxceleb1/test-EER: {_NUMBER}\s*$", False, 100.0),), "test",
                 "datarc.file_path", _voxceleb1_test,
                 "VoxCeleb1/{dev,test}/wav/... + voxceleb1_test_v2.txt; dev lists derived when missing",
                 prepare=prepare_asv),
        TaskSpec("SD", "speaker diarization", "diarization", "sd.yaml", "LibriMix (Libri2Mix)",
                 (Metric("DER", rf"^mode test acc \S+ der {_NUMBER}\s*$", False, 100.0),), "test",
                 "loaderrc.test_dir", _whole,
                 "Kaldi data dirs {train,dev,test}/{wav.scp,segments,utt2spk,reco2dur,rttm} (s3prl SD recipe)"),
        TaskSpec("SE", "speech enhancement", "enhancement_stft", "se.yaml", "VoiceBank-DEMAND",
                 (Metric("PESQ", rf"^Average pesq of \d+ utts is {_NUMBER}\s*$", True),
                  Metric("STOI", rf"^Average stoi of \d+ utts is {_NUMBER}\s*$", True, 100.0),
                  Metric("SI-SDRi", rf"^Average si_sdr of \d+ utts is {_NUMBER}\s*$", True)), "test",
                 "loaderrc.test_dir", _scp_dirs,
                 "wav16k/{train,dev,test}/{noisy,clean}/wav.scp (s3prl scripts/Voicebank/data_prepare.py)"),
        TaskSpec("SS", "source separation", "separation_stft", "ss.yaml", "Libri2Mix (min, 16 kHz)",
                 # the expert prints the SI-SDR improvement as "si_sdr"
                 (Metric("SI-SDRi", rf"^Average si_sdr of \d+ utts: {_NUMBER}\s*$", True),
                  Metric("PESQ", rf"^Average pesq of \d+ utts: {_NUMBER}\s*$", True),
                  Metric("STOI", rf"^Average stoi of \d+ utts: {_NUMBER}\s*$", True, 100.0)), "test",
                 "loaderrc.test_dir", _scp_dirs,
                 "separation_stft/Libri2Mix/wav16k/min/{train-100,dev,test}/{mix_clean,s1,s2}/wav.scp "
                 "(s3prl separation_stft/scripts/LibriMix/data_prepare.py; wav.scp names the Libri2Mix wavs)"),
    ]
}


class _Recording(Mapping[str, Any]):
    """A read-only view of a config section that notes in ``reads`` each dotted key whose value (not a section)
    was read through it."""

    def __init__(self, node: Mapping[str, Any], reads: set[str], prefix: str = "") -> None:
        self._node, self._reads, self._prefix = node, reads, prefix

    def __getitem__(self, name: str) -> Any:
        if name not in self._node:  # a missing key is read too: its default decides
            self._reads.add(self._prefix + name)
        value = self._node[name]
        if isinstance(value, Mapping):
            return _Recording(value, self._reads, f"{self._prefix}{name}.")
        self._reads.add(self._prefix + name)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._node

    def __iter__(self) -> Iterator[str]:
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)


def read_test_parts(spec: TaskSpec, expert: Mapping[str, Any], root: Path) -> tuple[list[str], list[str]]:
    """``spec.test_parts(expert, root)`` and the dotted ``expert`` keys it read (``corpus.test``): the keys that
    decide which files the expert reads as its test set."""
    reads: set[str] = set()
    parts = spec.test_parts(_Recording(expert, reads), root)
    return parts, sorted(reads)


def resolve_tasks(names: str) -> list[TaskSpec]:
    """``"all"`` or a comma list (``"KS,IC"``, case-insensitive) -> specs in the canonical order."""
    if names.strip().lower() == "all":
        return list(TASKS.values())
    by_lower = {name.lower(): spec for name, spec in TASKS.items()}
    wanted = [n.strip().lower() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_lower]
    if unknown or not wanted:
        raise ConfigError(f"--tasks {names!r}: unknown task(s) {unknown}; known: {list(TASKS)} or 'all'")
    return [spec for name, spec in TASKS.items() if name.lower() in wanted]
