"""Upstream options: s3prl's ``-g/--upstream_model_config`` YAML, or ``S3PRLUpstream(..., extra_conf={...})``.

s3prl hands the ``-g`` file to the hub entry as ``model_config`` (a path) and ``extra_conf`` as keyword arguments;
both fill one :class:`UpstreamOptions`, the keyword arguments winning. An unknown key or a bad value is a
``ConfigError`` naming the file (or ``extra_conf``) and the key.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
from torch import Tensor

from robustdistiller_upstream.config import from_dict, merge, read_yaml

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16}


@dataclass(frozen=True)
class UpstreamOptions:
    """What a user may set on our PyTorch upstreams.

    trust_checkpoint: allow unpickling code objects from the checkpoint (old s3prl files); only for files you trust.
    autocast: ``bf16`` runs the upstream's forward under ``torch.autocast`` in bfloat16 on the input's device (CPUs
        with AVX-512 BF16 or AMX, GPUs); the returned hidden states are cast back to float32. ``none``: float32.
    """

    trust_checkpoint: bool = False
    autocast: Literal["none", "bf16"] = "none"

    def forward_context(self, device: torch.device) -> AbstractContextManager:
        """The context the upstream's forward runs in on ``device``."""
        if self.autocast == "none":
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[self.autocast])

    def as_returned(self, states: list[Tensor]) -> list[Tensor]:
        """``states`` as handed to s3prl: float32 where autocast computed them in a lower precision."""
        return states if self.autocast == "none" else [state.float() for state in states]


def read_upstream_options(model_config: Optional[str], **given: Any) -> UpstreamOptions:
    """The options of the ``model_config`` YAML (None: none) with ``given`` (keyword arguments; None = not given) on
    top."""
    data = read_yaml(model_config) if model_config else {}
    given = {key: value for key, value in given.items() if value is not None}
    source = " with ".join(filter(None, [model_config, "extra_conf" if given else ""])) or "<defaults>"
    return from_dict(UpstreamOptions, merge(data, given), source)
