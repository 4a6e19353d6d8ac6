"""The NaN guard without a per-step host sync: a step's verdict (loss and gradient norm finite?) is acted on by the
device at once and read by the host one step later, when the next step's work is already queued.

A host read of a device value waits for the device to finish everything queued before it and leaves it idle while
the host prepares the next step (batch, contamination draws, kernel launches); reading the verdict one step late
lets the host run a step ahead instead.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any, Optional, Protocol

import torch
import torch.distributed as dist
from torch import Tensor

from robustdistiller_upstream.errors import TrainingError

logger = logging.getLogger(__name__)


class Counters(Protocol):
    """What the guard keeps up to date (the trainer's ``Progress``)."""

    nonfinite_steps: int
    nonfinite_streak: int


@dataclass
class _Snapshot:
    """The optimizer as it was before step ``step`` (1-based): device tensors in the guard's buffers, in ``keys``
    order ((parameter number, state key); key ``""``: the parameter); ``host``: for every parameter that had state,
    by number, its state values off the device (copies)."""

    step: int
    keys: list[tuple[int, str]]
    host: dict[int, dict[str, Any]]


class UpdateGuard:
    """``update`` runs ``scaler.step(optimizer)`` and undoes it when the loss or the gradient norm is not finite:
    the parameters at once on the device (``torch.where``, no host read: the next forward pass uses them), the
    optimizer's state when the host reads the verdict, at the next ``update`` or ``resolve`` (the loop calls it on
    log and save steps and at the end), before that state is used again. So a skipped step leaves everything as
    it was, its own update counts included (torch's AdamW on CUDA and ``ScheduledAdamW`` keep them on the host).

    ``resolve`` counts the skipped steps and the streak in ``counters`` and raises ``TrainingError`` when
    ``max_bad_steps`` come in a row: one step after the last of them. fp16: the gradient scaler skips a step whose
    gradients overflow and lowers its scale; such a step with a finite loss is neither counted nor ends a streak.
    ``verdict`` is the host copy of the last verdict (pinned on CUDA): (loss finite, gradient norm finite), 1/0.
    """

    def __init__(self, device: torch.device, fp16: bool, max_bad_steps: int) -> None:
        self.fp16 = fp16
        self.max_bad_steps = max_bad_steps
        cuda = device.type == "cuda"
        self.verdict = torch.zeros(2, pin_memory=cuda)
        self._event = torch.cuda.Event() if cuda else None
        self._saved: list[Tensor] = []
        self._pending: Optional[_Snapshot] = None

    @staticmethod
    def _params(optimizer: torch.optim.Optimizer) -> list[Tensor]:
        return [p for group in optimizer.param_groups for p in group["params"]]

    def _snapshot(self, optimizer: torch.optim.Optimizer, step: int) -> _Snapshot:
        """Copies the parameters and their device state into reusable buffers, their host state aside."""
        keys, tensors, host = [], [], {}
        for i, p in enumerate(self._params(optimizer)):
            keys.append((i, ""))
            tensors.append(p)
            state = optimizer.state.get(p)
            if state:
                host[i] = {}
                for key, value in state.items():
                    if isinstance(value, Tensor) and value.device == p.device:
                        keys.append((i, key))
                        tensors.append(value)
                    else:
                        host[i][key] = value.clone() if isinstance(value, Tensor) else copy.deepcopy(value)
        if [(t.shape, t.dtype) for t in self._saved] != [(t.shape, t.dtype) for t in tensors]:
            self._saved = [torch.empty_like(t) for t in tensors]
        torch._foreach_copy_(self._saved, tensors)
        return _Snapshot(step, keys, host)

    @torch.no_grad()
    def update(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, loss: Tensor,
               grad_norm: Tensor, step: int, counters: Counters, reduce: bool = False) -> None:
        """One guarded ``scaler.step`` for step ``step`` (1-based); ``reduce``: all-reduce the verdict over the
        process group, so every rank skips together."""
        self.resolve(optimizer, counters)
        finite = torch.stack([torch.isfinite(loss), torch.isfinite(grad_norm)]).float()
        if reduce:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        keep = finite[0] > 0 if self.fp16 else finite.min() > 0
        self._pending = self._snapshot(optimizer, step)
        scaler.step(optimizer)
        params = self._params(optimizer)
        for (i, key), saved in zip(self._pending.keys, self._saved):
            if not key:
                torch.where(keep, params[i], saved, out=params[i])
        self.verdict.copy_(finite, non_blocking=True)
        if self._event is not None:
            self._event.record()

    def resolve(self, optimizer: torch.optim.Optimizer, counters: Counters) -> None:
        """Reads the last verdict (waiting for it on CUDA), puts the optimizer state back if that step was
        skipped, and counts it."""
        snapshot, self._pending = self._pending, None
        if snapshot is None:
            return
        if self._event is not None:
            self._event.synchronize()
        loss_ok, grad_ok = (value > 0 for value in self.verdict.tolist())
        if loss_ok and grad_ok:
            counters.nonfinite_streak = 0
            return
        if loss_ok and self.fp16:
            return  # overflowing fp16 gradients: the scaler skipped the step and lowered its scale
        params = self._params(optimizer)
        for (i, key), saved in zip(snapshot.keys, self._saved):
            if key:
                optimizer.state[params[i]][key].copy_(saved)
        for i, p in enumerate(params):
            if i in snapshot.host:
                optimizer.state[p].update(snapshot.host[i])
            else:
                optimizer.state.pop(p, None)  # the skipped step was its first
        counters.nonfinite_steps += 1
        counters.nonfinite_streak += 1
        logger.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)",
                       snapshot.step, counters.nonfinite_streak)
        if counters.nonfinite_streak >= self.max_bad_steps:
            raise TrainingError(
                f"{counters.nonfinite_streak} steps in a row with a non-finite loss or gradient (step "
                f"{snapshot.step}): lower optim.lr, check the data, or try run.amp=bf16"
            )
