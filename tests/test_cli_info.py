"""`robustdistiller info` as a user runs it (a real subprocess of the console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from s3prl_checkpoints import BASE_DISTILLER, make_s3prl_distiller_checkpoint

from robustdistiller_upstream.checkpoint import load_student_checkpoint, save_student_checkpoint

CLI = str(Path(sys.executable).parent / "robustdistiller")  # the console script of this environment


def test_info_prints_parameter_counts_and_metadata(tmp_path):
    source = make_s3prl_distiller_checkpoint(tmp_path / "s3prl.ckpt", BASE_DISTILLER)
    ours = save_student_checkpoint(tmp_path / "ours.ckpt", load_student_checkpoint(source).build_model(),
                                   {"teacher": {"name": "wavlm_local"}, "step": 12})
    text = subprocess.run([CLI, "info", str(ours)], capture_output=True, text=True, check=True).stdout
    assert "parameters: 23.49M (27.03M with prediction heads)" in text
    assert "teacher layers [4, 8, 12]" in text and "step: 12" in text
    data = json.loads(subprocess.run([CLI, "info", "--json", str(source)], capture_output=True, text=True,
                                     check=True).stdout)
    assert data["format"] == "s3prl-distiller" and data["parameters"] == 23_491_200


def test_info_on_a_missing_file_is_one_clear_line(tmp_path):
    result = subprocess.run([CLI, "info", str(tmp_path / "absent.ckpt")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "absent.ckpt: no such checkpoint file" in result.stderr
    assert "Traceback" not in result.stderr
