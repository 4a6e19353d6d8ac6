"""How ``robustdistiller report`` grows with the sweep: 12 tasks x 26 conditions x 10 upstreams at full size.

Writes SUPERB sweep folders in the layout ``run_superb.sh`` leaves (``superb.sweep``): per upstream ``<tag>/``,
``summary.json``, per task ``<TASK>/train/`` (``done.json``, the runner's checkpoint files) and per condition
``<TASK>/<CONDITION>/`` (``result.json``, ``run.log``, the runner's ``config.yaml``); ER has one such tree per
IEMOCAP fold (``ER/fold1..5/``), so a full sweep holds (11 + 5) x 26 = 416 result files per upstream. Metric
values are drawn at random (the report's cost does not depend on them); checkpoints are 1 KiB stand-ins (the report
never opens them, it walks past them).

Sizes (tasks x conditions x upstreams): 1x = 12 x 3 x 1 (clean, white 0 dB, RT60 0.6 s), 10x = 12 x 26 x 1,
full = 12 x 26 x 10 (the conditions of ``downstream_configs/conditions.yaml``). Each size runs the CLI
(``python -m robustdistiller_upstream.cli report``) in a fresh process: wall time, that process's peak RSS
(``wait4``), disk of the sweep folders and of the report; then the report's stages one by one in another fresh
process (read the result files, collect the cells, the tables: scores + Markdown + CSV, the plots), since the
fixed costs (the CLI's imports, one figure per task) hide how the rest grows. ``--before PATH`` runs the same
sizes, interleaved, with the package from another checkout (e.g. ``git archive`` of an older commit) as the
reference. "growth" is the time ratio between a size and the one below it divided by their cell ratio (1 =
linear). ``--beyond`` adds 12 x 26 x 100 (ten times the full sweep).

Run: ``python bench/report_growth.py [--before /path/to/old/checkout] [--repeats 1] [--beyond] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from growth import disk_bytes, growth, mib  # noqa: E402
from machine import cpu_model  # noqa: E402

from robustdistiller_upstream.config import read_yaml  # noqa: E402
from robustdistiller_upstream.superb.configs import config_dir  # noqa: E402
from robustdistiller_upstream.superb.tasks import TASKS  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SUBSET = ("clean", "white_snr0", "reverb_rt0.6")  # the 1x conditions
CHECKPOINTS = ("states-1000.ckpt", "states-2000.ckpt", "dev-best.ckpt")


@dataclass(frozen=True)
class Size:
    """One sweep size: ``upstreams`` sweeps of every task under ``conditions`` (names of conditions.yaml)."""

    label: str
    conditions: tuple[str, ...]
    upstreams: int

    @property
    def cells(self) -> int:
        """Table cells of the report: upstream x task x condition (ER's folds are one cell)."""
        return len(TASKS) * len(self.conditions) * self.upstreams


def sizes(beyond: bool) -> list[Size]:
    """1x, 10x and the full 12 x 26 x 10 (and 12 x 26 x 100 when ``beyond``)."""
    conditions = tuple(read_yaml(config_dir() / "conditions.yaml")["conditions"])
    return [Size("1x", SUBSET, 1), Size("10x", conditions, 1), Size("full", conditions, 10)] + (
        [Size("100 upstreams", conditions, 100)] if beyond else [])


def _metric_value(higher_better: bool, rng: random.Random) -> float:
    return round(rng.uniform(50, 95) if higher_better else rng.uniform(2, 40), 4)


def write_sweep(exp: Path, tag: str, conditions: dict[str, str], rng: random.Random) -> int:
    """``exp/tag``: one upstream's sweep over every task and ``conditions`` ({name: spec}); returns the number of
    result files written."""
    count, rows = 0, []
    for spec in TASKS.values():
        for fold in [f"fold{k}" for k in range(1, spec.folds + 1)] or [""]:
            task_dir = exp / tag / spec.name / fold if fold else exp / tag / spec.name
            label = f"{spec.name}/{fold}" if fold else spec.name
            record = {"checkpoint": str(task_dir / "train" / "dev-best.ckpt"), "checkpoint_kind": "dev-best",
                      "checkpoint_why": ""} if spec.trains else {
                "checkpoint": "", "checkpoint_kind": "none", "checkpoint_why": f"{spec.name} does not train"}
            if spec.trains:
                (task_dir / "train").mkdir(parents=True)
                for name in CHECKPOINTS:
                    (task_dir / "train" / name).write_bytes(b"\0" * 1024)
                (task_dir / "train" / "done.json").write_text(json.dumps({"task": label, **record}))
            for condition, cond_spec in conditions.items():
                run = task_dir / condition
                run.mkdir(parents=True)
                metrics = {m.name: _metric_value(m.higher_better, rng) for m in spec.metrics}
                (run / "run.log").write_text(f"[Runner] - evaluate {label} {condition}\n" * 40 + "".join(
                    f"{m.name} {v}\n" for m, v in zip(spec.metrics, metrics.values())))
                (run / "config.yaml").write_text(f"downstream_expert:\n  datarc:\n    test: {condition}\n" * 20)
                (run / "result.json").write_text(json.dumps({
                    "task": spec.name, "fold": fold, "condition": condition, "spec": cond_spec, "seed": 0,
                    "upstream": "robustdistiller_local", "ckpt": f"exp/{tag}/student.ckpt", "tag": tag,
                    "metrics": metrics, "metric": spec.metric.name, "higher_better": spec.metric.higher_better,
                    **record, "log": str(run / "run.log")}))
                rows.append({"task": label, "kind": "evaluate", "condition": condition, "status": "done"})
                count += 1
    (exp / tag / "summary.json").write_text(json.dumps({"upstream": "robustdistiller_local", "runs": rows}))
    return count


def run_report(expdirs: list[Path], out: Path, pythonpath: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of ``robustdistiller report expdirs --out out`` in a fresh process that
    imports the package from ``pythonpath``."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(pythonpath), MPLBACKEND="Agg")
    command = [sys.executable, "-m", "robustdistiller_upstream.cli", "report", *map(str, expdirs), "--out", str(out)]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode(errors='replace')[-2000:]}")
    process.stderr.close()
    return seconds, usage.ru_maxrss * 1024


STAGES = ("read", "collect", "tables", "plots")


def time_stages(expdirs: list[Path], out: Path) -> dict[str, float]:
    """Seconds of each stage of ``write_report`` (the calls it makes, in its order) on ``expdirs``; run by
    ``--stages`` in a fresh process importing the package under test."""
    from robustdistiller_upstream.superb import report
    from robustdistiller_upstream.superb.results import read_results

    out.mkdir(parents=True, exist_ok=True)
    times, start = {}, time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal start
        now = time.perf_counter()
        times[stage], start = now - start, now

    rows = list(read_results(expdirs))
    lap("read")
    cells = report.collect(rows)
    lap("collect")
    scores = report.overall_scores(cells, report.read_reference(config_dir() / "superb_reference.yaml"))
    report.write_csv(cells, out / "results.csv")
    (out / "results.md").write_text(report.markdown(cells, scores))
    lap("tables")
    report.plot_snr(cells, out)
    report.plot_reverb(cells, out)
    lap("plots")
    return times


def run_stages(expdirs: list[Path], out: Path, pythonpath: Path) -> dict[str, float]:
    """``time_stages`` in a fresh process that imports the package from ``pythonpath``."""
    env = dict(os.environ, PYTHONPATH=str(pythonpath), MPLBACKEND="Agg")
    command = [sys.executable, __file__, "--stages", str(out), *map(str, expdirs)]
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.splitlines()[-1])


