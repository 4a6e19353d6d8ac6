"""Cost of one distillation-objective step (forward + backward) at the recipe's sizes, every objective side by side.

Inputs as in DESIGN 1: a batch of 24 utterances of 15.6 s (781 frames at 20 ms), 3 distilled teacher layers of
768-d; the student side is 768-d (``layerwise``, ``correlation``) or 384-d (``cosine_bottleneck``, the small
preset). Prints the best of ``--repeats`` times after one warm-up, and the ratio to ``layerwise`` (DistilHuBERT's
L1 + cosine, the baseline every other objective is an alternative to). Run:
``python bench/objectives_cost.py [--device cpu|cuda] [--batch 24] [--frames 781] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from robustdistiller_upstream.objectives import build_objective

LAYERS = [4, 8, 12]
TEACHER_DIM = 768
CASES = [  # (label, objective name, options, student width)
    ("layerwise (L1 + cos)", "layerwise", {}, 768),
    ("correlation, frames", "correlation", {"correlate_over": "frames"}, 768),
    ("correlation, batch (150 segments)", "correlation", {"correlate_over": "batch"}, 768),
    ("cosine_bottleneck 384 -> 768", "cosine_bottleneck", {}, 384),
]


def time_step(objective, student, teacher, mask, device: torch.device, repeats: int) -> float:
    best = float("inf")
    for i in range(repeats + 1):
        leaves = [s.detach().requires_grad_() for s in student]
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        objective(leaves, teacher, mask).loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first run warms up
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--frames", type=int, default=781)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    teacher = [torch.randn(args.batch, args.frames, TEACHER_DIM, device=device) for _ in LAYERS]
    lengths = torch.linspace(args.frames // 2, args.frames, args.batch, device=device).long()
    mask = torch.arange(args.frames, device=device) < lengths[:, None]
    print(f"{args.batch} x {args.frames} frames, layers {LAYERS}, teacher {TEACHER_DIM}-d, device {device}")
    baseline = None
    for label, name, options, width in CASES:
        objective = build_objective(name, options, width, TEACHER_DIM, LAYERS).to(device)
        student = [torch.randn(args.batch, args.frames, width, device=device) for _ in LAYERS]
        seconds = time_step(objective, student, teacher, mask, device, args.repeats)
        baseline = baseline or seconds
        print(f"{label:36s} {seconds * 1e3:9.1f} ms   x{seconds / baseline:.1f} of layerwise")


if __name__ == "__main__":
    main()
