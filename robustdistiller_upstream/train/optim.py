"""The optimizer of the reference recipes: s3prl's ``AdamW_with_schedule`` semantics, in our own code.

The RobustDistiller and DistilHuBERT reference code trains through stock s3prl (``s3prl/optimizers.py``,
``get_AdamW_with_schedule``): ``Lamb(adam=True, correct_bias=True)`` over ``get_grouped_parameters`` with the
``WarmupLinearSchedule``. For parameter ``p`` with its own update count ``t`` (1 at its first update):

- ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``;
- ``rate = lr * sqrt(1 - b2^t) / (1 - b1^t) * schedule(t)``;
- ``p -= rate * (m / (sqrt(v) + eps) + wd * p)``: the decay joins the Adam step and is scaled by the same
  bias-corrected, scheduled rate;
- ``schedule(t)``: with ``x = t / total_steps``, ``x / warmup`` while ``x < warmup``, then
  ``max(0, (x - 1) / (warmup - 1))``. It reads the parameter's own count, so an update the fp16 GradScaler skips
  does not advance it, and the last of ``total_steps`` updates has rate 0 (the reference's quirk, kept).

Parameter groups are configuration (``OptimConfig.groups``): a parameter joins the first group one of whose
``match`` strings occurs in its name, else the default group with ``OptimConfig.weight_decay``. s3prl's grouping
is weight decay 0.01 by default and 0 on names containing ``bias``, ``LayerNorm.bias`` or ``LayerNorm.weight``
(the distiller's norms are named ``*_layer_norm``: their weights are decayed).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.train.config import OptimConfig


def warmup_linear(step: int, total_steps: int, warmup: float) -> float:
    """s3prl's ``WarmupLinearSchedule.get_lr(step)``: the lr factor of an update whose count is ``step`` (1-based)."""
    progress = step / total_steps
    if progress < warmup:
        return progress / warmup
    return max((progress - 1.0) / (warmup - 1.0), 0.0)


def parameter_groups(module: nn.Module, config: OptimConfig) -> list[dict]:
    """Torch param groups of ``module``'s trainable parameters: one per ``config.groups`` entry (first match by
    name substring), then the default group; empty groups are left out. Each group carries its ``name``."""
    buckets: list[list[Tensor]] = [[] for _ in range(len(config.groups) + 1)]
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        index = next((i for i, group in enumerate(config.groups) if any(s in name for s in group.match)),
                     len(config.groups))
        buckets[index].append(param)
    specs = [(group.name, group.weight_decay) for group in config.groups] + [("default", config.weight_decay)]
    return [{"params": params, "name": name, "weight_decay": decay}
            for (name, decay), params in zip(specs, buckets) if params]


class ScheduledAdamW(torch.optim.Optimizer):
    """Adam with weight decay inside the step, bias correction and a warmup-linear schedule on each parameter's
    own update count (module docstring). ``state[p]``: ``step`` (int), ``exp_avg``, ``exp_avg_sq``."""

    def __init__(self, params: Iterable, total_steps: int, warmup: float, lr: float = 2e-4,
                 betas: Sequence[float] = (0.9, 0.98), eps: float = 1e-6, weight_decay: float = 0.0) -> None:
        if total_steps < 1:
            raise ConfigError(f"run.total_steps must be >= 1 for the schedule, got {total_steps}")
        if not 0.0 <= warmup < 1.0:
            raise ConfigError(f"optim.warmup must be in [0, 1), got {warmup}")
        # the schedule is not a group option: state_dict() keeps it out, so a resume may change run.total_steps
        self.total_steps = total_steps
        self.warmup = warmup
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def factor(self, step: int) -> float:
        return warmup_linear(step, self.total_steps, self.warmup)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                rate = group["lr"] * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t) * self.factor(t)
                update = exp_avg_sq.sqrt().add_(group["eps"])  # one buffer: the same values, fewer passes
                torch.div(exp_avg, update, out=update)
                if group["weight_decay"] != 0:
                    update.add_(p, alpha=group["weight_decay"])
                p.add_(update, alpha=-rate)
        return loss

    def scheduled_lrs(self) -> list[float]:
        """Per group: ``lr * schedule(t)`` of its first updated parameter (s3prl's ``get_lr``; ``lr`` before the
        first update)."""
        lrs = []
        for group in self.param_groups:
            steps = [self.state[p]["step"] for p in group["params"] if self.state.get(p)]
            lrs.append(group["lr"] * self.factor(steps[0]) if steps else group["lr"])
        return lrs


class ScheduleMonitor:
    """The trainer's scheduler: the schedule advances inside ``ScheduledAdamW`` with each parameter's own count,
    so ``step()`` only refreshes what ``get_last_lr()`` reports (the lr of the last update, as s3prl logs it)."""

    def __init__(self, optimizer: ScheduledAdamW) -> None:
        self.optimizer = optimizer
        self._last_lr = optimizer.scheduled_lrs()

    def step(self) -> None:
        self._last_lr = self.optimizer.scheduled_lrs()

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {"last_lr": list(self._last_lr)}

    def load_state_dict(self, state: dict) -> None:
        self._last_lr = list(state["last_lr"])


def build_s3prl_optimizer(module: nn.Module, config: OptimConfig,
                          total_steps: int) -> tuple[ScheduledAdamW, ScheduleMonitor]:
    """The pretraining optimizer: ``module``'s trainable parameters grouped by ``config.groups``, and its monitor."""
    optimizer = ScheduledAdamW(parameter_groups(module, config), total_steps, config.warmup, lr=config.lr,
                               betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)
    return optimizer, ScheduleMonitor(optimizer)


def warmup_linear_decay(total_steps: int, warmup: float):
    """lr factor at scheduler step s (0-based), DPHuBERT's ``LinearDecayLRScheduler`` (pyf98/DPHuBERT
    ``lightning.py``) on its ``_step_count`` c = s + 1: ``c / W`` while c <= W (``W = warmup * total_steps``),
    then ``(total_steps - c) / (total_steps - W)``, 0 from c = total_steps (the last update has lr 0)."""
    warm = max(1, int(round(warmup * total_steps)))

    def factor(step: int) -> float:
        count = step + 1
        if count <= warm:
            return count / warm
        return max(0.0, (total_steps - count) / max(1, total_steps - warm))

    return factor


def build_optimizer(params, config: OptimConfig, total_steps: int):
    """``torch.optim.AdamW`` (decoupled decay, ``config.weight_decay`` unless a param group sets its own) with
    ``warmup_linear_decay`` as a ``LambdaLR``: DPHuBERT's optimizer (``prune/train.py``); ``config.groups`` unused."""
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.betas), eps=config.eps,
                                  weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear_decay(total_steps, config.warmup))
    return optimizer, scheduler
