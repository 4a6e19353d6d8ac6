"""Feature extraction speed: our `robustdistiller_local` vs stock s3prl `distiller_local`, same weights, same audio.

    python bench/upstream_speed.py                                   # the sweep: 0.5-30 s x batch 1, 4 x 1, 2 threads
    python bench/upstream_speed.py --seconds 10 --batch 4 --threads 2   # one cell (DESIGN 4's setting)
    python bench/upstream_speed.py --autocast bf16 --seconds 1 10 --batch 1 4   # bf16: ours' option vs ours fp32
    python bench/upstream_speed.py --device cuda --seconds 10 --batch 16 --autocast bf16

Both upstreams load one checkpoint written by s3prl's own DistillerModel (random init) and run in eval mode under
no_grad on identical inputs: espeak-ng speech (one voice per utterance) where espeak-ng can speak here, else
synthetic speech. Each cell (utterance length x batch x threads) reports the best of --repeats timed runs after one
warm-up, the upstreams alternating, their ratio (stock time / ours: above 1, ours is faster) and the largest
difference between their hidden states (the tests hold it within 1e-4).

With ``--autocast bf16`` ours runs with its upstream option ``autocast: bf16`` (an ``-g`` YAML, as s3prl's runner
passes it), stock under a plain ``torch.autocast`` (it has no option), and ours in fp32 as a third upstream: the
table gives ours-bf16 against stock-bf16 and against ours-fp32, and the cosine of each of ours' bf16 hidden states to
its fp32 one, frame by frame, mean over the valid frames. The header names the CPU's bf16 instructions.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from machine import cpu_flags, cpu_model

TOLERANCE = 1e-4  # tests/test_student_equivalence.py

# name -> (upstream, the context each of its forwards runs in)
Runners = dict[str, tuple[torch.nn.Module, Callable[[], contextlib.AbstractContextManager]]]


def load_upstreams(autocast: str, device: torch.device) -> Runners:
    """stock ``distiller_local`` and our ``robustdistiller_local`` on one s3prl-written random checkpoint, in eval
    mode on ``device``; with ``autocast`` bf16, ours through its option, stock under ``torch.autocast``, and ours in
    fp32 as "ours fp32"."""
    import s3prl.hub as hub
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

    from robustdistiller_upstream.model import StudentConfig

    distiller = StudentConfig().to_s3prl()  # the DESIGN 1 student in s3prl's vocabulary
    plain = contextlib.nullcontext
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        ckpt = str(Path(tmp) / "distiller.ckpt")
        torch.save({"Config": {"distiller": distiller},
                    "Distiller": DistillerModel(DistillerConfig(dict(distiller))).state_dict()}, ckpt)
        if autocast == "none":
            runners = {"stock": (hub.distiller_local(ckpt=ckpt), plain),
                       "ours": (hub.robustdistiller_local(ckpt=ckpt), plain)}
        else:
            options = Path(tmp) / "options.yaml"
            options.write_text(f"autocast: {autocast}\n")
            runners = {
                "stock": (hub.distiller_local(ckpt=ckpt), lambda: torch.autocast(device.type, dtype=torch.bfloat16)),
                "ours": (hub.robustdistiller_local(ckpt=ckpt, model_config=str(options)), plain),
                "ours fp32": (hub.robustdistiller_local(ckpt=ckpt), plain),
            }
    return {name: (upstream.to(device).eval(), context) for name, (upstream, context) in runners.items()}


class Speech:
    """Utterances of speech, (samples,) at 16 kHz: utterance ``i`` is one passage in voice ``i``, repeated to length."""

    def __init__(self) -> None:
        from robustdistiller_upstream.synthetic import have_espeak

        self.source = "espeak-ng speech" if have_espeak() else "synthetic speech (no espeak-ng here)"
        self.passages: dict[int, np.ndarray] = {}

    def passage(self, index: int) -> np.ndarray:
        from robustdistiller_upstream.synthetic import ESPEAK_VOICES, have_espeak, spoken, synthetic_speech

        if index not in self.passages:
            text = ("the quick brown fox jumps over a lazy dog while seven bright stars shine above the quiet river "
                    "and children read books by the window of the old house near the green hill")
            voice = ESPEAK_VOICES[index % len(ESPEAK_VOICES)]
            self.passages[index] = spoken(text, voice) if have_espeak() else synthetic_speech(12.0, seed=index)
        return self.passages[index]

    def utterance(self, index: int, samples: int) -> torch.Tensor:
        return torch.from_numpy(np.resize(self.passage(index), samples))


def time_cell(runners: Runners, wavs: list[torch.Tensor], repeats: int,
              device: torch.device) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """({name: best seconds}, {name: its warm-up output}) for one batch ``wavs`` of (samples,)."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    best = {name: float("inf") for name in runners}
    outputs = {}
    with torch.no_grad():
        for name, (upstream, context) in runners.items():  # warm-up
            with context():
                outputs[name] = upstream(wavs)
        for _ in range(repeats):
            for name, (upstream, context) in runners.items():
                sync()
                start = time.perf_counter()
                with context():
                    upstream(wavs)
                sync()
                best[name] = min(best[name], time.perf_counter() - start)
    return best, outputs


