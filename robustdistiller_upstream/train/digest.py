"""Digests of parameters: under DDP every rank must hold the same values (the loop logs them at each stage's end,
a cluster job returns them)."""

from __future__ import annotations

import hashlib
from typing import Mapping

import torch
from torch import Tensor


def parameters_digest(state: Mapping[str, Tensor]) -> str:
    """sha256 of a state dict (names and raw bytes of its tensors, in order): equal digests, identical values."""
    digest = hashlib.sha256()
    for name, value in state.items():
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
