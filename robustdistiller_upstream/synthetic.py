"""Generated audio and small corpora in real layouts, for tests, demos and benchmarks.

Speech comes from espeak-ng (``speak``: the program where installed, else the ``espeakng-loader`` wheel's library;
``espeak.py``), otherwise from ``synthetic_speech`` (harmonic tones with a syllable envelope). Layout builders write LibriSpeech, MUSAN ``noise/`` and OpenSLR SLR28 trees.
Arrays are float32 ``(samples,)``; rates in Hz; durations in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from robustdistiller_upstream.audio import resample, write_audio_atomic
from robustdistiller_upstream.espeak import espeak_source, synthesize
from robustdistiller_upstream.augment.generators import COLORS, colored_noise
from robustdistiller_upstream.augment.rooms import simulate_rir

__all__ = [
    "ESPEAK_VOICES",
    "have_espeak",
    "speak",
    "spoken_sentences",
    "synthetic_speech",
    "make_noise",
    "simulate_rir",
    "write_librispeech",
    "write_musan_noise",
    "write_slr28_rirs",
]

# espeak-ng voices that sound like different English speakers (variants +f/+m change the voice quality).
ESPEAK_VOICES = ("en-us", "en-gb", "en+f3", "en+m3", "en-us+f2", "en-gb+m5", "en+f4", "en-us+m2")

_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bright stars shine above the quiet river "
    "music plays softly in the old house near the green hill and children read books by the window"
).split()

NOISE_KINDS = tuple(COLORS) + ("babble", "hum", "chirp")


def have_espeak() -> bool:
    """Whether espeak-ng can speak here: its program on PATH, or the ``espeakng-loader`` wheel."""
    return espeak_source() is not None


def speak(
    text: str,
    path: str | Path,
    voice: str = "en",
    speed: int = 160,
    pitch: int = 50,
    sample_rate: int = 16000,
) -> Path:
    """Writes ``text`` spoken by espeak-ng as mono audio at ``sample_rate`` (format from ``path``'s suffix).

    ``speed`` is in words per minute, ``pitch`` 0-99. Raises ``RuntimeError`` naming what to install if espeak-ng
    is missing.
    """
    return write_audio_atomic(path, spoken(text, voice, speed, pitch, sample_rate), sample_rate)


def spoken(text: str, voice: str = "en", speed: int = 160, pitch: int = 50, sample_rate: int = 16000) -> np.ndarray:
    """``text`` spoken by espeak-ng: float32 ``(samples,)`` at ``sample_rate`` (``speak``'s arguments)."""
    audio, rate = synthesize(text, voice, speed, pitch)
    return resample(audio, rate, sample_rate)


def spoken_sentences(count: int, voices: Sequence[str], seed: int = 0, sample_rate: int = 16000) -> list[np.ndarray]:
    """``count`` random sentences of 6-15 words, spoken by espeak-ng by ``voices`` in turn at 140-190 words per
    minute and pitch 30-70: float32 ``(samples,)`` each at ``sample_rate``. Raises ``RuntimeError`` naming what to
    install if espeak-ng is missing."""
    rng = np.random.default_rng(seed)
    return [spoken(_sentence(rng, int(rng.integers(6, 16))), voices[i % len(voices)], int(rng.integers(140, 190)),
                   int(rng.integers(30, 70)), sample_rate) for i in range(count)]


def synthetic_speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Speech-like float32 ``(samples,)``: a gliding harmonic voice (f0 90-240 Hz, 20 harmonics) gated by
    syllables of 0.1-0.3 s with short pauses, peak 0.5. For machines without espeak-ng."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    f0_base = rng.uniform(90, 240)
    f0 = f0_base * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t + rng.uniform(0, 2 * np.pi)))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    harmonics = np.arange(1, 21)
    weights = rng.uniform(0.3, 1.0, harmonics.size) / harmonics
    voice = (weights[:, None] * np.sin(harmonics[:, None] * phase[None, :])).sum(axis=0)
    envelope = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.1, 0.3) * sample_rate)
        end = min(pos + length, n)
        envelope[pos:end] = np.hanning(length)[: end - pos] * rng.uniform(0.4, 1.0)
        pos = end + int(rng.uniform(0.02, 0.15) * sample_rate)
    out = voice * envelope + 0.005 * rng.standard_normal(n)
    return (0.5 * out / max(np.abs(out).max(), 1e-9)).astype(np.float32)


