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


def test_info_on_a_file_that_is_no_checkpoint_says_what_it_is_not(tmp_path):
    """A text file gets no advice to unpickle it (torch's weights_only message): what it is not, and its first bytes."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    result = subprocess.run([CLI, "info", str(readme)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "README.md: not a PyTorch checkpoint: neither a zip archive" in result.stderr
    assert f"it starts with {readme.read_bytes()[:16]!r}" in result.stderr
    assert "weights_only" not in result.stderr and "Traceback" not in result.stderr


def test_info_on_pickled_code_keeps_the_trust_advice(tmp_path):
    """A real torch file holding pickled code: refused, naming the global, with the way to allow it."""
    import torch

    path = tmp_path / "pickled.ckpt"
    torch.save({"Config": {}, "Distiller": {}, "optimizer": Path("x")}, path)  # a pathlib class: pickled code
    result = subprocess.run([CLI, "info", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "refused to load: the file holds pickled Python objects" in result.stderr
    assert "trust_checkpoint" in result.stderr and "Traceback" not in result.stderr
