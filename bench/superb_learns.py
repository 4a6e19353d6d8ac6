"""Every SUPERB task learns, measured: the twelve tasks trained through ``run_superb.sh`` and the stock s3prl runner
on generated spoken corpora (``demo.superb_corpora``, espeak-ng speech, larger than the tests'), with
``fbank_no_cmvn`` as the upstream, each test set evaluated clean and under white noise at 5 dB.

For each task the bench computes the metric's trivial baseline on the same test data and prints, per task: the
baseline, the clean and the white-5-dB scores, whether the clean score beats the baseline by the task's margin
(``GOALS``), whether the noisy one is worse than the clean one, and which checkpoint was evaluated. Baselines:

- KS, IC, SID, ER: the accuracy of always answering the test set's most frequent class (chance when balanced);
- PR, ASR: the PER/WER of the better of an empty output (100%) and the most frequent training transcript
  (s3prl's ``ctc.metric``); SF: the slot-type F1 of the best constant training sentence (an empty output: 0);
- ASV: EER 50%; SD: the DER of one speaker everywhere (10 ms frames of the test RTTMs, the better mapping);
- SE: the PESQ of the unprocessed noisy input (``asteroid.metrics``, as the expert computes it); SS: SI-SDRi 0;
- QbE (no training: DTW on the upstream's features): the 99th percentile of 4,000 random-score controls on the
  same trials (``superb.twv.random_control``); the bench also prints the mean average precision of each query's
  document ranking next to a random ranking's, which shows what DTW finds apart from TWV's single threshold.

The downstream models are shrunk with ``-o`` (``OVERRIDES``) so that all twelve train on 2 CPU cores within an
hour: this proves that each task's pipeline learns, not SUPERB numbers. Not a test (``.ci/run`` keeps the short
runs). Tasks run two at a time (``--launcher local-submitit --max-parallel``), one thread each.

Run: ``.venv/bin/python bench/superb_learns.py [--work DIR] [--tasks all] [--parallel 2]`` (the stock stack: KS,
QbE and ASV need ``torchaudio.sox_effects``). A rerun on the same ``--work`` reuses the corpora and the finished
results (the sweep's resume); a new folder measures the time from scratch.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from machine import cpu_model
from robustdistiller_upstream.audio import read_audio
from robustdistiller_upstream.demo import corpus as demo_corpus
from robustdistiller_upstream.demo import superb_corpora as corpora
from robustdistiller_upstream.superb import twv

REPO = Path(__file__).resolve().parents[1]
TASKS = ("KS", "IC", "SID", "ER", "ASV", "SD", "PR", "ASR", "SF", "SE", "SS", "QbE")
CONDITIONS = """\
conditions:
  clean: {spec: clean, seed: 0}
  white_snr5: {spec: "noise:white:snr=5", seed: 0}
"""


def _runner(steps: int, evals: int = 4, lr: float | None = 1.0e-3) -> list[str]:
    """Overrides of every task's runner: ``steps`` updates, ``evals`` dev evaluations (the best one is tested)."""
    every = steps // evals
    return [f"runner.total_steps={steps}", f"runner.eval_step={every}", f"runner.save_step={every}",
            f"runner.log_step={every}", "runner.gradient_accumulate_steps=1",
            *([f"optimizer.lr={lr}"] if lr is not None else [])]


