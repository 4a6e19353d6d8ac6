"""``robustdistiller contaminate`` run as a real subprocess on small trees."""

import hashlib
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from robustdistiller_upstream import synthetic
from robustdistiller_upstream.audio import read_audio, write_audio_atomic
from robustdistiller_upstream.cli import main
from system_packages import SOX_PROGRAM, missing

META = ".robustdistiller"


def _cli(*args):
    """A subprocess run of the installed command line."""
    cmd = [sys.executable, "-m", "robustdistiller_upstream.cli", "contaminate", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _main(caplog, *args) -> tuple[int, str]:
    """The same command in this process (saves the interpreter start): exit code and log text."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        code = main(["contaminate", *map(str, args)])
    return code, caplog.text


def _tree_digest(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A source tree (flac LibriSpeech + wav files of several kinds + text + Kaldi data dir) and a noise bank."""
    root = tmp_path_factory.mktemp("cli")
    src = root / "src"
    synthetic.write_librispeech(src, ("test-clean",), n_speakers=2, n_utterances=2)
    write_audio_atomic(src / "wavs/a.wav", synthetic.synthetic_speech(1.5, 16000, 1), 16000, "PCM_16")
    write_audio_atomic(src / "wavs/narrow.wav", synthetic.synthetic_speech(1.0, 8000, 2), 8000, "PCM_16")
    stereo = np.stack([synthetic.synthetic_speech(1.0, 16000, s) for s in (3, 4)], axis=1)
    write_audio_atomic(src / "wavs/stereo.wav", stereo, 16000, "FLOAT")
    (src / "notes.txt").write_text("side file\n")
    write_audio_atomic(root / "elsewhere/ext.wav", synthetic.synthetic_speech(1.0, 16000, 5), 16000, "PCM_16")
    (src / "data").mkdir()
    (src / "linked").mkdir()
    (src / "linked/ext.wav").symlink_to(root / "elsewhere/ext.wav")  # views made of links are read through
    (src / "data/wav.scp").write_text(f"recA {src / 'wavs/a.wav'}\nrecB {root / 'elsewhere/ext.wav'}\n"
                                      f"recC wavs/narrow.wav\nrecD {src / 'linked/ext.wav'}\n")
    (src / "data/segments").write_text("u1 recA 0.0 1.0\nu2 recB 0.0 0.5\n")
    synthetic.write_musan_noise(root / "musan", n_files=4, seconds=2.0)
    return root


def test_condition_copy_keeps_layout_format_and_writes_manifest(world, tmp_path):
    src, dst = world / "src", tmp_path / "noisy"
    before = _tree_digest(src)
    result = _cli("--src", src, "--dst", dst, "--condition", "noise:musan:snr=5", "--bank", f"musan={world / 'musan'}",
                  "--cache-dir", tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert _tree_digest(src) == before  # source untouched

    produced = {p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()}
    produced = {p for p in produced if not p.startswith((META, "_external"))}
    assert produced == set(before)
    for rel in before:
        if rel.endswith((".flac", ".wav")):
            a, b = sf.info(str(src / rel)), sf.info(str(dst / rel))
            assert (a.frames, a.samplerate, a.channels, a.subtype, a.format) == \
                   (b.frames, b.samplerate, b.channels, b.subtype, b.format), rel
            assert (src / rel).read_bytes() != (dst / rel).read_bytes()
        elif rel != "data/wav.scp":
            assert (src / rel).read_bytes() == (dst / rel).read_bytes()

    clean, _ = read_audio(src / "wavs/stereo.wav")  # float file: the mixture's SNR is exact
    noisy, _ = read_audio(dst / "wavs/stereo.wav")
    for c in range(2):
        snr = 10 * np.log10(np.mean(clean[:, c] ** 2) / np.mean((noisy[:, c] - clean[:, c]) ** 2))
        assert abs(snr - 5) < 0.05

    scp = dict(line.split() for line in (dst / "data/wav.scp").read_text().splitlines())
    assert scp["recA"] == str(dst / "wavs/a.wav")
    assert scp["recC"] == str(dst / "wavs/narrow.wav")  # relative entry, found under --src
    assert scp["recD"] == str(dst / "linked/ext.wav") and not (dst / "linked/ext.wav").is_symlink()
    assert scp["recB"].startswith(str(dst / "_external")) and Path(scp["recB"]).is_file()

    rows = [json.loads(line) for line in (dst / META / "manifest.jsonl").read_text().splitlines()]
    audio = {rel for rel in before if rel.endswith((".flac", ".wav"))}
    assert {r["path"] for r in rows} == audio | {str(Path(scp["recB"]).relative_to(dst))}
    assert all(t["op"] == "noise" and t["snr_db"] == 5.0 and "musan" in t["noise"]
               for r in rows for t in r["transforms"])
    assert json.loads((dst / META / "condition.json").read_text())["complete"] is True


def test_refuses_dst_inside_or_equal_src_and_foreign_dst(world, tmp_path, caplog):
    src = world / "src"
    before = _tree_digest(src)
    for dst in (src / "noisy", src):
        code, log = _main(caplog, "--src", src, "--dst", dst, "--condition", "noise:white:snr=5")
        assert code == 2 and "inside" in log
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    code, log = _main(caplog, "--src", src, "--dst", foreign, "--condition", "noise:white:snr=5")
    assert code == 2 and "not a contamination output" in log
    assert _tree_digest(src) == before and (foreign / "keep.txt").read_text() == "user data"
    for bad in ("noise:white", "noise:lake:snr=5", "reverb", "echo:snr=3", "noise:white:snr=loud",
                "clean:snr=5", "reverb:slr28:rt60=0.3", "noise:white:snr=5:rooms=3"):
        code, log = _main(caplog, "--src", src, "--dst", tmp_path / "x", "--condition", bad)
        assert code == 2 and "condition" in log, bad
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.wav").write_bytes(b"RIFF but not really")
    code, log = _main(caplog, "--src", broken, "--dst", tmp_path / "y", "--condition", "noise:white:snr=5")
    assert code == 2 and "bad.wav" in log


def test_resumes_after_being_killed(tmp_path):
    src = tmp_path / "src"
    for i in range(40):
        write_audio_atomic(src / f"spk{i % 3}/u{i:03d}.flac", synthetic.synthetic_speech(2.0, 16000, i), 16000)
    spec = "noise+reverb:pink:snr=0..20:rt60=0.25:rooms=2:room=5x4x3"
    cmd = [sys.executable, "-m", "robustdistiller_upstream.cli", "contaminate", "--src", str(src),
           "--condition", spec]
    dst = tmp_path / "killed"
    manifest = dst / META / "manifest.jsonl"
    process = subprocess.Popen(cmd + ["--dst", str(dst)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 3:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = manifest.read_text().count("\n")
    assert 3 <= finished < 40, "the run was not killed mid-way"
    assert json.loads((dst / META / "condition.json").read_text())["complete"] is False

    result = subprocess.run(cmd + ["--dst", str(dst)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{finished} finished earlier" in result.stderr
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == len({r["path"] for r in rows}) == 40

    fresh = tmp_path / "fresh"
    assert subprocess.run(cmd + ["--dst", str(fresh), "--workers", "2"], capture_output=True).returncode == 0
    assert {k: v for k, v in _tree_digest(dst).items() if not k.startswith(META)} == \
           {k: v for k, v in _tree_digest(fresh).items() if not k.startswith(META)}
    other = _cli("--src", src, "--dst", dst, "--condition", "noise:white:snr=5")
    assert other.returncode == 2 and "another condition" in other.stderr


def test_named_condition_from_yaml_with_env_paths_and_pipes(world, tmp_path, caplog, monkeypatch):
    src = tmp_path / "src"
    shutil.copytree(world / "src", src)
    (src / "data/wav.scp").write_text(f"recA sox {src / 'wavs/a.wav'} -t wav - |\n")
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text(
        "banks:\n  musan: ${BANKS_ROOT}/musan\n"
        "conditions:\n  musan_snr0: {spec: 'noise:musan:snr=0', seed: 3}\n  white10: 'noise:white:snr=10'\n")
    args = ["--src", src, "--conditions", conditions, "--name", "musan_snr0", "--cache-dir", tmp_path / "cache",
            "--dst", tmp_path / "a"]
    code, log = _main(caplog, *args, "--run-pipes")
    assert code == 2 and "BANKS_ROOT" in log
    monkeypatch.setenv("BANKS_ROOT", str(world))
    code, log = _main(caplog, *args)
    assert code == 2 and "--run-pipes" in log and "wav.scp:1" in log
    if shutil.which("sox") is None:
        missing(SOX_PROGRAM)
    code, log = _main(caplog, *args, "--run-pipes")
    assert code == 0, log
    rec, path = (tmp_path / "a/data/wav.scp").read_text().split()
    assert rec == "recA" and sf.info(path).frames == sf.info(str(src / "wavs/a.wav")).frames
    rows = [json.loads(line) for line in (tmp_path / "a" / META / "manifest.jsonl").read_text().splitlines()]
    assert {t["snr_db"] for r in rows for t in r["transforms"]} == {0.0}
    assert all("musan" in t["noise"] for r in rows for t in r["transforms"])
    assert json.loads((tmp_path / "a" / META / "condition.json").read_text())["seed"] == 3
