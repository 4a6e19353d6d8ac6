"""Helpers of the SUPERB end-to-end tests: the sweep command line, its environment, and a tiny student checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]


def runner_env() -> dict[str, str]:
    """The sweep's environment: this interpreter, no loader workers, one thread per runner (on a busy 2-core
    machine torch's thread pool is many times slower)."""
    return dict(os.environ, PYTHON=sys.executable, SUPERB_NUM_WORKERS="0", OMP_NUM_THREADS="1")


def sweep_command(data: Path, exp: Path, conditions: Path, tasks: str, *extra: str, overrides: Sequence[str] = (),
                  upstream: str = "fbank_no_cmvn") -> list[str]:
    """``bash run_superb.sh`` over ``tasks`` with ``-o`` per entry of ``overrides``."""
    command = ["bash", str(REPO / "run_superb.sh"), "--upstream", upstream, "--tasks", tasks,
               "--conditions", str(conditions), "--data-root", str(data), "--exp-root", str(exp), *extra]
    for override in overrides:
        command += ["-o", override]
    return command


def run_ok(command: list[str], env: dict[str, str]) -> str:
    """Runs ``command``; its stdout, or an assertion error with the end of its stderr."""
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command[:4]} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def summary_status(exp: Path, tag: str = "fbank_no_cmvn") -> dict[tuple[str, str], str]:
    """``{(task, condition or "train"): status}`` of ``exp/tag/summary.json``."""
    runs = json.loads((exp / tag / "summary.json").read_text())["runs"]
    return {(r["task"], r["condition"] or "train"): r["status"] for r in runs}


def tiny_student_checkpoint(path: Path) -> Path:
    """A randomly initialised tiny student (``pretrain_helpers.TINY_STUDENT``) saved as a ``robustdistiller_local``
    checkpoint at ``path``."""
    from pretrain_helpers import TINY_STUDENT

    from robustdistiller_upstream.checkpoint import save_student_checkpoint
    from robustdistiller_upstream.model import StudentConfig, StudentModel

    config = StudentConfig(**{**TINY_STUDENT, "extractor_conv_layers": [tuple(c) for c in
                                                                        TINY_STUDENT["extractor_conv_layers"]]})
    return save_student_checkpoint(path, StudentModel(config))