@dataclass
class Measured:
    """One size: the sweep written, and per code (ours, before) the CLI's best time and peak RSS, the report's
    disk and the best time of each stage."""

    size: Size
    files: int
    disk: int
    cli: dict[str, tuple[float, int]]
    report_disk: dict[str, int]
    stages: dict[str, dict[str, float]]


def measure(size: Size, work: Path, codes: list[tuple[str, Path]], repeats: int) -> Measured:
    """Writes ``size``'s sweeps under ``work`` and runs the report and its stages ``repeats`` times per code,
    interleaved, so every code sees the same machine load."""
    specs = read_yaml(config_dir() / "conditions.yaml")["conditions"]
    exp, rng = work / "superb", random.Random(0)
    start = time.perf_counter()
    files = sum(write_sweep(exp, f"upstream{u:02d}", {c: specs[c]["spec"] for c in size.conditions}, rng)
                for u in range(size.upstreams))
    written = time.perf_counter() - start
    expdirs = sorted(exp.iterdir())
    cli: dict[str, tuple[float, int]] = {}
    stages: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for name, path in codes:
            seconds, rss = run_report(expdirs, work / f"report_{name}", path)
            best = cli.get(name, (seconds, rss))
            cli[name] = (min(seconds, best[0]), max(rss, best[1]))
            laps = run_stages(expdirs, work / f"stages_{name}", path)
            stages[name] = {k: min(v, stages.get(name, laps)[k]) for k, v in laps.items()}
    print(f"{size.label}: {size.cells} cells, {files} result files written in {written:.1f} s; "
          + ", ".join(f"{name} {t:.2f} s" for name, (t, _) in cli.items()), flush=True)
    return Measured(size, files, disk_bytes(exp), cli, {name: disk_bytes(work / f"report_{name}") for name, _ in codes},
                    stages)


