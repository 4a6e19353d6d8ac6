"""Correlation-metric distillation (arXiv 2312.12153): the issue's property tests plus exactness of the statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.objectives import build_objective
from robustdistiller_upstream.objectives.correlation import auto_self_weight, pool_segments

LAYERS = [4, 8]
DIM = 12
MODES = ["batch", "frames"]


def _objective(**options):
    return build_objective("correlation", options, DIM, DIM, LAYERS)


def _features(batch: int = 6, frames: int = 50, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(DIM, DIM, generator=g)  # correlated dimensions, as real features are
    return [torch.randn(batch, frames, DIM, generator=g) @ mixing + 3.0 for _ in LAYERS]


def _whitened(batch: int, frames: int, seed: int = 0) -> torch.Tensor:
    """(batch, frames, DIM) whose dimensions are exactly uncorrelated over all batch x frames samples."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch * frames, DIM, generator=g, dtype=torch.float64)
    x = x - x.mean(0)
    q, _ = torch.linalg.qr(x)  # orthonormal, zero-mean columns
    return (q * (batch * frames - 1) ** 0.5).reshape(batch, frames, DIM).float()


def _mask(batch: int, frames: int) -> torch.Tensor:
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[1, frames - 10 :] = False
    mask[3, frames - 4 :] = False
    return mask


