"""The multi-task enhancement head (DESIGN 1): shapes, losses, learning on a fixed batch, quality metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustdistiller_upstream.enhance import EnhanceConfig, EnhancementHead, enhancement_loss
from robustdistiller_upstream.enhance.head import to_stft_frames
from robustdistiller_upstream.enhance.losses import mrstft_loss, si_snr
from robustdistiller_upstream.enhance.metrics import enhancement_metrics
from robustdistiller_upstream.synthetic import make_noise, synthetic_speech


def _speech_batch(seconds=1.0, snr_db=5.0):
    clean = torch.from_numpy(np.stack([synthetic_speech(seconds, seed=s) for s in range(2)])).float()
    noise = torch.from_numpy(np.stack([make_noise("white", seconds, seed=s) for s in range(2)])).float()
    gain = (clean.pow(2).mean(-1, keepdim=True) / noise.pow(2).mean(-1, keepdim=True) / 10 ** (snr_db / 10)).sqrt()
    return clean, clean + gain * noise


def test_si_snr_values():
    clean, noisy = _speech_batch(snr_db=5.0)
    lengths = torch.tensor([clean.shape[1]] * 2)
    assert si_snr(3.0 * clean, clean, lengths).min() > 60  # scale-invariant: a scaled copy is perfect
    torch.testing.assert_close(si_snr(noisy, clean, lengths), torch.tensor([5.0, 5.0]), atol=0.3, rtol=0)


@pytest.mark.parametrize("kind", ["l1", "l2", "mrstft", "sisnr"])
def test_head_learns_a_mask_on_a_fixed_batch(kind):
    torch.manual_seed(0)
    clean, noisy = _speech_batch(seconds=0.5)
    lengths = torch.tensor([clean.shape[1], clean.shape[1] - 3000])
    features = torch.randn(2, 24, 16)  # 20 ms frames of 0.5 s
    head = EnhancementHead(EnhanceConfig(enabled=True, loss=kind, hidden_size=16, num_layers=2), 16)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        out = head(features, noisy, lengths)
        loss = enhancement_loss(head, out, clean, lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert out.mask.shape == (2, 51, 257) and out.stft_lengths.tolist() == [51, 32]
    assert out.waveform(head, clean.shape[1]).shape == clean.shape
    assert losses[-1] < losses[0]


def test_metrics_rank_clean_above_noisy():
    clean, noisy = _speech_batch(seconds=2.0, snr_db=0.0)
    lengths = torch.tensor([clean.shape[1]] * 2)
    perfect = enhancement_metrics(clean, clean, lengths)
    degraded = enhancement_metrics(noisy, clean, lengths)
    assert set(degraded) == {"pesq", "stoi", "si_snr"}
    assert perfect["stoi"] > degraded["stoi"] and perfect["pesq"] > degraded["pesq"]
    assert abs(degraded["si_snr"]) < 0.5


def test_head_has_the_reference_dropout_between_blstm_and_linear():
    """The reference's ReconstructionHead: rnn -> Dropout(0.1) -> linear -> sigmoid; the dropout adds no state."""
    head = EnhancementHead(EnhanceConfig(enabled=True, hidden_size=8, num_layers=1), 16)
    assert [name for name, _ in head.named_children()] == ["blstm", "dropout", "linear"]
    assert isinstance(head.dropout, torch.nn.Dropout) and head.dropout.p == 0.1
    assert {key.split(".")[0] for key in head.state_dict()} == {"blstm", "linear"}
    features, noisy, lengths = torch.randn(1, 24, 16), torch.randn(1, 8000), torch.tensor([8000])
    head.train()  # one BLSTM layer: the output dropout is the only random part
    assert not torch.equal(head(features, noisy, lengths).mask, head(features, noisy, lengths).mask)
    head.eval()
    assert torch.equal(head(features, noisy, lengths).mask, head(features, noisy, lengths).mask)


def test_missing_feature_frames_are_zero_padded_extra_ones_cut():
    features = torch.randn(2, 24, 3)
    padded = to_stft_frames(features, 51)  # 0.5 s: 24 feature frames, 51 STFT frames
    assert padded.shape == (2, 51, 3)
    torch.testing.assert_close(padded[:, :48], features.repeat_interleave(2, dim=1), rtol=0, atol=0)
    assert not padded[:, 48:].any()
    torch.testing.assert_close(to_stft_frames(features, 45), features.repeat_interleave(2, dim=1)[:, :45])


def _reference_mrstft(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The reference's MultiResolutionSTFTLoss (facebookresearch/denoiser, as RobustDistiller ships it), written out:
    magnitude sqrt(clamp(re^2 + im^2, 1e-7)); 0.5 * mean over resolutions of ||Y - X||_F / ||Y||_F plus 0.5 * mean
    of mean |log Y - log X|."""
    sc, mag = [], []
    for n_fft, hop, win in ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240)):
        spectra = [torch.view_as_real(torch.stft(w, n_fft, hop, win, torch.hann_window(win), return_complex=True))
                   for w in (x, y)]
        xm, ym = [torch.sqrt(torch.clamp(s[..., 0] ** 2 + s[..., 1] ** 2, min=1e-7)) for s in spectra]
        sc.append(torch.norm(ym - xm, p="fro") / torch.norm(ym, p="fro"))
        mag.append((ym.log() - xm.log()).abs().mean())
    return 0.5 * torch.stack(sc).mean() + 0.5 * torch.stack(mag).mean()


def test_mrstft_loss_is_the_references_half_and_half_with_its_floor():
    clean, noisy = _speech_batch(seconds=0.5)
    torch.testing.assert_close(mrstft_loss(noisy, clean), _reference_mrstft(noisy, clean))
    silent = torch.zeros_like(clean)  # every magnitude at the floor sqrt(1e-7)
    torch.testing.assert_close(mrstft_loss(silent, clean), _reference_mrstft(silent, clean))
    assert mrstft_loss(clean, clean).item() == 0.0
