"""Pretraining as a submitit job (``--launcher local-submitit``: submitit's LocalExecutor, real processes, the job
object ``--launcher slurm`` submits): 2-task DDP keeps ranks identical; the time-limit signal checkpoints,
requeues and resumes exactly; the sbatch script of the README's command is checked without submitting it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pretrain_helpers import cli, make_world, recipe, write_recipe

pytest.importorskip("submitit")

from cluster_runs import assert_ranks_in_step, job_record, losses  # noqa: E402


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    world = make_world(root, n_speakers=2, n_utterances=4)
    path = write_recipe(root / "tiny.yaml", recipe(world, robust=True, run={"total_steps": 8, "save_every": 2}))
    return root, path


def test_two_task_job_keeps_parameters_identical_across_ranks(world):
    root, path = world
    result = cli("pretrain", "-c", str(path), "-n", "ddp", "-o", "run.total_steps=3,run.save_every=0",
                 "--launcher", "local-submitit", "--slurm", "tasks_per_node=2,time=10", cwd=root)
    exp = root / "exp" / "ddp"
    assert result.returncode == 0, result.stderr[-3000:] + (exp / "jobs").as_posix()
    job = job_record(exp)
    assert job["status"] == "done" and Path(job["log"]).is_file()
    rank0, rank1 = assert_ranks_in_step(exp, job["job_id"], 3)
    assert rank0["checkpoint"].endswith("student-step3.ckpt") and not rank1["checkpoint"]

    shown = cli("jobs", str(exp), cwd=root)
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.startswith("ddp "))
    assert "pretrain" in line and " done " in line and job["job_id"] in line and job["log"] in line


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.one_stack  # the launcher is the same code on both stacks
def test_time_limit_requeues_the_job_and_it_resumes_exactly(world):
    root, path = world
    full = cli("pretrain", "-c", str(path), "-n", "full", cwd=root)  # today's launcher, uninterrupted
    assert full.returncode == 0, full.stderr[-3000:]

    exp = root / "exp" / "limited"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    submitter = subprocess.Popen([sys.executable, "-m", "robustdistiller_upstream.cli", "pretrain", "-c", str(path),
                                  "-n", "limited", "--launcher", "local-submitit", "--slurm", "time=10"],
                                 cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (exp / "resume-step2.pt").exists():
            assert submitter.poll() is None and time.monotonic() < deadline, "no first resume file"
            time.sleep(0.02)
        # what SLURM (and submitit's local controller) sends signal_delay_s before the time limit, to the task
        (task,) = _children(int(job_record(exp)["job_id"]))
        os.kill(task, signal.SIGUSR2)
        out, _ = submitter.communicate(timeout=240)
    finally:
        if submitter.poll() is None:
            os.killpg(submitter.pid, signal.SIGKILL)
    assert submitter.returncode == 0, out[-3000:]
    job = job_record(exp)
    log = Path(job["log"]).read_text() + Path(job["log"]).with_suffix(".err").read_text()
    assert "this job is timed-out" in log and "Requeued job" in log  # submitit's checkpoint + requeue
    assert "resumed from" in log  # the requeued job started from the newest resume file
    assert job["status"] == "done"
    again = cli("pretrain", "-c", str(path), "-n", "limited", "--launcher", "local-submitit", cwd=root)
    assert again.returncode == 2 and "already holds a run: pass --resume" in again.stderr  # refused, not queued
    limited = losses(exp)
    assert sorted(limited) == list(range(1, 9))
    assert limited == losses(root / "exp" / "full")  # bitwise, across the requeue


def test_sbatch_script_of_the_readme_command(world):
    root, _ = world
    result = cli("pretrain", "-c", str(REPO / "pretrain" / "rd_wavlm.yaml"), "-n", "rd_wavlm", "--launcher", "slurm",
                 "--slurm", "nodes=2,gpus_per_node=8,partition=gpu,time=2880,account=myproj", "--dry-run", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    flags = {line.split("=")[0]: line.partition("=")[2] for line in result.stdout.splitlines()
             if line.startswith("#SBATCH")}
    assert flags["#SBATCH --nodes"] == "2" and flags["#SBATCH --gpus-per-node"] == "8"
    assert flags["#SBATCH --ntasks-per-node"] == "8"  # one DDP process per GPU: 16 in all
    assert flags["#SBATCH --partition"] == "gpu" and flags["#SBATCH --account"] == "myproj"
    assert flags["#SBATCH --time"] == "2880"
    assert flags["#SBATCH --signal"] == "USR2@120"  # the checkpoint hook's warning, 2 min before the limit
    assert "#SBATCH --requeue" in flags
    assert not any(key in result.stdout for key in ("--qos", "--constraint", "--exclusive", "--mem"))  # not asked
    jobs = root / "exp" / "rd_wavlm" / "jobs"
    assert flags["#SBATCH --output"] == f"{jobs}/%j_0_log.out"
    assert "srun --unbuffered" in result.stdout and "submitit.core._submit" in result.stdout
    assert not (root / "exp" / "rd_wavlm").exists()  # nothing submitted, nothing written

    bad = cli("pretrain", "-c", str(REPO / "pretrain" / "rd_wavlm.yaml"), "-n", "x", "--launcher", "slurm",
              "--slurm", "gpus=8", "--dry-run", cwd=root)
    assert bad.returncode == 2 and "--slurm: unknown key(s) ['gpus']" in bad.stderr


def test_sbatch_script_has_each_cluster_option(world):
    """account, qos, constraint, exclusive, mem and free-form sbatch options (``additional_parameters.KEY``), each
    in the script; what the launcher sets itself is refused as an additional parameter."""
    root, _ = world
    options = ("account=myproj,qos=high,constraint=a100,exclusive=true,mem_gb=32,additional_parameters.mail_type=END,"
               "additional_parameters.gres=gpu:a100:2")
    result = cli("pretrain", "-c", str(REPO / "pretrain" / "rd_wavlm.yaml"), "-n", "opts", "--launcher", "slurm",
                 "--slurm", options, "--dry-run", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    flags = [line for line in result.stdout.splitlines() if line.startswith("#SBATCH")]
    for flag in ("--account=myproj", "--qos=high", "--constraint=a100", "--exclusive", "--mem=32768MB",
                 "--mail-type=END", "--gres=gpu:a100:2", "--requeue"):
        assert f"#SBATCH {flag}" in flags, (flag, flags)
    assert not any(f.startswith(("#SBATCH --exclusive=", "#SBATCH --mem-per")) for f in flags)
    bad = cli("pretrain", "-c", str(REPO / "pretrain" / "rd_wavlm.yaml"), "-n", "x", "--launcher", "slurm",
              "--slurm", "additional_parameters.dependency=afterok:1", "--dry-run", cwd=root)
    assert bad.returncode == 2
    assert "--slurm: additional_parameters.dependency is set by the launcher or by its own key" in bad.stderr


def test_a_time_limit_too_short_for_the_signal_is_refused():
    """SLURM may send SIGUSR2 up to 30 s before signal_delay_s; measured on the test SLURM: time=1 with
    signal_delay_s=40 signalled the requeued job 4 s after it started, before submitit's handler, and it died."""
    from robustdistiller_upstream.cluster.slurm import parse_slurm_options
    from robustdistiller_upstream.errors import ConfigError

    with pytest.raises(ConfigError, match=r"time \(1 min\) must leave a minute beyond signal_delay_s \(40 s\)"):
        parse_slurm_options(["time=1,signal_delay_s=40"], "slurm")
    assert parse_slurm_options(["time=4"], "slurm").time == 4  # 120 s + 30 s + a minute fit in 4 minutes
    with pytest.raises(ConfigError, match="time"):
        parse_slurm_options(["time=3"], "slurm")
