"""What the launcher tests share, on submitit's local executor and on a real SLURM: the pretraining run's losses
and job record, the check that a 2-task job kept its ranks in step, and the smallest IC sweep."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from submitit.core.utils import JobPaths, pickle_load

from robustdistiller_upstream.train.digest import parameters_digest

# the sweep tests' conditions and the smallest IC training that ends with a best checkpoint (one dev evaluation
# after 20 steps)
SWEEP_CONDITIONS = """\
conditions:
  clean: {spec: clean, seed: 0}
  white_snr5: {spec: "noise:white:snr=5", seed: 0}
"""
IC_OVERRIDES = ["runner.total_steps=20", "runner.eval_step=20", "runner.save_step=20", "runner.log_step=10",
                "optimizer.lr=1.0e-3", "IC:downstream_expert.datarc.train_batch_size=8"]


def losses(exp: Path) -> dict[int, float]:
    """``{step: loss}`` of a pretraining run's ``log.jsonl``."""
    return {r["step"]: r["loss"] for r in map(json.loads, (exp / "log.jsonl").read_text().splitlines())}


def job_record(exp: Path) -> dict:
    """The run's job as ``jobs.json`` records it (id, status, log)."""
    return json.loads((exp / "jobs.json").read_text())["runs"][0]


def assert_ranks_in_step(exp: Path, job_id: str, steps: int) -> tuple[dict, dict]:
    """Both tasks of a 2-task job succeeded at ``steps`` with the parameters of the saved resume state, in one
    process group of two; returns the two ranks' results."""
    ranks = [pickle_load(JobPaths(exp / "jobs", job_id, task).result_pickle) for task in (0, 1)]
    assert [outcome for outcome, _ in ranks] == ["success", "success"]
    rank0, rank1 = (value for _, value in ranks)
    assert (rank0["rank"], rank1["rank"], rank0["step"], rank1["step"]) == (0, 1, steps, steps)
    saved = torch.load(exp / f"resume-step{steps}.pt", weights_only=True)
    assert saved["world_size"] == 2  # one process group over the job's two tasks
    assert rank0["parameters"] == rank1["parameters"] == parameters_digest(saved["task"])
    return rank0, rank1
