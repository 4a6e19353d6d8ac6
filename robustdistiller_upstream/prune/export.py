"""Export: a gated ``PrunableWav2Vec2`` -> a smaller dense one, pruned structures physically removed.

Gates take their deterministic values; units whose gate is 0 are removed, and the soft values of the kept ones
are folded into the weights that read them (next conv's input channels, ``dummy_weight``, attention ``out_proj``
columns, FFN ``output_dense`` columns; a block gate scales its block's output weights and bias). The dense model
then computes what the gated one computes in eval mode.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from torch import Tensor

from robustdistiller_upstream.prune.arch import ArchConfig
from robustdistiller_upstream.prune.hardconcrete import HardConcrete
from robustdistiller_upstream.prune.model import PrunableWav2Vec2


def _mask(gate: Optional[HardConcrete], n: int) -> Tensor:
    return gate() if gate is not None else torch.ones(n)


def _kept(mask: Tensor) -> Tensor:
    return mask.nonzero().squeeze(-1)


@torch.no_grad()
def export_pruned(model: PrunableWav2Vec2) -> PrunableWav2Vec2:
    """The dense pruned model (prune flags off, pruned sizes in its ``arch``), in eval mode; ``model`` is put in
    eval mode (which fixes its gates' kept counts) and otherwise left unchanged."""
    model.eval()
    arch = model.arch
    state = {k: v.detach().clone() for k, v in model.state_dict().items() if "hard_concrete" not in k}
    changes: dict = {name: False for name in (f.name for f in dataclasses.fields(ArchConfig)) if "_prune_" in name}

    # CNN: keep channels with a non-zero gate; the next layer reads them scaled by their gate value.
    conv_config, carried = [], None  # carried: (kept index, their gate values) of the previous layer
    for i, block in enumerate(model.feature_extractor.conv_layers):
        prefix = f"feature_extractor.conv_layers.{i}."
        if carried is not None:
            index, scale = carried
            state[prefix + "conv.weight"] = state[prefix + "conv.weight"][:, index] * scale[None, :, None]
        mask = _mask(block.hard_concrete, block.conv.out_channels)
        index = _kept(mask)
        for name in ("conv.weight", "conv.bias", "layer_norm.weight", "layer_norm.bias"):
            if prefix + name in state:
                state[prefix + name] = state[prefix + name][index]
        conv_config.append((len(index), block.kernel, block.stride))
        carried = (index, mask[index])
    index, scale = carried
    state["feature_extractor.dummy_weight"] = state["feature_extractor.dummy_weight"][index] * scale
    for name in ("layer_norm.weight", "layer_norm.bias"):
        state[f"encoder.feature_projection.{name}"] = state[f"encoder.feature_projection.{name}"][index]
    key = "encoder.feature_projection.projection.weight"
    state[key] = state[key][:, index]

    use_attention, use_ffn, units, heads = [], [], [], []
    for i, layer in enumerate(model.encoder.transformer.layers):
        prefix = f"encoder.transformer.layers.{i}."
        kept_heads = _prune_attention(layer.attention, prefix + "attention.", state)
        use_attention.append(kept_heads is not None)
        heads.append(kept_heads if kept_heads is not None else [])
        kept_units = _prune_feed_forward(layer.feed_forward, prefix + "feed_forward.", state)
        use_ffn.append(kept_units is not None)
        units.append(kept_units or 0)

    changes.update(extractor_conv_layer_config=conv_config, encoder_use_attention=use_attention,
                   encoder_use_feed_forward=use_ffn, encoder_ff_interm_features=units)
    if arch.is_wavlm:
        changes["encoder_remaining_heads"] = [
            [arch.encoder_remaining_heads[i][h] for h in kept] for i, kept in enumerate(heads)
        ]
    else:
        changes["encoder_num_heads"] = [len(kept) for kept in heads]
    dense = PrunableWav2Vec2(dataclasses.replace(arch, **changes))
    dense.load_state_dict(state, strict=True)
    return dense.eval()


def _drop(state: dict, prefix: str) -> None:
    for key in [k for k in state if k.startswith(prefix)]:
        del state[key]


def _prune_attention(att, prefix: str, state: dict) -> Optional[list[int]]:
    """Prunes ``state`` in place; returns the kept head positions, or None when the block goes."""
    if att is None:
        return None
    layer_gate = float(_mask(att.hard_concrete_for_layer, 1)[0])
    head_mask = _mask(att.hard_concrete_for_heads, att.heads)
    kept = _kept(head_mask)
    if layer_gate == 0.0 or len(kept) == 0:
        _drop(state, prefix)
        return None
    dims = (kept[:, None] * att.head_dim + torch.arange(att.head_dim)).reshape(-1)
    for name in ("q_proj", "k_proj", "v_proj"):
        state[f"{prefix}{name}.weight"] = state[f"{prefix}{name}.weight"][dims]
        state[f"{prefix}{name}.bias"] = state[f"{prefix}{name}.bias"][dims]
    column_scale = head_mask[kept].repeat_interleave(att.head_dim) * layer_gate
    state[f"{prefix}out_proj.weight"] = state[f"{prefix}out_proj.weight"][:, dims] * column_scale
    state[f"{prefix}out_proj.bias"] = state[f"{prefix}out_proj.bias"] * layer_gate
    return kept.tolist()


def _prune_feed_forward(ffn, prefix: str, state: dict) -> Optional[int]:
    """Prunes ``state`` in place; returns the number of kept units, or None when the block goes."""
    if ffn is None:
        return None
    layer_gate = float(_mask(ffn.hard_concrete_for_layer, 1)[0])
    unit_mask = _mask(ffn.hard_concrete_for_intermediate, ffn.intermediate_dense.out_features)
    kept = _kept(unit_mask)
    if layer_gate == 0.0 or len(kept) == 0:
        _drop(state, prefix)
        return None
    state[f"{prefix}intermediate_dense.weight"] = state[f"{prefix}intermediate_dense.weight"][kept]
    state[f"{prefix}intermediate_dense.bias"] = state[f"{prefix}intermediate_dense.bias"][kept]
    state[f"{prefix}output_dense.weight"] = state[f"{prefix}output_dense.weight"][:, kept] * unit_mask[kept] * layer_gate
    state[f"{prefix}output_dense.bias"] = state[f"{prefix}output_dense.bias"] * layer_gate
    return len(kept)
