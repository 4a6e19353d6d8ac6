"""The training loop of every recipe (nanoGPT-style: plain code, every knob visible), DDP through torchrun.

``Trainer`` owns what every recipe shares: devices, DDP (gloo on the CPU, nccl on CUDA), autocast (fp16 with a
gradient scaler, bf16), gradient accumulation, clipping, the NaN guard (``train/guard.py``), teacher targets and
contamination of each batch, logging (``log.jsonl``, tensorboard), checkpoints and exact resume. A recipe supplies
what differs through the ``Recipe`` protocol (``train/stage.py``), the only thing the loop knows of it: the
teacher, its stages, each stage's task module (what computes the loss), its optimizer over its own parameter
groups, an after-backward hook, and what it saves. Whoever starts a run picks the recipe: ``robustdistiller
pretrain`` ``train.recipe.PretrainRecipe`` (one stage), ``robustdistiller prune`` ``prune.train.PruneRecipe``
(stage 1 ``prune``: gated student + Lagrangian controller; stage 2 ``final``: the exported dense student).

Experiment folder ``<exp_root>/<name>/``: ``config.yaml`` (the full recipe), ``log.jsonl`` (one line per logged
step; a recipe of several stages adds ``stage`` and counts ``step`` within it), ``tb/`` (tensorboard, steps counted
over all stages), ``resume-step<N>.pt`` (N over all stages: weights, optimizer, scaler, scheduler, RNG states,
data position, the recipe's own state: what ``--resume`` needs to continue bit-exactly) and what the recipe saves
(pretraining: ``student-step<N>.ckpt`` beside each resume file, in s3prl's DistilHuBERT format; pruning:
``pruned.pth`` after stage 1 and ``final.pth`` after stage 2).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from robustdistiller_upstream.augment.banks import build_banks
from robustdistiller_upstream.augment.contaminator import Contaminator, TransformRecord
from robustdistiller_upstream.checkpoint import atomic_torch_save, load_torch_file
from robustdistiller_upstream.config import save_config
from robustdistiller_upstream.enhance.metrics import enhancement_metrics
from robustdistiller_upstream.errors import TrainingError
from robustdistiller_upstream.files import read_jsonl, remove_stale_temporaries, write_jsonl_atomic
from robustdistiller_upstream.teacher import align_frames
from robustdistiller_upstream.train.data import Batch, BatchStream, load_corpus
from robustdistiller_upstream.train.digest import parameters_digest
from robustdistiller_upstream.train.guard import UpdateGuard
from robustdistiller_upstream.train.stage import Recipe

logger = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_RESUME = re.compile(r"resume-step(\d+)\.pt$")


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Distributed:
    """Reads torchrun's environment (a SLURM job exports the same variables first: ``cluster.jobs``); starts gloo
    (CPU) or nccl (CUDA ``device``, or ``auto`` on a CUDA machine) when there is more than one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed()
    env = Distributed(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return env


def pick_device(name: str, env: Distributed) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{env.local_rank}"
    device = torch.device(name)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def rng_state() -> dict[str, Any]:
    """Every RNG the loop draws from, as plain data (``torch.load(weights_only=True)`` reads it)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "cached": cached},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def checkpoints(exp_dir: Path) -> list[tuple[int, Path]]:
    """``(step, resume file)`` pairs, oldest first."""
    found = [(int(m.group(1)), p) for p in exp_dir.glob("resume-step*.pt") if (m := _RESUME.search(p.name))]
    return sorted(found)


@dataclass
class Progress:
    """Counters that travel in the resume file; ``step`` counts within the current stage."""

    step: int = 0
    skipped_files: int = 0
    nonfinite_steps: int = 0
    nonfinite_streak: int = 0
    snrs: list[float] = field(default_factory=list)  # since the last log (not saved)


class Trainer:
    """Runs the stages of ``recipe`` (picked by whoever starts the run: the CLI, a cluster job), or what is left of
    them, in ``exp_dir``."""

    def __init__(self, recipe: Recipe, exp_dir: str | Path, resume: bool = False) -> None:
        self.recipe = recipe
        self.config = config = recipe.config
        self.exp_dir = Path(exp_dir)
        run = config.run
        self.env = setup_distributed(run.device)
        self.device = pick_device(run.device, self.env)
        if run.threads > 0:
            torch.set_num_threads(run.threads)
        if resume and not checkpoints(self.exp_dir):
            raise TrainingError(f"--resume: no resume-step*.pt in {self.exp_dir}")
        if config.teacher.contamination and not config.denoising.enabled:
            raise TrainingError("teacher.contamination: true draws from denoising.contamination; set "
                                "denoising.enabled: true (or teacher.contamination: false)")
        if self.env.main:
            self.recipe.check_folder(self.exp_dir, resume)  # first: a finished run says so
            if not resume and checkpoints(self.exp_dir):
                raise TrainingError(f"{self.exp_dir} already holds checkpoints: pass --resume or pick another -n name")
        seed_everything(run.seed)
        self.teacher = self.recipe.build(self.device)
        # every rank starts from the same weights and draws its own dropout masks (and gate samples)
        seed_everything(run.seed + self.env.rank)

        self.contaminator = None
        if config.denoising.enabled:
            self.contaminator = Contaminator(config.denoising.contamination, *build_banks(config.denoising.banks))
        elif config.enhance.enabled:
            logger.warning("enhance.enabled without denoising.enabled: the head learns to pass clean speech through")

        self.scaler = torch.amp.GradScaler(self.device.type, enabled=run.amp == "fp16")
        utterances, unreadable = load_corpus(config.data)
        self.stream = BatchStream(config.data, utterances, self.env.rank, self.env.world_size)
        self.progress = Progress(skipped_files=unreadable)
        # on the CPU the guard's host read is free: it checks before stepping and keeps no snapshot
        self.guard = UpdateGuard(self.device, run.amp == "fp16", run.max_bad_steps,
                                 defer=self.device.type == "cuda")
        saved = None
        if resume:
            if self.env.main:
                remove_stale_temporaries(self.exp_dir)  # half-written checkpoints of the killed run
            path = checkpoints(self.exp_dir)[-1][1]
            saved = load_torch_file(path)
        self._start_stage(saved.get("stage", 0) if saved else 0, saved.get("recipe") if saved else None)
        if saved:
            self._load(saved, path)
        elif self.env.main:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            (self.exp_dir / "log.jsonl").unlink(missing_ok=True)
        if self.env.main:  # the recipe as run (a resume may change e.g. run.total_steps)
            save_config(config, self.exp_dir / "config.yaml")
        self.writer = None
        if self.env.main:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(self.exp_dir / "tb"), purge_step=self._global_step() + 1)

    def _start_stage(self, index: int, saved: Optional[dict[str, Any]] = None) -> None:
        """Builds stage ``index`` and wraps its task (DDP, ``run.compile``)."""
        self.stage_index = index
        self.stage = self.recipe.stage(index, saved)
        self.task, self.optimizer, self.scheduler = self.stage.task, self.stage.optimizer, self.stage.scheduler
        self._student_frames: dict[int, int] = {}  # by batch width: computed once, on the host
        model: nn.Module = self.task
        if self.env.enabled:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.model = torch.compile(model) if self.config.run.compile else model

    def _global_step(self) -> int:
        """Steps over all stages: the number in checkpoint names and tensorboard."""
        return self._steps_before(self.stage_index) + self.progress.step

    def _steps_before(self, index: int) -> int:
        return sum(self.recipe.stage_steps(i) for i in range(index))

    # ---------------------------------------------------------------- state
    def _state(self) -> dict[str, Any]:
        rngs = [rng_state()]
        if self.env.enabled:
            rngs = [None] * self.env.world_size
            dist.all_gather_object(rngs, rng_state())
        return {
            "step": self.progress.step,
            "task": self.task.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rngs,
            "data": self.stream.state_dict(),
            "counters": {"skipped_files": self.progress.skipped_files, "nonfinite_steps": self.progress.nonfinite_steps,
                         "nonfinite_streak": self.progress.nonfinite_streak},
            "world_size": self.env.world_size,
            "stage": self.stage_index,
            "recipe": self.recipe.state_dict(),
        }

    def _load(self, state: dict[str, Any], path: Path) -> None:
        if state["world_size"] != self.env.world_size:
            raise TrainingError(f"{path}: saved by {state['world_size']} processes, resumed with {self.env.world_size}")
        self.recipe.check_resume(state, path)
        self.task.load_state_dict(state["task"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.stream.load_state_dict(state["data"])
        set_rng_state(state["rng"][self.env.rank])
        self.progress = Progress(step=int(state["step"]), **state["counters"])
        if self.env.main:
            self._truncate_log(self.stage_index, self.progress.step)
        logger.info("resumed from %s at %s step %d", path, self.stage.name, self.progress.step)

    def _truncate_log(self, index: int, step: int) -> None:
        """Drops log lines of steps after (stage ``index``, ``step``) (written by the run that was killed after its
        checkpoint)."""
        log, stages = self.exp_dir / "log.jsonl", self.recipe.stages
        if log.exists():
            position = lambda r: (stages.index(r.get("stage", stages[0])), r.get("step", step + 1))  # noqa: E731
            write_jsonl_atomic(log, [r for r in read_jsonl(log) if position(r) <= (index, step)])

    def save(self) -> Optional[Path]:
        """Writes ``resume-step<N>.pt`` (atomically) and the recipe's files of step N; keeps the newest
        ``run.max_keep`` (0: all) of each. Returns the resume file (rank 0) or None."""
        state = self._state()  # a collective under DDP: every rank takes part
        if not self.env.main:
            return None
        step = self._global_step()
        self.recipe.save(self.exp_dir, step)
        path = atomic_torch_save(state, self.exp_dir / f"resume-step{step}.pt")
        keep = self.config.run.max_keep
        for old_step, _ in checkpoints(self.exp_dir)[:-keep] if keep > 0 else []:
            for old in self.exp_dir.glob(f"*-step{old_step}.*"):
                old.unlink(missing_ok=True)
        return path

    # ---------------------------------------------------------------- one step
    def _batches(self) -> Iterator[Batch]:
        for batch in self.stream:
            self.progress.skipped_files += batch.skipped
            if batch.skipped:
                logger.warning("%d unreadable corpus file(s) skipped so far", self.progress.skipped_files)
            if len(batch.paths):
                yield self.recipe.batch(batch)

    def _micro_step(self, batch: Batch, micro: int, sync: bool):
        clean = batch.wav.to(self.device, non_blocking=True)
        lengths = batch.lengths.to(self.device, non_blocking=True)  # a blocking copy waits for the device
        width = clean.shape[1]
        if width not in self._student_frames:
            self._student_frames[width] = int(self.task.student.frame_lengths(torch.tensor([width]))[0])
        teacher_input, noisy, records = self.inputs(batch, clean, micro)
        # the teacher and the contaminator read lengths on the host: the loader's copy spares a sync
        targets = self.recipe.targets(teacher_input, batch.lengths)
        _, targets = align_frames(self._student_frames[width], targets, self.config.teacher.max_frame_diff,
                                  self.config.teacher.name)
        if self.env.main and records:  # for the SNR histogram (the student's), which rank 0 writes
            self.progress.snrs.extend(r.snr_db for r in records["student"] if r.snr_db is not None)
        amp = self.config.run.amp
        autocast = torch.autocast(self.device.type, dtype=AMP_DTYPES[amp]) if amp != "none" else nullcontext()
        no_sync = self.model.no_sync() if (self.env.enabled and not sync and hasattr(self.model, "no_sync")) else nullcontext()
        with no_sync:
            with autocast:
                loss, terms, enhanced = self.model(noisy, lengths, targets, clean, *self.stage.inputs(self.progress.step))
            self.scaler.scale(loss / self.stage.accumulate).backward()
        return terms, (enhanced, noisy, clean, lengths)

    def inputs(self, batch: Batch, clean: Tensor, micro: int = 0
               ) -> tuple[Tensor, Tensor, dict[str, list[TransformRecord]]]:
        """(teacher input, student input, records by ``"student"`` / ``"teacher"``) of one micro-batch, each
        ``(batch, samples)`` like ``clean`` (on the device). One draw per (utterance, step, micro-step), seeded by
        its id: stateless, so resume and DDP replay it exactly. With ``teacher.contamination`` the teacher's draw is
        seeded by ``teacher:`` + that id: independent of the student's. Without denoising both hear ``clean``."""
        if self.contaminator is None:
            return clean, clean, {}
        ids = [f"{Path(path).name}@{self.progress.step}.{micro}" for path in batch.paths]
        noisy, records = self.contaminator(clean, batch.lengths, step=self.progress.step, utt_ids=ids)
        if not self.config.teacher.contamination:
            return clean, noisy, {"student": records}
        heard, teacher_records = self.contaminator(clean, batch.lengths, step=self.progress.step,
                                                   utt_ids=[f"teacher:{utt}" for utt in ids])
        return heard, noisy, {"student": records, "teacher": teacher_records}

    def train_step(self, batches: Iterator[Batch]) -> tuple[dict[str, Tensor], Any]:
        """One optimizer step over the stage's ``accumulate`` micro-batches; returns the averaged terms and the
        gradient norm (0-d tensors on the device: reading them is a host sync, which ``fit`` makes on log steps
        only) and the last batch. Makes no host read itself on CUDA (``UpdateGuard``)."""
        accumulate = self.stage.accumulate
        sums: dict[str, Tensor] = {}
        for micro in range(accumulate):
            terms, last = self._micro_step(next(batches), micro, sync=micro == accumulate - 1)
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value.float() / accumulate
        if self.stage.after_backward is not None:
            self.stage.after_backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.stage.clip_params, self.stage.clip_norm)
        self.guard.update(self.optimizer, self.scaler, sums["loss"], grad_norm, self.progress.step + 1, self.progress,
                          reduce=self.env.enabled)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.progress.step += 1
        return {**sums, "grad_norm": grad_norm.detach()}, last

    # ---------------------------------------------------------------- logging
    def _log(self, terms: dict[str, float], seconds: float, last: Any) -> None:
        step = self.progress.step
        record = {"stage": self.stage.name} if len(self.recipe.stages) > 1 else {}
        record.update({"step": step, **terms, "lr": self.scheduler.get_last_lr()[0], "seconds_per_step": seconds,
                       "skipped_files": self.progress.skipped_files, "nonfinite_steps": self.progress.nonfinite_steps})
        enhanced, noisy, clean, lengths = last
        every = self.config.enhance.metrics_every
        if enhanced is not None and every and step % every == 0:
            n = self.config.enhance.metrics_utterances
            wav = enhanced.waveform(self.task.head, clean.shape[-1])
            for key, value in enhancement_metrics(wav[:n], clean[:n], lengths[:n]).items():
                record[f"enhance_{key}"] = value
            for key, value in enhancement_metrics(noisy[:n], clean[:n], lengths[:n]).items():
                record[f"noisy_{key}"] = value
        with (self.exp_dir / "log.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        tb_step = self._global_step()
        for key, value in record.items():
            if key not in ("stage", "step"):
                self.writer.add_scalar(key.replace("_", "/", 1) if key.startswith(("enhance_", "noisy_")) else key,
                                       value, tb_step)
        if self.progress.snrs:
            self.writer.add_histogram("snr_db", np.asarray(self.progress.snrs), tb_step)

    def _log_digests(self) -> None:
        """Every rank logs a digest of each parameter group at the end of a stage: under DDP they must agree."""
        digests = []
        for i, group in enumerate(self.optimizer.param_groups):
            digest = parameters_digest({str(j): p for j, p in enumerate(group["params"])})
            digests.append(f"{group.get('name', i)}={digest[:16]}")
        logger.info("rank %d/%d, %s step %d: parameter digests %s", self.env.rank, self.env.world_size,
                    self.stage.name, self.progress.step, " ".join(digests))

    # ---------------------------------------------------------------- loop
    def fit(self) -> Optional[Path]:
        """Runs what is left of every stage; returns the last stage's result file (rank 0) or None."""
        run = self.config.run
        while True:
            stage = self.stage
            self.task.train()
            batches = self._batches()
            bar = tqdm(total=stage.steps, initial=self.progress.step, disable=not self.env.main, desc=stage.name,
                       dynamic_ncols=True)
            since = (self.progress.step, time.perf_counter())  # the last log: steps are timed between logs
            while self.progress.step < stage.steps:
                terms, last = self.train_step(batches)
                step = self.progress.step
                log = step % run.log_every == 0 or step == stage.steps
                save = (run.save_every and step % run.save_every == 0) or step == stage.steps
                if log or save:  # on every rank: a diverged run stops on all of them
                    self.guard.resolve(self.optimizer, self.progress)
                if log and self.env.main:
                    values = dict(zip(terms, torch.stack([v.float() for v in terms.values()]).tolist()))  # one read
                    self._log(values, (time.perf_counter() - since[1]) / (step - since[0]), last)
                    self.progress.snrs.clear()
                    bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
                if log:
                    since = (step, time.perf_counter())
                bar.update(1)
                if save:
                    self.save()
            bar.close()
            if self.env.enabled:
                self._log_digests()
            result = self.recipe.end_stage(self.stage_index, self.exp_dir, self.env.main)
            if self.stage_index + 1 == len(self.recipe.stages):
                break
            self._start_stage(self.stage_index + 1)
            self.progress.step = 0
        if self.writer is not None:
            self.writer.close()
        if self.progress.skipped_files:
            logger.warning("%d unreadable corpus file(s) were skipped", self.progress.skipped_files)
        return result if self.env.main else None

