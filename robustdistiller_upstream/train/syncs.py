"""Counts the host reads of tensor values in a block of code: a training step's host-device synchronisations.

On CUDA, torch's sync debug mode (``torch.cuda.set_sync_debug_mode``) reports every synchronising call
(``.item()``, blocking copies, ``nonzero``...), wherever it is made. On the CPU nothing synchronises, so what is
counted is the code paths that would: reads of a tensor's value into Python (``.item()``, ``float``/``int``/
``bool``/``index``, ``tolist``, formatting) made by this package's code. Reads of the ``host`` tensors (the
loader's batch, which stays on the host on CUDA: any tensor sharing their storage) are counted apart, as are reads
made by torch itself (e.g. the optimizer's step counters, host tensors on CUDA too). Only CUDA sees the rest: a
device copy of a host tensor is that same tensor on the CPU (a read of it counts as a host read there), and copies
to the host (``.cpu()``, ``.numpy()`` after it) or ops whose output size depends on values (``nonzero``, boolean
indexing) cost nothing to see on the CPU.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

_PACKAGE = str(Path(__file__).resolve().parents[1])
_TORCH = str(Path(torch.__file__).resolve().parent)
_DISPATCH = (str(Path(_TORCH, "overrides.py")), str(Path(_TORCH, "_tensor.py")))  # wrappers around the reader
_READS = {Tensor.item, Tensor.__bool__, Tensor.__float__, Tensor.__int__, Tensor.__index__, Tensor.__complex__,
          Tensor.tolist, Tensor.__format__}


def _site(frame) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} ({frame.f_code.co_name})"


class _ReadMode(TorchFunctionMode):
    def __init__(self, reads: "HostReads") -> None:
        super().__init__()
        self.reads = reads

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _READS and args and isinstance(args[0], Tensor):
            frame = sys._getframe(1)
            while frame.f_back is not None and frame.f_code.co_filename in _DISPATCH:
                frame = frame.f_back
            self.reads.record(args[0], frame)
        return func(*args, **(kwargs or {}))


class HostReads:
    """``with HostReads(device, host=(batch.wav, batch.lengths)) as reads: step()``; then ``reads.syncs``
    (device reads by call site, ``file.py:line (function)``), ``reads.host`` (reads of host tensors, CPU only)
    and ``reads.torch`` (reads made inside torch, CPU only: on CUDA they are in ``syncs`` when they sync)."""

    def __init__(self, device: torch.device | str, host: Sequence[Tensor] = ()) -> None:
        self.device = torch.device(device)
        self._host = {t.untyped_storage().data_ptr() for t in host if t.device.type == "cpu"}
        self.syncs: Counter[str] = Counter()
        self.host: Counter[str] = Counter()
        self.torch: Counter[str] = Counter()

    def record(self, tensor: Tensor, frame) -> None:
        path = frame.f_code.co_filename
        if path.startswith(_TORCH):
            self.torch[_site(frame)] += 1
        elif not path.startswith(_PACKAGE):
            return  # the caller's own code (a bench, a test)
        elif tensor.device.type == "cpu" and tensor.untyped_storage().data_ptr() in self._host:
            self.host[_site(frame)] += 1
        else:
            self.syncs[_site(frame)] += 1

    def __enter__(self) -> "HostReads":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._warnings = warnings.catch_warnings(record=True)
            self._caught = self._warnings.__enter__()
            warnings.simplefilter("always")
            self._previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("warn")
        else:
            self._mode = _ReadMode(self)
            self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.set_sync_debug_mode(self._previous)
            self._warnings.__exit__(*exc)
            for w in self._caught:
                if "synchroniz" in str(w.message):
                    self.syncs[f"{Path(w.filename).name}:{w.lineno}"] += 1
        else:
            self._mode.__exit__(*exc)

    def summary(self) -> str:
        """Read counts by call site, most first, one line each."""
        lines = []
        for label, counts in (("sync", self.syncs), ("host read", self.host), ("torch read", self.torch)):
            lines += [f"{n:>5} {label:<10} {site}" for site, n in counts.most_common()]
        return "\n".join(lines)
