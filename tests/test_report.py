"""``robustdistiller report`` on result files laid out as two upstreams' sweeps would leave them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from robustdistiller_upstream.superb.report import ConditionInfo, collect, describe, overall_scores
from robustdistiller_upstream.superb.results import parse_metrics, read_results
from robustdistiller_upstream.superb.tasks import TASKS

SPECS = {"clean": "clean", "white_snr0": "noise:white:snr=0", "white_snr10": "noise:white:snr=10",
         "pink_snr0": "noise:pink:snr=0", "pink_snr10": "noise:pink:snr=10", "reverb_rt0.6": "reverb:rt60=0.6",
         "reverb_slr28": "reverb:slr28", "musan_snr5_rt0.6": "noise+reverb:musan:snr=5:rt60=0.6"}


def _write(exp: Path, tag: str, task: str, values: dict[str, float], kind: str = "dev-best", why: str = "") -> None:
    spec = TASKS[task]
    for condition, value in values.items():
        path = exp / tag / task / condition / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "task": task, "condition": condition, "spec": SPECS[condition], "seed": 0, "upstream": tag, "ckpt": "",
            "tag": tag, "metrics": {spec.metric.name: value}, "metric": spec.metric.name,
            "higher_better": spec.metric.higher_better, "checkpoint": "", "checkpoint_kind": kind,
            "checkpoint_why": why, "log": ""}))


@pytest.fixture
def sweeps(tmp_path):
    exp = tmp_path / "superb"
    _write(exp, "rd_wavlm", "KS", {"clean": 96.0, "white_snr0": 60.0, "white_snr10": 90.0, "pink_snr0": 70.0,
                                   "pink_snr10": 92.0, "reverb_rt0.6": 88.0, "reverb_slr28": 85.0,
                                   "musan_snr5_rt0.6": 55.0})
    _write(exp, "distilhubert", "KS", {"clean": 95.0, "white_snr0": 40.0, "white_snr10": 80.0, "pink_snr0": 50.0,
                                       "pink_snr10": 85.0, "reverb_rt0.6": 80.0, "reverb_slr28": 78.0,
                                       "musan_snr5_rt0.6": 35.0})
    _write(exp, "rd_wavlm", "ASR", {"clean": 10.0, "white_snr0": 40.0, "white_snr10": 15.0, "reverb_rt0.6": 20.0})
    _write(exp, "distilhubert", "ASR", {"clean": 13.0, "white_snr0": 60.0, "white_snr10": 22.0,
                                        "reverb_rt0.6": 30.0})
    return exp


def test_degradation_has_one_sign_for_both_metric_directions(sweeps):
    cells = {(c.tag, c.task, c.condition): c for c in collect(read_results([sweeps]))}
    assert cells[("rd_wavlm", "KS", "white_snr0")].degradation == pytest.approx(100 * (96 - 60) / 96)
    assert cells[("rd_wavlm", "ASR", "white_snr0")].degradation == pytest.approx(100 * (40 - 10) / 10)  # WER up
    assert cells[("rd_wavlm", "ASR", "clean")].degradation == 0


def test_overall_score_is_superb_style(sweeps):
    cells = collect(read_results([sweeps]))
    reference = {"KS": {"metric": "Acc", "fbank": 10.0, "sota": 100.0},
                 "ASR": {"metric": "WER", "fbank": 30.0, "sota": 5.0}}
    scores = {(s["tag"], s["condition"]): s for s in overall_scores(cells, reference)}
    clean = scores[("rd_wavlm", "clean")]
    assert clean["score"] == pytest.approx(1000 * ((96 - 10) / 90 + (10 - 30) / (5 - 30)) / 2)
    assert clean["tasks"].split() == ["KS", "ASR"]
    assert scores[("rd_wavlm", "pink_snr0")]["tasks"] == "KS"  # ASR has no pink-noise result


def test_condition_specs_are_described():
    assert describe("noise:white:snr=5") == ConditionInfo("noise", "white", 5.0, "")
    assert describe("reverb:rt60=0.6:rooms=2") == ConditionInfo("reverb", "", None, "RT60 0.6 s")
    assert describe("reverb:slr28") == ConditionInfo("reverb", "", None, "slr28")
    assert describe("noise+reverb:musan:snr=5:rt60=0.6") == ConditionInfo("noise+reverb", "musan", 5.0, "RT60 0.6 s")
    assert describe("noise:musan:snr=0..20").snr is None


def test_metrics_are_parsed_from_stock_runner_output():
    log = "train: 100%|####| 3/3\rtest acc: 0.25\n[Runner] x\ntest acc: 0.5\n"
    assert parse_metrics(TASKS["KS"], log) == {"Acc": 50.0}  # last print wins, fraction -> %
    assert parse_metrics(TASKS["ASR"], "test-clean uer: 3.1\ntest-clean wer: 12.5\n") == {"WER": 12.5}
    assert parse_metrics(TASKS["SD"], "mode test acc 0.9 der 0.125\n") == {"DER": 12.5}
    sf = parse_metrics(TASKS["SF"], "test slot_type_f1: 0.8\ntest slot_value_cer: 0.3\n")
    assert sf == pytest.approx({"SlotF1": 80.0, "SlotCER": 30.0})
    assert parse_metrics(TASKS["ASV"], "sv-voxceleb1/test-EER: 0.05\n") == pytest.approx({"EER": 5.0})
    assert parse_metrics(TASKS["KS"], "nothing here") == {}
    # another split's line, printed after the test split's, is never taken for it
    assert parse_metrics(TASKS["KS"], "test acc: 0.5\ndev acc: 0.9\ntrain acc: 1.0\n") == {"Acc": 50.0}
    assert parse_metrics(TASKS["ASR"], "test-clean wer: 12.5\ndev-clean wer: 3.0\n") == {"WER": 12.5}
    assert parse_metrics(TASKS["SD"], "mode test acc 0.9 der 0.125\nmode dev acc 0.9 der 0.5\n") == {"DER": 12.5}


def test_report_cli_writes_tables_and_plots(sweeps, tmp_path):
    out = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "robustdistiller_upstream.cli", "report", str(sweeps), "--out", str(out)],
                   check=True, capture_output=True)
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 8 + 8 + 4 + 4
    row = next(r for r in rows if (r["upstream"], r["task"], r["condition"]) == ("distilhubert", "ASR", "white_snr0"))
    assert (row["metric"], row["higher_better"], float(row["degradation_pct"])) == ("WER", "0", pytest.approx(361.54))
    table = (out / "results.md").read_text()
    assert "## distilhubert" in table and "## rd_wavlm" in table
    assert "| KS | Acc ↑ | 96.00 | 92.00 (+4.2%) | 70.00 (+27.1%) | 90.00 (+6.2%) |" in table  # clean, then SNR down
    assert "| ASR | WER ↓ |" in table and "| **score** | SUPERB-style |" in table
    scores = list(csv.DictReader(open(out / "score.csv")))
    assert {r["tag"] for r in scores} == {"rd_wavlm", "distilhubert"}
    for png in ("snr_KS.png", "snr_ASR.png", "reverb.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_folders_without_results(tmp_path):
    result = subprocess.run([sys.executable, "-m", "robustdistiller_upstream.cli", "report", str(tmp_path),
                             "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2 and "no result.json" in result.stderr


def test_report_names_the_checkpoint_evaluated_and_what_si_sdri_is(sweeps, tmp_path):
    """The checkpoint column (dev-best / last), the reason under the table where it is the last one, and the
    SI-SDRi caption next to SS's column; tables without SI-SDRi have no caption."""
    _write(sweeps, "rd_wavlm", "ASV", {"clean": 5.0, "white_snr0": 20.0}, "last",
           "no dev set (runner.eval_dataloaders is empty): states-20.ckpt")
    _write(sweeps, "rd_wavlm", "SS", {"clean": 10.0, "white_snr0": 12.0})
    out = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "robustdistiller_upstream.cli", "report", str(sweeps), "--out", str(out)],
                   check=True, capture_output=True)
    tables = (out / "results.md").read_text().split("## ")
    mine = next(t for t in tables if t.startswith("rd_wavlm"))
    assert mine.splitlines()[4].endswith("| checkpoint |")
    rows = {line.split(" | ")[0][2:]: line for line in mine.splitlines() if line.startswith("| ")}
    assert rows["ASV"].startswith("| ASV | EER ↓ | 5.00 |") and rows["ASV"].endswith("| last |")
    assert all(rows[task].endswith("| dev-best |") for task in ("KS", "ASR", "SS"))
    assert "- ASV: the last checkpoint was evaluated: no dev set (runner.eval_dataloaders is empty)" in mine
    assert rows["SS"].startswith("| SS | SI-SDRi† ↑ | 10.00 |")
    assert "† SI-SDRi is what the SE and SS experts print: the SI-SDR *improvement*" in mine
    assert "the contaminated mixture" in mine
    other = next(t for t in tables if t.startswith("distilhubert"))
    assert "SI-SDR" not in other and "last checkpoint" not in other
    cells = {(r["upstream"], r["task"], r["condition"]): r for r in csv.DictReader(open(out / "results.csv"))}
    assert cells[("rd_wavlm", "ASV", "white_snr0")]["checkpoint"] == "last"
    assert cells[("rd_wavlm", "KS", "clean")]["checkpoint"] == "dev-best"


def test_each_cell_is_compared_with_its_own_upstreams_clean_value(tmp_path):
    # the clean values are looked up per upstream x task in one pass (report.collect): an upstream without a clean
    # result must not borrow another's, and the first clean condition of the sorted ones is the reference
    exp = tmp_path / "superb"
    _write(exp, "a", "KS", {"clean": 90.0, "white_snr0": 45.0})
    _write(exp, "b", "KS", {"white_snr0": 30.0})
    _write(exp, "a", "ASR", {"clean": 10.0, "white_snr0": 20.0})
    cells = {(c.tag, c.task, c.condition): c for c in collect(read_results([exp]))}
    assert cells[("a", "KS", "white_snr0")].degradation == pytest.approx(50.0)
    assert cells[("a", "ASR", "white_snr0")].degradation == pytest.approx(100.0)
    assert cells[("b", "KS", "white_snr0")].clean is None
    assert cells[("b", "KS", "white_snr0")].degradation is None
