"""RD-DPWavLM as DPHuBERT trains it (docs/fidelity.md, "RD-DPWavLM"): one test per difference the recipe
removes, each against DPHuBERT's formula or setting (pyf98/DPHuBERT ``run.sh``, ``distill.py``, ``lightning.py``,
``wav2vec2/components.py``), and the shipped recipe through the real CLI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from pretrain_helpers import cli, make_world
from prune_helpers import CONV_48, batch, write_teacher

from robustdistiller_upstream.config import from_dict, load_config, to_dict
from robustdistiller_upstream.objectives import build_objective
from robustdistiller_upstream.prune.convert import model_from_teacher
from robustdistiller_upstream.prune.train import (
    PruneConfig,
    PruneDistiller,
    PruneRecipe,
    crop_to_shortest,
    gated_student,
    teacher_targets,
)
from robustdistiller_upstream.random_teacher import write_wavlm_checkpoint
from robustdistiller_upstream.teacher import Teacher, TeacherConfig
from robustdistiller_upstream.train.data import Batch
from robustdistiller_upstream.train.optim import build_optimizer
from robustdistiller_upstream.train.runner import Trainer

RECIPE = Path(__file__).resolve().parents[1] / "pretrain" / "rd_dpwavlm.yaml"
LAYERS = [0, 1, 2]


def _recipe(**changes) -> PruneConfig:
    """The shipped recipe with ``changes`` (section dicts) merged in."""
    config = to_dict(load_config(PruneConfig, RECIPE))
    for key, value in changes.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    return from_dict(PruneConfig, config)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny WavLM teacher (CNN narrower than the transformer: a real feature projection) and the recipe on it
    (the tests' corpus; no contamination or head: what these tests look at is the distillation)."""
    root = tmp_path_factory.mktemp("fidelity")
    world = make_world(root)
    path = write_teacher("wavlm", root / "teacher.pt", encoder_layerdrop=0.5)
    config = _recipe(teacher={"ckpt": str(path), "precision": "fp32"}, distill_layers=LAYERS,
                     denoising={"enabled": False}, enhance={"enabled": False},
                     data={"librispeech_root": str(world["corpus"]), "manifests": [], "subsets": ["train-clean-100"],
                           "sequence_length": 6400, "batch_size": 2, "num_workers": 0},
                     run={"device": "cpu", "amp": "none", "threads": 1})
    return path, config, Teacher(config.teacher, LAYERS)


def _step(trainer: Trainer) -> dict[str, float]:
    """One training step of ``trainer`` on a fixed (2, 4000) batch; its terms."""
    wav, lengths = batch([4000, 3200])
    terms, _ = trainer.train_step(itertools.repeat(Batch(wav, lengths, ["a", "b"], 0)))
    return {k: float(v) for k, v in terms.items()}


def test_1_cosine_term_is_raw_cosine():
    """``DistillLoss(cos_type="raw")``: ``l1_loss(S, T) - cos_sim(S, T).mean()`` over (batch, layer, time, dim)."""
    assert _recipe().objective.options["cos_type"] == "raw"
    torch.manual_seed(0)
    student, teacher = [torch.randn(2, 7, 16) for _ in range(4)], [torch.randn(2, 7, 16) for _ in range(4)]
    mask = torch.ones(2, 7, dtype=torch.bool)
    ours = build_objective("layerwise", {"cos_type": "raw"}, 16, 16, [0, 4, 8, 12])(student, teacher, mask).loss
    s, t = torch.stack(student, 1), torch.stack(teacher, 1)
    reference = F.l1_loss(s, t) - F.cosine_similarity(s, t, dim=-1).mean()
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)
    log_sig = build_objective("layerwise", {}, 16, 16, [0, 4, 8, 12])(student, teacher, mask).loss
    assert abs(float(log_sig - reference)) > 0.1  # RobustDistiller's -log sigmoid(cos) differs


@pytest.mark.parametrize("kind", ["wavlm", "hubert"])
def test_2_hidden_state_0_is_the_projection_output_before_the_positional_conv(tiny, kind, tmp_path):
    """``Encoder.extract_features`` returns ``[x] + intermediates`` with ``x`` the feature projection's output:
    the dense copy's state 0 equals what enters stock s3prl's ``encoder``, not s3prl's own hidden_states[0]."""
    path, config, teacher = tiny
    assert config.projection_first
    if kind == "hubert":
        path = write_teacher("hubert", tmp_path / "hubert.pt")
        teacher = Teacher(TeacherConfig(name="hubert_local", ckpt=str(path)), LAYERS)
    wav, lengths = batch([6400, 6400])
    student = model_from_teacher(path).eval()
    with torch.no_grad():
        hidden, _ = student(wav, lengths, projection_first=True)
    targets = teacher_targets(teacher, wav, lengths, projection_first=True)
    s3prl_first = teacher(wav, lengths)[0]
    frames = min(hidden[0].shape[1], targets[0].shape[1])
    torch.testing.assert_close(hidden[0][:, :frames], targets[0][:, :frames], atol=1e-4, rtol=1e-4)
    assert float((targets[0] - s3prl_first).abs().max()) > 0.1  # after pos conv + layer norm: another tensor
    torch.testing.assert_close(targets[1:], teacher(wav, lengths)[1:])


