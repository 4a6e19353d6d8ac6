"""Batched contamination operations on ``(batch, samples)`` float tensors on any device.

Lengths travel beside the tensors: samples at and after ``lengths[b]`` are padding, never counted in powers,
and come out zero.

SNR definition: ``SNR = 10 log10(P_speech / P_noise)`` with ``P`` the mean power (mean of squares) over the
utterance's ``lengths[b]`` valid samples, the whole utterance including its pauses (DESIGN 1).
"""

from __future__ import annotations

from typing import Sequence

import torch
from scipy.fft import next_fast_len


def length_mask(lengths: torch.Tensor, samples: int) -> torch.Tensor:
    """Bool ``(batch, samples)``: True on valid samples."""
    return torch.arange(samples, device=lengths.device)[None, :] < lengths[:, None]


def mean_power(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Float ``(batch,)`` mean of squares over the valid samples of each row (0 for empty rows)."""
    if bool((lengths < x.shape[-1]).any()):
        x = x * length_mask(lengths, x.shape[-1])
    return _zero_padded_power(x, lengths)


def _zero_padded_power(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``mean_power`` of rows already zero beyond their lengths: no mask, no host sync."""
    return torch.linalg.vector_norm(x, dim=-1).square() / lengths.clamp(min=1).to(x.dtype)


def snr_gain(speech: torch.Tensor, noise: torch.Tensor, lengths: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """Float ``(batch,)`` gain g such that ``speech + g * noise`` has SNR ``snr_db`` (dB, ``(batch,)``).

    ``speech`` and ``noise`` ``(batch, samples)`` must be zero beyond ``lengths`` (the contaminator makes them
    so), which keeps this free of host syncs on CUDA. Silent noise gets gain 0 (nothing to scale); silent
    speech gets gain 0 too (no SNR exists).
    """
    p_speech = _zero_padded_power(speech, lengths)
    p_noise = _zero_padded_power(noise, lengths)
    target = p_speech / torch.pow(10.0, snr_db.to(p_speech.dtype) / 10)
    gain = torch.sqrt(target / p_noise.clamp(min=torch.finfo(p_noise.dtype).tiny))
    return torch.where((p_noise > 0) & (p_speech > 0), gain, torch.zeros_like(gain))


def fft_size(samples: int, rir_samples: int) -> int:
    """FFT length for linear convolution: the smallest even 5-smooth (2, 3, 5) length >= samples + rir_samples - 1
    (odd lengths such as 3^7 5^3 take the slower odd-size real FFT: about twice the time on CPU)."""
    return 2 * next_fast_len(-(-(samples + rir_samples - 1) // 2), real=True)


def reverb_fft_size(samples: int, longest_rir: int) -> int:
    """FFT length for reverberating rows of ``samples`` with RIRs of up to ``longest_rir`` samples, the output cut
    to the input length: a tap more than ``samples - 1`` from the direct path never reaches a kept output sample,
    so an RIR counts as at most ``samples`` long (``place_rirs`` drops the rest). A bank that holds minutes-long
    recordings (SLR28 with ``rirs_only: false``) then costs what its batch width costs, not what its longest file
    would: ``fft_size(samples, longest_rir)`` grew with that file."""
    return fft_size(samples, min(longest_rir, samples))


def place_rirs(rirs: list[torch.Tensor], delays: list[int], n_fft: int, device: torch.device) -> torch.Tensor:
    """Float ``(batch, n_fft)`` buffer with RIR b advanced by ``delays[b]`` samples, circularly, keeping the taps
    at most ``(n_fft - 1) // 2`` samples from the direct path on either side.

    The taps before the direct path land at the buffer's end (negative lags), so a circular convolution of
    length ``n_fft >= samples + rir_samples - 1``, or ``n_fft = reverb_fft_size(samples, rir_samples)``, equals
    the linear one shifted left by the delay on the first ``samples`` outputs: the taps dropped are farther
    than ``samples - 1`` from the direct path and reach none of them.
    """
    reach = (n_fft - 1) // 2
    buf = torch.zeros(len(rirs), n_fft, device=device)
    for b, (rir, delay) in enumerate(zip(rirs, delays)):
        late, early = rir[delay : delay + reach + 1], rir[max(0, delay - reach) : delay]
        buf[b, : len(late)] = late.to(device)
        if len(early):
            buf[b, n_fft - len(early) :] = early.to(device)
    return buf


def fft_convolve(
    x: torch.Tensor,
    rir_spectra: Sequence[torch.Tensor],
    n_fft: int,
    workspace: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``(batch, samples)`` linear convolution of each row of ``x`` with its RIR, truncated to the input length.

    ``rir_spectra``: one complex ``(n_fft // 2 + 1,)`` spectrum per row (a list, or the rows of a tensor),
    ``torch.fft.rfft`` at ``n_fft`` of a ``place_rirs`` row. Two real FFTs of size ``n_fft``; the products are
    taken row by row, in place, so cached spectra are never gathered into a batch copy. ``workspace``: float32
    ``(batch, n_fft)`` and complex64 ``(batch, n_fft // 2 + 1)`` buffers to reuse (contents overwritten); the
    result is then a view of the first.
    """
    batch, samples = x.shape
    signal, spectrum = workspace or (torch.empty(batch, n_fft, device=x.device), None)
    signal[:, :samples] = x
    signal[:, samples:] = 0.0
    spectrum = torch.fft.rfft(signal, out=spectrum)
    for row, rir_spectrum in zip(spectrum, rir_spectra):
        row.mul_(rir_spectrum)
    return torch.fft.irfft(spectrum, n=n_fft, out=signal)[:, :samples]


def direct_path_delay(rir: torch.Tensor) -> int:
    """Index (samples) of the RIR's largest absolute tap: the direct path."""
    return int(rir.abs().argmax())