def make_noise(kind: str, seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Float32 ``(samples,)`` noise of RMS 0.1: ``white``/``pink``/``brown`` (Gaussian, 1/f^k spectrum),
    ``babble`` (6 overlapping synthetic voices), ``hum`` (mains 50 Hz and harmonics + a little white noise)
    or ``chirp`` (0.5 s sweeps 100 Hz -> 4 kHz)."""
    n = int(round(seconds * sample_rate))
    if kind in COLORS:
        generator = torch.Generator().manual_seed(seed)
        out = colored_noise((n,), kind, generator).numpy()
    elif kind == "babble":
        out = sum(synthetic_speech(seconds, sample_rate, seed * 100 + i) for i in range(6))
    elif kind == "hum":
        rng = np.random.default_rng(seed)
        t = np.arange(n) / sample_rate
        out = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
        out = out + 0.05 * rng.standard_normal(n)
    elif kind == "chirp":
        from scipy.signal import chirp

        t = (np.arange(n) / sample_rate) % 0.5
        out = chirp(t, f0=100, t1=0.5, f1=4000, method="logarithmic")
    else:
        raise ValueError(f"unknown noise kind {kind!r}; known: {list(NOISE_KINDS)}")
    out = np.asarray(out, dtype=np.float64)
    return (0.1 * out / max(np.sqrt(np.mean(out**2)), 1e-12)).astype(np.float32)


def _sentence(rng: np.random.Generator, n_words: int) -> str:
    return " ".join(rng.choice(_WORDS, size=n_words))


def write_librispeech(
    root: str | Path,
    subsets: Sequence[str] = ("dev-clean",),
    n_speakers: int = 2,
    n_chapters: int = 1,
    n_utterances: int = 3,
    seed: int = 0,
    use_espeak: bool | None = None,
    edge_silence_s: tuple[float, float] = (0.0, 0.0),
) -> list[Path]:
    """Writes ``<root>/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt:04d>.flac`` (16 kHz) and each chapter's
    ``<spk>-<chapter>.trans.txt`` (upper-case transcripts), LibriSpeech's layout. Speakers get different
    espeak-ng voices (``use_espeak=None``: espeak-ng where installed, else ``synthetic_speech`` of 1.5-3 s).
    ``edge_silence_s``: (min, max) seconds of silence drawn for each end of each utterance, as LibriSpeech's
    segments keep a pause before and after the speech (espeak-ng's output starts at the first phone); its own draws,
    so the texts do not depend on it. Returns the audio paths, sorted."""
    if not 0 <= edge_silence_s[0] <= edge_silence_s[1]:
        raise ValueError(f"edge_silence_s={edge_silence_s}: needs 0 <= min <= max seconds")
    root = Path(root)
    rng = np.random.default_rng(seed)
    silence_rng = np.random.default_rng([seed, 1])
    espeak = have_espeak() if use_espeak is None else use_espeak
    paths = []
    for subset_index, subset in enumerate(subsets):
        for s in range(n_speakers):
            speaker = 100 + 10 * subset_index + s
            voice = ESPEAK_VOICES[s % len(ESPEAK_VOICES)]
            for c in range(n_chapters):
                chapter = 1000 + c
                folder = root / subset / str(speaker) / str(chapter)
                folder.mkdir(parents=True, exist_ok=True)
                lines = []
                for u in range(n_utterances):
                    utt_id = f"{speaker}-{chapter}-{u:04d}"
                    text = _sentence(rng, int(rng.integers(4, 9)))
                    path = folder / f"{utt_id}.flac"
                    if espeak:
                        audio = spoken(text, voice=voice, speed=int(rng.integers(140, 190)))
                    else:
                        audio = synthetic_speech(rng.uniform(1.5, 3.0), 16000, int(rng.integers(1 << 31)))
                    lead, trail = (silence_rng.uniform(*edge_silence_s, size=2) * 16000).astype(int)
                    write_audio_atomic(path, np.pad(audio, (lead, trail)), 16000)
                    lines.append(f"{utt_id} {text.upper()}")
                    paths.append(path)
                (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return sorted(paths)


def write_musan_noise(root: str | Path, n_files: int = 8, seconds: float = 3.0, seed: int = 0) -> list[Path]:
    """Writes MUSAN's noise layout: ``<root>/noise/free-sound/noise-free-sound-NNNN.wav`` (first half) and
    ``<root>/noise/sound-bible/noise-sound-bible-NNNN.wav``, each folder with its ``ANNOTATIONS`` and
    ``LICENSE`` text files. Kinds cycle through ``NOISE_KINDS``; every fourth file is 44.1 kHz, the rest 16 kHz.
    Returns the audio paths."""
    root = Path(root)
    paths = []
    for i in range(n_files):
        source = "free-sound" if i < (n_files + 1) // 2 else "sound-bible"
        folder = root / "noise" / source
        folder.mkdir(parents=True, exist_ok=True)
        rate = 44100 if i % 4 == 3 else 16000
        kind = NOISE_KINDS[i % len(NOISE_KINDS)]
        path = folder / f"noise-{source}-{i:04d}.wav"
        write_audio_atomic(path, make_noise(kind, seconds, rate, seed + i), rate)
        paths.append(path)
    for folder in {p.parent for p in paths}:
        names = sorted(p.stem for p in paths if p.parent == folder)
        (folder / "ANNOTATIONS").write_text("".join(f"{name} synthetic\n" for name in names))
        (folder / "LICENSE").write_text("Generated by robustdistiller_upstream.synthetic for tests.\n")
    return paths


def write_slr28_rirs(
    root: str | Path, n_files: int = 4, seed: int = 0, n_multichannel: int = 1
) -> list[Path]:
    """Writes OpenSLR SLR28's layout under ``<root>/RIRS_NOISES``: ``simulated_rirs/smallroom/RoomNNN/
    RoomNNN-0000K.wav`` (16 kHz, RT60 0.2-0.35 s, pyroomacoustics) and, in ``real_rirs_isotropic_noises/``,
    ``n_multichannel`` 2-channel 48 kHz ``..._rir_...`` files plus one ``..._noise_...`` file (not an RIR).
    Returns the RIR paths."""
    base = Path(root) / "RIRS_NOISES"
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_files):
        room = i // 2 + 1
        path = base / "simulated_rirs" / "smallroom" / f"Room{room:03d}" / f"Room{room:03d}-{i % 2 + 1:05d}.wav"
        rir = simulate_rir(rng.uniform(0.2, 0.35), (rng.uniform(4, 7), rng.uniform(3, 6), 3.0), 16000, seed + i)
        write_audio_atomic(path, rir, 16000)
        paths.append(path)
    real = base / "real_rirs_isotropic_noises"
    for i in range(n_multichannel):
        path = real / f"RVB2014_type1_rir_smallroom{i + 1}_near_angla.wav"
        channels = [simulate_rir(0.3, (5.0, 4.0, 3.0), 48000, seed + 100 + i + k) for k in range(2)]
        length = min(len(c) for c in channels)
        write_audio_atomic(path, np.stack([c[:length] for c in channels], axis=1), 48000)
        paths.append(path)
    if n_multichannel:
        write_audio_atomic(real / "RVB2014_type1_noise_smallroom1_1.wav", make_noise("pink", 1.0, 16000, seed), 16000)
    return paths
