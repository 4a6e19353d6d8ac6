"""Upstream forward time: a pruned WavLM Base+ (our ``robustdistiller_dpwavlm_local``) vs the stock s3prl
``wavlm_local`` it was pruned from, in one run, same audio.

The teacher is a randomly initialised WavLM Base+-sized model in s3prl's format. The pruned model gets its sizes
from the sparsity controller alone (``--sparsity``, gates on CNN channels, heads and FFN units, 250 steps), and
then the export. Only the sizes matter for speed. Also timed: our model code at full size (the unpruned copy), to
show the code itself costs nothing. Prints seconds (min of ``--repeats`` after a warm-up) and the ratio.

Run: ``python bench/dpwavlm_speed.py [--device cpu|cuda] [--batch 4] [--seconds 10] [--sparsity 0.75]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import s3prl.hub as hub
from robustdistiller_upstream.prune.checkpoint import save_pruned_checkpoint
from robustdistiller_upstream.prune.convert import model_from_teacher
from robustdistiller_upstream.prune.export import export_pruned
from robustdistiller_upstream.prune.params import expected_num_params, num_params
from robustdistiller_upstream.prune.sparsity import LagrangianController, SparsityConfig
from robustdistiller_upstream.random_teacher import write_wavlm_checkpoint
from robustdistiller_upstream.s3prl_plugin.dpwavlm import robustdistiller_dpwavlm_local

BASE_PLUS = {"encoder_layers": 12, "encoder_embed_dim": 768, "encoder_ffn_embed_dim": 3072,
             "encoder_attention_heads": 12, "conv_pos": 128, "conv_pos_groups": 16,
             "conv_feature_layers": "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"}
UNITS = {"extractor_prune_conv_channels": True, "encoder_prune_attention_heads": True,
         "encoder_prune_feed_forward_intermediate": True}


def controller_gates(teacher: Path, sparsity: float, steps: int = 250):
    """A gated copy whose gates only the Lagrangian controller has moved."""
    model = model_from_teacher(teacher, UNITS)
    config = SparsityConfig(target=sparsity, warmup_steps=steps // 2, reg_lr=0.1)
    controller = LagrangianController(config, num_params(model))
    optimizer = torch.optim.AdamW([{"params": model.gate_parameters()}, {"params": list(controller.parameters())}],
                                  lr=config.reg_lr, weight_decay=0.0)
    for step in range(steps):
        loss, _ = controller(expected_num_params(model), step)
        optimizer.zero_grad()
        loss.backward()
        controller.ascend()
        optimizer.step()
    return model


def best_time(step, repeats: int, device: torch.device) -> float:
    """Seconds of ``step()``: the fastest of ``repeats`` after a warm-up call, the device synchronised."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    step()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def timed(expert, wavs, repeats: int, device: torch.device) -> float:
    with torch.inference_mode():
        return best_time(lambda: expert(wavs), repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sparsity", type=float, default=0.75)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    wavs = [torch.randn(int(args.seconds * 16000), device=device) * 0.1 for _ in range(args.batch)]
    with tempfile.TemporaryDirectory() as tmp:
        teacher = write_wavlm_checkpoint(Path(tmp) / "wavlm_base_plus.pt", **BASE_PLUS)
        pruned = save_pruned_checkpoint(Path(tmp) / "pruned.pth",
                                        export_pruned(controller_gates(teacher, args.sparsity)))
        full = save_pruned_checkpoint(Path(tmp) / "full.pth", model_from_teacher(teacher))
        reference = hub.wavlm_local(ckpt=str(teacher)).to(device).eval()
        ours_full = robustdistiller_dpwavlm_local(ckpt=str(full)).to(device).eval()
        ours = robustdistiller_dpwavlm_local(ckpt=str(pruned)).to(device).eval()
        rows = [("s3prl wavlm_local (full)", reference), ("ours, full size", ours_full), ("ours, pruned", ours)]
        results = {name: (timed(expert, wavs, args.repeats, device),
                          sum(p.numel() for p in expert.parameters())) for name, expert in rows}
    print(f"device {device}, threads {torch.get_num_threads()}, {args.batch} x {args.seconds:g} s, "
          f"sparsity target {args.sparsity}")
    for name, (seconds, params) in results.items():
        print(f"  {name:<26} {params / 1e6:7.2f}M params  {seconds:7.3f} s")
    base = results["s3prl wavlm_local (full)"][0]
    print(f"  speed-up of the pruned model over the stock full one: {base / results['ours, pruned'][0]:.2f}x; "
          f"our full-size code vs stock: {base / results['ours, full size'][0]:.2f}x")


if __name__ == "__main__":
    main()
