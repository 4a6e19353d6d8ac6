"""The demo's pretraining: a small generated corpus with noise and room banks, and two students trained at once.

``make_data`` writes a LibriSpeech-layout corpus (espeak-ng speech; speech-like tones without espeak-ng), MUSAN-
layout noises and SLR28-layout simulated rooms for training, plus held-out utterances and noise files for the
evaluation; ``train_side_by_side`` runs the robust recipe (``pretrain/demo.yaml``) and the baseline (denoising
and head off = DistilHuBERT) as two ``pretrain`` processes, one thread each, from an s3prl ``baseline_local``
log-mel teacher (the recipe's ``teacher.model_config``: ``pretrain/teachers/fbank_delta_cmvn_20ms.yaml``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "pretrain" / "demo.yaml"
# seconds of silence before and after each utterance, drawn per end: LibriSpeech's segments keep such pauses, and
# the student learns there what noise alone should map to (the KS words end in 0.2 s of silence; without these pauses
# white noise at 10 dB left the robust student at 15% KS accuracy, 38% with them: docs/demo.md)
EDGE_SILENCE_S = (0.1, 0.6)


def make_data(root: Path, speakers: int, utterances: int, held_out: int) -> dict[str, Path]:
    """Writes the training corpus and banks, and the held-out evaluation utterances and noises."""
    from robustdistiller_upstream.espeak import espeak_source
    from robustdistiller_upstream.synthetic import write_librispeech, write_musan_noise, write_slr28_rirs

    source = espeak_source()
    logger.info("writing the corpus under %s (%s)", root,
                f"espeak-ng {source}" if source else "speech-like tones: no espeak-ng")
    write_librispeech(root / "LibriSpeech", ["train-clean-100"], n_speakers=speakers, n_utterances=utterances,
                      edge_silence_s=EDGE_SILENCE_S)
    held_out = write_librispeech(root / "LibriSpeech", ["dev-clean"], n_speakers=2, n_utterances=held_out, seed=1,
                                 edge_silence_s=EDGE_SILENCE_S)
    write_musan_noise(root / "musan", 8, seed=0)
    write_musan_noise(root / "musan-eval", 4, seed=1000)
    write_slr28_rirs(root / "rirs", 6, n_multichannel=0)
    return {"held_out": held_out, "musan_eval": root / "musan-eval"}


def teacher_config(recipe: Path) -> Path:
    """The ``teacher.model_config`` of ``recipe`` (a ``baseline_local`` config); a relative path that does not exist
    from here is the repository's (``pretrain/teachers/...``, as ``pretrain/demo.yaml`` names it)."""
    from robustdistiller_upstream.config import read_yaml
    from robustdistiller_upstream.errors import ConfigError

    value = (read_yaml(recipe).get("teacher") or {}).get("model_config")
    if not value:
        raise ConfigError(f"{recipe}: teacher.model_config is not set (the demo's teacher is a baseline_local config)")
    path = Path(value)
    path = path.resolve() if path.is_absolute() or path.exists() else REPO / path
    if not path.is_file():
        raise ConfigError(f"{recipe}: teacher.model_config {value} does not exist (from here or from {REPO})")
    return path


def _overrides(data: Path, teacher: Path, steps: int | None, seed: int) -> list[str]:
    values = [
        f"data.librispeech_root={data / 'LibriSpeech'}",
        f"denoising.banks.noises=[{{kind: musan, path: {data / 'musan'}}}]",
        f"denoising.banks.rirs=[{{kind: slr28, path: {data / 'rirs'}}}]",
        f"denoising.banks.cache_dir={data / 'bank-cache'}",
        f"teacher.model_config={teacher}",
        "run.threads=1",
        "data.num_workers=0",
        f"run.seed={seed}",
    ]
    if steps is not None:
        values.append(f"run.total_steps={steps}")
    return values


def train_side_by_side(recipe: Path, exp_root: Path, data: Path, steps: int | None, seed: int) -> dict[str, Path]:
    """Runs the robust and baseline recipes as two ``pretrain`` processes at once (``exp_root/{robust,baseline}-
    seed<seed>``); returns their checkpoints, by recipe name."""
    from tqdm import tqdm

    from robustdistiller_upstream.config import load_config
    from robustdistiller_upstream.errors import TrainingError
    from robustdistiller_upstream.train.config import PretrainConfig

    common = _overrides(data, teacher_config(recipe), steps, seed)
    runs = {f"robust-seed{seed}": common,
            f"baseline-seed{seed}": common + ["denoising.enabled=false", "enhance.enabled=false"]}
    total = load_config(PretrainConfig, recipe, common).run.total_steps
    procs = {}
    exp_root.mkdir(parents=True, exist_ok=True)
    for name, overrides in runs.items():
        command = [sys.executable, "-m", "robustdistiller_upstream.cli", "pretrain", "-c", str(recipe), "-n", name,
                   "--exp-root", str(exp_root), *(arg for value in overrides for arg in ("-o", value))]
        log = (exp_root / f"{name}.log").open("w")
        procs[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
    logger.info("training robust and baseline students side by side, seed %d (logs: %s/{robust,baseline}-seed%d.log)",
                seed, exp_root, seed)
    with tqdm(total=2 * total, desc=f"pretraining (both, seed {seed})", unit="step") as bar:
        while any(proc.poll() is None for proc, _ in procs.values()):
            time.sleep(1.0)
            done = sum(_last_step(exp_root / name / "log.jsonl") for name in procs)
            bar.update(done - bar.n)
    for name, (proc, log) in procs.items():
        log.close()
        if proc.returncode != 0:
            raise TrainingError(f"the {name} run failed (exit {proc.returncode}); see {exp_root / f'{name}.log'}")
    return {name.split("-")[0]: exp_root / name / f"student-step{total}.ckpt" for name in runs}


def _last_step(log: Path) -> int:
    if not log.exists():
        return 0
    lines = log.read_text().splitlines()
    return json.loads(lines[-1])["step"] if lines else 0