def max_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a["hidden_states"], b["hidden_states"]))


def frame_cosines(reduced: dict[str, Any], reference: dict[str, Any]) -> list[float]:
    """Per hidden state, the cosine of ``reduced``'s to ``reference``'s, frame by frame, mean over valid frames."""
    from robustdistiller_upstream.export.check import mean_cosine

    frame_lengths = reference["pad_mask"].sum(dim=1).long()
    return [mean_cosine(x.float(), y, frame_lengths)
            for x, y in zip(reduced["hidden_states"], reference["hidden_states"], strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[0.5, 1, 2, 5, 10, 30],
                        help="utterance lengths (the longest of the batch with --ragged)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU threads")
    parser.add_argument("--ragged", action="store_true", help="lengths spread from 50%% to 100%% of --seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--autocast", choices=["none", "bf16"], default="none",
                        help="bf16: ours with its upstream option, stock under torch.autocast, ours fp32 beside them")
    args = parser.parse_args()

    device = torch.device(args.device)
    runners = load_upstreams(args.autocast, device)
    speech = Speech()
    threads = args.threads if device.type == "cpu" else [torch.get_num_threads()]
    where = f"{cpu_model()} ({cpu_flags()})" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"{where}, torch {torch.__version__}, autocast {args.autocast}, best of {args.repeats}, {speech.source}"
          f"{', ragged lengths' if args.ragged else ''}")
    if args.autocast == "none":
        print("| seconds | batch | threads | stock `distiller_local` s | ours s | ours/stock speed | max difference |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print("| seconds | batch | threads | stock bf16 autocast s | ours bf16 s | ours fp32 s | ours bf16/stock bf16 "
              "| ours bf16/ours fp32 | cosine to fp32, each hidden state |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    ratios, cosines = {}, []
    for seconds in args.seconds:
        for batch in args.batch:
            n = int(seconds * 16000)
            lengths = [n - (i * n // (2 * batch) if args.ragged else 0) for i in range(batch)]
            wavs = [speech.utterance(i, length).to(device) for i, length in enumerate(lengths)]
            for count in threads:
                if device.type == "cpu":
                    torch.set_num_threads(count)
                best, outputs = time_cell(runners, wavs, args.repeats, device)
                cell = f"| {seconds:g} | {batch} | {count} | {best['stock']:.4f} | {best['ours']:.4f} |"
                if args.autocast == "none":
                    ratio = ratios[(seconds, batch, count)] = best["stock"] / best["ours"]
                    max_diff = max_difference(outputs["stock"], outputs["ours"])
                    print(f"{cell} {ratio:.2f}x | {max_diff:.1e}{'' if max_diff <= TOLERANCE else ' (above 1e-4)'} |",
                          flush=True)
                else:
                    ratio = ratios[(seconds, batch, count)] = best["ours fp32"] / best["ours"]
                    cosines.append(frame_cosines(outputs["ours"], outputs["ours fp32"]))
                    print(f"{cell} {best['ours fp32']:.4f} | {best['stock'] / best['ours']:.2f}x | {ratio:.2f}x | "
                          f"{' / '.join(f'{c:.4f}' for c in cosines[-1])} |", flush=True)
    slowest = min(ratios, key=ratios.get)
    against = "stock" if args.autocast == "none" else "ours fp32"
    print(f"slowest cell against {against}: {slowest[0]:g} s x {slowest[1]} at {slowest[2]} thread(s), "
          f"{ratios[slowest]:.2f}x; ours >= 1.0x in {sum(r >= 1.0 for r in ratios.values())} of {len(ratios)} cells"
          + (f"; lowest cosine to fp32 {min(min(c) for c in cosines):.4f}" if cosines else ""))


if __name__ == "__main__":
    main()
