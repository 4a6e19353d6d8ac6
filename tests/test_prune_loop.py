"""``robustdistiller prune`` runs the training loop pretraining runs (``train/runner.py``): two-process gloo DDP
under torchrun keeps every rank's weights, gates and multipliers identical, and a run killed (SIGKILL) in stage 1
and again in stage 2 resumes to the same losses, bit for bit, as an uninterrupted one."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
import torch

from pretrain_helpers import cli, cli_popen, make_world, write_recipe
from prune_helpers import prune_recipe
from robustdistiller_upstream.config import from_dict
from robustdistiller_upstream.prune.train import PruneConfig, PruneRecipe
from robustdistiller_upstream.train.runner import Trainer

TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
DIGESTS = re.compile(r"rank (\d)/2, (\w+) step (\d+): parameter digests (.+)$", re.M)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune_loop")
    return root, make_world(root, n_speakers=2, n_utterances=4)


def _records(exp: Path) -> dict[tuple[str, int], dict]:
    return {(r["stage"], r["step"]): r for r in map(json.loads, (exp / "log.jsonl").read_text().splitlines())}


def test_ranks_keep_identical_weights_gates_and_multipliers(world):
    root, paths = world
    path = write_recipe(root / "ddp.yaml", prune_recipe(paths, robust=False, prune_stage={"steps": 5},
                                                        final_stage={"steps": 1}, run={"save_every": 0}))
    result = cli("prune", "-c", str(path), "-n", "ddp", cwd=root, launcher=TORCHRUN)
    assert result.returncode == 0, result.stderr[-3000:]
    digests = {(int(rank), stage, int(step)): groups for rank, stage, step, groups in DIGESTS.findall(result.stderr)}
    assert set(digests) == {(r, "prune", 5) for r in (0, 1)} | {(r, "final", 1) for r in (0, 1)}
    assert [group.split("=")[0] for group in digests[0, "prune", 5].split()] == ["main", "log_alpha", "lambda"]
    assert digests[0, "prune", 5] == digests[1, "prune", 5]
    assert digests[0, "final", 1] == digests[1, "final", 1]
    log = _records(root / "exp" / "ddp")
    assert log["prune", 5]["lambda1"] != 0.0 and log["prune", 5]["sparsity_expected"] != log["prune", 1][
        "sparsity_expected"]  # the multipliers and gates did move


def _kill_after(proc, exp: Path, name: str) -> None:
    """SIGKILLs ``proc`` as soon as ``exp/name`` exists (asserting it was still running)."""
    deadline = time.monotonic() + 600  # a hang guard only: a loaded CI machine is slow
    while not (exp / name).exists():
        assert proc.poll() is None, f"the run ended before {name}"
        assert time.monotonic() < deadline, f"no {name} after 600 s"
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended right after {name}"
    proc.kill()
    proc.wait()


def test_kill_in_each_stage_then_resume_gives_the_same_losses(world):
    root, paths = world
    recipe = prune_recipe(paths, robust=True, prune_stage={"steps": 4}, final_stage={"steps": 4},
                          run={"max_keep": 0})
    path = write_recipe(root / "kill.yaml", recipe)
    Trainer(PruneRecipe(from_dict(PruneConfig, recipe)), root / "exp" / "full").fit()  # in process: one start-up less
    exp = root / "exp" / "killed"
    _kill_after(cli_popen("prune", "-c", str(path), "-n", "killed", cwd=root), exp, "resume-step2.pt")  # stage 1
    assert not (exp / "pruned.pth").exists()
    _kill_after(cli_popen("prune", "-n", "killed", "--resume", cwd=root), exp, "resume-step6.pt")  # stage 2, step 2
    assert (exp / "pruned.pth").exists() and not (exp / "final.pth").exists()
    Trainer(PruneRecipe(from_dict(PruneConfig, recipe)), exp, resume=True).fit()  # the last resume in process

    a, b = _records(root / "exp" / "full"), _records(exp)
    assert list(b) == [("prune", s) for s in range(1, 5)] + [("final", s) for s in range(1, 5)]
    assert {k: r["loss"] for k, r in a.items()} == {k: r["loss"] for k, r in b.items()}  # bitwise
    terms = lambda r: {k: v for k, v in r.items() if k != "seconds_per_step"}  # noqa: E731
    assert [terms(r) for r in a.values()] == [terms(r) for r in b.values()]
    whole, again = (torch.load(e / "final.pth", weights_only=True) for e in (root / "exp" / "full", exp))
    assert whole["config"] == again["config"]
    assert all(torch.equal(whole["state_dict"][k], again["state_dict"][k]) for k in whole["state_dict"])
    assert not list(exp.rglob(".*.tmp"))  # no half-written file of the killed runs is left


def test_the_loop_is_one_module():
    """No module outside train/runner.py (and the guard it calls) runs backward, steps an optimizer or clips:
    ``robustdistiller prune`` and ``pretrain`` both train through ``Trainer``."""
    package = Path(Trainer.__module__.replace(".", "/")).parents[1]
    root = Path(__file__).resolve().parents[1]
    calls = re.compile(r"\.backward\(|\bscaler\.step\(|optimizer\.step\(|clip_grad_norm_\(")
    found = {str(p.relative_to(root)) for p in (root / package).rglob("*.py") if calls.search(p.read_text())}
    assert found == {"robustdistiller_upstream/train/runner.py", "robustdistiller_upstream/train/guard.py"}
