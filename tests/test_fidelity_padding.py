"""Point 8 of docs/fidelity.md, measured on one batch: the reference averages its losses over every frame (padding
included) and sets the SNR with powers over the padded length (the noise covering the padding); ours masks. Prints
the numbers the doc quotes (``pytest -s tests/test_fidelity_padding.py``)."""

from __future__ import annotations

import math

import torch

from pretrain_helpers import TINY_STUDENT, make_world
from robustdistiller_upstream.model import StudentConfig, StudentModel
from robustdistiller_upstream.objectives import build_objective
from robustdistiller_upstream.teacher import Teacher, TeacherConfig, align_frames, init_student_from_teacher
from robustdistiller_upstream.train.data import BatchStream, DataConfig, load_corpus


def _reference_noisy_snr(clean: torch.Tensor, noise: torch.Tensor, length: int, snr_db: float) -> float:
    """The SNR (dB) over the ``length`` valid samples after the reference's ``insert_controlled_noise`` on the
    padded row: both powers divide by the padded length, the noise spans the padding."""
    n = clean.shape[0]
    k = (clean.dot(clean) / n) / (noise.dot(noise) / n + 1e-8) * 10 ** (-snr_db / 10)
    scaled = k.sqrt() * noise
    return float(10 * torch.log10(clean[:length].pow(2).sum() / scaled[:length].pow(2).sum()))


def test_padding_on_one_batch(tmp_path):
    world = make_world(tmp_path, n_speakers=2, n_utterances=4)
    data = DataConfig(librispeech_root=str(world["corpus"]), subsets=["train-clean-100"], sequence_length=250000,
                      batch_size=4, num_workers=0)
    batch = next(iter(BatchStream(data, load_corpus(data)[0])))
    lengths, samples = batch.lengths, batch.wav.shape[1]
    teacher = Teacher(TeacherConfig(name="wavlm_local", ckpt=str(world["teacher"])), TINY_STUDENT["pred_layer_id"])
    torch.manual_seed(0)
    student = StudentModel(StudentConfig(**{**TINY_STUDENT, "extractor_conv_layers": [
        tuple(c) for c in TINY_STUDENT["extractor_conv_layers"]]}))
    init_student_from_teacher(student, teacher.upstream)
    with torch.no_grad():
        out = student.eval()(batch.wav, lengths)
        frames, targets = align_frames(out.predictions.shape[2], teacher(batch.wav, lengths), 2, "wavlm_local")
        predictions = list(out.predictions[:, :, :frames].unbind(1))
        mask = torch.arange(frames) < out.frame_lengths[:, None]
        objective = build_objective("layerwise", {}, 64, 64, TINY_STUDENT["pred_layer_id"])
        ours = float(objective(predictions, targets, mask).loss)
        everything = float(objective(predictions, targets, torch.ones_like(mask)).loss)  # the reference's mean
    padded = 1 - float(mask.float().mean())
    assert padded > 0 and ours != everything

    noise = torch.randn(batch.wav.shape, generator=torch.Generator().manual_seed(0))
    shifts = [_reference_noisy_snr(batch.wav[b], noise[b], int(lengths[b]), 10.0) - 10.0 for b in range(len(lengths))]
    expected = [10 * math.log10(samples / int(n)) for n in lengths]  # the padded share, in dB
    assert max(abs(s - e) for s, e in zip(shifts, expected)) < 0.3
    print(f"batch of {len(lengths)}: lengths {lengths.tolist()} samples, padded frames {padded:.1%}; "
          f"L1+cos masked {ours:.4f}, over all frames {everything:.4f} ({everything / ours - 1:+.1%}); "
          f"reference SNR shift on the valid samples {[round(s, 2) for s in shifts]} dB")
