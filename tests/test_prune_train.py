"""Prune + distill: real teacher (s3prl wavlm_local), real objective, real controller, in the training loop; and the
CLI end to end (resume after a kill and DDP: test_prune_loop.py)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from pretrain_helpers import make_world
from prune_helpers import batch, prune_recipe, write_teacher

from robustdistiller_upstream.config import from_dict
from robustdistiller_upstream.prune.checkpoint import load_pruned_checkpoint
from robustdistiller_upstream.prune.params import expected_num_params, num_params
from robustdistiller_upstream.prune.train import PruneConfig, PruneRecipe
from robustdistiller_upstream.s3prl_plugin.dpwavlm import robustdistiller_dpwavlm_local
from robustdistiller_upstream.train.data import Batch
from robustdistiller_upstream.train.runner import Trainer

CLI = str(Path(sys.executable).parent / "robustdistiller")
LAYERS = [0, 1, 2]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("prune_train"))


def test_prune_distill_steps_move_expected_sparsity_towards_target(world, tmp_path):
    world = {**world, "teacher": write_teacher("wavlm", tmp_path / "teacher.pt")}
    config = from_dict(PruneConfig, prune_recipe(world, robust=False, sparsity={"warmup_steps": 0, "reg_lr": 0.1},
                                                 prune_stage={"steps": 6, "optim": {"lr": 2e-4, "warmup": 0.0}}))
    trainer = Trainer(PruneRecipe(config), tmp_path / "exp")
    student = trainer.task.student
    original = num_params(student)
    wav, lengths = batch([4000, 3200])
    start = 1 - float(expected_num_params(student).detach()) / original
    batches = itertools.repeat(Batch(wav, lengths, ["a", "b"], 0))
    history = [{k: float(v) for k, v in trainer.train_step(batches)[0].items()} for _ in range(6)]
    end = 1 - float(expected_num_params(student).detach()) / original
    assert start < 0.1 and end > start + 0.005, (start, end)  # 6 steps at reg_lr 0.1
    assert all(h["sparsity_target"] == 0.5 for h in history)
    assert history[-1]["lambda1"] < 0  # below target: the multiplier pushes the gates towards pruning
    assert all(torch.isfinite(torch.tensor(h["distill"])) for h in history)


def test_prune_cli_end_to_end_then_info_and_hub(world, tmp_path):
    recipe = yaml.safe_load(Path("pretrain/rd_dpwavlm.yaml").read_text())
    recipe.update(
        teacher={"name": "wavlm_local", "ckpt": str(world["teacher"])},
        distill_layers=LAYERS,
        sparsity={"target": 0.5, "warmup_steps": 2, "reg_lr": 0.05},
        denoising={"enabled": True,
                   "banks": {"noises": [{"kind": "musan", "path": str(world["musan"])}],
                             "rirs": [{"kind": "slr28", "path": str(world["rirs"])}],
                             "cache_dir": str(tmp_path / "bank-cache")}},
        enhance={"enabled": True, "hidden_size": 16, "num_layers": 1},
        data={"librispeech_root": str(world["corpus"]), "subsets": ["train-clean-100"], "sequence_length": 8000,
              "batch_size": 2, "num_workers": 0},
        prune_stage={"steps": 3}, final_stage={"steps": 2}, run={"device": "cpu", "log_every": 1, "threads": 1},
    )
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(recipe))
    subprocess.run([CLI, "prune", "-c", str(config), "-n", "run", "--exp-root", str(tmp_path / "exp")],
                   check=True, capture_output=True, text=True)
    exp = tmp_path / "exp" / "run"
    log = [json.loads(line) for line in (exp / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log] == ["prune"] * 3 + ["final"] * 2
    assert "enhance" in log[0] and "sparsity_expected" in log[0] and "sparsity_expected" not in log[-1]

    final = load_pruned_checkpoint(exp / "final.pth")
    assert final.metadata["stage"] == "final" and final.metadata["target_sparsity"] == 0.5
    assert torch.load(exp / "final.pth", weights_only=True)["config"]["extractor_prune_conv_channels"] is False

    text = subprocess.run([CLI, "info", str(exp / "final.pth")], check=True, capture_output=True, text=True).stdout
    model = final.build_model()
    assert f"parameters: {num_params(model) / 1e6:.2f}M ({num_params(model):,})" in text
    assert "layer  heads  ffn_units" in text
    for i in range(2):
        heads, units = model.arch.heads(i), model.arch.encoder_ff_interm_features[i]
        assert f"{i + 1:>5}  {f'{heads}/4':>5}  {units:>9}" in text

    # again a second run into the same folder must not overwrite the result
    again = subprocess.run([CLI, "prune", "-c", str(config), "-n", "run", "--exp-root", str(tmp_path / "exp")],
                           capture_output=True, text=True)
    assert again.returncode == 2 and "already holds final.pth" in again.stderr

    expert = robustdistiller_dpwavlm_local(ckpt=str(exp / "final.pth"))
    out = expert([torch.zeros(16000), torch.zeros(8000)])
    assert len(out["hidden_states"]) == 3 and out["hidden_states"][0].shape == (2, 49, 64)
