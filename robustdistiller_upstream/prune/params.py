"""Parameter count of a (gated) ``PrunableWav2Vec2`` as a differentiable function of its gates (DPHuBERT eq. 6).

With gates, each structure counts with its expected number of kept units (``HardConcrete.expected_kept``) and
whole blocks are scaled by their expected presence; without gates the count equals the model's exact number of
parameters (gate parameters excluded), so sparsity = 1 - expected / original compares like with like.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from robustdistiller_upstream.prune.hardconcrete import HardConcrete
from robustdistiller_upstream.prune.model import PrunableWav2Vec2

Count = Union[Tensor, float]


def _kept(gate: Optional[HardConcrete], full: int) -> Count:
    return gate.expected_kept() if gate is not None else float(full)


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if "hard_concrete" not in name)


def expected_num_params(model: PrunableWav2Vec2) -> Count:
    """Expected number of parameters (a scalar tensor when the model has gates)."""
    arch = model.arch
    total: Count = 0.0
    in_channels: Count = 1.0
    for block in model.feature_extractor.conv_layers:
        out = _kept(block.hard_concrete, block.conv.out_channels)
        total = total + in_channels * out * block.kernel
        if block.conv.bias is not None:
            total = total + out
        if block.layer_norm is not None:
            total = total + 2 * out
        in_channels = out
    dim = arch.encoder_embed_dim
    total = total + in_channels  # dummy_weight
    total = total + 2 * in_channels + (in_channels + 1) * dim  # feature projection (layer norm + linear)
    transformer = model.encoder.transformer
    total = total + _numel(transformer.pos_conv_embed) + _numel(transformer.layer_norm)
    for layer in transformer.layers:
        total = total + _numel(layer.layer_norm) + _numel(layer.final_layer_norm)
        att = layer.attention
        if att is not None:
            inner = _kept(att.hard_concrete_for_heads, att.heads) * att.head_dim
            block = 3 * (dim + 1) * inner + (inner + 1) * dim
            if att.total_heads is not None:  # WavLM gating (and table): present while the block is
                block = block + _numel(att.gru_rel_pos_linear) + att.gru_rel_pos_const.numel()
                if att.rel_attn_embed is not None:
                    block = block + att.rel_attn_embed.weight.numel()
            total = total + block * _kept(att.hard_concrete_for_layer, 1)
        ffn = layer.feed_forward
        if ffn is not None:
            units = _kept(ffn.hard_concrete_for_intermediate, ffn.intermediate_dense.out_features)
            block = (dim + 1) * units + (units + 1) * dim
            total = total + block * _kept(ffn.hard_concrete_for_layer, 1)
    return total


def num_params(model: torch.nn.Module) -> int:
    """Exact parameter count without gate parameters."""
    return _numel(model)
