"""The shipped recipes as the reference trains: pretrain/rd_correlation.yaml run through the real CLI on the tests'
corpus (its logged terms at the magnitudes docs/objectives.md gives), and the paper recipes' reference settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pretrain_helpers import TINY_STUDENT, cli, make_world
from robustdistiller_upstream.audio import write_audio_atomic
from robustdistiller_upstream.augment import TransformRecord
from robustdistiller_upstream.augment.banks import noise_files
from robustdistiller_upstream.config import load_config
from robustdistiller_upstream.random_teacher import write_hubert_checkpoint
from robustdistiller_upstream.synthetic import make_noise
from robustdistiller_upstream.train.config import PretrainConfig
from robustdistiller_upstream.train.recipe import PretrainRecipe
from robustdistiller_upstream.train.runner import Trainer

PRETRAIN = Path(__file__).resolve().parents[1] / "pretrain"
PAPER_RECIPES = ["rd_wavlm", "rd_hubert", "rd_wavlm_small", "rd_wavlm_tiny", "rd_correlation"]


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()


def _bank_paths(world: dict[str, Path], tmp_path: Path) -> str:
    """The recipe's banks at the tests' corpora: MUSAN's layout for ``musan``, a folder of two other noises (from
    ``make_noise``) for ``wham``."""
    wham = tmp_path / "wham_noise" / "tr"
    for i, kind in enumerate(["babble", "hum"]):
        write_audio_atomic(wham / f"{i}.wav", make_noise(kind, 1.5, 16000, seed=i), 16000, "PCM_16")
    return ",".join([
        f"denoising.banks.noises=[{{kind: musan, path: {world['musan']}, subsets: [noise], name: musan}}, "
        f"{{kind: folder, path: {wham}, name: wham}}]",
        f"denoising.banks.rirs=[{{kind: slr28, path: {world['rirs']}, rirs_only: true}}]",
        f"denoising.banks.cache_dir={tmp_path / 'bank-cache'}",
    ])


def assert_setup2(record: TransformRecord, noise_names: dict[str, set[str]]) -> None:
    """``record`` is a draw of setup 2 (docs/fidelity.md, DR ``distortions.py``): one additive distortion (a MUSAN or
    WHAM file, Gaussian noise, or none) at an integer SNR of 10..19 dB, then one non-additive effect."""
    additive, effect = record.op.split("+")
    assert additive in ("musan", "white", "wham", "clean") and effect in ("reverb", "pitch", "band_reject", "clean")
    if additive == "clean":
        assert record.noise is None and record.snr_db is None
    else:
        assert record.snr_db in range(10, 20)
        assert record.noise == "white" if additive == "white" else record.noise in noise_names[additive]
    assert (record.rir is not None) == (effect == "reverb")
    assert (record.pitch_cents is not None) == (effect == "pitch")
    assert (record.band_low_hz is not None) == (effect == "band_reject")
    if effect == "pitch":
        assert -500 <= record.pitch_cents < 500
    if effect == "band_reject":  # SpecAugmentBand: at most 27 * 0.5 / 256 of the mel range wide
        mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
        assert 0 <= record.band_low_hz <= record.band_high_hz <= 8000
        assert mel(record.band_high_hz) - mel(record.band_low_hz) <= mel(8000) * 27 * 0.5 / 256 + 1e-9


def test_rd_correlation_trains_on_the_test_corpus_with_the_documented_magnitudes(tmp_path):
    world = make_world(tmp_path, n_speakers=2, n_utterances=4)  # 8 utterances: batches of 4
    student = ",".join(f"student.{key}={_flow(value)}" for key, value in TINY_STUDENT.items())
    overrides = ",".join([
        f"teacher.name=wavlm_local,teacher.ckpt={world['teacher']}", student,
        f"data.librispeech_root={world['corpus']},data.manifests=[],data.subsets=[train-clean-100]",
        "data.sequence_length=16000,data.batch_size=4,data.num_workers=0",
        _bank_paths(world, tmp_path),
        "run.total_steps=4,run.device=cpu,run.amp=none,run.log_every=1,run.save_every=0,run.threads=1",
    ])
    result = cli("pretrain", "-c", str(PRETRAIN / "rd_correlation.yaml"), "-n", "corr", "-o", overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "exp" / "corr" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    d = TINY_STUDENT["final_dim"]
    for r in log:
        # bounds of the authors' scaled terms for d = 64 (|C_ij| <= 1): docs/objectives.md
        assert 0 <= r["on_diag"] <= 4 * d / 10
        assert 0 < r["off_diag"] <= d * (d - 1) / 100 and 0 < r["self_corr"] <= d * (d - 1) / 50000
        assert 0.31 < r["cos"] < 1.32  # -log sigmoid(cos) for cos in [-1, 1]
        # the loss is their sum with lambda 5e-5 and lambda_sc 5e-6; the decorrelation terms weigh < 1 %
        total = r["on_diag"] + 5e-5 * r["off_diag"] + 5e-6 * r["self_corr"] + r["cos"]
        assert r["loss"] == pytest.approx(total, rel=1e-5)
        assert 5e-5 * r["off_diag"] + 5e-6 * r["self_corr"] < 0.01 * (r["on_diag"] + r["cos"])
        assert r["self_weight"] == pytest.approx(5e-6)
    print("rd_correlation terms at step 1:",
          {key: log[0][key] for key in ("loss", "on_diag", "off_diag", "self_corr", "cos")})


@pytest.mark.parametrize("name", PAPER_RECIPES + ["distilhubert"])
def test_paper_recipes_carry_the_reference_settings(name):
    """docs/fidelity.md, one assertion per row that a recipe sets: what s3prl's runner and the reference expert do."""
    config = load_config(PretrainConfig, PRETRAIN / f"{name}.yaml")
    assert config.teacher.dropout
    assert config.student_init == (name not in ("rd_wavlm_small", "rd_wavlm_tiny"))  # narrow students: no copy
    optim = config.optim
    assert (optim.lr, tuple(optim.betas), optim.eps, optim.warmup, optim.weight_decay) == (2e-4, (0.9, 0.98), 1e-6,
                                                                                           0.07, 0.01)
    assert [(g.match, g.weight_decay) for g in optim.groups] == [(["bias", "LayerNorm.bias", "LayerNorm.weight"], 0.0)]
    assert optim.clip_grad_norm == (15.0 if name.startswith("rd_") and name != "rd_correlation" else 5.0)
    assert (config.run.amp, config.run.total_steps, config.data.batch_size) == ("fp16", 200000, 24)
    if not config.denoising.enabled:
        return
    contamination, banks = config.denoising.contamination, config.denoising.banks
    assert contamination.curriculum == "none"
    assert not banks.skip_low_rate and banks.min_noise_seconds == 0.0
    assert all(source.rirs_only for source in banks.rirs if source.kind == "slr28")  # the DNS copy: RIRs only
    if config.enhance.enabled:
        assert (config.enhance.output_dropout, config.enhance.weight, config.enhance.loss) == (0.1, 2.0, "l1")
    if name == "rd_correlation":  # setup 2 (DR): both inputs distorted, each by its own draw
        sources = {source.name: source for source in banks.noises}
        assert config.teacher.contamination and contamination.distortion_set.enabled
        assert sorted(contamination.distortion_set.additive) == ["clean", "musan", "wham", "white"]
        assert sorted(contamination.distortion_set.non_additive) == ["band_reject", "clean", "pitch", "reverb"]
        assert (contamination.distortion_set.pitch_cents, contamination.distortion_set.band_scaler) == (500, 0.5)
        assert (contamination.snr_min, contamination.snr_max, contamination.snr_integer) == (10, 19, True)
        assert contamination.short_noise == "stretch"
        assert sources["musan"].kind == "musan" and sorted(sources["musan"].subsets) == ["music", "noise", "speech"]
        assert sources["wham"].kind == "folder" and sources["wham"].path.endswith("wham_noise/tr")
        assert config.data.sequence_length > 35.5 * 16000  # whole LibriSpeech utterances: no crop
        return
    assert not config.teacher.contamination and not contamination.distortion_set.enabled
    assert not contamination.normalize_rir and not contamination.compensate_delay
    assert contamination.short_noise == "tile"
    np.testing.assert_equal([contamination.p_clean, contamination.p_noise, contamination.p_reverb,
                             contamination.p_noise_reverb], [0.25] * 4)


