"""Every SUPERB task end to end on CPU: run_superb.sh drives the stock s3prl runner on small spoken corpora in their
real layouts (``demo.superb_corpora``), trains a few steps, evaluates the best checkpoint on clean, noisy and
reverberant test copies and parses the metric into ``result.json``; ``robustdistiller report`` then tables and
plots all twelve.

- KS and IC with s3prl's ``fbank_no_cmvn`` (a real, fast upstream; DESIGN 5), which must beat chance: one sweep is
  killed (SIGKILL) in the middle of IC's training, after KS's finished, rerun (IC's training resumes from the
  runner's last checkpoint, KS's is not redone), and rerun again to show it does no work; a tiny
  ``robustdistiller_local`` student and its int8 ONNX export through the same sweep;
- the text tasks (PR, ASR, SF), the speaker and emotion tasks (SID, ASV, ER with two of its five folds, SD) and the
  signal tasks (SE, SS, QbE): one sweep per group of a tiny random ``robustdistiller_local`` student (its numbers
  only show their range), then one test per task.

Tasks a stack cannot run (the current stack: KS, QbE and ASV read audio through ``torchaudio.sox_effects``) are
refused by the plan with the reason, which the tests check. On the current stack the group sweeps evaluate the
clean test sets only (``EVALUATED``: each runner start there costs ~20 s of ESPnet imports); IC is still evaluated
under noise there. The group sweeps are many runner starts: the module timeout is above pytest-timeout's 900 s
default.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import torchaudio

from superb_reads import assert_reads, copy_files, traced
from superb_runs import run_ok, runner_env, summary_status, sweep_command, tiny_student_checkpoint
from system_packages import needs_sox_extension, needs_strace, skip_without_espeak

from robustdistiller_upstream.s3prl_stack import sox_extension_error
from robustdistiller_upstream.superb.prepare import CHARACTERS, PHONEMES

pytestmark = [pytest.mark.superb_e2e, pytest.mark.timeout(2400)]

CONDITIONS = """\
conditions:
  clean: {spec: clean, seed: 0}
  white_snr5: {spec: "noise:white:snr=5", seed: 0}
  reverb_rt0.6: {spec: "reverb:rt60=0.6:rooms=2", seed: 0}
"""
CONDITION_NAMES = ("clean", "white_snr5", "reverb_rt0.6")
STOCK = hasattr(torchaudio, "sox_effects")  # KS, QbE and ASV's stock datasets need it (removed in torchaudio 2.9)
# What the group sweeps evaluate. On the current stack each runner start spends ~20 s importing ESPnet (its hub
# imports espnet2's tasks, g2p_en, nltk), and the condition copies are our code, the same on both stacks: there the
# ten tasks train and are evaluated on the clean test set only, which keeps .ci/run within its budget.
EVALUATED = CONDITION_NAMES if STOCK else ("clean",)
GROUP_CONDITIONS = ["--only-conditions", ",".join(EVALUATED)]

# tiny training: 200 steps of 8 utterances, one dev evaluation at the end (the best checkpoint): enough for
# fbank_no_cmvn to beat chance on KS and IC
_BATCHES = ["optimizer.lr=1.0e-3", "KS:downstream_expert.datarc.batch_size=8",
            "IC:downstream_expert.datarc.train_batch_size=8"]
OVERRIDES = ["runner.total_steps=200", "runner.eval_step=200", "runner.save_step=100", "runner.log_step=100",
             *_BATCHES]
# where only the metric's range is checked (a random tiny student, a plan's other tasks): 20 steps
SHORT_OVERRIDES = ["runner.total_steps=20", "runner.eval_step=20", "runner.save_step=20", "runner.log_step=10",
                   *_BATCHES]


def _printed(row: dict, line: str, scale: float = 1.0) -> float:
    """The value the expert printed for the test split in the evaluation's run.log: the last match of ``line`` (a
    regex whose one group is the number, written here apart from ``superb/tasks.py``), times ``scale``; checks
    that ``row``'s metric of that name is that value."""
    text = Path(row["log"]).read_text(errors="replace").replace("\r", "\n")
    found = re.findall(line, text, flags=re.MULTILINE)
    assert found, f"no {line!r} in {row['log']}"
    return float(found[-1]) * scale


def _is_printed(row: dict, name: str, line: str, scale: float = 1.0) -> None:
    """``row["metrics"][name]`` is the value the expert printed on ``line`` for the test split (``_printed``)."""
    assert row["metrics"][name] == pytest.approx(_printed(row, line, scale), rel=1e-9), (name, row["log"])


def _checkpoint_named(sweep: Path, label: str, rows: dict[str, dict]) -> dict:
    """Every evaluation of ``label`` (``ER/fold2``; ``rows``: result.json per condition) in the sweep folder
    ``sweep`` used the checkpoint its training's done.json names, with its kind and why, as summary.json says:
    dev-best where the expert saved one, else the last (ASV: no dev set)."""
    done = json.loads((sweep / label / "train" / "done.json").read_text())
    assert {(r["checkpoint"], r["checkpoint_kind"], r["checkpoint_why"]) for r in rows.values()} == {
        (done["checkpoint"], done["checkpoint_kind"], done["checkpoint_why"])}
    assert done["checkpoint"].startswith(str(sweep / label / "train"))
    if "best" in Path(done["checkpoint"]).name:
        assert done["checkpoint_kind"] == "dev-best" and "best dev score" in done["checkpoint_why"], done
    else:
        assert done["checkpoint_kind"] == "last" and "no dev" in done["checkpoint_why"], done
    runs = json.loads((sweep / "summary.json").read_text())["runs"]
    assert {r["checkpoint_kind"] for r in runs if r["task"] == label} == {done["checkpoint_kind"]}
    return done


def _outputs_differ(exp: Path, name: str) -> None:
    """The file ``name`` that the clean and the white-noise evaluations of the same checkpoint wrote (predictions,
    scores) exists in both and differs: the noisy evaluation did not see the clean test set."""
    clean, noisy = (exp / condition / name for condition in ("clean", "white_snr5"))
    assert clean.read_bytes() and noisy.read_bytes() and clean.read_bytes() != noisy.read_bytes(), (clean, noisy)


def _sweep(data: Path, exp: Path, conditions: Path, tasks: str, *extra: str, upstream: str = "fbank_no_cmvn",
           overrides: list[str] = OVERRIDES) -> list[str]:
    return sweep_command(data, exp, conditions, tasks, *extra, overrides=overrides, upstream=upstream)


def _data_root(tmp_path_factory, name: str, *writers: Callable[[Path], object]) -> Path:
    """A new data root written by each of ``writers`` (``demo.superb_corpora``: espeak-ng speech) and
    conditions.yaml."""
    skip_without_espeak()
    root = tmp_path_factory.mktemp(name)
    for write in writers:
        write(root)
    (root / "conditions.yaml").write_text(CONDITIONS)
    return root


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    skip_without_espeak()
    from robustdistiller_upstream.demo.superb_corpora import write_fluent_commands, write_speech_commands

    root = tmp_path_factory.mktemp("superb_data")
    write_speech_commands(root)
    write_fluent_commands(root)
    conditions = root / "conditions.yaml"
    conditions.write_text(CONDITIONS)
    return root, conditions


@pytest.fixture(scope="module")
def exp_root(tmp_path_factory):
    """One results root for the module's sweeps: they share its condition copies (_conditions/)."""
    return tmp_path_factory.mktemp("superb_exp")


