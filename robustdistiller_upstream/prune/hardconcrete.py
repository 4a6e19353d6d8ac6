"""HardConcrete gates (Louizos et al. 2018, "Learning sparse neural networks through L0 regularization").

Each gate is a stretched, clipped binary-concrete variable with a learnable ``log_alpha``. Training samples it
(reparameterised, so gradients reach ``log_alpha``); evaluation uses a deterministic mask that keeps the expected
number of units, as DPHuBERT (Peng et al., Interspeech 2023) does.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

TEMPERATURE = 2.0 / 3.0  # beta, as in CoFi / DPHuBERT
STRETCH = 0.1  # samples are stretched to (-0.1, 1.1) before clipping to [0, 1]
# Deterministic mask value of a kept unit: sigmoid(log_alpha / beta * 0.8) (DPHuBERT's empirical factor)
_DETERMINISTIC_SCALE = 0.8


class HardConcrete(nn.Module):
    """``n`` gates. ``forward() -> (n,)`` mask in [0, 1]: sampled in training mode, deterministic in eval mode.

    ``init_keep``: initial probability of each unit being kept (log_alpha starts near logit(init_keep)).
    ``min_keep``: the deterministic mask keeps at least this many units.
    """

    def __init__(self, n: int, init_keep: float = 0.99, min_keep: int = 0, init_std: float = 0.01) -> None:
        super().__init__()
        if n <= 0:
            raise ValueError(f"HardConcrete needs at least one gate, got {n}")
        self.n = n
        self.min_keep = min_keep
        self.log_alpha = nn.Parameter(torch.empty(n).normal_(math.log(init_keep / (1.0 - init_keep)), init_std))
        self._low, self._high = -STRETCH, 1.0 + STRETCH
        self._l0_shift = TEMPERATURE * math.log(-self._low / self._high)
        self.kept_override: Optional[int] = None  # set by ``allocate_kept`` for eval mode

    def expected_kept(self) -> Tensor:
        """Differentiable expected number of non-zero gates, a scalar: sum of P(gate > 0)."""
        return torch.sigmoid(self.log_alpha - self._l0_shift).sum()

    def sample(self) -> Tensor:
        eps = 1e-6
        u = torch.empty_like(self.log_alpha).uniform_(eps, 1.0 - eps)
        s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.log_alpha) / TEMPERATURE)
        return (s * (self._high - self._low) + self._low).clamp(0.0, 1.0)

    def deterministic(self, kept: Optional[int] = None) -> Tensor:
        """(n,) mask: the ``kept`` (default: round(expected)) largest gates keep soft values, the rest are 0."""
        with torch.no_grad():
            if kept is None:
                kept = round(float(self.expected_kept()))
            kept = max(self.min_keep, min(self.n, kept))
            soft = torch.sigmoid(self.log_alpha / TEMPERATURE * _DETERMINISTIC_SCALE)
            mask = torch.zeros_like(soft)
            if kept > 0:
                top = torch.topk(soft, kept).indices
                mask[top] = soft[top]
        return mask

    def forward(self) -> Tensor:
        return self.sample() if self.training else self.deterministic(self.kept_override)

    def extra_repr(self) -> str:
        return f"n={self.n}, min_keep={self.min_keep}"


def allocate_kept(gates: Sequence[HardConcrete]) -> list[int]:
    """Kept counts for gates of one kind (e.g. the head gates of every layer) whose total is round(sum of their
    expected counts): floors, plus one for the largest remainders. Rounding each gate on its own (DPHuBERT) lets
    errors of up to half a unit per layer add up; this bounds the kind's total error by half a unit, so the
    exported size tracks the expected size the sparsity controller steers."""
    with torch.no_grad():
        expected = [float(g.expected_kept()) for g in gates]
    kept = [math.floor(e) for e in expected]
    extra = round(sum(expected)) - sum(kept)
    by_remainder = sorted(range(len(gates)), key=lambda i: expected[i] - kept[i], reverse=True)
    for i in by_remainder[:max(0, extra)]:
        kept[i] += 1
    return kept
