"""Export: the dense pruned model computes what the gated model computes with deterministic gates, and is as
small as the sparsity controller asked for."""

from __future__ import annotations

import pytest
import torch
from prune_helpers import batch, gated_copy, valid_max_diff, write_teacher

from robustdistiller_upstream.prune.arch import ArchConfig
from robustdistiller_upstream.prune.export import export_pruned
from robustdistiller_upstream.prune.model import PrunableWav2Vec2
from robustdistiller_upstream.prune.params import expected_num_params, num_params
from robustdistiller_upstream.prune.sparsity import LagrangianController, SparsityConfig


@pytest.mark.parametrize(
    "kind, cfg",
    [
        ("wavlm", {}),
        ("hubert", {}),
        # pre-LN transformer, layer norm in every CNN block, conv bias: the other fairseq layout
        ("wavlm", {"extractor_mode": "layer_norm", "layer_norm_first": True, "conv_bias": True}),
    ],
)
def test_exported_model_equals_gated_model(tmp_path, kind, cfg):
    gated = gated_copy(write_teacher(kind, tmp_path / "teacher.pt", **cfg))
    dense = export_pruned(gated)
    assert not dense.gates() and not dense.arch.prunes_anything
    arch = dense.arch
    removed_something = (
        sum(c for c, _, _ in arch.extractor_conv_layer_config) < 7 * 48
        and sum(arch.encoder_ff_interm_features) < 2 * 128
        and sum(arch.heads(i) if arch.encoder_use_attention[i] else 0 for i in range(2)) < 8
    )
    assert removed_something, arch
    assert num_params(dense) < num_params(gated)
    wav, lengths = batch([9000, 6400, 4000])  # padded batch: masks and lengths must agree too
    with torch.no_grad():
        expected, frames = gated(wav, lengths)
        actual, dense_frames = dense(wav, lengths)
    assert torch.equal(frames, dense_frames)
    assert valid_max_diff(expected, actual, frames) <= 1e-4


def test_whole_blocks_are_removed_when_their_gate_is_zero(tmp_path):
    gated = gated_copy(write_teacher("hubert", tmp_path / "teacher.pt"))
    layer = gated.encoder.transformer.layers[1]
    with torch.no_grad():
        layer.attention.hard_concrete_for_layer.log_alpha.fill_(-20.0)
        layer.feed_forward.hard_concrete_for_layer.log_alpha.fill_(-20.0)
    gated.eval()
    dense = export_pruned(gated)
    assert dense.arch.encoder_use_attention[1] is False and dense.arch.encoder_use_feed_forward[1] is False
    assert dense.encoder.transformer.layers[1].attention is None
    wav, lengths = batch([8000, 8000])
    with torch.no_grad():
        expected, frames = gated(wav, lengths)
        actual, _ = dense(wav, lengths)
    assert valid_max_diff(expected, actual, frames) <= 1e-4


def test_controller_drives_the_exported_size_to_the_target():
    """WavLM Base+ shape (random weights; only sizes matter), the recipe's gates (CNN channels, heads, FFN units):
    the Lagrangian alone moves the expected sparsity to 0.75 and the export lands within 2% of the target size."""
    torch.manual_seed(0)
    base = dict(encoder_total_num_heads=[12] * 12, encoder_remaining_heads=[list(range(12))] * 12,
                encoder_num_buckets=320, encoder_max_distance=800)
    model = PrunableWav2Vec2(ArchConfig(**base, extractor_prune_conv_channels=True,
                                        encoder_prune_attention_heads=True,
                                        encoder_prune_feed_forward_intermediate=True))
    original = num_params(model)
    assert original == 94_381_680  # gates are not counted: the dense WavLM Base+ shape
    config = SparsityConfig(target=0.75, warmup_steps=120, reg_lr=0.1)
    controller = LagrangianController(config, original)
    optimizer = torch.optim.AdamW([{"params": model.gate_parameters()}, {"params": list(controller.parameters())}],
                                  lr=config.reg_lr, weight_decay=0.0)
    for step in range(250):
        loss, terms = controller(expected_num_params(model), step)
        optimizer.zero_grad()
        loss.backward()
        controller.ascend()
        optimizer.step()
    assert abs(float(terms["sparsity_expected"]) - 0.75) < 0.005
    dense = export_pruned(model)
    target = (1 - 0.75) * original
    assert abs(num_params(dense) - target) / target <= 0.02