@pytest.mark.stock_only  # KS: s3prl's speech_commands dataset needs torchaudio.sox_effects
@needs_sox_extension
def test_sweep_resumes_after_a_kill_skips_finished_work_and_reports(corpora, exp_root, tmp_path):
    data, conditions = corpora
    exp = exp_root
    env = runner_env()

    plan = run_ok(_sweep(data, exp, conditions, "KS,IC", "--dry-run"), env)
    assert "CANNOT RUN" not in plan, plan  # e.g. KS needs catalyst 22.4 (docs/superb.md)
    assert "superb.launch -m train -u fbank_no_cmvn -d speech_commands" in plan
    assert "-d fluent_commands" in plan and plan.count("\n  evaluate ") == 6
    assert not (exp / "fbank_no_cmvn").exists()

    # first attempt: killed (whole process group, runner included) in the middle of IC's training, once the runner
    # saved its step-100 checkpoint (KS trained and was evaluated before: the tasks run in order)
    ks_done = exp / "fbank_no_cmvn" / "KS" / "train" / "done.json"
    ic_train = (exp / "fbank_no_cmvn" / "IC" / "train").resolve()  # as the sweep names its runner's folder
    first = subprocess.Popen(_sweep(data, exp, conditions, "KS,IC"), env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while not (ic_train / "states-100.ckpt").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # torch.save has written the whole file; 100 more steps take far longer
    assert (ic_train / "states-100.ckpt").exists() and first.poll() is None, "IC's training did not reach step 100"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert ks_done.exists() and not (ic_train / "done.json").exists() and not (ic_train / "states-200.ckpt").exists()
    trained_at = ks_done.stat().st_mtime

    # second attempt: IC's training resumes from step 100 and finishes; KS is not retrained
    run_ok(_sweep(data, exp, conditions, "KS,IC"), env)
    status = summary_status(exp)
    assert status[("KS", "train")] == "skipped" and ks_done.stat().st_mtime == trained_at
    assert status[("IC", "train")] == "done"
    assert all(status[(task, c)] in ("done", "skipped") for task in ("KS", "IC")
               for c in ("clean", "white_snr5", "reverb_rt0.6"))
    attempts = (ic_train / "run.log").read_text().split("\n# ")[1:]  # one header per runner start
    assert len(attempts) == 2 and "[Runner] - Start a new experiment" in attempts[0], attempts[0][-2000:]
    assert f"[Runner] - Resume from {ic_train / 'states-100.ckpt'}" in attempts[1], attempts[1][-2000:]
    assert "Start a new experiment" not in attempts[1] and (ic_train / "states-200.ckpt").exists()

    # which checkpoint was evaluated, and why: the dev-best one, in done.json, summary.json and every result
    runs = json.loads((exp / "fbank_no_cmvn" / "summary.json").read_text())["runs"]
    results = {}
    for path in (exp / "fbank_no_cmvn").glob("*/*/result.json"):
        row = json.loads(path.read_text())
        results[(row["task"], row["condition"])] = row["metrics"]["Acc"]
        _is_printed(row, "Acc", r"^test acc: (\S+)$", 100)  # the test split's line, not a dev one
        done = json.loads((exp / "fbank_no_cmvn" / row["task"] / "train" / "done.json").read_text())
        assert done["checkpoint_kind"] == "dev-best" and done["checkpoint"].endswith("/dev-best.ckpt")
        assert (row["checkpoint"], row["checkpoint_kind"]) == (done["checkpoint"], "dev-best")
        assert "best dev score" in row["checkpoint_why"]
    assert {(r["checkpoint_kind"], r["checkpoint"]) for r in runs if r["task"] == "IC"} == {
        ("dev-best", str(ic_train / "dev-best.ckpt"))}
    assert len(results) == 6
    assert results[("KS", "clean")] > 3 * 100 / 12, results  # 12 classes: chance 8.3%
    assert results[("IC", "clean")] > 2 * 100 / 6, results  # 6 intents
    # the same checkpoint predicted other classes on the noisy test copy than on the clean test set
    _outputs_differ(exp / "fbank_no_cmvn" / "KS", "test_predict.txt")
    _outputs_differ(exp / "fbank_no_cmvn" / "IC", "test_predict.csv")
    # the condition copies are shared, deterministic and really different from the clean test data
    ks_copy = exp / "_conditions" / "KS" / "white_snr5" / "ready.json"
    assert json.loads(ks_copy.read_text())["spec"] == "noise:white:snr=5"
    ic_root = exp / "_conditions" / "IC" / "reverb_rt0.6" / "root"
    assert (ic_root / "data").is_symlink()  # side files and training data stay the clean originals (links)
    copied = ic_root / "wavs" / "speakers"
    test_file = next(p for p in copied.rglob("*.wav") if not p.resolve().is_relative_to(data))
    clean_file = data / "fluent_speech_commands_dataset" / test_file.relative_to(ic_root)
    assert test_file.read_bytes() != clean_file.read_bytes()

    # third attempt: nothing to do
    logs = {p: p.stat().st_mtime for p in (exp / "fbank_no_cmvn").rglob("run.log")}
    start = time.monotonic()
    run_ok(_sweep(data, exp, conditions, "KS,IC"), env)
    assert time.monotonic() - start < 30
    assert set(summary_status(exp).values()) == {"skipped"}
    assert logs == {p: p.stat().st_mtime for p in (exp / "fbank_no_cmvn").rglob("run.log")}

    out = tmp_path / "report"
    run_ok([sys.executable, "-m", "robustdistiller_upstream.cli", "report", str(exp / "fbank_no_cmvn"), "--out",
          str(out)], env)
    table = (out / "results.md").read_text()
    assert "| KS | Acc ↑ |" in table and "| IC | Acc ↑ |" in table and "reverb_rt0.6" in table
    assert table.count(" | dev-best |\n") == 2
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 6
    for png in ("snr_KS.png", "snr_IC.png", "reverb.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.stock_only  # KS: s3prl's speech_commands dataset needs torchaudio.sox_effects
@needs_sox_extension
def test_our_upstream_runs_through_the_same_sweep_and_reuses_condition_copies(corpora, exp_root, tmp_path):
    """A tiny robustdistiller_local checkpoint (random weights) through the stock runner; the report then compares
    both upstreams. Condition copies made by the sweep above are reused, not rebuilt."""
    data, conditions = corpora
    ckpt = tiny_student_checkpoint(tmp_path / "tiny_rd" / "student.ckpt")
    copy = exp_root / "_conditions" / "KS" / "white_snr5"
    built_before = (copy / "ready.json").exists()
    log_before = (copy / "contaminate.log").read_text() if built_before else None
    run_ok(_sweep(data, exp_root, conditions, "KS", "--ckpt", str(ckpt), "--only-conditions", "clean,white_snr5",
                  upstream="robustdistiller_local", overrides=SHORT_OVERRIDES), runner_env())
    rows = [json.loads(p.read_text()) for p in (exp_root / "tiny_rd" / "KS").glob("*/result.json")]
    assert sorted(r["condition"] for r in rows) == ["clean", "white_snr5"]
    assert {r["upstream"] for r in rows} == {"robustdistiller_local"} and rows[0]["ckpt"] == str(ckpt)
    for row in rows:
        _is_printed(row, "Acc", r"^test acc: (\S+)$", 100)
    if built_before:
        assert (copy / "contaminate.log").read_text() == log_before
    # another checkpoint under the same tag: refused, the finished results stay
    other = tiny_student_checkpoint(tmp_path / "tiny_rd_2" / "student.ckpt")
    clash = subprocess.run(_sweep(data, exp_root, conditions, "KS", "--ckpt", str(other), "--tag", "tiny_rd",
                                  upstream="robustdistiller_local", overrides=SHORT_OVERRIDES), env=runner_env(),
                           capture_output=True, text=True)
    assert clash.returncode == 1 and "choose another --tag" in clash.stderr
    assert sorted(p.parent.name for p in (exp_root / "tiny_rd" / "KS").glob("*/result.json")) == ["clean",
                                                                                                 "white_snr5"]

    out = tmp_path / "report"
    run_ok([sys.executable, "-m", "robustdistiller_upstream.cli", "report", str(exp_root), "--out", str(out)], runner_env())
    table = (out / "results.md").read_text()
    assert "## tiny_rd" in table and "## fbank_no_cmvn" in table


@pytest.mark.skipif(hasattr(torchaudio, "sox_effects"), reason="the stock stack runs every task (test above)")
def test_current_stack_names_the_tasks_it_cannot_run_and_runs_the_rest(corpora, tmp_path):
    """torchaudio >= 2.9: KS cannot run (its stock dataset imports torchaudio.sox_effects); the plan says so before
    anything starts, and IC still trains and is evaluated under each condition."""
    data, conditions = corpora
    exp = tmp_path / "exp"
    plan = run_ok(_sweep(data, exp, conditions, "KS,IC", "--dry-run"), runner_env())
    ks_line = next(line for line in plan.splitlines() if line.startswith("KS "))
    assert "CANNOT RUN" in ks_line and "speech_commands/dataset.py: torchaudio.sox_effects" in ks_line
    assert "CANNOT RUN" not in next(line for line in plan.splitlines() if line.startswith("IC "))
    result = subprocess.run(_sweep(data, exp, conditions, "KS,IC", "--only-conditions", "clean,white_snr5",
                                   overrides=SHORT_OVERRIDES), env=runner_env(), capture_output=True, text=True)
    assert result.returncode == 1 and "KS cannot run" in result.stderr, result.stderr[-3000:]
    rows = [json.loads(p.read_text()) for p in (exp / "fbank_no_cmvn").glob("*/*/result.json")]
    assert sorted((r["task"], r["condition"]) for r in rows) == [("IC", "clean"), ("IC", "white_snr5")]
    for row in rows:
        _is_printed(row, "Acc", r"^test acc: (\S+)$", 100)
    _outputs_differ(exp / "fbank_no_cmvn" / "IC", "test_predict.csv")  # the same checkpoint, other predictions


@pytest.mark.one_stack  # the sweep's records are the same code on both stacks
def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path):
    """SID without its data: training fails in the stock runner, its evaluations are blocked, the summary
    names the log, the exit status is 1 and nothing else stops."""
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text(CONDITIONS)
    (tmp_path / "VoxCeleb1").mkdir()
    (tmp_path / "VoxCeleb1" / "iden_split.txt").write_text("")
    exp = tmp_path / "exp"
    result = subprocess.run(_sweep(tmp_path, exp, conditions, "SID"), env=runner_env(), capture_output=True, text=True)
    assert result.returncode == 1
    status = summary_status(exp)
    assert status[("SID", "train")] == "failed"
    assert {status[("SID", c)] for c in ("clean", "white_snr5", "reverb_rt0.6")} == {"blocked"}
    runs = json.loads((exp / "fbank_no_cmvn" / "summary.json").read_text())["runs"]
    assert "run.log" in runs[0]["reason"]
    assert (exp / "fbank_no_cmvn" / "SID" / "train" / "run.log").stat().st_size > 0


@pytest.mark.stock_only  # KS: s3prl's speech_commands dataset needs torchaudio.sox_effects
@needs_sox_extension
def test_onnx_upstream_runs_through_the_sweep(corpora, exp_root, tmp_path):
    """An int8 ONNX export of a tiny student, as ``robustdistiller_onnx_local``, through run_superb.sh and the stock
    runner: KS trained and evaluated clean and under noise, as the PyTorch upstream is (issue 18)."""
    from robustdistiller_upstream.export.onnx import export_onnx
    from robustdistiller_upstream.export.source import load_export_source

    data, conditions = corpora
    ckpt = tiny_student_checkpoint(tmp_path / "student.ckpt")
    onnx_path = export_onnx(load_export_source(ckpt), tmp_path / "tiny_onnx" / "model.int8.onnx", int8="dynamic").path
    run_ok(_sweep(data, exp_root, conditions, "KS", "--ckpt", str(onnx_path), "--only-conditions", "clean,white_snr5",
                  upstream="robustdistiller_onnx_local", overrides=SHORT_OVERRIDES), runner_env())
    rows = [json.loads(p.read_text()) for p in (exp_root / "tiny_onnx" / "KS").glob("*/result.json")]
    assert sorted(r["condition"] for r in rows) == ["clean", "white_snr5"]
    assert {r["upstream"] for r in rows} == {"robustdistiller_onnx_local"} and rows[0]["ckpt"] == str(onnx_path)
    for row in rows:
        _is_printed(row, "Acc", r"^test acc: (\S+)$", 100)

# --- the text tasks: PR, ASR, SF (LibriSpeech + a lexicon, Audio SNIPS) --------------------------------------------

# train -> one dev evaluation (the best checkpoint) -> evaluate, with batches of 4 and heads of width 64
TEXT_OVERRIDES = ["runner.total_steps=12", "runner.eval_step=12", "runner.save_step=12", "runner.log_step=6",
             "PR:runner.gradient_accumulate_steps=1", "PR:downstream_expert.corpus.batch_size=4",
             "ASR:downstream_expert.datarc.train_batch_size=4", "ASR:downstream_expert.datarc.batch_size=4",
             "ASR:downstream_expert.modelrc.project_dim=64", "ASR:downstream_expert.modelrc.RNNs.dim=[64,64]",
             "SF:downstream_expert.corpus.batch_size=4", "SF:downstream_expert.model.project_dim=64",
             "SF:downstream_expert.model.RNNs.dim=[64,64]"]
TEXT_TASKS = "PR,ASR,SF"


@pytest.fixture(scope="module")
def text_sweep(tmp_path_factory):
    """(data root, results root, environment) of one sweep over PR, ASR and SF."""
    skip_without_espeak()
    from robustdistiller_upstream.demo.superb_corpora import write_librispeech_asr_pr, write_snips

    data = tmp_path_factory.mktemp("superb_text_data")
    _, lexicon = write_librispeech_asr_pr(data)
    write_snips(data)
    conditions = data / "conditions.yaml"
    conditions.write_text(CONDITIONS)
    ckpt = tiny_student_checkpoint(tmp_path_factory.mktemp("tiny_rd") / "student.ckpt")
    exp = tmp_path_factory.mktemp("superb_text_exp")
    env = {k: v for k, v in runner_env().items() if k != "S3PRL_DIR"}
    env["PR_LEXICON"] = str(lexicon)  # a LibriSpeech lexicon in s3prl's format instead of a checkout's
    command = sweep_command(data, exp, conditions, TEXT_TASKS, "--ckpt", str(ckpt), "--tag", "tiny_rd",
                            *GROUP_CONDITIONS, overrides=TEXT_OVERRIDES, upstream="robustdistiller_local")
    result = subprocess.run(traced(command, exp), env=env, capture_output=True, text=True)
    assert (exp / "tiny_rd" / "summary.json").is_file(), result.stderr[-3000:]  # each test then names its failures
    return data, exp, env


def _text_results(exp: Path, task: str) -> dict[str, dict]:
    """``{condition: result.json}`` of ``task``, after checking that it trained and was evaluated on each of
    ``EVALUATED``."""
    status = summary_status(exp, "tiny_rd")
    runs = json.loads((exp / "tiny_rd" / "summary.json").read_text())["runs"]
    reasons = [r["reason"] for r in runs if r["task"] == task and r["reason"]]
    assert status[(task, "train")] == "done", reasons
    assert all(status[(task, c)] == "done" for c in EVALUATED), reasons
    rows = {p.parent.name: json.loads(p.read_text()) for p in (exp / "tiny_rd" / task).glob("*/result.json")}
    assert sorted(rows) == sorted(EVALUATED)
    _checkpoint_named(exp / "tiny_rd", task, rows)  # dev-best, else the last and why (ASR saved no dev-best)
    return rows


def test_pr_trains_on_librispeech_with_a_lexicon_and_is_evaluated_under_three_conditions(text_sweep):
    data, exp, _ = text_sweep
    rows = _text_results(exp, "PR")
    for row in rows.values():
        _is_printed(row, "PER", r"^test per: (\S+)$", 100)
    if STOCK:  # the same checkpoint transcribed the noisy test copy otherwise
        _outputs_differ(exp / "tiny_rd" / "PR", "test-hyp.ark")
    # the phoneme vocabulary the sweep wrote is s3prl's ctc/vocab/phoneme.txt
    vocab = exp / "_conditions" / "_prepared" / "PR" / "phoneme.txt"
    assert vocab.read_text().split("\n") == PHONEMES and len(PHONEMES) == 71
    if STOCK:  # the condition copies (the current stack evaluates the clean test set only)
        # the noisy copy replaced test-clean's audio, kept its transcripts and left train/dev as the clean originals
        root = exp / "_conditions" / "PR" / "white_snr5" / "root"
        copied = sorted((root / "test-clean").rglob("*.flac"))
        assert len(copied) == 9 and (root / "train-clean-100").resolve() == data / "LibriSpeech" / "train-clean-100"
        assert sorted(p.name for p in (root / "test-clean").rglob("*.trans.txt")) == ["120-1000.trans.txt",
                                                                                     "121-1000.trans.txt",
                                                                                     "122-1000.trans.txt"]
        clean = data / "LibriSpeech" / copied[0].relative_to(root)
        assert copied[0].read_bytes() != clean.read_bytes()
    # the checkpoint kept the corpus' num_workers (stock ctc pops it: later loaders, test included, took 12)
    best = torch.load(rows["clean"]["checkpoint"], map_location="cpu", weights_only=False)
    assert best["Config"]["downstream_expert"]["corpus"]["num_workers"] == 0
    # no s3prl checkout: our reader stood in for ctc/corpus/libriphone.py and read the last condition's test set
    assert "ctc.corpus.libriphone:libriphone ['test-clean']: 9 utterances" in (
        exp / "tiny_rd" / "PR" / EVALUATED[-1] / "run.log").read_text()


def test_asr_derives_its_files_trains_and_is_evaluated_under_three_conditions(text_sweep):
    _, exp, _ = text_sweep
    rows = _text_results(exp, "ASR")
    for row in rows.values():
        _is_printed(row, "WER", r"^test-clean wer: (\S+)$")
    prepared = exp / "_conditions" / "_prepared" / "ASR"
    assert sorted(p.name for p in (prepared / "len_for_bucket").glob("*.csv")) == [
        "dev-clean.csv", "test-clean.csv", "train-clean-100.csv"]
    assert (prepared / "char.dict").read_text().startswith("| ")


def test_sf_trains_on_audio_snips_and_is_evaluated_under_three_conditions(text_sweep):
    data, exp, _ = text_sweep
    rows = _text_results(exp, "SF")
    for row in rows.values():
        _is_printed(row, "SlotF1", r"^test slot_type_f1: (\S+)$", 100)
        _is_printed(row, "SlotCER", r"^test slot_value_cer: (\S+)$", 100)
    vocab = exp / "_conditions" / "_prepared" / "SF" / "character.txt"
    assert vocab.read_text().split("\n") == CHARACTERS
    if STOCK:  # the condition copies (the current stack evaluates the clean test set only)
        root = exp / "_conditions" / "SF" / "reverb_rt0.6" / "root"
        assert len(list((root / "test").glob("*.wav"))) == 12 and (root / "all.iob.snips.txt").is_symlink()
    log = (exp / "tiny_rd" / "SF" / EVALUATED[-1] / "run.log").read_text()
    assert "ctc.corpus.snips:snips test: 12 utterances" in log  # our reader read that condition's test set


def test_plan_names_what_pr_needs_without_a_lexicon(text_sweep, tmp_path):
    """Without an s3prl checkout or PR_LEXICON the plan says PR cannot run and why; SF and ASR need neither."""
    data, _, env = text_sweep
    env = {k: v for k, v in env.items() if k != "PR_LEXICON"}
    plan = run_ok(sweep_command(data, tmp_path / "exp", data / "conditions.yaml", TEXT_TASKS, "--dry-run"), env)
    lines = {line.split(" ")[0]: line for line in plan.splitlines() if not line.startswith(" ")}
    assert "CANNOT RUN" in lines["PR"] and "corpus.lexicon" in lines["PR"] and "S3PRL_DIR" in lines["PR"], lines["PR"]
    assert "CANNOT RUN" not in lines["ASR"] and "CANNOT RUN" not in lines["SF"]


def test_a_checkouts_ctc_corpus_wins_over_our_readers(tmp_path):
    """With ``S3PRL_DIR`` the checkout's ``ctc/corpus/`` (a folder without ``__init__.py``) is imported, not ours."""
    corpus = tmp_path / "s3prl" / "downstream" / "ctc" / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "libriphone.py").write_text("FROM_CHECKOUT = True\n")
    code = ("from pathlib import Path; from robustdistiller_upstream.superb import launch; "
            f"launch._extend_expert(Path({str(tmp_path)!r}), 'ctc'); launch._ctc_fixes(); "
            "import s3prl.downstream.ctc.corpus.libriphone as reader; print(getattr(reader, 'FROM_CHECKOUT', False))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("True")


# --- speaker and emotion tasks: SID, ASV, ER, SD (VoxCeleb1, IEMOCAP, Kaldi dirs of mixtures) ----------------------

# 20 updates of small batches, one dev evaluation at the end (the best checkpoint)
SPEAKER_OVERRIDES = ["runner.total_steps=20", "runner.eval_step=20", "runner.save_step=20", "runner.log_step=10",
             "runner.gradient_accumulate_steps=1", "optimizer.lr=1.0e-3",
             "SID:downstream_expert.datarc.train_batch_size=4", "ASV:downstream_expert.datarc.train_batch_size=4",
             # our 2-4 s utterances: keep those over 1 s after sox's silence trimming (SUPERB: 2 s)
             "ASV:downstream_expert.datarc.vad_config.min_sec=16000",
             "SD:downstream_expert.loaderrc.train_batchsize=4"]
SPEAKER_TASKS = "SID,ASV,ER,SD"


@pytest.fixture(scope="module")
def speaker_data(tmp_path_factory) -> Path:
    """The data root: VoxCeleb1, IEMOCAP and diarization corpora and conditions.yaml."""
    from robustdistiller_upstream.demo.superb_corpora import write_diarization, write_iemocap, write_voxceleb1

    return _data_root(tmp_path_factory, "superb_speaker_data", write_voxceleb1, write_iemocap, write_diarization)


@pytest.fixture(scope="module")
def speaker_sweep(speaker_data, tmp_path_factory):
    """One sweep over the four tasks (ER folds 1 and 2); ASV only on the stock stack (the plan refuses it on the
    current one, see test_asv_...)."""
    exp = tmp_path_factory.mktemp("superb_speaker_exp")
    ckpt = tiny_student_checkpoint(exp / "tiny_rd" / "student.ckpt")
    command = sweep_command(speaker_data, exp, speaker_data / "conditions.yaml", SPEAKER_TASKS, "--ckpt", str(ckpt),
                            "--er-folds", "1,2", *GROUP_CONDITIONS, overrides=SPEAKER_OVERRIDES,
                            upstream="robustdistiller_local")
    result = subprocess.run(traced(command, exp), env=runner_env(), capture_output=True, text=True)
    results = {}
    for path in (exp / "tiny_rd").rglob("result.json"):
        row = json.loads(path.read_text())
        results[(row["task"], row["fold"], row["condition"])] = row
    return exp, result, results


def _speaker_evaluated(speaker_sweep, task: str, fold: str = "") -> dict[str, float]:
    exp, result, results = speaker_sweep
    label = f"{task}/{fold}" if fold else task
    status = summary_status(exp, "tiny_rd")
    assert status[(label, "train")] == "done", result.stderr[-3000:]
    assert all(status[(label, c)] == "done" for c in EVALUATED), result.stderr[-3000:]
    rows = {c: results[(task, fold, c)] for c in EVALUATED}
    done = _checkpoint_named(exp / "tiny_rd", label, rows)
    if task == "ASV":  # no dev set: always the last
        assert done["checkpoint_kind"] == "last" and "no dev set" in done["checkpoint_why"], done
    else:  # a dev set: dev-best where a dev evaluation saved one (that of a 20-step random student may not)
        assert "no dev set" not in done["checkpoint_why"], done
    printed = {"SID": r"^test acc: (\S+)$", "ER": r"^test acc: (\S+)$", "ASV": r"^sv-voxceleb1/test-EER: (\S+)$",
               "SD": r"^mode test acc \S+ der (\S+)$"}[task]
    for row in rows.values():
        _is_printed(row, row["metric"], printed, 100)
    return {c: r["metrics"][r["metric"]] for c, r in rows.items()}


def test_sid_trains_and_is_evaluated_under_three_conditions(speaker_sweep, speaker_data):
    _speaker_evaluated(speaker_sweep, "SID")
    if STOCK:  # the condition copies (the current stack evaluates the clean test set only)
        # the noisy copy replaced the test files only (iden_split 3); training and dev files stay the clean originals
        root = speaker_sweep[0] / "_conditions" / "SID" / "white_snr5" / "root"
        test_file = root / "test" / "wav" / "id10270" / "video03" / "00004.wav"
        train_file = root / "dev" / "wav" / "id10001" / "video00" / "00001.wav"
        assert test_file.resolve().is_relative_to(speaker_sweep[0] / "_conditions") and train_file.resolve().is_relative_to(speaker_data)


@pytest.mark.skipif(not STOCK, reason="current stack: see test_asv_is_named_on_the_current_stack")
@needs_sox_extension
def test_asv_trains_and_is_evaluated_under_three_conditions(speaker_sweep):
    _speaker_evaluated(speaker_sweep, "ASV")
    _outputs_differ(speaker_sweep[0] / "tiny_rd" / "ASV", "test_predict.txt")  # the trials' scores
    # the dev lists the stock expert opens were derived (the trial list came with the corpus)
    prepared = speaker_sweep[0] / "_conditions" / "_prepared" / "ASV"
    assert (prepared / "dev_meta_data.txt").read_text().startswith("1 id10001/")


@pytest.mark.skipif(STOCK, reason="the stock stack runs ASV (test above)")
def test_asv_is_named_on_the_current_stack(speaker_sweep):
    exp, result, _ = speaker_sweep
    assert result.returncode == 1 and "ASV cannot run" in result.stderr and "torchaudio.sox_effects" in result.stderr
    assert summary_status(exp, "tiny_rd")[("ASV", "train")] == "failed"
    assert not (exp / "tiny_rd" / "ASV" / "train" / "run.log").exists()  # refused before any runner started


def test_sd_trains_and_is_evaluated_under_three_conditions(speaker_sweep, speaker_data):
    _speaker_evaluated(speaker_sweep, "SD")
    if STOCK:  # the condition copies (the current stack evaluates the clean test set only)
        # the noisy test dir's wav.scp names contaminated copies; train/dev dirs are untouched
        scp = (speaker_sweep[0] / "_conditions" / "SD" / "white_snr5" / "out" / "wav.scp").read_text()
        assert str(speaker_data) not in scp and len(scp.splitlines()) == 3


def test_er_trains_and_tests_each_fold_and_the_report_shows_their_mean(speaker_sweep, speaker_data, tmp_path):
    folds = {fold: _speaker_evaluated(speaker_sweep, "ER", fold) for fold in ("fold1", "fold2")}
    if STOCK:  # the condition copies (the current stack evaluates the clean test set only)
        # fold N tests on Session N: its condition copy contaminated that session only
        copy = speaker_sweep[0] / "_conditions" / "ER" / "fold2" / "white_snr5" / "root"
        assert (copy / "Session2").resolve() != (speaker_data / "IEMOCAP_full_release" / "Session2").resolve()
        assert (copy / "Session1").resolve() == (speaker_data / "IEMOCAP_full_release" / "Session1").resolve()
    # the meta data were derived by s3prl's IEMOCAP_preprocess from the EmoEvaluation files ("fru" dropped)
    meta = json.loads((speaker_sweep[0] / "_conditions" / "_prepared" / "ER" / "meta_data" / "Session2" /
                       "test_meta_data.json").read_text())
    assert len(meta["meta_data"]) == 16 and {m["label"] for m in meta["meta_data"]} == {"neu", "hap", "ang", "sad"}

    out = tmp_path / "report"
    run_ok([sys.executable, "-m", "robustdistiller_upstream.cli", "report", str(speaker_sweep[0] / "tiny_rd"), "--out",
            str(out)], runner_env())
    rows = {(r["task"], r["condition"]): r for r in csv.DictReader(open(out / "results.csv"))}
    for condition in EVALUATED:
        mean = (folds["fold1"][condition] + folds["fold2"][condition]) / 2
        assert float(rows[("ER", condition)]["value"]) == pytest.approx(mean, abs=1e-3)
        assert rows[("ER", condition)]["folds"] == "2"
    table = (out / "results.md").read_text()
    assert "| ER (mean of 2/5 folds) | Acc ↑ |" in table
    tasks = ["SID", "ER", "SD"] + ["ASV"] * STOCK
    assert {task for task, _ in rows} == set(tasks) and len(rows) == len(EVALUATED) * len(tasks)
    assert all(f"| {task} " in table for task in tasks)
    # the plots need noisy and reverberant results: none on the current stack, which evaluates clean test sets only
    plots = [out / f"snr_{task}.png" for task in tasks] + [out / "reverb.png"]
    assert all(plot.exists() == STOCK for plot in plots)
    assert all(plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for plot in plots if STOCK)


def test_er_plans_all_five_folds_by_default(speaker_data, tmp_path):
    plan = run_ok(sweep_command(speaker_data, tmp_path / "exp", speaker_data / "conditions.yaml", "ER", "--dry-run"), runner_env())
    for k in range(1, 6):
        assert f"\nER/fold{k} (emotion, er.yaml)\n" in plan
        assert f"ER/fold{k}/train/superb_config.yaml" in plan and plan.count(f"ER/fold{k}/train/<best>.ckpt") == 3
    assert plan.count("\n  evaluate ") == 15 and "CANNOT RUN" not in plan


# --- signal tasks: SE, SS, QbE (VoiceBank-DEMAND, Libri2Mix, QUESST 2014) ------------------------------------------

# 10 steps of 4 utterances and one dev evaluation (the best checkpoint); a 1-layer, 64-unit SepRNN
SIGNAL_OVERRIDES = ["runner.total_steps=10", "runner.eval_step=10", "runner.save_step=10", "runner.log_step=10",
             "optimizer.lr=1.0e-3", "QbE:downstream_expert.max_workers=1",
             *(f"{task}:downstream_expert.{key}" for task in ("SE", "SS")
               for key in ("modelrc.hidden_size=64", "modelrc.rnn_layers=1", "modelrc.dropout=0.0",
                           "loaderrc.train_batchsize=4"))]


def _signal_rows(exp: Path, task: str, tag: str = "tiny_rd") -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (exp / tag / task).glob("*/result.json")}