# per task: the runner (steps, learning rate) and the shrunk downstream model (-o TASK:KEY=VALUE)
TASK_OVERRIDES: dict[str, list[str]] = {
    "KS": [*_runner(1000), "downstream_expert.datarc.batch_size=32"],
    "IC": [*_runner(800), "downstream_expert.datarc.train_batch_size=16"],
    "SID": [*_runner(2000), "downstream_expert.datarc.train_batch_size=8"],
    "ER": [*_runner(600), "downstream_expert.datarc.train_batch_size=8"],
    "ASV": [*_runner(600, evals=1), "downstream_expert.datarc.train_batch_size=8",
            "downstream_expert.datarc.vad_config.min_sec=16000",  # our 2-4 s utterances (SUPERB: 2 s)
            "downstream_expert.modelrc.module_config.XVector.agg_dim=256"],
    "SD": [*_runner(800), "downstream_expert.loaderrc.train_batchsize=8", "downstream_expert.modelrc.hidden_size=128"],
    "PR": [*_runner(1500, lr=None), "downstream_expert.corpus.batch_size=8"],  # SUPERB's linear head, lr 1e-2
    "ASR": [*_runner(1500), "downstream_expert.datarc.train_batch_size=8", "downstream_expert.datarc.batch_size=8",
            "downstream_expert.modelrc.project_dim=128", "downstream_expert.modelrc.RNNs.dim=[128,128]"],
    "SF": [*_runner(1000), "downstream_expert.corpus.batch_size=8", "downstream_expert.model.project_dim=128",
           "downstream_expert.model.RNNs.dim=[128,128]"],
    "SE": [*_runner(600), "downstream_expert.loaderrc.train_batchsize=8", "downstream_expert.modelrc.hidden_size=128",
           "downstream_expert.modelrc.rnn_layers=2"],
    "SS": [*_runner(600), "downstream_expert.loaderrc.train_batchsize=8", "downstream_expert.modelrc.hidden_size=128",
           "downstream_expert.modelrc.rnn_layers=2"],
    "QbE": ["downstream_expert.max_workers=1"],
}
OVERRIDES = [f"{task}:{override}" for task, overrides in TASK_OVERRIDES.items() for override in overrides]


@dataclass(frozen=True)
class Goal:
    """The task's score (``result.json``'s metric), its direction and the margin by which the clean score must beat
    the trivial baseline."""

    metric: str
    higher: bool
    margin: float
    unit: str


GOALS = {
    **{task: Goal("Acc", True, 10.0, "points") for task in ("KS", "IC", "SID", "ER")},
    "PR": Goal("PER", False, 10.0, "points"), "ASR": Goal("WER", False, 10.0, "points"),
    "SF": Goal("SlotF1", True, 10.0, "points"), "ASV": Goal("EER", False, 10.0, "points"),
    "SD": Goal("DER", False, 5.0, "points"), "SE": Goal("PESQ", True, 0.05, ""), "SS": Goal("SI-SDRi", True, 1.0, "dB"),
    "QbE": Goal("MTWV", True, 0.0, ""),  # above the random controls' 99th percentile
}


# ---- corpora ------------------------------------------------------------------------------------------------------

def write_data(data: Path) -> Path:
    """Writes every task's corpus into ``data`` (once: ``data/ready.json``), and ``conditions.yaml``; returns the
    PR lexicon."""
    lexicon = data / "librispeech-lexicon.txt"
    if (data / "ready.json").exists():
        return lexicon
    start = time.monotonic()
    writers: list[tuple[str, Callable[[], object]]] = [
        ("KS", lambda: demo_corpus.write_speech_commands(data, n_train_speakers=24, n_test_speakers=6)),
        ("IC", lambda: demo_corpus.write_fluent_commands(data, 24, 4, 6)),
        ("SID/ASV", lambda: corpora.write_voxceleb1(data, n_dev_speakers=16, n_test_speakers=8, n_utts=12)),
        ("ER", lambda: corpora.write_iemocap(data, n_sentences=4)),
        ("SD", lambda: corpora.write_diarization(data, {"train": 48, "dev": 4, "test": 8})),
        ("PR/ASR", lambda: corpora.write_librispeech_asr_pr(data, n_speakers=6, n_utterances=30)),
        ("SF", lambda: corpora.write_snips(data, corpora.SNIPS_ALL_SPEAKERS)),
        ("SE", lambda: corpora.write_voicebank(data, per_speaker=24)),
        ("SS", lambda: corpora.write_libri2mix(data, {"train-100": 64, "dev": 4, "test": 8})),
        ("QbE", lambda: corpora.write_quesst14(data, repeats=4, cut_queries=True, floor_snr_db=40.0)),
    ]
    for name, write in writers:
        print(f"writing the {name} corpus", flush=True)
        write()
    (data / "conditions.yaml").write_text(CONDITIONS)
    (data / "ready.json").write_text(json.dumps({"seconds": round(time.monotonic() - start, 1)}))
    return lexicon


# ---- trivial baselines --------------------------------------------------------------------------------------------

