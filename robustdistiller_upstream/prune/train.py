"""RD-DPWavLM: DPHuBERT's joint distillation + structured pruning with the RobustDistiller recipe.

Stage 1 (``prune``): a gated copy of the teacher learns layer-to-layer distillation (student layer ``l``, through
an identity-initialised linear map, to teacher layer ``l``) while the Lagrangian controller drives its expected
sparsity to the target. Export removes the pruned structures. Stage 2 (``final``): the dense pruned model is
distilled again without gates. The student sees contaminated speech and the teacher clean speech when
``denoising.enabled``; the enhancement head reads the student's hidden state 0 (its width survives pruning, unlike
the CNN channels the RD-WavLM head reads).

DPHuBERT's training (pyf98/DPHuBERT ``run.sh``, ``distill.py``, ``lightning.py``) is the default: hidden state 0
is the feature projection's output (``projection_first``), layer 0 has its own linear map and the other layers
share one (``shared_projection``), no layer drop (``student_layer_drop``), batches cropped to their shortest
utterance (``crop_to_shortest``), torch AdamW with its default betas/eps and no weight decay, every optimized
parameter clipped together, autocast (``run.amp``). docs/fidelity.md lists each with its switch.

``PruneRecipe`` is what the training loop (``train/runner.py``, the one pretraining runs too) needs of both
stages: DDP, autocast, the NaN guard, tensorboard and exact resume are the loop's. Outputs in the experiment
folder, beside the loop's ``config.yaml``, ``log.jsonl``, ``tb/`` and ``resume-step<N>.pt``: ``pruned.pth``
(after stage 1) and ``final.pth`` (after stage 2), both in the DPHuBERT checkpoint layout.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from torch import Tensor, nn

from robustdistiller_upstream.config import to_dict
from robustdistiller_upstream.enhance import EnhanceConfig, EnhancementHead, EnhancementOutput, enhancement_loss
from robustdistiller_upstream.errors import ConfigError, TrainingError
from robustdistiller_upstream.objectives import DistillationObjective, build_objective
from robustdistiller_upstream.prune.arch import arch_from_checkpoint_dict
from robustdistiller_upstream.prune.checkpoint import save_pruned_checkpoint
from robustdistiller_upstream.prune.convert import model_from_teacher
from robustdistiller_upstream.prune.export import export_pruned
from robustdistiller_upstream.prune.model import PrunableWav2Vec2
from robustdistiller_upstream.prune.params import expected_num_params, num_params
from robustdistiller_upstream.prune.sparsity import LagrangianController, SparsityConfig
from robustdistiller_upstream.teacher import Teacher, TeacherConfig
from robustdistiller_upstream.train.config import DenoisingConfig, ObjectiveConfig, OptimConfig
from robustdistiller_upstream.train.data import Batch, DataConfig
from robustdistiller_upstream.train.optim import build_optimizer
from robustdistiller_upstream.train.stage import Stage

logger = logging.getLogger(__name__)


@dataclass
class PruneUnitsConfig:
    """Which structures get gates (DPHuBERT's ``conv,head,interm,attlayer,ffnlayer``; its run.sh uses the first
    three). Whole-block gates are decided per block at export: until they polarise in training, a block at
    keep probability 0.7 is either kept whole or removed, and the exported size strays from the expected one."""

    conv_channels: bool = True
    attention_heads: bool = True
    attention_layers: bool = False
    ffn_units: bool = True
    ffn_layers: bool = False

    def arch_flags(self) -> dict[str, bool]:
        return {
            "extractor_prune_conv_channels": self.conv_channels,
            "encoder_prune_attention_heads": self.attention_heads,
            "encoder_prune_attention_layer": self.attention_layers,
            "encoder_prune_feed_forward_intermediate": self.ffn_units,
            "encoder_prune_feed_forward_layer": self.ffn_layers,
        }


def dphubert_optim(lr: float, warmup: float) -> OptimConfig:
    """DPHuBERT's ``torch.optim.AdamW(pgs)``: torch's betas (0.9, 0.999) and eps 1e-8, ``--weight_decay 0.0``,
    ``--clip_norm 10.0``; ``warmup`` = warmup_updates / max_updates (run.sh: 15k/50k, 5k/25k)."""
    return OptimConfig(lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, groups=[], warmup=warmup,
                       clip_grad_norm=10.0)


@dataclass
class StageConfig:
    """``optim.clip_grad_norm`` clips every optimized parameter together (main, gates, multipliers: Lightning's
    ``gradient_clip_val``); ``optim.accumulate`` micro-batches per step; ``optim.groups`` is not used."""

    steps: int = 50000
    optim: OptimConfig = field(default_factory=lambda: dphubert_optim(2e-4, 0.3))


@dataclass
class PruneRunConfig:
    """The loop's settings (``train.config.RunConfig`` without ``total_steps``: each stage has its ``steps``);
    intervals in steps within a stage (0: never); ``amp``: autocast of the student (fp16 adds a gradient scaler;
    the teacher follows ``teacher.precision``)."""

    device: str = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    compile: bool = False
    seed: int = 0
    log_every: int = 50
    save_every: int = 5000
    max_keep: int = 3  #: newest resume files kept (0: all)
    max_bad_steps: int = 10
    threads: int = 0  #: torch intra-op threads on CPU; 0 = torch's default


@dataclass
class PruneConfig:
    """``teacher.ckpt`` must be a local s3prl ``wavlm_local`` or converted-HuBERT file: the student starts as
    its copy. ``distill_layers`` index hidden states (0 = see ``projection_first``, i = layer i).

    ``projection_first``: hidden state 0 of student and teacher is the feature projection's output, before the
    positional convolution (DPHuBERT); false: the transformer input, after it (s3prl's convention).
    ``shared_projection``: layer 0 gets its own linear map, the other distilled layers share one (DPHuBERT's
    ``distill_layers=0.4,8,12``); false: one map per layer. ``student_layer_drop``: the student keeps the teacher
    config's ``encoder_layerdrop`` in training (DPHuBERT's ``get_intermediate_outputs`` never drops a layer).
    ``crop_to_shortest``: each batch is cut to its shortest utterance at a random offset per utterance, no
    padding (DPHuBERT's ``CollateFnAudio(pad=False, rand_crop=True)``); false: zero-padded batches."""

    teacher: TeacherConfig = field(default_factory=lambda: TeacherConfig(name="wavlm_local"))
    distill_layers: list[int] = field(default_factory=lambda: [0, 4, 8, 12])
    projection_first: bool = True
    shared_projection: bool = True
    student_layer_drop: bool = False
    crop_to_shortest: bool = True
    units: PruneUnitsConfig = field(default_factory=PruneUnitsConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    denoising: DenoisingConfig = field(default_factory=DenoisingConfig)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prune_stage: StageConfig = field(default_factory=StageConfig)
    final_stage: StageConfig = field(default_factory=lambda: StageConfig(steps=25000, optim=dphubert_optim(1e-4, 0.2)))
    run: PruneRunConfig = field(default_factory=PruneRunConfig)
    description: Optional[str] = None


def projection_groups(layers: list[int], shared: bool) -> list[list[int]]:
    """Which distilled layers share a linear map: ``shared``: layer 0 alone and the rest together (DPHuBERT's
    ``0.4,8,12``), else each alone."""
    if not shared:
        return [[layer] for layer in layers]
    return [group for group in ([l for l in layers if l == 0], [l for l in layers if l != 0]) if group]


class PruneDistiller(nn.Module):
    """``forward(noisy, lengths, targets, clean) -> (loss, terms, enhancement output or None)``: layer-to-layer
    distillation of ``student`` (+ the enhancement head's loss). ``targets``: teacher hidden states ``layers``,
    each (batch, frames, dim). ``projections[i]`` maps the student's layer ``layers[i]``; layers of one
    ``projection_groups`` group hold the same module."""

    def __init__(self, student: PrunableWav2Vec2, objective: DistillationObjective, layers: list[int],
                 teacher_dim: int, head: Optional[EnhancementHead] = None, head_weight: float = 0.0,
                 shared_projection: bool = False, projection_first: bool = False) -> None:
        super().__init__()
        self.student, self.objective, self.layers = student, objective, list(layers)
        self.projection_first = projection_first
        dim = student.arch.encoder_embed_dim
        by_layer = {}
        for group in projection_groups(self.layers, shared_projection):
            proj = nn.Linear(dim, teacher_dim)
            nn.init.eye_(proj.weight)  # identity start (DPHuBERT): the copied student already matches
            nn.init.zeros_(proj.bias)
            by_layer.update((layer, proj) for layer in group)
        self.projections = nn.ModuleList(by_layer[layer] for layer in self.layers)
        self.head, self.head_weight = head, head_weight

    def forward(self, noisy: Tensor, lengths: Tensor, targets: list[Tensor], clean: Tensor
                ) -> tuple[Tensor, dict[str, Tensor], Optional[EnhancementOutput]]:
        hidden, frame_lengths = self.student(noisy, lengths, self.projection_first)
        frames = targets[0].shape[1]
        predictions = [proj(hidden[layer][:, :frames]) for layer, proj in zip(self.layers, self.projections)]
        frame_mask = torch.arange(frames, device=noisy.device) < frame_lengths[:, None]
        distill = self.objective(predictions, targets, frame_mask)
        loss, terms = distill.loss, {"distill": distill.loss.detach(), **distill.terms}
        enhanced = None
        if self.head is not None:
            enhanced = self.head(hidden[0], noisy, lengths)
            head_loss = enhancement_loss(self.head, enhanced, clean, lengths)
            terms["enhance"] = head_loss.detach()
            loss = loss + self.head_weight * head_loss
        return loss, terms, enhanced


def gated_student(config: PruneConfig) -> PrunableWav2Vec2:
    """Stage 1's student: a copy of ``teacher.ckpt`` with the gates ``units``; its layer drop is the teacher
    config's with ``student_layer_drop``, else 0."""
    changes = {} if config.student_layer_drop else {"encoder_layer_drop": 0.0}
    return model_from_teacher(config.teacher.ckpt, {**config.units.arch_flags(), **changes})


def teacher_targets(teacher: Teacher, wav: Tensor, lengths: Tensor, projection_first: bool) -> list[Tensor]:
    """The teacher's hidden states ``teacher.layers``, each (batch, frames, dim) fp32; ``projection_first``: state 0
    is what enters the s3prl model's ``encoder`` (the feature projection's output, before the positional conv)."""
    if not projection_first or 0 not in teacher.layers:
        return teacher(wav, lengths)
    encoder = getattr(getattr(teacher.upstream, "model", None), "encoder", None)
    if encoder is None:
        raise ConfigError(f"projection_first: teacher {teacher.config.name} has no model.encoder to read hidden "
                          "state 0 from; set projection_first: false")
    captured: list[Tensor] = []
    handle = encoder.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        targets = teacher(wav, lengths)
    finally:
        handle.remove()
    targets[teacher.layers.index(0)] = captured[0][:, : targets[0].shape[1]].float()
    return targets


def crop_to_shortest(batch: Batch) -> Batch:
    """``batch`` cut to its shortest utterance, each at a random offset into its valid samples (global torch RNG):
    (batch, shortest), no padding."""
    shortest = int(batch.lengths.min())
    starts = (torch.rand(len(batch.lengths)) * (batch.lengths - shortest + 1)).long().tolist()
    wav = torch.stack([row[start : start + shortest] for row, start in zip(batch.wav, starts)])
    return Batch(wav, torch.full_like(batch.lengths, shortest), batch.paths, batch.skipped)


class PruneTask(nn.Module):
    """What DDP wraps in a pruning stage: the distiller and, in stage 1, the Lagrangian controller (so its
    multipliers' gradients are all-reduced with the rest). ``forward(noisy, lengths, targets, clean, step) ->
    (loss, terms, enhancement output or None)``; ``step``: 0-based within the stage (the target's warmup)."""

    def __init__(self, distiller: PruneDistiller, controller: Optional[LagrangianController] = None) -> None:
        super().__init__()
        self.distiller, self.controller = distiller, controller

    @property
    def student(self) -> PrunableWav2Vec2:
        return self.distiller.student

    @property
    def head(self) -> Optional[EnhancementHead]:
        return self.distiller.head

    def forward(self, noisy: Tensor, lengths: Tensor, targets: list[Tensor], clean: Tensor, step: int
                ) -> tuple[Tensor, dict[str, Tensor], Optional[EnhancementOutput]]:
        loss, terms, enhanced = self.distiller(noisy, lengths, targets, clean)
        if self.controller is not None:
            with torch.autocast(noisy.device.type, enabled=False):  # the expected count in fp32
                reg, reg_terms = self.controller(expected_num_params(self.student), step)
            loss = loss + reg
            terms.update(reg_terms)
        terms["loss"] = loss.detach()
        return loss, terms, enhanced


STAGES = ("prune", "final")


class PruneRecipe:
    """RD-DPWavLM's two stages for the training loop. Stage 1 (``prune``): AdamW on the student, projections
    and head (``prune_stage.optim``), the gates' log_alpha and the multipliers at ``sparsity.reg_lr`` (no weight
    decay), one warmup/decay schedule for all, every optimized parameter clipped together, the multipliers'
    gradients negated after backward (ascent). Its end exports the dense pruned student (``pruned.pth``). Stage 2
    (``final``): the same without gates on the dense student (``final.pth``)."""

    stages = STAGES

    def __init__(self, config: PruneConfig) -> None:
        if not config.teacher.ckpt or not Path(config.teacher.ckpt).is_file():
            raise ConfigError(f"teacher.ckpt: {config.teacher.ckpt!r} is not a file; the pruning student is a copy "
                              "of a local wavlm_local / converted-HuBERT checkpoint")
        self.config = config

    def build(self, device: torch.device) -> Teacher:
        config = self.config
        self.device = device
        self.teacher = Teacher(config.teacher, config.distill_layers).to(device)
        student = gated_student(config)
        if self.teacher.num_hidden_states != student.arch.encoder_num_layers + 1:
            raise ConfigError(f"teacher.name {config.teacher.name} gives {self.teacher.num_hidden_states} hidden "
                              f"states, but teacher.ckpt has {student.arch.encoder_num_layers} layers: they must be "
                              "the same model")
        self.original = num_params(student)
        objective = build_objective(config.objective.name, config.objective.options, self.teacher.dim,
                                    self.teacher.dim, config.distill_layers)
        head = EnhancementHead(config.enhance, student.arch.encoder_embed_dim) if config.enhance.enabled else None
        self.distiller = PruneDistiller(student, objective, config.distill_layers, self.teacher.dim, head,
                                        config.enhance.weight, config.shared_projection,
                                        config.projection_first).to(device)
        self.controller = LagrangianController(config.sparsity, self.original).to(device)
        return self.teacher

    def _stage_config(self, index: int) -> StageConfig:
        return self.config.prune_stage if index == 0 else self.config.final_stage

    def stage_steps(self, index: int) -> int:
        return self._stage_config(index).steps

    def stage(self, index: int, saved: Optional[dict[str, Any]]) -> Stage:
        stage, distiller = self._stage_config(index), self.distiller
        if index == 1 and saved is not None and distiller.student.gates():  # resumed in stage 2: the dense export
            arch = arch_from_checkpoint_dict(saved["arch"], "resume file")
            distiller.student = PrunableWav2Vec2(arch).to(self.device)
        gates = {id(p) for p in distiller.student.gate_parameters()}
        groups = [{"params": [p for p in distiller.parameters() if p.requires_grad and id(p) not in gates],
                   "name": "main"}]
        controller = self.controller if index == 0 else None
        if controller is not None:
            reg_lr = self.config.sparsity.reg_lr
            groups += [{"params": distiller.student.gate_parameters(), "lr": reg_lr, "weight_decay": 0.0,
                        "name": "log_alpha"},
                       {"params": list(controller.parameters()), "lr": reg_lr, "weight_decay": 0.0, "name": "lambda"}]
        optimizer, scheduler = build_optimizer(groups, stage.optim, stage.steps)
        return Stage(STAGES[index], stage.steps, PruneTask(distiller, controller), optimizer, scheduler,
                     [p for group in groups for p in group["params"]], stage.optim.clip_grad_norm,
                     stage.optim.accumulate, controller.ascend if controller is not None else None,
                     lambda step: (step,))

    def batch(self, batch: Batch) -> Batch:
        return crop_to_shortest(batch) if self.config.crop_to_shortest else batch

    def targets(self, clean: Tensor, lengths: Tensor) -> list[Tensor]:
        return teacher_targets(self.teacher, clean, lengths, self.config.projection_first)

    def state_dict(self) -> dict[str, Any]:
        return {"arch": self.distiller.student.arch.to_checkpoint_dict()}

    def check_folder(self, exp_dir: Path, resume: bool) -> None:
        if (exp_dir / "final.pth").exists():
            raise TrainingError(f"{exp_dir} already holds final.pth: the run is finished; pick another -n name")
        if not resume and (exp_dir / "pruned.pth").exists():
            raise TrainingError(f"{exp_dir} already holds a run: pass --resume or pick another -n name")

    def check_resume(self, state: dict[str, Any], path: Path) -> None:
        if "recipe" not in state:
            raise TrainingError(f"{path} is not a resume file of robustdistiller prune")

    def save(self, exp_dir: Path, step: int) -> None:
        """Nothing beside the resume file: the results are written at the end of each stage."""

    def end_stage(self, index: int, exp_dir: Path, main: bool) -> Optional[Path]:
        config, distiller = self.config, self.distiller
        meta = {"teacher": dataclasses.asdict(config.teacher), "target_sparsity": config.sparsity.target,
                "original_num_params": self.original, "recipe": to_dict(config), "stage": STAGES[index],
                "steps": self.stage_steps(index)}
        if index == 0:
            distiller.student = export_pruned(distiller.student).to(self.device)  # every rank: stage 2 trains it
            kept = num_params(distiller.student)
            logger.info("pruned: %d -> %d parameters (sparsity %.3f)", self.original, kept, 1 - kept / self.original)
        if not main:
            return None
        path = save_pruned_checkpoint(exp_dir / f"{'pruned' if index == 0 else 'final'}.pth",
                                      distiller.student if index == 0 else distiller.student.eval(), meta,
                                      distiller.projections.state_dict(), overwrite=index == 0)
        logger.info("%s: %s", "pruned model" if index == 0 else "final pruned model", path)
        return path