def _scp(path: Path) -> dict[str, Path]:
    return {utt: Path(wav) for utt, wav in (line.split() for line in path.read_text().splitlines())}


@pytest.fixture(scope="module")
def signal_corpora(tmp_path_factory) -> Path:
    """The data root: VoiceBank-DEMAND, Libri2Mix and QUESST 2014 corpora (about 12 s) and conditions.yaml."""
    from robustdistiller_upstream.demo.superb_corpora import write_libri2mix, write_quesst14, write_voicebank

    return _data_root(tmp_path_factory, "signal_data", write_voicebank, write_libri2mix, write_quesst14)


@pytest.fixture(scope="module")
def signal_sweep(signal_corpora, tmp_path_factory):
    """(data root, exp root, sweep result): one sweep of the tiny student over SE, SS, QbE."""
    data, conditions = signal_corpora, signal_corpora / "conditions.yaml"
    exp = tmp_path_factory.mktemp("signal_exp")
    ckpt = tiny_student_checkpoint(tmp_path_factory.mktemp("tiny_rd") / "student.ckpt")
    command = sweep_command(data, exp, conditions, "SE,SS,QbE", "--ckpt", str(ckpt), "--tag", "tiny_rd",
                            *GROUP_CONDITIONS, overrides=SIGNAL_OVERRIDES, upstream="robustdistiller_local")
    result = subprocess.run(traced(command, exp), env=runner_env(), capture_output=True, text=True)
    return data, exp, result


