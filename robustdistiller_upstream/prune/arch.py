"""The architecture of a (prunable) wav2vec2-family model: DPHuBERT's ``wav2vec2_model(**config)`` keywords.

A pruned checkpoint stores this as its ``config``, so our exports and DPHuBERT/DPWavLM releases share one layout.
HuBERT-style models set ``encoder_num_heads`` (kept heads per layer) and ``encoder_head_dim``; WavLM-style models
set ``encoder_total_num_heads``, ``encoder_remaining_heads`` (indices of the kept heads, which select the gated
relative-position bias), ``encoder_num_buckets`` and ``encoder_max_distance``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal, Mapping, Optional

from robustdistiller_upstream.config import from_dict, to_dict
from robustdistiller_upstream.errors import CheckpointError, ConfigError


@dataclass
class ArchConfig:
    extractor_mode: Literal["group_norm", "layer_norm"] = "group_norm"
    extractor_conv_layer_config: list[tuple[int, int, int]] = field(
        default_factory=lambda: [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    )  # (channels, kernel, stride) per conv layer
    extractor_conv_bias: bool = False
    encoder_embed_dim: int = 768
    encoder_projection_dropout: float = 0.0
    encoder_pos_conv_kernel: int = 128
    encoder_pos_conv_groups: int = 16
    encoder_num_layers: int = 12
    encoder_use_attention: list[bool] = field(default_factory=lambda: [True] * 12)
    encoder_use_feed_forward: list[bool] = field(default_factory=lambda: [True] * 12)
    encoder_num_heads: Optional[list[int]] = None  # HuBERT style
    encoder_head_dim: Optional[int] = None  # HuBERT style
    encoder_total_num_heads: Optional[list[int]] = None  # WavLM style
    encoder_remaining_heads: Optional[list[list[int]]] = None  # WavLM style
    encoder_num_buckets: Optional[int] = None  # WavLM style
    encoder_max_distance: Optional[int] = None  # WavLM style
    encoder_attention_dropout: float = 0.0
    encoder_ff_interm_features: list[int] = field(default_factory=lambda: [3072] * 12)
    encoder_ff_interm_dropout: float = 0.0
    encoder_dropout: float = 0.0
    encoder_layer_norm_first: bool = False
    encoder_layer_drop: float = 0.0
    aux_num_out: Optional[int] = None
    normalize_waveform: bool = False
    extractor_prune_conv_channels: bool = False
    encoder_prune_attention_heads: bool = False
    encoder_prune_attention_layer: bool = False
    encoder_prune_feed_forward_intermediate: bool = False
    encoder_prune_feed_forward_layer: bool = False

    def __post_init__(self) -> None:
        n = self.encoder_num_layers
        per_layer = {
            "encoder_use_attention": self.encoder_use_attention,
            "encoder_use_feed_forward": self.encoder_use_feed_forward,
            "encoder_ff_interm_features": self.encoder_ff_interm_features,
            "encoder_num_heads": self.encoder_num_heads,
            "encoder_total_num_heads": self.encoder_total_num_heads,
            "encoder_remaining_heads": self.encoder_remaining_heads,
        }
        for name, values in per_layer.items():
            if values is not None and len(values) != n:
                raise ConfigError(f"{name}: {len(values)} entries for encoder_num_layers={n}")
        if self.is_wavlm == (self.encoder_num_heads is not None):
            raise ConfigError("set either encoder_num_heads + encoder_head_dim (HuBERT) or encoder_total_num_heads + "
                              "encoder_remaining_heads (WavLM)")
        if self.is_wavlm and None in (self.encoder_total_num_heads, self.encoder_num_buckets, self.encoder_max_distance):
            raise ConfigError("WavLM style needs encoder_total_num_heads, encoder_num_buckets and encoder_max_distance")
        if not self.is_wavlm and self.encoder_head_dim is None:
            raise ConfigError("HuBERT style needs encoder_head_dim")
        if self.aux_num_out is not None:
            raise ConfigError("aux_num_out: fine-tuned (CTC head) models are not supported; use a pretrained one")

    @property
    def is_wavlm(self) -> bool:
        return self.encoder_remaining_heads is not None

    def head_dim(self) -> int:
        if self.is_wavlm:
            return self.encoder_embed_dim // self.encoder_total_num_heads[0]
        return self.encoder_head_dim

    def heads(self, layer: int) -> int:
        """Number of attention heads the layer computes (kept heads after pruning)."""
        if self.is_wavlm:
            return len(self.encoder_remaining_heads[layer])
        return self.encoder_num_heads[layer]

    @property
    def prunes_anything(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self) if "_prune_" in f.name)

    def to_checkpoint_dict(self) -> dict[str, Any]:
        """Plain dict for ``{"config": ...}``; style-specific keys that are unset are left out (DPHuBERT's
        factories accept exactly their own style's keywords)."""
        return {k: v for k, v in to_dict(self).items() if v is not None or k == "aux_num_out"}


def arch_from_checkpoint_dict(config: Mapping[str, Any], source: str) -> ArchConfig:
    """``ArchConfig`` from a checkpoint's ``config`` mapping; errors name ``source``."""
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{source}: 'config' is not a mapping")
    try:
        return from_dict(ArchConfig, dict(config), source=f"{source} config")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
