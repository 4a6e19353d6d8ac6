"""Tiny pretraining set-ups for the tests: a synthetic LibriSpeech corpus, noise/RIR banks, a random WavLM teacher
in s3prl's format and a recipe YAML whose student matches it (1 s crops, 64-d)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from robustdistiller_upstream.random_teacher import write_wavlm_checkpoint
from robustdistiller_upstream.synthetic import write_librispeech, write_musan_noise, write_slr28_rirs

TINY_STUDENT = {
    "extractor_conv_layers": [[64, 10, 5]] + [[64, 3, 2]] * 4 + [[64, 2, 2]] * 2,
    "encoder_layers": 2,
    "encoder_embed_dim": 64,
    "encoder_ffn_embed_dim": 128,
    "encoder_attention_heads": 4,
    "conv_pos": 16,
    "conv_pos_groups": 4,
    "pred_layer_id": [1, 2],
    "final_dim": 64,
}


def make_world(root: Path, n_speakers: int = 2, n_utterances: int = 3) -> dict[str, Path]:
    """Writes corpus, banks and teacher under ``root``; returns their paths."""
    write_librispeech(root / "LibriSpeech", ["train-clean-100"], n_speakers=n_speakers, n_utterances=n_utterances,
                      use_espeak=False)
    write_musan_noise(root / "musan", 4, seconds=2.0)
    write_slr28_rirs(root / "rirs", 2, n_multichannel=0)
    return {"corpus": root / "LibriSpeech", "musan": root / "musan", "rirs": root / "rirs",
            "teacher": write_wavlm_checkpoint(root / "wavlm_tiny.pt")}


def recipe(world: dict[str, Path], robust: bool = True, **sections: dict[str, Any]) -> dict[str, Any]:
    """A recipe dict: tiny student, tiny teacher, 1 s crops, batch 2, CPU, fp32; ``sections`` update it."""
    config: dict[str, Any] = {
        "teacher": {"name": "wavlm_local", "ckpt": str(world["teacher"])},
        "student": dict(TINY_STUDENT),
        "denoising": {
            "enabled": robust,
            "banks": {"noises": [{"kind": "musan", "path": str(world["musan"])}],
                      "rirs": [{"kind": "slr28", "path": str(world["rirs"])}],
                      "cache_dir": str(world["corpus"].parent / "bank-cache")},
        },
        "enhance": {"enabled": robust, "hidden_size": 32, "num_layers": 1},
        "data": {"librispeech_root": str(world["corpus"]), "subsets": ["train-clean-100"], "sequence_length": 16000,
                 "batch_size": 2, "num_workers": 0},
        "optim": {"lr": 1e-3, "warmup": 0.0},
        "run": {"total_steps": 4, "device": "cpu", "amp": "none", "log_every": 1, "save_every": 2, "threads": 1},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def write_recipe(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def run_group(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs ``command`` (one thread per process) in its own process group; on a timeout the whole group is
    killed, so torchrun's workers cannot outlive the test."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def cli(*args: str, cwd: Path, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Runs ``python -m robustdistiller_upstream.cli ARGS`` (or under ``launcher``, e.g. torchrun) in ``cwd``."""
    command = [*launcher, "-m", "robustdistiller_upstream.cli", *args] if launcher else [
        sys.executable, "-m", "robustdistiller_upstream.cli", *args]
    return run_group(command, cwd)


def cli_popen(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "robustdistiller_upstream.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
