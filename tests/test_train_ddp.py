"""Two-process gloo DDP through torchrun: ranks read different batches and keep identical parameters."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch

from pretrain_helpers import cli, make_world, recipe, run_group, write_recipe

WORKER = """
import os, sys, torch
from robustdistiller_upstream.config import load_config
from robustdistiller_upstream.train.config import PretrainConfig
from robustdistiller_upstream.train.recipe import PretrainRecipe
from robustdistiller_upstream.train.runner import Trainer
trainer = Trainer(PretrainRecipe(load_config(PretrainConfig, sys.argv[1])), sys.argv[2])
first = next(trainer._batches()).paths
trainer.stream.load_state_dict({"epoch": 0, "position": 0})
trainer.fit()
torch.save({"params": trainer.task.state_dict(), "first_batch": first}, f"{sys.argv[2]}/rank{os.environ['RANK']}.pt")
"""

TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    world = make_world(root, n_speakers=2, n_utterances=4)
    path = write_recipe(root / "tiny.yaml", recipe(world, robust=True, run={"total_steps": 3, "save_every": 0}))
    return root, path


def test_ranks_keep_identical_parameters(setup):
    root, path = setup
    (root / "worker.py").write_text(WORKER)
    result = run_group([*TORCHRUN, str(root / "worker.py"), str(path), str(root / "exp")], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(root / "exp" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert rank0["first_batch"] != rank1["first_batch"]  # each rank its own share of the data
    initial = torch.load(root / "exp" / "resume-step3.pt", weights_only=True)["task"]
    for key, value in rank0["params"].items():
        assert torch.equal(value, rank1["params"][key]), key
        assert torch.equal(value, initial[key]), key  # what rank 0 saved
    shutil.rmtree(root / "exp")


def test_cli_runs_under_torchrun(setup):
    root, path = setup
    result = cli("pretrain", "-c", str(path), "-n", "cli", "-o", "run.total_steps=2", cwd=root, launcher=TORCHRUN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (root / "exp" / "cli" / "student-step2.ckpt").exists()
    assert not list((root / "exp" / "cli").glob("rank*"))
