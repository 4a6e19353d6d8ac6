"""Cosine alignment through a linear inverted bottleneck (arXiv 2505.03442): the issue's property tests."""

from __future__ import annotations

import pytest
import torch

from robustdistiller_upstream.objectives import build_objective

LAYERS = [4, 8, 12]
STUDENT_DIM, TEACHER_DIM = 8, 24


def _objective(student_dim: int = STUDENT_DIM, **options):
    torch.manual_seed(0)
    return build_objective("cosine_bottleneck", options, student_dim, TEACHER_DIM, LAYERS)


def _student(batch: int = 3, frames: int = 30, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, frames, STUDENT_DIM, generator=g) for _ in LAYERS]


def _mask(batch: int = 3, frames: int = 30) -> torch.Tensor:
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[2, 20:] = False
    return mask


def test_student_matching_the_teacher_through_the_bottleneck_gives_zero_loss():
    objective = _objective()
    student = _student()
    with torch.no_grad():
        teacher = [p(s) * 4.0 for p, s in zip(objective.projections, student)]  # same directions, other norm
    out = objective(student, teacher, _mask())
    assert out.loss.item() == pytest.approx(0.0, abs=1e-5)
    unrelated = objective(student, [torch.randn_like(t) for t in teacher], _mask())
    assert 0.5 < unrelated.loss.item() < 1.5  # ~1 for unrelated directions


def test_identical_features_give_zero_loss_with_identity_bottleneck():
    objective = build_objective("cosine_bottleneck", {}, TEACHER_DIM, TEACHER_DIM, LAYERS)
    with torch.no_grad():
        for p in objective.projections:
            p.weight.copy_(torch.eye(TEACHER_DIM))
    teacher = [torch.randn(2, 10, TEACHER_DIM) for _ in LAYERS]
    assert objective(teacher, teacher, torch.ones(2, 10, dtype=torch.bool)).loss.item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("scale", [1e-3, 0.5, 7.0, 1e3])
def test_invariant_to_student_feature_scale(scale):
    objective = _objective()
    student, mask = _student(seed=1), _mask()
    teacher = [torch.randn(3, 30, TEACHER_DIM, generator=torch.Generator().manual_seed(2)) for _ in LAYERS]
    base = objective(student, teacher, mask)
    scaled = objective([s * scale for s in student], teacher, mask)
    assert scaled.loss.item() == pytest.approx(base.loss.item(), rel=1e-5)


def test_padding_frames_are_ignored():
    objective = _objective()
    student, mask = _student(seed=3), _mask()
    teacher = [torch.randn(3, 30, TEACHER_DIM) for _ in LAYERS]
    garbage = [torch.where(mask[..., None], t, -t) for t in teacher]
    assert objective(student, garbage, mask).loss.item() == pytest.approx(objective(student, teacher, mask).loss.item())


def test_projections_learn_a_narrow_student_into_the_teacher_space():
    # teacher layer = a fixed linear map of the 8-d student; only the 8 -> 24 bottlenecks train
    objective = _objective()
    g = torch.Generator().manual_seed(4)
    maps = [torch.randn(STUDENT_DIM, TEACHER_DIM, generator=g) for _ in LAYERS]
    student, mask = _student(seed=5), _mask()
    teacher = [s @ m for s, m in zip(student, maps)]
    optimizer = torch.optim.Adam(objective.parameters(), lr=0.05)
    first = objective(student, teacher, mask).loss.item()
    for _ in range(150):
        optimizer.zero_grad()
        loss = objective(student, teacher, mask).loss
        loss.backward()
        optimizer.step()
    assert first > 0.3 and loss.item() < 0.01


def test_objective_owns_one_bias_free_projection_per_layer():
    objective = _objective()
    assert [tuple(p.shape) for p in objective.parameters()] == [(TEACHER_DIM, STUDENT_DIM)] * len(LAYERS)
    out = objective(_student(), [torch.randn(3, 30, TEACHER_DIM) for _ in LAYERS], _mask())
    assert set(out.terms) == {"cos_distance"} | {f"cos_distance/layer{i}" for i in LAYERS}


def test_wider_student_than_teacher_is_refused():
    with pytest.raises(ValueError, match="expands"):
        build_objective("cosine_bottleneck", {}, 32, TEACHER_DIM, LAYERS)
