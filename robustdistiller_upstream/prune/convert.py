"""Teacher checkpoints in s3prl's formats -> ``ArchConfig`` + state dict of ``PrunableWav2Vec2``.

Reads s3prl ``wavlm_local`` files (``{'cfg': dict, 'model': state_dict}``) and s3prl's converted HuBERT files
(``{'task_cfg', 'model_cfg', 'model_weight', ...}``, ``hubert_local``). Only the key mapping lives here; the
model never knows where its weights came from.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from robustdistiller_upstream.checkpoint import load_torch_file
from robustdistiller_upstream.errors import CheckpointError
from robustdistiller_upstream.prune.arch import ArchConfig
from robustdistiller_upstream.prune.model import PrunableWav2Vec2

# s3prl/fairseq name (regex) -> our (DPHuBERT) name
_RENAMES = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.", r"feature_extractor.conv_layers.\1.layer_norm."),  # LN mode
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.", r"feature_extractor.conv_layers.\1.layer_norm."),  # group norm
    (r"^layer_norm\.", "encoder.feature_projection.layer_norm."),
    (r"^post_extract_proj\.", "encoder.feature_projection.projection."),
    (r"^encoder\.pos_conv\.0\.parametrizations\.weight\.original0", "encoder.transformer.pos_conv_embed.conv.weight_g"),
    (r"^encoder\.pos_conv\.0\.parametrizations\.weight\.original1", "encoder.transformer.pos_conv_embed.conv.weight_v"),
    (r"^encoder\.pos_conv\.0\.", "encoder.transformer.pos_conv_embed.conv."),
    (r"^encoder\.layer_norm\.", "encoder.transformer.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.", r"encoder.transformer.layers.\1.attention.rel_attn_embed."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.grep_linear\.", r"encoder.transformer.layers.\1.attention.gru_rel_pos_linear."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.grep_a$", r"encoder.transformer.layers.\1.attention.gru_rel_pos_const"),
    (r"^encoder\.layers\.(\d+)\.self_attn\.", r"encoder.transformer.layers.\1.attention."),
    (r"^encoder\.layers\.(\d+)\.self_attn_layer_norm\.", r"encoder.transformer.layers.\1.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.fc1\.", r"encoder.transformer.layers.\1.feed_forward.intermediate_dense."),
    (r"^encoder\.layers\.(\d+)\.fc2\.", r"encoder.transformer.layers.\1.feed_forward.output_dense."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.transformer.layers.\1.final_layer_norm."),
]
# Pretraining-only parameters of the teachers, not part of the representation model
_UNUSED = ("mask_emb", "label_embs_concat", "final_proj.", "project_q.", "quantizer.", "target_glu.")


def parse_conv_layers(spec: Any, source: str) -> list[tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers`` (a Python-like expression such as ``"[(512,10,5)] + [(512,3,2)] * 4"``,
    or a list) -> [(channels, kernel, stride), ...], evaluated without ``eval`` (lists, tuples, ints, + and *)."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(n) for n in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(ast.dump(node))

    try:
        layers = value(ast.parse(spec, mode="eval").body) if isinstance(spec, str) else spec
        return [(int(c), int(k), int(s)) for c, k, s in layers]
    except (SyntaxError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{source}: conv_feature_layers {spec!r} is not a list of (dim, kernel, stride)") from exc


def _arch_from_fairseq_cfg(cfg: Mapping[str, Any], normalize: bool, wavlm: bool, source: str) -> ArchConfig:
    if cfg.get("activation_fn", "gelu") != "gelu":
        raise CheckpointError(f"{source}: activation_fn {cfg['activation_fn']!r} is not supported (gelu only)")
    layers, heads, dim = int(cfg["encoder_layers"]), int(cfg["encoder_attention_heads"]), int(cfg["encoder_embed_dim"])
    mode = {"default": "group_norm", "layer_norm": "layer_norm"}.get(cfg.get("extractor_mode", "default"))
    if mode is None:
        raise CheckpointError(f"{source}: extractor_mode {cfg['extractor_mode']!r} is not supported")
    common = dict(
        extractor_mode=mode,
        extractor_conv_layer_config=parse_conv_layers(cfg["conv_feature_layers"], source),
        extractor_conv_bias=bool(cfg.get("conv_bias", False)),
        encoder_embed_dim=dim,
        encoder_pos_conv_kernel=int(cfg.get("conv_pos", 128)),
        encoder_pos_conv_groups=int(cfg.get("conv_pos_groups", 16)),
        encoder_num_layers=layers,
        encoder_use_attention=[True] * layers,
        encoder_use_feed_forward=[True] * layers,
        encoder_ff_interm_features=[int(cfg["encoder_ffn_embed_dim"])] * layers,
        encoder_layer_norm_first=bool(cfg.get("layer_norm_first", False)),
        normalize_waveform=bool(normalize),
        # the student trains with the teacher's own regularisation (DPHuBERT builds it from the teacher config)
        encoder_projection_dropout=float(cfg.get("dropout_input", 0.0)),
        encoder_dropout=float(cfg.get("dropout", 0.1)),
        encoder_attention_dropout=float(cfg.get("attention_dropout", 0.1)),
        encoder_ff_interm_dropout=float(cfg.get("activation_dropout", 0.0)),
        encoder_layer_drop=float(cfg.get("encoder_layerdrop", 0.0)),
    )
    if wavlm:
        return ArchConfig(
            **common,
            encoder_total_num_heads=[heads] * layers,
            encoder_remaining_heads=[list(range(heads)) for _ in range(layers)],
            encoder_num_buckets=int(cfg.get("num_buckets", 320)),
            encoder_max_distance=int(cfg.get("max_distance", 1280)),
        )
    return ArchConfig(**common, encoder_num_heads=[heads] * layers, encoder_head_dim=dim // heads)


def rename_fairseq_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """s3prl WavLM/HuBERT parameter names -> ours; pretraining-only entries dropped."""
    out = {}
    for key, value in state.items():
        if key.startswith(_UNUSED):
            continue
        new = key
        for pattern, replacement in _RENAMES:
            new, hits = re.subn(pattern, replacement, key)
            if hits:
                break
        out[new] = value
    return out


def load_teacher_weights(path: str | Path) -> tuple[ArchConfig, dict[str, Tensor]]:
    """Reads a ``wavlm_local`` or converted-HuBERT checkpoint (``weights_only`` load) -> (arch, our state dict)."""
    source = str(path)
    ckpt = load_torch_file(path)
    if isinstance(ckpt, dict) and {"cfg", "model"} <= set(ckpt):
        cfg = dict(ckpt["cfg"])
        wavlm = bool(cfg.get("relative_position_embedding", False))
        if wavlm and not cfg.get("gru_rel_pos", False):
            raise CheckpointError(f"{source}: WavLM without gated relative position (gru_rel_pos) is not supported")
        arch = _arch_from_fairseq_cfg(cfg, cfg.get("normalize", False), wavlm, source)
        state = ckpt["model"]
    elif isinstance(ckpt, dict) and {"model_cfg", "model_weight"} <= set(ckpt):
        arch = _arch_from_fairseq_cfg(dict(ckpt["model_cfg"]), dict(ckpt.get("task_cfg", {})).get("normalize", False),
                                      False, source)
        state = ckpt["model_weight"]
    else:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{source}: not an s3prl wavlm_local ({{cfg, model}}) or converted HuBERT "
                              f"({{model_cfg, model_weight}}) checkpoint; found {keys}")
    return arch, rename_fairseq_state(state)


def model_from_teacher(path: str | Path, changes: Mapping[str, Any] | None = None) -> PrunableWav2Vec2:
    """A copy of the teacher at ``path``; ``changes`` replace ArchConfig fields: prune flags
    (``extractor_prune_conv_channels`` ...) add gates, ``encoder_layer_drop`` ... Missing or unexpected weights are
    an error naming them."""
    arch, state = load_teacher_weights(path)
    arch = dataclasses.replace(arch, **(changes or {}))
    model = PrunableWav2Vec2(arch)
    own = {k for k in model.state_dict() if "hard_concrete" not in k}
    state.setdefault("feature_extractor.dummy_weight", torch.ones_like(model.feature_extractor.dummy_weight))
    projection = model.encoder.feature_projection.projection
    if "encoder.feature_projection.projection.weight" not in state and projection.in_features == projection.out_features:
        # fairseq omits post_extract_proj when CNN and transformer widths agree: an identity projection
        state["encoder.feature_projection.projection.weight"] = torch.eye(projection.in_features)
        state["encoder.feature_projection.projection.bias"] = torch.zeros(projection.out_features)
    missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit a {'WavLM' if arch.is_wavlm else 'HuBERT'} of this "
                              f"config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(state, strict=False)
    return model
