"""CLI pretraining: resume after a real kill continues bit-exactly (CPU; the paper recipes' train-mode teacher
draws dropout masks too); checkpoints load through s3prl's hub."""

from __future__ import annotations

import json
import time

import pytest
import torch

from pretrain_helpers import cli, cli_popen, make_world, recipe, write_recipe


def _losses(exp) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (exp / "log.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    world = make_world(root)
    path = write_recipe(root / "tiny.yaml", recipe(world, robust=True, teacher={"dropout": True},
                                                     run={"total_steps": 6, "save_every": 2, "max_keep": 2}))
    full = cli("pretrain", "-c", str(path), "-n", "full", cwd=root)
    assert full.returncode == 0, full.stderr[-3000:]
    return root, path


def test_resume_after_kill_gives_the_same_losses(runs):
    root, path = runs
    proc = cli_popen("pretrain", "-c", str(path), "-n", "killed", cwd=root)
    deadline = time.monotonic() + 120
    while not (root / "exp" / "killed" / "resume-step2.pt").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no clean-up, whatever step it was in
    proc.wait()
    assert not (root / "exp" / "killed" / "student-step6.ckpt").exists()
    again = cli("pretrain", "-c", str(path), "-n", "killed", cwd=root)
    assert again.returncode == 2 and "already holds checkpoints" in again.stderr
    with (root / "exp" / "killed" / "log.jsonl").open("a") as log:
        log.write('{"step": 5, "lo')  # a line the kill cut short
    resumed = cli("pretrain", "-n", "killed", "--resume", cwd=root)  # the saved config.yaml is the recipe
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full, killed = _losses(root / "exp" / "full"), _losses(root / "exp" / "killed")
    assert sorted(killed) == list(range(1, 7))
    assert killed == full  # bitwise: same float for every step
    kept = sorted(p.name for p in (root / "exp" / "killed").glob("*step*"))
    assert kept == ["resume-step4.pt", "resume-step6.pt", "student-step4.ckpt", "student-step6.ckpt"]
    assert not list((root / "exp" / "killed").rglob(".*.tmp"))  # no half-written file of the killed run is left


def test_checkpoint_loads_through_our_hub_entry_and_stock_distiller(runs):
    import s3prl.hub as hub

    from robustdistiller_upstream.checkpoint import load_student_checkpoint

    ckpt = runs[0] / "exp" / "full" / "student-step6.ckpt"
    ours = hub.robustdistiller_local(ckpt=str(ckpt)).eval()
    stock = hub.distiller_local(ckpt=str(ckpt)).eval()
    wavs = [torch.randn(16000), torch.randn(12000)]
    with torch.no_grad():
        a, b = ours(wavs)["hidden_states"], stock(wavs)["hidden_states"]
    assert len(a) == len(b) == 1 + 2 + 2  # final, 2 layers, 2 prediction heads
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=1e-4, rtol=1e-4)
    metadata = load_student_checkpoint(ckpt).metadata
    assert metadata["step"] == 6 and metadata["teacher"]["name"] == "wavlm_local"
    assert metadata["recipe"]["denoising"]["enabled"] is True


def test_cli_reports_bad_teacher_settings_in_one_line(runs):
    root, path = runs
    missing = cli("pretrain", "-c", str(path), "-n", "bad", "-o", f"teacher.ckpt={root}/nope.pt", cwd=root)
    assert missing.returncode == 2 and f"teacher.ckpt: {root}/nope.pt does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    layer = cli("pretrain", "-c", str(path), "-n", "bad", "-o", "student.pred_layer_id=[1,7]", cwd=root)
    assert layer.returncode == 2 and "student.pred_layer_id: layer(s) [7] do not exist" in layer.stderr
