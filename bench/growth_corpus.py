"""How the pretraining corpus's cost grows: indexing and length-bucketing LibriSpeech 960 h, and a rank's start-up.

Simulates LibriSpeech's three training subsets at 1/100 (1x), 1/10 (10x) and the real size, 281,241 entries
(train-clean-100 28,539, train-clean-360 104,014, train-other-500 148,688) in LibriSpeech's layout
(``<subset>/<speaker>/<chapter>/<spk>-<chapter>-<utt>.flac`` + ``.trans.txt``, about 50 utterances a chapter and
120 a speaker). Every file is a real 16 kHz FLAC of the utterance's full length, silent but one sample, so the
indexer reads real headers and the loader decodes real frames: silence compresses to about 1 KB, one disk block,
so the real size takes about 1.2 GB instead of 60 GB. Lengths are drawn around LibriSpeech's mean (12.3 s, 1-35 s,
960 h at the real size) and rounded to 0.1 s, so each length is encoded once and its bytes copied.

Measured per size, each step in its own process (its peak RSS is that process's):

- ``prepare``: ``robustdistiller prepare-librispeech`` (``cli/prepare_librispeech.run``): the glob, one header read
  per file, the manifest written. A run with ``data.librispeech_root`` instead of ``data.manifests`` does this on
  every rank at every start;
- ``start``: a real ``Trainer`` start from the manifest (the demo recipe's small student and log-mel teacher, no
  contamination: the banks are ``bench/growth_banks.py``'s; batch 24 x 250,000 samples, 4 loader workers):
  ``Trainer.__init__`` and the first batch out of the loader; then the Trainer's two corpus calls timed alone, the
  corpus load (``load_corpus``) and the sampler (``BatchStream``: CPU time, best of 3), then ``BatchStream`` of
  rank 7 of 8 and ``bucketed_batches`` by seconds
  (``data.batch_seconds: 160``, DPHuBERT's) on the same corpus.

The table prints time, peak memory and disk per size and ``growth`` = (cost ratio) / (size ratio) between
consecutive sizes: about 1 is linear, below 1 a fixed cost still dominates, above 1 faster than linear. Run:
``python bench/growth_corpus.py [--sizes 2812,28124,281241] [--work DIR]`` (DIR is removed afterwards unless
``--keep``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from growth import disk_bytes, growth_table, peak_rss_mb
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
SUBSETS = {"train-clean-100": 28_539, "train-clean-360": 104_014, "train-other-500": 148_688}
FULL = sum(SUBSETS.values())  # 281,241
RATE = 16000
UTTS_PER_CHAPTER, CHAPTERS_PER_SPEAKER = 50, 2  # LibriSpeech: ~51 and ~2.3
MEAN_SECONDS = 960.9 * 3600 / FULL  # 12.3 s


def lengths_s(n: int, seed: int = 0) -> np.ndarray:
    """``n`` utterance lengths in s, 1-35 s, mean 12.3 s, at 0.1 s steps."""
    rng = np.random.default_rng(seed)
    raw = np.clip(rng.normal(13.0, 3.8, n), 1.0, 35.0)
    return np.round(np.clip(raw * MEAN_SECONDS / raw.mean(), 1.0, 35.0), 1)


def write_tree(root: Path, size: int) -> dict:
    """LibriSpeech's three training subsets with ``size`` entries in all (split as the real ones)."""
    import soundfile as sf

    counts = {s: max(1, round(n * size / FULL)) for s, n in SUBSETS.items()}
    seconds = lengths_s(sum(counts.values()))
    templates: dict[float, bytes] = {}
    start, k = time.perf_counter(), 0
    for subset_index, (subset, count) in enumerate(counts.items()):
        for u in range(count):
            chapter_index, utt = divmod(u, UTTS_PER_CHAPTER)
            speaker = 10000 * (subset_index + 1) + chapter_index // CHAPTERS_PER_SPEAKER
            chapter = 100 + chapter_index
            folder = root / subset / str(speaker) / str(chapter)
            if utt == 0:
                folder.mkdir(parents=True)
                (folder / f"{speaker}-{chapter}.trans.txt").write_text(
                    "".join(f"{speaker}-{chapter}-{i:04d} A SENTENCE\n"
                            for i in range(min(UTTS_PER_CHAPTER, count - u))))
            s = float(seconds[k])
            if s not in templates:
                audio = np.zeros(int(s * RATE), np.int16)
                audio[0] = 1
                buffer = io.BytesIO()
                sf.write(buffer, audio, RATE, format="FLAC", subtype="PCM_16")
                templates[s] = buffer.getvalue()
            (folder / f"{speaker}-{chapter}-{utt:04d}.flac").write_bytes(templates[s])
            k += 1
    return {"seconds": time.perf_counter() - start, "rss_mb": peak_rss_mb(), "disk_mb": disk_bytes(root) / 2**20,
            "hours": float(seconds.sum()) / 3600, "entries": k}