def _signal_evaluated(exp: Path, task: str) -> dict[str, dict]:
    status = summary_status(exp, "tiny_rd")
    assert status[(task, "train")] == "done", status
    assert all(status[(task, c)] == "done" for c in EVALUATED), status
    rows = _signal_rows(exp, task)
    assert sorted(rows) == sorted(EVALUATED)
    assert _checkpoint_named(exp / "tiny_rd", task, rows)["checkpoint"].endswith("best-states-dev.ckpt")
    return rows


def test_se_trains_and_is_evaluated_on_three_conditions(signal_sweep):
    data, exp, result = signal_sweep
    rows = _signal_evaluated(exp, "SE")
    tested = len(_scp(data / "voicebank" / "wav16k" / "test" / "noisy" / "wav.scp"))  # the test split's size
    for row in rows.values():
        _is_printed(row, "PESQ", rf"^Average pesq of {tested} utts is (\S+)$")
        _is_printed(row, "STOI", rf"^Average stoi of {tested} utts is (\S+)$", 100)
        _is_printed(row, "SI-SDRi", rf"^Average si_sdr of {tested} utts is (\S+)$")
    if STOCK:  # the same checkpoint enhanced other input: every metric moved
        assert all(rows["clean"]["metrics"][m] != rows["white_snr5"]["metrics"][m] for m in rows["clean"]["metrics"])
    if STOCK:  # the condition copies (the current stack evaluates the clean test set only)
        # only the noisy input side is contaminated: noisy/wav.scp names the copies, the clean targets stay
        copy = exp / "_conditions" / "SE" / "white_snr5" / "root"
        clean_test = data / "voicebank" / "wav16k" / "test"
        noisy, original = _scp(copy / "noisy" / "wav.scp"), _scp(clean_test / "noisy" / "wav.scp")
        assert sorted(noisy) == sorted(original) and all(copy.parent in p.parents for p in noisy.values())
        assert all(noisy[u].read_bytes() != original[u].read_bytes() for u in noisy)
        assert _scp(copy / "clean" / "wav.scp") == _scp(clean_test / "clean" / "wav.scp")


