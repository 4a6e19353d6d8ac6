"""Checkpoint downloads through s3prl's cached downloader, with sha256 checks for files we know."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable
from urllib.parse import urldefrag

from robustdistiller_upstream.checkpoint import looks_like_torch_file
from robustdistiller_upstream.errors import CheckpointError

RELEASE_BASE = "https://huggingface.co/Hguimaraes/robustdistiller/resolve/main"
# The reference RobustDistiller releases (DistilHuBERT format). DEFAULT_RELEASE is what `-u robustdistiller` loads.
RELEASES = {
    "rd_wavlm": f"{RELEASE_BASE}/rd_wavlm.ckpt",
    "rd_hubert": f"{RELEASE_BASE}/rd_hubert.ckpt",
    "rd_rhubert": f"{RELEASE_BASE}/rd_rhubert.ckpt",
}
DEFAULT_RELEASE = "rd_wavlm"
# url -> sha256 of the file. A URL may also pin its own hash: "https://...ckpt#sha256=<hex>".
KNOWN_SHA256: dict[str, str] = {}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_checkpoint(url: str, refresh: bool = False, looks_valid: Callable[[Path], bool] = looks_like_torch_file,
                        kind: str = "a PyTorch checkpoint") -> Path:
    """Downloads (or reuses s3prl's cached copy of) ``url``; checks its sha256 when one is known or pinned.
    ``looks_valid``/``kind``: what the file must look like (an ONNX upstream downloads ONNX files)."""
    from s3prl.util.download import _urls_to_filepaths

    bare_url, fragment = urldefrag(url)
    expected = fragment[len("sha256="):].lower() if fragment.startswith("sha256=") else KNOWN_SHA256.get(bare_url)
    try:
        path = Path(_urls_to_filepaths(bare_url, refresh=refresh))
    except Exception as exc:  # urllib/requests errors vary by version; name the URL either way
        raise CheckpointError(f"{bare_url}: download failed ({exc})") from None
    if not looks_valid(path):
        # s3prl's downloader stores whatever the server sent, HTTP error pages included: do not keep it.
        size = path.stat().st_size
        path.unlink()
        raise CheckpointError(
            f"{bare_url}: download failed: the server sent {size} bytes that are not {kind} "
            "(an HTTP error page?)"
        )
    if expected is not None:
        actual = sha256_of(path)
        if actual != expected:
            raise CheckpointError(
                f"{bare_url}: sha256 mismatch (expected {expected}, got {actual}) for the cached file {path}; "
                "it was not used. Delete it or pass refresh=True (-r) to download it again."
            )
    return path
