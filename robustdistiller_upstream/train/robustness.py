"""How much a student's features move when its input is contaminated, and how well it still predicts the
teacher's targets of the CLEAN input (the quantities feature-denoising distillation optimises).

Students are loaded through ``s3prl.hub`` like any upstream; contamination is replayed deterministically per
utterance (``Contaminator`` with utterance ids), so every model sees the same noisy copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from robustdistiller_upstream.augment.contaminator import Contaminator
from robustdistiller_upstream.teacher import Teacher


@dataclass
class Scores:
    """Means over utterances. ``change``: ||h(noisy) - h(clean)|| / ||h(clean)|| of the last transformer layer;
    ``target_l1``: mean |prediction(noisy) - teacher(clean)| over valid frames and dims."""

    change: float
    target_l1: float


def _run_upstream(upstream, wavs: list[Tensor]) -> tuple[list[Tensor], Tensor]:
    """(hidden states, the last prediction head) of our upstream (``robustdistiller_local``)."""
    with torch.no_grad():
        out = upstream(wavs)
    return out["hidden_states"], out["predictions"][-1]


def contaminate(contaminator: Contaminator | None, wavs: list[Tensor], ids: Sequence[str]) -> list[Tensor]:
    """A contaminated copy of each (samples,) waveform (deterministic per utterance id); None: the clean input."""
    if contaminator is None:
        return wavs
    out = []
    for wav, utt_id in zip(wavs, ids):
        noisy, _ = contaminator(wav[None], torch.tensor([len(wav)]), utt_ids=[utt_id])
        out.append(noisy[0])
    return out


def score_student(upstream, layer: int, teacher: Teacher, wavs: list[Tensor], noisy: list[Tensor]) -> Scores:
    """``layer``: index of the compared hidden state; the last prediction head predicts ``teacher``."""
    changes, errors = [], []
    for clean_wav, noisy_wav in zip(wavs, noisy):
        clean_states, _ = _run_upstream(upstream, [clean_wav])
        noisy_states, prediction = _run_upstream(upstream, [noisy_wav])
        h_clean, h_noisy = clean_states[layer][0], noisy_states[layer][0]
        changes.append(float((h_noisy - h_clean).norm() / h_clean.norm().clamp_min(1e-8)))
        target = teacher(clean_wav[None], torch.tensor([len(clean_wav)]))[0][0]
        frames = min(len(target), prediction.shape[1])
        errors.append(float((prediction[0, :frames] - target[:frames]).abs().mean()))
    return Scores(sum(changes) / len(changes), sum(errors) / len(errors))


def teacher_error(teacher: Teacher, wavs: list[Tensor], noisy: list[Tensor]) -> float:
    """Mean |teacher(noisy) - teacher(clean)|: how far the targets themselves move (a non-robust reference)."""
    errors = []
    for clean_wav, noisy_wav in zip(wavs, noisy):
        a = teacher(clean_wav[None], torch.tensor([len(clean_wav)]))[0][0]
        b = teacher(noisy_wav[None], torch.tensor([len(noisy_wav)]))[0][0]
        frames = min(len(a), len(b))
        errors.append(float((a[:frames] - b[:frames]).abs().mean()))
    return sum(errors) / len(errors)
