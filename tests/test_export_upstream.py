"""``robustdistiller_onnx_local`` / ``_url`` (issue 18): an exported file as an s3prl upstream, the same contract as
the PyTorch upstream it came from; upstream fine-tuning on it is a clear error."""

from __future__ import annotations

import hashlib

import onnx
import pytest
import torch
from s3prl import hub
from s3prl.nn import S3PRLUpstream
from s3prl_checkpoints import SMALL_DISTILLER, make_s3prl_distiller_checkpoint
from test_hub_download import server  # noqa: F401 (fixture: a real HTTP server and s3prl's download cache)

from robustdistiller_upstream.errors import CheckpointError, UserError
from robustdistiller_upstream.export.onnx import export_onnx
from robustdistiller_upstream.export.source import load_export_source


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_upstream")
    ckpt = make_s3prl_distiller_checkpoint(root / "small.ckpt", SMALL_DISTILLER)
    export_onnx(load_export_source(ckpt), root / "small.int8.onnx", int8="dynamic")
    return ckpt, export_onnx(load_export_source(ckpt), root / "small.onnx").path


def test_onnx_upstream_gives_the_pytorch_upstreams_outputs(exported):
    ckpt, path = exported
    assert "robustdistiller_onnx_local" in S3PRLUpstream.available_names()
    ours = hub.robustdistiller_onnx_local(ckpt=str(path)).eval()
    torch_upstream = hub.robustdistiller_local(ckpt=str(ckpt)).eval()
    wavs = [torch.randn(24000) * 0.1, torch.randn(13000) * 0.1]
    with torch.no_grad():
        a, b = ours(wavs), torch_upstream(wavs)
    assert ours.get_downsample_rates("hidden_states") == 320
    assert torch.equal(a["pad_mask"], b["pad_mask"]) and a["last_hidden_state"] is a["hidden_states"][-1]
    valid = b["pad_mask"].bool()
    for x, y in zip(a["hidden_states"], b["hidden_states"], strict=True):
        assert x.shape == y.shape and float((x - y).abs()[valid].max()) <= 1e-4
    # through S3PRLUpstream too (ESPnet's frontend path), int8 included
    upstream = S3PRLUpstream("robustdistiller_onnx_local", path_or_url=str(path.with_name("small.int8.onnx"))).eval()
    with torch.no_grad():
        hidden, hidden_lengths = upstream(torch.randn(2, 32000) * 0.1, torch.tensor([32000, 20000]))
    # projected features + 1 layer: the 80-d head of the 96-d student is left out (ESPnet's featurizer stacks them)
    assert len(hidden) == 2 and hidden_lengths[0].tolist() == [100, 63]


def test_upstream_fine_tuning_is_a_clear_error(exported):
    _, path = exported
    upstream = hub.robustdistiller_onnx_local(ckpt=str(path))
    upstream.train()  # what s3prl's runner does with -f (and then runs it with gradients on)
    with pytest.raises(UserError, match=r"fine-tuning \(run_downstream.py -f\) is not possible"):
        upstream([torch.randn(16000) * 0.1])


def test_files_that_are_not_our_exports_are_refused(tmp_path, exported):
    ckpt, _ = exported
    with pytest.raises(CheckpointError, match="no such ONNX file"):
        hub.robustdistiller_onnx_local(ckpt=str(ckpt))  # a PyTorch checkpoint
    model = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])]))
    onnx.save(model, str(tmp_path / "other.onnx"))
    with pytest.raises(CheckpointError, match="not an ONNX file written by `robustdistiller export`"):
        hub.robustdistiller_onnx_local(ckpt=str(tmp_path / "other.onnx"))


def test_url_entry_downloads_checks_and_caches(server, exported):  # noqa: F811
    root, base = server
    _, path = exported
    (root / "m.onnx").write_bytes(path.read_bytes())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    upstream = hub.robustdistiller_onnx_url(ckpt=f"{base}/m.onnx#sha256={digest}")
    assert upstream.precision == "fp32"
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        hub.robustdistiller_onnx_url(ckpt=f"{base}/m.onnx#sha256={'0' * 64}")
    (root / "page.onnx").write_text("<html>not found</html>")
    with pytest.raises(CheckpointError, match="not an ONNX file"):
        hub.robustdistiller_onnx_url(ckpt=f"{base}/page.onnx")
