"""The NaN guard: a step whose loss or gradient norm is not finite changes nothing, counted, and a streak of them
stops the run.

Where the host is the device (the CPU) reading the verdict costs nothing: the guard reads it before the optimizer
steps and skips a bad step, so nothing needs putting back. On CUDA a host read waits for the device to finish
everything queued before it and leaves it idle while the host prepares the next step (batch, contamination draws,
kernel launches), so there the guard steps at once, undoes a bad step's parameters on the device and reads the
verdict one step late, from a snapshot of what the step changed: the host runs a step ahead, for the price of a
copy of the parameters and their optimizer state each step (three times the trainable weights under Adam: ~384
MiB for the base student and head, which a GPU has to spare and a CPU run would feel: docs/performance.md).
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
    """``update`` runs ``scaler.step(optimizer)`` unless the loss or the gradient norm is not finite, so a skipped
    step leaves everything as it was, its own update counts included (torch's AdamW on CUDA and ``ScheduledAdamW``
    keep them on the host).

    ``defer=False`` (the CPU): the verdict is read before stepping and a bad step is not taken. ``defer=True``
    (CUDA): no host read in the step; the optimizer steps and a bad step is undone, the parameters at once on the
    device (``torch.where``: the next forward pass uses them), the optimizer's state when the host reads the
    verdict, at the next ``update`` or ``resolve`` (the loop calls it on log and save steps and at the end), before
    that state is used again.

    A skipped step is counted in ``counters`` with the streak, and ``max_bad_steps`` in a row raise
    ``TrainingError``: at once, or one step after the last of them with ``defer``. fp16: the gradient scaler skips a
    step whose gradients overflow and lowers its scale; such a step with a finite loss is neither counted nor ends a
    streak. ``verdict`` is the host copy of the last verdict (pinned on CUDA): (loss finite, gradient norm finite),
    1/0.
    """

    def __init__(self, device: torch.device, fp16: bool, max_bad_steps: int, defer: bool) -> None:
        self.fp16 = fp16
        self.max_bad_steps = max_bad_steps
        self.defer = defer
        cuda = device.type == "cuda"
        self.verdict = torch.zeros(2, pin_memory=cuda)
        self._event = torch.cuda.Event() if cuda and defer else None
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
        if not self.defer:
            self.verdict.copy_(finite)
            verdict = self._read()
            if not self._skips(*verdict):
                scaler.step(optimizer)
            self._count(verdict, step, counters)
            return
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
        """Reads the last deferred verdict (waiting for it on CUDA), puts the optimizer state back if that step was
        skipped, and counts it; nothing to do without ``defer``."""
        snapshot, self._pending = self._pending, None
        if snapshot is None:
            return
        if self._event is not None:
            self._event.synchronize()
        verdict = self._read()
        if self._skips(*verdict):
            self._restore(optimizer, snapshot)
        self._count(verdict, snapshot.step, counters)

    def _read(self) -> tuple[bool, bool]:
        """``verdict`` as (loss finite, gradient norm finite)."""
        loss_ok, grad_ok = (value > 0 for value in self.verdict.tolist())
        return loss_ok, grad_ok

    def _skips(self, loss_ok: bool, grad_ok: bool) -> bool:
        """Whether the guard skips a step of this verdict (an fp16 overflow is the scaler's to skip)."""
        return not loss_ok or not (grad_ok or self.fp16)

    def _restore(self, optimizer: torch.optim.Optimizer, snapshot: _Snapshot) -> None:
        """Puts the optimizer state of ``snapshot`` back (its parameters are back already)."""
        params = self._params(optimizer)
        for (i, key), saved in zip(snapshot.keys, self._saved):
            if key:
                optimizer.state[params[i]][key].copy_(saved)
        for i, p in enumerate(params):
            if i in snapshot.host:
                optimizer.state[p].update(snapshot.host[i])
            else:
                optimizer.state.pop(p, None)  # the skipped step was its first

    def _count(self, verdict: tuple[bool, bool], step: int, counters: Counters) -> None:
        """Counts step ``step``'s ``verdict``; raises when it ends ``max_bad_steps`` skipped steps in a row."""
        if all(verdict):
            counters.nonfinite_streak = 0
            return
        if not self._skips(*verdict):
            return  # overflowing fp16 gradients: the scaler skipped the step and lowered its scale
        counters.nonfinite_steps += 1
        counters.nonfinite_streak += 1
        logger.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)", step,
                       counters.nonfinite_streak)
        if counters.nonfinite_streak >= self.max_bad_steps:
            raise TrainingError(
                f"{counters.nonfinite_streak} steps in a row with a non-finite loss or gradient (step "
                f"{step}): lower optim.lr, check the data, or try run.amp=bf16"
            )
