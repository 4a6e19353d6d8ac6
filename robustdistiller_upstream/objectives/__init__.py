"""Distillation objectives: how student outputs are pulled towards teacher hidden states.

Plug-in interface. An objective is a ``DistillationObjective`` subclass registered in ``OBJECTIVES`` under the
name a recipe selects (``objective.name``); its options come from the recipe's ``objective.options`` mapping,
built into the dataclass named by the class attribute ``config_class`` (unknown keys are errors). Objectives may
own parameters (projections...): they are trained with the student and dropped at export.

``forward(student, teacher, frame_mask)``:

- ``student``: one tensor per distilled teacher layer, each (batch, frames, student_dim) (the student's prediction
  heads, or whatever the runner feeds);
- ``teacher``: the matching teacher hidden states, each (batch, frames, teacher_dim), no gradient;
- ``frame_mask``: (batch, frames) bool, True on valid (non-padded) frames.

It returns ``ObjectiveOutput(loss, terms)``: ``loss`` a scalar to minimise, ``terms`` detached scalars for the
logs, named ``<term>`` for totals and ``<term>/layer<id>`` per teacher layer.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from robustdistiller_upstream.config import from_dict
from robustdistiller_upstream.errors import ConfigError
# the built-in objectives register themselves in OBJECTIVES on import
from robustdistiller_upstream.objectives import correlation, cosine_bottleneck, layerwise  # noqa: F401
from robustdistiller_upstream.objectives.base import (OBJECTIVES, DistillationObjective, ObjectiveOutput, masked_mean,
                                                      register)


def build_objective(
    name: str, options: Mapping[str, Any], student_dim: int, teacher_dim: int, layer_ids: Sequence[int]
) -> DistillationObjective:
    """The objective ``name`` with its config built from ``options`` (errors name ``objective.options``)."""
    if name not in OBJECTIVES:
        raise ConfigError(f"objective.name: unknown objective {name!r}; known: {sorted(OBJECTIVES)}")
    cls = OBJECTIVES[name]
    config = from_dict(cls.config_class, options, source=f"objective.options ({name})")
    return cls(config, student_dim, teacher_dim, layer_ids)


__all__ = ["OBJECTIVES", "DistillationObjective", "ObjectiveOutput", "build_objective", "masked_mean", "register"]
