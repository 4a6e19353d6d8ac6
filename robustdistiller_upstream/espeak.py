"""espeak-ng speech from the ``espeak-ng`` program where installed, else from the ``espeakng-loader`` wheel.

The wheel (PyPI, the ``augment`` extra) ships ``libespeak-ng.so`` and its ``espeak-ng-data``, so speech needs no
system package. The program is preferred where both exist (Debian's espeak-ng 1.51 and the wheel's 1.52 say the same
words with slightly different audio). ``ESPEAK_SOURCE=program|library`` forces one.
Audio is float32 ``(samples,)`` in [-1, 1] at the engine's rate (22,050 Hz).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

import numpy as np

from robustdistiller_upstream.audio import read_audio

__all__ = ["espeak_source", "synthesize", "MISSING"]

MISSING = ("espeak-ng is not available: install the wheel (pip install espeakng-loader, in the augment extra) "
           "or Debian's package (apt-get install espeak-ng)")

# espeak-ng's speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH = 1, 3


class _Voice(ctypes.Structure):
    """speak_lib.h's ``espeak_VOICE``: a voice chosen by language, as the espeak-ng program falls back to."""

    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _wheel() -> Optional[object]:
    try:
        import espeakng_loader
    except ImportError:
        return None
    return espeakng_loader if Path(espeakng_loader.get_library_path()).is_file() else None


def espeak_source() -> Optional[str]:
    """``"program"`` (``espeak-ng`` on PATH), ``"library"`` (the wheel), or None where neither is there."""
    forced = os.environ.get("ESPEAK_SOURCE")
    if forced not in (None, "", "program", "library"):
        raise ValueError(f"ESPEAK_SOURCE={forced!r}: use 'program' or 'library'")
    if forced != "library" and shutil.which("espeak-ng") is not None:
        return "program"
    if forced != "program" and _wheel() is not None:
        return "library"
    return None


def synthesize(text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """``text`` spoken by ``voice`` at ``speed`` words per minute and ``pitch`` 0-99: (audio, sample rate).

    Raises ``RuntimeError`` naming what to install where espeak-ng is missing, or the voice where it fails."""
    source = espeak_source()
    if source == "program":
        return _from_program(text, voice, speed, pitch)
    if source == "library":
        return _Library.get().speak(text, voice, speed, pitch)
    raise RuntimeError(MISSING)


def _from_program(text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "speech.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not raw.exists():
            raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()}")
        audio, rate = read_audio(raw)
    return (audio.mean(axis=1) if audio.ndim > 1 else audio), rate


class _Library:
    """libespeak-ng from the wheel, initialised once per process; calls are serialised (the engine is global)."""

    _instance: Optional["_Library"] = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        wheel = _wheel()
        self.lib = ctypes.CDLL(wheel.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_Voice)]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data = os.fsencode(wheel.get_data_path())
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if self.rate <= 0:
            raise RuntimeError(f"libespeak-ng of the espeakng-loader wheel failed to start (data: {data!r})")
        self.chunks: list[np.ndarray] = []
        self.callback = _CALLBACK(self._collect)  # kept referenced: the library holds the pointer
        self.lib.espeak_SetSynthCallback(self.callback)

    @classmethod
    def get(cls) -> "_Library":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav, count: int, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def speak(self, text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
        with self._lock:
            # as the espeak-ng program does: by name ("en-us+f2"), else by language ("en-gb")
            if (self.lib.espeak_SetVoiceByName(voice.encode()) != 0
                    and self.lib.espeak_SetVoiceByProperties(ctypes.byref(_Voice(languages=voice.encode()))) != 0):
                raise RuntimeError(f"espeak-ng (espeakng-loader wheel) has no voice {voice!r}")
            self.lib.espeak_SetParameter(_RATE, speed, 0)
            self.lib.espeak_SetParameter(_PITCH, pitch, 0)
            self.chunks = []
            encoded = text.encode()
            status = self.lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            if status != 0 or not self.chunks:
                raise RuntimeError(f"espeak-ng (espeakng-loader wheel) failed for voice {voice!r} (status {status})")
            audio = np.concatenate(self.chunks).astype(np.float32) / 32768.0
        return audio, self.rate
