"""Student size presets (pretrain/rd_wavlm_{small,tiny}.yaml): their sizes as written, and a scaled-down copy of
each trained for a few CPU steps through the real CLI against a random WavLM teacher, the checkpoint loaded
through our s3prl hub entry and described by ``robustdistiller info``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pretrain_helpers import make_world, recipe, write_recipe

from robustdistiller_upstream.cli import main as cli_main
from robustdistiller_upstream.config import load_config, merge, to_dict
from robustdistiller_upstream.model import StudentModel
from robustdistiller_upstream.objectives import build_objective
from robustdistiller_upstream.train.config import PretrainConfig

PRETRAIN = Path(__file__).resolve().parents[1] / "pretrain"
# preset -> (width, heads, parameters without heads in millions, rounded to 0.01)
PRESETS = {"rd_wavlm_small": (384, 6, 9.13), "rd_wavlm_tiny": (256, 4, 6.44)}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_sizes_as_written(preset):
    width, heads, millions = PRESETS[preset]
    config = load_config(PretrainConfig, PRETRAIN / f"{preset}.yaml")
    student = config.student
    assert (student.encoder_embed_dim, student.encoder_attention_heads, student.final_dim) == (width, heads, width)
    assert student.encoder_embed_dim // student.encoder_attention_heads == 64
    assert round(StudentModel(student).num_parameters() / 1e6, 2) == millions
    objective = build_objective(config.objective.name, config.objective.options, student.final_dim, 768,
                                student.pred_layer_id)
    assert sum(p.numel() for p in objective.parameters()) == 3 * width * 768  # the exported model drops these


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_is_the_base_recipe_but_for_the_student_and_objective(preset):
    base = to_dict(load_config(PretrainConfig, PRETRAIN / "rd_wavlm.yaml"))
    written = to_dict(load_config(PretrainConfig, PRETRAIN / f"{preset}.yaml"))
    changed = {"description", "student_init", "objective"}
    assert {key: value for key, value in written.items() if key not in changed | {"student"}} == {
        key: value for key, value in base.items() if key not in changed | {"student"}}
    student_changes = {key for key in base["student"] if base["student"][key] != written["student"][key]}
    assert student_changes == {"encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads", "final_dim"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Synthetic LibriSpeech, MUSAN-layout noises, SLR28-layout RIRs and a random 64-d WavLM teacher."""
    return make_world(tmp_path_factory.mktemp("presets"))


def scaled_recipe(preset: str, world: dict[str, Path]) -> dict:
    """The preset's objective and init with the test world's teacher and data and a student scaled to the 64-d
    teacher (small: 32-d, 4 heads; tiny: 16-d, 2 heads; prediction heads at the student's own width as written)."""
    written = yaml.safe_load((PRETRAIN / f"{preset}.yaml").read_text())
    assert written["student"]["final_dim"] == written["student"]["encoder_embed_dim"]
    assert written["denoising"]["enabled"] and written["enhance"]["enabled"]
    width = {"rd_wavlm_small": 32, "rd_wavlm_tiny": 16}[preset]
    config = merge(recipe(world, robust=True), {key: written[key] for key in ("objective", "student_init")})
    config["student"].update(encoder_embed_dim=width, encoder_ffn_embed_dim=2 * width,
                             encoder_attention_heads=width // 8, final_dim=width)
    config["run"].update(total_steps=30, save_every=0)
    config["optim"].update(lr=2e-3, warmup=0.1)
    return config


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_scaled_preset_trains_and_loads_through_the_upstream(preset, world, tmp_path, capsys):
    path = write_recipe(tmp_path / f"{preset}.yaml", scaled_recipe(preset, world))
    assert cli_main(["pretrain", "-c", str(path), "-n", preset, "--exp-root", str(tmp_path)]) == 0
    exp = tmp_path / preset
    log = [json.loads(line) for line in (exp / "log.jsonl").read_text().splitlines()]
    distill = [record["distill"] for record in log]
    assert len(distill) == 30 and all(np.isfinite(distill))
    assert np.mean(distill[-5:]) < 0.85 * np.mean(distill[:5]), distill

    ckpt = exp / "student-step30.ckpt"
    config = load_config(PretrainConfig, exp / "config.yaml")
    width = config.student.encoder_embed_dim
    # exactly the student's parameters: the objective's up-projections and the enhancement head are not exported
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["Distiller"]
    assert set(state) == set(StudentModel(config.student).state_dict())

    import s3prl.hub as hub

    upstream = hub.robustdistiller_local(ckpt=str(ckpt)).eval()
    with torch.no_grad():
        hidden = upstream([torch.randn(16000), torch.randn(12000)])["hidden_states"]
    assert {h.shape[-1] for h in hidden} == {width}  # every state at the student's width: s3prl's weighted sum works
    assert hidden[0].shape[:2] == (2, 49)

    capsys.readouterr()
    assert cli_main(["info", str(ckpt)]) == 0
    printed = capsys.readouterr().out
    expected = StudentModel(config.student).num_parameters() / 1e6
    assert f"parameters: {expected:.2f}M" in printed


def test_correlation_objective_trains_with_denoising_and_enhancement(world, tmp_path):
    # the base-shaped tiny student (teacher width, initialised from the teacher) with the correlation objective
    # selected in the recipe. correlate_over="frames": the "batch" mode needs real batch sizes (24), not 2.
    config = recipe(world, robust=True, objective={"name": "correlation", "options": {"correlate_over": "frames"}})
    config["optim"]["lr"] = 2e-3
    config["run"].update(total_steps=30, save_every=0)
    path = write_recipe(tmp_path / "correlation.yaml", config)
    assert cli_main(["pretrain", "-c", str(path), "-n", "corr", "--exp-root", str(tmp_path)]) == 0
    log = [json.loads(line) for line in (tmp_path / "corr" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite([record["loss"] for record in log])) and "enhance" in log[-1]
    on_diag = [record["on_diag"] for record in log]  # sum_i (1 - C_ii)^2 over the 64 teacher dimensions
    assert np.mean(on_diag[-5:]) < 0.95 * np.mean(on_diag[:5]), on_diag
