"""Randomly initialised teachers written in s3prl's own checkpoint formats (tests, benchmarks, offline demos).

``write_wavlm_checkpoint`` writes what s3prl ``wavlm_local`` reads (``{'cfg': dict, 'model': state_dict}``);
``write_hubert_checkpoint`` writes s3prl's converted HuBERT format (``hubert_local``). Weights carry no knowledge:
they exercise the loading, layer selection and student-init paths with the real s3prl model code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_CONV_LAYERS = "[(64,10,5)] + [(64,3,2)] * 4 + [(64,2,2)] * 2"


def tiny_transformer_config(layers: int = 2, dim: int = 64, conv_dim: int = 64) -> dict[str, Any]:
    """The shared transformer fields of a small WavLM/HuBERT (downsampling 320 like the real ones)."""
    return {
        "encoder_layers": layers,
        "encoder_embed_dim": dim,
        "encoder_ffn_embed_dim": 2 * dim,
        "encoder_attention_heads": 4,
        "conv_feature_layers": TINY_CONV_LAYERS.replace("64", str(conv_dim)),
        "conv_pos": 16,
        "conv_pos_groups": 4,
        "extractor_mode": "default",
        "layer_norm_first": False,
    }


def write_wavlm_checkpoint(path: str | Path, seed: int = 0, **cfg: Any) -> Path:
    """A random WavLM (s3prl's ``WavLM.py``) with gated relative-position attention; ``cfg`` overrides sizes."""
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    config = {**tiny_transformer_config(), "relative_position_embedding": True, "gru_rel_pos": True,
              "num_buckets": 320, "max_distance": 800, "normalize": False, **cfg}
    torch.manual_seed(seed)
    model = WavLM(WavLMConfig(config))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"cfg": config, "model": model.state_dict()}, path)
    return path


def write_hubert_checkpoint(path: str | Path, seed: int = 0, **cfg: Any) -> Path:
    """A random HuBERT in s3prl's converted format (``task_cfg``, ``model_cfg``, ``model_weight``, symbols)."""
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig

    model_cfg = {**tiny_transformer_config(), "label_rate": 50.0, "final_dim": 32, **cfg}
    task_cfg = {"label_rate": 50.0, "sample_rate": 16000, "normalize": False}
    symbols = [[str(i) for i in range(8)]]
    torch.manual_seed(seed)
    model = HubertModel(HubertConfig(**model_cfg), HubertPretrainingConfig(**task_cfg), symbols)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"task_cfg": task_cfg, "model_cfg": model_cfg, "model_weight": model.state_dict(), "dictionaries_symbols": symbols},
        path,
    )
    return path
