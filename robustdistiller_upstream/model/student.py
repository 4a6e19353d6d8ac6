"""The DistilHuBERT-shaped student: CNN front end, projection, transformer, "expand-last" prediction heads.

Parameter names equal s3prl's ``DistillerModel`` (DistilHuBERT, Chang et al. 2022), so state dicts move both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from robustdistiller_upstream.model.config import StudentConfig
from robustdistiller_upstream.model.extractor import ConvFeatureExtractor
from robustdistiller_upstream.model.transformer import TransformerEncoder


class _GradMultiply(torch.autograd.Function):
    """Identity forward; gradient scaled by ``scale`` (wav2vec 2.0's ``feature_grad_mult``)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.scale, None


class SplitLinear(nn.Module):
    """``n`` independent linear maps, one per slice: (batch, frames, n * in_dim) -> (batch, frames, n, out_dim).

    s3prl's parameter layout: ``weight`` (n, in_dim, out_dim) and ``bias`` (1, 1, n, out_dim); a plain ``layer``
    (``nn.Linear``) when n == 1.
    """

    def __init__(self, in_dim: int, n: int, out_dim: int) -> None:
        super().__init__()
        self.n = n
        bound = in_dim**-0.5
        if n > 1:
            self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim).uniform_(-bound, bound))
            self.bias = nn.Parameter(torch.empty(1, 1, n, out_dim).uniform_(-bound, bound))
        else:
            self.layer = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, frames, _ = x.shape
        x = x.view(batch, frames, self.n, -1)
        if self.n == 1:
            return self.layer(x)
        return torch.einsum("btni,nio->btno", x, self.weight) + self.bias


def prediction_heads(dim: int, inter_dim: int, n_heads: int, out_dim: int) -> nn.Sequential:
    """s3prl's "expand-last" output layer: ``Linear(dim, n*inter) -> GELU -> SplitLinear(inter, n, out)``."""
    return nn.Sequential(nn.Linear(dim, inter_dim * n_heads), nn.GELU(), SplitLinear(inter_dim, n_heads, out_dim))


@dataclass
class StudentOutput:
    """Everything the upstream, the losses and the enhancement head need from one forward pass."""

    features: Tensor  # (batch, frames, extractor_dim): CNN output, before the projection
    projected: Tensor  # (batch, frames, embed_dim): projected features, padded frames zero (transformer input)
    layer_hiddens: list[Tensor]  # encoder_layers x (batch, frames, embed_dim)
    predictions: Optional[Tensor]  # (batch, n_pred, frames, final_dim), or None when not asked for
    frame_lengths: Tensor  # (batch,) long: valid frames of each utterance

    @property
    def padding_mask(self) -> Tensor:
        """(batch, frames) bool, True = padded."""
        frames = self.projected.shape[1]
        return torch.arange(frames, device=self.frame_lengths.device) >= self.frame_lengths[:, None]


class StudentModel(nn.Module):
    """DistilHuBERT-shaped student (DESIGN 1). ``forward(wav, wav_lengths) -> StudentOutput``."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = config
        # Read at every forward: ESPnet sets it to 1.0 on ``upstream.upstream.model`` to fine-tune the CNN.
        self.feature_grad_mult = config.feature_grad_mult
        self.feature_extractor = ConvFeatureExtractor(
            config.extractor_conv_layers, config.extractor_mode, config.extractor_dropout
        )
        self.post_extract_proj = (
            nn.Linear(config.extractor_dim, config.encoder_embed_dim)
            if config.extractor_dim != config.encoder_embed_dim
            else None
        )
        self.encoder = TransformerEncoder(
            layers=config.encoder_layers,
            dim=config.encoder_embed_dim,
            ffn_dim=config.encoder_ffn_embed_dim,
            heads=config.encoder_attention_heads,
            conv_pos=config.conv_pos,
            conv_pos_groups=config.conv_pos_groups,
            dropout=config.dropout,
            attention_dropout=config.attention_dropout,
            activation_dropout=config.activation_dropout,
            layer_norm_first=config.layer_norm_first,
        )
        self.output_layer = prediction_heads(
            config.encoder_embed_dim, config.inter_dim, config.n_pred, config.final_dim
        )

    def frame_lengths(self, wav_lengths: Tensor) -> Tensor:
        """Valid output frames for (batch,) sample counts (s3prl's formula, clamped at 0)."""
        lengths = wav_lengths.long()
        for _, kernel, stride in self.config.extractor_conv_layers:
            lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
        return lengths.clamp_min(0)

    def extract_features(self, wav: Tensor) -> Tensor:
        """wav: (batch, samples) -> CNN features (batch, frames, extractor_dim), honouring feature_grad_mult."""
        if self.feature_grad_mult <= 0:
            with torch.no_grad():
                return self.feature_extractor(wav)
        features = self.feature_extractor(wav)
        if self.feature_grad_mult != 1.0 and torch.is_grad_enabled():
            features = _GradMultiply.apply(features, self.feature_grad_mult)
        return features

    def forward(self, wav: Tensor, wav_lengths: Tensor, predict: bool = True) -> StudentOutput:
        """wav: (batch, samples) float, zero-padded; wav_lengths: (batch,) valid samples."""
        features = self.extract_features(wav)
        frame_lengths = self.frame_lengths(wav_lengths).clamp_max(features.shape[1])
        padding_mask = torch.arange(features.shape[1], device=wav.device) >= frame_lengths[:, None]
        projected = self.post_extract_proj(features) if self.post_extract_proj is not None else features
        projected = projected.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        final, hiddens = self.encoder(projected, padding_mask if bool(padding_mask.any()) else None)
        # (batch, frames, n_pred, final_dim) -> (batch, n_pred, frames, final_dim)
        predictions = self.output_layer(final).permute(0, 2, 1, 3) if predict else None
        return StudentOutput(features, projected, hiddens, predictions, frame_lengths)

    def num_parameters(self, include_heads: bool = False) -> int:
        return sum(
            p.numel() for name, p in self.named_parameters() if include_heads or not name.startswith("output_layer.")
        )
