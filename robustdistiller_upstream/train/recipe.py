"""Pretraining as a recipe of the loop (``train/runner.py``): one stage, the student + objective (+ enhancement
head) in ``DistillationTask``, s3prl's optimizer (``train/optim.py``), a DistilHuBERT-format student checkpoint
beside every resume file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from robustdistiller_upstream.checkpoint import save_student_checkpoint
from robustdistiller_upstream.config import to_dict
from robustdistiller_upstream.enhance import EnhancementHead
from robustdistiller_upstream.errors import TrainingError
from robustdistiller_upstream.model import StudentModel
from robustdistiller_upstream.objectives import build_objective
from robustdistiller_upstream.teacher import Teacher, init_student_from_teacher
from robustdistiller_upstream.train.config import PretrainConfig
from robustdistiller_upstream.train.data import Batch
from robustdistiller_upstream.train.optim import build_s3prl_optimizer
from robustdistiller_upstream.train.stage import Stage
from robustdistiller_upstream.train.task import DistillationTask


class PretrainRecipe:
    """``robustdistiller pretrain``: ``run.total_steps`` steps of (robust) distillation."""

    stages = ("pretrain",)

    def __init__(self, config: PretrainConfig) -> None:
        self.config = config

    def build(self, device: torch.device) -> Teacher:
        config = self.config
        self.teacher = Teacher(config.teacher, config.student.pred_layer_id).to(device)
        self.teacher.train(config.teacher.dropout)  # the reference runner's .train() reaches the teacher too
        student = StudentModel(config.student)
        if config.student_init:
            init_student_from_teacher(student, self.teacher.upstream)
        objective = build_objective(config.objective.name, config.objective.options, config.student.final_dim,
                                    self.teacher.dim, config.student.pred_layer_id)
        head = EnhancementHead(config.enhance, config.student.extractor_dim) if config.enhance.enabled else None
        self.task = DistillationTask(student, objective, head, config.enhance.weight).to(device)
        return self.teacher

    def stage_steps(self, index: int) -> int:
        return self.config.run.total_steps

    def stage(self, index: int, saved: Optional[dict[str, Any]]) -> Stage:
        optim = self.config.optim
        optimizer, scheduler = build_s3prl_optimizer(self.task, optim, self.config.run.total_steps)
        return Stage("pretrain", self.config.run.total_steps, self.task, optimizer, scheduler,
                     list(self.task.parameters()), optim.clip_grad_norm, optim.accumulate)

    def batch(self, batch: Batch) -> Batch:
        return batch

    def targets(self, clean: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        return self.teacher(clean, lengths)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def check_folder(self, exp_dir: Path, resume: bool) -> None:
        if not resume and list(exp_dir.glob("student-step*.ckpt")):
            raise TrainingError(f"{exp_dir} already holds checkpoints: pass --resume or pick another -n name")

    def check_resume(self, state: dict[str, Any], path: Path) -> None:
        if "last_lr" not in state["scheduler"]:  # torch AdamW + LambdaLR, before the reference optimizer (issue 14)
            raise TrainingError(f"{path}: written with the earlier optimizer (torch AdamW, 1e-6 decay on every "
                                f"parameter), not the reference's (docs/fidelity.md): resume it with the "
                                f"robustdistiller version that wrote it, or start a new run (-n another name)")

    def save(self, exp_dir: Path, step: int) -> None:
        extra = {"teacher": to_dict(self.config.teacher), "recipe": to_dict(self.config), "step": step}
        save_student_checkpoint(exp_dir / f"student-step{step}.ckpt", self.task.student, extra)

    def end_stage(self, index: int, exp_dir: Path, main: bool) -> Optional[Path]:
        return exp_dir / f"student-step{self.config.run.total_steps}.ckpt"
