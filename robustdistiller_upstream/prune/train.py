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

Outputs in the experiment folder: ``config.yaml``, ``log.jsonl``, ``pruned.pth`` (after stage 1) and
``final.pth`` (after stage 2), both in the DPHuBERT checkpoint layout, and ``resume.pt`` while the run is
unfinished (``--resume`` continues from it: weights, gates, multipliers, optimizer, schedule, data position, RNGs).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Optional

import torch
from torch import Tensor, nn
from tqdm import tqdm

from robustdistiller_upstream.augment.banks import build_banks
from robustdistiller_upstream.augment.contaminator import Contaminator
from robustdistiller_upstream.checkpoint import atomic_torch_save, load_torch_file
from robustdistiller_upstream.config import save_config, to_dict
from robustdistiller_upstream.enhance import EnhanceConfig, EnhancementHead, enhancement_loss
from robustdistiller_upstream.errors import ConfigError, TrainingError
from robustdistiller_upstream.files import read_jsonl, remove_stale_temporaries, write_jsonl_atomic
from robustdistiller_upstream.objectives import DistillationObjective, build_objective
from robustdistiller_upstream.prune.arch import arch_from_checkpoint_dict
from robustdistiller_upstream.prune.checkpoint import save_pruned_checkpoint
from robustdistiller_upstream.prune.convert import model_from_teacher
from robustdistiller_upstream.prune.export import export_pruned
from robustdistiller_upstream.prune.model import PrunableWav2Vec2
from robustdistiller_upstream.prune.params import expected_num_params, num_params
from robustdistiller_upstream.prune.sparsity import LagrangianController, SparsityConfig
from robustdistiller_upstream.teacher import Teacher, TeacherConfig, align_frames
from robustdistiller_upstream.train.config import DenoisingConfig, ObjectiveConfig, OptimConfig
from robustdistiller_upstream.train.data import Batch, BatchStream, DataConfig, load_corpus
from robustdistiller_upstream.train.optim import build_optimizer
from robustdistiller_upstream.train.runner import (
    AMP_DTYPES,
    pick_device,
    rng_state,
    seed_everything,
    set_rng_state,
    setup_distributed,
)

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
    ``gradient_clip_val``); ``optim.groups`` and ``optim.accumulate`` are not used."""

    steps: int = 50000
    optim: OptimConfig = field(default_factory=lambda: dphubert_optim(2e-4, 0.3))


@dataclass
class PruneRunConfig:
    device: str = "auto"
    seed: int = 0
    log_every: int = 50
    save_every: int = 5000  # steps between resume files (0: never)
    threads: int = 0  # torch intra-op threads on CPU; 0 = torch's default
    amp: Literal["none", "bf16", "fp16"] = "none"  # the student's autocast (fp16 adds a gradient scaler)


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
    """``forward(noisy, lengths, targets, clean) -> (loss, terms)``: layer-to-layer distillation of ``student``
    (+ the enhancement head's loss). ``targets``: teacher hidden states ``layers``, each (batch, frames, dim).
    ``projections[i]`` maps the student's layer ``layers[i]``; layers of one ``projection_groups`` group hold the
    same module."""

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
                ) -> tuple[Tensor, dict[str, Tensor]]:
        hidden, frame_lengths = self.student(noisy, lengths, self.projection_first)
        frames = targets[0].shape[1]
        predictions = [proj(hidden[layer][:, :frames]) for layer, proj in zip(self.layers, self.projections)]
        frame_mask = torch.arange(frames, device=noisy.device) < frame_lengths[:, None]
        distill = self.objective(predictions, targets, frame_mask)
        loss, terms = distill.loss, {"distill": distill.loss.detach(), **distill.terms}
        if self.head is not None:
            head_loss = enhancement_loss(self.head, self.head(hidden[0], noisy, lengths), clean, lengths)
            terms["enhance"] = head_loss.detach()
            loss = loss + self.head_weight * head_loss
        return loss, terms


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


class StageRunner:
    """Runs one stage's optimizer steps: AdamW on the student, projections and head (``optim``), the gates'
    log_alpha and the multipliers at ``sparsity.reg_lr`` (no weight decay); one warmup/decay schedule for all,
    every optimized parameter clipped together. ``amp``: the student's autocast dtype (``run.amp``)."""

    def __init__(self, distiller: PruneDistiller, teacher: Teacher, stage: StageConfig, device: torch.device,
                 controller: Optional[LagrangianController] = None, sparsity: Optional[SparsityConfig] = None,
                 contaminator: Optional[Contaminator] = None, max_frame_diff: int = 2, amp: str = "none",
                 crop: bool = False) -> None:
        self.distiller, self.teacher, self.stage, self.device = distiller, teacher, stage, device
        self.controller, self.contaminator, self.max_frame_diff = controller, contaminator, max_frame_diff
        self.amp, self.crop = amp, crop
        gates = {id(p) for p in distiller.student.gate_parameters()}
        main = [p for p in distiller.parameters() if p.requires_grad and id(p) not in gates]
        groups = [{"params": main, "name": "main"}]
        if controller is not None:
            reg_lr = sparsity.reg_lr
            groups += [{"params": distiller.student.gate_parameters(), "lr": reg_lr, "weight_decay": 0.0,
                        "name": "log_alpha"},
                       {"params": list(controller.parameters()), "lr": reg_lr, "weight_decay": 0.0, "name": "lambda"}]
        self.params = [p for group in groups for p in group["params"]]
        self.optimizer, self.scheduler = build_optimizer(groups, stage.optim, stage.steps)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.step = 0

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.distiller.train()
        if self.crop:
            batch = crop_to_shortest(batch)
        clean, lengths = batch.wav.to(self.device), batch.lengths.to(self.device)
        student = self.distiller.student
        student_frames = int(student.frame_lengths(lengths.new_tensor([clean.shape[1]]))[0])
        targets = teacher_targets(self.teacher, clean, lengths, self.distiller.projection_first)
        _, targets = align_frames(student_frames, targets, self.max_frame_diff, self.teacher.config.name)
        noisy = clean
        if self.contaminator is not None:
            ids = [f"{path}@{self.step}" for path in batch.paths]
            noisy, _ = self.contaminator(clean, lengths, step=self.step, utt_ids=ids)
        autocast = torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp]) if self.amp != "none" else nullcontext()
        with autocast:
            loss, terms = self.distiller(noisy, lengths, targets, clean)
        if self.controller is not None:
            reg, reg_terms = self.controller(expected_num_params(student), self.step)
            loss = loss + reg
            terms.update(reg_terms)
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss at step {self.step}: {({k: float(v) for k, v in terms.items()})}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.controller is not None:
            self.controller.ascend()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.stage.optim.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        terms["loss"] = loss.detach()
        return {k: float(v) for k, v in terms.items()}