def test_ss_trains_and_is_evaluated_on_three_conditions(signal_sweep):
    data, exp, result = signal_sweep
    rows = _signal_evaluated(exp, "SS")
    tested = len(_scp(data / "separation_stft" / "Libri2Mix" / "wav16k" / "min" / "test" / "mix_clean" / "wav.scp"))
    for row in rows.values():
        _is_printed(row, "SI-SDRi", rf"^Average si_sdr of {tested} utts: (\S+)$")
        _is_printed(row, "PESQ", rf"^Average pesq of {tested} utts: (\S+)$")
    if STOCK:  # the same checkpoint separated other mixtures: every metric moved
        assert all(rows["clean"]["metrics"][m] != rows["white_snr5"]["metrics"][m] for m in rows["clean"]["metrics"])
    if STOCK:  # the condition copies (the current stack evaluates the clean test set only)
        copy = exp / "_conditions" / "SS" / "reverb_rt0.6" / "root"
        kaldi = data / "separation_stft" / "Libri2Mix" / "wav16k" / "min" / "test"
        mixtures = _scp(copy / "mix_clean" / "wav.scp")
        assert all(copy.parent in p.parents for p in mixtures.values())
        assert all(_scp(copy / s / "wav.scp") == _scp(kaldi / s / "wav.scp") for s in ("s1", "s2"))


