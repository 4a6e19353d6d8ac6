"""The SUPERB sweep end to end on CPU: run_superb.sh drives the stock s3prl runner on small spoken KS and IC
corpora in their real layouts, under clean, noisy and reverberant test copies, then the report is made.

The upstream is s3prl's ``fbank_no_cmvn`` (a real, fast upstream; DESIGN 5). One sweep is killed after its
first training finished, rerun to completion, and rerun again to show it does no work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torchaudio

from system_packages import needs_sox_extension, skip_without_espeak

REPO = Path(__file__).resolve().parents[1]
CONDITIONS = """\
conditions:
  clean: {spec: clean, seed: 0}
  white_snr5: {spec: "noise:white:snr=5", seed: 0}
  reverb_rt0.6: {spec: "reverb:rt60=0.6:rooms=2", seed: 0}
"""
# tiny training: 200 steps of 8 utterances, one dev evaluation at the end (the best checkpoint)
OVERRIDES = ["runner.total_steps=200", "runner.eval_step=200", "runner.save_step=100", "runner.log_step=100",
             "optimizer.lr=1.0e-3", "KS:downstream_expert.datarc.batch_size=8",
             "IC:downstream_expert.datarc.train_batch_size=8"]


def _env() -> dict[str, str]:
    # one thread per runner: on a busy 2-core machine torch's thread pool is many times slower
    return dict(os.environ, PYTHON=sys.executable, SUPERB_NUM_WORKERS="0", OMP_NUM_THREADS="1")


def _sweep(data: Path, exp: Path, conditions: Path, tasks: str, *extra: str, upstream: str = "fbank_no_cmvn") -> list[str]:
    command = ["bash", str(REPO / "run_superb.sh"), "--upstream", upstream, "--tasks", tasks,
               "--conditions", str(conditions), "--data-root", str(data), "--exp-root", str(exp), *extra]
    for override in OVERRIDES:
        command += ["-o", override]
    return command


def _run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command[:4]} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def _summary(exp: Path) -> dict[tuple[str, str], str]:
    runs = json.loads((exp / "fbank_no_cmvn" / "summary.json").read_text())["runs"]
    return {(r["task"], r["condition"] or "train"): r["status"] for r in runs}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    skip_without_espeak()
    from superb_corpora import write_fluent_commands, write_speech_commands

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
    env = _env()

    plan = _run(_sweep(data, exp, conditions, "KS,IC", "--dry-run"), env)
    assert "CANNOT RUN" not in plan, plan  # e.g. KS needs catalyst 22.4 (docs/superb.md)
    assert "superb.launch -m train -u fbank_no_cmvn -d speech_commands" in plan
    assert "-d fluent_commands" in plan and plan.count("\n  evaluate ") == 6
    assert not (exp / "fbank_no_cmvn").exists()

    # first attempt: killed (whole process group, runner included) right after KS's training finished
    ks_done = exp / "fbank_no_cmvn" / "KS" / "train" / "done.json"
    first = subprocess.Popen(_sweep(data, exp, conditions, "KS,IC"), env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not ks_done.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ks_done.exists(), "KS training did not finish"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    trained_at = ks_done.stat().st_mtime
    assert not (exp / "fbank_no_cmvn" / "IC" / "train" / "done.json").exists()

    # second attempt finishes the rest without retraining KS
    _run(_sweep(data, exp, conditions, "KS,IC"), env)
    status = _summary(exp)
    assert status[("KS", "train")] == "skipped" and ks_done.stat().st_mtime == trained_at
    assert status[("IC", "train")] == "done"
    assert all(status[(task, c)] in ("done", "skipped") for task in ("KS", "IC")
               for c in ("clean", "white_snr5", "reverb_rt0.6"))

    results = {}
    for path in (exp / "fbank_no_cmvn").glob("*/*/result.json"):
        row = json.loads(path.read_text())
        results[(row["task"], row["condition"])] = row["metrics"]["Acc"]
    assert len(results) == 6
    assert results[("KS", "clean")] > 3 * 100 / 12, results  # 12 classes: chance 8.3%
    assert results[("IC", "clean")] > 2 * 100 / 6, results  # 6 intents
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
    _run(_sweep(data, exp, conditions, "KS,IC"), env)
    assert time.monotonic() - start < 30
    assert set(_summary(exp).values()) == {"skipped"}
    assert logs == {p: p.stat().st_mtime for p in (exp / "fbank_no_cmvn").rglob("run.log")}

    out = tmp_path / "report"
    _run([sys.executable, "-m", "robustdistiller_upstream.cli", "report", str(exp / "fbank_no_cmvn"), "--out",
          str(out)], env)
    table = (out / "results.md").read_text()
    assert "| KS | Acc ↑ |" in table and "| IC | Acc ↑ |" in table and "reverb_rt0.6" in table
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 6
    for png in ("snr_KS.png", "snr_IC.png", "reverb.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.stock_only  # KS: s3prl's speech_commands dataset needs torchaudio.sox_effects
@needs_sox_extension
def test_our_upstream_runs_through_the_same_sweep_and_reuses_condition_copies(corpora, exp_root, tmp_path):
    """A tiny robustdistiller_local checkpoint (random weights) through the stock runner; the report then compares
    both upstreams. Condition copies made by the sweep above are reused, not rebuilt."""
    from pretrain_helpers import TINY_STUDENT

    from robustdistiller_upstream.checkpoint import save_student_checkpoint
    from robustdistiller_upstream.model import StudentConfig, StudentModel

    data, conditions = corpora
    config = StudentConfig(**{**TINY_STUDENT, "extractor_conv_layers": [tuple(c) for c in
                                                                        TINY_STUDENT["extractor_conv_layers"]]})
    ckpt = save_student_checkpoint(tmp_path / "tiny_rd" / "student.ckpt", StudentModel(config))
    copy = exp_root / "_conditions" / "KS" / "white_snr5"
    built_before = (copy / "ready.json").exists()
    log_before = (copy / "contaminate.log").read_text() if built_before else None
    _run(_sweep(data, exp_root, conditions, "KS", "--ckpt", str(ckpt), "--only-conditions", "clean,white_snr5",
                upstream="robustdistiller_local"), _env())
    rows = [json.loads(p.read_text()) for p in (exp_root / "tiny_rd" / "KS").glob("*/result.json")]
    assert sorted(r["condition"] for r in rows) == ["clean", "white_snr5"]
    assert {r["upstream"] for r in rows} == {"robustdistiller_local"} and rows[0]["ckpt"] == str(ckpt)
    assert all(0 <= r["metrics"]["Acc"] <= 100 for r in rows)
    if built_before:
        assert (copy / "contaminate.log").read_text() == log_before
    # another checkpoint under the same tag: refused, the finished results stay
    other = save_student_checkpoint(tmp_path / "tiny_rd_2" / "student.ckpt", StudentModel(config))
    clash = subprocess.run(_sweep(data, exp_root, conditions, "KS", "--ckpt", str(other), "--tag", "tiny_rd",
                                  upstream="robustdistiller_local"), env=_env(), capture_output=True, text=True)
    assert clash.returncode == 1 and "choose another --tag" in clash.stderr
    assert sorted(p.parent.name for p in (exp_root / "tiny_rd" / "KS").glob("*/result.json")) == ["clean",
                                                                                                 "white_snr5"]

    out = tmp_path / "report"
    _run([sys.executable, "-m", "robustdistiller_upstream.cli", "report", str(exp_root), "--out", str(out)], _env())
    table = (out / "results.md").read_text()
    assert "## tiny_rd" in table and "## fbank_no_cmvn" in table


@pytest.mark.skipif(hasattr(torchaudio, "sox_effects"), reason="the stock stack runs every task (test above)")
def test_current_stack_names_the_tasks_it_cannot_run_and_runs_the_rest(corpora, tmp_path):
    """torchaudio >= 2.9: KS cannot run (its stock dataset imports torchaudio.sox_effects); the plan says so before
    anything starts, and IC still trains and is evaluated under each condition."""
    data, conditions = corpora
    exp = tmp_path / "exp"
    plan = _run(_sweep(data, exp, conditions, "KS,IC", "--dry-run"), _env())
    ks_line = next(line for line in plan.splitlines() if line.startswith("KS "))
    assert "CANNOT RUN" in ks_line and "speech_commands/dataset.py: torchaudio.sox_effects" in ks_line
    assert "CANNOT RUN" not in next(line for line in plan.splitlines() if line.startswith("IC "))
    result = subprocess.run(_sweep(data, exp, conditions, "KS,IC", "--only-conditions", "clean,white_snr5"),
                            env=_env(), capture_output=True, text=True)
    assert result.returncode == 1 and "KS cannot run" in result.stderr, result.stderr[-3000:]
    rows = [json.loads(p.read_text()) for p in (exp / "fbank_no_cmvn").glob("*/*/result.json")]
    assert sorted((r["task"], r["condition"]) for r in rows) == [("IC", "clean"), ("IC", "white_snr5")]
    assert all(0 <= r["metrics"]["Acc"] <= 100 for r in rows)


def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path):
    """SID without its data: training fails in the stock runner, its evaluations are blocked, the summary
    names the log, the exit status is 1 and nothing else stops."""
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text(CONDITIONS)
    (tmp_path / "VoxCeleb1").mkdir()
    (tmp_path / "VoxCeleb1" / "iden_split.txt").write_text("")
    exp = tmp_path / "exp"
    result = subprocess.run(_sweep(tmp_path, exp, conditions, "SID"), env=_env(), capture_output=True, text=True)
    assert result.returncode == 1
    status = _summary(exp)
    assert status[("SID", "train")] == "failed"
    assert {status[("SID", c)] for c in ("clean", "white_snr5", "reverb_rt0.6")} == {"blocked"}
    runs = json.loads((exp / "fbank_no_cmvn" / "summary.json").read_text())["runs"]
    assert "run.log" in runs[0]["reason"]
    assert (exp / "fbank_no_cmvn" / "SID" / "train" / "run.log").stat().st_size > 0


@pytest.mark.stock_only  # KS: s3prl's speech_commands dataset needs torchaudio.sox_effects
def test_onnx_upstream_runs_through_the_sweep(corpora, exp_root, tmp_path):
    """An int8 ONNX export of a tiny student, as ``robustdistiller_onnx_local``, through run_superb.sh and the stock
    runner: KS trained and evaluated clean and under noise, as the PyTorch upstream is (issue 18)."""
    from pretrain_helpers import TINY_STUDENT

    from robustdistiller_upstream.checkpoint import save_student_checkpoint
    from robustdistiller_upstream.export.onnx import export_onnx
    from robustdistiller_upstream.export.source import load_export_source
    from robustdistiller_upstream.model import StudentConfig, StudentModel

    data, conditions = corpora
    config = StudentConfig(**{**TINY_STUDENT, "extractor_conv_layers": [tuple(c) for c in
                                                                        TINY_STUDENT["extractor_conv_layers"]]})
    ckpt = save_student_checkpoint(tmp_path / "student.ckpt", StudentModel(config))
    onnx_path = export_onnx(load_export_source(ckpt), tmp_path / "tiny_onnx" / "model.int8.onnx", int8="dynamic").path
    _run(_sweep(data, exp_root, conditions, "KS", "--ckpt", str(onnx_path), "--only-conditions", "clean,white_snr5",
                upstream="robustdistiller_onnx_local"), _env())
    rows = [json.loads(p.read_text()) for p in (exp_root / "tiny_onnx" / "KS").glob("*/result.json")]
    assert sorted(r["condition"] for r in rows) == ["clean", "white_snr5"]
    assert {r["upstream"] for r in rows} == {"robustdistiller_onnx_local"} and rows[0]["ckpt"] == str(onnx_path)
    assert all(0 <= r["metrics"]["Acc"] <= 100 for r in rows)
