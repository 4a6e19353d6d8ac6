"""Our upstream and stock s3prl's distiller give the same hidden states for the same weights (issue 2)."""

from __future__ import annotations

import pytest
import torch
from s3prl import hub
from s3prl_checkpoints import BASE_DISTILLER, SMALL_DISTILLER, make_s3prl_distiller_checkpoint

from robustdistiller_upstream.checkpoint import load_student_checkpoint, save_student_checkpoint

LENGTHS = [16000, 12345, 7001]  # a batch of different lengths, padding on two utterances


def _wavs(seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=generator) * 0.1 for n in LENGTHS]


def _hidden_states(upstream, wavs) -> list[torch.Tensor]:
    """Stock distiller's list: [projected, layers..., heads...]; ours: the same, heads of another width than the
    encoder's under ``predictions`` (s3prl's featurizer stacks ``hidden_states``)."""
    upstream.eval()
    with torch.no_grad():
        out = upstream(wavs)
    if "predictions" not in out:  # stock distiller_local
        return out["hidden_states"]
    hidden, heads = out["hidden_states"], out["predictions"]
    assert all(h.shape[-1] == hidden[0].shape[-1] for h in hidden)
    return hidden if heads[0].shape[-1] == hidden[0].shape[-1] else hidden + heads


def _max_diff(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> float:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs))


@pytest.mark.parametrize("distiller", [BASE_DISTILLER, SMALL_DISTILLER], ids=["base", "small-layernorm-preln"])
def test_s3prl_checkpoint_same_hidden_states(tmp_path, distiller):
    ckpt = make_s3prl_distiller_checkpoint(tmp_path / "s3prl.ckpt", distiller)
    wavs = _wavs()
    ours = _hidden_states(hub.robustdistiller_local(ckpt=str(ckpt)), wavs)
    theirs = _hidden_states(hub.distiller_local(ckpt=str(ckpt)), wavs)
    assert len(ours) == 1 + distiller["encoder_layers"] + distiller["n_tasks"]
    # heads of another width than the encoder's stay out of hidden_states (s3prl's featurizer stacks them)
    featurizer_safe = hub.robustdistiller_local(ckpt=str(ckpt)).eval()([wavs[0]])["hidden_states"]
    heads_apart = distiller["final_dim"] != distiller["encoder_embed_dim"]
    assert len(featurizer_safe) == len(ours) - distiller["n_tasks"] * heads_apart
    assert _max_diff(ours, theirs) <= 1e-4


def test_our_checkpoint_loads_in_stock_distiller(tmp_path):
    source = make_s3prl_distiller_checkpoint(tmp_path / "s3prl.ckpt", BASE_DISTILLER, seed=3)
    model = load_student_checkpoint(source).build_model()
    ours_path = save_student_checkpoint(tmp_path / "ours.ckpt", model, {"teacher": {"name": "wavlm_base_plus"}, "step": 7})
    wavs = _wavs(seed=2)
    stock = _hidden_states(hub.distiller_local(ckpt=str(ours_path)), wavs)
    ours = _hidden_states(hub.robustdistiller_local(ckpt=str(ours_path)), wavs)
    reference = _hidden_states(hub.distiller_local(ckpt=str(source)), wavs)
    assert _max_diff(stock, reference) == 0.0  # the weights went through our format unchanged
    assert _max_diff(ours, stock) <= 1e-4
    loaded = load_student_checkpoint(ours_path)
    assert loaded.metadata["step"] == 7 and loaded.metadata["teacher"] == {"name": "wavlm_base_plus"}


