"""Losses of the enhancement head: L1 / L2 on the STFT magnitude, multi-resolution STFT, SI-SNR (DESIGN 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robustdistiller_upstream.enhance.head import EnhancementHead, EnhancementOutput
from robustdistiller_upstream.objectives.base import masked_mean

# (n_fft, hop, win) of the multi-resolution STFT loss (Yamamoto et al., Parallel WaveGAN, 2020)
MRSTFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


def _frame_mask(lengths: Tensor, frames: int) -> Tensor:
    return torch.arange(frames, device=lengths.device) < lengths[:, None]


def si_snr(estimate: Tensor, reference: Tensor, lengths: Tensor, eps: float = 1e-8) -> Tensor:
    """Scale-invariant SNR in dB per utterance (batch,), over the first ``lengths`` samples (Le Roux et al. 2019)."""
    mask = _frame_mask(lengths, estimate.shape[-1]).to(estimate.dtype)
    n = lengths.clamp_min(1).to(estimate.dtype)[:, None]
    est = (estimate - (estimate * mask).sum(-1, keepdim=True) / n) * mask
    ref = (reference - (reference * mask).sum(-1, keepdim=True) / n) * mask
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    return 10 * torch.log10(target.pow(2).sum(-1) / ((est - target).pow(2).sum(-1) + eps) + eps)


def _magnitude(wav: Tensor, n_fft: int, hop: int, win: int) -> Tensor:
    """STFT magnitude floored at ``sqrt(1e-7)`` (the power is clamped at 1e-7, as in the reference)."""
    window = torch.hann_window(win, device=wav.device)
    spec = torch.stft(wav, n_fft, hop, win, window=window, return_complex=True)
    return (spec.real.pow(2) + spec.imag.pow(2)).clamp_min(1e-7).sqrt()


def mrstft_loss(estimate: Tensor, reference: Tensor) -> Tensor:
    """``0.5 * mean(spectral convergence) + 0.5 * mean(log-magnitude L1)`` over ``MRSTFT_RESOLUTIONS``; waveforms
    (batch, samples). The reference's ``MultiResolutionSTFTLoss`` (factor_sc = factor_mag = 0.5)."""
    convergence, log_l1 = estimate.new_zeros(()), estimate.new_zeros(())
    for n_fft, hop, win in MRSTFT_RESOLUTIONS:
        est, ref = _magnitude(estimate, n_fft, hop, win), _magnitude(reference, n_fft, hop, win)
        convergence = convergence + torch.linalg.norm(ref - est) / torch.linalg.norm(ref)
        log_l1 = log_l1 + F.l1_loss(est.log(), ref.log())
    return 0.5 * convergence / len(MRSTFT_RESOLUTIONS) + 0.5 * log_l1 / len(MRSTFT_RESOLUTIONS)


def enhancement_loss(head: EnhancementHead, out: EnhancementOutput, clean: Tensor, wav_lengths: Tensor) -> Tensor:
    """The head's loss against the clean waveform (batch, samples); ``head.config.loss`` picks the kind."""
    kind = head.config.loss
    if kind in ("l1", "l2"):
        target = head.stft(clean).abs().transpose(1, 2)
        diff = out.enhanced_magnitude.float() - target
        per_frame = diff.abs().mean(-1) if kind == "l1" else diff.pow(2).mean(-1)
        return masked_mean(per_frame, _frame_mask(out.stft_lengths, per_frame.shape[1]))
    wav = out.waveform(head, clean.shape[-1])
    if kind == "sisnr":
        return -si_snr(wav, clean.float(), wav_lengths).mean()
    return mrstft_loss(wav, clean.float())
