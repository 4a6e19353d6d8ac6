"""Audio I/O through soundfile: formats, segments, atomic writes, resampling, errors naming the file."""

import numpy as np
import pytest
import soundfile as sf

from robustdistiller_upstream.audio import (
    audio_info,
    audio_subtype,
    is_audio_path,
    read_audio,
    resample,
    write_audio_atomic,
)
from robustdistiller_upstream.errors import AudioError


def _tone(n: int, rate: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(n) / rate
    x = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1)
    return x[:, 0].astype(np.float32) if channels == 1 else x.astype(np.float32)


@pytest.mark.parametrize("suffix,subtype", [(".wav", "PCM_16"), (".flac", "PCM_24"), (".wav", "FLOAT")])
def test_roundtrip_keeps_samples_rate_and_subtype(tmp_path, suffix, subtype):
    x = _tone(8000)
    path = write_audio_atomic(tmp_path / f"a{suffix}", x, 16000, subtype)
    y, rate = read_audio(path)
    assert rate == 16000 and y.dtype == np.float32 and y.shape == (8000,)
    assert np.abs(y - x).max() < 1e-4
    assert audio_info(path) == (8000, 16000, 1)
    assert audio_subtype(path) == subtype
    assert [p.name for p in tmp_path.iterdir()] == [f"a{suffix}"]  # no temporary left behind


def test_segment_read_equals_slice_and_multichannel_shape(tmp_path):
    x = _tone(16000, channels=2)
    path = write_audio_atomic(tmp_path / "st.flac", x, 16000)
    full, _ = read_audio(path)
    part, _ = read_audio(path, start=1234, frames=500)
    assert full.shape == (16000, 2)
    np.testing.assert_array_equal(part, full[1234:1734])


def test_resample_length_identity_and_tone_kept():
    x = _tone(44100, rate=44100)
    y = resample(x, 44100, 16000)
    assert y.dtype == np.float32 and len(y) == 16000
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) - 220) <= 1  # 1 Hz bins over 1 s
    assert resample(x, 16000, 16000) is not None and np.array_equal(resample(x, 16000, 16000), x)


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="bad.wav"):
        read_audio(bad)
    with pytest.raises(AudioError, match="bad.wav"):
        audio_info(bad)
    with pytest.raises(AudioError, match="unknown audio suffix"):
        write_audio_atomic(tmp_path / "x.xyz", _tone(10), 16000)
    assert is_audio_path("a/B.FLAC") and not is_audio_path("a/b.txt")


def test_failed_write_leaves_no_file(tmp_path):
    with pytest.raises((sf.LibsndfileError, ValueError, TypeError, RuntimeError)):
        write_audio_atomic(tmp_path / "a.wav", np.zeros(10, np.float32), 16000, subtype="NOT_A_SUBTYPE")
    assert list(tmp_path.iterdir()) == []