def _majority(labels: list[object]) -> float:
    """Accuracy (%) of always answering the most frequent of ``labels``."""
    return 100.0 * collections.Counter(labels).most_common(1)[0][1] / len(labels)


def _ks(data: Path) -> float:
    test = data / "speech_commands_test_set_v0.01"
    return _majority([d.name for d in test.iterdir() if d.is_dir() for _ in d.glob("*.wav")])


def _ic(data: Path) -> float:
    with open(data / "fluent_speech_commands_dataset" / "data" / "test_data.csv", newline="") as f:
        return _majority([(r["action"], r["object"], r["location"]) for r in csv.DictReader(f)])


def _sid(data: Path) -> float:
    lines = (data / "VoxCeleb1" / "iden_split.txt").read_text().split("\n")
    return _majority([line.split()[1].split("/")[0] for line in lines if line.startswith("3 ")])


def _er(data: Path) -> float:  # fold 1 tests on Session 1; SUPERB's four classes
    labels = (data / "IEMOCAP_full_release" / "Session1" / "dialog" / "EmoEvaluation").glob("*.txt")
    found = [m.group(1) for f in labels for m in re.finditer(r"^\[.*?\]\t\S+\t(\w+)\t", f.read_text(), re.M)]
    return _majority([e for e in found if e in corpora.EMOTIONS])


def _transcripts(split: Path) -> list[list[str]]:
    return [line.split()[1:] for t in sorted(split.rglob("*.trans.txt")) for line in t.read_text().splitlines()]


def _error_rate(data: Path, tokens: Callable[[list[str]], list[str]]) -> float:
    """PER/WER (%) of the better constant output: empty (100%) or the most frequent training transcript."""
    from s3prl.downstream.ctc.metric import wer

    libri = data / "LibriSpeech"
    train = [" ".join(tokens(words)) for words in _transcripts(libri / "train-clean-100")]
    test = [" ".join(tokens(words)) for words in _transcripts(libri / "test-clean")]
    frequent = collections.Counter(train).most_common(1)[0][0]
    return min(100.0, 100.0 * wer([frequent] * len(test), test))


def _pr(data: Path) -> float:
    return _error_rate(data, lambda words: [p for w in words for p in corpora.LEXICON[w].split()])


def _asr(data: Path) -> float:
    return _error_rate(data, lambda words: words)


def _tagged(words: str, slots: str) -> str:
    """A SNIPS sentence as s3prl's SF metric parses it: ``B-slot value words E-slot`` around each slot's words."""
    out, previous = [], "O"
    for word, slot in zip(words.split(), slots.split()):
        if slot != previous and previous != "O":
            out.append(f"E-{previous}")
        if slot != previous and slot != "O":
            out.append(f"B-{slot}")
        out.append(word)
        previous = slot
    return " ".join(out + ([f"E-{previous}"] if previous != "O" else []))


def _sf(data: Path) -> float:  # every speaker says every sentence: the best constant sentence
    from s3prl.downstream.ctc.metric import slot_type_f1

    test = [_tagged(text, slots) for text, slots, _ in corpora.SNIPS_SENTENCES] * len(
        corpora.SNIPS_ALL_SPEAKERS["test"])
    return max(100.0 * slot_type_f1([_tagged(t, s)] * len(test), test) for t, s, _ in corpora.SNIPS_SENTENCES)


def _sd(data: Path) -> float:
    """DER (%) of one speaker active everywhere in each test recording, mapped to the speaker that maximises the
    correct time, on 10 ms frames: (miss + false alarm + confusion) / reference speaker time."""
    turns: dict[str, list[tuple[str, float, float]]] = collections.defaultdict(list)
    for line in (data / "diarization" / "test" / "rttm").read_text().splitlines():
        _, rec, _, start, length, _, _, speaker, *_ = line.split()
        turns[rec].append((speaker, float(start), float(length)))
    durations = dict(line.split() for line in (data / "diarization" / "test" / "reco2dur").read_text().splitlines())
    errors = reference = 0.0
    for rec, segments in turns.items():
        frames = int(round(float(durations[rec]) * 100))
        active = {s: np.zeros(frames, bool) for s, _, _ in segments}
        for speaker, start, length in segments:
            active[speaker][int(round(start * 100)):int(round((start + length) * 100))] = True
        n_ref = sum(a.astype(int) for a in active.values())
        correct = max(int(a.sum()) for a in active.values())  # one system speaker, mapped to one reference speaker
        # per frame: miss max(n_ref - 1, 0), false alarm max(1 - n_ref, 0), confusion min(n_ref, 1) - correct
        errors += np.maximum(n_ref - 1, 0).sum() + np.maximum(1 - n_ref, 0).sum() + np.minimum(n_ref, 1).sum() - correct
        reference += n_ref.sum()
    return 100.0 * errors / reference


