"""Non-additive effects of the correlation paper's setup 2 (nobel861017/distort-robust-distilSSL ``distortions.py``):
pitch shift and band-reject filtering, on float tensors on any device, each keeping the input's length.

The reference runs sox (``pitch`` + ``rate``, ``sinc -a 120 high-low``) through WavAugment; these are torch
equivalents (docs/fidelity.md lists the differences): a phase-vocoder pitch shift and an ideal zero-phase band-reject.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from robustdistiller_upstream.augment.ops import fft_size

# STFT of the phase vocoder: 32 ms windows, 8 ms hop at 16 kHz
PITCH_N_FFT = 512
PITCH_HOP = 128


def _mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _hz(mel: float) -> float:
    return (10.0 ** (mel / 2595.0) - 1.0) * 700.0


def draw_band(rng: np.random.Generator, sample_rate: int, scaler: float) -> tuple[float, float]:
    """(low, high) edges in Hz of a rejected band, the reference's ``SpecAugmentBand``: width uniform in
    [0, mel(sr/2) * 27 * scaler / 256] mel, lower edge uniform below mel(sr/2) - width (DR ``distortions.py:52-72``)."""
    top = _mel(sample_rate / 2)
    width = float(rng.uniform(0.0, top * 27.0 * scaler / 256.0))
    low = float(rng.uniform(0.0, top - width))
    return _hz(low), _hz(low + width)


def band_reject(x: Tensor, low_hz: Tensor, high_hz: Tensor, sample_rate: int) -> Tensor:
    """``(batch, samples)`` with the band [``low_hz[b]``, ``high_hz[b]``] (Hz, ``(batch,)``) of row b removed:
    one real FFT of the batch at an even 5-smooth size >= ``samples``, the band's bins zeroed, the inverse FFT cut
    to ``samples``. Zero phase, ideal edges (sox's ``sinc`` is a Kaiser-windowed FIR with transition bands)."""
    samples = x.shape[-1]
    n_fft = fft_size(samples, 1)
    spectrum = torch.fft.rfft(x.float(), n=n_fft)
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate, device=x.device)
    stop = (freqs[None, :] >= low_hz[:, None]) & (freqs[None, :] <= high_hz[:, None])
    return torch.fft.irfft(spectrum.masked_fill_(stop, 0), n=n_fft)[:, :samples]


def _nearest_peak(magnitude: Tensor) -> Tensor:
    """Long ``(freq, frames)``: for each bin, the bin of the nearest spectral peak (local maximum over frequency)
    of its frame."""
    freq = magnitude.shape[0]
    padded = F.pad(magnitude.T, (1, 1), value=-1.0).T
    peak = (magnitude > padded[:-2]) & (magnitude >= padded[2:])
    bins = torch.arange(freq, device=magnitude.device)[:, None].expand_as(magnitude)
    below = torch.where(peak, bins, torch.full_like(bins, -freq)).cummax(dim=0).values  # last peak at or below
    above = torch.where(peak, bins, torch.full_like(bins, 2 * freq)).flip(0).cummin(dim=0).values.flip(0)
    return torch.where(bins - below <= above - bins, below, above).clamp(0, freq - 1)


def _phase_vocoder(spec: Tensor, rate: float, hop: int) -> Tensor:
    """Complex ``(freq, frames / rate)``: ``spec`` ``(freq, frames)`` read at steps of ``rate`` frames, magnitudes
    interpolated, phases advanced by each bin's measured frequency, with identity phase locking (Laroche and
    Dolson 1999): each bin keeps its input phase relative to its nearest peak, whose phase the vocoder advances.
    Without the locking a bin's phase drifts from its neighbours' wherever a frame is read twice (at onsets,
    a steady tone loses two thirds of its power)."""
    freq = spec.shape[0]
    steps = torch.arange(0, spec.shape[1], rate, device=spec.device)
    advance = torch.linspace(0, math.pi * hop, freq, device=spec.device)[:, None]  # expected phase per hop
    padded = F.pad(spec, (0, 2))
    index = steps.long()
    alpha = (steps - index)[None, :]
    a, b = padded[:, index], padded[:, index + 1]
    magnitude = alpha * b.abs() + (1 - alpha) * a.abs()
    delta = b.angle() - a.angle() - advance
    delta = delta - 2 * math.pi * torch.round(delta / (2 * math.pi))
    phase = torch.cat([spec[:, :1].angle(), (delta + advance)[:, :-1]], dim=1).cumsum(dim=1)
    peak = _nearest_peak(magnitude)
    locked = phase.gather(0, peak) + a.angle() - a.angle().gather(0, peak)
    return torch.polar(magnitude, locked)


def _resample_to(x: Tensor, samples: int) -> Tensor:
    """``(n,)`` -> ``(samples,)`` by band-limited (FFT) resampling: the spectrum cut or zero-extended."""
    spectrum = torch.fft.rfft(x)
    out = torch.zeros(samples // 2 + 1, dtype=spectrum.dtype, device=x.device)
    keep = min(len(out), len(spectrum))
    out[:keep] = spectrum[:keep]
    return torch.fft.irfft(out, n=samples) * (samples / len(x))


def pitch_shift(x: Tensor, cents: float) -> Tensor:
    """``(samples,)`` shifted in pitch by ``cents`` (1/100 semitone), same length: a phase-vocoder time stretch by
    r = 2^(cents/1200) (STFT ``PITCH_N_FFT``, hop ``PITCH_HOP``), then resampling back to ``samples``, which
    multiplies every frequency by r. Inputs shorter than one STFT window come back unchanged."""
    samples = x.shape[-1]
    if cents == 0 or samples < PITCH_N_FFT:
        return x.float().clone()
    ratio = 2.0 ** (cents / 1200.0)
    window = torch.hann_window(PITCH_N_FFT, device=x.device)
    spec = torch.stft(x.float(), PITCH_N_FFT, PITCH_HOP, window=window, return_complex=True)
    stretched = torch.istft(_phase_vocoder(spec, 1.0 / ratio, PITCH_HOP), PITCH_N_FFT, PITCH_HOP, window=window,
                            length=max(PITCH_N_FFT, round(samples * ratio)))
    return _resample_to(stretched, samples)