def print_tables(rows: list[Measured]) -> None:
    """The CLI table (time, growth, peak RSS, disk) and the stage table, Markdown."""
    header = "| size | cells | result files | sweep disk MiB | code | time s | growth | peak RSS MiB | report MiB |"
    print(header + "\n|" + "---|" * (header.count("|") - 1))
    for i, row in enumerate(rows):
        for name, (seconds, rss) in row.cli.items():
            ratio = f"{growth(seconds, rows[i - 1].cli[name][0], row.size.cells, rows[i - 1].size.cells):.2f}" if i else ""
            print(f"| {row.size.label} | {row.size.cells} | {row.files} | {mib(row.disk)} | {name} | {seconds:.2f} | "
                  f"{ratio} | {mib(rss)} | {mib(row.report_disk[name])} |")
    print("\nStages, s (growth):\n\n| size | code | " + " | ".join(STAGES) + " |\n|" + "---|" * (len(STAGES) + 2))
    for i, row in enumerate(rows):
        for name, laps in row.stages.items():
            below = rows[i - 1] if i else None
            cells = []
            for stage in STAGES:
                ratio = growth(laps[stage], below.stages[name][stage], row.size.cells, below.size.cells) if below else None
                cells.append(f"{laps[stage]:.3f}" + (f" ({ratio:.2f})" if ratio is not None else ""))
            print(f"| {row.size.label} | {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, default=None, help="checkout whose package is the reference")
    parser.add_argument("--repeats", type=int, default=1, help="runs per size and code (min time is kept)")
    parser.add_argument("--keep", type=Path, default=None, help="write the sweeps here and keep them")
    parser.add_argument("--beyond", action="store_true", help="add 12 x 26 x 100 (10x the full sweep)")
    parser.add_argument("--stages", nargs="+", type=Path, default=None, metavar="OUT EXPDIR",
                        help=argparse.SUPPRESS)  # worker mode: time_stages(EXPDIRS, OUT) as one JSON line
    args = parser.parse_args()
    if args.stages:
        print(json.dumps(time_stages(args.stages[1:], args.stages[0])))
        return
    codes = [("ours", REPO)] + ([("before", args.before.resolve())] if args.before else [])
    print(f"CPU: {cpu_model()}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="report_growth_"))
    try:
        rows = [measure(size, work / size.label, codes, args.repeats) for size in sizes(args.beyond)]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}\n")
    print_tables(rows)


if __name__ == "__main__":
    main()