def prepare(root: Path, manifest: Path) -> dict:
    from robustdistiller_upstream.cli import prepare_librispeech

    args = argparse.Namespace(root=str(root), out=str(manifest), subsets=list(SUBSETS))
    start = time.perf_counter()
    prepare_librispeech.run(args)
    return {"seconds": time.perf_counter() - start, "rss_mb": peak_rss_mb(),
            "disk_mb": manifest.stat().st_size / 2**20}


def start_rank(manifest: Path, exp_dir: Path) -> dict:
    """A real Trainer start from the manifest, then its first batch; then rank 7 of 8's sampler and bucketing by
    seconds."""
    import torch

    from robustdistiller_upstream.config import load_config
    from robustdistiller_upstream.train import data, runner
    from robustdistiller_upstream.train.config import PretrainConfig
    from robustdistiller_upstream.train.recipe import PretrainRecipe

    torch.set_num_threads(2)
    config = load_config(PretrainConfig, REPO / "pretrain" / "demo.yaml", [
        "denoising.enabled=false,enhance.enabled=false,data.librispeech_root=,data.sequence_length=250000,"
        "data.batch_size=24,data.num_workers=4"])
    config.data.librispeech_root = None
    config.data.manifests = [str(manifest)]
    begin = time.perf_counter()
    trainer = runner.Trainer(PretrainRecipe(config), exp_dir)
    init = time.perf_counter() - begin
    begin = time.perf_counter()
    batch = next(trainer._batches())
    first = time.perf_counter() - begin
    assert batch.wav.shape[0] > 0
    del trainer, batch
    # the Trainer's two corpus calls again, timed alone (the fast ones: best of 3, the machine is shared)
    begin = time.perf_counter()
    utterances, _ = data.load_corpus(config.data)
    loaded = time.perf_counter() - begin
    stream = _best(lambda: data.BatchStream(config.data, utterances))
    rank7 = _best(lambda: data.BatchStream(config.data, utterances, rank=7, world_size=8))
    cropped = [min(u.length, config.data.sequence_length) for u in utterances]
    by_seconds = _best(lambda: data.bucketed_batches(cropped, 24, 0, 0, max_samples=160 * RATE))
    return {"seconds": init + first, "init": init, "first_batch": first, "load_corpus": loaded,
            "stream": stream, "rank7_stream": rank7, "bucket_seconds": by_seconds, "rss_mb": peak_rss_mb()}


def _best(function: Callable[[], object], repeats: int = 3) -> float:
    """CPU seconds of this process in the fastest of ``repeats`` calls: on a shared machine wall time penalises a
    longer call more (it is preempted more often), which reads as faster-than-linear growth."""
    times = []
    for _ in range(repeats):
        begin = time.process_time()
        function()
        times.append(time.process_time() - begin)
    return min(times)


def child(step: str, size: int, work: Path) -> dict:
    root, manifest = work / f"n{size}" / "LibriSpeech", work / f"n{size}" / "libri.csv"
    if step == "write":
        return write_tree(root, size)
    if step == "prepare":
        return prepare(root, manifest)
    return start_rank(manifest, work / f"n{size}" / "exp")


def run_child(step: str, size: int, work: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, __file__, "--child", step, "--size", str(size), "--work", str(work)],
                         env=env, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=f"{FULL // 100},{FULL // 10},{FULL}",
                        help="corpus entries per run (default: 1/100, 1/10 and all of LibriSpeech 960 h)")
    parser.add_argument("--work", help="scratch folder (default: a temporary one); removed unless --keep")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--child", choices=["write", "prepare", "start"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.size, Path(args.work))))
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = Path(args.work or tempfile.mkdtemp(prefix="growth_corpus_"))
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, list[dict]] = {"write": [], "prepare": [], "start": []}
    try:
        for size in sizes:
            for step in results:
                results[step].append(run_child(step, size, work))
                print(f"{size:>7} entries {step:>7}: {json.dumps(results[step][-1])}", flush=True)
            shutil.rmtree(work / f"n{size}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    w, p, s = results["write"], results["prepare"], results["start"]
    rows = [
        ("corpus on disk (silent FLAC files)", "MB", [r["disk_mb"] for r in w]),
        ("prepare-librispeech: glob + headers + manifest", "s", [r["seconds"] for r in p]),
        ("prepare-librispeech peak RSS", "MB", [r["rss_mb"] for r in p]),
        ("manifest", "MB", [r["disk_mb"] for r in p]),
        ("rank start: load_corpus (manifest)", "s", [r["load_corpus"] for r in s]),
        ("rank start: BatchStream (bucketing, 1 rank, CPU)", "s", [r["stream"] for r in s]),
        ("rank start: Trainer.__init__ in all", "s", [r["init"] for r in s]),
        ("rank start: first batch (4 workers)", "s", [r["first_batch"] for r in s]),
        ("rank start peak RSS", "MB", [r["rss_mb"] for r in s]),
        ("BatchStream, rank 7 of 8 (CPU)", "s", [r["rank7_stream"] for r in s]),
        ("bucketed_batches by seconds (160 s, CPU)", "s", [r["bucket_seconds"] for r in s]),
    ]
    print("\nsimulated hours: " + ", ".join(f"{r['hours']:.1f}" for r in w))
    print(growth_table(rows, [f"{n:,}" for n in sizes], sizes))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
