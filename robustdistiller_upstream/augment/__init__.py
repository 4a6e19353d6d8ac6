"""Contamination of speech with noise and reverberation (DESIGN 1), batched on the training device.

Build banks once (``build_banks(BankConfig)``), then ``Contaminator(ContaminationConfig, noise, rirs)`` and call
it on each batch: ``noisy, records = contaminator(wav, lengths, step=step)``.
"""

from robustdistiller_upstream.augment.banks import NoiseBank, RirBank, build_banks
from robustdistiller_upstream.augment.config import (
    BankConfig,
    ContaminationConfig,
    NoiseSourceConfig,
    RirSourceConfig,
    SimulatedRoomsConfig,
)
from robustdistiller_upstream.augment.contaminator import OPS, Contaminator, TransformRecord, utterance_seed
from robustdistiller_upstream.augment.ops import mean_power

__all__ = [
    "BankConfig",
    "ContaminationConfig",
    "Contaminator",
    "NoiseBank",
    "NoiseSourceConfig",
    "OPS",
    "RirBank",
    "RirSourceConfig",
    "SimulatedRoomsConfig",
    "TransformRecord",
    "build_banks",
    "mean_power",
    "utterance_seed",
]
