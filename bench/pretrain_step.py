"""One pretraining step: ours vs an s3prl-style reference step, same batch, same models, one run.

- ours: the ``Trainer`` step as the training loop runs it, NaN guard included: teacher in ``--teacher-precision``,
  contamination batched on the training device from banks decoded once (``Contaminator``), student under
  ``--amp``, the enhancement head (RobustDistiller);
- reference: the reference recipe's path: fp32 teacher, per-utterance contamination on the CPU (disk reads,
  resampling, ``scipy.signal.convolve``: ``contamination_speed.per_utterance_baseline``), copy to the device,
  then the same student/objective/head step, with stock s3prl's NaN check (a NaN gradient norm skips the update).

Every utterance gets noise at an SNR then reverberation on both sides (the costliest op). Teacher: a randomly
initialised WavLM Base+-sized model in s3prl's ``wavlm_local`` format (``--teacher tiny`` for a quick run);
student: the RobustDistiller student (DESIGN 1). Each variant runs in its own process, ``--rounds`` times, the
pairs in alternating order (a shared machine's load weighs on both alike). Reports seconds and CPU seconds of the
process (min over ``--repeats`` steps after a warm-up and over the rounds), peak memory (max over the rounds;
CUDA: ``max_memory_allocated``; CPU: peak RSS growth during the steps, sampled every 2 ms), the CPU model and the
load average, and, on CUDA, model
FLOPs utilisation (``torch.utils.flop_counter`` FLOPs / time / ``--peak-tflops``); with a reduced-precision
teacher, the fidelity of its targets to fp32 ones on the same batch.

``--profile`` adds where a step's time goes, ours beside the reference's (mean of ``--repeats`` steps: teacher
forward, contamination, student forward, losses, enhancement head, backward, optimizer; CUDA events on CUDA,
wall and CPU seconds on the CPU) and the host-device
synchronisations one step makes, by call site (``train.syncs.HostReads``: torch's sync debug mode on CUDA; on the
CPU, the value reads in our code that would sync).

Run: ``python bench/pretrain_step.py [--device cpu|cuda] [--batch 4] [--seconds 4] [--amp bf16]
[--teacher-precision bf16] [--teacher base|tiny] [--threads N] [--repeats 3] [--rounds 2] [--profile]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from contamination_speed import make_banks, per_utterance_baseline
from machine import cpu_model
from robustdistiller_upstream.audio import write_audio_atomic
from robustdistiller_upstream.config import from_dict
from robustdistiller_upstream.random_teacher import write_wavlm_checkpoint
from robustdistiller_upstream.synthetic import synthetic_speech
from robustdistiller_upstream.teacher import Teacher, align_frames
from robustdistiller_upstream.train.config import PretrainConfig
from robustdistiller_upstream.train.recipe import PretrainRecipe
from robustdistiller_upstream.train.data import Utterance, write_manifest
from robustdistiller_upstream.train.runner import AMP_DTYPES, Trainer
from robustdistiller_upstream.train.syncs import HostReads

BASE_TEACHER = {"encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072,
                "encoder_attention_heads": 12, "conv_pos": 128, "conv_pos_groups": 16,
                "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"}
TINY_STUDENT = {"extractor_conv_layers": [[64, 10, 5]] + [[64, 3, 2]] * 4 + [[64, 2, 2]] * 2, "encoder_embed_dim": 64,
                "encoder_ffn_embed_dim": 128, "encoder_attention_heads": 4, "conv_pos": 16, "conv_pos_groups": 4,
                "pred_layer_id": [1, 2], "final_dim": 64}
# dense bf16/fp16 tensor-core peaks (TFLOP/s) by device-name substring
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "V100": 125.0}


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or CPU resident-set growth sampled from /proc."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        self._start, self._max, self._stop = self._rss(), 0, threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self._max = max(self._max, self._rss())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated()
            return
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self._max, self._rss()) - self._start


class StepProfile:
    """Timestamps at the boundaries of one of our steps (module hooks, optimizer hooks, the last gradient
    accumulated), CUDA events on CUDA, ``perf_counter`` and ``process_time`` on the CPU; ``phases()`` turns them
    into seconds (on the CPU also CPU seconds of the process: on a shared machine, what a phase costs without the
    time it waited for a core)."""

    # (label, first mark, last mark); the marks a step sets, in order
    PHASES = [("teacher forward", "teacher<", "teacher>"), ("contamination", "contaminate<", "contaminate>"),
              ("student forward", "student<", "student>"), ("distillation loss", "objective<", "objective>"),
              ("enhancement head", "head<", "head>"), ("enhancement loss", "head>", "task>"),
              ("backward", "task>", "grads>"), ("clipping, guard", "grads>", "optimizer<"),
              ("optimizer", "optimizer<", "optimizer>"), ("guard, zero_grad, schedule", "optimizer>", "end")]

    def __init__(self, trainer: Trainer) -> None:
        self.cuda = trainer.device.type == "cuda"
        self.marks: dict[str, object] = {}
        self.totals: dict[str, list[float]] = {}  # label: [seconds, CPU seconds]
        self.steps = 0
        task = trainer.task
        for name, module in (("teacher", trainer.teacher), ("student", task.student), ("objective", task.objective),
                             ("head", task.head), ("task", task)):
            if module is not None:
                module.register_forward_pre_hook(lambda *_, n=name: self.mark(n + "<"))
                module.register_forward_hook(lambda *_, n=name: self.mark(n + ">"))
        for p in task.parameters():  # the last one to fire ends the backward pass
            p.register_post_accumulate_grad_hook(lambda _: self.mark("grads>"))
        trainer.optimizer.register_step_pre_hook(lambda *_: self.mark("optimizer<"))
        trainer.optimizer.register_step_post_hook(lambda *_: self.mark("optimizer>"))
        if trainer.contaminator is not None:
            trainer.contaminator = _Marked(trainer.contaminator, self, "contaminate")

    def mark(self, name: str) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks[name] = event
        else:
            self.marks[name] = (time.perf_counter(), time.process_time())

    def _seconds(self, start: str, end: str) -> tuple[float, float]:
        """(seconds, CPU seconds; 0 on CUDA) from mark ``start`` to mark ``end``."""
        a, b = self.marks[start], self.marks[end]
        if self.cuda:
            return a.elapsed_time(b) / 1000, 0.0
        return b[0] - a[0], b[1] - a[1]

    def _add(self, label: str, seconds: tuple[float, float]) -> None:
        total = self.totals.setdefault(label, [0.0, 0.0])
        total[0] += seconds[0]
        total[1] += seconds[1]

    def step(self, fn) -> None:
        """Runs one step ``fn()`` and adds its phases to the totals."""
        self.marks.clear()
        self.mark("start")
        fn()
        self.mark("end")
        if self.cuda:
            torch.cuda.synchronize()
        total = self._seconds("start", "end")
        named = [0.0, 0.0]
        for label, start, end in self.PHASES:
            if start in self.marks and end in self.marks:
                seconds = self._seconds(start, end)
                self._add(label, seconds)
                named = [named[0] + seconds[0], named[1] + seconds[1]]
        self._add("other (copies, frame alignment)", (total[0] - named[0], total[1] - named[1]))
        self._add("step", total)
        self.steps += 1

    def phases(self) -> dict[str, tuple[float, float]]:
        """Mean (seconds, CPU seconds; 0 on CUDA) per step by phase (and ``step``: the whole step)."""
        return {label: (wall / self.steps, cpu / self.steps) for label, (wall, cpu) in self.totals.items()}


class _Marked:
    """A callable that marks its start and end in a ``StepProfile`` (the contaminator is no module)."""

    def __init__(self, fn, profile: StepProfile, name: str) -> None:
        self.fn, self.profile, self.name = fn, profile, name

    def __call__(self, *args, **kwargs):
        self.profile.mark(self.name + "<")
        out = self.fn(*args, **kwargs)
        self.profile.mark(self.name + ">")
        return out


def reference_step(trainer: Trainer, batch, noise_files, rir_files, rng, contaminate=per_utterance_baseline) -> float:
    """The s3prl-style step (the trainer's teacher is fp32 here), with stock s3prl's own NaN check
    (``s3prl/pretrain/runner.py``: a NaN gradient norm, read on the host, skips the update); returns the loss."""
    device, task, teacher = trainer.device, trainer.task, trainer.teacher
    noisy = torch.from_numpy(contaminate(batch.wav.numpy(), noise_files, rir_files, rng)).to(device)
    clean, lengths = batch.wav.to(device), batch.lengths.to(device)
    frames = int(task.student.frame_lengths(lengths.new_tensor([clean.shape[1]]))[0])
    _, targets = align_frames(frames, teacher(clean, lengths), teacher.config.max_frame_diff, teacher.config.name)
    amp = trainer.config.run.amp
    with torch.autocast(device.type, dtype=AMP_DTYPES[amp]) if amp != "none" else nullcontext():
        loss, _, _ = task(noisy, lengths, targets, clean)
    trainer.scaler.scale(loss).backward()
    trainer.scaler.unscale_(trainer.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(task.parameters(), trainer.config.optim.clip_grad_norm)
    if trainer.scaler.is_enabled():
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
    elif not math.isnan(grad_norm):
        trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    return loss.item()


def timed(fn, device: torch.device, repeats: int) -> tuple[float, float, int]:
    """(min seconds of ``repeats`` calls after a warm-up, min CPU seconds of this process (all threads) per call,
    peak bytes from before the warm-up on). CPU time is what the step costs on a machine other jobs share: waiting
    for a core does not count in it."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, cpu_times = [], []
    with PeakMemory(device) as memory:
        fn()  # warm-up
        sync()
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            fn()
            sync()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    return min(times), min(cpu_times), memory.peak_bytes


def target_fidelity(teacher: Teacher, batch, device: torch.device) -> dict[str, float]:
    """The reduced-precision teacher's targets vs fp32 ones on ``batch``: mean/min frame cosine, relative L1."""
    fp32 = Teacher(dataclasses.replace(teacher.config, precision="fp32"), teacher.layers, upstream=teacher.upstream)
    wav, lengths = batch.wav.to(device), batch.lengths.to(device)
    low, high = teacher(wav, lengths), fp32(wav, lengths)
    cos = torch.cat([torch.nn.functional.cosine_similarity(a, b, dim=-1).flatten() for a, b in zip(low, high)])
    rel = sum(float((a - b).abs().mean() / b.abs().mean()) for a, b in zip(low, high)) / len(low)
    return {"target_cos_mean": float(cos.mean()), "target_cos_min": float(cos.min()), "target_rel_l1": rel}


def build(args: argparse.Namespace, root: Path, precision: str) -> Trainer:
    """Banks, a corpus of ``--batch`` utterances, the teacher checkpoint and a Trainer on them."""
    seconds, batch_size = args.seconds, args.batch
    noise_dir, rir_dir = make_banks(root)
    utterances = []
    for i in range(batch_size):
        path = write_audio_atomic(root / "corpus" / f"u{i}.wav", synthetic_speech(seconds, seed=i), 16000)
        utterances.append(Utterance(str(path), int(seconds * 16000)))
    manifest = write_manifest(utterances, root / "corpus.csv")
    teacher_ckpt = write_wavlm_checkpoint(root / "teacher.pt", **(BASE_TEACHER if args.teacher == "base" else {}))
    config = from_dict(PretrainConfig, {
        "teacher": {"name": "wavlm_local", "ckpt": str(teacher_ckpt), "precision": precision},
        "student": {} if args.teacher == "base" else TINY_STUDENT,
        "denoising": {"enabled": True,
                      "contamination": {"p_clean": 0, "p_noise": 0, "p_reverb": 0, "p_noise_reverb": 1,
                                        "p_file_noise": 1.0},
                      "banks": {"noises": [{"kind": "folder", "path": str(noise_dir)}],
                                "rirs": [{"kind": "folder", "path": str(rir_dir)}],
                                "cache_dir": str(root / "cache")}},
        "enhance": {"enabled": True},
        "data": {"manifests": [str(manifest)], "sequence_length": int(seconds * 16000), "batch_size": batch_size,
                 "num_workers": 0},
        "run": {"device": args.device, "amp": args.amp, "total_steps": 1000},
    })
    return Trainer(PretrainRecipe(config), root / "exp")


def measure(args: argparse.Namespace) -> dict:
    """One variant (``args.only``) in this process: seconds, peak bytes and, for ours on CUDA, FLOPs."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        trainer = build(args, root, args.teacher_precision if args.only == "ours" else "fp32")
        batch = next(trainer._batches())
        result: dict = {}
        if args.only == "ours":
            step = lambda: trainer.train_step(itertools.repeat(batch))  # noqa: E731
        else:
            files = (sorted((root / "noise").glob("*.wav")), sorted((root / "rirs").glob("*.wav")))
            rng = np.random.default_rng(0)
            contaminate = per_utterance_baseline  # read when the step runs: --profile marks it below
            step = lambda: reference_step(trainer, batch, *files, rng, contaminate)  # noqa: E731
        result["seconds"], result["cpu_seconds"], result["peak_bytes"] = timed(step, trainer.device, args.repeats)
        if args.only == "ours" and trainer.device.type == "cuda":
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                step()
            result["flops"] = counter.get_total_flops()
            result["device_name"] = torch.cuda.get_device_name(trainer.device)
        if args.only == "ours" and args.teacher_precision != "fp32":
            result.update(target_fidelity(trainer.teacher, batch, trainer.device))
        if args.profile:
            profile = StepProfile(trainer)
            if args.only == "reference":
                contaminate = _Marked(per_utterance_baseline, profile, "contaminate")
            for _ in range(args.repeats):
                profile.step(step)
            result["phases"] = profile.phases()
        if args.only == "ours" and args.profile:
            # host memory: the loader's batch, and the guard's copy of the last verdict (on CUDA read a step late)
            with HostReads(trainer.device, host=(batch.wav, batch.lengths, trainer.guard.verdict)) as reads:
                step()
            result["syncs"], result["host_reads"], result["torch_reads"] = reads.syncs, reads.host, reads.torch
        result["threads"] = torch.get_num_threads()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="utterances (default: 24 on CUDA, 2 on CPU)")
    parser.add_argument("--seconds", type=float, default=None, help="crop length (default: 15.625 on CUDA, 4 on CPU)")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default=None, help="default: bf16 on CUDA")
    parser.add_argument("--teacher-precision", choices=["fp32", "bf16", "fp16"], default=None)
    parser.add_argument("--teacher", choices=["base", "tiny"], default="base")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after the warm-up (min is reported)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="process pairs, in alternating order (ours first, then reference first...): the min "
                             "seconds and the max peak of each variant are reported")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: by name)")
    parser.add_argument("--profile", action="store_true", help="where our step's time goes, and its host syncs")
    parser.add_argument("--only", choices=["ours", "reference"], help=argparse.SUPPRESS)  # one variant, JSON out
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cuda = args.device.startswith("cuda")
    args.batch = args.batch or (24 if cuda else 2)
    args.seconds = args.seconds or (15.625 if cuda else 4.0)
    args.amp = args.amp or ("bf16" if cuda else "none")
    args.teacher_precision = args.teacher_precision or ("bf16" if cuda else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only:
        print(json.dumps(measure(args)))
        return
    # each variant in a fresh process: equal starting memory, no shared allocator or cache state; the pairs
    # alternate their order, so a load that comes and goes on a shared machine weighs on both alike
    load = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {"ours": [], "reference": []}
    for round_ in range(args.rounds):
        for variant in ("ours", "reference")[::1 if round_ % 2 == 0 else -1]:
            command = [sys.executable, __file__, *sys.argv[1:], "--only", variant]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
    ours, ref = ({**r[0], **{key: min(x[key] for x in r) for key in ("seconds", "cpu_seconds")},
                  "peak_bytes": max(x["peak_bytes"] for x in r)} for r in (runs["ours"], runs["reference"]))
    audio = args.batch * args.seconds
    where = ours.get("device_name", f"{cpu_model()}, {ours['threads']} threads")
    print(f"device {args.device} ({where}), batch {args.batch} x {args.seconds:g} s, teacher {args.teacher} "
          f"(ours {args.teacher_precision}, reference fp32), student amp {args.amp}; load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f}")
    for name, r in runs.items():
        print(f"{name} per round: seconds " + " ".join(f"{x['seconds']:.3f}" for x in r) + ", CPU seconds "
              + " ".join(f"{x['cpu_seconds']:.3f}" for x in r) + ", peak MiB "
              + " ".join(f"{x['peak_bytes'] / 2**20:.0f}" for x in r))
    print(f"{'':<10} {'seconds':>8} {'CPU s':>8} {'peak MiB':>9} {'audio s/s':>10}")
    for name, r in (("ours", ours), ("reference", ref)):
        print(f"{name:<10} {r['seconds']:>8.3f} {r['cpu_seconds']:>8.3f} {r['peak_bytes'] / 2**20:>9.0f} "
              f"{audio / r['seconds']:>10.1f}")
    print(f"speed-up (reference / ours): {ref['seconds'] / ours['seconds']:.2f}x, in CPU time "
          f"{ref['cpu_seconds'] / ours['cpu_seconds']:.2f}x; "
          f"peak memory (reference / ours): {ref['peak_bytes'] / max(ours['peak_bytes'], 1):.2f}x")
    if "target_cos_mean" in ours:
        print(f"teacher {args.teacher_precision} targets vs fp32: frame cosine mean {ours['target_cos_mean']:.4f}, "
              f"min {ours['target_cos_min']:.4f}; relative L1 {ours['target_rel_l1']:.4f}")
    if "flops" in ours:
        peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in ours["device_name"]), None)
        rate = ours["flops"] / ours["seconds"]
        mfu = f"{rate / (peak * 1e12):.1%} of {peak:g} TFLOP/s" if peak else "unknown peak (--peak-tflops)"
        print(f"model FLOPs per step {ours['flops'] / 1e12:.2f} TFLOP; ours {rate / 1e12:.1f} TFLOP/s; MFU {mfu}")
    if "phases" in ours:
        print_profile(ours, ref, args.device)


def print_profile(ours: dict, ref: dict, device: str) -> None:
    cpu = not device.startswith("cuda")
    columns = ("s", "CPU s") if cpu else ("s",)
    print("where a step goes (mean of the profiled steps of the first round; reference: its per-utterance "
          "contamination in 'contamination', its host NaN check in 'clipping, guard'):")
    print(f"  {'':<32}" + "".join(f" {f'{who} {c}':>15}" for who in ("ours", "reference") for c in columns))
    for label in ours["phases"]:
        values = [v for r in (ours, ref) for v in r["phases"].get(label, (0.0, 0.0))[:len(columns)]]
        print(f"  {label:<32}" + "".join(f" {v:>15.3f}" for v in values))
    syncs = sum(ours["syncs"].values())
    how = "torch sync debug mode" if device.startswith("cuda") else "value reads in our code that sync on CUDA"
    print(f"host-device synchronisations per step: {syncs} ({how})")
    for label, counts in (("sync", ours["syncs"]), ("host read, no sync", ours["host_reads"]),
                          ("read inside torch (CPU: host tensors)", ours["torch_reads"])):
        for site, n in sorted(counts.items(), key=lambda item: -item[1]):
            print(f"  {n:>4} {label}: {site}")


if __name__ == "__main__":
    main()
