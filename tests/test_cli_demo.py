"""``robustdistiller demo`` end to end on a reduced budget: corpora, two side-by-side pretraining runs, keyword
spotting (or intent classification) through run_superb.sh and the stock s3prl runner (default featurizer on the
demo's students), the report, the feature table; every command the demo prints is run again as printed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torchaudio

from pretrain_helpers import cli, run_group
from system_packages import ESPEAK, SOX_EXTENSION, missing

from robustdistiller_upstream.demo.downstream import CONDITIONS, seed_table
from robustdistiller_upstream.s3prl_stack import sox_extension_error
from robustdistiller_upstream.synthetic import have_espeak

TAGS = ["robust-seed0", "baseline-seed0", "fbank_no_cmvn-seed0"]
KS_CONDITIONS = ["clean", "noise_snr5_rt0.6"]  # the cheapest honest table: clean and the hardest condition


def test_demo_runs_ks_through_the_stock_runner_and_prints_both_tables(tmp_path):
    out = tmp_path / "demo"
    command = [sys.executable, "-m", "robustdistiller_upstream.cli", "demo", "--out", str(out), "--steps", "3",
               "--speakers", "2", "--utterances", "2", "--held-out", "1", "--task", "KS", "--task-steps", "10",
               "--task-speakers", "2", "--task-test-speakers", "2", "--conditions", ",".join(KS_CONDITIONS)]
    result = run_group(command, tmp_path, timeout=900)  # 3 sweeps of 3 stock runner processes each
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| noise 5 dB + reverb |" in result.stdout and "robustdistiller_local" in result.stdout
    summary = json.loads((out / "results.json").read_text())
    rows = summary["features"]
    assert [r["condition"] for r in rows][:2] == ["clean", "noise 10 dB"]
    assert rows[0]["robust_change"] == 0.0 and rows[0]["teacher_change_l1"] == 0.0
    assert all(r["teacher_change_l1"] > 0 for r in rows[1:])  # every condition really contaminates
    for name in ("robust", "baseline"):
        assert (out / "exp" / f"{name}-seed0" / "student-step3.ckpt").exists()
    assert "enabled: false" in (out / "exp" / "baseline-seed0" / "config.yaml").read_text()
    assert set(summary["seconds"]) >= {"data", "pretraining", "features", "total"}

    if not have_espeak() or sox_extension_error():
        assert "keyword spotting skipped" in result.stdout and summary["downstream_skipped"]
        assert not have_espeak() or "--task IC runs without it" in result.stdout
        if hasattr(torchaudio, "sox_effects"):  # a stack that runs KS: the missing package skips (in CI fails) the rest
            missing(ESPEAK if not have_espeak() else SOX_EXTENSION)
    else:
        table = summary["downstream"]
        assert [r["upstream"].split()[0] for r in table] == ["robust", "baseline", "`fbank_no_cmvn`"]
        for row in table:  # one accuracy per condition, a percentage
            assert set(row) == {"upstream", *KS_CONDITIONS}
            assert all(0.0 <= row[c]["mean"] <= 100.0 and len(row[c]["values"]) == 1 for c in KS_CONDITIONS)
        header = next(line for line in result.stdout.splitlines() if line.startswith("| upstream |"))
        assert header == "| upstream | " + " | ".join(f"{c} (`{CONDITIONS[c]}`)" for c in KS_CONDITIONS) + " |"
        assert "| robust student (RobustDistiller recipe) |" in result.stdout
        assert (out / "report" / "results.md").read_text().count("## ") == len(TAGS)
        commands = summary["commands"]
        assert len(commands) == len(TAGS) + 1 and all(c in result.stdout for c in commands)
        # the students' sweeps use the stock runner's default featurizer (no -s), which stacks every hidden state:
        # a demo student's head (240-d) on its 256-d encoder crashed it before hidden_states became featurizer-safe
        assert all(f"--tag {tag}" in c and " -s " not in c for tag, c in zip(TAGS[:2], commands))
        for command in commands:  # as printed: finished sweeps are skipped, the report is written again
            again = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=tmp_path)
            assert again.returncode == 0, f"{command}\n{again.stderr[-2000:]}"
        for tag in TAGS:
            runs = json.loads((out / "superb" / tag / "summary.json").read_text())["runs"]
            assert {r["status"] for r in runs} == {"skipped"}

    again = cli("demo", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 2 and "holds a finished demo" in again.stderr


def path_without(program: str, tmp_path: Path) -> str:
    """A PATH holding this venv's programs and links to every system program but ``program``'s family."""
    hidden = tmp_path / "system-bin"
    hidden.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not Path(folder).is_dir() or Path(folder) == Path(sys.executable).parent:
            continue
        for entry in Path(folder).iterdir():
            if not entry.name.startswith(program) and not (hidden / entry.name).exists():
                (hidden / entry.name).symlink_to(entry)
    return os.pathsep.join([str(Path(sys.executable).parent), str(hidden)])


@pytest.mark.one_stack
def test_demo_runs_intent_classification_without_system_speech(tmp_path):
    """The libsox-free task (IC: its stock dataset reads audio through soundfile) with no espeak-ng program on
    PATH: the commands are spoken by the espeakng-loader wheel, and the downstream table comes out."""
    env = dict(os.environ, PATH=path_without("espeak", tmp_path))
    env.pop("ESPEAK_SOURCE", None)
    assert shutil.which("espeak-ng", path=env["PATH"]) is None and shutil.which("bash", path=env["PATH"])
    out = tmp_path / "demo"
    conditions = ["clean", "white_snr10"]
    command = [sys.executable, "-m", "robustdistiller_upstream.cli", "demo", "--out", str(out), "--steps", "3",
               "--speakers", "2", "--utterances", "2", "--held-out", "1", "--task", "IC", "--task-steps", "10",
               "--task-speakers", "2", "--task-test-speakers", "2", "--conditions", ",".join(conditions)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(espeak-ng library)" in result.stderr + result.stdout  # the corpus says where its speech came from
    assert "## Intent classification (IC)" in result.stdout
    summary = json.loads((out / "results.json").read_text())
    assert summary["task"] == "IC"
    for row in summary["downstream"]:
        assert set(row) == {"upstream", *conditions}
    evaluated = {p.parent.name for p in (out / "superb").glob("*/IC/*/result.json")}
    assert evaluated == set(conditions)
    test_csv = out / "data" / "ic" / "fluent_speech_commands_dataset" / "data" / "test_data.csv"
    assert len(test_csv.read_text().splitlines()) == 1 + 2 * 12  # 2 test speakers x 12 intents


def test_seed_table_gives_mean_and_sample_spread():
    results = {(f"{prefix}-seed{k}", c): value + k for prefix, value in (("robust", 50.0), ("fbank", 10.0))
               for k in range(3) for c in CONDITIONS}
    table = seed_table(results, [("robust student", "robust"), ("fbank", "fbank")], 3, list(CONDITIONS))
    assert [row["upstream"] for row in table] == ["robust student", "fbank"]
    assert table[0]["clean"] == {"mean": 51.0, "spread": 1.0, "values": [50.0, 51.0, 52.0]}
    assert table[1]["noise_snr5"]["mean"] == 11.0


def test_the_teacher_is_the_recipes(tmp_path):
    """The demo's teacher (pretraining and the feature table) is the recipe's ``teacher.model_config``: the shipped
    recipe's relative path is the repository's; a recipe without one is refused, naming the file."""
    from robustdistiller_upstream.demo.pretraining import RECIPE, teacher_config
    from robustdistiller_upstream.errors import ConfigError

    shipped = teacher_config(RECIPE)
    assert shipped == RECIPE.parents[1] / "pretrain" / "teachers" / "fbank_delta_cmvn_20ms.yaml" and shipped.is_file()
    own = tmp_path / "teacher.yaml"
    own.write_text("kaldi: {feat_type: fbank}\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"teacher: {{name: baseline_local, model_config: {own}}}\n")
    assert teacher_config(recipe) == own
    recipe.write_text("teacher: {name: baseline_local}\n")
    with pytest.raises(ConfigError, match=f"{recipe}: teacher.model_config is not set"):
        teacher_config(recipe)
    recipe.write_text("teacher: {name: baseline_local, model_config: teachers/none.yaml}\n")
    with pytest.raises(ConfigError, match="teacher.model_config teachers/none.yaml does not exist"):
        teacher_config(recipe)
