"""Pretraining on a real SLURM (``tests/slurm_cluster.py``: one node, slurmctld + slurmd + slurmdbd):
``robustdistiller pretrain --launcher slurm`` submits with sbatch; ``robustdistiller jobs`` shows the states sacct
reports; SIGUSR2 (what SLURM sends ``signal_delay_s`` before the time limit) checkpoints, submitit requeues, SLURM
restarts the job and it resumes with the losses of an uninterrupted run, bit for bit; a 2-task job keeps the ranks
identical.

The signal is sent with ``scancel --signal=USR2`` (what SLURM itself sends at the time limit, minus the wait: SLURM
checks time limits every 30 s or so, and a training long enough to meet one would take minutes here)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pretrain_helpers import cli, make_world, recipe, write_recipe
from slurm_cluster import SlurmCluster

pytest.importorskip("submitit")

from cluster_runs import assert_ranks_in_step, job_record, losses  # noqa: E402

from robustdistiller_upstream.cluster.state import read_state  # noqa: E402

pytestmark = pytest.mark.one_stack  # launcher code, the same on both stacks
STEPS = 30  # a few seconds of training: long enough to signal it after its first resume file


def _shown(exp: Path) -> str:
    """The status ``robustdistiller jobs EXP`` prints for the run (from submitit's files, else sacct)."""
    result = cli("jobs", str(exp), cwd=exp.parent)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[2].split()[2]


def _status(exp: Path) -> str:
    """What ``robustdistiller jobs`` reads (``_shown`` without starting a process each time)."""
    return read_state(exp)[1]["runs"][0]["status"]


def _wait_finished(cluster: SlurmCluster, job_id: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while (state := cluster.state(job_id)) not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY"):
        assert time.monotonic() < deadline, f"job {job_id} still {state}:\n{cluster.run('squeue')}"
        time.sleep(1)
    return state


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_pretrain")
    world = make_world(root, n_speakers=2, n_utterances=4)
    path = write_recipe(root / "tiny.yaml", recipe(world, robust=True, run={"total_steps": STEPS, "save_every": 2}))
    return root, path


def test_usr2_checkpoints_slurm_requeues_and_the_job_resumes_exactly(slurm, world):
    root, path = world
    full = cli("pretrain", "-c", str(path), "-n", "full", cwd=root)  # uninterrupted, here
    assert full.returncode == 0, full.stderr[-3000:]

    exp = root / "exp" / "limited"
    submitted = cli("pretrain", "-c", str(path), "-n", "limited", "--launcher", "slurm", "--slurm", "time=10",
                    cwd=root)
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    job = job_record(exp)
    assert job["status"] == "queued" and job["job_id"].isdigit()
    assert slurm.state(job["job_id"]) in ("PENDING", "RUNNING")  # a real SLURM job
    deadline = time.monotonic() + 300
    while not (exp / "resume-step2.pt").exists():
        assert time.monotonic() < deadline, f"no first resume file: {slurm.state(job['job_id'])}"
        time.sleep(0.05)
    slurm.run("scancel", "--signal=USR2", job["job_id"])  # what SLURM sends signal_delay_s before the limit
    seen = set()
    while slurm.state(job["job_id"]) != "COMPLETED":
        seen.add(_status(exp))  # queued while SLURM holds the requeued job, running again after
        time.sleep(0.2)
        assert time.monotonic() < deadline + 300, f"not done: {slurm.state(job['job_id'])}"
    assert {"queued", "running"} <= seen and "failed" not in seen, seen
    assert _shown(exp) == "done"

    requeues = slurm.run("sacct", "-D", "-X", "-n", "-P", "-o", "State", "-j", job["job_id"]).split()
    assert requeues == ["REQUEUED", "COMPLETED"]  # one allocation stopped and requeued, one that finished
    log = Path(job["log"]).read_text() + Path(job["log"]).with_suffix(".err").read_text()
    assert "Caught signal SIGUSR2" in log and f"Requeued job {job['job_id']}" in log  # submitit's hook + requeue
    assert "resumed from" in log and "resume-step" in log
    limited = losses(exp)
    assert sorted(limited) == list(range(1, STEPS + 1))
    assert limited == losses(root / "exp" / "full")  # bitwise, across SLURM's requeue


def test_two_task_slurm_job_keeps_parameters_identical_across_ranks(slurm, world):
    """Also: the --slurm options this cluster can honour (exclusive, mem, a free-form sbatch option) reach SLURM."""
    root, path = world
    options = "tasks_per_node=2,time=10,exclusive=true,mem_gb=0.5,additional_parameters.comment=rd-ranks"
    result = cli("pretrain", "-c", str(path), "-n", "ddp", "-o", "run.total_steps=3,run.save_every=0",
                 "--launcher", "slurm", "--slurm", options, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    exp = root / "exp" / "ddp"
    job = job_record(exp)
    assert _wait_finished(slurm, job["job_id"]) == "COMPLETED", Path(job["log"]).with_suffix(".err").read_text()
    steps = slurm.run("sacct", "-n", "-P", "-o", "JobID,NTasks,State", "-j", job["job_id"]).split()
    assert f"{job['job_id']}.0|2|COMPLETED" in steps  # one srun step of two tasks
    shown = slurm.run("scontrol", "show", "job", job["job_id"]).split()
    assert {"OverSubscribe=NO", "MinMemoryNode=512M", "Comment=rd-ranks", "NumTasks=2"} <= set(shown), shown
    assert_ranks_in_step(exp, job["job_id"], 3)
    assert _shown(exp) == "done"
