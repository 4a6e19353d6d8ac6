"""Our s3prl hub entries, s3prl naming: ``<name>_local`` (path), ``<name>_url`` (URL), ``<name>`` (release)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from robustdistiller_upstream.errors import CheckpointError
from robustdistiller_upstream.s3prl_plugin.download import DEFAULT_RELEASE, RELEASES, download_checkpoint
from robustdistiller_upstream.s3prl_plugin.expert import UpstreamExpert

if TYPE_CHECKING:
    from robustdistiller_upstream.s3prl_plugin.onnx_expert import OnnxUpstreamExpert

HUB_ENTRIES = ["robustdistiller_local", "robustdistiller_url", "robustdistiller", "robustdistiller_onnx_local",
               "robustdistiller_onnx_url"]


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


def looks_like_onnx_file(path: Path) -> bool:
    """An ONNX ModelProto: its first field, ``ir_version`` (field 1, varint), starts the file with byte 0x08."""
    with path.open("rb") as f:
        return f.read(1) == b"\x08"


def robustdistiller_onnx_local(ckpt: str, *args: Any, **kwargs: Any) -> OnnxUpstreamExpert:
    """An exported upstream (``robustdistiller export --to onnx``, fp32 or int8) in ONNX Runtime. ckpt: PATH."""
    from robustdistiller_upstream.s3prl_plugin.onnx_expert import OnnxUpstreamExpert

    if not ckpt:
        raise CheckpointError("robustdistiller_onnx_local needs an .onnx path (s3prl: -k PATH)")
    if not Path(ckpt).is_file() or not looks_like_onnx_file(Path(ckpt)):
        raise CheckpointError(f"{ckpt}: no such ONNX file (make one with `robustdistiller export CKPT --to onnx OUT`)")
    return OnnxUpstreamExpert(ckpt, *args, **kwargs)


def robustdistiller_onnx_url(ckpt: str, refresh: bool = False, *args: Any, **kwargs: Any) -> OnnxUpstreamExpert:
    """An exported ONNX upstream downloaded from ckpt (URL; ``#sha256=HEX`` pins its hash), cached by s3prl."""
    path = download_checkpoint(ckpt, refresh=refresh, looks_valid=looks_like_onnx_file, kind="an ONNX file")
    return robustdistiller_onnx_local(str(path), *args, **kwargs)
