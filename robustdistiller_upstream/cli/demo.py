"""``robustdistiller demo``: robust vs baseline distillation side by side on generated speech, on CPU.

1. writes a small LibriSpeech-layout corpus with noise and room banks, held-out noises and a command corpus in
   Speech Commands' layout (KS) or, where s3prl's KS dataset cannot read audio, in Fluent Speech Commands' (IC)
   (``demo.pretraining``, ``demo.corpus``; espeak-ng speech);
2. pretrains the robust and the baseline student from a log-mel teacher, once per seed (``demo.pretraining``);
3. keyword spotting (or intent classification) through ``run_superb.sh`` (the stock s3prl runner) for both students and the teacher's own
   features, tested on clean speech and under noises and rooms the pretraining never saw; ``robustdistiller
   report`` tables and plots, and a mean +- spread table over seeds (``demo.downstream``);
4. the feature-level table of the first seed's students (``demo.features``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

HELP = ("demo: pretrain robust vs baseline students on generated speech (CPU, minutes), then keyword spotting "
        "(or intent classification) through the stock s3prl runner under unseen noise and reverberation")

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from robustdistiller_upstream.demo.downstream import CONDITIONS, Budget
    from robustdistiller_upstream.demo.pretraining import RECIPE

    parser.add_argument("--out", default=None,
                        help="output folder, not holding another demo (default: demo_out/<date>-<time>)")
    parser.add_argument("--recipe", default=str(RECIPE), help="robust recipe (default: pretrain/demo.yaml)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of each student (default: recipe)")
    parser.add_argument("--seeds", type=int, default=1, help="pretraining and the task repeated with seeds 0..N-1; the "
                                                             "table gives mean and spread (default 1)")
    parser.add_argument("--speakers", type=int, default=12, help="training speakers (espeak-ng voices)")
    parser.add_argument("--utterances", type=int, default=20, help="training utterances per speaker")
    parser.add_argument("--held-out", type=int, default=4, help="held-out utterances per speaker (2 speakers)")
    parser.add_argument("--task", default="auto", choices=["auto", "KS", "IC"],
                        help="downstream task (default auto: KS where s3prl's KS dataset can read audio, which needs "
                             "libsox, else IC)")
    parser.add_argument("--task-steps", "--ks-steps", type=int, default=Budget.steps,
                        help="downstream training steps per upstream")
    parser.add_argument("--task-speakers", "--ks-speakers", type=int, default=12, help="downstream training speakers")
    parser.add_argument("--task-test-speakers", "--ks-test-speakers", type=int, default=6,
                        help="downstream test speakers (not training ones)")
    parser.add_argument("--conditions", "--ks-conditions", default="all",
                        help=f"comma list of downstream test conditions (default all: {', '.join(CONDITIONS)})")
    parser.add_argument("--no-downstream", action="store_true", help="skip the downstream task (only the "
                                                                     "feature-level table)")


def run(args: argparse.Namespace) -> int:
    from robustdistiller_upstream.demo import downstream
    from robustdistiller_upstream.demo.corpus import write_fluent_commands, write_speech_commands
    from robustdistiller_upstream.demo.features import evaluate, format_table
    from robustdistiller_upstream.demo.pretraining import make_data, teacher_config, train_side_by_side
    from robustdistiller_upstream.errors import ConfigError, TrainingError
    from robustdistiller_upstream.files import write_text_atomic

    out = Path(args.out or time.strftime("demo_out/%Y%m%d-%H%M%S"))
    if (out / "results.md").exists():
        raise TrainingError(f"{out} holds a finished demo ({out / 'results.md'}): pick another --out")
    if (out / "exp").exists():
        raise TrainingError(f"{out / 'exp'} exists (an interrupted demo?): remove it or pick another --out")
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: at least 1")
    task_conditions = downstream.pick_conditions(args.conditions)
    task, unavailable = downstream.pick_task(args.task)
    skipped = "--no-downstream" if args.no_downstream else unavailable
    seconds: dict[str, float] = {}
    start = last = time.perf_counter()

    def lap(part: str) -> None:
        nonlocal last
        now = time.perf_counter()
        seconds[part] = round(now - last, 1)
        last = now

    data = make_data(out / "data", args.speakers, args.utterances, args.held_out)
    task_data = out / "data" / task.folder
    if not skipped and task.name == "KS":
        write_speech_commands(task_data, args.task_speakers, args.task_test_speakers)
    elif not skipped:
        write_fluent_commands(task_data, args.task_speakers, n_test_speakers=args.task_test_speakers)
    lap("data")
    checkpoints = {seed: train_side_by_side(Path(args.recipe), out / "exp", out / "data", args.steps, seed)
                   for seed in range(args.seeds)}
    lap("pretraining")
    commands: list[str] = []
    task_table = ""
    result: dict = {"seeds": args.seeds}
    if skipped:
        logger.warning("%s skipped: %s", task.title, skipped)
        result["downstream_skipped"] = skipped
    else:
        conditions = downstream.write_conditions(out / f"{task.folder}_conditions.yaml", data["musan_eval"],
                                                 task_conditions)
        budget = downstream.Budget(steps=args.task_steps)
        env = downstream.runner_env()
        upstreams = [downstream.Upstream(f"{name}-seed{seed}", "robustdistiller_local", str(checkpoints[seed][name]))
                     for seed in range(args.seeds) for name in ("robust", "baseline")]
        upstreams += [downstream.Upstream(f"{downstream.TEACHER_FEATURES}-seed{seed}", downstream.TEACHER_FEATURES)
                      for seed in range(args.seeds)]
        sweeps = [downstream.sweep_command(task, u, task_data, out / "superb", conditions, budget,
                                           int(u.tag.rsplit("seed", 1)[1])) for u in upstreams]
        downstream.run_parallel(sweeps, [out / "superb" / f"{u.tag}.log" for u in upstreams], env)
        lap("downstream")
        report = downstream.report_command(out / "superb", out / "report")
        downstream.run_parallel([report], [out / "report.log"], env)
        lap("report")
        commands = [downstream.printable(c, env) for c in [*sweeps, report]]
        rows = [("robust student (RobustDistiller recipe)", "robust"),
                ("baseline student (DistilHuBERT recipe)", "baseline"),
                (f"`{downstream.TEACHER_FEATURES}` (the teacher's features)", downstream.TEACHER_FEATURES)]
        table = downstream.seed_table(downstream.accuracies(out / "superb", task), rows, args.seeds,
                                      task_conditions)
        task_table = downstream.format_seed_table(table, args.seeds, task_conditions)
        result.update(task=task.name, downstream=table, commands=commands)
    feature_rows = evaluate(checkpoints[0], teacher_config(Path(args.recipe)), data["held_out"], data["musan_eval"],
                            out / "data" / "bank-cache")
    lap("features")
    seconds["total"] = round(time.perf_counter() - start, 1)
    features = format_table(feature_rows)
    result.update(features=feature_rows, seconds=seconds)
    spread = f"mean ± sample standard deviation over {args.seeds} seeds" if args.seeds > 1 else "seed 0"
    task_note = (f"{task.name} test accuracy (%), stock s3prl runner, {args.task_steps} steps per upstream, "
                 f"{spread} (pretraining and {task.name} seeds); noise files and rooms unseen in pretraining. Tables "
                 f"and plots per run: {out / 'report'}")
    feature_note = (f"feature change = ||h(contaminated) - h(clean)|| / ||h(clean)|| of the last transformer layer; "
                    f"clean-target L1 = |prediction(contaminated input) - teacher(clean input)|; "
                    f"{len(data['held_out'])} held-out utterances, noises and rooms unseen in training (seed 0).")
    timing = ", ".join(f"{part} {value / 60:.1f} min" for part, value in seconds.items())
    title = task.title[0].upper() + task.title[1:]
    parts = [f"## {title} ({task.name})\n\n{task_table}\n\n{task_note}" if task_table
             else f"{task.title} skipped: {skipped}",
             f"## Features\n\n{features}\n\n{feature_note}", f"time: {timing}",
             f"checkpoints (seed 0): {checkpoints[0]['robust']} and {checkpoints[0]['baseline']} (s3prl: "
             f"-u robustdistiller_local -k CKPT)"]
    if commands:
        parts.append("commands (each runs as printed):\n" + "\n".join(commands))
    text = "\n\n".join(parts)
    write_text_atomic(out / "results.json", json.dumps(result, indent=1))
    write_text_atomic(out / "results.md", text + "\n")
    print(text)
    return 0
