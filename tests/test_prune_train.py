"""Prune + distill: real teacher (s3prl wavlm_local), real objective, real controller; and the CLI end to end."""

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
from prune_helpers import ALL_UNITS, batch, write_teacher

from robustdistiller_upstream.config import from_dict
from robustdistiller_upstream.errors import TrainingError
from robustdistiller_upstream.objectives import build_objective
from robustdistiller_upstream.prune.checkpoint import load_pruned_checkpoint
from robustdistiller_upstream.prune.convert import model_from_teacher
from robustdistiller_upstream.prune.params import expected_num_params, num_params
from robustdistiller_upstream.prune.sparsity import LagrangianController, SparsityConfig
from robustdistiller_upstream.prune.train import PruneConfig, PruneDistiller, PruneRun, StageConfig, StageRunner
from robustdistiller_upstream.s3prl_plugin.dpwavlm import robustdistiller_dpwavlm_local
from robustdistiller_upstream.teacher import Teacher, TeacherConfig
from robustdistiller_upstream.train.config import OptimConfig
from robustdistiller_upstream.train.data import Batch

CLI = str(Path(sys.executable).parent / "robustdistiller")
LAYERS = [0, 1, 2]


def test_prune_distill_steps_move_expected_sparsity_towards_target(tmp_path):
    torch.manual_seed(0)
    path = write_teacher("wavlm", tmp_path / "teacher.pt")
    teacher = Teacher(TeacherConfig(name="wavlm_local", ckpt=str(path)), LAYERS)
    student = model_from_teacher(path, ALL_UNITS)
    original = num_params(student)
    distiller = PruneDistiller(student, build_objective("layerwise", {}, 64, 64, LAYERS), LAYERS, teacher.dim)
    sparsity = SparsityConfig(target=0.5, warmup_steps=0, reg_lr=0.1)
    runner = StageRunner(distiller, teacher, StageConfig(steps=6, optim=OptimConfig(lr=2e-4, warmup=0.0)),
                         torch.device("cpu"), LagrangianController(sparsity, original), sparsity)
    wav, lengths = batch([4000, 3200])
    start = 1 - float(expected_num_params(student).detach()) / original
    history = [runner.train_step(Batch(wav, lengths, ["a", "b"], 0)) for _ in range(6)]
    end = 1 - float(expected_num_params(student).detach()) / original
    assert start < 0.1 and end > start + 0.005, (start, end)  # 6 steps at reg_lr 0.1: 0.047 -> 0.056 measured
    assert all(h["sparsity_target"] == 0.5 for h in history)
    assert history[-1]["lambda1"] < 0  # below target: the multiplier pushes the gates towards pruning
    assert all(torch.isfinite(torch.tensor(h["distill"])) for h in history)


def test_prune_cli_end_to_end_then_info_and_hub(tmp_path):
    world = make_world(tmp_path)
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


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    """A run cut after 3 steps of stage 1 (resume file at step 2) and resumed ends with the same weights as an
    uninterrupted run: gates, multipliers, optimizer, schedule, data position and RNGs all come back."""
    world = make_world(tmp_path)
    config = from_dict(PruneConfig, {
        "teacher": {"name": "wavlm_local", "ckpt": str(world["teacher"])},
        "distill_layers": LAYERS,
        "units": {"attention_layers": True, "ffn_layers": True},
        "sparsity": {"target": 0.5, "warmup_steps": 2, "reg_lr": 0.05},
        "data": {"librispeech_root": str(world["corpus"]), "subsets": ["train-clean-100"], "sequence_length": 6400,
                 "batch_size": 2, "num_workers": 0},
        "prune_stage": {"steps": 4}, "final_stage": {"steps": 2},
        "run": {"device": "cpu", "log_every": 1, "save_every": 2, "threads": 1},
    })
    whole = PruneRun(config, tmp_path / "whole").fit()

    cut = PruneRun(config, tmp_path / "cut")
    cut.batches = itertools.islice(cut.batches, 3)  # the data stops during step 4: the process dies
    with pytest.raises(StopIteration):
        cut.fit()
    assert (tmp_path / "cut" / "resume.pt").exists() and not (tmp_path / "cut" / "pruned.pth").exists()
    with pytest.raises(TrainingError, match="pass --resume"):
        PruneRun(config, tmp_path / "cut")
    resumed = PruneRun(config, tmp_path / "cut", resume=True).fit()

    a, b = torch.load(whole, weights_only=True), torch.load(resumed, weights_only=True)
    assert a["config"] == b["config"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    steps = [(r["stage"], r["step"]) for r in map(json.loads, (tmp_path / "cut" / "log.jsonl").read_text().splitlines())]
    assert steps == [("prune", 1), ("prune", 2), ("prune", 3), ("prune", 4), ("final", 1), ("final", 2)]
    assert not (tmp_path / "cut" / "resume.pt").exists()
