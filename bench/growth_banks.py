"""How the contamination banks' cost grows: MUSAN noise + UrbanSound8K and SLR28 at 1/100, 1/10 and full size.

The banks are simulated in their real layouts with sparse WAV files: each file's header states its real length,
rate and channels, its first frame is not silent (so the index keeps it) and the rest is a hole that reads as
zeros without touching the disk. Indexing, decoding, resampling, memory and FFT sizes are the real ones; the disk
holds a block per file. Sizes (the real ones; ``--scales`` divides the counts):

- MUSAN ``noise/``: 930 files (free-sound 843, sound-bible 87), 16 kHz mono, 6.2 h in all (lengths drawn
  log-normal, 0.5-300 s);
- UrbanSound8K: 8,732 clips of up to 4 s in ``audio/fold1..10`` with ``metadata/UrbanSound8K.csv``, 10 classes, of
  which the recipes drop children_playing and street_music (1,000 each); rates and channels as in the dataset
  (44.1 kHz 62%, 48 kHz 29%, 96 kHz 7%, the rest 8-32 kHz; 92% stereo);
- SLR28 ``RIRS_NOISES``: ``simulated_rirs/{small,medium,large}room/RoomNNN/`` 60,000 RIRs (assumed 1 s each),
  ``real_rirs_isotropic_noises/`` 325 RIRs (0.3-2 s) and 92 ``*_noise_*`` isotropic recordings, and
  ``pointsource_noises/`` 843 recordings. The noise recordings' lengths are not documented where we could read
  them: assumed 1-60 s for point sources and 30-240 s for the isotropic ones, the longest (``--longest-s``, 240 s)
  present at every scale, since it alone sets the reverberation FFT size.

Measured per scale, each in its own process: indexing (cold: every file checked; warm: from the cache), loading
into memory under ``memory_cap_mb`` (time and the process's memory growth: each DDP rank holds its own copy, so
8 ranks on a node hold 8), segment reads per second when the bank is read from disk (``memory_cap_mb: 0``,
24 segments of 250,000 samples per batch), and the reverberation cost of one batch (24 x 250,000 samples, every
row reverberated, the paper recipes' raw RIRs: no normalisation, no delay compensation) with the RIR pool of
``rirs_only: true`` and ``rirs_only: false`` (the point-source and isotropic noise recordings in the RIR bank). Run:
``python bench/growth_banks.py [--scales 100,10,1] [--batches 3] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from growth import disk_bytes, growth_table, peak_rss_mb
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
RATE, BATCH, SAMPLES = 16000, 24, 250_000
US8K_CLASSES = {"air_conditioner": 1000, "car_horn": 429, "children_playing": 1000, "dog_bark": 1000,
                "drilling": 1000, "engine_idling": 1000, "gun_shot": 374, "jackhammer": 1000, "siren": 929,
                "street_music": 1000}  # 8,732 clips
US8K_RATES = ([44100] * 62 + [48000] * 29 + [96000] * 7 + [24000, 32000])  # drawn uniformly from this list
SLR28_SIMULATED, SLR28_REAL_RIRS, SLR28_ISOTROPIC, SLR28_POINTSOURCE = 60_000, 325, 92, 843
MUSAN_FILES, MUSAN_HOURS = 930, 6.2


def _rss_mb() -> float:
    """Resident memory of this process now (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sparse_wav(path: Path, frames: int, rate: int, channels: int = 1) -> None:
    """A 16-bit WAV whose header says ``frames`` x ``channels`` at ``rate``: one non-zero frame, then a hole."""
    data = frames * channels * 2
    header = (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVE" + b"fmt "
              + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * 2, channels * 2, 16)
              + b"data" + struct.pack("<I", data))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(header + struct.pack("<h", 8000) * channels)
        f.truncate(len(header) + data)


