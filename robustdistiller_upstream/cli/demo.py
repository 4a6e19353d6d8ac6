"""``robustdistiller demo``: robust vs baseline distillation side by side on a generated corpus, on CPU.

1. writes a small LibriSpeech-layout corpus (espeak-ng speech; a speech-like fallback without espeak-ng), MUSAN-
   layout noises and SLR28-layout simulated rooms, plus held-out noises for the evaluation;
2. pretrains two students at once (one process and one thread each) from an s3prl ``baseline_local`` log-mel
   teacher (``pretrain/teachers/fbank_20ms.yaml``): the robust recipe (``pretrain/demo.yaml``: feature-denoising
   + enhancement head) and the baseline (the same recipe, denoising and head off = DistilHuBERT);
3. loads both checkpoints back through stock s3prl's hub (``s3prl.hub.robustdistiller_local``) and prints how much
   each student's features move under held-out contamination, and how well each still predicts the teacher's
   features of the clean speech.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

HELP = "demo: pretrain robust vs baseline students on generated speech (CPU, minutes) and compare robustness"

logger = logging.getLogger(__name__)

RECIPE = Path(__file__).resolve().parents[2] / "pretrain" / "demo.yaml"
# held-out test conditions (augment.conditions grammar); noises and rooms unseen in training
CONDITIONS = {
    "clean": "clean",
    "noise 10 dB": "noise:musan:snr=10",
    "noise 5 dB": "noise:musan:snr=5",
    "noise 0 dB": "noise:musan:snr=0",
    "pink noise 5 dB": "noise:pink:snr=5",
    "reverb RT60 0.6 s": "reverb:rt60=0.6:rooms=4",
    "noise 5 dB + reverb": "noise+reverb:musan:snr=5:rt60=0.6:rooms=4",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None,
                        help="output folder, not holding another demo (default: demo_out/<date>-<time>)")
    parser.add_argument("--recipe", default=str(RECIPE), help="robust recipe (default: pretrain/demo.yaml)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of each student (default: recipe)")
    parser.add_argument("--speakers", type=int, default=6, help="training speakers (espeak-ng voices)")
    parser.add_argument("--utterances", type=int, default=10, help="training utterances per speaker")
    parser.add_argument("--held-out", type=int, default=4, help="held-out utterances per speaker (2 speakers)")


def make_data(root: Path, speakers: int, utterances: int, held_out: int) -> dict[str, Path]:
    """Writes the training corpus and banks, and the held-out evaluation utterances and noises."""
    from robustdistiller_upstream.synthetic import (
        have_espeak,
        write_librispeech,
        write_musan_noise,
        write_slr28_rirs,
    )

    logger.info("writing the corpus under %s (%s)", root, "espeak-ng" if have_espeak() else "speech-like tones: no espeak-ng")
    write_librispeech(root / "LibriSpeech", ["train-clean-100"], n_speakers=speakers, n_utterances=utterances)
    held_out = write_librispeech(root / "LibriSpeech", ["dev-clean"], n_speakers=2, n_utterances=held_out, seed=1)
    write_musan_noise(root / "musan", 8, seed=0)
    write_musan_noise(root / "musan-eval", 4, seed=1000)
    write_slr28_rirs(root / "rirs", 6, n_multichannel=0)
    return {"held_out": held_out, "musan_eval": root / "musan-eval"}


def _overrides(data: Path, steps: int | None) -> list[str]:
    values = [
        f"data.librispeech_root={data / 'LibriSpeech'}",
        f"denoising.banks.noises=[{{kind: musan, path: {data / 'musan'}}}]",
        f"denoising.banks.rirs=[{{kind: slr28, path: {data / 'rirs'}}}]",
        f"denoising.banks.cache_dir={data / 'bank-cache'}",
        f"teacher.model_config={RECIPE.parent / 'teachers' / 'fbank_20ms.yaml'}",
        "run.threads=1",
        "data.num_workers=0",
    ]
    if steps is not None:
        values.append(f"run.total_steps={steps}")
    return values


def train_side_by_side(recipe: Path, exp_root: Path, data: Path, steps: int | None) -> dict[str, Path]:
    """Runs the robust and baseline recipes as two ``pretrain`` processes at once; returns their checkpoints."""
    from tqdm import tqdm

    from robustdistiller_upstream.config import load_config
    from robustdistiller_upstream.errors import TrainingError
    from robustdistiller_upstream.train.config import PretrainConfig

    common = _overrides(data, steps)
    runs = {"robust": common, "baseline": common + ["denoising.enabled=false", "enhance.enabled=false"]}
    total = load_config(PretrainConfig, recipe, common).run.total_steps
    procs = {}
    exp_root.mkdir(parents=True, exist_ok=True)
    for name, overrides in runs.items():
        command = [sys.executable, "-m", "robustdistiller_upstream.cli", "pretrain", "-c", str(recipe), "-n", name,
                   "--exp-root", str(exp_root), *(arg for value in overrides for arg in ("-o", value))]
        log = (exp_root / f"{name}.log").open("w")
        procs[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
    logger.info("training robust and baseline students side by side (logs: %s/{robust,baseline}.log)", exp_root)
    with tqdm(total=2 * total, desc="pretraining (both)", unit="step") as bar:
        while any(proc.poll() is None for proc, _ in procs.values()):
            time.sleep(1.0)
            done = sum(_last_step(exp_root / name / "log.jsonl") for name in procs)
            bar.update(done - bar.n)
    for name, (proc, log) in procs.items():
        log.close()
        if proc.returncode != 0:
            raise TrainingError(f"the {name} run failed (exit {proc.returncode}); see {exp_root / f'{name}.log'}")
    return {name: exp_root / name / f"student-step{total}.ckpt" for name in runs}


def _last_step(log: Path) -> int:
    if not log.exists():
        return 0
    lines = log.read_text().splitlines()
    return json.loads(lines[-1])["step"] if lines else 0


def evaluate(checkpoints: dict[str, Path], held_out: list[Path], musan_eval: Path, cache: Path) -> list[dict]:
    """One row per condition: feature change and clean-target error of each student, and the teacher's own change."""
    import torch

    from robustdistiller_upstream.audio import read_audio
    from robustdistiller_upstream.augment.banks import build_banks
    from robustdistiller_upstream.augment.conditions import parse_condition
    from robustdistiller_upstream.augment.contaminator import Contaminator
    from robustdistiller_upstream.s3prl_stack import import_s3prl_hub
    from robustdistiller_upstream.teacher import Teacher, TeacherConfig
    from robustdistiller_upstream.train.robustness import contaminate, score_student, teacher_error

    hub = import_s3prl_hub()

    wavs = [torch.from_numpy(read_audio(path)[0]) for path in held_out]
    ids = [path.stem for path in held_out]
    teacher = Teacher(TeacherConfig(name="baseline_local", model_config=str(RECIPE.parent / "teachers" / "fbank_20ms.yaml")), [0])
    students = {}
    for name, ckpt in checkpoints.items():
        upstream = hub.robustdistiller_local(ckpt=str(ckpt)).eval()  # the stock s3prl entry point
        students[name] = (upstream, upstream.model.config.encoder_layers)
    rows = []
    for label, spec in CONDITIONS.items():
        contaminator = None
        if spec != "clean":
            condition = parse_condition(spec, {"musan": str(musan_eval)}, seed=7, cache_dir=str(cache))
            contaminator = Contaminator(condition.contamination, *build_banks(condition.banks))
        noisy = contaminate(contaminator, wavs, ids)
        row = {"condition": label, "teacher_change_l1": teacher_error(teacher, wavs, noisy)}
        for name, (upstream, layer) in students.items():
            scores = score_student(upstream, layer, teacher, wavs, noisy)
            row[f"{name}_change"] = scores.change
            row[f"{name}_target_l1"] = scores.target_l1
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of ``evaluate``'s rows."""
    lines = [
        "| condition | feature change, baseline | feature change, robust | clean-target L1, baseline "
        "| clean-target L1, robust | fbank(noisy) vs fbank(clean) L1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['condition']} | {r['baseline_change']:.3f} | {r['robust_change']:.3f} | "
            f"{r['baseline_target_l1']:.3f} | {r['robust_target_l1']:.3f} | {r['teacher_change_l1']:.3f} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from robustdistiller_upstream.errors import TrainingError

    out = Path(args.out or time.strftime("demo_out/%Y%m%d-%H%M%S"))
    if (out / "results.md").exists():
        raise TrainingError(f"{out} holds a finished demo ({out / 'results.md'}): pick another --out")
    if (out / "exp").exists():
        raise TrainingError(f"{out / 'exp'} exists (an interrupted demo?): remove it or pick another --out")
    start = time.perf_counter()
    data = make_data(out / "data", args.speakers, args.utterances, args.held_out)
    checkpoints = train_side_by_side(Path(args.recipe), out / "exp", out / "data", args.steps)
    rows = evaluate(checkpoints, data["held_out"], data["musan_eval"], out / "data" / "bank-cache")
    table = format_table(rows)
    minutes = (time.perf_counter() - start) / 60
    (out / "results.json").write_text(json.dumps({"rows": rows, "minutes": minutes}, indent=1))
    (out / "results.md").write_text(table + "\n")
    print(table)
    print(
        f"\nfeature change = ||h(contaminated) - h(clean)|| / ||h(clean)|| of the last transformer layer; "
        f"clean-target L1 = |prediction(contaminated input) - teacher(clean input)|; {len(data['held_out'])} "
        f"held-out utterances, noises and rooms unseen in training.\n"
        f"checkpoints: {checkpoints['robust']} and {checkpoints['baseline']} (load with -u robustdistiller_local -k ...)"
        f"\ntotal {minutes:.1f} min"
    )
    return 0