@pytest.mark.one_stack  # recipe and loop are the same code on both stacks; a HuBERT Base-sized teacher on CPU
def test_rd_correlation_runs_as_shipped_with_only_paths_overridden(tmp_path):
    """``robustdistiller pretrain -c pretrain/rd_correlation.yaml``, setup 2 as shipped (DistilHuBERT student, whole
    utterances, batch 24 = the corpus' 4 utterances), with the teacher, data and bank paths overridden and the CPU
    settings (device, threads, fp32, one step): a random HuBERT Base-shaped teacher, since the student is copied
    from it."""
    world = make_world(tmp_path, n_speakers=2, n_utterances=2)
    teacher = write_hubert_checkpoint(tmp_path / "hubert_base.pt", encoder_layers=12, encoder_embed_dim=768,
                                      encoder_ffn_embed_dim=3072, encoder_attention_heads=12,
                                      conv_feature_layers="[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
                                      conv_pos=128, conv_pos_groups=16)
    overrides = ",".join([
        f"teacher.name=hubert_local,teacher.ckpt={teacher}",
        f"data.librispeech_root={world['corpus']},data.manifests=[],data.subsets=[train-clean-100]",
        _bank_paths(world, tmp_path),
        "data.num_workers=0,run.total_steps=1,run.device=cpu,run.amp=none,run.log_every=1,run.threads=1",
    ])
    result = cli("pretrain", "-c", str(PRETRAIN / "rd_correlation.yaml"), "-n", "shipped", "-o", overrides,
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    exp = tmp_path / "exp" / "shipped"
    log = [json.loads(line) for line in (exp / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1] and np.isfinite(log[0]["loss"])
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["teacher"]["contamination"] and saved["denoising"]["contamination"]["distortion_set"]["enabled"]
    assert saved["student"]["encoder_embed_dim"] == 768 and saved["data"]["batch_size"] == 24


def test_teacher_and_student_hear_different_recorded_setup2_draws(tmp_path):
    """The loop's inputs under the shipped recipe (tiny teacher and student): every utterance's teacher input and
    student input come from two different recorded draws, each a setup-2 draw, and replaying each record set gives
    that input's exact bytes."""
    world = make_world(tmp_path, n_speakers=2, n_utterances=4)
    student = ",".join(f"student.{key}={_flow(value)}" for key, value in TINY_STUDENT.items())
    overrides = [",".join([
        f"teacher.name=wavlm_local,teacher.ckpt={world['teacher']}", student,
        f"data.librispeech_root={world['corpus']},data.manifests=[],data.subsets=[train-clean-100]",
        _bank_paths(world, tmp_path), "data.num_workers=0,run.device=cpu,run.amp=none,run.threads=1",
    ])]
    config = load_config(PretrainConfig, PRETRAIN / "rd_correlation.yaml", overrides)
    trainer = Trainer(PretrainRecipe(config), tmp_path / "exp")
    names = {source.name: {str(f) for f in noise_files(source)} for source in config.denoising.banks.noises}
    batch = next(iter(trainer.stream))
    heard, noisy, records = trainer.inputs(batch, batch.wav)
    assert len(records["teacher"]) == len(records["student"]) == len(batch.paths) == 8
    for teacher_record, student_record in zip(records["teacher"], records["student"]):
        assert_setup2(teacher_record, names)
        assert_setup2(student_record, names)
        assert teacher_record.seed != student_record.seed
    assert [r.to_dict() for r in records["teacher"]] != [r.to_dict() for r in records["student"]]
    assert not torch.equal(heard, noisy) and not torch.equal(heard, batch.wav)
    contaminator = trainer.contaminator
    for inputs, recorded in ((heard, records["teacher"]), (noisy, records["student"])):
        replayed, _ = contaminator.apply(batch.wav, batch.lengths, recorded)
        assert torch.equal(replayed, inputs)
    # the same draws again at the same step (resume, DDP), other draws at the next step
    again = trainer.inputs(batch, batch.wav)
    assert torch.equal(again[0], heard) and torch.equal(again[1], noisy)
    trainer.progress.step += 1
    assert trainer.inputs(batch, batch.wav)[2]["teacher"][0].seed != records["teacher"][0].seed
