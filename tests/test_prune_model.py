"""The prunable model: a copy of an s3prl WavLM/HuBERT computes what s3prl computes; gates and counts behave."""

from __future__ import annotations

import pytest
import torch
from prune_helpers import ALL_UNITS, batch, write_teacher

import s3prl.hub as hub
from robustdistiller_upstream.errors import CheckpointError
from robustdistiller_upstream.prune.convert import model_from_teacher, parse_conv_layers
from robustdistiller_upstream.prune.hardconcrete import HardConcrete
from robustdistiller_upstream.prune.params import expected_num_params, num_params


@pytest.mark.parametrize(
    "kind, cfg",
    [
        ("wavlm", {}),
        ("hubert", {}),
        # WavLM Large layout: waveform normalisation, layer norm in every CNN block, pre-LN transformer
        ("wavlm", {"normalize": True, "extractor_mode": "layer_norm", "layer_norm_first": True}),
    ],
)
def test_copy_of_the_teacher_matches_stock_s3prl(tmp_path, kind, cfg):
    path = write_teacher(kind, tmp_path / f"{kind}.pt", **cfg)
    reference = getattr(hub, f"{kind}_local")(ckpt=str(path)).eval()
    ours = model_from_teacher(path).eval()
    wav, lengths = batch([12000, 12000])
    with torch.no_grad():
        expected = reference(list(wav))["hidden_states"]
        hidden, frame_lengths = ours(wav, lengths)
    assert len(hidden) == len(expected) == 3
    for a, b in zip(hidden, expected):
        assert a.shape == b.shape
        assert (a - b).abs().max() < 1e-4
    assert frame_lengths.tolist() == [37, 37]
    # without gates the "expected" count is the exact count, and that is every parameter of the model
    assert expected_num_params(ours) == num_params(ours) == sum(p.numel() for p in ours.parameters())


def test_gated_count_is_differentiable_and_starts_near_the_full_model(tmp_path):
    path = write_teacher("wavlm", tmp_path / "wavlm.pt")
    full = num_params(model_from_teacher(path))
    gated = model_from_teacher(path, ALL_UNITS)
    expected = expected_num_params(gated)
    assert expected.requires_grad
    # channels/heads/blocks start at keep 0.99, FFN units at 0.5 (P(nonzero) ~ 0.83): somewhat below full size
    assert 0.8 * full < float(expected.detach()) < full
    expected.backward()
    assert all(g.log_alpha.grad is not None and (g.log_alpha.grad > 0).all() for g in gated.gates())


def test_hardconcrete_masks():
    torch.manual_seed(0)
    gate = HardConcrete(10, init_keep=0.5)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.linspace(-6, 6, 10))
    samples = torch.stack([gate.sample() for _ in range(200)])
    assert samples.min() == 0.0 and samples.max() == 1.0  # stretched and clipped: exact zeros and ones occur
    kept = round(float(gate.expected_kept().detach()))
    mask = gate.eval()()
    assert int((mask > 0).sum()) == kept
    assert (mask[-kept:] > 0).all() and (mask[:-kept] == 0).all()  # the largest log_alpha are kept
    assert int((HardConcrete(4, init_keep=0.01, min_keep=1).eval()() > 0).sum()) == 1


def test_conv_layer_spec_is_parsed_without_eval():
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 2", "x") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    with pytest.raises(CheckpointError, match="conv_feature_layers"):
        parse_conv_layers("__import__('os').system('true')", "x")


def test_a_file_that_is_no_teacher_is_named(tmp_path):
    bad = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="other.pt: not an s3prl wavlm_local"):
        model_from_teacher(bad)
