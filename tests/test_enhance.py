"""The multi-task enhancement head (DESIGN 1): shapes, losses, learning on a fixed batch, quality metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustdistiller_upstream.enhance import EnhanceConfig, EnhancementHead, enhancement_loss
from robustdistiller_upstream.enhance.losses import si_snr
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
