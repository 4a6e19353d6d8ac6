"""Feature extraction speed: our `robustdistiller_local` vs stock s3prl `distiller_local`, same weights, same audio.

    python bench/upstream_speed.py                                   # the sweep: 0.5-30 s x batch 1, 4 x 1, 2 threads
    python bench/upstream_speed.py --seconds 10 --batch 4 --threads 2   # one cell (DESIGN 4's setting)
    python bench/upstream_speed.py --device cuda --seconds 10 --batch 16 --autocast bf16

Both upstreams load one checkpoint written by s3prl's own DistillerModel (random init) and run in eval mode under
no_grad on identical inputs. Each cell (utterance length x batch x threads) reports the best of --repeats timed
runs after one warm-up, the two upstreams alternating, their ratio (stock time / ours: above 1, ours is faster) and
the largest difference between their hidden states (the tests hold it within 1e-4).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

from machine import cpu_model

TOLERANCE = 1e-4  # tests/test_student_equivalence.py


def load_upstreams() -> dict[str, torch.nn.Module]:
    """{"stock": distiller_local, "ours": robustdistiller_local} on one s3prl-written random checkpoint."""
    import s3prl.hub as hub
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

    from robustdistiller_upstream.model import StudentConfig

    distiller = StudentConfig().to_s3prl()  # the DESIGN 1 student in s3prl's vocabulary
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        ckpt = Path(tmp) / "distiller.ckpt"
        torch.save({"Config": {"distiller": distiller},
                    "Distiller": DistillerModel(DistillerConfig(dict(distiller))).state_dict()}, ckpt)
        return {"stock": hub.distiller_local(ckpt=str(ckpt)), "ours": hub.robustdistiller_local(ckpt=str(ckpt))}


def time_cell(upstreams: dict[str, torch.nn.Module], wavs: list[torch.Tensor], repeats: int,
              autocast: contextlib.AbstractContextManager, device: torch.device) -> tuple[dict[str, float], float]:
    """({name: best seconds}, max |difference| of the hidden states) for one batch ``wavs`` of (samples,)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    best = {name: float("inf") for name in upstreams}
    outputs = {}
    with torch.no_grad():
        for name, upstream in upstreams.items():  # warm-up
            with autocast:
                outputs[name] = [h.float() for h in upstream(wavs)["hidden_states"]]
        for _ in range(repeats):
            for name, upstream in upstreams.items():
                sync()
                start = time.perf_counter()
                with autocast:
                    upstream(wavs)
                sync()
                best[name] = min(best[name], time.perf_counter() - start)
    max_diff = max((a - b).abs().max().item() for a, b in zip(outputs["stock"], outputs["ours"]))
    return best, max_diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[0.5, 1, 2, 5, 10, 30],
                        help="utterance lengths (the longest of the batch with --ragged)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU threads")
    parser.add_argument("--ragged", action="store_true", help="lengths spread from 50%% to 100%% of --seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--autocast", choices=["none", "bf16", "fp16"], default="none")
    args = parser.parse_args()

    device = torch.device(args.device)
    upstreams = {name: upstream.to(device).eval() for name, upstream in load_upstreams().items()}
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.autocast)
    threads = args.threads if device.type == "cpu" else [torch.get_num_threads()]
    print(f"{cpu_model() if device.type == 'cpu' else torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
          f"autocast {args.autocast}, best of {args.repeats}{', ragged lengths' if args.ragged else ''}")
    print("| seconds | batch | threads | stock `distiller_local` s | ours s | ours/stock speed | max difference |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    ratios = {}
    generator = torch.Generator().manual_seed(0)
    for seconds in args.seconds:
        for batch in args.batch:
            n = int(seconds * 16000)
            lengths = [n - (i * n // (2 * batch) if args.ragged else 0) for i in range(batch)]
            wavs = [(torch.randn(length, generator=generator) * 0.1).to(device) for length in lengths]
            for count in threads:
                if device.type == "cpu":
                    torch.set_num_threads(count)
                autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
                best, max_diff = time_cell(upstreams, wavs, args.repeats, autocast, device)
                ratio = best["stock"] / best["ours"]
                ratios[(seconds, batch, count)] = ratio
                print(f"| {seconds:g} | {batch} | {count} | {best['stock']:.4f} | {best['ours']:.4f} | {ratio:.2f}x "
                      f"| {max_diff:.1e}{'' if dtype or max_diff <= TOLERANCE else ' (above 1e-4)'} |", flush=True)
    slowest = min(ratios, key=ratios.get)
    print(f"slowest cell: {slowest[0]:g} s x {slowest[1]} at {slowest[2]} thread(s), {ratios[slowest]:.2f}x; "
          f"ours >= 1.0x in {sum(r >= 1.0 for r in ratios.values())} of {len(ratios)} cells")


if __name__ == "__main__":
    main()
