"""Our optimizer against stock s3prl's ``get_AdamW_with_schedule`` (what the reference recipes train with):
the same student + enhancement head, the same gradients, 50 steps across the warmup boundary."""

from __future__ import annotations

import copy

import pytest
import torch

from pretrain_helpers import TINY_STUDENT
from robustdistiller_upstream.enhance import EnhanceConfig, EnhancementHead
from robustdistiller_upstream.model import StudentConfig, StudentModel
from robustdistiller_upstream.objectives import build_objective
from robustdistiller_upstream.train.config import OptimConfig
from robustdistiller_upstream.train.optim import build_s3prl_optimizer, warmup_linear
from robustdistiller_upstream.train.task import DistillationTask

s3prl_optimizers = pytest.importorskip("s3prl.optimizers", reason="this s3prl has no s3prl/optimizers.py")

TOTAL, WARMUP, LR = 100, 0.2, 1e-3  # warmup ends at update 20


def _task() -> DistillationTask:
    torch.manual_seed(0)
    layers = [tuple(c) for c in TINY_STUDENT["extractor_conv_layers"]]
    config = StudentConfig(**{**TINY_STUDENT, "extractor_conv_layers": layers})
    head = EnhancementHead(EnhanceConfig(enabled=True, hidden_size=16, num_layers=2), config.extractor_dim)
    objective = build_objective("layerwise", {}, config.final_dim, config.final_dim, config.pred_layer_id)
    return DistillationTask(StudentModel(config), objective, head, 2.0)


def _relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).norm() / theirs.norm().clamp_min(1e-30))


def test_same_updates_as_s3prl_adamw_with_schedule_across_warmup():
    reference = _task()
    ours = copy.deepcopy(reference)
    # the reference recipe's call: s3prl/pretrain/runner.py with config_runner.yaml's optimizer section
    theirs_opt = s3prl_optimizers.get_AdamW_with_schedule([reference], lr=LR, total_steps=TOTAL,
                                                          warmup_proportion=WARMUP, betas=(0.9, 0.98), eps=1e-6,
                                                          weight_decay=1e-6)
    ours_opt, monitor = build_s3prl_optimizer(ours, OptimConfig(lr=LR, warmup=WARMUP), TOTAL)
    # s3prl's grouping: decay 0.01 except on "bias"/"LayerNorm.*" names
    names = {id(p): n for n, p in reference.named_parameters()}
    ours_names = {id(p): n for n, p in ours.named_parameters()}
    theirs_groups = {g["weight_decay"]: sorted(names[id(p)] for p in g["params"]) for g in theirs_opt.param_groups}
    ours_groups = {g["weight_decay"]: sorted(ours_names[id(p)] for p in g["params"]) for g in ours_opt.param_groups}
    assert ours_groups == theirs_groups and set(ours_groups) == {0.0, 0.01}
    assert "head.blstm.bias_ih_l0" in ours_groups[0.0] and "student.encoder.layers.0.final_layer_norm.weight" in (
        ours_groups[0.01])
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([8000, 6500])
    worst = 0.0
    for step in range(1, 51):
        noisy, clean = torch.randn(2, 8000, generator=generator), torch.randn(2, 8000, generator=generator)
        targets = [torch.randn(2, 24, TINY_STUDENT["final_dim"], generator=generator)
                   for _ in TINY_STUDENT["pred_layer_id"]]
        loss, _, _ = reference(noisy, lengths, targets, clean)
        loss.backward()
        for mine, theirs in zip(ours.parameters(), reference.parameters()):
            mine.grad = None if theirs.grad is None else theirs.grad.clone()
        theirs_opt.step()
        ours_opt.step()
        monitor.step()
        for (name, mine), theirs in zip(ours.named_parameters(), reference.parameters()):
            error = _relative_error(mine.detach(), theirs.detach())
            assert error <= 1e-6, f"update {step}: {name} differs by {error:.2e} (relative)"
            worst = max(worst, error)
        assert monitor.get_last_lr()[0] == pytest.approx(theirs_opt.get_lr()[0], rel=1e-12)
        theirs_opt.zero_grad()
        ours_opt.zero_grad()
    assert warmup_linear(20, TOTAL, WARMUP) == 1.0 and warmup_linear(50, TOTAL, WARMUP) == pytest.approx(0.625)
    print(f"worst relative parameter difference over 50 updates: {worst:.2e}")


def test_an_update_without_gradient_does_not_advance_the_schedule():
    """A step the fp16 GradScaler skips never reaches the optimizer; a parameter without gradient keeps its own
    count: the schedule reads each parameter's count, as s3prl's Lamb does."""
    task = _task()
    optimizer, monitor = build_s3prl_optimizer(task, OptimConfig(lr=LR, warmup=WARMUP), TOTAL)
    params = [p for p in task.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    params[0].grad = None  # this one sits the next update out
    optimizer.step()
    counts = [optimizer.state[p]["step"] for p in params]
    assert counts[0] == 1 and set(counts[1:]) == {2}
    # logged lr per group, from its first parameter's count: no_decay (count 2), default (params[0], count 1)
    assert [g["name"] for g in optimizer.param_groups] == ["no_decay", "default"]
    assert optimizer.param_groups[1]["params"][0] is params[0]
    monitor.step()
    assert monitor.get_last_lr() == [LR * warmup_linear(2, TOTAL, WARMUP), LR * warmup_linear(1, TOTAL, WARMUP)]


def test_a_step_the_grad_scaler_skips_leaves_the_schedule_where_it_was():
    task = _task()
    optimizer, monitor = build_s3prl_optimizer(task, OptimConfig(lr=LR, warmup=WARMUP), TOTAL)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    scaler.scale(torch.ones(()))  # what a scaled backward does first: the scale comes to exist
    params = [p for p in task.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.full_like(p, 4.0)
    params[3].grad[0] = float("inf")  # an overflow: the scaler skips the whole update
    scaler.step(optimizer)
    scaler.update()
    assert not optimizer.state and all(torch.equal(p, b) for p, b in zip(params, before))
    for p in params:
        p.grad = torch.full_like(p, 2.0)  # the lowered scale (2.0) unscales to 1
    scaler.step(optimizer)
    assert {optimizer.state[p]["step"] for p in params} == {1}
    monitor.step()
    assert monitor.get_last_lr() == [LR * warmup_linear(1, TOTAL, WARMUP)] * 2