def _se(data: Path) -> float:
    """PESQ of the unprocessed noisy test input against the clean speech (what the expert's ``input_pesq`` is)."""
    from asteroid.metrics import get_metrics

    test = data / "voicebank" / "wav16k" / "test"
    scp = {name: dict(line.split() for line in (test / name / "wav.scp").read_text().splitlines())
           for name in ("noisy", "clean")}
    values = []
    for utt, noisy_path in scp["noisy"].items():
        noisy, clean = read_audio(noisy_path)[0], read_audio(scp["clean"][utt])[0]
        values.append(get_metrics(noisy[None], clean[None], noisy[None], sample_rate=16000,
                                  metrics_list=["pesq"])["input_pesq"])
    return float(np.mean(values))


BASELINES: dict[str, Callable[[Path], float]] = {
    "KS": _ks, "IC": _ic, "SID": _sid, "ER": _er, "PR": _pr, "ASR": _asr, "SF": _sf, "SD": _sd, "SE": _se,
    "ASV": lambda data: 50.0, "SS": lambda data: 0.0,
}


def _qbe_trials(data: Path, run: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, documents)`` scores and occurrences of the QbE run folder ``run``."""
    scores, _, truth = twv.trials(run / "benchmark.stdlist.xml",
                                  data / "quesst14Database" / "scoring" / "groundtruth_quesst14_eval", -10.0)
    return scores, truth


def _qbe_baseline(data: Path, run: Path) -> float:
    """The 99th percentile of random-score controls of the clean QbE run's trials."""
    scores, truth = _qbe_trials(data, run)
    return float(np.quantile(twv.random_control(scores, truth, -10.0), 0.99))


def qbe_ranking(data: Path, sweep: Path) -> str:
    """The mean average precision of each QbE run's document ranking per query (what DTW finds, apart from TWV's
    one global threshold and its false-alarm weight), and that of a random ranking (the share of targets)."""
    found = []
    for condition in ("clean", "white_snr5"):
        if not (sweep / "QbE" / condition / "benchmark.stdlist.xml").exists():
            continue
        scores, truth = _qbe_trials(data, sweep / "QbE" / condition)
        precisions = []
        for query_scores, targets in zip(scores, truth):
            hits = targets[np.argsort(-query_scores, kind="stable")]
            if hits.any():
                precisions.append(float((np.cumsum(hits) / np.arange(1, len(hits) + 1))[hits].mean()))
        found.append(f"{condition} {np.mean(precisions):.3f}")
    chance = float(truth[truth.any(1)].mean()) if found else float("nan")
    return f"QbE ranking, mean average precision: {', '.join(found)} (random ranking: {chance:.3f})"


# ---- the run ------------------------------------------------------------------------------------------------------

def run_sweep(data: Path, exp: Path, lexicon: Path, tasks: list[str], parallel: int) -> int:
    """``run_superb.sh`` over ``tasks`` (fbank_no_cmvn, ER fold 1), its output streamed; its exit status."""
    command = ["bash", str(REPO / "run_superb.sh"), "--upstream", "fbank_no_cmvn", "--tasks", ",".join(tasks),
               "--conditions", str(data / "conditions.yaml"), "--data-root", str(data), "--exp-root", str(exp),
               "--er-folds", "1", "--launcher", "local-submitit", "--max-parallel", str(parallel)]
    for override in OVERRIDES:
        if override.split(":", 1)[0] in tasks:
            command += ["-o", override]
    env = dict(os.environ, PYTHON=sys.executable, SUPERB_NUM_WORKERS="0", OMP_NUM_THREADS="1",
               PR_LEXICON=str(lexicon))
    return subprocess.run(command, env=env).returncode


