"""A training step makes no host read (the NaN guard as CUDA runs it acts on the device, terms are read on log steps
only), and a skipped step still changes nothing, with the guard as the CPU runs it (checked before stepping) and as
CUDA runs it (deferred)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import pytest
import torch

from pretrain_helpers import make_world, recipe
from robustdistiller_upstream.config import from_dict
from robustdistiller_upstream.errors import TrainingError
from robustdistiller_upstream.train.config import PretrainConfig
from robustdistiller_upstream.train.guard import UpdateGuard
from robustdistiller_upstream.train.recipe import PretrainRecipe
from robustdistiller_upstream.train.runner import Trainer
from robustdistiller_upstream.train.syncs import HostReads

NO_DROPOUT = {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0}
LOOP = ("runner.py", "guard.py")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def _loop_reads(counts) -> dict[str, int]:
    return {site: n for site, n in counts.items() if site.startswith(LOOP)}


def _state(trainer: Trainer) -> dict:
    return copy.deepcopy({"task": trainer.task.state_dict(), "optimizer": trainer.optimizer.state_dict()})


def _assert_equal(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_equal(x, y)
    else:
        assert a == b


def _nan_batch(batch):
    return dataclasses.replace(batch, wav=torch.full_like(batch.wav, math.nan))


def _trainer(config: PretrainConfig, exp_dir, defer: bool) -> Trainer:
    """A trainer whose guard runs as on CUDA (``defer``) or as on the CPU, where it runs."""
    trainer = Trainer(PretrainRecipe(config), exp_dir)
    assert not trainer.guard.defer  # the CPU's own: checked before stepping, no snapshot
    run = config.run
    trainer.guard = UpdateGuard(trainer.device, run.amp == "fp16", run.max_bad_steps, defer=defer)
    return trainer


def test_a_step_makes_no_host_read_in_the_loop(world, tmp_path):
    trainer = _trainer(from_dict(PretrainConfig, recipe(world, robust=True)), tmp_path / "exp", defer=True)
    batch = next(trainer._batches())
    trainer.train_step(itertools.repeat(batch))  # the first batch width's frame count is computed once
    with HostReads("cpu", host=(batch.wav, batch.lengths, trainer.guard.verdict)) as reads:
        for _ in range(2):
            terms, _ = trainer.train_step(itertools.repeat(batch))
    assert _loop_reads(reads.syncs) == {}, reads.summary()
    # what the loop does read: the previous step's verdict, from its host copy (on CUDA after an event wait)
    assert sum(_loop_reads(reads.host).values()) == 2, reads.summary()
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in terms.values())


def test_fit_reads_the_terms_on_log_steps_only(world, tmp_path):
    config = from_dict(PretrainConfig, recipe(world, robust=False, run={"total_steps": 4, "log_every": 2,
                                                                        "save_every": 0}))
    trainer = Trainer(PretrainRecipe(config), tmp_path / "exp")
    with HostReads("cpu", host=(trainer.guard.verdict,)) as reads:
        trainer.fit()
    by_function = {}
    for site, n in _loop_reads(reads.syncs).items():
        function = site.split("(")[-1].rstrip(")")
        by_function[function] = by_function.get(function, 0) + n
    # fit: one read of the terms per log step (2, 4); _micro_step: the frame count of the one batch width
    assert by_function == {"fit": 2, "_micro_step": 1}, reads.summary()


@pytest.mark.parametrize("defer", [False, True], ids=["cpu-guard", "cuda-guard"])
def test_a_skipped_step_changes_nothing_and_a_streak_stops_the_run(world, tmp_path, defer):
    config = from_dict(PretrainConfig, recipe(world, robust=False, student=NO_DROPOUT, run={"max_bad_steps": 2}))
    first = _trainer(config, tmp_path / "first", defer)
    steps = []
    first.optimizer.register_step_pre_hook(lambda *_: steps.append(1))
    batch = next(first._batches())
    initial = _state(first)
    first.train_step(itertools.repeat(_nan_batch(batch)))  # a first step that creates the optimizer state
    first.guard.resolve(first.optimizer, first.progress)
    assert first.progress.nonfinite_steps == 1 and first.progress.nonfinite_streak == 1
    assert len(steps) == int(defer)  # the CPU's guard does not step at all
    assert not first.optimizer.state
    _assert_equal(_state(first)["task"], initial["task"])
    first.train_step(itertools.repeat(batch))
    fresh = _trainer(config, tmp_path / "fresh", defer)
    fresh.train_step(itertools.repeat(batch))
    first.guard.resolve(first.optimizer, first.progress)
    assert first.progress.nonfinite_streak == 0
    _assert_equal(_state(first), _state(fresh))  # as if the skipped step had never been tried

    before = _state(fresh)
    fresh.train_step(itertools.repeat(_nan_batch(batch)))  # a later one: state exists
    fresh.guard.resolve(fresh.optimizer, fresh.progress)
    _assert_equal(_state(fresh), before)
    if defer:  # the deferred guard raises when it reads the verdict, the CPU's in the step itself
        fresh.train_step(itertools.repeat(_nan_batch(batch)))
    with pytest.raises(TrainingError, match=r"2 steps in a row with a non-finite loss or gradient \(step 3\)"):
        if defer:
            fresh.guard.resolve(fresh.optimizer, fresh.progress)
        else:
            fresh.train_step(itertools.repeat(_nan_batch(batch)))


@pytest.mark.parametrize("defer", [False, True], ids=["cpu-guard", "cuda-guard"])
def test_fp16_skipped_step_lowers_the_scale(world, tmp_path, defer):
    config = from_dict(PretrainConfig, recipe(world, robust=False, run={"amp": "fp16"}))
    trainer = _trainer(config, tmp_path / "exp", defer)
    batch = next(trainer._batches())
    trainer.train_step(itertools.repeat(batch))
    before, scale = _state(trainer), trainer.scaler.get_scale()
    trainer.train_step(itertools.repeat(_nan_batch(batch)))
    trainer.guard.resolve(trainer.optimizer, trainer.progress)
    assert trainer.progress.nonfinite_steps == 1 and trainer.scaler.get_scale() == scale / 2
    _assert_equal(_state(trainer), before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_step_has_no_loop_sync_and_a_skipped_step_changes_nothing(world, tmp_path):
    config = from_dict(PretrainConfig, recipe(world, robust=True, run={"device": "cuda", "amp": "bf16"}))
    trainer = Trainer(PretrainRecipe(config), tmp_path / "exp")
    batch = next(trainer._batches())
    trainer.train_step(itertools.repeat(batch))
    with HostReads("cuda") as reads:  # torch's sync debug mode: every synchronising call, by call site
        trainer.train_step(itertools.repeat(batch))
    assert _loop_reads(reads.syncs) == {}, reads.summary()
    trainer.guard.resolve(trainer.optimizer, trainer.progress)
    before = _state(trainer)
    trainer.train_step(itertools.repeat(_nan_batch(batch)))
    trainer.guard.resolve(trainer.optimizer, trainer.progress)
    assert trainer.progress.nonfinite_steps == 1
    _assert_equal(_state(trainer), before)
