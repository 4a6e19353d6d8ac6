"""``robustdistiller_url`` through s3prl's cached downloader, from a real HTTP server on 127.0.0.1 (issue 2)."""

from __future__ import annotations

import functools
import os
import hashlib
import http.server
import threading

import pytest
import s3prl.util.download as s3prl_download
import torch
from s3prl import hub
from s3prl_checkpoints import SMALL_DISTILLER, make_s3prl_distiller_checkpoint

from robustdistiller_upstream.errors import CheckpointError
from robustdistiller_upstream.s3prl_plugin import download


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    previous = s3prl_download.get_dir()
    s3prl_download.set_dir(tmp_path / "cache")
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        s3prl_download.set_dir(previous)
        httpd.shutdown()


def test_url_entry_downloads_caches_and_checks_sha256(server, monkeypatch):
    root, base = server
    ckpt = make_s3prl_distiller_checkpoint(root / "student.ckpt", SMALL_DISTILLER)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    url = f"{base}/student.ckpt"

    upstream = hub.robustdistiller_url(ckpt=f"{url}#sha256={digest}")
    with torch.no_grad():
        hidden = upstream.eval()([torch.zeros(16000)])["hidden_states"]
    assert hidden[0].shape == (1, 49, SMALL_DISTILLER["encoder_embed_dim"])

    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        hub.robustdistiller_url(ckpt=f"{url}#sha256={'0' * 64}")

    # A known release is checked without a pinned hash; a tampered cached copy is refused.
    monkeypatch.setitem(download.KNOWN_SHA256, url, digest)
    hub.robustdistiller(ckpt=url)
    cached = download.download_checkpoint(url)
    cached.write_bytes(cached.read_bytes() + b"tampered")
    os.utime(cached, (1e9, 1e9))  # s3prl keeps files younger than 2 s without downloading them again
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        hub.robustdistiller_url(ckpt=url)
    hub.robustdistiller_url(ckpt=url, refresh=True)  # refresh downloads it again


def test_url_that_does_not_exist_names_the_url(server):
    _, base = server
    with pytest.raises(CheckpointError, match="missing.ckpt: download failed"):
        hub.robustdistiller_url(ckpt=f"{base}/missing.ckpt")


def test_local_entry_names_a_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        hub.robustdistiller_local(ckpt=str(tmp_path / "absent.ckpt"))
