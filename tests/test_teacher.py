"""The frozen teacher (real s3prl upstreams in their official formats, random tiny weights) and student init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pretrain_helpers import TINY_STUDENT
from robustdistiller_upstream.errors import TeacherError
from robustdistiller_upstream.model import StudentConfig, StudentModel
from robustdistiller_upstream.random_teacher import write_hubert_checkpoint, write_wavlm_checkpoint
from robustdistiller_upstream.teacher import Teacher, TeacherConfig, align_frames, init_student_from_teacher


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("teachers")
    return {"wavlm_local": write_wavlm_checkpoint(root / "wavlm.pt"), "hubert_local": write_hubert_checkpoint(root / "hubert.pt")}


def _student() -> StudentModel:
    return StudentModel(StudentConfig(**{**TINY_STUDENT, "extractor_conv_layers": [tuple(c) for c in TINY_STUDENT["extractor_conv_layers"]]}))


@pytest.mark.parametrize("name", ["wavlm_local", "hubert_local"])
def test_selected_layers_are_s3prl_hidden_states(ckpts, name):
    import s3prl.hub as hub

    teacher = Teacher(TeacherConfig(name=name, ckpt=str(ckpts[name])), [2, 0])
    assert teacher.num_hidden_states == 3 and teacher.dim == 64 and teacher.downsample_rate == 320
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.upstream.training  # frozen in eval whatever the caller asks
    wav = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 11000])
    states = teacher(wav, lengths)
    reference = getattr(hub, name)(ckpt=str(ckpts[name])).eval()
    with torch.no_grad():
        expected = reference([wav[0], wav[1, :11000]])["hidden_states"]
    assert [s.shape for s in states] == [(2, 49, 64)] * 2
    torch.testing.assert_close(states[0], expected[2])
    torch.testing.assert_close(states[1], expected[0])


def test_student_init_copies_front_end_and_layers(ckpts):
    teacher = Teacher(TeacherConfig(name="wavlm_local", ckpt=str(ckpts["wavlm_local"])), [1, 2])
    student = _student()
    copied = init_student_from_teacher(student, teacher.upstream)
    source = teacher.upstream.model.state_dict()
    target = student.state_dict()
    assert "encoder.layers.1.fc2.weight" in copied and "feature_extractor.conv_layers.0.0.weight" in copied
    assert not any("relative_attention_bias" in k or "grep" in k for k in target)
    for key in copied:
        torch.testing.assert_close(target[key], source[key])
    student.eval()
    wav = torch.randn(1, 16000)
    with torch.no_grad():
        expected = teacher.upstream.model.feature_extractor(wav).transpose(1, 2)
        torch.testing.assert_close(student(wav, torch.tensor([16000])).features, expected, atol=1e-5, rtol=1e-4)


def test_student_init_refuses_mismatched_sizes(ckpts):
    teacher = Teacher(TeacherConfig(name="hubert_local", ckpt=str(ckpts["hubert_local"])), [1])
    wide = StudentModel(StudentConfig(**{**TINY_STUDENT, "encoder_embed_dim": 128, "encoder_attention_heads": 4,
                                         "extractor_conv_layers": [tuple(c) for c in TINY_STUDENT["extractor_conv_layers"]]}))
    with pytest.raises(TeacherError, match="shapes differ.*student_init=false"):
        init_student_from_teacher(wide, teacher.upstream)


def test_clear_errors(ckpts, tmp_path):
    with pytest.raises(TeacherError, match=r"student.pred_layer_id: layer\(s\) \[3\] do not exist.*3 hidden states"):
        Teacher(TeacherConfig(name="wavlm_local", ckpt=str(ckpts["wavlm_local"])), [1, 3])
    with pytest.raises(TeacherError, match=f"teacher.ckpt: {tmp_path}/missing.pt does not exist"):
        Teacher(TeacherConfig(name="wavlm_local", ckpt=str(tmp_path / "missing.pt")), [1])
    with pytest.raises(TeacherError, match="needs a file"):
        Teacher(TeacherConfig(name="hubert_local"), [1])
    with pytest.raises(TeacherError, match="not an s3prl hub entry"):
        Teacher(TeacherConfig(name="wavlm_lokal", ckpt=str(ckpts["wavlm_local"])), [1])
    fbank = Teacher(TeacherConfig(name="fbank_no_cmvn"), [0])  # 10 ms frames: twice the student's rate
    states = fbank(torch.randn(1, 16000), torch.tensor([16000]))
    with pytest.raises(TeacherError, match="frame rates differ"):
        align_frames(49, states, 2, "fbank_no_cmvn")
    frames, cut = align_frames(states[0].shape[1] - 1, states, 2, "fbank_no_cmvn")
    assert cut[0].shape[1] == frames


def test_reduced_precision_targets_stay_close(ckpts):
    config = dict(name="wavlm_local", ckpt=str(ckpts["wavlm_local"]))
    wav, lengths = torch.randn(2, 16000), torch.tensor([16000, 16000])
    full = Teacher(TeacherConfig(**config), [1, 2])(wav, lengths)
    half = Teacher(TeacherConfig(**config, precision="bf16"), [1, 2])(wav, lengths)
    for a, b in zip(full, half):
        assert b.dtype == torch.float32
        assert F.cosine_similarity(a, b, dim=-1).min() > 0.99
