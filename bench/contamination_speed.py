"""Contamination speed: ours vs torch-audiomentations vs the reference recipe's per-utterance path.

One run, the same banks and the same batch (24 x 250,000 samples = 15.6 s at 16 kHz, DESIGN 1), every
utterance getting noise at an SNR then reverberation:

- ours: ``Contaminator`` with banks decoded and resampled once, batched FFT convolution (CPU, and CUDA when
  there is one);
- torch-audiomentations: ``AddBackgroundNoise`` + ``ApplyImpulseResponse`` (reads the files at each call);
- per-utterance: for each utterance read a noise file and an RIR file from disk, resample, scale to the SNR,
  ``scipy.signal.convolve`` (the reference recipe's approach);
- FFT floor: one bare batched ``torch.fft`` convolution of the batch with its RIRs: three FFTs (batch, RIRs,
  inverse) into buffers allocated once, so the allocator's page faults never count.

Banks (made here, in a temporary folder): 40 noise files of 8-30 s (a quarter at 44.1 kHz) and 20 RIRs of
0.2-0.9 s. Times: min and median of ``--repeats`` calls after one warm-up; every path draws its files and SNRs
from seeded generators. Run:
``python bench/contamination_speed.py [--repeats 5] [--threads N] [--device cpu|cuda]``.
"""

from __future__ import annotations

import argparse
import logging
import random
import tempfile
import time
from math import gcd
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.signal
import soundfile as sf
import torch

from robustdistiller_upstream.audio import write_audio_atomic
from robustdistiller_upstream.augment import (
    BankConfig,
    ContaminationConfig,
    Contaminator,
    NoiseSourceConfig,
    RirSourceConfig,
    build_banks,
)
from robustdistiller_upstream.augment.ops import fft_convolve, fft_size, place_rirs
from robustdistiller_upstream.synthetic import NOISE_KINDS, make_noise, synthetic_speech

BATCH, SAMPLES, RATE = 24, 250_000, 16000


