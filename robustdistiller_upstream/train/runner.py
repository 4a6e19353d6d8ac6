"""The pretraining loop (nanoGPT-style: plain code, every knob visible), DDP through torchrun.

Experiment folder ``<exp_root>/<name>/``: ``config.yaml`` (the full recipe), ``log.jsonl`` (one line per logged
step), ``tb/`` (tensorboard), ``student-step<N>.ckpt`` (the student in s3prl's DistilHuBERT format, loadable by
``robustdistiller_local`` and stock ``distiller_local``) and ``resume-step<N>.pt`` (optimizer, scaler, scheduler,
RNG states, data position: what ``--resume`` needs to continue bit-exactly).
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
from robustdistiller_upstream.augment.contaminator import Contaminator
from robustdistiller_upstream.checkpoint import atomic_torch_save, load_torch_file, save_student_checkpoint
from robustdistiller_upstream.config import save_config, to_dict
from robustdistiller_upstream.enhance import EnhancementHead
from robustdistiller_upstream.enhance.metrics import enhancement_metrics
from robustdistiller_upstream.errors import TrainingError
from robustdistiller_upstream.files import read_jsonl, remove_stale_temporaries, write_jsonl_atomic
from robustdistiller_upstream.model import StudentModel
from robustdistiller_upstream.objectives import build_objective
from robustdistiller_upstream.teacher import Teacher, align_frames, init_student_from_teacher
from robustdistiller_upstream.train.config import PretrainConfig
from robustdistiller_upstream.train.data import Batch, BatchStream, load_corpus
from robustdistiller_upstream.train.guard import UpdateGuard
from robustdistiller_upstream.train.optim import build_s3prl_optimizer
from robustdistiller_upstream.train.task import DistillationTask

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
    """Reads torchrun's environment, or in a submitit job (``--launcher slurm``) the job's (rank, world size, local
    rank, master address: ``submitit.JobEnvironment``); starts gloo (CPU) or nccl (CUDA ``device``, or ``auto`` on a
    CUDA machine) when there is more than one process."""
    if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):
        from robustdistiller_upstream.cluster.slurm import export_torch_environment

        export_torch_environment()
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
    """Counters that travel in the resume file."""

    step: int = 0
    skipped_files: int = 0
    nonfinite_steps: int = 0
    nonfinite_streak: int = 0
    snrs: list[float] = field(default_factory=list)  # since the last log (not saved)


class Trainer:
    """Builds everything from a ``PretrainConfig`` and runs ``run.total_steps`` optimizer steps."""

    def __init__(self, config: PretrainConfig, exp_dir: str | Path, resume: bool = False) -> None:
        self.config = config
        self.exp_dir = Path(exp_dir)
        run = config.run
        self.env = setup_distributed(run.device)
        self.device = pick_device(run.device, self.env)
        if run.threads > 0:
            torch.set_num_threads(run.threads)
        if resume and not checkpoints(self.exp_dir):
            raise TrainingError(f"--resume: no resume-step*.pt in {self.exp_dir}")
        if not resume and self.env.main and (checkpoints(self.exp_dir) or list(self.exp_dir.glob("student-step*.ckpt"))):
            raise TrainingError(f"{self.exp_dir} already holds checkpoints: pass --resume or pick another -n name")
        seed_everything(run.seed)

        self.teacher = Teacher(config.teacher, config.student.pred_layer_id).to(self.device)
        self.teacher.train(config.teacher.dropout)  # the reference runner's .train() reaches the teacher too
        student = StudentModel(config.student)
        if config.student_init:
            init_student_from_teacher(student, self.teacher.upstream)
        objective = build_objective(config.objective.name, config.objective.options, config.student.final_dim,
                                    self.teacher.dim, config.student.pred_layer_id)
        head = EnhancementHead(config.enhance, config.student.extractor_dim) if config.enhance.enabled else None
        self.task = DistillationTask(student, objective, head, config.enhance.weight).to(self.device)
        # every rank starts from the same weights and draws its own dropout masks
        seed_everything(run.seed + self.env.rank)

        self.contaminator = None
        if config.denoising.enabled:
            self.contaminator = Contaminator(config.denoising.contamination, *build_banks(config.denoising.banks))
        elif config.enhance.enabled:
            logger.warning("enhance.enabled without denoising.enabled: the head learns to pass clean speech through")

        self.optimizer, self.scheduler = build_s3prl_optimizer(self.task, config.optim, run.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=run.amp == "fp16")
        utterances, unreadable = load_corpus(config.data)
        self.stream = BatchStream(config.data, utterances, self.env.rank, self.env.world_size)
        self.progress = Progress(skipped_files=unreadable)
        self.guard = UpdateGuard(self.device, run.amp == "fp16", run.max_bad_steps)
        self._student_frames: dict[int, int] = {}  # by batch width: computed once, on the host
        if resume:
            if self.env.main:
                remove_stale_temporaries(self.exp_dir)  # half-written checkpoints of the killed run
            self._load(checkpoints(self.exp_dir)[-1][1])
        elif self.env.main:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
            (self.exp_dir / "log.jsonl").unlink(missing_ok=True)
        if self.env.main:  # the recipe as run (a resume may change e.g. run.total_steps)
            save_config(config, self.exp_dir / "config.yaml")

        model: nn.Module = self.task
        if self.env.enabled:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.model = torch.compile(model) if run.compile else model
        self.writer = None
        if self.env.main:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(self.exp_dir / "tb"), purge_step=self.progress.step + 1)

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
        }

    def _load(self, path: Path) -> None:
        state = load_torch_file(path)
        if state["world_size"] != self.env.world_size:
            raise TrainingError(f"{path}: saved by {state['world_size']} processes, resumed with {self.env.world_size}")
        if "last_lr" not in state["scheduler"]:  # torch AdamW + LambdaLR, before the reference optimizer (issue 14)
            raise TrainingError(f"{path}: written with the earlier optimizer (torch AdamW, 1e-6 decay on every "
                                f"parameter), not the reference's (docs/fidelity.md): resume it with the "
                                f"robustdistiller version that wrote it, or start a new run (-n another name)")
        self.task.load_state_dict(state["task"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.stream.load_state_dict(state["data"])
        set_rng_state(state["rng"][self.env.rank])
        self.progress = Progress(step=int(state["step"]), **state["counters"])
        if self.env.main:
            self._truncate_log(self.progress.step)
        logger.info("resumed from %s at step %d", path, self.progress.step)

    def _truncate_log(self, step: int) -> None:
        """Drops log lines of steps after ``step`` (written by the run that was killed after its checkpoint)."""
        log = self.exp_dir / "log.jsonl"
        if log.exists():
            write_jsonl_atomic(log, [r for r in read_jsonl(log) if r.get("step", step + 1) <= step])

    def save(self) -> Optional[Path]:
        """Writes ``student-step<N>.ckpt`` and ``resume-step<N>.pt`` (atomically), keeps the newest ``max_keep``."""
        state = self._state()  # a collective under DDP: every rank takes part
        if not self.env.main:
            return None
        step = self.progress.step
        extra = {"teacher": to_dict(self.config.teacher), "recipe": to_dict(self.config), "step": step}
        student_path = save_student_checkpoint(self.exp_dir / f"student-step{step}.ckpt", self.task.student, extra)
        atomic_torch_save(state, self.exp_dir / f"resume-step{step}.pt")
        keep = self.config.run.max_keep
        for old_step, old in checkpoints(self.exp_dir)[:-keep] if keep > 0 else []:
            old.unlink(missing_ok=True)
            (self.exp_dir / f"student-step{old_step}.ckpt").unlink(missing_ok=True)
        return student_path

    # ---------------------------------------------------------------- one step
    def _batches(self) -> Iterator[Batch]:
        for batch in self.stream:
            self.progress.skipped_files += batch.skipped
            if batch.skipped:
                logger.warning("%d unreadable corpus file(s) skipped so far", self.progress.skipped_files)
            if len(batch.paths):
                yield batch

    def _micro_step(self, batch: Batch, micro: int, sync: bool):
        clean = batch.wav.to(self.device, non_blocking=True)
        lengths = batch.lengths.to(self.device, non_blocking=True)  # a blocking copy waits for the device
        width = clean.shape[1]
        if width not in self._student_frames:
            self._student_frames[width] = int(self.task.student.frame_lengths(torch.tensor([width]))[0])
        # the teacher and the contaminator read lengths on the host: the loader's copy spares a sync
        targets = self.teacher(clean, batch.lengths)
        _, targets = align_frames(self._student_frames[width], targets, self.config.teacher.max_frame_diff,
                                  self.config.teacher.name)
        noisy = clean
        if self.contaminator is not None:
            # one draw per (utterance, step, micro-step): stateless, so resume and DDP replay it exactly
            ids = [f"{Path(path).name}@{self.progress.step}.{micro}" for path in batch.paths]
            noisy, records = self.contaminator(clean, batch.lengths, step=self.progress.step, utt_ids=ids)
            if self.env.main:  # for the SNR histogram, which rank 0 writes
                self.progress.snrs.extend(r.snr_db for r in records if r.snr_db is not None)
        amp = self.config.run.amp
        autocast = torch.autocast(self.device.type, dtype=AMP_DTYPES[amp]) if amp != "none" else nullcontext()
        no_sync = self.model.no_sync() if (self.env.enabled and not sync and hasattr(self.model, "no_sync")) else nullcontext()
        with no_sync:
            with autocast:
                loss, terms, enhanced = self.model(noisy, lengths, targets, clean)
            self.scaler.scale(loss / self.config.optim.accumulate).backward()
        return terms, (enhanced, noisy, clean, lengths)

    def train_step(self, batches: Iterator[Batch]) -> tuple[dict[str, Tensor], Any]:
        """One optimizer step over ``optim.accumulate`` micro-batches; returns the averaged terms and the gradient
        norm (0-d tensors on the device: reading them is a host sync, which ``fit`` makes on log steps only) and
        the last batch. Makes no host read itself (``UpdateGuard``)."""
        accumulate = self.config.optim.accumulate
        sums: dict[str, Tensor] = {}
        for micro in range(accumulate):
            terms, last = self._micro_step(next(batches), micro, sync=micro == accumulate - 1)
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value.float() / accumulate
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.task.parameters(), self.config.optim.clip_grad_norm)
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
        record = {"step": step, **terms, "lr": self.scheduler.get_last_lr()[0], "seconds_per_step": seconds,
                  "skipped_files": self.progress.skipped_files, "nonfinite_steps": self.progress.nonfinite_steps}
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
        for key, value in record.items():
            if key != "step":
                self.writer.add_scalar(key.replace("_", "/", 1) if key.startswith(("enhance_", "noisy_")) else key,
                                       value, step)
        if self.progress.snrs:
            self.writer.add_histogram("snr_db", np.asarray(self.progress.snrs), step)

    # ---------------------------------------------------------------- loop
    def fit(self) -> Optional[Path]:
        """Trains to ``run.total_steps``; returns the last student checkpoint (rank 0) or None."""
        run = self.config.run
        self.task.train()
        batches = self._batches()
        bar = tqdm(total=run.total_steps, initial=self.progress.step, disable=not self.env.main, desc="pretrain",
                   dynamic_ncols=True)
        since = (self.progress.step, time.perf_counter())  # the last log: steps are timed between logs
        while self.progress.step < run.total_steps:
            terms, last = self.train_step(batches)
            step = self.progress.step
            log = step % run.log_every == 0 or step == run.total_steps
            save = (run.save_every and step % run.save_every == 0) or step == run.total_steps
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
        if self.writer is not None:
            self.writer.close()
        if self.progress.skipped_files:
            logger.warning("%d unreadable corpus file(s) were skipped", self.progress.skipped_files)
        return self.exp_dir / f"student-step{self.progress.step}.ckpt" if self.env.main else None


def pretrain(config: PretrainConfig, exp_dir: str | Path, resume: bool = False) -> Optional[Path]:
    """Builds a ``Trainer`` and runs it; tears the process group down at the end."""
    try:
        return Trainer(config, exp_dir, resume).fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
