"""The objectives' plug-in interface (the package docstring, ``objectives/__init__.py``, describes it): the base
class, the registry its subclasses join, and the frame-masked mean they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Sequence

from torch import Tensor, nn


@dataclass
class ObjectiveOutput:
    loss: Tensor  # scalar
    terms: dict[str, Tensor]  # detached scalars, for logging


class DistillationObjective(nn.Module):
    """Base of all objectives. Subclasses set ``config_class`` and implement ``forward``."""

    config_class: ClassVar[type]
    # why the student must be as wide as the teacher, or None when the objective bridges widths itself
    same_width_reason: ClassVar[Optional[str]] = None

    def __init__(self, config: Any, student_dim: int, teacher_dim: int, layer_ids: Sequence[int]) -> None:
        super().__init__()
        if self.same_width_reason is not None and student_dim != teacher_dim:
            raise ValueError(
                f"{type(self).__name__}: student width {student_dim} != teacher width {teacher_dim}; "
                f"{self.same_width_reason}: set student.final_dim to the teacher's width or pick an objective "
                "with a projection (cosine_bottleneck)"
            )
        self.config = config
        self.student_dim = student_dim
        self.teacher_dim = teacher_dim
        self.layer_ids = list(layer_ids)

    def forward(self, student: list[Tensor], teacher: list[Tensor], frame_mask: Tensor) -> ObjectiveOutput:
        raise NotImplementedError

    def check_inputs(self, student: list[Tensor], teacher: list[Tensor], frame_mask: Tensor) -> None:
        """Raises ValueError naming the mismatch when shapes do not fit the interface."""
        if len(student) != len(self.layer_ids) or len(teacher) != len(self.layer_ids):
            raise ValueError(
                f"{type(self).__name__}: expected {len(self.layer_ids)} student and teacher tensors "
                f"(layers {self.layer_ids}), got {len(student)} and {len(teacher)}"
            )
        for layer, s, t in zip(self.layer_ids, student, teacher):
            if s.shape[:2] != t.shape[:2] or s.shape[:2] != frame_mask.shape:
                raise ValueError(
                    f"{type(self).__name__}: layer {layer}: student {tuple(s.shape)}, teacher {tuple(t.shape)} and "
                    f"frame mask {tuple(frame_mask.shape)} disagree on (batch, frames)"
                )


# name -> DistillationObjective subclass; modules register themselves at import (``objectives/__init__.py``)
OBJECTIVES: dict[str, type[DistillationObjective]] = {}


def register(name: str):
    """Class decorator: ``@register("layerwise")`` adds the objective to ``OBJECTIVES``."""

    def add(cls: type[DistillationObjective]) -> type[DistillationObjective]:
        if name in OBJECTIVES and OBJECTIVES[name] is not cls:
            raise ValueError(f"objective {name!r} is registered twice")
        OBJECTIVES[name] = cls
        return cls

    return add


def masked_mean(values: Tensor, frame_mask: Tensor) -> Tensor:
    """Mean of (batch, frames) ``values`` over the frames where ``frame_mask`` is True."""
    mask = frame_mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)