def make_banks(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """40 noise files (8-30 s, every fourth at 44.1 kHz) and 20 exponentially decaying RIRs (0.2-0.9 s)."""
    rng = np.random.default_rng(seed)
    for i in range(40):
        rate = 44100 if i % 4 == 3 else RATE
        noise = make_noise(NOISE_KINDS[i % len(NOISE_KINDS)], rng.uniform(8, 30), rate, seed + i)
        write_audio_atomic(root / "noise" / f"n{i:02d}.wav", noise, rate)
    for i in range(20):
        n = int(rng.uniform(0.2, 0.9) * RATE)
        rir = rng.standard_normal(n) * np.exp(-np.arange(n) / (n / 6.9))  # -60 dB at the end
        delay = int(rng.integers(20, 200))
        rir = np.concatenate([np.zeros(delay), [1.0], 0.3 * rir])
        write_audio_atomic(root / "rirs" / f"r{i:02d}.wav", (rir / np.abs(rir).max()).astype(np.float32), RATE)
    return root / "noise", root / "rirs"


def per_utterance_baseline(
    batch: np.ndarray, noise_files: list[Path], rir_files: list[Path], rng: np.random.Generator
) -> np.ndarray:
    """The reference recipe's loop: disk reads, resampling and scipy convolution per utterance."""
    out = np.empty_like(batch)
    for b, speech in enumerate(batch):
        noise, rate = sf.read(str(noise_files[rng.integers(len(noise_files))]), dtype="float32")
        if rate != RATE:
            g = gcd(rate, RATE)
            noise = scipy.signal.resample_poly(noise, RATE // g, rate // g).astype(np.float32)
        if len(noise) < len(speech):
            noise = np.tile(noise, -(-len(speech) // len(noise)))
        start = rng.integers(len(noise) - len(speech) + 1)
        noise = noise[start : start + len(speech)]
        snr = rng.integers(0, 21)
        gain = np.sqrt(np.mean(speech**2) / (np.mean(noise**2) * 10 ** (snr / 10)))
        rir, _ = sf.read(str(rir_files[rng.integers(len(rir_files))]), dtype="float32")
        out[b] = scipy.signal.convolve(speech + gain * noise, rir)[: len(speech)]
    return out


def timings(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> tuple[float, float]:
    """(min, median) seconds of ``repeats`` calls after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", action="append", default=None, help="cpu and/or cuda (default: all there are)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(0)  # torch-audiomentations draws files with `random`
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        noise_dir, rir_dir = make_banks(Path(tmp))
        noise_files, rir_files = sorted(noise_dir.glob("*.wav")), sorted(rir_dir.glob("*.wav"))
        batch = np.stack([synthetic_speech(SAMPLES / RATE, RATE, seed=i) for i in range(BATCH)])
        wav = torch.from_numpy(batch)
        lengths = torch.full((BATCH,), SAMPLES)

        start = time.perf_counter()
        bank_config = BankConfig(noises=[NoiseSourceConfig(kind="folder", path=str(noise_dir))],
                                 rirs=[RirSourceConfig(kind="folder", path=str(rir_dir))],
                                 cache_dir=str(Path(tmp) / "cache"))
        noise_bank, rir_bank = build_banks(bank_config)
        bank_seconds = time.perf_counter() - start
        config = ContaminationConfig(p_clean=0, p_noise=0, p_reverb=0, p_noise_reverb=1, p_file_noise=1.0)
        contaminator = Contaminator(config, noise_bank, rir_bank)

        rows: list[tuple[str, tuple[float, float]]] = []
        for device in devices:
            x, n = wav.to(device), lengths.to(device)
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            rows.append((f"ours ({device})", timings(lambda: contaminator(x, n), args.repeats, sync)))
            records = contaminator.plan(lengths.tolist())
            rirs = [rir_bank.get(rir_bank.index_of(r.rir), 0) for r in records]
            n_fft = fft_size(SAMPLES, max(len(r) for r in rirs))
            rir_buffer = place_rirs(rirs, [0] * BATCH, n_fft, x.device)
            spectra = torch.empty(BATCH, n_fft // 2 + 1, dtype=torch.complex64, device=x.device)
            workspace = (torch.empty(BATCH, n_fft, device=x.device), torch.empty_like(spectra))
            rows.append((f"FFT floor ({device})", timings(
                lambda: fft_convolve(x, torch.fft.rfft(rir_buffer, out=spectra), n_fft, workspace),
                args.repeats, sync)))

        rng = np.random.default_rng(0)
        rows.append(("per-utterance scipy (cpu)", timings(
            lambda: per_utterance_baseline(batch, noise_files, rir_files, rng), args.repeats, lambda: None)))
        import torchaudio

        try:
            from torch_audiomentations import AddBackgroundNoise, ApplyImpulseResponse, Compose
        except ImportError:
            logging.warning("torch-audiomentations is not installed (pip install torch-audiomentations): skipped")
        else:
            if not hasattr(torchaudio, "info"):
                logging.warning("torch-audiomentations skipped: it reads files through torchaudio.info, which "
                                "torchaudio %s no longer has (removed in 2.9)", torchaudio.__version__)
            augment = Compose([
                AddBackgroundNoise(noise_files, min_snr_in_db=0, max_snr_in_db=20, p=1.0, output_type="dict"),
                ApplyImpulseResponse(rir_files, p=1.0, output_type="dict"),
            ], output_type="dict")
            for device in devices if hasattr(torchaudio, "info") else []:
                x = wav[:, None, :].to(device)
                sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
                # torchaudio < 2.9 reads files through the first backend it has: FFmpeg where its libraries are
                # installed (~11 ms per file here), else sox (~0.1 ms); TORIO_USE_FFMPEG_VERSION=4 hides FFmpeg 5
                backend = torchaudio.list_audio_backends()[0]
                rows.append((f"torch-audiomentations ({device}, {backend})", timings(
                    lambda: augment(x, sample_rate=RATE), args.repeats, sync)))

    ours = {device: dict(rows)[f"ours ({device})"] for device in devices}
    print(f"batch {BATCH} x {SAMPLES} samples ({SAMPLES / RATE:.1f} s), noise at SNR + reverb; torch threads "
          f"{torch.get_num_threads()}; {args.repeats} repeats; banks built once in {bank_seconds:.2f} s")
    print(f"{'path':36s} {'min s':>7s} {'median s':>9s} {'items/s':>8s}"
          + "".join(f"{f'ours({d}) speed-up (min/median)':>33s}" for d in devices))
    for name, (best, median) in rows:
        print(f"{name:36s} {best:7.3f} {median:9.3f} {BATCH / best:8.1f}"
              + "".join(f"{best / ours[d][0]:16.2f}x / {median / ours[d][1]:6.2f}x   " for d in devices))


if __name__ == "__main__":
    main()
