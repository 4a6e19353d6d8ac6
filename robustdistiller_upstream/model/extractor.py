"""wav2vec 2.0 convolutional feature extractor (the student's CNN front end).

Parameters are stored exactly where s3prl's (fairseq's) ``ConvFeatureExtractionModel`` keeps them
(``conv_layers.{i}.0.weight``; group norm ``conv_layers.0.2.*``; layer norms ``conv_layers.{i}.2.1.*``), so state
dicts move both ways. Two things make it faster than s3prl's on CPU for the same result (bench/upstream_speed.py):

- "default" mode normalises the first conv's output per channel over time (a group norm with one channel per
  group), the network's largest activation. The conv has no bias and is linear, so each channel's mean and variance
  follow exactly from the mean and ``K x K`` covariance of the input windows: the norm is folded into per-utterance
  conv weights and a bias, and that activation is written once instead of three times.
- When no gradient is needed, GELU runs in place, so no layer allocates (and page-faults) a second activation.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustdistiller_upstream.model.config import ConvSpec


def conv_channel_norm_folded(
    wav: Tensor, weight: Tensor, stride: int, norm: nn.GroupNorm, windows: Optional[Tensor] = None
) -> Tensor:
    """First conv of "default" mode followed by its per-channel group norm, as one batched product.

    wav: (batch, samples); weight: (channels, 1, kernel). Returns (batch, channels, frames), equal to
    ``GroupNorm(channels, channels)(conv1d(wav, weight, stride=stride))``: statistics over all frames of each
    utterance (padding included, as in s3prl), accumulated in float64 from the window mean and covariance.
    ``windows``: the (batch, frames, kernel) input windows when they are not to be a view of ``wav`` (the ONNX
    export computes them with a conv: ``unfold`` has no ONNX op).
    """
    channels, _, kernel = weight.shape
    if windows is None:
        windows = wav.unfold(1, kernel, stride)  # (batch, frames, kernel), a view
    frames = windows.shape[1]
    win64 = windows.double()
    mean = win64.mean(1)  # (batch, kernel)
    cov = win64.transpose(1, 2) @ win64 / frames - mean.unsqueeze(2) * mean.unsqueeze(1)  # (batch, kernel, kernel)
    w64 = weight.reshape(channels, kernel).double()
    channel_mean = mean @ w64.t()  # (batch, channels)
    channel_var = ((w64 @ cov) * w64).sum(-1)  # (batch, channels): w_c^T cov w_c
    scale = norm.weight.double() * torch.rsqrt(channel_var.clamp_min(0) + norm.eps)
    shift = norm.bias.double() - channel_mean * scale
    folded = (w64 * scale.unsqueeze(-1)).to(wav.dtype)  # (batch, channels, kernel)
    return torch.baddbmm(shift.unsqueeze(-1).to(wav.dtype), folded, windows.transpose(1, 2))


def _gelu(x: Tensor) -> Tensor:
    """Exact GELU, in place when autograd does not need the input."""
    if torch.is_grad_enabled() and x.requires_grad:
        return F.gelu(x)
    return torch.ops.aten.gelu_(x)


class ConvFeatureExtractor(nn.Module):
    """Waveform (batch, samples) -> features (batch, frames, channels); see the module docstring."""

    def __init__(
        self,
        conv_layers: Sequence[ConvSpec],
        mode: Literal["default", "layer_norm"] = "default",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.conv_layers = nn.ModuleList()
        in_ch = 1
        for index, (channels, kernel, stride) in enumerate(conv_layers):
            conv = nn.Conv1d(in_ch, channels, kernel, stride=stride, bias=False)
            nn.init.kaiming_normal_(conv.weight)
            # Index layout mirrors fairseq's Sequential(conv, dropout, norm, gelu) so state-dict keys match.
            block: list[nn.Module] = [conv, nn.Dropout(dropout)]
            if mode == "layer_norm":
                block.append(nn.Sequential(nn.Identity(), nn.LayerNorm(channels), nn.Identity()))
            elif index == 0:
                block.append(nn.GroupNorm(channels, channels, affine=True))
            block.append(nn.GELU())
            self.conv_layers.append(nn.Sequential(*block))
            in_ch = channels

    def forward(self, wav: Tensor) -> Tensor:
        """wav: (batch, samples) -> (batch, frames, channels)."""
        x = wav.unsqueeze(1)  # (batch, channels, time) through the stack
        for index, block in enumerate(self.conv_layers):
            conv, dropout = block[0], block[1]
            if self.mode == "default" and index == 0:
                if self.training and dropout.p > 0:
                    raise RuntimeError("extractor_dropout > 0 is not supported in training (the first norm is folded)")
                x = conv_channel_norm_folded(wav, conv.weight, conv.stride[0], block[2])
            else:
                x = dropout(F.conv1d(x, conv.weight, stride=conv.stride))
                if self.mode == "layer_norm":
                    norm = block[2][1]  # fp32 layer norm over channels, as fairseq's Fp32LayerNorm
                    x = F.layer_norm(x.transpose(1, 2).float(), norm.normalized_shape, norm.weight, norm.bias,
                                     norm.eps).type_as(x).transpose(1, 2)
            x = _gelu(x)
        return x.transpose(1, 2)
