"""``robustdistiller demo`` end to end, shortened: corpus, two side-by-side runs, reload through s3prl, table."""

from __future__ import annotations

import json

from pretrain_helpers import cli


def test_demo_runs_and_prints_the_robustness_table(tmp_path):
    out = tmp_path / "demo"
    result = cli("demo", "--out", str(out), "--steps", "3", "--speakers", "2", "--utterances", "2", "--held-out", "1",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| noise 5 dB + reverb |" in result.stdout and "robustdistiller_local" in result.stdout
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["condition"] for r in rows][:2] == ["clean", "noise 10 dB"]
    clean = rows[0]
    assert clean["robust_change"] == 0.0 and clean["teacher_change_l1"] == 0.0
    assert all(r["teacher_change_l1"] > 0 for r in rows[1:])  # every condition really contaminates
    assert (out / "exp" / "robust" / "student-step3.ckpt").exists() and (out / "exp" / "baseline" / "student-step3.ckpt").exists()
    baseline_recipe = (out / "exp" / "baseline" / "config.yaml").read_text()
    assert "enabled: false" in baseline_recipe
    again = cli("demo", "--out", str(out), cwd=tmp_path)
    assert again.returncode == 2 and "holds a finished demo" in again.stderr