def write_noise_banks(root: Path, scale: int, seed: int = 0) -> tuple[Path, Path]:
    """MUSAN ``noise/`` and UrbanSound8K at 1/``scale`` of their file counts."""
    rng = np.random.default_rng(seed)
    musan = root / "musan"
    n_musan = max(1, MUSAN_FILES // scale)
    seconds = np.clip(rng.lognormal(2.6, 1.0, n_musan), 0.5, 300.0)
    seconds *= MUSAN_HOURS * 3600 / MUSAN_FILES / seconds.mean()
    for i, s in enumerate(seconds):
        folder, name = ("free-sound", "noise-free-sound") if i < n_musan * 843 // 930 else ("sound-bible",
                                                                                         "noise-sound-bible")
        sparse_wav(musan / "noise" / folder / f"{name}-{i:04d}.wav", int(s * RATE), RATE)
    us8k = root / "UrbanSound8K"
    rows = []
    for class_id, (name, count) in enumerate(US8K_CLASSES.items()):
        for i in range(max(1, count // scale)):
            fold = 1 + (len(rows) % 10)
            file_name = f"{100000 + len(rows)}-{class_id}-0-{i}.wav"
            rate = US8K_RATES[int(rng.integers(len(US8K_RATES)))]
            length = 4.0 if rng.random() < 0.8 else float(rng.uniform(0.3, 4.0))
            sparse_wav(us8k / "audio" / f"fold{fold}" / file_name, int(length * rate), rate,
                       1 if rng.random() < 0.08 else 2)
            rows.append({"slice_file_name": file_name, "fsID": 100000 + len(rows), "start": 0, "end": length,
                         "salience": 1, "fold": fold, "classID": class_id, "class": name})
    (us8k / "metadata").mkdir(parents=True)
    with (us8k / "metadata" / "UrbanSound8K.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return musan, us8k


def write_slr28(root: Path, scale: int, longest_s: float, seed: int = 0) -> Path:
    """SLR28's ``RIRS_NOISES`` at 1/``scale`` of its file counts; the longest noise recording at every scale."""
    rng = np.random.default_rng(seed)
    tree = root / "RIRS_NOISES"
    per_room_type = SLR28_SIMULATED // 3 // scale
    for room_type in ("smallroom", "mediumroom", "largeroom"):
        for i in range(per_room_type):
            room = 1 + i // 100
            sparse_wav(tree / "simulated_rirs" / room_type / f"Room{room:03d}" / f"Room{room:03d}-{1 + i % 100:05d}.wav",
                       RATE, RATE)
    real = tree / "real_rirs_isotropic_noises"
    for i in range(max(1, SLR28_REAL_RIRS // scale)):
        sparse_wav(real / f"RVB2014_type1_rir_room{i}.wav", int(rng.uniform(0.3, 2.0) * RATE), RATE)
    for i in range(max(1, SLR28_ISOTROPIC // scale)):
        seconds = longest_s if i == 0 else rng.uniform(30, min(240.0, longest_s))
        sparse_wav(real / f"RVB2014_type1_noise_room{i}.wav", int(seconds * RATE), RATE)
    for i in range(max(1, SLR28_POINTSOURCE // scale)):
        sparse_wav(tree / "pointsource_noises" / f"noise-free-sound-{i:04d}.wav", int(rng.uniform(1, 60) * RATE),
                   RATE)
    return tree


def _segments_per_s(bank, draws: list[tuple[int, int]], row) -> float:
    """Segments of ``SAMPLES`` read per second from ``bank`` at (file, offset) ``draws``."""
    begin = time.perf_counter()
    for index, offset in draws:
        bank.segment(index, offset, SAMPLES, out=row)
    return len(draws) / (time.perf_counter() - begin)


def noise_child(work: Path, scale: int, batches: int) -> dict:
    import torch

    from robustdistiller_upstream.augment import BankConfig, NoiseBank, NoiseSourceConfig

    torch.set_num_threads(2)
    musan, us8k = write_noise_banks(work / "data", scale)
    config = BankConfig(noises=[NoiseSourceConfig(kind="musan", path=str(musan)),
                                NoiseSourceConfig(kind="urbansound8k", path=str(us8k))],
                        cache_dir=str(work / "cache"), skip_low_rate=False, min_noise_seconds=0.0,
                        memory_cap_mb=0)
    out: dict = {"disk_mb": disk_bytes(work / "data") / 2**20}
    begin = time.perf_counter()
    on_disk = NoiseBank.from_config(config)
    out["index_cold"] = time.perf_counter() - begin
    begin = time.perf_counter()
    on_disk = NoiseBank.from_config(config)
    out["index_warm"] = time.perf_counter() - begin
    out["files"], out["hours"] = len(on_disk), sum(on_disk.lengths) / RATE / 3600
    out["bank_mb"] = 4 * sum(on_disk.lengths) / 2**20
    rng = np.random.default_rng(0)
    draws = [(int(rng.integers(len(on_disk))), int(rng.integers(1 << 30))) for _ in range(batches * BATCH)]
    row = torch.empty(SAMPLES)
    on_disk.segment(len(on_disk) - 1, 0, SAMPLES, out=row)  # warm-up: scipy's import on the first resampling
    out["segments_per_s_disk"] = _segments_per_s(on_disk, draws, row)
    before = _rss_mb()
    config.memory_cap_mb = 1e9
    begin = time.perf_counter()
    in_memory = NoiseBank.from_config(config)
    out["load"] = time.perf_counter() - begin - out["index_warm"]
    out["rank_mb"] = _rss_mb() - before
    out["segments_per_s_memory"] = _segments_per_s(in_memory, draws * 20, row)
    out["rss_mb"] = peak_rss_mb()
    return out


def rir_child(work: Path, scale: int, batches: int, rirs_only: bool, longest_s: float) -> dict:
    import torch

    from robustdistiller_upstream.augment import (BankConfig, ContaminationConfig, Contaminator, RirBank,
                                                  RirSourceConfig)

    torch.set_num_threads(2)
    tree = write_slr28(work / "data", scale, longest_s)
    config = BankConfig(rirs=[RirSourceConfig(kind="slr28", path=str(tree), rirs_only=rirs_only)],
                        cache_dir=str(work / "cache"), skip_low_rate=False)
    out: dict = {"disk_mb": disk_bytes(work / "data") / 2**20}
    begin = time.perf_counter()
    RirBank.from_config(BankConfig(rirs=config.rirs, cache_dir=config.cache_dir, memory_cap_mb=0))
    out["index_cold"] = time.perf_counter() - begin
    before = _rss_mb()
    begin = time.perf_counter()
    bank = RirBank.from_config(config)
    out["load"] = time.perf_counter() - begin
    out["rank_mb"] = _rss_mb() - before
    out["files"] = len(bank)
    out["in_memory"] = all(torch.is_tensor(r) for r in bank.rirs)
    out["longest_s"] = bank.longest / RATE
    contaminator = Contaminator(ContaminationConfig(p_clean=0, p_noise=0, p_reverb=1, p_noise_reverb=0,
                                                    compensate_delay=False, normalize_rir=False), None, bank)
    wav = torch.randn(BATCH, SAMPLES) * 0.1
    lengths = torch.full((BATCH,), SAMPLES)
    contaminator(wav, lengths)  # warm-up: workspaces allocated
    before = peak_rss_mb()
    times = []
    for step in range(batches):
        begin = time.perf_counter()
        contaminator(wav, lengths, step)
        times.append(time.perf_counter() - begin)
    out["reverb_batch_s"] = float(np.median(times))
    spectra = contaminator.rir_spectra  # complex64 (n_fft // 2 + 1,) each
    out["n_fft"] = (spectra.bytes // len(spectra) // 8 - 1) * 2
    out["rss_mb"] = peak_rss_mb()
    out["reverb_peak_growth_mb"] = out["rss_mb"] - before
    return out


def run_child(kind: str, scale: int, work: Path, args: argparse.Namespace) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    folder = work / f"{kind}-{scale}"
    try:
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--scale", str(scale), "--work", str(folder),
                              "--batches", str(args.batches), "--longest-s", str(args.longest_s)],
                             env=env, check=True, stdout=subprocess.PIPE, text=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="100,10,1", help="divide the real file counts by these (1: real size)")
    parser.add_argument("--batches", type=int, default=3, help="batches timed per measurement (median)")
    parser.add_argument("--longest-s", type=float, default=240.0, help="the longest SLR28 noise recording (s)")
    parser.add_argument("--work", help="scratch folder (default: a temporary one), removed at the end")
    parser.add_argument("--child", choices=["noise", "rirs", "rirs_and_noises"], help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        work = Path(args.work)
        if args.child == "noise":
            out = noise_child(work, args.scale, args.batches)
        else:
            out = rir_child(work, args.scale, args.batches, args.child == "rirs", args.longest_s)
        print(json.dumps(out))
        return
    scales = sorted((int(s) for s in args.scales.split(",")), reverse=True)
    labels = ["real" if s == 1 else f"1/{s}" for s in scales]
    work = Path(args.work or tempfile.mkdtemp(prefix="growth_banks_"))
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores); load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, list[dict]] = {"noise": [], "rirs": [], "rirs_and_noises": []}
    try:
        for scale in scales:
            for kind in results:
                results[kind].append(run_child(kind, scale, work, args))
                print(f"{kind:>15} 1/{scale:<4}: {json.dumps(results[kind][-1])}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n, r, rn = results["noise"], results["rirs"], results["rirs_and_noises"]
    rows = [
        ("noise bank: files (MUSAN noise + UrbanSound8K)", "files", [x["files"] for x in n]),
        ("noise bank: audio at 16 kHz, float32", "MB", [x["bank_mb"] for x in n]),
        ("noise bank: disk (sparse)", "MB", [x["disk_mb"] for x in n]),
        ("noise bank: index, cold (every file checked)", "s", [x["index_cold"] for x in n]),
        ("noise bank: index, warm (cache)", "s", [x["index_warm"] for x in n]),
        ("noise bank: load into memory (decode, resample)", "s", [x["load"] for x in n]),
        ("noise bank: memory per rank (RSS growth)", "MB", [x["rank_mb"] for x in n]),
        ("noise bank: segment reads, from disk", "segments/s", [x["segments_per_s_disk"] for x in n]),
        ("noise bank: segment reads, in memory", "segments/s", [x["segments_per_s_memory"] for x in n]),
        ("RIR bank rirs_only: true: files", "files", [x["files"] for x in r]),
        ("RIR bank rirs_only: true: index, cold", "s", [x["index_cold"] for x in r]),
        ("RIR bank rirs_only: true: load", "s", [x["load"] for x in r]),
        ("RIR bank rirs_only: true: memory per rank", "MB", [x["rank_mb"] for x in r]),
        ("reverb, rirs_only: true: one batch", "s", [x["reverb_batch_s"] for x in r]),
        ("reverb, rirs_only: true: n_fft", "samples", [x["n_fft"] for x in r]),
        ("RIR bank rirs_only: false: files", "files", [x["files"] for x in rn]),
        ("RIR bank rirs_only: false: load", "s", [x["load"] for x in rn]),
        ("RIR bank rirs_only: false: memory per rank", "MB", [x["rank_mb"] for x in rn]),
        ("reverb, rirs_only: false: one batch", "s", [x["reverb_batch_s"] for x in rn]),
        ("reverb, rirs_only: false: n_fft", "samples", [x["n_fft"] for x in rn]),
        ("reverb, rirs_only: false: peak RSS", "MB", [x["rss_mb"] for x in rn]),
    ]
    print(f"\nRIR banks in memory (rirs_only true / false): {[x['in_memory'] for x in r]} / "
          f"{[x['in_memory'] for x in rn]}; longest RIR-bank file {rn[-1]['longest_s']:.0f} s")
    print(growth_table(rows, labels, [1 / s for s in scales]))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
