"""The SUPERB sweep as cluster jobs (``run_superb.sh --launcher local-submitit``: submitit's LocalExecutor, the
job objects ``--launcher slurm`` submits) on the small spoken IC corpus: the same results table as the local
launcher, job ids and logs in the sweep state, and one build of a condition copy that two sweeps need at once.

The sweeps run IC alone (one training, two evaluations): the launchers are the same code for every task, and
test_superb_e2e.py runs each task through the local one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustdistiller_upstream.locks import exclusive
from system_packages import skip_without_espeak

pytest.importorskip("submitit")

from cluster_runs import IC_OVERRIDES, SWEEP_CONDITIONS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TASK = "IC"


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHON=sys.executable, SUPERB_NUM_WORKERS="0", OMP_NUM_THREADS="1")


def _sweep(data: Path, conditions: Path, exp: Path, *extra: str, tasks: str = TASK) -> list[str]:
    command = ["bash", str(REPO / "run_superb.sh"), "--upstream", "fbank_no_cmvn", "--tasks", tasks,
               "--conditions", str(conditions), "--data-root", str(data), "--exp-root", str(exp), *extra]
    for override in IC_OVERRIDES:
        command += ["-o", override]
    return command


def _run(command: list[str]) -> str:
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{command[:4]} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def _results(tag_dir: Path) -> dict[tuple[str, str], dict]:
    rows = (json.loads(p.read_text()) for p in tag_dir.glob("*/*/result.json"))
    return {(r["task"], r["condition"]): r["metrics"] for r in rows}


def _builds(copy: Path) -> int:
    """Builds of a condition copy: each writes one header line to its contaminate.log."""
    return sum(line.startswith("# ") for line in (copy / "contaminate.log").read_text().splitlines())


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    skip_without_espeak()
    from robustdistiller_upstream.demo.superb_corpora import write_fluent_commands

    root = tmp_path_factory.mktemp("superb_data")
    write_fluent_commands(root)
    conditions = root / "conditions.yaml"
    conditions.write_text(SWEEP_CONDITIONS)
    return root, conditions


def test_readme_sweep_command_plans_slurm_jobs(corpora, tmp_path):
    data, conditions = corpora
    plan = _run(_sweep(data, conditions, tmp_path / "exp", "--launcher", "slurm", "--slurm",
                       "partition=gpu,gpus_per_node=1,time=1440", "--max-parallel", "24", "--dry-run"))
    assert "-d fluent_commands" in plan and "CANNOT RUN" not in plan.split("# sbatch")[0].split("IC ")[1]
    assert "#SBATCH --gpus-per-node=1" in plan and "#SBATCH --ntasks-per-node=1" in plan
    assert "#SBATCH --time=1440" in plan and "#SBATCH --requeue" in plan and "#SBATCH --signal=USR2@120" in plan
    assert not (tmp_path / "exp").exists()
    local = subprocess.run(_sweep(data, conditions, tmp_path / "exp", "--max-parallel", "2"), env=_env(),
                           capture_output=True, text=True)
    assert local.returncode == 2 and "--max-parallel caps cluster jobs" in local.stderr


def _wait_for_lock(logs: list[Path], what: str, sweeps: list[subprocess.Popen]) -> None:
    """Until each of ``logs`` (a glob's files, or one file) says it waits for the lock of ``what``."""
    deadline = time.monotonic() + 600
    while not all(any(f"waiting for condition copy {what}" in f.read_text() for f in log.parent.glob(log.name))
                  for log in logs):
        assert all(s.poll() is None for s in sweeps) and time.monotonic() < deadline, f"no wait for {what}"
        time.sleep(0.5)


@pytest.mark.one_stack  # the launcher is the same code on both stacks
def test_two_sweeps_at_once_local_submitit_and_local_build_each_copy_once_and_agree(corpora, tmp_path):
    """Two sweeps started together on one --cond-root: one through local-submitit (every run a job), one through
    today's local launcher. The test holds the task's copy lock until both sweeps wait for it, so the two
    really race for it."""
    from robustdistiller_upstream.superb.sweep import Sweep, SweepConfig

    data, conditions = corpora
    conds = tmp_path / "conditions"
    cluster_exp, local_exp = tmp_path / "cluster", tmp_path / "local"
    raced = conds / TASK / "white_snr5"
    with exclusive(raced / ".lock"):
        with open(tmp_path / "local.err", "w") as local_err:
            sweeps = [subprocess.Popen(_sweep(data, conditions, cluster_exp, "--tag", "fbank", "--cond-root",
                                              str(conds), "--launcher", "local-submitit", "--max-parallel", "2"),
                                       env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                      subprocess.Popen(_sweep(data, conditions, local_exp, "--tag", "fbank", "--cond-root",
                                              str(conds)), env=_env(), stdout=subprocess.DEVNULL, stderr=local_err)]
        _wait_for_lock([cluster_exp / "fbank" / "jobs" / "*_log.err", tmp_path / "local.err"], f"{TASK}/white_snr5",
                       sweeps)
        assert not (raced / "contaminate.log").exists()
    for sweep in sweeps:
        assert sweep.wait(timeout=900) == 0, (tmp_path / "local.err").read_text()[-3000:]
    assert _builds(raced) == 1  # built once, whichever sweep got there first

    summary = json.loads((cluster_exp / "fbank" / "summary.json").read_text())
    kinds = {(r["task"], r["kind"], r["condition"]) for r in summary["runs"]}
    assert kinds >= {(TASK, "train", ""), (TASK, "evaluate", "clean"), (TASK, "evaluate", "white_snr5")}
    assert {r["status"] for r in summary["runs"]} == {"done"}
    assert all(r["job_id"] and Path(r["log"]).is_file() for r in summary["runs"])
    assert len({r["job_id"] for r in summary["runs"]}) == len(summary["runs"])  # each copy, training, evaluation
    # the checkpoint each job's training picked and its evaluations used, as the jobs returned it
    assert {r["checkpoint_kind"] for r in summary["runs"] if r["kind"] != "condition"} == {"dev-best"}
    shown = subprocess.run([sys.executable, "-m", "robustdistiller_upstream.cli", "jobs", str(cluster_exp / "fbank")],
                           env=_env(), capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert f"{len(summary['runs'])} done" in shown.stdout and summary["runs"][0]["log"] in shown.stdout

    assert _results(local_exp / "fbank") == _results(cluster_exp / "fbank") != {}
    tables = []
    for exp in (cluster_exp, local_exp):
        _run([sys.executable, "-m", "robustdistiller_upstream.cli", "report", str(exp / "fbank"), "--out",
              str(exp / "report")])
        tables.append((exp / "report" / "results.md").read_text())
    assert tables[0] == tables[1] and "white_snr5" in tables[0]

    # the raced copy has the bytes of a copy built alone
    alone = Sweep(SweepConfig(upstream="fbank_no_cmvn", tasks=TASK, conditions=str(conditions),
                              only_conditions=["white_snr5"], data_root=str(data), exp_root=str(tmp_path / "ref"),
                              cond_root=str(tmp_path / "ref_conditions")))
    alone.condition_copy(alone.plans[0], alone.conditions[0])
    reference = tmp_path / "ref_conditions" / TASK / "white_snr5" / "out"
    wavs = sorted(p.relative_to(reference) for p in reference.rglob("*.wav"))
    assert wavs and wavs == sorted(p.relative_to(raced / "out") for p in (raced / "out").rglob("*.wav"))
    assert all((raced / "out" / w).read_bytes() == (reference / w).read_bytes() for w in wavs)

    jobs_before = sorted(p.name for p in (cluster_exp / "fbank" / "jobs").iterdir())
    _run(_sweep(data, conditions, cluster_exp, "--tag", "fbank", "--cond-root", str(conds),
                "--launcher", "local-submitit"))  # a rerun: nothing left to submit
    rerun = json.loads((cluster_exp / "fbank" / "summary.json").read_text())
    assert {r["status"] for r in rerun["runs"]} == {"skipped"}
    done_by = {(r["task"], r["kind"], r["condition"]): r["job_id"] for r in summary["runs"]}
    assert all(r["job_id"] == done_by[(r["task"], r["kind"], r["condition"])] for r in rerun["runs"])
    assert sorted(p.name for p in (cluster_exp / "fbank" / "jobs").iterdir()) == jobs_before


@pytest.mark.one_stack  # the launcher is the same code on both stacks
def test_failed_jobs_are_recorded_block_what_needs_them_and_the_rest_goes_on(tmp_path):
    """SID without its data: the training job fails in the stock runner, the condition-copy job fails on its own
    (nothing to contaminate), the evaluations that needed them are blocked; reasons and logs land in the sweep state."""
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text(SWEEP_CONDITIONS)
    (tmp_path / "VoxCeleb1").mkdir()
    (tmp_path / "VoxCeleb1" / "iden_split.txt").write_text("")
    exp = tmp_path / "exp"
    result = subprocess.run(_sweep(tmp_path, conditions, exp, "--launcher", "local-submitit", tasks="SID"),
                            env=_env(), capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-3000:]
    runs = {(r["kind"], r["condition"]): r for r in
            json.loads((exp / "fbank_no_cmvn" / "summary.json").read_text())["runs"]}
    assert runs[("train", "")]["status"] == "failed" and "run.log" in runs[("train", "")]["reason"]
    assert runs[("train", "")]["reason"].endswith(f"(job log {runs[('train', '')]['log']})")
    assert runs[("condition", "white_snr5")]["status"] == "failed"  # ran although the training failed
    assert "contaminate failed for SID/white_snr5" in runs[("condition", "white_snr5")]["reason"]
    assert {runs[("evaluate", c)]["status"] for c in ("clean", "white_snr5")} == {"blocked"}
    assert not runs[("evaluate", "clean")]["job_id"]  # never submitted
