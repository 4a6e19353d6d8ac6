"""Generated speech, noises, rooms and corpus layouts used by every other test."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robustdistiller_upstream import synthetic
from robustdistiller_upstream.audio import audio_info, read_audio
from robustdistiller_upstream.espeak import espeak_source, synthesize
from system_packages import needs_espeak_program

# the augment extra installs the wheel where it exists (setup.cfg's marker): nothing else may skip these tests
needs_wheel = pytest.mark.skipif(not (sys.platform == "linux" and platform.machine() == "x86_64"),
                                 reason="the espeakng-loader wheel is for Linux x86-64 only")


def assert_speaks_every_voice_of_the_corpora(monkeypatch, source: str) -> None:
    monkeypatch.setenv("ESPEAK_SOURCE", source)
    assert espeak_source() == source
    lengths = set()
    for voice in synthetic.ESPEAK_VOICES:
        audio, rate = synthesize("seven bright stars shine", voice, 160, 50)
        assert rate == 22050 and audio.dtype == np.float32 and 0.8 * rate < len(audio) < 4 * rate, voice
        assert 0.1 < np.abs(audio).max() <= 1.0, voice
        lengths.add(len(audio))
    assert len(lengths) > 1  # the voices differ
    slow, _ = synthesize("seven bright stars shine", "en-us", 80, 50)
    fast, _ = synthesize("seven bright stars shine", "en-us", 240, 50)
    assert len(slow) > 1.5 * len(fast)


@needs_espeak_program
def test_the_program_speaks_every_voice(monkeypatch):
    assert_speaks_every_voice_of_the_corpora(monkeypatch, "program")


@needs_wheel
def test_the_wheel_speaks_every_voice(monkeypatch):
    assert_speaks_every_voice_of_the_corpora(monkeypatch, "library")


@needs_wheel
def test_an_unknown_voice_is_named(monkeypatch):
    monkeypatch.setenv("ESPEAK_SOURCE", "library")
    with pytest.raises(RuntimeError, match="no voice 'xx-no-such'"):
        synthesize("hello", "xx-no-such", 160, 50)


@needs_wheel
def test_speech_without_the_program_on_path(tmp_path):
    """With no espeak-ng program on PATH (only the venv's bin), speech comes from the wheel."""
    code = ("from robustdistiller_upstream import synthetic, espeak; "
            "synthetic.speak('seven bright stars', 'out.wav', voice='en-us'); print(espeak.espeak_source())")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    env.pop("ESPEAK_SOURCE", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "library"
    audio, _ = read_audio(tmp_path / "out.wav")
    assert audio.shape[0] > 8000 and np.abs(audio).max() > 0.05


def test_synthetic_speech_is_deterministic_with_pauses():
    x = synthetic.synthetic_speech(2.0, 16000, seed=3)
    assert x.shape == (32000,) and x.dtype == np.float32
    assert np.array_equal(x, synthetic.synthetic_speech(2.0, 16000, seed=3))
    frame_rms = np.sqrt((x[: 32000 // 160 * 160].reshape(-1, 160) ** 2).mean(axis=1))
    assert (frame_rms < 0.01).mean() > 0.05 and (frame_rms > 0.05).mean() > 0.3  # pauses and syllables


@pytest.mark.parametrize("kind", synthetic.NOISE_KINDS)
def test_noise_kinds_have_rms_0_1(kind):
    x = synthetic.make_noise(kind, 1.0, 16000, seed=1)
    assert x.shape == (16000,) and abs(np.sqrt(np.mean(x.astype(np.float64) ** 2)) - 0.1) < 1e-4


def test_noise_colours_tilt_the_spectrum():
    def low_high_ratio(x):
        power = np.abs(np.fft.rfft(x)) ** 2
        return power[10:400].mean() / power[4000:8000].mean()

    white, pink, brown = (low_high_ratio(synthetic.make_noise(k, 2.0, 16000, 0)) for k in ("white", "pink", "brown"))
    assert white < 3 < pink < brown


def test_simulated_rir_grows_with_rt60():
    short = synthetic.simulate_rir(0.2, seed=1)
    longer = synthetic.simulate_rir(0.4, seed=1)
    assert short.dtype == np.float32 and len(longer) > len(short)
    assert np.abs(short).argmax() < 400  # direct path within 25 ms


def test_layout_builders(tmp_path):
    flacs = synthetic.write_librispeech(tmp_path / "ls", ("dev-clean",), n_speakers=1, n_utterances=2,
                                        use_espeak=False)
    assert [p.relative_to(tmp_path / "ls").as_posix() for p in flacs] == [
        "dev-clean/100/1000/100-1000-0000.flac", "dev-clean/100/1000/100-1000-0001.flac"]
    trans = (tmp_path / "ls/dev-clean/100/1000/100-1000.trans.txt").read_text().splitlines()
    assert [line.split()[0] for line in trans] == ["100-1000-0000", "100-1000-0001"]
    noises = synthetic.write_musan_noise(tmp_path / "musan", n_files=4, seconds=1.0)
    assert {audio_info(p)[1] for p in noises} == {16000, 44100}
    assert (tmp_path / "musan/noise/free-sound/ANNOTATIONS").exists()
    rirs = synthetic.write_slr28_rirs(tmp_path / "rirs", n_files=2)
    assert [audio_info(p)[2] for p in rirs] == [1, 1, 2]
    assert all("RIRS_NOISES" in str(p) for p in rirs)


def test_edge_silence_pads_each_utterance_and_keeps_its_speech_and_text(tmp_path):
    plain = synthetic.write_librispeech(tmp_path / "plain", n_speakers=1, n_utterances=3)
    padded = synthetic.write_librispeech(tmp_path / "padded", n_speakers=1, n_utterances=3,
                                         edge_silence_s=(0.2, 0.5))
    assert [p.relative_to(tmp_path / "plain") for p in plain] == [p.relative_to(tmp_path / "padded") for p in padded]
    text = "dev-clean/100/1000/100-1000.trans.txt"
    assert (tmp_path / "plain" / text).read_text() == (tmp_path / "padded" / text).read_text()
    leads = []
    for a, b in zip(plain, padded):
        speech, rate = read_audio(a)
        audio, _ = read_audio(b)
        lead = np.flatnonzero(audio)[0] - np.flatnonzero(speech)[0]
        trail = len(audio) - len(speech) - lead
        assert 0.2 * rate <= lead <= 0.5 * rate and 0.2 * rate <= trail <= 0.5 * rate
        np.testing.assert_array_equal(audio[lead:lead + len(speech)], speech)
        assert not audio[:lead].any() and not audio[lead + len(speech):].any()
        leads.append(lead)
    assert len(set(leads)) == 3  # drawn per utterance
    with pytest.raises(ValueError, match="edge_silence_s"):
        synthetic.write_librispeech(tmp_path / "bad", n_speakers=1, n_utterances=1, edge_silence_s=(0.5, 0.2))
    assert not (tmp_path / "bad").exists()  # refused before anything is written
