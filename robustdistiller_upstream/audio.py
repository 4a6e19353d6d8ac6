"""Audio file I/O and resampling: every audio read and write of the project goes through here (soundfile).

Arrays are float32, shape ``(samples,)`` for mono and ``(samples, channels)`` otherwise; rates in Hz.
"""

from __future__ import annotations

from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from robustdistiller_upstream.errors import AudioError
from robustdistiller_upstream.files import atomic_output

# suffix -> libsndfile container name
_FORMATS = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".aiff": "AIFF",
    ".aif": "AIFF",
    ".mp3": "MP3",
}
AUDIO_SUFFIXES = frozenset(_FORMATS)


def is_audio_path(path: str | Path) -> bool:
    """Whether the suffix names an audio format we read and write (case-insensitive)."""
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def _info(path: str | Path) -> sf._SoundFileInfo:
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: cannot read audio header ({exc})") from None


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` from the header, without decoding."""
    info = _info(path)
    return int(info.frames), int(info.samplerate), int(info.channels)


def audio_subtype(path: str | Path) -> str:
    """libsndfile's sample encoding of the file (``"PCM_16"``, ``"FLOAT"``, ``"VORBIS"``, ...)."""
    return str(_info(path).subtype)


def read_audio(path: str | Path, start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    """Decodes ``frames`` samples from sample ``start`` (``-1``: to the end), seeking without decoding the rest.

    Returns ``(audio, sample_rate)``: float32 ``(samples,)`` if mono, ``(samples, channels)`` otherwise.
    """
    try:
        data, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: cannot decode audio ({exc})") from None
    return data, int(rate)


def write_audio_atomic(
    path: str | Path, data: np.ndarray, sample_rate: int, subtype: str | None = None
) -> Path:
    """Writes ``data`` ((samples,) or (samples, channels)) to ``path`` via a temporary file and a rename.

    The container comes from the suffix; ``subtype`` (e.g. ``"PCM_16"``) defaults to libsndfile's for it.
    A reader never sees a half-written file, and an interrupted write leaves no file at ``path``.
    """
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(f"{path}: unknown audio suffix (known: {sorted(_FORMATS)})")
    with atomic_output(path) as tmp:
        sf.write(tmp, data, sample_rate, subtype=subtype, format=fmt)
    return path


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Polyphase resampling along axis 0 (time); float32 out. The identity when the rates match."""
    if orig_sr == new_sr:
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly  # scipy.signal takes ~1 s to import: only when needed

    g = gcd(int(orig_sr), int(new_sr))
    y = resample_poly(np.asarray(x, dtype=np.float32), new_sr // g, orig_sr // g, axis=0)
    return y.astype(np.float32, copy=False)
