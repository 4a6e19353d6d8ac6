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
    assert not teacher.upstream.training  # built in eval mode
    wav = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 11000])
    states = teacher(wav, lengths)
    reference = getattr(hub, name)(ckpt=str(ckpts[name])).eval()
    with torch.no_grad():
        expected = reference([wav[0], wav[1, :11000]])["hidden_states"]
    assert [s.shape for s in states] == [(2, 49, 64)] * 2
    torch.testing.assert_close(states[0], expected[2])
    torch.testing.assert_close(states[1], expected[0])


@pytest.mark.parametrize("name", ["wavlm_local", "hubert_local"])
def test_dropout_switch_makes_targets_random_or_deterministic(ckpts, name):
    """teacher.dropout: the reference's train-mode teacher draws dropout masks (two calls differ); eval mode does
    not; layer drop stays 0 and gradients stay off in both."""
    teacher = Teacher(TeacherConfig(name=name, ckpt=str(ckpts[name])), [1, 2])
    wav, lengths = torch.randn(2, 16000), torch.tensor([16000, 12000])
    teacher.train(True)
    assert teacher.upstream.model.encoder.layerdrop == 0.0
    first, second = teacher(wav, lengths), teacher(wav, lengths)
    assert not any(p.requires_grad for p in teacher.parameters())
    assert (first[1] - second[1]).abs().max() > 1e-3
    teacher.train(False)
    first, second = teacher(wav, lengths), teacher(wav, lengths)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


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


def reference_init_keys(teacher_model: torch.nn.Module, n_layers: int) -> set[str]:
    """The student keys the reference's ``DistillerForPretrain.__init__`` loads (RobustDistiller
    ``pretrain/robust_distiller/pretrain_expert.py``): CNN, ``post_extract_proj``, ``encoder.pos_conv`` and the
    state dict of each ``encoder.layers[l]`` less WavLM's relative-position bias (layer 0) and gating."""
    keys = {f"{name}.{key}" for name in ("feature_extractor", "post_extract_proj")
            if getattr(teacher_model, name) is not None for key in getattr(teacher_model, name).state_dict()}
    keys |= {f"encoder.pos_conv.{key}" for key in teacher_model.encoder.pos_conv.state_dict()}
    wavlm_only = {"self_attn.relative_attention_bias.weight", "self_attn.grep_a", "self_attn.grep_linear.weight",
                  "self_attn.grep_linear.bias"}
    for layer in range(n_layers):
        keys |= {f"encoder.layers.{layer}.{key}" for key in teacher_model.encoder.layers[layer].state_dict()
                 if key not in wavlm_only}
    return keys


@pytest.mark.parametrize("name", ["wavlm_local", "hubert_local"])
def test_student_init_copies_exactly_the_reference_key_set(ckpts, name):
    teacher = Teacher(TeacherConfig(name=name, ckpt=str(ckpts[name])), [1, 2])
    student = _student()
    fresh = {key: value.clone() for key, value in student.state_dict().items()}
    copied = init_student_from_teacher(student, teacher.upstream)
    assert set(copied) == reference_init_keys(teacher.upstream.model, 2)
    for key, value in student.state_dict().items():
        if key not in copied:  # encoder.layer_norm among them: fresh init, as in the reference
            assert torch.equal(value, fresh[key]), key
    assert {"encoder.layer_norm.weight", "encoder.layer_norm.bias"} <= set(fresh) - set(copied)


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
