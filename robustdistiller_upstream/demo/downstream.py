"""The demo's downstream part: keyword spotting (KS), or intent classification (IC) where s3prl's KS dataset cannot
read audio (no libsox), through ``run_superb.sh`` (the stock s3prl runner) for both students and the teacher's own features, under test conditions the pretraining never saw, then
``robustdistiller report`` and a mean +- spread table over seeds.

Every command is run as printed (``shlex.join``), so a user can paste it to redo or extend one part.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from robustdistiller_upstream.errors import ConfigError, TrainingError
from robustdistiller_upstream.files import write_text_atomic
from robustdistiller_upstream.superb.results import read_results

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
# test conditions (augment.conditions grammar): white noise, MUSAN-layout noise files and simulated rooms that
# the pretraining never saw (the pretraining used other noise files, other draws of generated noise, other rooms)
CONDITIONS = {
    "clean": "clean",
    "white_snr20": "noise:white:snr=20",
    "white_snr10": "noise:white:snr=10",
    "noise_snr10": "noise:musan:snr=10",
    "noise_snr5": "noise:musan:snr=5",
    "reverb_rt0.6": "reverb:rt60=0.6:rooms=4",
    "noise_snr5_rt0.6": "noise+reverb:musan:snr=5:rt60=0.6:rooms=4",
}
TEACHER_FEATURES = "fbank_no_cmvn"  # s3prl's log-mel upstream: what the students were taught to predict


@dataclass(frozen=True)
class Task:
    """A downstream task of the demo: its SUPERB ``name``, what it is, where ``run_superb.sh``'s data root holds
    its corpus (``folder`` under the demo's data), and the datarc key of the training batch size."""

    name: str
    title: str
    folder: str
    batch_key: str


TASKS = {"KS": Task("KS", "keyword spotting", "ks", "batch_size"),
         "IC": Task("IC", "intent classification", "ic", "train_batch_size")}


def pick_task(requested: str) -> tuple[Task, str]:
    """The task to run (``auto``: KS where s3prl's KS dataset can read audio, else IC, whose dataset reads through
    soundfile) and why it cannot run here ('' when it can)."""
    from robustdistiller_upstream.espeak import MISSING
    from robustdistiller_upstream.s3prl_stack import sox_extension_error
    from robustdistiller_upstream.synthetic import have_espeak

    if requested not in ("auto", *TASKS):
        raise ConfigError(f"--task {requested!r}: use auto, {' or '.join(TASKS)}")
    sox_error = sox_extension_error()
    task = TASKS["IC" if requested == "IC" or (requested == "auto" and sox_error) else "KS"]
    if not have_espeak():
        return task, f"{MISSING}: the commands cannot be spoken"
    if task.name == "KS" and sox_error:
        return task, f"s3prl's KS dataset cannot read audio here: {sox_error} (--task IC runs without it)"
    return task, ""


@dataclass(frozen=True)
class Budget:
    """Downstream training of each upstream: steps of ``batch_size`` utterances at learning rate ``lr``; one dev
    evaluation at the end picks the checkpoint the conditions are scored with."""

    steps: int = 150
    batch_size: int = 16
    lr: float = 1.0e-3


@dataclass(frozen=True)
class Upstream:
    """One sweep: ``tag`` (its results folder), the s3prl hub ``name``, its ``ckpt`` and runner ``-s`` key."""

    tag: str
    name: str
    ckpt: str = ""
    select: str = ""


def pick_conditions(names: str) -> list[str]:
    """Comma list of ``CONDITIONS`` names (``all``: every one), in ``CONDITIONS``' order."""
    if names == "all":
        return list(CONDITIONS)
    chosen = {n.strip() for n in names.split(",") if n.strip()}
    unknown = chosen - set(CONDITIONS)
    if unknown or not chosen:
        raise ConfigError(f"--conditions {names!r}: unknown {sorted(unknown)}; known: {', '.join(CONDITIONS)}")
    return [name for name in CONDITIONS if name in chosen]


def write_conditions(path: Path, noise_bank: Path, names: Sequence[str]) -> Path:
    """The conditions YAML of ``run_superb.sh --conditions`` with ``names`` of ``CONDITIONS`` (seed 0 everywhere:
    every upstream hears the same contaminated bytes)."""
    text = yaml.safe_dump({"banks": {"musan": str(noise_bank)},
                           "conditions": {name: {"spec": CONDITIONS[name], "seed": 0} for name in names}},
                          sort_keys=False)
    return write_text_atomic(path, text)


def runner_env() -> dict[str, str]:
    """One thread per runner and no loader workers: two sweeps share the 2 cores the demo is sized for."""
    return {"SUPERB_NUM_WORKERS": "0", "OMP_NUM_THREADS": "1"}


def sweep_command(task: Task, upstream: Upstream, data_root: Path, exp_root: Path, conditions: Path, budget: Budget,
                  seed: int) -> list[str]:
    """``bash run_superb.sh`` for ``task`` of ``upstream``, the stock runner's ``--seed`` set to ``seed``."""
    command = ["bash", str(REPO / "run_superb.sh"), "--upstream", upstream.name, "--tag", upstream.tag,
               "--tasks", task.name, "--conditions", str(conditions), "--data-root", str(data_root),
               "--exp-root", str(exp_root)]
    if upstream.ckpt:
        command += ["--ckpt", upstream.ckpt]
    overrides = [f"runner.total_steps={budget.steps}", f"runner.eval_step={budget.steps}",
                 f"runner.save_step={budget.steps}", f"runner.log_step={max(budget.steps // 4, 1)}",
                 f"optimizer.lr={budget.lr}", f"downstream_expert.datarc.{task.batch_key}={budget.batch_size}"]
    for override in overrides:
        command += ["-o", override]
    command += ["--", "--seed", str(seed)]
    if upstream.select:
        command += ["-s", upstream.select]
    return command


def report_command(exp_root: Path, out: Path) -> list[str]:
    """``robustdistiller report`` over every sweep under ``exp_root``."""
    return [sys.executable, "-m", "robustdistiller_upstream.cli", "report", str(exp_root), "--out", str(out)]


def printable(command: Sequence[str], env: dict[str, str]) -> str:
    """The shell line that runs ``command`` with ``env`` on top of the caller's environment."""
    return " ".join(f"{k}={v}" for k, v in env.items()) + " " + shlex.join(command)


def run_parallel(commands: Sequence[list[str]], logs: Sequence[Path], env: dict[str, str], parallel: int = 2) -> float:
    """Runs ``commands`` ``parallel`` at a time (each writes its log); seconds taken. A failure stops the demo
    with the log to read."""
    start = time.perf_counter()
    pending = list(zip(commands, logs))
    running: list[tuple[subprocess.Popen, Path, object]] = []
    full_env = {**os.environ, "PYTHON": sys.executable, **env}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                command, log = pending.pop(0)
                log.parent.mkdir(parents=True, exist_ok=True)
                handle = log.open("w")
                # a session (and process group) of its own: the sweep's runner processes end with it
                running.append((subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=full_env,
                                                 start_new_session=True), log, handle))
            time.sleep(0.5)
            for entry in [e for e in running if e[0].poll() is not None]:
                proc, log, handle = entry
                handle.close()
                running.remove(entry)
                if proc.returncode != 0:
                    raise TrainingError(f"{shlex.join(proc.args[:4])} ... failed (exit {proc.returncode}); see {log}")
    finally:
        for proc, _, handle in running:
            stop_group(proc)
            handle.close()
    return time.perf_counter() - start


