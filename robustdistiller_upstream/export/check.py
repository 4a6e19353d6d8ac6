"""The batches an export is checked on and how outputs are compared: over valid frames only (s3prl reads
``pad_mask``; what a model computes on padding is never used).

int8 is calibrated and checked on generated speech that never shares a voice or a sentence: espeak-ng's where it
is installed (the program or the ``espeakng-loader`` wheel), else ``synthetic_speech``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustdistiller_upstream.audio import read_audio, resample
from robustdistiller_upstream.synthetic import ESPEAK_VOICES, have_espeak, spoken_sentences, synthetic_speech

SAMPLE_RATE = 16000
# different lengths, none a multiple of the hop, and a total length unlike the trace example's
CHECK_SECONDS = (1.37, 0.81, 0.43)
MAX_SECONDS = 20.0  # longer calibration files are cut: attention is quadratic in frames
# voices (and sentence seeds) of the generated int8 calibration speech and of the speech its cosines are checked on
CALIBRATION_VOICES, CALIBRATION_SEED = ESPEAK_VOICES[:5], 1
CHECK_VOICES, CHECK_SEED = ESPEAK_VOICES[5:], 2


def read_mono_16k(path: str | Path, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """(samples,) float32 at 16 kHz, channels averaged, at most ``max_seconds`` long."""
    audio, rate = read_audio(path)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return resample(audio, rate, SAMPLE_RATE)[: int(max_seconds * SAMPLE_RATE)]


def pad_batch(waves: Sequence[np.ndarray]) -> tuple[Tensor, Tensor]:
    """Zero-padded (batch, samples) float32 and (batch,) int64 lengths."""
    lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
    wav = torch.zeros(len(waves), int(lengths.max()))
    for row, w in enumerate(waves):
        wav[row, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
    return wav, lengths


def check_batch(files: Sequence[str | Path] = ()) -> tuple[Tensor, Tensor]:
    """The user's audio files (at most 3, each at most ``MAX_SECONDS``), or synthetic speech of
    ``CHECK_SECONDS``; both ragged. -> ((batch, samples), (batch,))."""
    if files:
        waves = [read_mono_16k(path) for path in list(files)[:3]]
        if len(waves) == 1:  # ragged even from one file: the file and its first 60 %
            waves.append(waves[0][: int(len(waves[0]) * 0.6)])
    else:
        waves = [synthetic_speech(s, SAMPLE_RATE, seed=i) for i, s in enumerate(CHECK_SECONDS)]
    return pad_batch(waves)


def generated_speech(count: int, voices: Sequence[str], seed: int) -> tuple[list[np.ndarray], str]:
    """``count`` utterances (float32 (samples,) at 16 kHz) of espeak-ng sentences by ``voices``, else of 2-4 s of
    ``synthetic_speech``; and what they are, in words."""
    if have_espeak():
        waves = spoken_sentences(count, voices, seed, SAMPLE_RATE)
        seconds = sum(map(len, waves)) / SAMPLE_RATE
        return waves, f"{count} espeak-ng sentences ({seconds:.0f} s, voices {', '.join(voices)})"
    rng = np.random.default_rng(seed)
    waves = [synthetic_speech(float(rng.uniform(2, 4)), SAMPLE_RATE, seed * 1000 + i) for i in range(count)]
    return waves, f"{count} utterances of synthetic speech (espeak-ng is not installed)"


def int8_check_batch() -> tuple[Tensor, Tensor, str]:
    """The ragged batch int8 cosines are checked on: 3 generated utterances that no calibration hears (their own
    voices and sentences). -> ((batch, samples), (batch,), what it is)."""
    waves, what = generated_speech(3, CHECK_VOICES, CHECK_SEED)
    return (*pad_batch(waves), what)


def valid_mask(frame_lengths: Tensor, frames: int) -> Tensor:
    """(batch, frames) bool, True on valid frames."""
    return torch.arange(frames)[None, :] < frame_lengths[:, None]


def max_abs_diff(a: Tensor, b: Tensor, frame_lengths: Tensor) -> float:
    """Largest |a - b| over valid frames of two (batch, frames, dim) tensors."""
    valid = valid_mask(frame_lengths, a.shape[1])
    return float((a - b).abs()[valid].max())


def mean_cosine(a: Tensor, b: Tensor, frame_lengths: Tensor) -> float:
    """Mean over valid frames of the cosine similarity of each frame's vectors, (batch, frames, dim) each."""
    valid = valid_mask(frame_lengths, a.shape[1])
    return float(F.cosine_similarity(a[valid].double(), b[valid].double(), dim=-1).mean())
