"""What an export reads: a student (DistilHuBERT format) or a pruned RD-DPWavLM/DPHuBERT checkpoint, as one
traceable module that returns the s3prl upstream's hidden states, beside the PyTorch forward it must equal.

The traceable module computes what our s3prl upstreams compute, in eval mode (dropout and layer drop are absent
from the trace; torchaudio's own export breaks on layer drop, pytorch/audio #4116), with changes that make one
graph serve every batch and quantize well:

- no branch on the data: the key-padding mask is always applied (an all-valid mask changes nothing);
- the student's first conv reads its input windows through a conv with identity taps: the upstream takes them as
  a ``Tensor.unfold`` view, which ONNX can only express as a loop over frames;
- the prediction heads' split linear is one batched MatMul (no int8 mode quantizes the model's Einsum);
- waveform normalisation of pruned Large-style models (``normalize_waveform``) runs masked over the batch instead
  of utterance by utterance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustdistiller_upstream.checkpoint import StudentCheckpoint, load_torch_file, student_checkpoint_from_dict
from robustdistiller_upstream.model import StudentModel
from robustdistiller_upstream.model.extractor import ConvFeatureExtractor, conv_channel_norm_folded
from robustdistiller_upstream.prune.checkpoint import PrunedCheckpoint, is_pruned_checkpoint, pruned_checkpoint_from_dict
from robustdistiller_upstream.prune.model import PrunableWav2Vec2

# reference(wav (batch, samples), lengths (batch,)) -> (hidden states, each (batch, frames, dim); frame lengths)
Forward = Callable[[Tensor, Tensor], tuple[list[Tensor], Tensor]]


def conv_windows(wav: Tensor, kernel: int, stride: int) -> Tensor:
    """(batch, samples) -> the (batch, frames, kernel) input windows of a conv, by a conv with identity taps."""
    taps = torch.eye(kernel, dtype=wav.dtype, device=wav.device).unsqueeze(1)  # (kernel, 1, kernel)
    return F.conv1d(wav.unsqueeze(1), taps, stride=stride).transpose(1, 2)


def export_conv_features(extractor: ConvFeatureExtractor, wav: Tensor) -> Tensor:
    """The student's CNN as the upstream computes it, in ONNX ops: wav (batch, samples) -> (batch, frames,
    channels). The first layer's group norm stays folded with float64 statistics (ONNX Runtime's float32
    InstanceNormalization is 10x less exact, beyond the 1e-4 check on loud speech)."""
    x = wav.unsqueeze(1)
    for index, block in enumerate(extractor.conv_layers):
        conv = block[0]
        if extractor.mode == "default" and index == 0:
            kernel, stride = conv.kernel_size[0], conv.stride[0]
            x = conv_channel_norm_folded(wav, conv.weight, stride, block[2], conv_windows(wav, kernel, stride))
        else:
            x = conv(x)
            if extractor.mode == "layer_norm":
                x = block[2](x.transpose(1, 2)).transpose(1, 2)  # Sequential(Identity, LayerNorm, Identity)
        x = F.gelu(x)
    return x.transpose(1, 2)


class StudentGraph(nn.Module):
    """``forward(wav, lengths) -> (projected, *layer outputs, *prediction heads, frame_lengths)``: the hidden
    states of ``robustdistiller_local`` (s3prl's distiller convention), each (batch, frames, dim)."""

    def __init__(self, model: StudentModel) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        model = self.model
        features = export_conv_features(model.feature_extractor, wav)
        # lengths <= samples, so the formula never exceeds the frame count: no clamp (it would be a constant)
        frame_lengths = model.frame_lengths(lengths)
        padding = torch.arange(features.shape[1], device=wav.device)[None, :] >= frame_lengths[:, None]
        projected = model.post_extract_proj(features) if model.post_extract_proj is not None else features
        projected = projected.masked_fill(padding.unsqueeze(-1), 0.0)
        final, hiddens = model.encoder(projected, padding)
        return (projected, *hiddens, *prediction_heads(model.output_layer, final), frame_lengths)


def prediction_heads(heads: nn.Sequential, final: Tensor) -> list[Tensor]:
    """The "expand-last" heads with their split linear as one batched MatMul on its (n, in, out) weight (the
    model's einsum is exact too, but no int8 mode quantizes an Einsum). final: (batch, frames, dim) -> n x
    (batch, frames, final_dim)."""
    expand, activation, split = heads
    hidden = activation(expand(final))
    if split.n == 1:
        return [split.layer(hidden)]
    batch, frames, _ = hidden.shape
    hidden = hidden.view(batch, frames, split.n, -1).transpose(1, 2)  # (batch, n, frames, in_dim)
    return list((torch.matmul(hidden, split.weight) + split.bias.transpose(1, 2)).unbind(1))


def masked_normalize(wav: Tensor, lengths: Tensor, eps: float = 1e-5) -> Tensor:
    """Zero mean, unit variance over each utterance's valid samples, padding 0: wav (batch, samples)."""
    valid = (torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths[:, None]).to(wav.dtype)
    count = valid.sum(1, keepdim=True).clamp_min(1.0)
    mean = (wav * valid).sum(1, keepdim=True) / count
    var = (((wav - mean) * valid) ** 2).sum(1, keepdim=True) / count
    return (wav - mean) * torch.rsqrt(var + eps) * valid


class PrunedGraph(nn.Module):
    """``forward(wav, lengths) -> (*hidden states, frame_lengths)``: ``robustdistiller_dpwavlm_local``'s
    transformer input and every layer's output (s3prl's WavLM/HuBERT convention)."""

    def __init__(self, model: PrunableWav2Vec2) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, wav: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        model = self.model
        if model.arch.normalize_waveform:
            wav = masked_normalize(wav, lengths)
        features, frame_lengths, _ = model.feature_extractor(wav, lengths)
        x = model.encoder.feature_projection(features, None)
        padding = torch.arange(x.shape[1], device=x.device)[None, :] >= frame_lengths[:, None]
        # Transformer.forward branches on padding.any(): the trace is made on a ragged batch, so it keeps the mask
        return (*model.encoder.transformer(x, padding), frame_lengths)


@dataclass
class ExportSource:
    """A checkpoint ready to export."""

    path: Path
    kind: Literal["student", "pruned"]
    graph: nn.Module  # StudentGraph or PrunedGraph
    reference: Forward  # the s3prl upstream's own PyTorch forward
    downsample_rate: int
    hidden_names: list[str]  # one per hidden state, in the upstream's order
    student: Optional[StudentCheckpoint] = None
    pruned: Optional[PrunedCheckpoint] = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_wavlm(self) -> bool:
        return self.pruned is not None and self.pruned.arch.is_wavlm


def _student_source(checkpoint: StudentCheckpoint) -> ExportSource:
    model = checkpoint.build_model().eval()
    config = checkpoint.config

    @torch.no_grad()
    def reference(wav: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        out = model(wav, lengths)
        return [out.projected, *out.layer_hiddens, *out.predictions.unbind(1)], out.frame_lengths

    names = (["projected_features"] + [f"layer_{i + 1}" for i in range(config.encoder_layers)]
             + [f"prediction_layer_{layer}" for layer in config.pred_layer_id])
    return ExportSource(checkpoint.path, "student", StudentGraph(model), reference, config.downsample_rate, names,
                        student=checkpoint, metadata=checkpoint.metadata)


def _pruned_source(checkpoint: PrunedCheckpoint) -> ExportSource:
    model = checkpoint.build_model().eval()

    @torch.no_grad()
    def reference(wav: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        return model(wav, lengths)

    names = ["transformer_input"] + [f"layer_{i + 1}" for i in range(model.arch.encoder_num_layers)]
    return ExportSource(Path(checkpoint.source), "pruned", PrunedGraph(model), reference, model.downsample_rate,
                        names, pruned=checkpoint, metadata=checkpoint.metadata)


def load_export_source(path: str | Path, trust_checkpoint: bool = False) -> ExportSource:
    """Reads a student checkpoint (ours or s3prl's DistilHuBERT format) or a pruned one (DPHuBERT layout)."""
    raw = load_torch_file(path, trust_checkpoint)
    if is_pruned_checkpoint(raw):
        return _pruned_source(pruned_checkpoint_from_dict(raw, str(path)))
    return _student_source(student_checkpoint_from_dict(raw, path))
