"""What a recipe plugs into the training loop (``train/runner.py``): the ``Recipe`` protocol and its ``Stage``.

The loop knows these two only; recipes (``train/recipe.py`` pretraining, ``prune/train.py`` RD-DPWavLM) implement
them, and whoever starts a run (the CLI, a cluster job) picks the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol

import torch
from torch import Tensor, nn

from robustdistiller_upstream.teacher import Teacher
from robustdistiller_upstream.train.data import Batch


@dataclass
class Stage:
    """One stage of a recipe: ``task`` (what DDP wraps) trained for ``steps`` optimizer steps.

    ``task(noisy, lengths, targets, clean, *inputs(step)) -> (loss, terms, enhancement output or None)``:
    ``noisy``/``clean`` (batch, samples), ``lengths`` (batch,), ``targets`` the teacher's hidden states, each
    (batch, frames, dim), cut to the frames the student produces; ``inputs(step)``: the recipe's extra arguments
    at (0-based, within the stage) step ``step``. ``task.student.frame_lengths`` gives the student's frame count;
    ``task.head``: the enhancement head or None (its metrics in the log). ``optimizer``: the task's parameter
    groups with their own learning rates; ``scheduler`` steps once per optimizer step. ``clip_params`` are
    clipped together to ``clip_norm``; ``after_backward`` runs on the accumulated gradients before they are
    unscaled and clipped (the Lagrangian multipliers' gradient ascent)."""

    name: str
    steps: int
    task: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    clip_params: list[Tensor]
    clip_norm: float
    accumulate: int = 1
    after_backward: Optional[Callable[[], None]] = None
    inputs: Callable[[int], tuple] = lambda step: ()


class Recipe(Protocol):
    """What a recipe plugs into the loop. ``config`` has the sections the loop reads: ``run`` (device, seed,
    threads, amp, compile, log_every, save_every, max_keep, max_bad_steps), ``data``, ``denoising``, ``enhance``
    and ``teacher`` (``max_frame_diff``, ``name``)."""

    config: Any
    stages: tuple[str, ...]

    def build(self, device: torch.device) -> Teacher:
        """Builds the teacher and the models on ``device`` (every rank the same weights); returns the teacher."""

    def stage_steps(self, index: int) -> int:
        """Optimizer steps of stage ``index``."""

    def stage(self, index: int, saved: Optional[dict[str, Any]]) -> Stage:
        """Stage ``index``; ``saved``: the recipe's ``state_dict()`` of the resume file it continues from."""

    def batch(self, batch: Batch) -> Batch:
        """The loader's batch as the recipe trains on it (e.g. cropped to its shortest utterance)."""

    def targets(self, clean: Tensor, lengths: Tensor) -> list[Tensor]:
        """The teacher's hidden states of ``clean`` (batch, samples); ``lengths`` on the host."""

    def state_dict(self) -> dict[str, Any]:
        """What the recipe adds to each resume file (plain data)."""

    def check_folder(self, exp_dir: Path, resume: bool) -> None:
        """Raises ``TrainingError`` when ``exp_dir`` holds a result this run must not overwrite."""

    def check_resume(self, state: dict[str, Any], path: Path) -> None:
        """Raises ``TrainingError`` when the resume file ``path`` cannot be continued by this version."""

    def save(self, exp_dir: Path, step: int) -> None:
        """Rank 0, beside each ``resume-step<step>.pt``: the recipe's own files ``*-step<step>.*``."""

    def end_stage(self, index: int, exp_dir: Path, main: bool) -> Optional[Path]:
        """After stage ``index``'s last step, on every rank (``main``: rank 0, which writes files); returns the
        stage's result file."""