def test_3_layer_0_has_its_own_map_and_the_others_share_one(tiny):
    """``distill_layers=0.4,8,12``: one ``nn.Linear`` for group [0], one appended for each of 4, 8, 12."""
    _, config, teacher = tiny
    assert config.shared_projection and _recipe().distill_layers == [0, 4, 8, 12]
    objective = build_objective("layerwise", {}, teacher.dim, teacher.dim, [0, 4, 8, 12])
    student = model_from_teacher(tiny[0])
    shared = PruneDistiller(student, objective, [0, 4, 8, 12], teacher.dim, shared_projection=True).projections
    assert shared[1] is shared[2] is shared[3] and shared[0] is not shared[1]
    assert sum(p.numel() for p in shared.parameters()) == 2 * (teacher.dim + 1) * teacher.dim
    assert torch.equal(shared[1].weight, torch.eye(teacher.dim))  # _init_layer_transform
    own = PruneDistiller(student, objective, [0, 4, 8, 12], teacher.dim, shared_projection=False).projections
    assert len({id(p) for p in own}) == 4


def test_4_adamw_with_torch_defaults_and_dphubert_schedule(tiny, tmp_path):
    """``torch.optim.AdamW(pgs)``: betas (0.9, 0.999), eps 1e-8, weight decay 0 (run.sh) for main, log_alpha and
    lambda (lr = reg_lr; DPHuBERT's negative lr = our negated gradients); ``LinearDecayLRScheduler``."""
    _, config, teacher = tiny
    optimizer = Trainer(PruneRecipe(config), tmp_path / "exp").optimizer
    assert type(optimizer) is torch.optim.AdamW
    assert [g["name"] for g in optimizer.param_groups] == ["main", "log_alpha", "lambda"]
    for group in optimizer.param_groups:
        assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8 and group["weight_decay"] == 0.0
    assert [g["initial_lr"] for g in optimizer.param_groups] == [2e-4, 0.02, 0.02]

    def reference(count: int, warmup: int, total: int) -> float:  # LinearDecayLRScheduler.get_lr on _step_count
        if count <= warmup:
            return count / warmup
        return 0.0 if count >= total else (total - count) / (total - warmup)

    param = torch.nn.Parameter(torch.zeros(1))
    optim, scheduler = build_optimizer([param], config.prune_stage.optim, 20)  # warmup 0.3: 6 updates
    for count in range(1, 21):
        assert optim.param_groups[0]["lr"] == pytest.approx(2e-4 * reference(count, 6, 20), abs=1e-12), count
        optim.step()
        scheduler.step()


def test_5_the_student_never_drops_a_layer(tiny):
    """``get_intermediate_outputs`` runs every layer; the teacher config's ``encoder_layerdrop`` (0.5 here) is off."""
    path, config, _ = tiny
    assert gated_student(config).encoder.transformer.layer_drop == 0.0
    on = from_dict(PruneConfig, {**to_dict(config), "student_layer_drop": True})
    assert gated_student(on).encoder.transformer.layer_drop == 0.5


def test_6_every_optimized_parameter_is_clipped_together(tiny, tmp_path):
    """Lightning's ``gradient_clip_val`` clips the norm over all of the optimizer's parameters, gates and
    multipliers included."""
    _, config, teacher = tiny
    config = from_dict(PruneConfig, {**to_dict(config), "prune_stage": {"steps": 5, "optim": {
        **to_dict(config.prune_stage.optim), "clip_grad_norm": 1e-3}}})
    trainer = Trainer(PruneRecipe(config), tmp_path / "exp")
    norm = lambda params: float(torch.linalg.vector_norm(torch.stack(  # noqa: E731
        [p.grad.norm() for p in params if p.grad is not None])))
    norms = {}  # at the optimizer step: the loop clears the gradients after it
    trainer.optimizer.register_step_pre_hook(lambda optimizer, *_: norms.update(
        all=norm([p for g in optimizer.param_groups for p in g["params"]]),
        main=norm(optimizer.param_groups[0]["params"])))
    _step(trainer)
    assert norms["all"] == pytest.approx(1e-3, rel=1e-4)
    assert norms["main"] < 1e-3 * 0.9999  # the gates and multipliers took part of the budget