@pytest.mark.stock_only  # quesst14_dtw/dataset.py imports torchaudio.sox_effects
@needs_sox_extension
def test_qbe_is_scored_on_three_conditions(signal_sweep):
    data, exp, result = signal_sweep
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _signal_rows(exp, "QbE")
    assert sorted(rows) == sorted(CONDITION_NAMES)
    for condition, row in rows.items():  # the scorer's line for that run's eval queries, in run.log and score.out
        _is_printed(row, "MTWV", r"^actTWV: \S+\s+maxTWV: (\S+)")
        score_out = (exp / "tiny_rd" / "QbE" / condition / "score.out").read_text()
        assert float(re.search(r"maxTWV: (\S+)", score_out).group(1)) == row["metrics"]["MTWV"]
        assert (row["checkpoint"], row["checkpoint_kind"]) == ("", "none")  # QbE does not train
    _outputs_differ(exp / "tiny_rd" / "QbE", "benchmark.stdlist.xml")  # other DTW scores on the noisy copy
    run = exp / "tiny_rd" / "QbE" / "white_snr5"
    # every English document scored for every eval query; the Czech document is skipped as the expert does
    stdlist = ElementTree.parse(run / "benchmark.stdlist.xml").getroot()
    assert len(stdlist.findall("detected_termlist")) == 3
    assert {t.get("file") for t in stdlist.iter("term")} == {f"quesst14_{i:05d}" for i in range(1, 9)}
    # queries and English documents are contaminated copies; the Czech document stays the clean file
    copy, clean = exp / "_conditions" / "QbE" / "white_snr5", data / "quesst14Database"
    for rel in ("eval_queries/quesst14_eval_0001.wav", "Audio/quesst14_00001.wav"):
        assert (copy / "out") in (copy / "root" / rel).resolve().parents
        assert (copy / "root" / rel).read_bytes() != (clean / rel).read_bytes()
    czech = "Audio/quesst14_00009.wav"
    assert (copy / "root" / czech).resolve() == (clean / czech).resolve()


@pytest.mark.stock_only
@needs_sox_extension
def test_fbank_qbe_beats_chance(signal_corpora, tmp_path):
    """``fbank_no_cmvn`` finds the spoken queries on the clean data better than a random-score control on the same
    trials does, but for less than 1% of its draws: MTWV > 0 alone held by chance a quarter of the time (6 targets in
    24 trials: whenever the top-scored trial is a hit)."""
    from robustdistiller_upstream.superb import twv

    data = signal_corpora
    run_ok(sweep_command(data, tmp_path, data / "conditions.yaml", "QbE", "--only-conditions", "clean",
                         overrides=SIGNAL_OVERRIDES), runner_env())
    row = _signal_rows(tmp_path, "QbE", "fbank_no_cmvn")["clean"]
    scores, _, truth = twv.trials(tmp_path / "fbank_no_cmvn" / "QbE" / "clean" / "benchmark.stdlist.xml",
                                  data / "quesst14Database" / "scoring" / "groundtruth_quesst14_eval", -10.0)
    assert twv.max_twv(scores, truth)[0] == pytest.approx(row["metrics"]["MTWV"], abs=1e-8)
    assert row["metrics"]["MTWV"] > 0
    # the control: the same trials (the unscored Czech document keeps the default score), uniform random scores
    chance = float(np.mean(twv.random_control(scores, truth, -10.0) >= row["metrics"]["MTWV"]))
    assert chance < 0.01, f"MTWV {row['metrics']['MTWV']}: random scores reach it in {chance:.1%} of draws"