def _batches(stream: BatchStream) -> Iterator[Batch]:
    for batch in stream:
        if len(batch.paths):
            yield batch


STAGES = ("prune", "final")
RESUME_FILE = "resume.pt"


class PruneRun:
    """Both stages over one experiment folder, with a resume file every ``run.save_every`` steps."""

    def __init__(self, config: PruneConfig, exp_dir: str | Path, resume: bool = False) -> None:
        self.config, self.exp_dir = config, Path(exp_dir)
        state = self._check_folder(resume)
        if not config.teacher.ckpt or not Path(config.teacher.ckpt).is_file():
            raise ConfigError(f"teacher.ckpt: {config.teacher.ckpt!r} is not a file; the pruning student is a copy "
                              "of a local wavlm_local / converted-HuBERT checkpoint")
        run = config.run
        env = setup_distributed(run.device if run.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        if env.enabled:
            raise TrainingError("robustdistiller prune runs on one device; start it without torchrun")
        self.device = pick_device(run.device, env)
        if run.threads > 0:
            torch.set_num_threads(run.threads)
        seed_everything(run.seed)

        self.teacher = Teacher(config.teacher, config.distill_layers).to(self.device)
        self.stage = state["stage"] if state else "prune"
        if self.stage == "final":  # stage 1 is done: the student is the dense export
            student = PrunableWav2Vec2(arch_from_checkpoint_dict(state["arch"], str(self.exp_dir / RESUME_FILE)))
        else:
            student = gated_student(config)
        if self.teacher.num_hidden_states != student.arch.encoder_num_layers + 1:
            raise ConfigError(f"teacher.name {config.teacher.name} gives {self.teacher.num_hidden_states} hidden "
                              f"states, but teacher.ckpt has {student.arch.encoder_num_layers} layers: they must be "
                              "the same model")
        self.original = state["original_num_params"] if state else num_params(student)
        objective = build_objective(config.objective.name, config.objective.options, self.teacher.dim,
                                    self.teacher.dim, config.distill_layers)
        head = EnhancementHead(config.enhance, student.arch.encoder_embed_dim) if config.enhance.enabled else None
        self.distiller = PruneDistiller(student, objective, config.distill_layers, self.teacher.dim, head,
                                        config.enhance.weight, config.shared_projection,
                                        config.projection_first).to(self.device)
        self.contaminator = None
        if config.denoising.enabled:
            self.contaminator = Contaminator(config.denoising.contamination, *build_banks(config.denoising.banks))
        utterances, _ = load_corpus(config.data)
        self.stream = BatchStream(config.data, utterances)
        self.batches = _batches(self.stream)
        self.controller = LagrangianController(config.sparsity, self.original).to(self.device)
        self.runner = self._stage_runner()
        if state:
            self._load(state)
        else:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.exp_dir / "config.yaml")
            (self.exp_dir / "log.jsonl").unlink(missing_ok=True)
        self.meta = {"teacher": dataclasses.asdict(config.teacher), "target_sparsity": config.sparsity.target,
                     "original_num_params": self.original, "recipe": to_dict(config)}

    def _check_folder(self, resume: bool) -> Optional[dict]:
        if (self.exp_dir / "final.pth").exists():
            raise TrainingError(f"{self.exp_dir} already holds final.pth: the run is finished; pick another -n name")
        if not resume:
            if (self.exp_dir / RESUME_FILE).exists() or (self.exp_dir / "pruned.pth").exists():
                raise TrainingError(f"{self.exp_dir} already holds a run: pass --resume or pick another -n name")
            return None
        if not (self.exp_dir / RESUME_FILE).exists():
            raise TrainingError(f"--resume: no {RESUME_FILE} in {self.exp_dir}")
        remove_stale_temporaries(self.exp_dir)  # half-written files of the killed run
        return load_torch_file(self.exp_dir / RESUME_FILE)

    def _stage_runner(self) -> StageRunner:
        config = self.config
        common = dict(contaminator=self.contaminator, max_frame_diff=config.teacher.max_frame_diff,
                      amp=config.run.amp, crop=config.crop_to_shortest)
        if self.stage == "prune":
            return StageRunner(self.distiller, self.teacher, config.prune_stage, self.device, self.controller,
                               config.sparsity, **common)
        return StageRunner(self.distiller, self.teacher, config.final_stage, self.device, **common)

    def _state(self) -> dict:
        return {
            "stage": self.stage, "step": self.runner.step, "original_num_params": self.original,
            "arch": self.distiller.student.arch.to_checkpoint_dict(),
            "distiller": self.distiller.state_dict(), "controller": self.controller.state_dict(),
            "optimizer": self.runner.optimizer.state_dict(), "scheduler": self.runner.scheduler.state_dict(),
            "scaler": self.runner.scaler.state_dict(), "stream": self.stream.state_dict(), "rng": rng_state(),
        }

    def _load(self, state: dict) -> None:
        self.distiller.load_state_dict(state["distiller"])
        self.controller.load_state_dict(state["controller"])
        self.runner.optimizer.load_state_dict(state["optimizer"])
        self.runner.scheduler.load_state_dict(state["scheduler"])
        self.runner.scaler.load_state_dict(state["scaler"])
        self.runner.step = int(state["step"])
        self.stream.load_state_dict(state["stream"])
        set_rng_state(state["rng"])
        done = STAGES.index(self.stage), self.runner.step
        log = self.exp_dir / "log.jsonl"
        if log.exists():  # drop records written after the resume point
            write_jsonl_atomic(log, [r for r in read_jsonl(log) if (STAGES.index(r["stage"]), r["step"]) <= done])
        logger.info("resumed %s at %s step %d", self.exp_dir, self.stage, self.runner.step)

    def _run_stage(self) -> None:
        runner, run = self.runner, self.config.run
        start = time.time()
        with (self.exp_dir / "log.jsonl").open("a") as log:
            progress = tqdm(total=runner.stage.steps, initial=runner.step, desc=self.stage, unit="step",
                            dynamic_ncols=True)
            while runner.step < runner.stage.steps:
                terms = runner.train_step(next(self.batches))
                progress.update()
                if runner.step % run.log_every == 0 or runner.step == runner.stage.steps:
                    record = {"stage": self.stage, "step": runner.step, "seconds": round(time.time() - start, 1),
                              **terms}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    logger.info("%s step %d: %s", self.stage, runner.step,
                                ", ".join(f"{k}={v:.4g}" for k, v in terms.items() if "/" not in k))
                if run.save_every and runner.step % run.save_every == 0 and runner.step < runner.stage.steps:
                    atomic_torch_save(self._state(), self.exp_dir / RESUME_FILE)
            progress.close()

    def fit(self) -> Path:
        """Runs what is left of both stages; returns the path of ``final.pth``."""
        if self.stage == "prune":
            self._run_stage()
            student = export_pruned(self.distiller.student).to(self.device)
            self.distiller.student = student
            pruned = save_pruned_checkpoint(self.exp_dir / "pruned.pth", student,
                                            {**self.meta, "stage": "prune", "steps": self.config.prune_stage.steps},
                                            self.distiller.projections.state_dict(), overwrite=True)
            logger.info("pruned: %d -> %d parameters (sparsity %.3f): %s", self.original, num_params(student),
                        1 - num_params(student) / self.original, pruned)
            self.stage = "final"
            self.runner = self._stage_runner()
            atomic_torch_save(self._state(), self.exp_dir / RESUME_FILE)
        self._run_stage()
        final = save_pruned_checkpoint(self.exp_dir / "final.pth", self.distiller.student.eval(),
                                       {**self.meta, "stage": "final", "steps": self.config.final_stage.steps},
                                       self.distiller.projections.state_dict())
        (self.exp_dir / RESUME_FILE).unlink()
        logger.info("final pruned model: %s", final)
        return final


def prune_and_distill(config: PruneConfig, exp_dir: str | Path, resume: bool = False) -> Path:
    """Both stages (or what is left of them with ``resume``); returns the path of ``final.pth``."""
    return PruneRun(config, exp_dir, resume).fit()