def test_training_mode_gradients_match_stock(tmp_path):
    """With dropout off, train-mode outputs and gradients (CNN included: folded norm) match s3prl's model."""
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

    distiller = dict(SMALL_DISTILLER, extractor_mode="default", dropout=0.0, attention_dropout=0.0,
                     activation_dropout=0.0, feature_grad_mult=1.0)
    ckpt = make_s3prl_distiller_checkpoint(tmp_path / "s.ckpt", distiller)
    states = torch.load(ckpt)
    theirs = DistillerModel(DistillerConfig(distiller))
    theirs.load_state_dict(states["Distiller"])
    ours = load_student_checkpoint(ckpt).build_model()
    wav = torch.nn.utils.rnn.pad_sequence(_wavs(), batch_first=True)
    lengths = torch.tensor(LENGTHS)
    pad_mask = (torch.arange(wav.shape[1]) < lengths[:, None]).float()
    _, _, pred_theirs, _ = theirs.train()(wav, pad_mask)
    pred_ours = ours.train()(wav, lengths).predictions
    assert (pred_ours - pred_theirs).abs().max().item() <= 1e-4
    (pred_theirs**2).mean().backward()
    (pred_ours**2).mean().backward()
    grads_theirs = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        g_ref = grads_theirs[name].grad
        assert torch.allclose(p.grad, g_ref, rtol=1e-3, atol=1e-6), name


def test_positional_weight_kept_between_calls_follows_every_change_of_its_parameters(tmp_path):
    """Feature extraction keeps the normalised positional-conv weight between calls; an optimizer step (in place),
    a load_state_dict and new tensors must each be seen, as stock's weight_norm sees them."""
    ckpt = make_s3prl_distiller_checkpoint(tmp_path / "s3prl.ckpt", SMALL_DISTILLER)
    ours, theirs = hub.robustdistiller_local(ckpt=str(ckpt)), hub.distiller_local(ckpt=str(ckpt))
    wavs = _wavs()
    assert _max_diff(_hidden_states(ours, wavs), _hidden_states(theirs, wavs)) <= 1e-4  # the weight is now kept
    conv = ours.model.encoder.pos_conv[0]
    stock_conv = theirs.model.model.encoder.pos_conv[0]
    with torch.no_grad():
        conv.weight_v.mul_(-0.5)  # in place: the same tensor, a new version
        stock_conv.weight_v.mul_(-0.5)
    assert _max_diff(_hidden_states(ours, wavs), _hidden_states(theirs, wavs)) <= 1e-4
    state = {k: v * 1.5 if k.endswith("weight_g") else v for k, v in theirs.model.model.state_dict().items()}
    theirs.model.model.load_state_dict(state)
    ours.model.load_state_dict(state)  # copies into the same tensors
    assert _max_diff(_hidden_states(ours, wavs), _hidden_states(theirs, wavs)) <= 1e-4
    conv.weight_g = torch.nn.Parameter(conv.weight_g.detach() * 2)  # a new tensor
    stock_conv.weight_g = torch.nn.Parameter(stock_conv.weight_g.detach() * 2)
    assert _max_diff(_hidden_states(ours, wavs), _hidden_states(theirs, wavs)) <= 1e-4


@pytest.mark.parametrize("kernel", [128, 31])
def test_positional_conv_on_short_inputs_equals_the_full_kernel_and_its_gradient(kernel):
    """Inputs shorter than half the kernel run on the taps that can meet them; output and gradients equal the full
    convolution's at every length, odd kernels too."""
    from robustdistiller_upstream.model.transformer import WeightNormConv1d

    torch.manual_seed(0)
    conv = WeightNormConv1d(64, kernel, 8)
    for frames in [1, 2, 7, 20, kernel // 2 - 1, kernel // 2, 3 * kernel]:
        x = torch.randn(2, 64, frames)
        full = torch.nn.functional.conv1d(x, conv.normalized_weight(), conv.bias, padding=kernel // 2, groups=8)
        out = conv(x)
        assert out.shape == full.shape and (out - full).abs().max().item() <= 1e-4, frames
        grad_full = torch.autograd.grad(full.square().sum(), conv.weight_v)[0]
        grad = torch.autograd.grad(out.square().sum(), conv.weight_v)[0]
        assert (grad - grad_full).abs().max().item() <= 1e-3 * grad_full.abs().max().item(), frames
