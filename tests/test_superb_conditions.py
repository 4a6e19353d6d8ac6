"""Condition copies for the Kaldi-style tasks (SE/SS input side, SD test dir): made with the real
``robustdistiller contaminate``, cached, and refused when the cache holds another condition."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.superb.conditions import EvalCondition as Condition
from robustdistiller_upstream.superb.conditions import build_condition

CONDITIONS = "conditions:\n  white_snr0: {spec: 'noise:white:snr=0', seed: 3}\n"


def _scp_dir(folder: Path, audio_dir: Path, n: int) -> None:
    folder.mkdir(parents=True)
    lines = []
    for i in range(n):
        path = audio_dir / f"utt{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, (0.3 * np.sin(np.arange(16000) * 0.05 * (i + 1))).astype(np.float32), 16000)
        lines.append(f"utt{i} {path}\n")
    (folder / "wav.scp").write_text("".join(lines))
    (folder / "utt2spk").write_text("".join(f"utt{i} spk{i}\n" for i in range(n)))


def test_enhancement_input_side_is_contaminated_targets_stay(tmp_path):
    test_dir = tmp_path / "voicebank" / "test"
    _scp_dir(test_dir / "noisy", tmp_path / "audio" / "noisy", 3)
    _scp_dir(test_dir / "clean", tmp_path / "audio" / "clean", 3)
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text(CONDITIONS)
    condition = Condition("white_snr0", "noise:white:snr=0", 3)
    cond_root = tmp_path / "conds"
    root = build_condition("SE", condition, test_dir, ["noisy"], cond_root, conditions, dict(os.environ))

    assert os.path.realpath(root / "clean") == str(test_dir / "clean")
    noisy_scp = (root / "noisy" / "wav.scp").read_text().split()
    assert noisy_scp[0] == "utt0" and (root / "noisy" / "utt2spk").read_text().startswith("utt0 spk0")
    copy, original = sf.read(noisy_scp[1])[0], sf.read(tmp_path / "audio" / "noisy" / "utt0.wav")[0]
    assert copy.shape == original.shape
    manifest = cond_root / "SE" / "white_snr0" / "out" / ".robustdistiller" / "manifest.jsonl"
    row = next(r for r in map(json.loads, manifest.read_text().splitlines()) if r["source"].endswith("utt0.wav"))
    noise = copy / row["output_gain"] - original  # the copy is scaled down where it would clip in PCM16
    snr = 10 * np.log10(np.mean(original ** 2) / np.mean(noise ** 2))
    assert abs(snr) < 0.2  # 0 dB white noise

    log = (cond_root / "SE" / "white_snr0" / "contaminate.log").read_text()
    assert build_condition("SE", condition, test_dir, ["noisy"], cond_root, conditions, dict(os.environ)) == root
    assert (cond_root / "SE" / "white_snr0" / "contaminate.log").read_text() == log  # cached: not rebuilt
    with pytest.raises(ConfigError, match="built for 'noise:white:snr=0' seed 3"):
        build_condition("SE", Condition("white_snr0", "noise:white:snr=0", 4), test_dir, ["noisy"], cond_root,
                        conditions, dict(os.environ))


def test_clean_condition_is_the_original_folder(tmp_path):
    assert build_condition("SD", Condition("clean", "clean", 0), tmp_path, ["."], tmp_path / "c", tmp_path / "x.yaml",
                           {}) == tmp_path
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("part", ["./noisy", "noisy/"])
def test_a_part_not_in_normal_form_is_refused_not_left_clean(tmp_path, part):
    """A part written ``./noisy`` or ``noisy/`` is contaminated into ``out/``, but the evaluated root is matched by
    name: it would link the clean original. The copy is refused, naming the part (issue 25)."""
    test_dir = tmp_path / "voicebank" / "test"
    _scp_dir(test_dir / "noisy", tmp_path / "audio" / "noisy", 1)
    conditions = tmp_path / "conditions.yaml"
    conditions.write_text(CONDITIONS)
    with pytest.raises(ConfigError, match=rf"test part '{part}' resolves to {test_dir / 'noisy'}, outside the "
                                          rf"condition copy"):
        build_condition("SE", Condition("white_snr0", "noise:white:snr=0", 3), test_dir, [part], tmp_path / "conds",
                        conditions, dict(os.environ))
    assert not (tmp_path / "conds" / "SE" / "white_snr0" / "ready.json").exists()
