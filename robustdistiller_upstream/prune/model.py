"""A wav2vec2-family model (HuBERT, or WavLM with gated relative-position bias) with optional HardConcrete gates.

One class serves both stages of DPHuBERT (Peng et al., Interspeech 2023): built from an ``ArchConfig`` whose
``*_prune_*`` flags are set, it carries gates on CNN channels, attention heads, whole attention blocks, FFN units
and whole FFN blocks; built from a pruned ``ArchConfig`` (flags off, smaller sizes) it is the dense pruned model.
Parameter names follow DPHuBERT's state dicts, so their checkpoints load unchanged.

``hidden_states`` follow s3prl's WavLM/HuBERT experts: index 0 is the transformer input (after the positional
convolution, and its layer norm in post-LN models), index ``i`` the output of layer ``i`` (the last one after the
final layer norm in pre-LN models); ``forward(..., projection_first=True)`` gives DPHuBERT's index 0 instead.

One deliberate difference from DPHuBERT: layer norms across gated CNN channels take their statistics over the
channels whose gate is non-zero, so removing those channels at export changes nothing (DPHuBERT's export
renormalises over fewer channels and shifts the outputs).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustdistiller_upstream.model.transformer import weight_norm_kernel_axis
from robustdistiller_upstream.prune.arch import ArchConfig
from robustdistiller_upstream.prune.hardconcrete import HardConcrete, allocate_kept

# Initial keep probabilities of the gates (DPHuBERT: drop rate 0.01 for channels/heads/layers, 0.5 for FFN units)
INIT_KEEP_STRUCTURE = 0.99
INIT_KEEP_FFN_UNIT = 0.5


def masked_layer_norm(x: Tensor, weight: Tensor, bias: Tensor, keep: Optional[Tensor], eps: float = 1e-5) -> Tensor:
    """Layer norm over the last dim of ``x`` (..., channels), statistics over the channels where ``keep`` (channels,)
    is True; the others come out as 0. ``keep=None``: plain layer norm."""
    if keep is None:  # the weight's shape, not x's: a traced shape cannot be an ONNX LayerNormalization attribute
        return F.layer_norm(x, weight.shape, weight, bias, eps)
    k = keep.to(x.dtype)
    count = k.sum().clamp_min(1.0)
    mean = (x * k).sum(-1, keepdim=True) / count
    var = (((x - mean) * k) ** 2).sum(-1, keepdim=True) / count
    return ((x - mean) * torch.rsqrt(var + eps) * weight + bias) * k


class ConvBlock(nn.Module):
    """Conv1d -> norm (group norm per channel, or layer norm over channels) -> GELU -> channel gate."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, bias: bool,
                 norm: Optional[str], gated: bool) -> None:
        super().__init__()
        self.kernel, self.stride, self.norm = kernel, stride, norm
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias)
        if norm == "group_norm":
            self.layer_norm = nn.GroupNorm(out_channels, out_channels, affine=True)
        elif norm == "layer_norm":
            self.layer_norm = nn.LayerNorm(out_channels)
        else:
            self.layer_norm = None
        self.hard_concrete = HardConcrete(out_channels, INIT_KEEP_STRUCTURE, min_keep=1) if gated else None

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """x: (batch, in_channels, time); lengths: (batch,) valid steps -> (x, lengths, channel mask or None)."""
        mask = self.hard_concrete() if self.hard_concrete is not None else None
        x = self.conv(x)
        if self.norm == "group_norm":
            x = self.layer_norm(x)
        elif self.norm == "layer_norm":
            keep = None if mask is None else mask > 0
            x = masked_layer_norm(x.transpose(1, 2), self.layer_norm.weight, self.layer_norm.bias, keep).transpose(1, 2)
        x = F.gelu(x)
        if mask is not None:
            x = x * mask[:, None]
        lengths = torch.div(lengths - self.kernel, self.stride, rounding_mode="floor").add(1).clamp_min(0)
        return x, lengths, mask


