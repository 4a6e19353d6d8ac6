"""What the growth benches share: disk and memory readings, and the growth between sizes (cost ratio over size
ratio: ~1 linear, < 1 fixed costs, > 1 faster than linear)."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Sequence


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def disk_bytes(root: Path) -> int:
    """Allocated bytes of everything under ``root`` (``du``: blocks, links not followed); 0 when missing."""
    total = 0
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def mib(n: float) -> str:
    """``n`` bytes in MiB, one decimal."""
    return f"{n / 2**20:.1f}"


def growth(cost: float, cost_below: float, size: float, size_below: float) -> float:
    """(cost ratio) / (size ratio) from the smaller size to the larger: 1 = linear, 10 = quadratic over 10x."""
    return cost / max(cost_below, 1e-9) / (size / size_below)


def growth_columns(values: Sequence[float], sizes: Sequence[float]) -> list[str]:
    """``growth`` of each size to the previous one, formatted ("-" where the smaller cost is 0)."""
    return [f"{growth(b, a, m, n):.2f}" if a > 0 else "-" for a, b, n, m in zip(values, values[1:], sizes, sizes[1:])]


def growth_table(rows: Sequence[tuple[str, str, Sequence[float]]], labels: Sequence[str],
                 sizes: Sequence[float]) -> str:
    """A markdown table: one row per (what, unit, value at each size), the values then the growth columns."""
    lines = ["| what | unit | " + " | ".join(labels) + " | "
             + " | ".join(f"growth {a}->{b}" for a, b in zip(labels, labels[1:])) + " |",
             "|" + "---|" * (1 + 2 * len(labels))]
    for what, unit, values in rows:
        lines.append(f"| {what} | {unit} | " + " | ".join(f"{v:.3g}" for v in values) + " | "
                     + " | ".join(growth_columns(values, sizes)) + " |")
    return "\n".join(lines)
