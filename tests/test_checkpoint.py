"""Checkpoint reading: safety (weights_only), clear errors, reference-release layout (issue 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from s3prl_checkpoints import SMALL_DISTILLER, make_s3prl_distiller_checkpoint

from robustdistiller_upstream.checkpoint import load_student_checkpoint
from robustdistiller_upstream.errors import CheckpointError


class _TouchOnUnpickle:
    """Unpickling this calls open(marker, "w"): a stand-in for any code a malicious checkpoint could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_callable_is_refused_by_default(tmp_path):
    marker = tmp_path / "code-ran"
    ckpt = make_s3prl_distiller_checkpoint(tmp_path / "evil.ckpt", SMALL_DISTILLER,
                                           extra={"Scheduler": _TouchOnUnpickle(marker)})
    with pytest.raises(CheckpointError, match="trust_checkpoint") as info:
        load_student_checkpoint(ckpt)
    assert str(ckpt) in str(info.value)
    assert not marker.exists()
    # The opt-in really unpickles (and so runs the file's code): that is why it is opt-in.
    load_student_checkpoint(ckpt, trust_checkpoint=True)
    assert marker.exists()


def test_reference_release_layout_loads_safely(tmp_path):
    """s3prl's pretraining runner stores Args (argparse.Namespace), Step and the optimizer state beside the weights."""
    ckpt = make_s3prl_distiller_checkpoint(
        tmp_path / "rd_wavlm.ckpt", SMALL_DISTILLER,
        extra={"Args": argparse.Namespace(config="robust_distiller/config_runner.yaml", seed=1337),
               "Step": 200000, "Optimizer": {"state": {}, "param_groups": [{"lr": 2e-4}]}},
    )
    loaded = load_student_checkpoint(ckpt)
    assert loaded.config.encoder_embed_dim == SMALL_DISTILLER["encoder_embed_dim"]
    assert loaded.metadata == {}


def test_missing_truncated_and_foreign_files_name_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file") as info:
        load_student_checkpoint(tmp_path / "nope.ckpt")
    assert "nope.ckpt" in str(info.value)

    good = make_s3prl_distiller_checkpoint(tmp_path / "good.ckpt", SMALL_DISTILLER)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_student_checkpoint(truncated)
    assert str(truncated) in str(info.value)

    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.ckpt"):
        load_student_checkpoint(garbage)

    wavlm_like = tmp_path / "wavlm.pt"
    torch.save({"cfg": {}, "model": {}}, wavlm_like)
    with pytest.raises(CheckpointError, match="key 'Config' missing"):
        load_student_checkpoint(wavlm_like)


def test_unsupported_s3prl_option_is_named(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"Config": {"distiller": dict(SMALL_DISTILLER, task_emb_type="add")}, "Distiller": {}}, path)
    with pytest.raises(CheckpointError, match="task_emb_type"):
        load_student_checkpoint(path)


def test_weights_that_do_not_fit_the_config(tmp_path):
    good = make_s3prl_distiller_checkpoint(tmp_path / "good.ckpt", SMALL_DISTILLER)
    states = torch.load(good)
    states["Config"]["distiller"]["encoder_layers"] = 2
    torch.save(states, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_student_checkpoint(tmp_path / "bad.ckpt").build_model()
