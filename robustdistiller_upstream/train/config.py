"""The pretraining recipe: one dataclass tree, filled from ``pretrain/*.yaml`` and ``-o key=value`` overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from robustdistiller_upstream.augment.config import BankConfig, ContaminationConfig
from robustdistiller_upstream.enhance import EnhanceConfig
from robustdistiller_upstream.model import StudentConfig
from robustdistiller_upstream.teacher import TeacherConfig
from robustdistiller_upstream.train.data import DataConfig


@dataclass
class ObjectiveConfig:
    """``name`` selects a registered objective (``robustdistiller_upstream.objectives.OBJECTIVES``); ``options``
    fill its own config dataclass."""

    name: str = "layerwise"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DenoisingConfig:
    """Feature-denoising distillation: the student sees a contaminated copy, the teacher the clean input.
    Off = DistilHuBERT."""

    enabled: bool = False
    contamination: ContaminationConfig = field(default_factory=ContaminationConfig)
    banks: BankConfig = field(default_factory=BankConfig)


@dataclass
class ParamGroupConfig:
    """Parameters whose name contains one of ``match`` (``named_parameters()`` of the task: ``student.``,
    ``head.``, ``objective.`` prefixes) get ``weight_decay``."""

    name: str
    match: list[str]
    weight_decay: float


def s3prl_param_groups() -> list[ParamGroupConfig]:
    """s3prl's ``get_grouped_parameters``: no decay on these names (the rest: ``OptimConfig.weight_decay``)."""
    return [ParamGroupConfig("no_decay", ["bias", "LayerNorm.bias", "LayerNorm.weight"], 0.0)]


@dataclass
class OptimConfig:
    """s3prl's ``AdamW_with_schedule`` (``train/optim.py``): Adam with the decay inside the step, linear warmup
    over ``warmup`` of ``run.total_steps`` then linear decay to 0. ``weight_decay`` is the default group's (0.01 in
    s3prl's grouping: its YAML's ``weight_decay: 1e-6`` is overridden by the groups); ``groups`` come first."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    weight_decay: float = 0.01
    groups: list[ParamGroupConfig] = field(default_factory=s3prl_param_groups)
    warmup: float = 0.07
    clip_grad_norm: float = 15.0
    accumulate: int = 1


@dataclass
class RunConfig:
    """``amp``: autocast dtype of the student (``fp16`` adds a gradient scaler). ``device``: ``auto`` = cuda when
    available. Intervals in optimizer steps (0: never). ``max_bad_steps``: consecutive non-finite steps before
    the run stops."""

    total_steps: int = 200000
    device: str = "auto"
    amp: Literal["none", "bf16", "fp16"] = "fp16"
    compile: bool = False
    seed: int = 0
    log_every: int = 50
    save_every: int = 10000
    max_keep: int = 3  #: newest checkpoints kept (0: all)
    max_bad_steps: int = 10
    threads: int = 0  #: torch intra-op threads on CPU; 0 = torch's default


@dataclass
class PretrainConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    student_init: bool = True  #: copy CNN, projection and layers from the teacher (DESIGN 1)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    denoising: DenoisingConfig = field(default_factory=DenoisingConfig)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    description: Optional[str] = None
