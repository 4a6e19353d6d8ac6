"""Quality of the enhanced waveform: wideband PESQ (``pesq``), STOI (``pystoi``) and SI-SNR, per utterance."""

from __future__ import annotations

import logging

import numpy as np
from torch import Tensor

from robustdistiller_upstream.enhance.losses import si_snr

logger = logging.getLogger(__name__)


def enhancement_metrics(enhanced: Tensor, clean: Tensor, lengths: Tensor, sample_rate: int = 16000) -> dict[str, float]:
    """Means over the utterances of (batch, samples) waveforms: ``pesq`` (wb, MOS-LQO), ``stoi`` (0-1), ``si_snr``
    (dB). PESQ is left out for utterances it refuses (silence, too short)."""
    from pesq import pesq
    from pystoi import stoi

    enhanced = enhanced.detach().float().cpu()
    clean = clean.detach().float().cpu()
    lengths = lengths.cpu()
    pesq_values, stoi_values = [], []
    for est, ref, n in zip(enhanced.numpy(), clean.numpy(), lengths.tolist()):
        est, ref = est[:n].astype(np.float64), ref[:n].astype(np.float64)
        try:
            pesq_values.append(pesq(sample_rate, ref, est, "wb"))
        except Exception as exc:  # noqa: BLE001 - pesq raises its own error types for unusable input
            logger.debug("PESQ skipped: %s", exc)
        stoi_values.append(stoi(ref, est, sample_rate, extended=False))
    metrics = {"si_snr": float(si_snr(enhanced, clean, lengths).mean()), "stoi": float(np.mean(stoi_values))}
    if pesq_values:
        metrics["pesq"] = float(np.mean(pesq_values))
    return metrics

