"""Tables and plots of SUPERB sweep results (``robustdistiller report``).

From the ``result.json`` files of one or more sweeps (``superb.results``):

- ``results.csv``: one row per upstream x task x condition: metric, direction, value, clean value and the
  relative degradation vs clean in % (positive = worse, whatever the metric's direction), the folds averaged, and
  which downstream checkpoint was evaluated (``dev-best`` or ``last``, and why: ``sweep.pick_checkpoint``);
- ``results.md``: per upstream, a task x condition table (``value (+x.x%)``, the checkpoint evaluated per task, the
  reason under the table where it is the last one), the overall score per condition, and what SI-SDRi means;
- ``score.csv``: the SUPERB-style overall score per upstream and condition: ``1000 * mean over tasks of
  (value - fbank) / (sota - fbank)`` with reference points from ``superb_reference.yaml`` (tasks without one
  are left out and named);
- ``snr_<TASK>.png``: metric vs SNR per noise type, one line per upstream (clean as a dotted level);
- ``reverb.png``: bars per reverberant condition and upstream, one panel per task.

A task with folds (ER: one result per IEMOCAP fold, ``"fold"`` in result.json) is one cell per condition, the mean
over its folds, as SUPERB reports ER; the table says how many of the task's folds that mean holds.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, TypeVar

from robustdistiller_upstream.config import read_yaml
from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.superb.tasks import TASKS

log = logging.getLogger(__name__)

_K = TypeVar("_K")
_V = TypeVar("_V")


def group(items: Iterable[_V], key: Callable[[_V], _K]) -> dict[_K, list[_V]]:
    """``items`` by ``key``, each group in the items' order, groups in order of first appearance: one pass, so
    the tables and plots stay linear in the number of results (a filter per upstream or task would not)."""
    groups: dict[_K, list[_V]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return dict(groups)


@dataclass(frozen=True)
class ConditionInfo:
    """What a condition spec says, for grouping: op, noise source, SNR in dB, reverberation label."""

    op: str
    noise: str = ""
    snr: Optional[float] = None
    reverb: str = ""


def describe(spec: str) -> ConditionInfo:
    """``noise:white:snr=5`` -> (noise, white, 5.0, ""); ``reverb:rt60=0.6`` -> (reverb, "", None, "RT60 0.6 s");
    ``reverb:slr28`` -> (reverb, "", None, "slr28"). A SNR range (``0..20``) has no single SNR (None)."""
    op, *parts = spec.strip().split(":")
    keys = dict(p.split("=", 1) for p in parts if "=" in p)
    source = next((p for p in parts if "=" not in p), "")
    snr = None
    if "snr" in keys and ".." not in keys["snr"]:
        snr = float(keys["snr"])
    reverb = ""
    if "reverb" in op:
        reverb = f"RT60 {keys['rt60']} s" if "rt60" in keys else keys.get("rir", source)
    return ConditionInfo(op, source if "noise" in op else "", snr, reverb)


@dataclass
class Cell:
    """One result: upstream (tag) x task x condition."""

    tag: str
    task: str
    condition: str
    spec: str
    metric: str
    higher_better: bool
    value: float
    clean: Optional[float] = None
    folds: int = 0  # results averaged into ``value`` (tasks with folds; 0: one result)
    checkpoint: str = ""  # the downstream checkpoint evaluated: dev-best | last | none (QbE); "" before it was recorded
    checkpoint_why: str = ""

    @property
    def degradation(self) -> Optional[float]:
        """Relative change vs clean in %, positive when worse; None without a (non-zero) clean value."""
        if self.clean is None or self.clean == 0:
            return None
        change = (self.clean - self.value) if self.higher_better else (self.value - self.clean)
        return 100.0 * change / abs(self.clean)


def collect(rows: Iterable[dict[str, Any]]) -> list[Cell]:
    """Cells from result rows (later duplicates win), each with its upstream's clean value of the task; the results
    of a task's folds are averaged into one cell."""
    by_fold: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for row in rows:
        if "error" in row:
            log.warning("skipping %s", row["error"])
            continue
        by_fold[(row["tag"], row["task"], row["condition"], row.get("fold", ""))] = row
    folds: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for (tag, task, condition, _), row in sorted(by_fold.items()):
        folds[(tag, task, condition)].append(row)
    cells: dict[tuple[str, str, str], Cell] = {}
    for key, results in folds.items():
        row = results[0]
        values = [float(r["metrics"][r["metric"]]) for r in results]
        cells[key] = Cell(row["tag"], row["task"], row["condition"], row["spec"], row["metric"],
                          bool(row["higher_better"]), sum(values) / len(values),
                          folds=len(results) if row.get("fold") else 0,
                          checkpoint="/".join(sorted({r.get("checkpoint_kind", "") for r in results})),
                          checkpoint_why="; ".join(sorted({f"{r['fold']}: {r['checkpoint_why']}" if r.get("fold")
                                                           else r["checkpoint_why"] for r in results
                                                           if r.get("checkpoint_kind") == "last"})))
    clean: dict[tuple[str, str], float] = {}
    for cell in cells.values():  # the first clean condition of each upstream x task, in sorted order
        if describe(cell.spec).op == "clean":
            clean.setdefault((cell.tag, cell.task), cell.value)
    for cell in cells.values():
        cell.clean = clean.get((cell.tag, cell.task))
    return sorted(cells.values(), key=_order)