def stop_group(proc: subprocess.Popen) -> None:
    """Kills ``proc``'s process group (started with ``start_new_session``) and waits for ``proc``."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def accuracies(exp_root: Path, task: Task) -> dict[tuple[str, str], float]:
    """``{(tag, condition): test accuracy in %}`` of ``task``'s finished evaluations under ``exp_root``."""
    return {(row["tag"], row["condition"]): row["metrics"][row["metric"]] for row in read_results([exp_root])
            if "error" not in row and row.get("task") == task.name}


def seed_table(results: dict[tuple[str, str], float], rows: Iterable[tuple[str, str]], seeds: int,
               conditions: Sequence[str]) -> list[dict]:
    """One row per (label, tag prefix): mean and spread (sample standard deviation; 0 for one seed) over the
    tags ``<prefix>-seed<k>``, per condition."""
    table = []
    for label, prefix in rows:
        row: dict = {"upstream": label}
        for condition in conditions:
            values = [results[(f"{prefix}-seed{k}", condition)] for k in range(seeds)]
            row[condition] = {"mean": statistics.fmean(values),
                              "spread": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
        table.append(row)
    return table


def format_seed_table(table: list[dict], seeds: int, conditions: Sequence[str]) -> str:
    """Markdown: test accuracy in %, ``mean ± spread`` over ``seeds`` seeds."""
    head = "| upstream | " + " | ".join(f"{name} (`{CONDITIONS[name]}`)" for name in conditions) + " |"
    lines = [head, "|---|" + "---:|" * len(conditions)]
    for row in table:
        cells = [f"{row[c]['mean']:.1f} ± {row[c]['spread']:.1f}" if seeds > 1 else f"{row[c]['mean']:.1f}"
                 for c in conditions]
        lines.append(f"| {row['upstream']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
