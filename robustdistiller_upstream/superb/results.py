"""Results of evaluate runs: the metric parsed from the stock runner's output, kept as ``result.json``.

``result.json`` (one per task x condition x upstream, written by the sweep after a successful evaluate):
``{"task", "condition", "spec", "seed", "upstream", "tag", "metrics": {NAME: value}, "metric": primary name,
"higher_better", "checkpoint", "log"}``. Values are in the units the report shows (% where ``scale`` is 100).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterator

from robustdistiller_upstream.superb.tasks import TaskSpec

RESULT = "result.json"


def parse_metrics(task: TaskSpec, text: str) -> dict[str, float]:
    """``{metric name: value}`` from runner output ``text`` (last match of each pattern, scaled). Metrics the
    output does not show are absent; the caller decides whether the primary one is required."""
    text = text.replace("\r", "\n")
    found = {}
    for metric in task.metrics:
        matches = list(re.finditer(metric.pattern, text, flags=re.MULTILINE))
        if matches:
            found[metric.name] = float(matches[-1].group("value")) * metric.scale
    return found


def read_results(expdirs: list[Path]) -> Iterator[dict[str, Any]]:
    """Every ``result.json`` under ``expdirs`` (sorted paths); unreadable files are skipped with their path in
    ``error``."""
    for expdir in expdirs:
        for path in sorted(Path(expdir).rglob(RESULT)):
            try:
                row = json.loads(path.read_text())
            except ValueError as exc:
                yield {"error": f"{path}: {exc}"}
                continue
            if any(not isinstance(v, (int, float)) or math.isnan(v) for v in row.get("metrics", {}).values()):
                yield {"error": f"{path}: non-numeric metric"}
                continue
            yield row
