"""Upstream options: s3prl's ``-g/--upstream_model_config`` YAML, or ``S3PRLUpstream(..., extra_conf={...})``.

s3prl hands the ``-g`` file to the hub entry as ``model_config`` (a path) and ``extra_conf`` as keyword arguments;
both fill one :class:`UpstreamOptions`, the keyword arguments winning. An unknown key or a bad value is a
``ConfigError`` naming the file (or ``extra_conf``) and the key.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Optional

import torch
from torch import Tensor

from robustdistiller_upstream.config import from_dict, merge, read_yaml

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16}


@dataclass(frozen=True)
class UpstreamOptions:
    """What a user may set on our PyTorch upstreams.

    ``trust_checkpoint``: allow unpickling code objects from the checkpoint (old s3prl files); only for files you
    trust. ``autocast``: ``bf16`` runs the upstream's forward under ``torch.autocast`` in bfloat16 on the input's
    device (for CPUs with AVX-512 BF16 or AMX, and GPUs); the returned hidden states are cast back to float32.
    ``none``: float32 throughout.
    """

    trust_checkpoint: bool = False
    autocast: Literal["none", "bf16"] = "none"

    @contextmanager
    def forward_context(self, device: torch.device) -> Iterator[None]:
        """The context the upstream's forward runs in on ``device``."""
        if self.autocast == "none":
            yield
            return
        with torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[self.autocast]):
            yield

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
