"""Cosine-distance alignment through a linear inverted bottleneck (Luong, Heikkinen, Drossos, Virtanen, "Knowledge
distillation for speech denoising by latent representation alignment with cosine distance", AES 158th Convention,
2025, arXiv 2505.03442).

There, a small denoising autoencoder (student) learns from a large one (teacher): the student's latent goes through a
linear inverted bottleneck -- a linear layer that *expands* it to the teacher's latent width -- and is aligned to
the teacher's latent with the cosine distance, so the student is bound neither to the teacher's feature width nor to
its feature scale and distribution, only to directions. Here, per distilled teacher layer ``l``::

    u_l = W_l s_l                         W_l: (teacher_dim x student_dim), no bias
    L   = mean_l mean_{valid frames} (1 - cos(u_l, t_l))

``s_l`` (batch, frames, student_dim) is what the runner feeds for layer ``l`` (the prediction heads, whose
``final_dim`` may be the student's own width, e.g. 384 or 256), ``t_l`` (batch, frames, teacher_dim) the teacher's
hidden state. ``W_l`` has no bias on purpose: then ``cos(W_l (a s), t) = cos(W_l s, t)`` for every ``a > 0``, the
loss is invariant to the student's feature scale (a bias would break that). ``W_l`` starts as a semi-orthogonal
matrix (``W^T W = I``) so the bottleneck initially preserves the student's geometry. The projections are trained
with the student and are not part of the exported student (they live in the objective, not in the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustdistiller_upstream.objectives.base import DistillationObjective, ObjectiveOutput, masked_mean, register


@dataclass
class CosineBottleneckConfig:
    weight: float = 1.0  #: multiplies the cosine distance


def cosine_distance(u: Tensor, t: Tensor, frame_mask: Tensor) -> Tensor:
    """``mean(1 - cos(u, t))`` over valid frames; (batch, frames, dim) x2, (batch, frames) bool -> scalar in [0, 2]."""
    return masked_mean(1.0 - F.cosine_similarity(u, t, dim=-1), frame_mask)


@register("cosine_bottleneck")
class CosineBottleneckObjective(DistillationObjective):
    """One bias-free linear up-projection per distilled layer, then cosine distance (arXiv 2505.03442)."""

    config_class = CosineBottleneckConfig

    def __init__(self, config: CosineBottleneckConfig, student_dim: int, teacher_dim: int, layer_ids) -> None:
        super().__init__(config, student_dim, teacher_dim, layer_ids)
        if student_dim > teacher_dim:
            raise ValueError(
                f"cosine_bottleneck objective: student width {student_dim} > teacher width {teacher_dim}; an "
                "inverted bottleneck expands the student, it does not compress it"
            )
        self.projections = nn.ModuleList(nn.Linear(student_dim, teacher_dim, bias=False) for _ in self.layer_ids)
        for projection in self.projections:
            nn.init.orthogonal_(projection.weight)

    def forward(self, student: list[Tensor], teacher: list[Tensor], frame_mask: Tensor) -> ObjectiveOutput:
        self.check_inputs(student, teacher, frame_mask)
        terms: dict[str, Tensor] = {}
        distances = []
        for layer, projection, s, t in zip(self.layer_ids, self.projections, student, teacher):
            dtype = projection.weight.dtype
            distance = cosine_distance(projection(s.to(dtype)), t.to(dtype), frame_mask)
            distances.append(distance)
            terms[f"cos_distance/layer{layer}"] = distance.detach()
        mean = torch.stack(distances).mean()
        terms["cos_distance"] = mean.detach()
        return ObjectiveOutput(self.config.weight * mean, terms)