def _order(cell: Cell) -> tuple:
    task_rank = list(TASKS).index(cell.task) if cell.task in TASKS else len(TASKS)
    info = describe(cell.spec)
    op_rank = ["clean", "noise", "reverb", "noise+reverb"].index(info.op) if info.op in (
        "clean", "noise", "reverb", "noise+reverb") else 4
    return cell.tag, task_rank, op_rank, info.noise, -(info.snr if info.snr is not None else math.inf), \
        info.reverb, cell.condition


def read_reference(path: Path) -> dict[str, dict[str, Any]]:
    """``{task: {metric, fbank, sota}}`` from a reference YAML; malformed entries are ``ConfigError``s."""
    data = read_yaml(path)
    for task, entry in data.items():
        if not isinstance(entry, dict) or set(entry) != {"metric", "fbank", "sota"} or entry["fbank"] == entry["sota"]:
            raise ConfigError(f"{path}: {task} must be {{metric, fbank, sota}} with fbank != sota")
    return data


def overall_scores(cells: list[Cell], reference: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """SUPERB-style score per upstream x condition over the tasks that have a reference point."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    tasks: dict[tuple[str, str], list[str]] = defaultdict(list)
    for cell in cells:
        ref = reference.get(cell.task)
        if ref is None or ref["metric"] != cell.metric:
            continue
        key = (cell.tag, cell.condition)
        groups[key].append((cell.value - ref["fbank"]) / (ref["sota"] - ref["fbank"]))
        tasks[key].append(cell.task)
    return [{"tag": tag, "condition": condition, "score": 1000.0 * sum(v) / len(v), "tasks": " ".join(tasks[(tag,
             condition)])} for (tag, condition), v in groups.items()]


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_csv(cells: list[Cell], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["upstream", "task", "condition", "spec", "metric", "higher_better", "value", "clean",
                         "degradation_pct", "folds", "checkpoint", "checkpoint_why"])
        for c in cells:
            writer.writerow([c.tag, c.task, c.condition, c.spec, c.metric, int(c.higher_better), _fmt(c.value, 4),
                             _fmt(c.clean, 4), _fmt(c.degradation, 2), c.folds, c.checkpoint, c.checkpoint_why])


def markdown(cells: list[Cell], scores: list[dict[str, Any]]) -> str:
    """Per upstream: a task x condition table, then the overall score row."""
    out = io.StringIO()
    by_tag = group(cells, lambda c: c.tag)
    scores_by_tag = group(scores, lambda s: s["tag"])
    for tag in sorted(by_tag):
        mine = by_tag[tag]
        conditions = list(dict.fromkeys(c.condition for c in sorted(mine, key=lambda c: _order(c)[2:])))
        spec_of: dict[str, str] = {}
        for c in mine:
            spec_of.setdefault(c.condition, c.spec)
        out.write(f"## {tag}\n\nValue (relative degradation vs clean, positive = worse).\n\n")
        out.write("| task | metric | " + " | ".join(conditions) + " | checkpoint |\n")
        out.write("|---|---|" + "---|" * len(conditions) + "---|\n")
        notes = []
        for task, task_cells in group(mine, lambda c: c.task).items():
            by_cond = {c.condition: c for c in task_cells}
            first = next(iter(by_cond.values()))
            arrow = "↑" if first.higher_better else "↓"
            row = []
            for condition in conditions:
                c = by_cond.get(condition)
                if c is None:
                    row.append("")
                elif c.degradation is None or describe(c.spec).op == "clean":
                    row.append(_fmt(c.value))
                else:
                    row.append(f"{_fmt(c.value)} ({c.degradation:+.1f}%)")
            kinds = "/".join(sorted({c.checkpoint for c in by_cond.values()} - {""})) or "not recorded"
            whys = sorted({c.checkpoint_why for c in by_cond.values()} - {""})
            notes += [f"- {task}: the last checkpoint was evaluated: {why}" for why in whys]
            mark = SI_SDRI_MARK if first.metric == SI_SDRI else ""
            out.write(f"| {_task_label(task, list(by_cond.values()))} | {first.metric}{mark} {arrow} | "
                      + " | ".join(row) + f" | {kinds} |\n")
        if notes:
            out.write("\n" + "\n".join(notes) + "\n")
        if any(c.metric == SI_SDRI for c in mine):
            out.write(f"\n{SI_SDRI_MARK} {SI_SDRI_CAPTION}\n")
        mine_scores = {s["condition"]: s for s in scores_by_tag.get(tag, [])}
        if mine_scores:
            clean_tasks = next((s["tasks"] for c, s in mine_scores.items() if describe(spec_of[c]).op == "clean"),
                               None)
            row = [_fmt(mine_scores[c]["score"], 1) + ("*" if mine_scores[c]["tasks"] != clean_tasks else "")
                   if c in mine_scores else "" for c in conditions]
            out.write("| **score** | SUPERB-style | " + " | ".join(row) + " |\n")
            out.write(f"\nScore over tasks {clean_tasks or '(no clean results)'} (1000 = reference SOTA, 0 = FBANK); "
                      f"* = over another set of tasks (see score.csv), not comparable.\n")
        out.write("\n")
    return out.getvalue()


SI_SDRI, SI_SDRI_MARK = "SI-SDRi", "†"
SI_SDRI_CAPTION = ("SI-SDRi is what the SE and SS experts print: the SI-SDR *improvement* of their output over "
                   "their input (SE: the noisy utterance, SS: the mixture), in dB. Under a contaminated condition "
                   "that input is the contaminated mixture: each value is the gain over that condition's own, "
                   "worse, input, not the output's SI-SDR, so it is not comparable across conditions as a quality.")


def _task_label(task: str, cells: list[Cell]) -> str:
    """``ER (mean of 5/5 folds)`` for a task with folds (``2-5/5`` when conditions hold different counts)."""
    counts = sorted({c.folds for c in cells})
    if not counts[-1]:
        return task
    total = TASKS[task].folds if task in TASKS else counts[-1]
    held = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{task} (mean of {held}/{total} folds)"


def _axis_label(cell: Cell) -> str:
    over = " over the (contaminated) input" if cell.metric == SI_SDRI else ""
    return f"{cell.metric}{over} ({'higher' if cell.higher_better else 'lower'} is better)"


def plot_snr(cells: list[Cell], out_dir: Path) -> list[Path]:
    """``snr_<TASK>.png`` per task with noise conditions at fixed SNRs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for task, task_cells in group(cells, lambda c: c.task).items():
        noisy = [c for c in task_cells if describe(c.spec).op == "noise" and describe(c.spec).snr is not None]
        if not noisy:
            continue
        sources = sorted({describe(c.spec).noise for c in noisy})
        tags = sorted({c.tag for c in task_cells})
        lines = group(noisy, lambda c: (c.tag, describe(c.spec).noise))
        clean_of: dict[str, float] = {}
        for c in noisy:
            if c.clean is not None:
                clean_of.setdefault(c.tag, c.clean)
        fig, axes = plt.subplots(1, len(sources), figsize=(4.2 * len(sources), 3.4), squeeze=False, sharey=True)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for ax, source in zip(axes[0], sources):
            for i, tag in enumerate(tags):
                points = sorted((describe(c.spec).snr, c.value) for c in lines.get((tag, source), []))
                if points:
                    ax.plot(*zip(*points), marker="o", color=colors[i % len(colors)], label=tag)
                clean = clean_of.get(tag)
                if clean is not None:
                    ax.axhline(clean, color=colors[i % len(colors)], linestyle=":", linewidth=1)
            ax.set_title(f"{task}: {source} noise")
            ax.set_xlabel("SNR (dB)")
            ax.grid(alpha=0.3)
        first = noisy[0]
        axes[0][0].set_ylabel(_axis_label(first))
        axes[0][-1].legend(fontsize=8, title="dotted: clean", title_fontsize=7)
        fig.tight_layout()
        path = out_dir / f"snr_{task}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def plot_reverb(cells: list[Cell], out_dir: Path) -> Optional[Path]:
    """``reverb.png``: clean and reverberant conditions as grouped bars (upstreams), one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = group((c for c in cells if describe(c.spec).op in ("clean", "reverb", "noise+reverb")),
                 lambda c: c.task)
    tasks = list(dict.fromkeys(c.task for c in cells if describe(c.spec).op in ("reverb", "noise+reverb")))
    if not tasks:
        return None
    tags = sorted({c.tag for mine in keep.values() for c in mine})
    fig, axes = plt.subplots(1, len(tasks), figsize=(max(4.5, 1.2 * 4) * len(tasks), 3.6), squeeze=False)
    width = 0.8 / len(tags)
    for ax, task in zip(axes[0], tasks):
        mine = keep[task]
        conditions = list(dict.fromkeys(c.condition for c in sorted(mine, key=lambda c: _order(c)[2:])))
        by_tag = group(mine, lambda c: c.tag)
        for i, tag in enumerate(tags):
            values = {c.condition: c.value for c in by_tag.get(tag, [])}
            xs = [j + i * width for j, cond in enumerate(conditions) if cond in values]
            ax.bar(xs, [values[cond] for cond in conditions if cond in values], width, label=tag)
        ax.set_xticks([j + width * (len(tags) - 1) / 2 for j in range(len(conditions))])
        ax.set_xticklabels(conditions, rotation=30, ha="right", fontsize=8)
        ax.set_title(task)
        ax.set_ylabel(_axis_label(mine[0]))
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "reverb.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(cells: list[Cell], reference: dict[str, dict[str, Any]], out_dir: Path) -> list[Path]:
    """Writes the CSVs, the Markdown and the plots into ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = overall_scores(cells, reference)
    write_csv(cells, out_dir / "results.csv")
    with open(out_dir / "score.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["tag", "condition", "score", "tasks"])
        writer.writeheader()
        writer.writerows({**s, "score": _fmt(s["score"], 1)} for s in scores)
    (out_dir / "results.md").write_text(markdown(cells, scores))
    written = [out_dir / "results.csv", out_dir / "score.csv", out_dir / "results.md"]
    written += plot_snr(cells, out_dir)
    reverb = plot_reverb(cells, out_dir)
    return written + ([reverb] if reverb else [])