@pytest.mark.skipif(STOCK, reason="the stock stack runs QbE (test above)")
def test_current_stack_names_why_qbe_cannot_run(signal_sweep):
    data, exp, result = signal_sweep
    assert result.returncode == 1 and "QbE cannot run" in result.stderr, result.stderr[-3000:]
    runs = json.loads((exp / "tiny_rd" / "summary.json").read_text())["runs"]
    reasons = {r["reason"] for r in runs if r["task"] == "QbE"}
    assert len(reasons) == 1 and "quesst14_dtw/dataset.py: torchaudio.sox_effects" in reasons.pop()


def _quesst_copy(quesst: Path, folder: Path, keep_scoring) -> Path:
    """``folder/quesst14Database``: links to everything of ``quesst`` but its ``scoring/``, of which only the files
    ``keep_scoring(path)`` accepts are linked."""
    root = folder / "quesst14Database"
    (root / "scoring").mkdir(parents=True)
    for entry in quesst.iterdir():
        if entry.name != "scoring":
            (root / entry.name).symlink_to(entry)
    for entry in (quesst / "scoring").iterdir():
        if keep_scoring(entry):
            (root / "scoring" / entry.name).symlink_to(entry)
    return root


@pytest.mark.stock_only  # on the current stack QbE cannot run at all (test above), whatever the dataset holds
@needs_sox_extension
def test_qbe_plan_names_the_missing_scorer(signal_corpora, tmp_path, monkeypatch):
    """QUESST's MTWV needs the scorer only the dataset ships: a copy without it, or a Java scorer without java,
    is CANNOT RUN in the plan, with the reason."""
    from robustdistiller_upstream.superb.sweep import Sweep, SweepConfig

    data = signal_corpora
    root = _quesst_copy(data / "quesst14Database", tmp_path, lambda entry: entry.suffix == ".lst")

    def plan() -> str:
        cfg = SweepConfig(upstream="fbank_no_cmvn", tasks="QbE", conditions=str(data / "conditions.yaml"),
                          data_root=str(tmp_path), exp_root=str(tmp_path / "exp"))
        return next(line for line in Sweep(cfg).plan_text().splitlines() if line.startswith("QbE "))

    line = plan()
    assert "CANNOT RUN" in line and "score-TWV-Cnxe.sh not found" in line and "only the QUESST 2014" in line
    (root / "scoring" / "score-TWV-Cnxe.sh").write_text("java -Xmx2g -jar MediaEvalQUESST2014.jar \"$@\"\n")
    monkeypatch.setenv("PATH", str(tmp_path / "no_java"))
    line = plan()
    assert "CANNOT RUN" in line and "no java on PATH" in line


def test_twv_of_a_known_system(tmp_path):
    """Two queries over four documents: hand-computed actTWV and maxTWV (beta = 12.49)."""
    from robustdistiller_upstream.superb import twv

    truth = tmp_path / "truth"
    truth.mkdir()
    docs = ["d1", "d2", "d3", "d4"]
    (truth / "a.ecf.xml").write_text("<ecf>" + "".join(f'<excerpt audio_filename="{d}"/>' for d in docs) + "</ecf>")
    (truth / "a.tlist.xml").write_text('<termlist><term termid="q1"/><term termid="q2"/><term termid="q3"/></termlist>')
    (truth / "a.rttm").write_text("LEXEME d1 1 0 1 q1 lex <NA> <NA>\nLEXEME d2 1 0 1 q1 lex <NA> <NA>\n"
                                  "LEXEME d3 1 0 1 q2 lex <NA> <NA>\n")  # q3 never occurs: not averaged
    scores = {"q1": {"d1": (3.0, "YES"), "d2": (1.0, "NO"), "d3": (2.0, "YES"), "d4": (0.0, "NO")},
              "q2": {"d1": (0.0, "NO"), "d3": (4.0, "YES")}}  # q2's d2, d4 missing: default score -10
    system = tmp_path / "sys"
    system.mkdir()
    (system / "benchmark.stdlist.xml").write_text("<stdlist>" + "".join(
        f'<detected_termlist termid="{q}">' + "".join(f'<term file="{d}" score="{s}" decision="{y}"/>'
                                                       for d, (s, y) in terms.items()) + "</detected_termlist>"
        for q, terms in scores.items()) + "</stdlist>")
    result = twv.score(system / "benchmark.stdlist.xml", truth, -10.0)
    # act: q1 hit d1, missed d2, false alarm d3 (1 of 2 non-targets); q2 hit d3: 1 - (0.5 + 12.49 / 2) / 2
    assert result.act_twv == pytest.approx(1 - (0.5 + twv.BETA / 2) / 2)
    # max at threshold 3 (detected: score >= 3; with "> t" it would be reported at 2): q1 hits d1 (miss 0.5), q2 hits
    # d3, no false alarm: 1 - 0.5 / 2
    assert (result.max_twv, result.threshold) == (pytest.approx(0.75), 3.0)
    assert twv.main([str(system), str(truth), "-10"]) == 0
    assert (system / "score.out").read_text().startswith("actTWV: ")


# --- all twelve tasks in one report -------------------------------------------------------------------------------

