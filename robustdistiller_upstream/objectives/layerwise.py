"""Layer-wise L1 + cosine distillation (DistilHuBERT, Chang et al. 2022; RobustDistiller, DESIGN 1).

Per distilled layer: ``l1_weight * mean|s - t| + cos_weight * mean(-log sigmoid(cos(s, t)))``, means over valid
frames (and feature dims for L1), then averaged over layers. ``cos_type: raw`` uses ``-cos(s, t)`` instead
(DPHuBERT's ``cos_type=raw``, pyf98/DPHuBERT ``lightning.py`` ``DistillLoss``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from robustdistiller_upstream.objectives.base import DistillationObjective, ObjectiveOutput, masked_mean, register


@dataclass
class LayerwiseConfig:
    l1_weight: float = 1.0
    cos_weight: float = 1.0
    cos_type: Literal["log_sigmoid", "raw"] = "log_sigmoid"


@register("layerwise")
class LayerwiseObjective(DistillationObjective):
    """Student and teacher must have the same width (DistilHuBERT's prediction heads are teacher-sized)."""

    config_class = LayerwiseConfig
    same_width_reason = "L1 compares values dimension by dimension"

    def forward(self, student: list[Tensor], teacher: list[Tensor], frame_mask: Tensor) -> ObjectiveOutput:
        self.check_inputs(student, teacher, frame_mask)
        terms: dict[str, Tensor] = {}
        l1_layers, cos_layers = [], []
        for layer, s, t in zip(self.layer_ids, student, teacher):
            s, t = s.float(), t.float()
            l1 = masked_mean((s - t).abs().mean(-1), frame_mask)
            similarity = F.cosine_similarity(s, t, dim=-1)
            cos = masked_mean(-similarity if self.config.cos_type == "raw" else -F.logsigmoid(similarity), frame_mask)
            l1_layers.append(l1)
            cos_layers.append(cos)
            terms[f"l1/layer{layer}"] = l1.detach()
            terms[f"cos/layer{layer}"] = cos.detach()
        l1_mean = torch.stack(l1_layers).mean()
        cos_mean = torch.stack(cos_layers).mean()
        terms["l1"] = l1_mean.detach()
        terms["cos"] = cos_mean.detach()
        loss = self.config.l1_weight * l1_mean + self.config.cos_weight * cos_mean
        return ObjectiveOutput(loss, terms)