def test_7_batches_are_cropped_to_their_shortest_utterance():
    """``CollateFnAudio(pad=False, rand_crop=True)``: every row cut to the shortest length at a random offset;
    ``BucketizeBatchSampler(max_token_count=160 * 16000, min_len=32000, max_len=250000)`` (its filling:
    test_train_data.py)."""
    config = _recipe()
    assert config.crop_to_shortest and config.data.min_length == 32000 and config.data.sequence_length == 250000
    assert config.data.batch_seconds == 160
    wav, lengths = batch([4000, 3200, 3500], seed=1)
    torch.manual_seed(3)
    cropped = crop_to_shortest(Batch(wav, lengths, ["a", "b", "c"], 0))
    assert cropped.wav.shape == (3, 3200) and cropped.lengths.tolist() == [3200] * 3
    offsets = []
    for row, n in zip(range(3), lengths.tolist()):
        windows = wav[row, :n].unfold(0, 3200, 1)  # every 3200-sample window of the valid samples
        offsets.append(int((windows == cropped.wav[row]).all(-1).nonzero()[0]))
    assert offsets[1] == 0 and offsets[0] != 0  # a random window where there is room


def test_8_student_and_teacher_run_under_fp16_autocast(tiny, tmp_path):
    """``--precision 16``: Lightning's native AMP wraps ``training_step``, the teacher's forward included, with a
    gradient scaler."""
    path, config, _ = tiny
    shipped = _recipe()
    assert shipped.run.amp == "fp16" and shipped.teacher.precision == "fp16"
    config = from_dict(PruneConfig, {**to_dict(config), "teacher": {**to_dict(shipped.teacher), "ckpt": str(path)},
                                     "run": {**to_dict(config.run), "amp": "fp16"}})
    trainer = Trainer(PruneRecipe(config), tmp_path / "exp")
    teacher = trainer.teacher
    assert trainer.scaler.is_enabled()
    dtypes: dict[str, torch.dtype] = {}

    def record(key: str):
        def hook(module, args, output) -> None:
            dtypes[key] = output.dtype
        return hook

    modules = {"student": trainer.task.student.encoder.transformer.layers[0].feed_forward.intermediate_dense,
               "teacher": teacher.upstream.model.encoder.layers[0].fc1}
    hooks = [module.register_forward_hook(record(key)) for key, module in modules.items()]
    terms = _step(trainer)
    for hook in hooks:
        hook.remove()
    assert dtypes == {"student": torch.float16, "teacher": torch.float16}
    assert all(torch.isfinite(torch.tensor(v)) for v in terms.values())


def test_shipped_recipe_runs_with_only_data_paths_overridden(tmp_path):
    """``robustdistiller prune -c pretrain/rd_dpwavlm.yaml`` on the tests' corpus and banks: paths, step counts
    and the CPU settings (device, threads, fp32) overridden, nothing else (a 12-layer tiny teacher, so
    distill_layers 0/4/8/12 exist)."""
    world = make_world(tmp_path, n_utterances=4)
    teacher = write_wavlm_checkpoint(tmp_path / "wavlm12.pt", encoder_layers=12, conv_feature_layers=CONV_48)
    overrides = ",".join([
        f"teacher.ckpt={teacher}",
        f"data.librispeech_root={world['corpus']},data.manifests=[],data.subsets=[train-clean-100]",
        f"denoising.banks.noises=[{{kind: musan, path: {world['musan']}}}]",
        f"denoising.banks.rirs=[{{kind: slr28, path: {world['rirs']}, rirs_only: false}}]",
        f"denoising.banks.cache_dir={tmp_path / 'bank-cache'}",
        "prune_stage.steps=2,final_stage.steps=1,data.num_workers=0",
        "run.device=cpu,run.log_every=1,run.threads=1",
        "run.amp=none,teacher.precision=fp32",  # fp16 on a CPU without fp16 kernels: 30 s a step (test 8 runs it)
    ])
    result = cli("prune", "-c", str(RECIPE), "-n", "shipped", "-o", overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    exp = tmp_path / "exp" / "shipped"
    log = [json.loads(line) for line in (exp / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in log] == [("prune", 1), ("prune", 2), ("final", 1)]
    assert all(-1.0 <= r["cos"] <= 1.0 for r in log)  # raw cosine: -cos in [-1, 1]
    saved = yaml.safe_load((exp / "config.yaml").read_text())
    assert saved["objective"]["options"]["cos_type"] == "raw" and saved["shared_projection"]
    assert (exp / "final.pth").exists()
