"""The upstream expert under s3prl's interfaces: S3PRLUpstream, autocast, feature_grad_mult (issue 2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from s3prl import hub
from s3prl.nn import S3PRLUpstream
from s3prl_checkpoints import SMALL_DISTILLER, make_s3prl_distiller_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_s3prl_distiller_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.ckpt", SMALL_DISTILLER)


def test_s3prl_upstream_wrapper(ckpt):
    assert "robustdistiller_local" in S3PRLUpstream.available_names()
    upstream = S3PRLUpstream("robustdistiller_local", path_or_url=str(ckpt)).eval()
    # the 80-d head of the 96-d student is not among the hidden states (ESPnet's featurizer stacks them too)
    assert upstream.num_layers == 2 and upstream.downsample_rates == [320] * 2
    wavs = torch.randn(2, 32000) * 0.1
    lengths = torch.tensor([32000, 20000])
    with torch.no_grad():
        hidden, hidden_lengths = upstream(wavs, lengths)
    assert [h.shape for h in hidden] == [(2, 100, SMALL_DISTILLER["encoder_embed_dim"])] * 2
    assert hidden_lengths[0].tolist() == [100, 63]


def test_autocast_bf16_on_cpu(ckpt):
    upstream = hub.robustdistiller_local(ckpt=str(ckpt)).eval()
    wavs = [torch.randn(24000) * 0.1, torch.randn(16000) * 0.1]
    with torch.no_grad():
        reference = upstream(wavs)["hidden_states"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reduced = upstream(wavs)["hidden_states"]
    for a, b in zip(reference, reduced):
        assert b.dtype == torch.bfloat16 or b.dtype == torch.float32
        similarity = F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=-1)
        assert similarity.min() > 0.99


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(ckpt):
    upstream = hub.robustdistiller_local(ckpt=str(ckpt)).eval()
    wavs = [torch.randn(24000) * 0.1, torch.randn(16000) * 0.1]
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # cuDNN's convolutions default to TF32 (10-bit mantissa)
    try:
        with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            cpu = upstream(wavs)["hidden_states"]
            gpu = upstream.cuda()([w.cuda() for w in wavs])["hidden_states"]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    assert max((a - b.cpu()).abs().max().item() for a, b in zip(cpu, gpu)) <= 1e-4


def test_feature_grad_mult_is_read_at_forward(ckpt):
    """ESPnet sets upstream.upstream.model.feature_grad_mult = 1.0 to fine-tune the CNN; it must take effect."""
    upstream = hub.robustdistiller_local(ckpt=str(ckpt)).train()
    wavs = [torch.randn(16000, generator=torch.Generator().manual_seed(0)) * 0.1]
    cnn_weight = upstream.model.feature_extractor.conv_layers[-1][0].weight

    def cnn_grad(mult: float) -> torch.Tensor:
        upstream.model.feature_grad_mult = mult
        upstream.zero_grad()
        torch.manual_seed(0)  # same dropout masks
        upstream(wavs)["hidden_states"][-1].pow(2).mean().backward()
        return cnn_weight.grad.clone()


    g_default, g_full = cnn_grad(SMALL_DISTILLER["feature_grad_mult"]), cnn_grad(1.0)
    assert g_full.abs().sum() > 0
    assert torch.allclose(g_full * SMALL_DISTILLER["feature_grad_mult"], g_default, rtol=1e-4, atol=1e-9)
    upstream.model.feature_grad_mult = 0.0  # frozen CNN: no gradient reaches it at all
    upstream.zero_grad()
    upstream(wavs)["hidden_states"][-1].pow(2).mean().backward()
    assert cnn_weight.grad is None
