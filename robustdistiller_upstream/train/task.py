"""What pretraining optimises: student + objective (+ enhancement head) in one module, so DDP wraps one thing."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from robustdistiller_upstream.enhance import EnhancementHead, EnhancementOutput, enhancement_loss
from robustdistiller_upstream.model import StudentModel
from robustdistiller_upstream.objectives import DistillationObjective


class DistillationTask(nn.Module):
    """``forward(noisy, lengths, targets, clean) -> (loss, terms, enhancement output or None)``.

    ``noisy``/``clean``: (batch, samples) student input and clean reference; ``targets``: teacher hidden states,
    each (batch, frames, teacher_dim), already cut to the frames the student produces.
    """

    def __init__(self, student: StudentModel, objective: DistillationObjective,
                 head: Optional[EnhancementHead] = None, head_weight: float = 0.0) -> None:
        super().__init__()
        self.student = student
        self.objective = objective
        self.head = head
        self.head_weight = head_weight

    def forward(self, noisy: Tensor, lengths: Tensor, targets: list[Tensor],
                clean: Tensor) -> tuple[Tensor, dict[str, Tensor], Optional[EnhancementOutput]]:
        out = self.student(noisy, lengths)
        frames = targets[0].shape[1]
        predictions = out.predictions[:, :, :frames]  # (batch, n_pred, frames, final_dim)
        frame_mask = torch.arange(frames, device=noisy.device) < out.frame_lengths[:, None]
        distill = self.objective(list(predictions.unbind(1)), targets, frame_mask)
        terms = {"distill": distill.loss.detach(), **distill.terms}
        loss = distill.loss
        enhanced = None
        if self.head is not None:
            enhanced = self.head(out.features, noisy, lengths)
            head_loss = enhancement_loss(self.head, enhanced, clean, lengths)
            terms["enhance"] = head_loss.detach()
            loss = loss + self.head_weight * head_loss
        terms["loss"] = loss.detach()
        return loss, terms, enhanced