@dataclass
class Row:
    task: str
    baseline: float
    clean: float | None
    noisy: float | None
    checkpoint: str
    seconds: float

    def learns(self) -> bool | None:
        if self.clean is None:
            return None
        goal = GOALS[self.task]
        return (self.clean >= self.baseline + goal.margin if goal.higher else
                self.clean <= self.baseline - goal.margin) and self.clean != self.baseline

    def noise_hurts(self) -> bool | None:
        if self.clean is None or self.noisy is None:
            return None
        return self.noisy < self.clean if GOALS[self.task].higher else self.noisy > self.clean


def collect(data: Path, sweep: Path, tasks: list[str]) -> list[Row]:
    """One row per task from the sweep folder's ``summary.json`` and ``result.json`` files."""
    runs = json.loads((sweep / "summary.json").read_text())["runs"]
    rows = []
    for task in tasks:
        label = "ER/fold1" if task == "ER" else task
        results = {c: json.loads(p.read_text()) for c in ("clean", "white_snr5")
                   if (p := sweep / label / c / "result.json").exists()}
        metric = GOALS[task].metric
        value = {c: r["metrics"][metric] for c, r in results.items()}
        if task == "QbE":
            baseline = _qbe_baseline(data, sweep / "QbE" / "clean") if "clean" in results else float("nan")
        else:
            baseline = BASELINES[task](data)
        kinds = {r["checkpoint_kind"] for r in results.values()}
        seconds = sum(r["seconds"] for r in runs if r["task"] == label)
        rows.append(Row(task, baseline, value.get("clean"), value.get("white_snr5"), "/".join(sorted(kinds)),
                        seconds))
    return rows


def _mark(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[value]


def table(rows: list[Row]) -> str:
    lines = ["| task | metric | trivial baseline | clean | white 5 dB | learns (margin) | worse at 5 dB | "
             "checkpoint | train + eval s |", "|---|---|---:|---:|---:|---|---|---|---:|"]
    for row in rows:
        goal = GOALS[row.task]
        arrow = "↑" if goal.higher else "↓"
        fmt = (lambda v: "-" if v is None else f"{v:.3f}") if goal.metric in ("PESQ", "MTWV") else (
            lambda v: "-" if v is None else f"{v:.1f}")
        margin = "p99 of random scores" if row.task == "QbE" else f"{goal.margin:g} {goal.unit}".strip()
        lines.append(f"| {row.task} | {goal.metric} {arrow} | {fmt(row.baseline)} | {fmt(row.clean)} | "
                     f"{fmt(row.noisy)} | {_mark(row.learns())} ({margin}) | {_mark(row.noise_hurts())} | "
                     f"{row.checkpoint} | {row.seconds:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("superb_learns"),
                        help="corpora (WORK/data) and results (WORK/exp); reused by a rerun")
    parser.add_argument("--tasks", default="all", help=f"'all' or a comma list of {','.join(TASKS)}")
    parser.add_argument("--parallel", type=int, default=2, help="tasks trained at once")
    args = parser.parse_args()
    tasks = list(TASKS) if args.tasks == "all" else args.tasks.split(",")
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"--tasks: unknown {','.join(unknown)} (tasks: {','.join(TASKS)})")
    data, exp = args.work.resolve() / "data", args.work.resolve() / "exp"
    data.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    lexicon = write_data(data)
    written = time.monotonic()
    status = run_sweep(data, exp, lexicon, tasks, args.parallel)
    swept = time.monotonic()
    rows = collect(data, exp / "fbank_no_cmvn", tasks)
    ranking = f"{qbe_ranking(data, exp / 'fbank_no_cmvn')}\n\n" if "QbE" in tasks else ""
    report = (f"{table(rows)}\n\n{ranking}fbank_no_cmvn, {len(tasks)} tasks on {cpu_model()} ({os.cpu_count()} cores, "
              f"{args.parallel} tasks at a time): corpora {written - start:.0f} s, sweep {swept - written:.0f} s "
              f"({(swept - written) / 60:.1f} min); sweep exit status {status}\n")
    print(report)
    (args.work / "learns.md").write_text(report)
    return 0 if status == 0 and all(r.learns() and r.noise_hurts() for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
