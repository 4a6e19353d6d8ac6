"""Task data files the PyPI s3prl lacks but that follow from the dataset itself (DESIGN 5).

ASR (``asr`` expert) needs ``len_for_bucket/<split>.csv`` (s3prl's ``preprocess/generate_len_for_bucket.py``:
``file_path`` relative to the LibriSpeech root, ``length`` in samples) and a fairseq character dictionary
(``char.dict``: ``CHAR COUNT`` lines, most frequent first, ``|`` for the word boundary). When the configured files
do not exist they are derived from the LibriSpeech tree into a cache folder and the config is pointed there.

PR and SF (``ctc`` expert) need s3prl's token vocabularies, fixed lists written here when the configured file is
missing (byte for byte s3prl's ``ctc/vocab/phoneme.txt``: ``SIL SPN`` then the 69 ARPAbet phonemes with vowel
stress, sorted; ``ctc/vocab/character.txt``: space, ``A``-``Z``, apostrophe). PR's lexicons cannot be derived:
a missing one is an error naming the key.

ER (``emotion``) needs s3prl's per-session meta data JSONs: derived with s3prl's own ``IEMOCAP_preprocess`` from
the dataset's labels. ASV (``sv_voxceleb1``) opens two dev lists that nothing scores: derived from ``dev/wav``.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from robustdistiller_upstream.audio import audio_info
from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.files import atomic_output, write_text_atomic

log = logging.getLogger(__name__)

_VOWELS = "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split()
_CONSONANTS = "B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split()
PHONEMES = ["SIL", "SPN", *sorted(_CONSONANTS + [v + stress for v in _VOWELS for stress in "012"])]
CHARACTERS = [" ", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "'"]


def write_bucket_csv(libri_root: Path, split: str, path: Path) -> int:
    """``path``: ``file_path,length`` of every ``<split>/**/*.flac`` under ``libri_root``; returns the row count."""
    files = sorted((libri_root / split).rglob("*.flac"))
    if not files:
        raise ConfigError(f"{libri_root / split}: no .flac files (LibriSpeech layout expected)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_path", "length"])
        for file in tqdm(files, desc=f"lengths of {split}", unit="file"):
            writer.writerow([file.relative_to(libri_root).as_posix(), audio_info(file)[0]])
    tmp.replace(path)
    return len(files)


def char_counts(libri_root: Path, splits: list[str]) -> Counter:
    """Character counts of the transcripts (upper case, ``|`` between and after words, as the asr expert
    tokenises them)."""
    counts: Counter = Counter()
    for split in splits:
        for trans in sorted((libri_root / split).rglob("*.trans.txt")):
            for line in trans.read_text().splitlines():
                words = line.split()[1:]
                counts.update("|".join(words).upper() + "|")
    if not counts:
        raise ConfigError(f"{libri_root}: no *.trans.txt under {splits}")
    return counts


def prepare_asr(config: dict[str, Any], cache: Path) -> None:
    """Fills ``datarc.bucket_file`` / ``datarc.dict_path`` of an ``asr`` config with derived files when the
    configured ones are missing (``cache``: where to write them; reused when present)."""
    datarc = config["downstream_expert"]["datarc"]
    libri_root = Path(datarc["libri_root"])
    keys = ("train", "dev-clean", "dev-other", "test-clean", "test-other")
    splits = [split for key in keys for split in datarc.get(key, [])]
    if not Path(datarc["bucket_file"]).is_dir():
        buckets = cache / "len_for_bucket"
        for split in dict.fromkeys(splits):
            if not (buckets / f"{split}.csv").is_file() and (libri_root / split).is_dir():
                log.info("ASR: %d lengths of %s -> %s", write_bucket_csv(libri_root, split, buckets / f"{split}.csv"),
                         split, buckets)
        datarc["bucket_file"] = str(buckets)
    if not Path(datarc.get("dict_path", "")).is_file():
        path = cache / "char.dict"
        if not path.is_file():
            counts = char_counts(libri_root, list(datarc["train"]))
            tmp = path.with_suffix(".tmp")
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            tmp.write_text("".join(f"{char} {n}\n" for char, n in ranked))
            tmp.replace(path)
        datarc["dict_path"] = str(path)


def _vocabulary(text: dict[str, Any], tokens: list[str], cache: Path, task: str) -> None:
    """Points ``text.vocab_file`` at ``cache/<name>`` holding ``tokens`` (one a line) when the configured file is
    missing."""
    configured = Path(text["vocab_file"])
    if configured.is_file():
        return
    path = cache / configured.name
    if not path.is_file():
        write_text_atomic(path, "\n".join(tokens))
    log.info("%s: %s not found, using s3prl's vocabulary written to %s", task, configured, path)
    text["vocab_file"] = str(path)


def prepare_pr(config: dict[str, Any], cache: Path) -> None:
    """PR (``ctc``, libriphone): the phoneme vocabulary when missing; the lexicon files must exist."""
    expert = config["downstream_expert"]
    lexicon = expert["corpus"]["lexicon"]
    files = [lexicon] if isinstance(lexicon, str) else list(lexicon)
    missing = [f for f in files if not Path(f).is_file()]
    if missing or not files:
        raise ConfigError(f"PR: downstream_expert.corpus.lexicon: {missing or 'no files'} not found (s3prl's "
                          f"ctc/lexicon/*.txt from an s3prl checkout, or PR_LEXICON: files of WORD<TAB>PHONEMES lines)")
    expert["corpus"]["lexicon"] = files
    _vocabulary(expert["text"], PHONEMES, cache, "PR")


def prepare_sf(config: dict[str, Any], cache: Path) -> None:
    """SF (``ctc``, snips): the character vocabulary when missing; ``slots.txt`` comes with Audio SNIPS."""
    text = config["downstream_expert"]["text"]
    if not Path(text["slots_file"]).is_file():
        raise ConfigError(f"SF: downstream_expert.text.slots_file {text['slots_file']} not found (Audio SNIPS ships "
                          f"slots.txt beside all.iob.snips.txt)")
    _vocabulary(text, CHARACTERS, cache, "SF")


def prepare_er(config: dict[str, Any], cache: Path) -> None:
    """ER (``emotion``): when ``datarc.meta_data`` lacks the per-session JSONs, builds them into ``cache/meta_data``
    with s3prl's own ``emotion/IEMOCAP_preprocess.preprocess`` (in the PyPI wheel) from the dataset's
    ``SessionN/dialog/EmoEvaluation/*.txt`` labels, as its ``main()`` would inside the dataset folder: per session,
    ``train_meta_data.json`` (the other sessions) and ``test_meta_data.json`` (this one)."""
    datarc = config["downstream_expert"]["datarc"]
    root = Path(datarc["root"])
    sessions = sorted(p.name for p in root.glob("Session*") if p.is_dir()) if root.is_dir() else []
    if all((Path(datarc["meta_data"]) / s / "test_meta_data.json").is_file() for s in sessions or ["Session1"]):
        return
    if not sessions:
        raise ConfigError(f"ER: datarc.root {root}: no SessionN folders (IEMOCAP_full_release layout expected)")
    # it cuts each path at its first "Session": a root whose own path holds that word would give wrong paths
    if "Session" in str(root.resolve()):
        raise ConfigError(f"ER: datarc.root {root}: s3prl's IEMOCAP_preprocess cuts paths at the first 'Session', "
                          f"so the folder above the sessions may not contain that word; move it or pass ER_META")
    from s3prl.downstream.emotion.IEMOCAP_preprocess import preprocess

    out = cache / "meta_data"
    for i, session in enumerate(sessions):
        for name, part in (("train_meta_data.json", sessions[:i] + sessions[i + 1:]), ("test_meta_data.json",
                                                                                     [session])):
            if not (out / session / name).is_file():
                with atomic_output(out / session / name) as tmp:
                    preprocess(str(root), part, str(tmp))
    log.info("ER: %s has no meta data, derived per session into %s", datarc["meta_data"], out)
    datarc["meta_data"] = str(out)


def prepare_asv(config: dict[str, Any], cache: Path) -> None:
    """ASV (``sv_voxceleb1``): the stock expert opens ``datarc.train_meta_data`` (never read: training takes every
    speaker folder of ``dev/wav``) and ``datarc.dev_meta_data`` (dev trials, scored only with a dev evaluation,
    which our config leaves off: the stock expert scores dev with the test trials); when missing, they are written
    from ``dev/wav`` in s3prl's formats (speaker ids; ``LABEL PATH PATH`` pairs, one same- and one other-speaker
    trial per speaker). The test trial list must exist. Also writes the expert's length cache of ``dev/wav``
    (``asv_lengths``) into ``cache/lengths/``, where ``superb.launch`` points the expert."""
    datarc = config["downstream_expert"]["datarc"]
    if not Path(datarc["test_meta_data"]).is_file():
        raise ConfigError(f"ASV: datarc.test_meta_data {datarc['test_meta_data']} not found (VoxCeleb1's trial list, "
                          f"s3prl's sv_voxceleb1/voxceleb1_test_v2.txt: put it in the VoxCeleb1 folder or set "
                          f"ASV_TRIALS)")
    dev = Path(datarc["file_path"]) / "dev" / "wav"
    utterances = {d.name: sorted(p.relative_to(dev).as_posix() for p in d.rglob("*.wav"))
                  for d in sorted(dev.iterdir()) if d.is_dir()} if dev.is_dir() else {}
    if len(utterances) < 2 or min(map(len, utterances.values())) < 2:
        raise ConfigError(f"ASV: {dev}: expected speaker folders (idXXXXX/VIDEO/*.wav) of two utterances or more")
    ids = list(utterances)
    files = {"train_meta_data": "".join(f"{s}\n" for s in ids),
             "dev_meta_data": "".join(f"1 {utterances[s][0]} {utterances[s][1]}\n0 {utterances[s][0]} "
                                      f"{utterances[ids[(i + 1) % len(ids)]][0]}\n" for i, s in enumerate(ids))}
    for key, text in files.items():
        if not Path(datarc[key]).is_file():
            path = cache / f"{key}.txt"
            if not path.is_file():
                write_text_atomic(path, text)
            log.info("ASV: %s %s not found, derived from %s into %s", key, datarc[key], dev, path)
            datarc[key] = str(path)
    asv_lengths(dev, cache / ASV_LENGTHS)


ASV_LENGTHS = "lengths"


def asv_lengths(dev: Path, folder: Path) -> Path:
    """``folder/.wav_lengths/Voxceleb1_length.pt`` as the stock ``SpeakerVerifi_train`` writes it: ``[tags,
    lengths]``, the last three path parts of every audio file under ``dev`` and its length in samples after the
    expert's sox effects (silence trimming). The stock expert makes it with 12 worker processes in each runner start
    whose cache is empty (per run here: its own cache ignores the folder, ``superb.launch``); that pool took 166 s
    for 16 files on a loaded 2-core machine, one process 1.4 s. Made here once per ``dev`` folder (``source.txt``)."""
    path, source = folder / ".wav_lengths" / "Voxceleb1_length.pt", folder / "source.txt"
    if path.is_file() and source.is_file() and source.read_text() == str(dev.resolve()):
        return path
    import torch
    from librosa.util import find_files
    from s3prl.downstream.sv_voxceleb1 import dataset as expert  # its own trimming: the function and effects it uses

    files = find_files(str(dev))
    lengths = [expert.apply_effects_file(f, expert.EFFECTS)[0].squeeze(0).shape[0]
               for f in tqdm(files, desc="ASV lengths")]
    with atomic_output(path) as tmp:
        torch.save([[Path(f).parts[-3:] for f in files], lengths], tmp)
    write_text_atomic(source, str(dev.resolve()))
    return path
