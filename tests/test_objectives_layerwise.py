"""Layer-wise L1 + cosine objective (DistilHuBERT / RobustDistiller, DESIGN 1) and the objective registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.objectives import OBJECTIVES, build_objective


def _inputs(batch=3, frames=7, dim=5, layers=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    student = [torch.randn(batch, frames, dim, generator=g) for _ in range(layers)]
    teacher = [torch.randn(batch, frames, dim, generator=g) for _ in range(layers)]
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[2, 4:] = False
    return student, teacher, mask


def test_matches_the_formula_over_valid_frames():
    student, teacher, mask = _inputs()
    out = build_objective("layerwise", {"l1_weight": 1.0, "cos_weight": 0.5}, 5, 5, [4, 8])(student, teacher, mask)
    expected_l1, expected_cos = [], []
    for s, t in zip(student, teacher):
        s, t = s[mask], t[mask]  # (valid frames, dim)
        expected_l1.append((s - t).abs().mean())
        expected_cos.append(-F.logsigmoid(F.cosine_similarity(s, t, dim=-1)).mean())
    l1, cos = torch.stack(expected_l1).mean(), torch.stack(expected_cos).mean()
    torch.testing.assert_close(out.loss, l1 + 0.5 * cos)
    torch.testing.assert_close(out.terms["l1/layer8"], expected_l1[1])
    torch.testing.assert_close(out.terms["cos"], cos)


def test_padded_frames_do_not_count_and_gradients_flow():
    student, teacher, mask = _inputs()
    student = [s.requires_grad_() for s in student]
    objective = build_objective("layerwise", {}, 5, 5, [1, 2])
    out = objective(student, teacher, mask)
    out.loss.backward()
    assert student[0].grad[2, 4:].abs().sum() == 0 and student[0].grad[2, :4].abs().sum() > 0
    changed = [s.detach().clone() for s in student]
    changed[0][2, 4:] = 1e6
    torch.testing.assert_close(objective(changed, teacher, mask).loss, out.loss)


def test_identical_inputs_reach_the_minimum():
    student, _, mask = _inputs()
    out = build_objective("layerwise", {}, 5, 5, [1, 2])(student, student, mask)
    assert float(out.terms["l1"]) == 0.0
    torch.testing.assert_close(out.terms["cos"], -F.logsigmoid(torch.tensor(1.0)))


def test_registry_and_clear_errors():
    assert "layerwise" in OBJECTIVES
    with pytest.raises(ConfigError, match="unknown objective 'nope'"):
        build_objective("nope", {}, 5, 5, [1])
    with pytest.raises(ConfigError, match="objective.options.*l2_weight"):
        build_objective("layerwise", {"l2_weight": 1.0}, 5, 5, [1])
    with pytest.raises(ValueError, match="student width 4 != teacher width 5"):
        build_objective("layerwise", {}, 4, 5, [1])
    student, teacher, mask = _inputs(layers=2)
    with pytest.raises(ValueError, match="expected 3 student and teacher tensors"):
        build_objective("layerwise", {}, 5, 5, [1, 2, 3])(student, teacher, mask)
