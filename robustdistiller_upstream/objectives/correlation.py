"""Correlation-metric distillation (Ritter-Gutierrez et al., "Noise robust distillation of self-supervised speech
models via correlation metrics", arXiv 2312.12153, 2023).

The student (fed noisy speech) is pulled towards the teacher (fed clean speech) through correlation matrices of
standardised representations instead of a frame-wise distance:

- cross-correlation, pushed towards the identity (Barlow Twins' redundancy-reduction form, Zbontar et al. 2021):
  ``C = Zs^T Zt / (n - 1)``, ``L_cc = on_diag + lambda_off * off_diag`` with
  ``on_diag = sum_i (1 - C_ii)^2 / diag_scale`` and ``off_diag = sum_{i != j} C_ij^2 / off_diag_scale``;
- student self-correlation, whose off-diagonal is minimised (decorrelated student dimensions, the paper's noise
  robustness term): ``S = Zs^T Zs / (n - 1)``, ``L_sc = self_corr = sum_{i != j} S_ij^2 / self_scale``;
- ``L = scale * (L_cc + w_sc * L_sc) + cos_weight * mean(-log sigmoid(cos(s, t)))`` per distilled layer, averaged over
  layers. The cosine term is DistilHuBERT's, which the authors' configurations add on top (``cosine_loss: 1.0``);
  ``cos_over="segments"`` takes it over the pooled segments, as the authors' code (their pooling precedes every
  loss), ``"frames"`` over the valid frames.

The three divisors are the first author's (``BarlowTwinsLoss_old``: ``diag_scale`` 10, ``off_diag_cross_cor_scale``
100, ``off_diag_self_cor_scale`` 50000; 1 here by default); ``pretrain/rd_correlation.yaml`` sets them with their
main model's lambda_off = 5e-5 and w_sc = 5e-6 (docs/objectives.md has the magnitudes this gives).

``Z`` is each feature dimension standardised to zero mean and unit (unbiased) standard deviation over the ``n``
samples being correlated. Which samples those are (``correlate_over``):

- ``"batch"``: the first author's public implementation (FabianRitter/speech-ssl-merging, ``BarlowTwinsLoss_old``,
  "ported from the robust-superb codebase"; released with their 2025 papers, which use it): each utterance's frames
  are average-pooled to ``pool_frames`` segments (150 there; here over valid frames only, there over the padded
  tensor), then for every segment index ``p`` the ``batch`` vectors are standardised over the batch and give one
  ``d x d`` matrix; terms are averaged over the ``pool_frames`` matrices. Needs a batch of at least 2 utterances;
  costs ``pool_frames * d^2`` memory per matrix.
- ``"frames"``: every valid frame of the batch is one sample (batch-time normalisation, one ``d x d`` matrix per
  layer): cheap, and defined for a batch of one utterance.

Weighting of the two correlation terms (``self_weight``): a number, or ``"auto"``. The paper proposes a heuristic that
weighs the two terms automatically; its text was not reachable from this project and the authors' code holds only
an unfinished, disabled SNR map (docs/objectives.md), so ``"auto"`` is our rule, documented in
:func:`auto_self_weight` -- balance the self-correlation term to the magnitude of the cross-correlation term.

Padding frames (``frame_mask`` False) never enter a statistic. Student and teacher widths must match (the prediction
heads' ``final_dim``); a narrower student distils through its 768-d heads or through ``cosine_bottleneck``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from robustdistiller_upstream.objectives.base import DistillationObjective, ObjectiveOutput, masked_mean, register


@dataclass
class CorrelationConfig:
    correlate_over: Literal["batch", "frames"] = "batch"
    pool_frames: int = 150  #: segments per utterance for correlate_over="batch" (the authors' value)
    off_diagonal_weight: float = 5e-3  #: lambda_off on the cross-correlation off-diagonal (Barlow Twins' default)
    self_weight: Union[float, Literal["auto"]] = "auto"  #: w_sc on the student self-correlation term
    scale: float = 1.0  #: multiplies L_cc + w_sc * L_sc
    diag_scale: float = 1.0  #: divides the cross-correlation diagonal sum (the authors': 10)
    off_diag_scale: float = 1.0  #: divides the cross-correlation off-diagonal sum (the authors': 100)
    self_scale: float = 1.0  #: divides the self-correlation off-diagonal sum (the authors': 50000)
    cos_weight: float = 1.0  #: DistilHuBERT cosine term added on top; 0 disables it
    cos_over: Literal["frames", "segments"] = "frames"  #: segments: the pooled ones (correlate_over="batch" only)
    eps: float = 1e-5  #: added to the standard deviation

    def __post_init__(self) -> None:
        if self.pool_frames < 1:
            raise ValueError(f"pool_frames must be >= 1, got {self.pool_frames}")
        if not isinstance(self.self_weight, str) and self.self_weight < 0:
            raise ValueError(f"self_weight must be >= 0 or 'auto', got {self.self_weight}")
        if isinstance(self.self_weight, str) and self.self_weight != "auto":
            raise ValueError(f"self_weight must be a number or 'auto', got {self.self_weight!r}")
        if min(self.diag_scale, self.off_diag_scale, self.self_scale) <= 0:
            raise ValueError("diag_scale, off_diag_scale and self_scale must be > 0")
        if self.cos_over == "segments" and self.correlate_over != "batch":
            raise ValueError("cos_over='segments' needs correlate_over='batch' (frames are not pooled otherwise)")


def standardise(x: Tensor, eps: float = 1e-5) -> Tensor:
    """(samples, ..., dim) -> each (..., dim) column standardised over ``samples`` (unbiased std + ``eps``)."""
    return (x - x.mean(0, keepdim=True)) / (x.std(0, keepdim=True) + eps)


def correlation(za: Tensor, zb: Tensor) -> Tensor:
    """Correlation matrices of standardised (samples, ..., dim_a) and (samples, ..., dim_b) -> (..., dim_a, dim_b)."""
    return torch.einsum("n...i,n...j->...ij", za, zb) / (za.shape[0] - 1)


def diagonal_term(c: Tensor) -> Tensor:
    """``sum_i (1 - C_ii)^2`` of (..., d, d) -> (...)."""
    return (1.0 - torch.diagonal(c, dim1=-2, dim2=-1)).pow(2).sum(-1)


def off_diagonal_term(c: Tensor) -> Tensor:
    """``sum_{i != j} C_ij^2`` of (..., d, d) -> (...)."""
    squares = c.pow(2)
    return squares.sum((-2, -1)) - torch.diagonal(squares, dim1=-2, dim2=-1).sum(-1)


def auto_self_weight(cross_term: Tensor, self_term: Tensor, eps: float = 1e-8) -> Tensor:
    """Self-correlation weight that balances the two correlation terms: ``w_sc = sg(L_cc) / sg(L_sc)``.

    With it ``w_sc * L_sc`` has the value of ``L_cc`` at every step, so neither term dominates whatever the width
    ``d``, the number of correlated samples or the stage of training (the off-diagonal sum grows as ``d^2`` while
    the diagonal one grows as ``d``). ``sg`` is stop-gradient: the weight is a number, not a path for gradients.
    Our rule in place of the paper's unread heuristic (see the module docstring). Example: ``L_cc = 3``,
    ``L_sc = 12`` -> ``w_sc = 0.25``.
    """
    return cross_term.detach() / self_term.detach().clamp_min(eps)


def pool_segments(x: Tensor, frame_mask: Tensor, segments: int) -> Tensor:
    """Average each utterance's valid frames into ``segments`` contiguous, near-equal segments.

    (batch, frames, dim), (batch, frames) bool -> (batch, segments, dim). Frame ``t`` of an utterance with ``n``
    valid frames goes to segment ``floor(t * segments / n)``, so every segment is non-empty when ``n >= segments``.
    """
    lengths = frame_mask.sum(1)  # (batch,)
    frames = torch.arange(x.shape[1], device=x.device)
    seg = torch.div(frames[None, :] * segments, lengths.clamp_min(1)[:, None], rounding_mode="floor")
    onehot = F.one_hot(seg.clamp_max(segments - 1), segments).to(x.dtype) * frame_mask[..., None].to(x.dtype)
    counts = onehot.sum(1).clamp_min(1.0)  # (batch, segments)
    return torch.einsum("btp,btd->bpd", onehot, x) / counts[..., None]


@register("correlation")
class CorrelationObjective(DistillationObjective):
    """Correlation-metric distillation (arXiv 2312.12153); formulas in the module docstring. No parameters."""

    config_class = CorrelationConfig
    same_width_reason = "the cross-correlation is pushed to an identity"

    def _samples(self, s: Tensor, t: Tensor, frame_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Student and teacher samples, not yet standardised: (n, d) for "frames", (batch, segments, d) for
        "batch"."""
        if self.config.correlate_over == "frames":
            s, t = s[frame_mask], t[frame_mask]
            if s.shape[0] < 2:
                raise ValueError("correlation objective: fewer than 2 valid frames in the batch")
        else:
            if s.shape[0] < 2:
                raise ValueError(
                    "correlation objective: correlate_over='batch' needs at least 2 utterances per batch; "
                    "use correlate_over='frames' for single-utterance batches"
                )
            segments = min(self.config.pool_frames, int(frame_mask.sum(1).min()))
            if segments < 1:
                raise ValueError("correlation objective: an utterance in the batch has no valid frame")
            s, t = pool_segments(s, frame_mask, segments), pool_segments(t, frame_mask, segments)
        return s, t

    def forward(self, student: list[Tensor], teacher: list[Tensor], frame_mask: Tensor) -> ObjectiveOutput:
        self.check_inputs(student, teacher, frame_mask)
        terms: dict[str, Tensor] = {}
        layer_losses = []
        sums: dict[str, list[Tensor]] = {"on_diag": [], "off_diag": [], "self_corr": [], "self_weight": [], "cos": []}
        for layer, s, t in zip(self.layer_ids, student, teacher):
            with torch.autocast(s.device.type, enabled=False):  # sums of d^2 products: fp32 even under fp16 AMP
                loss, values = self._layer_loss(s.float(), t.float(), frame_mask)
            layer_losses.append(loss)
            for name, value in values.items():
                sums[name].append(value.detach())
                terms[f"{name}/layer{layer}"] = value.detach()
        for name, values in sums.items():
            terms[name] = torch.stack(values).mean()
        return ObjectiveOutput(torch.stack(layer_losses).mean(), terms)

    def _layer_loss(self, s: Tensor, t: Tensor, frame_mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """One distilled layer: (loss, logged terms)."""
        cfg = self.config
        samples_s, samples_t = self._samples(s, t, frame_mask)
        zs, zt = standardise(samples_s, cfg.eps), standardise(samples_t, cfg.eps)
        cross = correlation(zs, zt)
        # means over the segment matrices ("batch"); one matrix ("frames")
        on_diag = diagonal_term(cross).mean() / cfg.diag_scale
        off_diag = off_diagonal_term(cross).mean() / cfg.off_diag_scale
        self_corr = off_diagonal_term(correlation(zs, zs)).mean() / cfg.self_scale
        cross_term = on_diag + cfg.off_diagonal_weight * off_diag
        weight = auto_self_weight(cross_term, self_corr) if cfg.self_weight == "auto" else s.new_tensor(cfg.self_weight)
        loss = cfg.scale * (cross_term + weight * self_corr)
        if cfg.cos_over == "segments":
            cos = (-F.logsigmoid(F.cosine_similarity(samples_s, samples_t, dim=-1))).mean()
        else:
            cos = masked_mean(-F.logsigmoid(F.cosine_similarity(s, t, dim=-1)), frame_mask)
        if cfg.cos_weight:
            loss = loss + cfg.cos_weight * cos
        terms = {"on_diag": on_diag, "off_diag": off_diag, "self_corr": self_corr, "self_weight": weight, "cos": cos}
        return loss, terms
