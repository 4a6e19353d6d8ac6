"""Transformer encoder of the DistilHuBERT student (fairseq/s3prl parameter names, SDPA attention).

All tensors are batch-major: (batch, frames, dim). Padding travels as a boolean mask (batch, frames), True = padded.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (fairseq names), computed by SDPA."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        """x: (batch, frames, dim); padding_mask: (batch, frames) bool, True = padded key. -> (batch, frames, dim)."""
        batch, frames, dim = x.shape

        def heads(t: Tensor) -> Tensor:
            return t.view(batch, frames, self.heads, dim // self.heads).transpose(1, 2)

        attn_mask = None if padding_mask is None else ~padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            heads(self.q_proj(x)),
            heads(self.k_proj(x)),
            heads(self.v_proj(x)),
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, frames, dim))


class EncoderLayer(nn.Module):
    """Transformer layer; post-LN (DistilHuBERT, HuBERT Base) or pre-LN (``layer_norm_first``)."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        heads: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        layer_norm_first: bool,
    ) -> None:
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.self_attn = SelfAttention(dim, heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(activation_dropout)

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc2(self.activation_dropout(F.gelu(self.fc1(x)))))

    def forward(self, x: Tensor, padding_mask: Optional[Tensor]) -> Tensor:
        """x: (batch, frames, dim) -> (batch, frames, dim)."""
        if self.layer_norm_first:
            x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), padding_mask))
            return x + self._feed_forward(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, padding_mask)))
        return self.final_layer_norm(x + self._feed_forward(x))


def weight_norm_kernel_axis(weight_v: Tensor, weight_g: Tensor) -> Tensor:
    """``weight_g * weight_v / ||weight_v||``, the norm over every dim but the last (the kernel axis): weight_v
    (out, in/groups, kernel), weight_g (1, 1, kernel). torch's fused weight-norm kernel (what ``weight_norm(dim=2)``
    runs): on CPU 7x faster than ``weight_v.norm(dim=(0, 1))``, a strided reduction that took 21 of the 125 ms of a
    1 s utterance (torch profiler, docs/performance.md); differentiable, and exported to ONNX."""
    return torch._weight_norm(weight_v, weight_g, 2)


def _tracing() -> bool:
    """Whether a trace (TorchScript, ONNX export) records this call: values and shapes seen now would be frozen."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class WeightNormConv1d(nn.Module):
    """Grouped conv with weight normalisation over every dim but the kernel one (``weight_norm(dim=2)``).

    Keeps fairseq's parameter names ``weight_g`` (1, 1, kernel) and ``weight_v`` (dim, dim/groups, kernel). Without
    autograd (feature extraction) the normalised weight is kept between calls until either parameter changes (its
    tensor, or an in-place write): 2-3 ms of every forward, a fixed cost that weighs most on short utterances.
    """

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.groups = groups
        self.padding = kernel // 2  # a Python int: a traced shape here would break ONNX export
        std = math.sqrt(4.0 / (kernel * dim))
        weight_v = torch.randn(dim, dim // groups, kernel) * std
        self.weight_v = nn.Parameter(weight_v)
        self.weight_g = nn.Parameter(weight_v.norm(dim=(0, 1), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(dim))
        self._kept: Optional[tuple[tuple, Tensor]] = None  # (parameters' identity and versions, weight)

    def normalized_weight(self) -> Tensor:
        """The normalised weight (dim, dim/groups, kernel)."""
        if torch.is_grad_enabled() or _tracing():
            self._kept = None
            return weight_norm_kernel_axis(self.weight_v, self.weight_g)
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in (self.weight_v, self.weight_g))
        if self._kept is None or self._kept[0] != key:
            self._kept = (key, weight_norm_kernel_axis(self.weight_v, self.weight_g))
        return self._kept[1]

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, dim, frames) -> (batch, dim, frames + 1 - kernel % 2).

        When the input is shorter than half the kernel (under 1.3 s for HuBERT's 128 taps), the outer taps only
        ever meet the zero padding: they are cut off, with as much padding, for the same output (0.5 s x 4: 21 ->
        8 ms). Not while tracing, where the cut would be frozen for one length."""
        weight, padding = self.normalized_weight(), self.padding
        kernel = weight.shape[-1]
        unused = padding - (x.shape[-1] + 2 * padding - kernel)  # taps at each end that see only padding
        if unused >= max(1, kernel // 16) and not _tracing():
            weight, padding = weight[..., unused:kernel - unused], padding - unused
        return F.conv1d(x, weight, self.bias, padding=padding, groups=self.groups)


class TransformerEncoder(nn.Module):
    """Convolutional positional embedding + transformer layers (s3prl distiller ``TransformerEncoder``)."""

    def __init__(
        self,
        layers: int,
        dim: int,
        ffn_dim: int,
        heads: int,
        conv_pos: int,
        conv_pos_groups: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        layer_norm_first: bool,
    ) -> None:
        super().__init__()
        self.layer_norm_first = layer_norm_first
        self.conv_pos = conv_pos
        self.pos_conv = nn.Sequential(WeightNormConv1d(dim, conv_pos, conv_pos_groups))
        self.layers = nn.ModuleList(
            EncoderLayer(dim, ffn_dim, heads, dropout, attention_dropout, activation_dropout, layer_norm_first)
            for _ in range(layers)
        )
        self.layer_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        for module in self.layers.modules():  # BERT init, as s3prl's encoder
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, padding_mask: Optional[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """x: (batch, frames, dim), padded frames already zero. -> (final output, [output of each layer])."""
        pos = self.pos_conv[0](x.transpose(1, 2))
        if self.conv_pos % 2 == 0:  # "same" padding with an even kernel leaves one extra frame
            pos = pos[:, :, :-1]
        x = x + F.gelu(pos).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        hiddens = []
        for layer in self.layers:
            x = layer(x, padding_mask)
            hiddens.append(x)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, hiddens
