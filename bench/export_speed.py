"""Deployment speed on CPU: stock s3prl ``distiller_local``, ours in PyTorch, and our ONNX exports in ONNX Runtime
(fp32, int8 dynamic, int8 static), side by side, same weights, same audio.

    python bench/export_speed.py                  # 1 and 2 threads; 4 x 10 s and 1 x 1 s (a keyword-spotting call)
    python bench/export_speed.py --threads 1 --repeats 5

Every engine runs as an s3prl upstream (``distiller_local``, ``robustdistiller_local``, ``robustdistiller_onnx_local``)
in its own fresh process per thread count; peak resident memory (Linux ``VmHWM``, reset after loading and before
each workload, so it is the process's peak while it runs that workload: model, runtime and activations) is its own. Times: best of --repeats after one warm-up. The checkpoint is the DESIGN 1
student written by s3prl's own DistillerModel (random init). Each int8 row also gives its lowest cosine to the fp32
export over the hidden states (mean over frames; every hidden state's is printed above the tables), measured by the
exporter on 3 espeak-ng sentences that static int8's calibration (8 generated espeak-ng sentences of other voices)
never heard: what ``robustdistiller export --int8`` checks (it keeps static int8 if every cosine is >= 0.99, else
dynamic). Without espeak-ng, both are synthetic speech (the exporter says so).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model

ENGINES = {  # name -> (s3prl hub entry, which file it loads)
    "stock distiller_local": ("distiller_local", "ckpt"),
    "robustdistiller_local": ("robustdistiller_local", "ckpt"),
    "ORT fp32": ("robustdistiller_onnx_local", "fp32"),
    "ORT int8 dynamic": ("robustdistiller_onnx_local", "int8_dynamic"),
    "ORT int8 static": ("robustdistiller_onnx_local", "int8_static"),
}
WORKLOADS = {"4 x 10 s": (4, 10.0), "1 x 1 s": (1, 1.0)}


def reset_peak_rss() -> None:
    """Linux: makes VmHWM (peak resident memory) start again from the current resident memory."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


def worker(entry: str, path: str, threads: int, repeats: int) -> None:
    """One engine in this process: prints {"workload": seconds, ...} and peak memory as one JSON line."""
    import torch

    torch.set_num_threads(threads)
    import s3prl.hub as hub

    from robustdistiller_upstream.synthetic import synthetic_speech

    upstream = getattr(hub, entry)(ckpt=path).eval()
    result = {}
    for name, (batch, seconds) in reversed(WORKLOADS.items()):  # the small call first: its peak is its own
        wavs = [torch.from_numpy(synthetic_speech(seconds, seed=i)) for i in range(batch)]
        reset_peak_rss()  # importing s3prl.hub peaks above any call: measure each call's own peak
        with torch.no_grad():
            upstream(wavs)
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                upstream(wavs)
                best = min(best, time.perf_counter() - start)
        result[name] = best
        result[f"{name} rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def build_files(root: Path) -> tuple[dict[str, Path], dict[str, float]]:
    """The checkpoint and its three ONNX exports, and each int8 export's lowest cosine to fp32; prints what the
    exporter measured."""
    import torch
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

    from robustdistiller_upstream.export.onnx import export_onnx
    from robustdistiller_upstream.export.source import load_export_source
    from robustdistiller_upstream.model import StudentConfig

    distiller = StudentConfig().to_s3prl()
    torch.manual_seed(0)
    ckpt = root / "distiller.ckpt"
    torch.save({"Config": {"distiller": distiller},
                "Distiller": DistillerModel(DistillerConfig(dict(distiller))).state_dict()}, ckpt)
    source = load_export_source(ckpt)
    files, lowest = {"ckpt": ckpt}, {}
    for key, mode in (("fp32", None), ("int8_dynamic", "dynamic"), ("int8_static", "static")):
        report = export_onnx(source, root / f"{key}.onnx", int8=mode)
        files[key] = report.path
        if mode:
            cosines = ", ".join(f"{name} {value:.4f}" for name, value in report.int8_cosine.items())
            print(f"  {key} cosine to fp32: {cosines}")
            lowest[key] = min(report.int8_cosine.values())
        else:
            print(f"  fp32 max |ORT - PyTorch| {max(report.fp32_max_diff.values()):.2e}")
    print(f"  cosines on {report.int8_speech['check']}; static calibrated on {report.int8_speech['calibration']}")
    return files, lowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("ENTRY", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.threads[0], args.repeats)
        return

    import onnxruntime
    import torch

    print(f"CPU: {cpu_model()}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        files, lowest = build_files(Path(tmp))
        sizes = {key: path.stat().st_size / 1e6 for key, path in files.items()}
        print("  file sizes: " + ", ".join(f"{k} {v:.1f} MB" for k, v in sizes.items())
              + f"; int8 / fp32: dynamic {sizes['int8_dynamic'] / sizes['fp32']:.0%}, "
                f"static {sizes['int8_static'] / sizes['fp32']:.0%}")
        for threads in args.threads:
            rows = {}
            for name, (entry, key) in ENGINES.items():
                command = [sys.executable, __file__, "--worker", entry, str(files[key]), "--threads", str(threads),
                           "--repeats", str(args.repeats)]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"\n{threads} thread(s), best of {args.repeats}:")
            print(f"  {'engine':<22}" + "".join(f"{w:>12} {'x ours':>7} {'x ORT fp32':>10}" for w in WORKLOADS)
                  + f" {'peak RSS 1 s / 40 s':>20} {'min cosine':>10}")
            ours, ort = rows["robustdistiller_local"], rows["ORT fp32"]
            for name, row in rows.items():
                cells = "".join(f"{row[w]:>10.3f} s {ours[w] / row[w]:>6.2f}x {ort[w] / row[w]:>9.2f}x"
                                for w in WORKLOADS)
                cosine = lowest.get(ENGINES[name][1])
                print(f"  {name:<22}{cells} {row['1 x 1 s rss_mb']:>8.0f} / {row['4 x 10 s rss_mb']:>5.0f} MB"
                      + (f" {cosine:>10.4f}" if cosine is not None else ""))


if __name__ == "__main__":
    main()
