"""Shared set-ups of the pruning tests: tiny random teachers in s3prl's formats, gated copies of them, and a prune
recipe on the pretraining tests' corpus and banks (``pretrain_helpers.make_world``)."""

from __future__ import annotations

from pathlib import Path

import torch
from pretrain_helpers import recipe as pretrain_recipe

from robustdistiller_upstream.prune.convert import model_from_teacher
from robustdistiller_upstream.prune.model import PrunableWav2Vec2
from robustdistiller_upstream.random_teacher import write_hubert_checkpoint, write_wavlm_checkpoint

ALL_UNITS = {
    "extractor_prune_conv_channels": True,
    "encoder_prune_attention_heads": True,
    "encoder_prune_attention_layer": True,
    "encoder_prune_feed_forward_intermediate": True,
    "encoder_prune_feed_forward_layer": True,
}
# CNN narrower than the transformer, so the feature projection is a real (512 -> 768-like) linear map
CONV_48 = "[(48,10,5)] + [(48,3,2)] * 4 + [(48,2,2)] * 2"


def write_teacher(kind: str, path: Path, **cfg) -> Path:
    writer = write_wavlm_checkpoint if kind == "wavlm" else write_hubert_checkpoint
    return writer(path, **{"conv_feature_layers": CONV_48, **cfg})


def gated_copy(path: Path, seed: int = 0, spread: float = 3.0) -> PrunableWav2Vec2:
    """A gated copy of the teacher whose gates are scattered (some units off, some whole blocks off), eval mode."""
    model = model_from_teacher(path, ALL_UNITS)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gate in model.gates():
            gate.log_alpha.copy_(torch.randn(gate.n, generator=generator) * spread + 0.5)
    return model.eval()


def batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, samples) zero-padded noise and its (batch,) lengths."""
    generator = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(lengths), max(lengths))
    for row, n in enumerate(lengths):
        wav[row, :n] = torch.randn(n, generator=generator) * 0.1
    return wav, torch.tensor(lengths)


def valid_max_diff(a: list[torch.Tensor], b: list[torch.Tensor], frame_lengths: torch.Tensor) -> float:
    """Largest |a - b| over valid frames of every hidden state."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        valid = torch.arange(x.shape[1])[None, :] < frame_lengths[:, None]
        worst = max(worst, float(((x - y).abs() * valid[..., None]).max()))
    return worst


def prune_recipe(world: dict[str, Path], robust: bool = True, **sections: dict) -> dict:
    """A ``robustdistiller prune`` recipe dict on ``pretrain_helpers.make_world``'s corpus, banks and 2-layer
    teacher: hidden states 0-2, 0.4 s crops, batch 2, CPU, fp32, 4 + 2 steps, a resume file every 2;
    ``sections`` update it."""
    config: dict = {
        "teacher": {"name": "wavlm_local", "ckpt": str(world["teacher"])},
        "distill_layers": [0, 1, 2],
        "units": {"attention_layers": True, "ffn_layers": True},
        "sparsity": {"target": 0.5, "warmup_steps": 2, "reg_lr": 0.05},
        "denoising": pretrain_recipe(world, robust)["denoising"],  # the pretraining tests' banks
        "enhance": {"enabled": robust, "hidden_size": 16, "num_layers": 1},
        "data": {"librispeech_root": str(world["corpus"]), "subsets": ["train-clean-100"], "sequence_length": 6400,
                 "batch_size": 2, "num_workers": 0},
        "prune_stage": {"steps": 4},
        "final_stage": {"steps": 2},
        "run": {"device": "cpu", "log_every": 1, "save_every": 2, "threads": 1},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config
