"""Feature extraction speed: our `robustdistiller_local` vs stock s3prl `distiller_local`, same weights, same audio.

    python bench/upstream_speed.py                      # CPU, 4 x 10 s, fp32 (DESIGN 4's setting)
    python bench/upstream_speed.py --device cuda --batch 16 --autocast bf16

Both upstreams load one checkpoint written by s3prl's own DistillerModel (random init), run in eval mode under
no_grad on identical inputs; the best of --repeats timed runs (after one warm-up) is reported, in alternating order.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the longest utterance")
    parser.add_argument("--ragged", action="store_true", help="lengths spread from 50%% to 100%% of --seconds")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--autocast", choices=["none", "bf16", "fp16"], default="none")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import s3prl.hub as hub
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

    from robustdistiller_upstream.model import StudentConfig

    distiller = StudentConfig().to_s3prl()  # the DESIGN 1 student in s3prl's vocabulary

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        ckpt = Path(tmp) / "distiller.ckpt"
        torch.save({"Config": {"distiller": distiller},
                    "Distiller": DistillerModel(DistillerConfig(dict(distiller))).state_dict()}, ckpt)
        upstreams = {
            "stock distiller_local": hub.distiller_local(ckpt=str(ckpt)),
            "robustdistiller_local": hub.robustdistiller_local(ckpt=str(ckpt)),
        }
    device = torch.device(args.device)
    n = int(args.seconds * 16000)
    generator = torch.Generator().manual_seed(0)
    lengths = [n - (i * n // (2 * args.batch) if args.ragged else 0) for i in range(args.batch)]
    wavs = [(torch.randn(length, generator=generator) * 0.1).to(device) for length in lengths]
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.autocast)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for upstream in upstreams.values():
        upstream.to(device).eval()
    best = {name: float("inf") for name in upstreams}
    outputs = {}
    with torch.no_grad():
        for name, upstream in upstreams.items():  # warm-up
            with autocast():
                outputs[name] = [h.float() for h in upstream(wavs)["hidden_states"]]
        for _ in range(args.repeats):
            for name, upstream in upstreams.items():
                sync()
                start = time.perf_counter()
                with autocast():
                    upstream(wavs)
                sync()
                best[name] = min(best[name], time.perf_counter() - start)

    stock, ours = outputs.values()
    max_diff = max((a - b).abs().max().item() for a, b in zip(stock, ours))
    audio = sum(lengths) / 16000
    print(f"device {args.device}, {torch.get_num_threads()} threads, autocast {args.autocast}, "
          f"batch {args.batch} x {args.seconds:g} s{' (ragged)' if args.ragged else ''}, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"  {name:24s} {seconds:7.3f} s  ({audio / seconds:6.1f}x real time)")
    print(f"  speed-up (stock / ours)  {best['stock distiller_local'] / best['robustdistiller_local']:.2f}x")
    print(f"  max |difference| of the 6 hidden states: {max_diff:.2e}")


if __name__ == "__main__":
    main()