@pytest.mark.stock_only  # KS, QbE and ASV run on the stock stack only
@needs_sox_extension
def test_report_tables_and_plots_all_twelve_tasks(corpora, exp_root, text_sweep, speaker_sweep, signal_sweep,
                                                  tmp_path):
    """``robustdistiller report`` over the module's sweeps: a table row per task and condition and an SNR plot per
    task, for all twelve tasks (KS and IC from the first test's ``fbank_no_cmvn`` sweep, which runs first)."""
    assert (exp_root / "fbank_no_cmvn" / "KS" / "clean" / "result.json").is_file(), "run the whole module"
    dirs = [exp_root, text_sweep[1] / "tiny_rd", speaker_sweep[0] / "tiny_rd", signal_sweep[1] / "tiny_rd"]
    out = tmp_path / "report"
    run_ok([sys.executable, "-m", "robustdistiller_upstream.cli", "report", *map(str, dirs), "--out", str(out)],
           runner_env())
    rows = list(csv.DictReader(open(out / "results.csv")))
    tasks = {"KS", "IC", "PR", "SID", "ER", "ASR", "QbE", "SF", "ASV", "SD", "SE", "SS"}
    assert {r["task"] for r in rows} == tasks
    assert all({(r["task"], r["condition"]) for r in rows} >= {(t, c) for c in CONDITION_NAMES} for t in tasks)
    table = (out / "results.md").read_text()
    assert "## fbank_no_cmvn" in table and "## tiny_rd" in table
    for task in tasks:
        assert f"| {task} " in table, task
        assert (out / f"snr_{task}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", task
    assert (out / "reverb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- what each evaluation reads: the sweeps above ran under strace (superb_reads) ----------------------------------

NOISY = "white_snr5"
# task -> (fixture of its traced sweep, tag, run label)
READS = {"KS": ("ks_ic_reads", "fbank_no_cmvn", "KS"), "IC": ("ks_ic_reads", "fbank_no_cmvn", "IC"),
         **{task: ("text_sweep", "tiny_rd", task) for task in ("PR", "ASR", "SF")},
         **{task: ("speaker_sweep", "tiny_rd", task) for task in ("SID", "ASV", "SD")},
         "ER": ("speaker_sweep", "tiny_rd", "ER/fold1"),
         **{task: ("signal_sweep", "tiny_rd", task) for task in ("SE", "SS", "QbE")}}
SOX_TASKS = ("KS", "ASV", "QbE")  # read through torchaudio.sox_effects: the stock stack, with libsox-dev, only
RUNS_KS = STOCK and sox_extension_error() is None


@pytest.fixture(scope="module")
def ks_ic_reads(corpora, tmp_path_factory) -> Path:
    """Results root of a short ``fbank_no_cmvn`` sweep over KS and IC (IC alone where KS cannot run) under strace:
    trained, then evaluated on the clean test set and under white noise."""
    data, conditions = corpora
    exp = tmp_path_factory.mktemp("superb_reads")
    command = _sweep(data, exp, conditions, "KS,IC" if RUNS_KS else "IC", "--only-conditions", f"clean,{NOISY}",
                     overrides=SHORT_OVERRIDES)
    result = subprocess.run(traced(command, exp), env=runner_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return exp


def _build_noisy_copy(data: Path, exp: Path, task: str, label: str) -> None:
    """The ``NOISY`` copy of ``label``'s test data, made by the sweep's own code (no runner): the clean-only
    evaluations of the current stack are checked against the files it names."""
    from robustdistiller_upstream.superb.sweep import Sweep, SweepConfig

    cfg = SweepConfig(upstream="fbank_no_cmvn", tasks=task, conditions=str(data / "conditions.yaml"),
                      only_conditions=[NOISY], data_root=str(data), exp_root=str(exp), tag="reads", er_folds=[1])
    sweep = Sweep(cfg)
    plan = next(plan for plan in sweep.plans if plan.label == label)
    sweep.condition_copy(plan, sweep.conditions[0])


@needs_strace
@pytest.mark.parametrize("task", list(READS))
def test_each_evaluation_reads_what_it_names(task, request, monkeypatch):
    """strace of the runner: the noisy evaluation opened every contaminated file of its condition copy and none of
    the clean test files, the clean one every clean test file and no contaminated file (issue 25). The current
    stack's group sweeps evaluate the clean test sets only: there the clean evaluation is checked."""
    fixture, tag, label = READS[task]
    if task in SOX_TASKS and not RUNS_KS:
        pytest.skip("read through torchaudio.sox_effects: the stock stack with libsox-dev only")
    value = request.getfixturevalue(fixture)
    exp = value if fixture == "ks_ic_reads" else value[0] if fixture == "speaker_sweep" else value[1]
    evaluated = ("clean", NOISY) if fixture == "ks_ic_reads" else EVALUATED
    if NOISY not in evaluated:
        data = request.getfixturevalue("speaker_data") if fixture == "speaker_sweep" else value[0]
        if fixture == "text_sweep":
            monkeypatch.setenv("PR_LEXICON", value[2]["PR_LEXICON"])
        _build_noisy_copy(data, exp, task, label)
    assert_reads(exp, tag, label, NOISY, evaluated)


def _evaluate_again(trained: Path, exp: Path, label: str) -> str:
    """``exp`` holds ``label``'s finished training of the ``tiny_rd`` sweep under ``trained`` (its ``done.json``):
    a sweep there evaluates that checkpoint only. Returns the student checkpoint the sweep was run with."""
    done = trained / "tiny_rd" / label / "train" / "done.json"
    (exp / "tiny_rd" / label / "train").mkdir(parents=True)
    shutil.copy(done, exp / "tiny_rd" / label / "train" / "done.json")
    return json.loads(done.read_text())["ckpt"]


@needs_strace
@pytest.mark.one_stack  # the sweep's code, the same on both stacks
def test_overrides_reach_the_evaluations_of_a_trained_checkpoint(text_sweep, tmp_path):
    """``-o SF:...corpus.test=[valid]`` on a sweep that evaluates SF's trained checkpoint: the runner, which reads
    the config inside the checkpoint, is given the override again, so the evaluations read the valid split, and
    its condition copy is of that split."""
    data, trained, env = text_sweep
    exp = tmp_path / "exp"
    ckpt = _evaluate_again(trained, exp, "SF")
    command = sweep_command(data, exp, data / "conditions.yaml", "SF", "--ckpt", ckpt, "--tag", "tiny_rd",
                            "--only-conditions", f"clean,{NOISY}", upstream="robustdistiller_local",
                            overrides=[*TEXT_OVERRIDES, "SF:downstream_expert.corpus.test=[valid]"])
    result = subprocess.run(traced(command, exp), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {p.parent.name for p in copy_files(exp / "_conditions", "SF", NOISY)[1]} == {"valid"}
    assert_reads(exp, "tiny_rd", "SF", NOISY, ("clean", NOISY))


@pytest.mark.one_stack
def test_an_evaluation_is_refused_when_its_checkpoint_was_trained_on_another_test_set(speaker_sweep, speaker_data,
                                                                                      tmp_path):
    """SID trained with one ``iden_split.txt``; a sweep whose config names another (``SID_SPLIT``) would contaminate
    the test files that list names, while the runner reads the trained config's: refused, naming the key, before
    any runner starts."""
    trained = speaker_sweep[0]
    exp = tmp_path / "exp"
    ckpt = _evaluate_again(trained, exp, "SID")
    split = tmp_path / "iden_split.txt"
    shutil.copy(speaker_data / "VoxCeleb1" / "iden_split.txt", split)
    command = sweep_command(speaker_data, exp, speaker_data / "conditions.yaml", "SID", "--ckpt", ckpt, "--tag",
                            "tiny_rd", "--cond-root", str(trained / "_conditions"), "--only-conditions", NOISY,
                            upstream="robustdistiller_local", overrides=SPEAKER_OVERRIDES)
    result = subprocess.run(command, env=dict(runner_env(), SID_SPLIT=str(split)), capture_output=True, text=True)
    assert result.returncode == 1
    reason = json.loads((exp / "tiny_rd" / "summary.json").read_text())["runs"][-1]["reason"]
    assert "downstream_expert.datarc.meta_data" in reason and str(split) in reason, reason
    assert not (exp / "tiny_rd" / "SID" / NOISY / "run.log").exists()


@needs_strace
@pytest.mark.one_stack
def test_a_retried_sid_evaluation_does_not_reuse_another_roots_file_lists(speaker_sweep, speaker_data, tmp_path):
    """SID's expert caches its file lists (absolute paths) in ``<run>/.sid_cache/`` by split only: a noisy
    evaluation retried where the clean evaluation's lists lie still reads its own condition copy."""
    trained = speaker_sweep[0]
    exp = tmp_path / "exp"
    ckpt = _evaluate_again(trained, exp, "SID")
    stale = exp / "tiny_rd" / "SID" / NOISY / ".sid_cache"
    shutil.copytree(trained / "tiny_rd" / "SID" / "clean" / ".sid_cache", stale)
    assert (stale / "test.pkl").is_file()
    command = sweep_command(speaker_data, exp, speaker_data / "conditions.yaml", "SID", "--ckpt", ckpt, "--tag",
                            "tiny_rd", "--cond-root", str(trained / "_conditions"), "--only-conditions", NOISY,
                            upstream="robustdistiller_local", overrides=SPEAKER_OVERRIDES)
    result = subprocess.run(traced(command, exp), env=runner_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_reads(exp, "tiny_rd", "SID", NOISY, (NOISY,), trained / "_conditions")


@pytest.mark.stock_only  # quesst14_dtw/dataset.py imports torchaudio.sox_effects
@needs_sox_extension
def test_qbe_reads_mtwv_from_score_out(signal_corpora, tmp_path):
    """MediaEval's scorer writes ``score.out`` (what s3prl's QbE scoring reads) and need not print: a QUESST copy
    whose scorer prints nothing is scored from that file."""
    data = signal_corpora
    root = _quesst_copy(data / "quesst14Database", tmp_path, lambda entry: entry.name != "score-TWV-Cnxe.sh")
    (root / "scoring" / "score-TWV-Cnxe.sh").write_text(
        f'exec {sys.executable} -m robustdistiller_upstream.superb.twv "$@" > /dev/null\n')
    exp = tmp_path / "exp"
    run_ok(sweep_command(data, exp, data / "conditions.yaml", "QbE", "--only-conditions", "clean",
                         overrides=SIGNAL_OVERRIDES), dict(runner_env(), QUESST14_ROOT=str(root)))
    run = exp / "fbank_no_cmvn" / "QbE" / "clean"
    assert "maxTWV" not in (run / "run.log").read_text()
    mtwv = float((run / "score.out").read_text().split("maxTWV:")[1].split()[0])
    assert json.loads((run / "result.json").read_text())["metrics"]["MTWV"] == pytest.approx(mtwv)
