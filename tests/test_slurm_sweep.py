"""The SUPERB sweep on a real SLURM (``tests/slurm_cluster.py``): condition copies, trainings and evaluations as sbatch
jobs, evaluations held by ``afterok`` that SLURM resolves, and SLURM (not the sweep process) as the source of truth:
a sweep killed while its jobs run is rerun, finds them by the ids in ``summary.json`` and follows them; a job
cancelled with ``scancel`` is recorded cancelled and submitted again; a training that fails while no sweep watches
leaves its evaluations held for good (``DependencyNeverSatisfied``), which ``robustdistiller jobs`` shows as blocked
and a rerun cancels instead of leaving them pending.

IC on the tests' small spoken corpus, two conditions (one training, one condition copy, two evaluations)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from superb_runs import runner_env, sweep_command
from system_packages import skip_without_espeak

pytest.importorskip("submitit")

from cluster_runs import IC_OVERRIDES, SWEEP_CONDITIONS  # noqa: E402

pytestmark = pytest.mark.one_stack  # launcher code, the same on both stacks
SLURM = ["--launcher", "slurm", "--slurm", "time=10,poll_s=1"]
Key = tuple[str, str]  # (kind, condition)


def _runs(tag_dir: Path) -> dict[Key, dict]:
    return {(r["kind"], r["condition"]): r for r in json.loads((tag_dir / "summary.json").read_text())["runs"]}


def _start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(command, env=runner_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for(sweep: subprocess.Popen, tag_dir: Path, log: Path, check) -> dict[Key, dict]:
    """Until ``check(runs)`` holds for the sweep state (the sweep still running); the runs then."""
    deadline = time.monotonic() + 300
    while True:
        runs = _runs(tag_dir) if (tag_dir / "summary.json").is_file() else {}
        if check(runs):
            return runs
        assert sweep.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def _kill_when_submitted(sweep: subprocess.Popen, tag_dir: Path, log: Path, kinds: set[Key]) -> dict[Key, dict]:
    """Waits until ``kinds`` have job ids in the sweep state, then kills the sweep (its jobs go on)."""
    runs = _wait_for(sweep, tag_dir, log, lambda runs: all(runs.get(k, {}).get("job_id") for k in kinds))
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    return runs


def _jobs(tag_dir: Path) -> dict[Key, str]:
    """``robustdistiller jobs``' status per run (from submitit's files, sacct and squeue)."""
    shown = subprocess.run([sys.executable, "-m", "robustdistiller_upstream.cli", "jobs", str(tag_dir)],
                           env=runner_env(), capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    statuses = {}
    for line in shown.stdout.splitlines()[2:2 + len(_runs(tag_dir))]:  # a line per run, after path and header
        cells = line.split()  # task, kind, [condition], status, job, log
        condition = cells[2] if cells[1] != "train" else ""
        statuses[(cells[1], condition)] = cells[3 if condition else 2]
    return statuses


def _submitted(tag_dir: Path, name: str = "") -> list[str]:
    """Ids of the sweep's jobs submitted with sbatch (submitit keeps each one's script), of job name ``name``."""
    scripts = sorted((tag_dir / "jobs").glob("*_submission.sh"), key=lambda p: int(p.name.split("_")[0]))
    return [p.name.split("_")[0] for p in scripts if f"#SBATCH --job-name={name}\n" in p.read_text() or not name]


def _dependency(tag_dir: Path, job_id: str) -> str:
    script = (tag_dir / "jobs" / f"{job_id}_submission.sh").read_text()
    return next((line.split("=", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH --dependency=")),
                "")


@pytest.fixture(scope="module")
def conditions(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("slurm_sweep") / "conditions.yaml"
    path.write_text(SWEEP_CONDITIONS)
    return path


def test_killed_sweep_is_rerun_finds_its_jobs_and_resubmits_the_cancelled_one(slurm, conditions, tmp_path):
    skip_without_espeak()
    from robustdistiller_upstream.demo.superb_corpora import write_fluent_commands

    write_fluent_commands(tmp_path / "data")
    exp, tag = tmp_path / "exp", "slurm"
    tag_dir = exp / tag
    command = sweep_command(tmp_path / "data", exp, conditions, "IC", "--tag", tag, *SLURM, overrides=IC_OVERRIDES)
    first, log = _start(command, tmp_path / "first.log"), tmp_path / "first.log"
    every = {("train", ""), ("condition", "white_snr5"), ("evaluate", "clean"), ("evaluate", "white_snr5")}
    clean = ("evaluate", "clean")
    ids = {k: r["job_id"] for k, r in _wait_for(first, tag_dir, log, lambda runs: all(
        runs.get(k, {}).get("job_id") for k in every)).items()}
    # the evaluations wait in SLURM's queue on afterok, not in the sweep
    assert _dependency(tag_dir, ids[clean]) == f"afterok:{ids[('train', '')]}"
    assert _dependency(tag_dir, ids[("evaluate", "white_snr5")]) == \
        f"afterok:{ids[('train', '')]}:{ids[('condition', 'white_snr5')]}"
    assert not _dependency(tag_dir, ids[("train", "")])

    white = ("evaluate", "white_snr5")
    slurm.run("scontrol", "hold", ids[white])  # still queued when the rerun starts, however fast the rest runs
    slurm.run("scancel", ids[clean])
    cancelled = _wait_for(first, tag_dir, log, lambda runs: runs[clean]["status"] != "queued")[clean]
    assert cancelled["status"] == "cancelled" and "cancelled (scancel)" in cancelled["reason"]  # by the sweep
    assert slurm.state(ids[clean]) == "CANCELLED"
    _kill_when_submitted(first, tag_dir, log, every)  # the sweep dies; its other jobs go on
    shown = _jobs(tag_dir)
    assert shown[clean] == "cancelled"
    assert shown[("train", "")] in ("queued", "running", "done")

    rerun_log = tmp_path / "rerun.log"
    rerun = _start(command, rerun_log)
    _wait_for(rerun, tag_dir, rerun_log, lambda runs: runs[clean]["job_id"] != ids[clean])  # resubmitted
    slurm.run("scontrol", "release", ids[white])
    assert rerun.wait(timeout=900) == 0, rerun_log.read_text()[-3000:]
    assert f"job {ids[white]} still queued" in rerun_log.read_text()  # followed by id, not submitted again
    after = _runs(tag_dir)
    # what finished between the kill and the rerun is skipped (a finished copy has no row then), the rest done
    for key in every - {clean}:  # followed by id, not submitted again
        row = after.get(key, {"status": "skipped", "job_id": ids[key]})
        assert row["status"] in ("done", "skipped") and row["job_id"] == ids[key], (key, row)
    assert after[clean]["status"] == "done"
    resubmitted = after[clean]["job_id"]
    assert resubmitted != ids[clean] and slurm.state(resubmitted) == "COMPLETED"
    assert _submitted(tag_dir, f"{tag}-IC-train") == [ids[("train", "")]]  # one training job in all
    assert {slurm.state(ids[key]) for key in every - {clean}} == {"COMPLETED"}
    assert all((tag_dir / "IC" / c / "result.json").is_file() for c in ("clean", "white_snr5"))
    assert set(_jobs(tag_dir).values()) <= {"done", "skipped"}

    again = subprocess.run(command, env=runner_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {row["status"] for row in _runs(tag_dir).values()} == {"skipped"}
    assert _submitted(tag_dir) == sorted([*ids.values(), resubmitted], key=int)  # nothing new
    slurm.wait_idle()


def test_failed_training_holds_its_evaluations_and_a_rerun_cancels_them(slurm, conditions, tmp_path):
    """SID without its data: the training job fails in the stock runner while no sweep watches; SLURM holds the
    evaluations for good (DependencyNeverSatisfied); the rerun cancels them, submits the training again, which
    fails again, and its evaluations are recorded blocked; nothing is left in SLURM's queue."""
    (tmp_path / "VoxCeleb1").mkdir()
    (tmp_path / "VoxCeleb1" / "iden_split.txt").write_text("")
    exp, tag = tmp_path / "exp", "failing"
    tag_dir = exp / tag
    command = sweep_command(tmp_path, exp, conditions, "SID", "--tag", tag, *SLURM)
    first = _start(command, tmp_path / "first.log")
    evaluations = {("evaluate", "clean"), ("evaluate", "white_snr5")}
    ids = {k: r["job_id"] for k, r in _kill_when_submitted(first, tag_dir, tmp_path / "first.log",
                                                           {("train", ""), *evaluations}).items()}
    deadline = time.monotonic() + 300
    while slurm.state(ids[("train", "")]) != "FAILED" or any(
            _jobs(tag_dir)[key] != "blocked" for key in evaluations):  # squeue's DependencyNeverSatisfied
        assert time.monotonic() < deadline, (slurm.state(ids[("train", "")]), _jobs(tag_dir))
        time.sleep(1)
    assert {slurm.state(ids[key]) for key in evaluations} == {"PENDING"}  # held, for good, until cancelled

    rerun = subprocess.run(command, env=runner_env(), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 1, rerun.stderr[-3000:]
    assert {slurm.state(ids[key]) for key in evaluations} == {"CANCELLED"}  # the rerun cancelled them
    runs = _runs(tag_dir)
    assert runs[("train", "")]["status"] == "failed" and runs[("train", "")]["job_id"] != ids[("train", "")]
    assert "run.log" in runs[("train", "")]["reason"]
    for key in evaluations:  # the training's (or white_snr5's copy's) failure, seen by the sweep or by SLURM
        assert runs[key]["status"] == "blocked" and ("failed: " in runs[key]["reason"] or
                                                     "DependencyNeverSatisfied" in runs[key]["reason"])
        if runs[key]["job_id"]:  # queued on afterok, then cancelled by the sweep
            assert slurm.state(runs[key]["job_id"]) == "CANCELLED"
    assert not slurm.run("squeue", "-h", "-o", "%i").strip()  # nothing left pending forever
