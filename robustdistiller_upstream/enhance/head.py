"""BLSTM mask estimator on the student's CNN features (RobustDistiller's multi-task head, DESIGN 1).

Student CNN features (20 ms frames) are repeated x2 in time to the 10 ms STFT frame rate (missing frames
zero-padded, extra ones cut: the reference's ``match_length``); a BLSTM, ``Dropout(output_dropout)`` and a linear
layer give a sigmoid mask over the noisy STFT magnitude; the target is the clean STFT magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class EnhanceConfig:
    """``weight`` is lambda of the total loss; STFT sizes in samples at 16 kHz; ``metrics_every`` in steps (0: off).
    ``dropout``: between the BLSTM layers; ``output_dropout``: between the BLSTM and the linear layer (the
    reference's ``ReconstructionHead.drops``, 0.1)."""

    enabled: bool = False
    weight: float = 2.0
    loss: Literal["l1", "l2", "mrstft", "sisnr"] = "l1"
    hidden_size: int = 256
    num_layers: int = 3
    dropout: float = 0.1
    output_dropout: float = 0.1
    n_fft: int = 512
    hop_length: int = 160
    win_length: int = 400
    metrics_every: int = 0
    metrics_utterances: int = 2


@dataclass
class EnhancementOutput:
    mask: Tensor  # (batch, stft_frames, bins) in [0, 1]
    noisy_stft: Tensor  # (batch, bins, stft_frames) complex
    enhanced_magnitude: Tensor  # (batch, stft_frames, bins)
    stft_lengths: Tensor  # (batch,) long: valid STFT frames

    def waveform(self, head: "EnhancementHead", samples: int) -> Tensor:
        """The enhanced waveform (batch, samples): mask on the magnitude, noisy phase, inverse STFT."""
        spec = self.noisy_stft * self.mask.transpose(1, 2).to(self.noisy_stft.real.dtype)
        return torch.istft(spec, head.config.n_fft, head.config.hop_length, head.config.win_length,
                           window=head.window, center=True, length=samples)


def to_stft_frames(features: Tensor, frames: int) -> Tensor:
    """(batch, feature_frames, dim) at 20 ms -> (batch, frames, dim) at 10 ms: each frame twice, then zero frames
    appended or frames cut to ``frames`` (the reference's ``match_length``)."""
    x = features.repeat_interleave(2, dim=1)[:, :frames]
    return F.pad(x, (0, 0, 0, frames - x.shape[1]))


class EnhancementHead(nn.Module):
    """``forward(features (batch, frames, feat_dim), noisy (batch, samples), wav_lengths (batch,))``."""

    def __init__(self, config: EnhanceConfig, feature_dim: int) -> None:
        super().__init__()
        self.config = config
        self.blstm = nn.LSTM(feature_dim, config.hidden_size, num_layers=config.num_layers, batch_first=True,
                             bidirectional=True, dropout=config.dropout if config.num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.output_dropout)
        self.linear = nn.Linear(2 * config.hidden_size, config.n_fft // 2 + 1)
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)

    def stft(self, wav: Tensor) -> Tensor:
        """(batch, samples) -> complex (batch, bins, frames); centered, Hann window."""
        return torch.stft(wav.float(), self.config.n_fft, self.config.hop_length, self.config.win_length,
                          window=self.window, center=True, return_complex=True)

    def stft_lengths(self, wav_lengths: Tensor) -> Tensor:
        return torch.div(wav_lengths, self.config.hop_length, rounding_mode="floor") + 1

    def forward(self, features: Tensor, noisy: Tensor, wav_lengths: Tensor) -> EnhancementOutput:
        noisy_stft = self.stft(noisy)
        frames = noisy_stft.shape[-1]
        x, _ = self.blstm(to_stft_frames(features, frames))
        mask = torch.sigmoid(self.linear(self.dropout(x)))
        enhanced = mask * noisy_stft.abs().transpose(1, 2)
        return EnhancementOutput(mask, noisy_stft, enhanced, self.stft_lengths(wav_lengths).clamp_max(frames))