def test_identical_decorrelated_features_give_zero_correlation_loss():
    # decorrelated teacher: the identity is reachable, so student == teacher is the exact minimum (0)
    batch, frames = 4, 60
    teacher = [_whitened(batch, frames, seed=i) for i in range(len(LAYERS))]
    mask = torch.ones(batch, frames, dtype=torch.bool)
    out = _objective(correlate_over="frames", self_weight=1.0)(teacher, teacher, mask)
    for name in ("on_diag", "off_diag", "self_corr"):
        assert float(out.terms[name]) < 1e-6, (name, out.terms[name])
    # what remains is the cosine term at its own minimum, -log sigmoid(1)
    assert float(out.loss) == pytest.approx(float(-F.logsigmoid(torch.tensor(1.0))), abs=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_identical_features_give_minimal_diagonal_term(mode):
    teacher = _features()
    out = _objective(correlate_over=mode)(teacher, teacher, _mask(6, 50))
    assert float(out.terms["on_diag"]) < 1e-6
    assert float(out.terms["cos"]) == pytest.approx(float(-F.logsigmoid(torch.tensor(1.0))), abs=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_invariant_to_per_dimension_scale_and_offset(mode):
    objective = _objective(correlate_over=mode, cos_weight=0.0)
    student, teacher, mask = _features(seed=1), _features(seed=2), _mask(6, 50)
    g = torch.Generator().manual_seed(3)
    scales = torch.rand(DIM, generator=g) * 50 + 0.01  # positive, 0.01 .. 50
    offsets = torch.randn(DIM, generator=g) * 10
    base = objective(student, teacher, mask)
    scaled = objective([s * scales + offsets for s in student], teacher, mask)
    assert float(scaled.loss) == pytest.approx(float(base.loss), rel=1e-4)
    assert float(base.loss) > 1.0  # not trivially zero


@pytest.mark.parametrize("mode", MODES)
def test_shuffling_student_dimensions_raises_loss(mode):
    objective = _objective(correlate_over=mode)
    teacher, mask = _features(seed=4), _mask(6, 50)
    g = torch.Generator().manual_seed(5)
    student = [t + 0.3 * torch.randn(t.shape, generator=g) for t in teacher]  # a good student
    perm = torch.randperm(DIM, generator=g)
    assert not torch.equal(perm, torch.arange(DIM))
    aligned = objective(student, teacher, mask)
    shuffled = objective([s[..., perm] for s in student], teacher, mask)
    assert float(shuffled.terms["on_diag"]) > float(aligned.terms["on_diag"]) + 1.0
    assert float(shuffled.loss) > float(aligned.loss) + 1.0


def test_auto_weight_on_constructed_example():
    # the rule: w_sc = L_cc / L_sc (stop-gradient) -> the weighted self term equals the cross term
    assert float(auto_self_weight(torch.tensor(3.0), torch.tensor(12.0))) == pytest.approx(0.25)
    cross = torch.tensor(3.0, requires_grad=True)
    self_term = torch.tensor(12.0, requires_grad=True)
    weight = auto_self_weight(cross, self_term)
    (weight * self_term).backward()
    assert cross.grad is None and float(self_term.grad) == pytest.approx(0.25)  # weight is a constant


@pytest.mark.parametrize("mode", MODES)
def test_auto_weight_balances_the_terms_inside_the_objective(mode):
    objective = _objective(correlate_over=mode, cos_weight=0.0, off_diagonal_weight=0.01)
    out = objective(_features(seed=6), _features(seed=7), _mask(6, 50))
    cross = out.terms["on_diag/layer4"] + 0.01 * out.terms["off_diag/layer4"]
    weighted_self = out.terms["self_weight/layer4"] * out.terms["self_corr/layer4"]
    assert float(weighted_self) == pytest.approx(float(cross), rel=1e-5)
    fixed = _objective(correlate_over=mode, cos_weight=0.0, off_diagonal_weight=0.01, self_weight=0.0)
    out_fixed = fixed(_features(seed=6), _features(seed=7), _mask(6, 50))
    assert float(out.loss) == pytest.approx(2 * float(out_fixed.loss), rel=1e-5)


def test_frames_mode_matches_numpy_correlation():
    student, teacher, mask = _features(seed=8), _features(seed=9), _mask(6, 50)
    out = _objective(correlate_over="frames", self_weight=1.0, off_diagonal_weight=1.0, eps=0.0)(student, teacher, mask)
    s = student[0][mask].double().numpy()
    t = teacher[0][mask].double().numpy()
    cross = np.corrcoef(s.T, t.T)[:DIM, DIM:]  # Pearson correlation of every (student dim, teacher dim) pair
    self_corr = np.corrcoef(s.T)
    off = ~np.eye(DIM, dtype=bool)
    assert float(out.terms["on_diag/layer4"]) == pytest.approx(((1 - np.diag(cross)) ** 2).sum(), rel=1e-4)
    assert float(out.terms["off_diag/layer4"]) == pytest.approx((cross[off] ** 2).sum(), rel=1e-4)
    assert float(out.terms["self_corr/layer4"]) == pytest.approx((self_corr[off] ** 2).sum(), rel=1e-4)


def test_batch_mode_correlates_each_segment_over_the_batch():
    batch, frames, segments = 5, 40, 4
    student, teacher = _features(batch, frames, seed=10), _features(batch, frames, seed=11)
    mask = torch.ones(batch, frames, dtype=torch.bool)
    out = _objective(correlate_over="batch", pool_frames=segments, eps=0.0)(student, teacher, mask)
    s = student[0].double().numpy().reshape(batch, segments, frames // segments, DIM).mean(2)
    t = teacher[0].double().numpy().reshape(batch, segments, frames // segments, DIM).mean(2)
    per_segment = [np.diag(np.corrcoef(s[:, p].T, t[:, p].T)[:DIM, DIM:]) for p in range(segments)]
    expected = np.mean([((1 - diagonal) ** 2).sum() for diagonal in per_segment])
    assert float(out.terms["on_diag/layer4"]) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_padding_frames_are_ignored(mode):
    student, teacher, mask = _features(seed=12), _features(seed=13), _mask(6, 50)
    objective = _objective(correlate_over=mode)
    base = objective(student, teacher, mask)
    garbage = [torch.where(mask[..., None], s, torch.full_like(s, 1e4)) for s in student]
    assert float(objective(garbage, teacher, mask).loss) == pytest.approx(float(base.loss), rel=1e-5)


def test_pool_segments_averages_valid_frames_only():
    x = torch.arange(10, dtype=torch.float32).reshape(1, 10, 1).repeat(2, 1, 1)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    pooled = pool_segments(x, mask, 3)[..., 0]
    # 10 frames -> segments {0,1,2,3}, {4,5,6}, {7,8,9}; 6 valid frames -> {0,1}, {2,3}, {4,5}
    assert pooled.tolist() == [[1.5, 5.0, 8.0], [0.5, 2.5, 4.5]]


def test_gradients_reach_the_student():
    student = [s.requires_grad_() for s in _features(seed=14)]
    _objective()(student, _features(seed=15), _mask(6, 50)).loss.backward()
    assert all(s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0 for s in student)


def test_bad_options_and_inputs_are_named():
    with pytest.raises(ConfigError, match="self_weight"):
        _objective(self_weight="sometimes")
    with pytest.raises(ConfigError, match="correlate_over"):
        _objective(correlate_over="time")
    with pytest.raises(ValueError, match="final_dim"):
        build_objective("correlation", {}, 384, 768, LAYERS)
    one = [f[:1] for f in _features()]
    with pytest.raises(ValueError, match="at least 2 utterances"):
        _objective(correlate_over="batch")(one, one, torch.ones(1, 50, dtype=torch.bool))
    assert torch.isfinite(_objective(correlate_over="frames")(one, one, torch.ones(1, 50, dtype=torch.bool)).loss)


def test_statistics_stay_fp32_under_autocast():
    student, teacher, mask = _features(seed=16), _features(seed=17), _mask(6, 50)
    objective = _objective(correlate_over="frames", cos_weight=0.0)
    reference = objective(student, teacher, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = objective(student, teacher, mask)
    assert autocast.loss.dtype == torch.float32
    assert float(autocast.loss) == pytest.approx(float(reference.loss), rel=1e-6)
