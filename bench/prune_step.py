"""One RD-DPWavLM pruning step of the training loop (``Trainer.train_step`` in stage 1: teacher targets, gated
student forward + backward, controller, clipped AdamW step, NaN guard) in fp32 vs under bf16 autocast (and fp16
with a gradient scaler on CUDA), side by side in one run.

The teacher is a randomly initialised WavLM of ``--shape`` (``base_plus``: 12 x 768, the recipe's; ``tiny``: the
tests' 2 x 64) in s3prl's format, loaded through stock s3prl as ``robustdistiller prune`` loads it; the student is
its gated copy with the recipe's settings (``pretrain/rd_dpwavlm.yaml``: shared projections, projection-first
hidden state 0, raw cosine, no contamination). Prints seconds per step (min of ``--repeats`` after a warm-up
step), the ratio to fp32 and the CPU or GPU it ran on.

Run: ``python bench/prune_step.py [--device cpu|cuda] [--shape base_plus|tiny] [--batch 2] [--seconds 2]``.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import torch

from dpwavlm_speed import BASE_PLUS, best_time
from machine import cpu_model
from robustdistiller_upstream.audio import write_audio_atomic
from robustdistiller_upstream.config import from_dict, load_config, to_dict
from robustdistiller_upstream.prune.train import PruneConfig, PruneRecipe
from robustdistiller_upstream.random_teacher import write_wavlm_checkpoint
from robustdistiller_upstream.train.data import Batch, Utterance, write_manifest
from robustdistiller_upstream.train.runner import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "pretrain" / "rd_dpwavlm.yaml"
SHAPES = {"base_plus": (BASE_PLUS, [0, 4, 8, 12]),
          "tiny": ({"conv_feature_layers": "[(48,10,5)] + [(48,3,2)] * 4 + [(48,2,2)] * 2"}, [0, 1, 2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="base_plus")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes, layers = SHAPES[args.shape]
    amps = ["none", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    torch.manual_seed(0)
    samples = int(args.seconds * 16000)
    batch = Batch(torch.randn(args.batch, samples) * 0.1, torch.full((args.batch,), samples),
                  [f"u{i}" for i in range(args.batch)], 0)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        teacher = write_wavlm_checkpoint(root / "teacher.pt", **sizes)
        files = [write_audio_atomic(root / f"u{i}.wav", row.numpy(), 16000) for i, row in enumerate(batch.wav)]
        manifest = write_manifest([Utterance(str(f), samples) for f in files], root / "corpus.csv")
        base = to_dict(load_config(PruneConfig, RECIPE))
        for amp in amps:
            config = from_dict(PruneConfig, {
                **base, "distill_layers": layers, "denoising": {"enabled": False},
                "enhance": {**base["enhance"], "enabled": False},
                "teacher": {**base["teacher"], "ckpt": str(teacher), "precision": "fp32" if amp == "none" else amp},
                "data": {**base["data"], "manifests": [str(manifest)], "batch_seconds": 0, "batch_size": args.batch,
                         "num_workers": 0},
                "run": {**base["run"], "device": str(device), "amp": amp}})
            trainer = Trainer(PruneRecipe(config), root / f"exp-{amp}")
            results[amp] = best_time(lambda: trainer.train_step(itertools.repeat(batch)), args.repeats, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    print(f"device {device} ({where}), threads {torch.get_num_threads()}, shape {args.shape}, "
          f"{args.batch} x {args.seconds:g} s, recipe {RECIPE.name} (teacher autocast as the student's)")
    for amp, seconds in results.items():
        print(f"  {'fp32' if amp == 'none' else amp + ' autocast':<14} {seconds:8.3f} s/step  "
              f"{results['none'] / seconds:5.2f}x vs fp32")


if __name__ == "__main__":
    main()
