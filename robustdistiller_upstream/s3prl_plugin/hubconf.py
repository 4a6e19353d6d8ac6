"""Our s3prl hub entries, s3prl naming: ``<name>_local`` (path), ``<name>_url`` (URL), ``<name>`` (release)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from robustdistiller_upstream.errors import CheckpointError
from robustdistiller_upstream.s3prl_plugin.download import DEFAULT_RELEASE, RELEASES, download_checkpoint
from robustdistiller_upstream.s3prl_plugin.expert import UpstreamExpert

HUB_ENTRIES = ["robustdistiller_local", "robustdistiller_url", "robustdistiller"]


def robustdistiller_local(ckpt: str, *args: Any, **kwargs: Any) -> UpstreamExpert:
    """A student from a local checkpoint (ours or any DistilHuBERT-format file). ckpt: PATH."""
    if not ckpt:
        raise CheckpointError("robustdistiller_local needs a checkpoint path (s3prl: -k PATH)")
    if not Path(ckpt).is_file():
        raise CheckpointError(f"{ckpt}: no such checkpoint file")
    return UpstreamExpert(ckpt, *args, **kwargs)


def robustdistiller_url(ckpt: str, refresh: bool = False, *args: Any, **kwargs: Any) -> UpstreamExpert:
    """A student downloaded from ckpt (URL; ``#sha256=HEX`` pins its hash), cached by s3prl."""
    return robustdistiller_local(str(download_checkpoint(ckpt, refresh=refresh)), *args, **kwargs)


def robustdistiller(ckpt: Optional[str] = None, refresh: bool = False, *args: Any, **kwargs: Any) -> UpstreamExpert:
    """The released RD-WavLM student; a given ``-k`` path or URL wins."""
    if ckpt is None:
        ckpt = RELEASES[DEFAULT_RELEASE]
    if str(ckpt).startswith(("http://", "https://")):
        return robustdistiller_url(ckpt, refresh, *args, **kwargs)
    return robustdistiller_local(ckpt, *args, **kwargs)
