"""The upstream expert under s3prl's interfaces: S3PRLUpstream, autocast, feature_grad_mult (issue 2), the bf16
upstream option (issue 31)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from s3prl import hub
from s3prl.nn import S3PRLUpstream
from s3prl_checkpoints import SMALL_DISTILLER, make_s3prl_distiller_checkpoint

from robustdistiller_upstream.errors import CheckpointError, ConfigError
from robustdistiller_upstream.synthetic import synthetic_speech


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


def frame_cosines(reference: list[torch.Tensor], other: list[torch.Tensor], valid: torch.Tensor) -> list[float]:
    """Per hidden state, the cosine of ``other`` to ``reference`` frame by frame, mean over the valid frames."""
    return [F.cosine_similarity(a, b, dim=-1)[valid].mean().item() for a, b in zip(reference, other, strict=True)]


def test_autocast_option_through_s3prl_hub(ckpt, tmp_path):
    """``autocast: bf16`` from a ``-g`` file (as s3prl's runner passes it) and from ``extra_conf``: the forward runs
    in bf16, and what reaches s3prl is float32 and close to the float32 upstream's."""
    options = tmp_path / "options.yaml"
    options.write_text("autocast: bf16\n")
    wavs = [torch.from_numpy(synthetic_speech(1.5, seed=1)), torch.from_numpy(synthetic_speech(1.0, seed=2))]
    fp32 = hub.robustdistiller_local(ckpt=str(ckpt)).eval()
    from_file = hub.robustdistiller_local(ckpt=str(ckpt), model_config=str(options)).eval()
    with torch.no_grad():
        reference, out = fp32(wavs), from_file(wavs)
    valid = reference["pad_mask"].bool()
    keys = ("hidden_states", "predictions")
    states = [t for key in keys for t in out[key]] + [out["last_hidden_state"], out["paper"], out["pad_mask"]]
    assert all(t.dtype == torch.float32 for t in states)
    assert torch.equal(out["pad_mask"], reference["pad_mask"])
    ours, theirs = [t for key in keys for t in reference[key]], [t for key in keys for t in out[key]]
    assert min(frame_cosines(ours, theirs, valid)) >= 0.99
    assert max((a - b).abs().max().item() for a, b in zip(ours, theirs)) > 1e-4  # it did not run in float32

    from_file.train()  # fine-tuning (-f): gradients reach the float32 parameters through the bf16 forward
    from_file(wavs)["hidden_states"][-1].pow(2).mean().backward()
    grads = [p.grad for p in from_file.model.encoder.layers.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)

    wrapped = S3PRLUpstream("robustdistiller_local", path_or_url=str(ckpt), extra_conf={"autocast": "bf16"}).eval()
    with torch.no_grad():
        hidden, _ = wrapped(torch.stack([wavs[0], torch.cat([wavs[1], torch.zeros(8000)])]),
                            torch.tensor([len(w) for w in wavs]))
    assert all(h.dtype == torch.float32 for h in hidden)
    hidden = [h[:, : valid.shape[1]] for h in hidden]  # S3PRLUpstream pads to len(range(0, samples, 320)) frames
    assert min(frame_cosines(reference["hidden_states"], hidden, valid)) >= 0.99
    assert max((a - b).abs().max().item() for a, b in zip(reference["hidden_states"], hidden)) > 1e-4


def test_options_file_errors_name_the_file_and_key(ckpt, tmp_path):
    options = tmp_path / "options.yaml"
    options.write_text("autocast: fp16\n")
    with pytest.raises(ConfigError, match=f"{options}: autocast: 'fp16' is not one of \\['none', 'bf16'\\]"):
        hub.robustdistiller_local(ckpt=str(ckpt), model_config=str(options))
    options.write_text("precision: bf16\n")
    with pytest.raises(ConfigError, match=f"{options}: unknown key\\(s\\) \\['precision'\\]"):
        hub.robustdistiller_local(ckpt=str(ckpt), model_config=str(options))
    with pytest.raises(ConfigError, match="extra_conf: autocast: 'bfloat16' is not one of"):
        S3PRLUpstream("robustdistiller_local", path_or_url=str(ckpt), extra_conf={"autocast": "bfloat16"})
    with pytest.raises(ConfigError, match=f"{tmp_path / 'none.yaml'}: config file not found"):
        hub.robustdistiller_local(ckpt=str(ckpt), model_config=str(tmp_path / "none.yaml"))


def test_trust_checkpoint_from_options_file(tmp_path):
    """``trust_checkpoint: true`` in the ``-g`` file lets an old checkpoint with pickled objects load."""
    old = make_s3prl_distiller_checkpoint(tmp_path / "old.ckpt", SMALL_DISTILLER,
                                          extra={"Scheduler": torch.optim.lr_scheduler.ConstantLR})
    with pytest.raises(CheckpointError, match="trust_checkpoint"):
        hub.robustdistiller_local(ckpt=str(old))
    options = tmp_path / "options.yaml"
    options.write_text("trust_checkpoint: true\nautocast: none\n")
    assert hub.robustdistiller_local(ckpt=str(old), model_config=str(options)).options.trust_checkpoint


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
