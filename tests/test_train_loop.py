"""The pretraining loop in process: learning on a fixed batch, unreadable files counted, divergence guard."""

from __future__ import annotations

import itertools
import json

import pytest

from pretrain_helpers import make_world, recipe
from robustdistiller_upstream.config import from_dict
from robustdistiller_upstream.errors import TrainingError
from robustdistiller_upstream.train.config import PretrainConfig
from robustdistiller_upstream.train.recipe import PretrainRecipe
from robustdistiller_upstream.train.runner import Trainer


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def test_steps_lower_the_loss_on_a_fixed_batch(world, tmp_path):
    no_dropout = {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0}
    config = from_dict(PretrainConfig, recipe(world, robust=True, student=no_dropout, optim={"lr": 5e-3}))
    trainer = Trainer(PretrainRecipe(config), tmp_path / "exp")
    batch = next(trainer._batches())
    losses = [trainer.train_step(itertools.repeat(batch))[0] for _ in range(8)]
    assert losses[-1]["distill"] < 0.9 * losses[0]["distill"]
    assert losses[-1]["enhance"] < losses[0]["enhance"]
    assert {"l1/layer1", "cos/layer2", "grad_norm"} <= set(losses[0])


def test_unreadable_corpus_file_is_skipped_and_counted(world, tmp_path):
    bad = world["corpus"] / "train-clean-100" / "101" / "1000" / "101-1000-0077.flac"
    bad.write_bytes(b"\x00garbage" * 50)
    try:
        config = from_dict(PretrainConfig, recipe(world, robust=False, run={"total_steps": 2, "save_every": 0}))
        ckpt = Trainer(PretrainRecipe(config), tmp_path / "exp").fit()
    finally:
        bad.unlink()
    log = [json.loads(line) for line in (tmp_path / "exp" / "log.jsonl").read_text().splitlines()]
    assert [r["skipped_files"] for r in log] == [1, 1]
    assert ckpt.name == "student-step2.ckpt" and ckpt.exists()


def test_divergence_stops_with_a_clear_message(world, tmp_path):
    config = from_dict(PretrainConfig, recipe(world, robust=False, optim={"lr": 1e30, "clip_grad_norm": 1e30},
                                              run={"total_steps": 20, "max_bad_steps": 2, "save_every": 0}))
    with pytest.raises(TrainingError, match="2 steps in a row with a non-finite loss or gradient"):
        Trainer(PretrainRecipe(config), tmp_path / "exp").fit()
