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


AUTHORS = {"correlate_over": "batch", "pool_frames": 150, "diag_scale": 10.0, "off_diag_scale": 100.0,
           "self_scale": 50000.0, "off_diagonal_weight": 5e-5, "self_weight": 5e-6, "cos_weight": 1.0,
           "cos_over": "segments"}


def _authors_loss(pred: torch.Tensor, target: torch.Tensor, lam: float, lam_sc: float) -> torch.Tensor:
    """FabianRitter/speech-ssl-merging ``BarlowTwinsLoss_old`` (4-D path, self_correlation on) plus the cosine
    term of their ``compute_loss``, written out on pooled (batch, layers, segments, dim) tensors: each
    (layer, segment) standardised over the batch, terms divided by 10 / 100 / 50000, means over (layer, segment)."""
    z1 = (pred - pred.mean(0, keepdim=True)) / (pred.std(0, keepdim=True) + 1e-5)
    z2 = (target - target.mean(0, keepdim=True)) / (target.std(0, keepdim=True) + 1e-5)
    n = pred.shape[0] - 1
    cross = (z1.unsqueeze(-1) * z2.unsqueeze(-2)).sum(0) / n  # (layers, segments, dim, dim)
    self_c = (z1.unsqueeze(-1) * z1.unsqueeze(-2)).sum(0) / n
    eye = torch.eye(pred.shape[-1], dtype=torch.bool)
    on = (torch.diagonal(cross, dim1=-2, dim2=-1) - 1).pow(2).sum(-1) / 10
    off = cross.masked_fill(eye, 0).pow(2).sum((-2, -1)) / 100
    self_off = self_c.masked_fill(eye, 0).pow(2).sum((-2, -1)) / 50000
    cos = -F.logsigmoid(F.cosine_similarity(pred, target, dim=-1))
    return (on + lam * off + lam_sc * self_off).mean() + cos.mean()


def test_authors_constants_reproduce_their_loss():
    """With every utterance 150 frames long, pooling to 150 segments is the identity on both sides."""
    student = _features(batch=5, frames=150, seed=3)
    teacher = [s + torch.randn_like(s) for s in student]
    objective = build_objective("correlation", AUTHORS, DIM, DIM, LAYERS)
    out = objective(student, teacher, torch.ones(5, 150, dtype=torch.bool))
    expected = _authors_loss(torch.stack(student, 1), torch.stack(teacher, 1), 5e-5, 5e-6)
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
    total = out.terms["on_diag"] + 5e-5 * out.terms["off_diag"] + 5e-6 * out.terms["self_corr"] + out.terms["cos"]
    torch.testing.assert_close(out.loss, total, rtol=1e-5, atol=1e-6)


def test_segment_cosine_needs_batch_mode():
    with pytest.raises(ConfigError, match="cos_over"):
        _objective(correlate_over="frames", cos_over="segments")
