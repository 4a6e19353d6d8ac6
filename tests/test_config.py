"""Configs: dataclasses from YAML + `-o` overrides; unknown keys and bad types are named (shared by every recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pytest

from robustdistiller_upstream.config import load_config, parse_overrides, save_config
from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.model import StudentConfig


@dataclass
class Optim:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.98)


@dataclass
class Recipe:
    name: str = "x"
    steps: int = 10
    layers: list[int] = field(default_factory=lambda: [4, 8, 12])
    optim: Optim = field(default_factory=Optim)
    teacher_ckpt: Optional[str] = None
    student: StudentConfig = field(default_factory=StudentConfig)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("steps: 5\noptim:\n  lr: 1.0e-3\nstudent:\n  encoder_layers: 3\n")
    recipe = load_config(Recipe, path, ["optim.betas=[0.8,0.9],layers=[1,2],teacher_ckpt=/a/b=c.pt", "name=y"])
    assert recipe.steps == 5 and recipe.optim.lr == 1e-3 and recipe.optim.betas == (0.8, 0.9)
    assert recipe.layers == [1, 2] and recipe.name == "y" and recipe.teacher_ckpt == "/a/b=c.pt"
    assert recipe.student.encoder_layers == 3 and recipe.student.encoder_embed_dim == 768
    assert parse_overrides(["a.b=1,,c=x"]) == {"a": {"b": 1}, "c": "x"}  # s3prl's ",," separator


def test_round_trip(tmp_path):
    recipe = load_config(Recipe, None, ["student.pred_layer_id=[2,4]"])
    save_config(recipe, tmp_path / "saved.yaml")
    assert load_config(Recipe, tmp_path / "saved.yaml") == recipe


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("stepz: 5\n", [], r"r\.yaml: .*unknown key\(s\) \['stepz'\]"),
        ("optim:\n  lrr: 1\n", [], r"optim: unknown key\(s\) \['lrr'\]"),
        ("steps: five\n", [], r"steps: expected int"),
        ("", ["optim.lr=fast"], r"with -o overrides: optim.lr: expected float"),
        ("", ["student.encoder_attention_heads=5"], r"not divisible by encoder_attention_heads 5"),
        ("", ["steps"], r"-o: 'steps' is not of the form key=value"),
        ("[1, 2]\n", [], r"top level must be a mapping"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, overrides, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(Recipe, path, overrides)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(Recipe, tmp_path / "nope.yaml")
