"""Checkpoints made by stock s3prl's own DistillerModel (random init, fixed seed), for the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

# The RobustDistiller student (DESIGN 1) in s3prl's Config['distiller'] vocabulary.
BASE_DISTILLER = dict(
    extractor_mode="default",
    extractor_conv_feature_layers="[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2",
    feature_grad_mult=0.1,
    conv_pos=128,
    conv_pos_groups=16,
    encoder_layers=2,
    encoder_embed_dim=768,
    encoder_ffn_embed_dim=3072,
    encoder_attention_heads=12,
    activation_fn="gelu",
    layer_norm_first=False,
    final_dim=768,
    out_layer_type="expand-last",
    n_tasks=3,
    task_emb_type="expand-last",
    pred_layer_id=[4, 8, 12],
)

# A small variant exercising the other code paths: layer-norm CNN, pre-LN, odd positional kernel, one head.
SMALL_DISTILLER = dict(
    BASE_DISTILLER,
    extractor_mode="layer_norm",
    extractor_conv_feature_layers="[(64,10,5)] + [(64,3,2)] * 4 + [(64,2,2)] * 2",
    conv_pos=31,
    conv_pos_groups=4,
    encoder_layers=1,
    encoder_embed_dim=96,
    encoder_ffn_embed_dim=192,
    encoder_attention_heads=4,
    layer_norm_first=True,
    final_dim=80,
    n_tasks=1,
    pred_layer_id=[3],
)


def make_s3prl_distiller_checkpoint(
    path: Path, distiller: dict, seed: int = 0, extra: Optional[dict[str, Any]] = None
) -> Path:
    """Saves a randomly initialised s3prl ``DistillerModel`` in the DistilHuBERT checkpoint format."""
    from s3prl.upstream.distiller.model import DistillerConfig, DistillerModel

    torch.manual_seed(seed)
    model = DistillerModel(DistillerConfig(dict(distiller)))
    with torch.no_grad():  # s3prl zero-initialises some biases: randomise everything so a mix-up cannot hide
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    torch.save({"Config": {"distiller": dict(distiller)}, "Distiller": model.state_dict(), **(extra or {})}, path)
    return path
