"""The demo's feature-level table: how much each student's features move under held-out contamination, and how
well each still predicts the teacher's features of the clean speech; both students loaded back through stock
s3prl's hub (``s3prl.hub.robustdistiller_local``).
"""

from __future__ import annotations

from pathlib import Path

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


def evaluate(checkpoints: dict[str, Path], teacher_config: Path, held_out: list[Path], musan_eval: Path,
             cache: Path) -> list[dict]:
    """One row per condition: feature change and clean-target error of each student, and the change of the teacher
    (``baseline_local`` with ``teacher_config``)."""
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
    teacher = Teacher(TeacherConfig(name="baseline_local", model_config=str(teacher_config)), [0])
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
        "| clean-target L1, robust | teacher(noisy) vs teacher(clean) L1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['condition']} | {r['baseline_change']:.3f} | {r['robust_change']:.3f} | "
            f"{r['baseline_target_l1']:.3f} | {r['robust_target_l1']:.3f} | {r['teacher_change_l1']:.3f} |"
        )
    return "\n".join(lines)
