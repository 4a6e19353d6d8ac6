"""The sweep's plan (``run_superb.sh --dry-run``, and the check before a real sweep) names the tasks this machine
cannot run, with the reason and the package to install, before any training starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from system_packages import needs_sox_extension

REPO = Path(__file__).resolve().parents[1]
SOX_TASKS = {"KS": "speech_commands", "QbE": "quesst14_dtw", "ASV": "sv_voxceleb1"}


def _sweep(tmp_path: Path, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text("conditions:\n  clean: {spec: clean, seed: 0}\n")
    (tmp_path / "s3prl_checkout" / "s3prl" / "downstream").mkdir(parents=True, exist_ok=True)
    command = ["bash", str(REPO / "run_superb.sh"), "--upstream", "fbank_no_cmvn", "--tasks", "KS,QbE,ASV,IC",
               "--conditions", str(conditions), "--data-root", str(tmp_path / "data"), "--s3prl-dir",
               str(tmp_path / "s3prl_checkout"), "--exp-root", str(tmp_path / "exp"), *extra]
    return subprocess.run(command, env=dict(os.environ, PYTHON=sys.executable, **env), capture_output=True, text=True)


def _task_lines(plan: str) -> dict[str, str]:
    return {line.split()[0]: line for line in plan.splitlines() if line.split() and line.split()[0] in
            (*SOX_TASKS, "IC")}


@pytest.mark.stock_only  # torchaudio >= 2.9 has no sox_effects at all: the plan says that instead (test_superb_e2e)
def test_plan_marks_the_sox_tasks_when_the_sox_extension_cannot_load(tmp_path):
    # a libsox.so that the dynamic loader finds first and cannot load: the sox extension fails as without libsox-dev
    stub = tmp_path / "broken_libs"
    stub.mkdir()
    (stub / "libsox.so").write_bytes(b"")
    hidden = {"LD_LIBRARY_PATH": os.pathsep.join(p for p in (str(stub), os.environ.get("LD_LIBRARY_PATH")) if p)}

    plan = _sweep(tmp_path, "--dry-run", env=hidden)
    assert plan.returncode == 0, plan.stderr[-3000:]
    lines = _task_lines(plan.stdout)
    for task, downstream in SOX_TASKS.items():
        assert "CANNOT RUN" in lines[task], plan.stdout
        assert f"s3prl/downstream/{downstream}/dataset.py reads audio through torchaudio.sox_effects" in lines[task]
        assert "libsox.so" in lines[task] and "apt-get install libsox-dev" in lines[task]
    assert "CANNOT RUN" not in lines["IC"]  # IC reads through torchaudio.load: unaffected

    # a real sweep stops these tasks before any runner starts, and says why
    real = _sweep(tmp_path, "--tasks", "KS", env=hidden)
    assert real.returncode == 1 and "KS cannot run" in real.stderr and "libsox-dev" in real.stderr
    assert not list((tmp_path / "exp").rglob("run.log"))


@pytest.mark.stock_only
@needs_sox_extension
def test_plan_runs_the_sox_tasks_where_the_extension_loads(tmp_path):
    plan = _sweep(tmp_path, "--dry-run", env={})
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert not any("libsox" in line for line in _task_lines(plan.stdout).values()), plan.stdout
