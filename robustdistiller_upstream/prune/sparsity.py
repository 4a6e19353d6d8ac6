"""Lagrangian sparsity control (Wang et al. 2020, "Structured pruning of large language models"; DPHuBERT eq. 8).

``loss = lambda1 * (s - t) + lambda2 * (s - t)^2`` with ``s`` the expected sparsity (1 - expected parameters /
original parameters) and ``t`` the target, warmed up linearly from 0 over ``warmup_steps``. The gates minimise
it; the multipliers maximise it (gradient ascent: their gradients are negated before the optimizer step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from robustdistiller_upstream.errors import ConfigError


@dataclass
class SparsityConfig:
    """``target``: fraction of the teacher's parameters to remove; ``reg_lr``: learning rate of the gates'
    log_alpha and of the multipliers (DPHuBERT: 0.02)."""

    target: float = 0.75
    warmup_steps: int = 5000
    reg_lr: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 <= self.target < 1.0:
            raise ConfigError(f"sparsity.target: {self.target} is not in [0, 1)")
        if self.warmup_steps < 0 or self.reg_lr <= 0:
            raise ConfigError("sparsity.warmup_steps must be >= 0 and sparsity.reg_lr > 0")


class LagrangianController(nn.Module):
    def __init__(self, config: SparsityConfig, original_params: int) -> None:
        super().__init__()
        self.config = config
        self.original_params = float(original_params)
        self.lambda1 = nn.Parameter(torch.tensor(0.0))
        self.lambda2 = nn.Parameter(torch.tensor(0.0))

    def target_at(self, step: int) -> float:
        if self.config.warmup_steps == 0 or step >= self.config.warmup_steps:
            return self.config.target
        return self.config.target * step / self.config.warmup_steps

    def forward(self, expected_params: Tensor, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """-> (regularisation loss, detached terms for the logs)."""
        sparsity = 1.0 - expected_params / self.original_params
        gap = sparsity - self.target_at(step)
        loss = self.lambda1 * gap + self.lambda2 * gap**2
        terms = {"reg": loss.detach(), "sparsity_expected": sparsity.detach(),
                 "sparsity_target": torch.tensor(self.target_at(step)),
                 "lambda1": self.lambda1.detach(), "lambda2": self.lambda2.detach()}
        return loss, terms

    def ascend(self) -> None:
        """Negates the multipliers' gradients, so the optimizer's descent step is an ascent for them."""
        for p in (self.lambda1, self.lambda2):
            if p.grad is not None:
                p.grad.neg_()