class FeatureExtractor(nn.Module):
    """Waveform (batch, samples) -> features (batch, frames, channels), downsampling by the product of strides."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        blocks, in_channels = [], 1
        gated = arch.extractor_prune_conv_channels
        for i, (channels, kernel, stride) in enumerate(arch.extractor_conv_layer_config):
            if arch.extractor_mode == "layer_norm":
                norm = "layer_norm"
            else:
                norm = "group_norm" if i == 0 else None
            blocks.append(ConvBlock(in_channels, channels, kernel, stride, arch.extractor_conv_bias, norm, gated))
            in_channels = channels
        self.conv_layers = nn.ModuleList(blocks)
        # per-channel output scale: folds the last layer's soft gate values at export (DPHuBERT's "dummy_weight")
        self.dummy_weight = nn.Parameter(torch.ones(in_channels), requires_grad=False)

    def forward(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """-> (features (batch, frames, channels), frame lengths (batch,), kept-channel mask (channels,) or None)."""
        x, mask = wav.unsqueeze(1), None
        for block in self.conv_layers:
            x, lengths, mask = block(x, lengths)
        keep = None if mask is None else mask > 0
        return x.transpose(1, 2) * self.dummy_weight, lengths, keep


class FeatureProjection(nn.Module):
    def __init__(self, in_features: int, embed_dim: int, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(in_features)
        self.projection = nn.Linear(in_features, embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Optional[Tensor]) -> Tensor:
        """x: (batch, frames, in_features) -> (batch, frames, embed_dim)."""
        x = masked_layer_norm(x, self.layer_norm.weight, self.layer_norm.bias, keep, self.layer_norm.eps)
        return self.dropout(self.projection(x))


class WeightNormConv(nn.Module):
    """Grouped conv whose weight is ``weight_g * weight_v / ||weight_v||`` (norm over all dims but the kernel axis):
    the parametrisation of fairseq's positional convolution, with its state-dict names."""

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.padding, self.groups = kernel // 2, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.randn(dim, dim // groups, kernel) / math.sqrt(dim * kernel / groups))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        weight = weight_norm_kernel_axis(self.weight_v, self.weight_g)
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class PositionalConv(nn.Module):
    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.conv = WeightNormConv(dim, kernel, groups)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, frames, dim) -> (batch, frames, dim)."""
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[..., : -self.trim]
        return F.gelu(y).transpose(1, 2)


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device: torch.device) -> Tensor:
    """(length, length) bucket of key position minus query position (bidirectional T5 bucketing, WavLM eq. 5):
    half the buckets per direction, exact below a quarter of them, logarithmic up to ``max_distance``."""
    pos = torch.arange(length, device=device)
    rel = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    exact = half // 2
    distance = rel.abs()
    log_bucket = exact + (
        torch.log(distance.float().clamp_min(1) / exact) / math.log(max_distance / exact) * (half - exact)
    ).long()
    log_bucket = log_bucket.clamp_max(half - 1)
    return (rel > 0).long() * half + torch.where(distance < exact, distance, log_bucket)


class SelfAttention(nn.Module):
    """Multi-head self-attention with optional head gates and a whole-block gate.

    WavLM style (``total_heads`` given): gated relative-position bias over all ``total_heads`` heads of the original
    layer, of which the heads ``remaining_heads`` are computed; the layer holding ``rel_attn_embed`` computes the
    bias and passes it on to the next layers.
    """

    def __init__(self, embed_dim: int, heads: int, head_dim: int, dropout: float, gate_heads: bool,
                 gate_layer: bool, total_heads: Optional[int] = None, remaining_heads: Optional[list[int]] = None,
                 rel_pos: Optional[tuple[int, int]] = None, min_heads: int = 0) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.q_proj = nn.Linear(embed_dim, inner)
        self.k_proj = nn.Linear(embed_dim, inner)
        self.v_proj = nn.Linear(embed_dim, inner)
        self.out_proj = nn.Linear(inner, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.hard_concrete_for_heads = HardConcrete(heads, INIT_KEEP_STRUCTURE, min_keep=min_heads) if gate_heads else None
        self.hard_concrete_for_layer = HardConcrete(1, INIT_KEEP_STRUCTURE) if gate_layer else None
        self.total_heads = total_heads
        if total_heads is not None:
            self.register_buffer("remaining", torch.tensor(remaining_heads, dtype=torch.long), persistent=False)
            self.gru_rel_pos_linear = nn.Linear(embed_dim // total_heads, 8)
            self.gru_rel_pos_const = nn.Parameter(torch.ones(1, total_heads, 1, 1))
            self.num_buckets, self.max_distance = rel_pos if rel_pos is not None else (0, 0)
            self.rel_attn_embed = nn.Embedding(self.num_buckets, total_heads) if rel_pos is not None else None

    def _relative_bias(self, x: Tensor, position_bias: Optional[Tensor]) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """-> (bias for this layer's heads (batch, heads, T, T), raw bias to pass on (total_heads, T, T))."""
        batch, frames, dim = x.shape
        if position_bias is None and self.rel_attn_embed is not None:
            buckets = relative_position_buckets(frames, self.num_buckets, self.max_distance, x.device)
            position_bias = self.rel_attn_embed(buckets).permute(2, 0, 1)
        if position_bias is None:
            return None, None
        per_head = x.view(batch, frames, self.total_heads, dim // self.total_heads).transpose(1, 2)
        gate_a, gate_b = torch.sigmoid(
            self.gru_rel_pos_linear(per_head).view(batch, self.total_heads, frames, 2, 4).sum(-1)
        ).chunk(2, dim=-1)
        gate = gate_a * (gate_b * self.gru_rel_pos_const - 1.0) + 2.0  # (batch, total_heads, T, 1)
        bias = gate * position_bias.unsqueeze(0)
        return bias.index_select(1, self.remaining), position_bias

    def forward(self, x: Tensor, key_padding: Optional[Tensor], position_bias: Optional[Tensor]
                ) -> tuple[Tensor, Optional[Tensor]]:
        """x: (batch, frames, dim); key_padding: (batch, frames) True on padding -> (out, bias to pass on)."""
        batch, frames, _ = x.shape
        bias = None
        if self.total_heads is not None:
            bias, position_bias = self._relative_bias(x, position_bias)
        shape = (batch, frames, self.heads, self.head_dim)
        q = self.q_proj(x).view(shape).transpose(1, 2) * self.head_dim ** -0.5
        k = self.k_proj(x).view(shape).transpose(1, 2)
        v = self.v_proj(x).view(shape).transpose(1, 2)
        scores = q @ k.transpose(-1, -2)  # (batch, heads, T, T)
        if bias is not None:
            scores = scores + bias
        if key_padding is not None:
            scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
        out = self.dropout(scores.softmax(-1)) @ v  # (batch, heads, T, head_dim)
        if self.hard_concrete_for_heads is not None:
            out = out * self.hard_concrete_for_heads()[:, None, None]
        out = self.out_proj(out.transpose(1, 2).reshape(batch, frames, self.heads * self.head_dim))
        if self.hard_concrete_for_layer is not None:
            out = out * self.hard_concrete_for_layer()
        return out, position_bias


class FeedForward(nn.Module):
    def __init__(self, embed_dim: int, units: int, inner_dropout: float, dropout: float, gate_units: bool,
                 gate_layer: bool) -> None:
        super().__init__()
        self.intermediate_dense = nn.Linear(embed_dim, units)
        self.output_dense = nn.Linear(units, embed_dim)
        self.inner_dropout, self.out_dropout = nn.Dropout(inner_dropout), nn.Dropout(dropout)
        self.hard_concrete_for_intermediate = HardConcrete(units, INIT_KEEP_FFN_UNIT) if gate_units else None
        self.hard_concrete_for_layer = HardConcrete(1, INIT_KEEP_STRUCTURE) if gate_layer else None

    def forward(self, x: Tensor) -> Tensor:
        """(batch, frames, dim) -> (batch, frames, dim)."""
        h = self.inner_dropout(F.gelu(self.intermediate_dense(x)))
        if self.hard_concrete_for_intermediate is not None:
            h = h * self.hard_concrete_for_intermediate()
        out = self.out_dropout(self.output_dense(h))
        if self.hard_concrete_for_layer is not None:
            out = out * self.hard_concrete_for_layer()
        return out


class EncoderLayer(nn.Module):
    """Attention and FFN blocks (either may be absent after pruning) with post- or pre-layer-norm residuals."""

    def __init__(self, attention: Optional[SelfAttention], feed_forward: Optional[FeedForward], embed_dim: int,
                 dropout: float, layer_norm_first: bool) -> None:
        super().__init__()
        self.attention, self.feed_forward = attention, feed_forward
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        self.layer_norm_first = layer_norm_first

    def forward(self, x: Tensor, key_padding: Optional[Tensor], position_bias: Optional[Tensor]
                ) -> tuple[Tensor, Optional[Tensor]]:
        if self.attention is not None:
            h = self.layer_norm(x) if self.layer_norm_first else x
            h, position_bias = self.attention(h, key_padding, position_bias)
            x = x + self.dropout(h)
        if self.layer_norm_first:
            if self.feed_forward is not None:
                x = x + self.feed_forward(self.final_layer_norm(x))
            return x, position_bias
        x = self.layer_norm(x)
        if self.feed_forward is not None:
            x = x + self.feed_forward(x)
        return self.final_layer_norm(x), position_bias


class Transformer(nn.Module):
    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        dim = arch.encoder_embed_dim
        self.pos_conv_embed = PositionalConv(dim, arch.encoder_pos_conv_kernel, arch.encoder_pos_conv_groups)
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(arch.encoder_dropout)
        self.layer_norm_first = arch.encoder_layer_norm_first
        self.layer_drop = arch.encoder_layer_drop
        self.layers = nn.ModuleList(_build_layer(arch, i) for i in range(arch.encoder_num_layers))

    def forward(self, x: Tensor, padding: Tensor) -> list[Tensor]:
        """x: (batch, frames, dim), padding: (batch, frames) True on padded frames -> num_layers + 1 hidden states."""
        x = x.masked_fill(padding[..., None], 0.0)
        x = x + self.pos_conv_embed(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        hidden, position_bias = [x], None
        key_padding = padding if padding.any() else None
        for layer in self.layers:
            if self.training and self.layer_drop > 0 and torch.rand(()) < self.layer_drop:
                hidden.append(x)
                continue
            x, position_bias = layer(x, key_padding, position_bias)
            hidden.append(x)
        if self.layer_norm_first:
            hidden[-1] = self.layer_norm(hidden[-1])
        return hidden


def _build_layer(arch: ArchConfig, i: int) -> EncoderLayer:
    dim, head_dim = arch.encoder_embed_dim, arch.head_dim()
    attention = None
    if arch.encoder_use_attention[i]:
        wavlm = arch.is_wavlm
        # WavLM: the first layer owns the relative-position table every later layer reuses; it keeps >= 1 head
        # and no whole-block gate, so the table (and the outputs) survive export.
        owns_table = wavlm and i == 0
        attention = SelfAttention(
            dim, arch.heads(i), head_dim, arch.encoder_attention_dropout,
            gate_heads=arch.encoder_prune_attention_heads,
            gate_layer=arch.encoder_prune_attention_layer and not owns_table,
            total_heads=arch.encoder_total_num_heads[i] if wavlm else None,
            remaining_heads=arch.encoder_remaining_heads[i] if wavlm else None,
            rel_pos=(arch.encoder_num_buckets, arch.encoder_max_distance) if owns_table else None,
            min_heads=1 if owns_table else 0,
        )
    feed_forward = None
    if arch.encoder_use_feed_forward[i]:
        feed_forward = FeedForward(
            dim, arch.encoder_ff_interm_features[i], arch.encoder_ff_interm_dropout, arch.encoder_dropout,
            gate_units=arch.encoder_prune_feed_forward_intermediate, gate_layer=arch.encoder_prune_feed_forward_layer,
        )
    return EncoderLayer(attention, feed_forward, dim, arch.encoder_dropout, arch.encoder_layer_norm_first)


class Encoder(nn.Module):
    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        in_features = arch.extractor_conv_layer_config[-1][0]
        self.feature_projection = FeatureProjection(in_features, arch.encoder_embed_dim, arch.encoder_projection_dropout)
        self.transformer = Transformer(arch)


def _normalize_waveforms(wav: Tensor, lengths: Tensor) -> Tensor:
    """Zero mean, unit variance per utterance over its valid samples; padding stays 0. (batch, samples)."""
    out = torch.zeros_like(wav)
    for i, n in enumerate(lengths.tolist()):
        out[i, :n] = F.layer_norm(wav[i, :n], (n,))
    return out


class PrunableWav2Vec2(nn.Module):
    """``forward(wav (batch, samples), wav_lengths (batch,)) -> (hidden_states, frame_lengths (batch,))``, with
    ``num_layers + 1`` hidden states of (batch, frames, embed_dim). Gated when ``arch`` sets prune flags."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        self.feature_extractor = FeatureExtractor(arch)
        self.encoder = Encoder(arch)

    @property
    def downsample_rate(self) -> int:
        return math.prod(stride for _, _, stride in self.arch.extractor_conv_layer_config)

    def frame_lengths(self, wav_lengths: Tensor) -> Tensor:
        """(batch,) valid samples -> (batch,) valid frames of the hidden states."""
        lengths = wav_lengths
        for _, kernel, stride in self.arch.extractor_conv_layer_config:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor").add(1).clamp_min(0)
        return lengths

    def forward(self, wav: Tensor, wav_lengths: Tensor, projection_first: bool = False) -> tuple[list[Tensor], Tensor]:
        """``projection_first``: hidden state 0 is the feature projection's output, before the positional
        convolution, padded frames 0 (DPHuBERT's ``Encoder.extract_features``: ``[x] + intermediates``)."""
        if self.arch.normalize_waveform:
            wav = _normalize_waveforms(wav, wav_lengths)
        features, frame_lengths, keep = self.feature_extractor(wav, wav_lengths)
        x = self.encoder.feature_projection(features, keep)
        padding = torch.arange(x.shape[1], device=x.device)[None, :] >= frame_lengths[:, None]
        hidden = self.encoder.transformer(x, padding)
        if projection_first:
            hidden[0] = x.masked_fill(padding[..., None], 0.0)
        return hidden, frame_lengths

    def gates(self) -> list[HardConcrete]:
        return [m for m in self.modules() if isinstance(m, HardConcrete)]

    def gate_kinds(self) -> list[list[HardConcrete]]:
        """Gates grouped by kind: each CNN layer's channels alone (widths multiply); across layers, the head gates,
        the FFN-unit gates, the attention-block gates and the FFN-block gates."""
        layers = self.encoder.transformer.layers
        attention = [layer.attention for layer in layers if layer.attention is not None]
        ffn = [layer.feed_forward for layer in layers if layer.feed_forward is not None]
        kinds = [[b.hard_concrete] for b in self.feature_extractor.conv_layers]
        kinds.append([a.hard_concrete_for_heads for a in attention])
        kinds.append([f.hard_concrete_for_intermediate for f in ffn])
        kinds.append([a.hard_concrete_for_layer for a in attention])
        kinds.append([f.hard_concrete_for_layer for f in ffn])
        return [[g for g in kind if g is not None] for kind in kinds if any(g is not None for g in kind)]

    def train(self, mode: bool = True) -> "PrunableWav2Vec2":
        """Entering eval mode fixes every gate's kept count (``allocate_kept`` per kind); training clears them."""
        super().train(mode)
        for kind in self.gate_kinds():
            counts = [None] * len(kind) if mode else allocate_kept(kind)
            for gate, kept in zip(kind, counts):
                gate.kept_override = kept
        return self

    def gate_parameters(self) -> list[nn.Parameter]:
        return [g.log_alpha for g in self.gates()]
