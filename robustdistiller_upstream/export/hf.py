"""Hugging Face export: a student -> ``config.json`` + ``model.safetensors`` for ``transformers.HubertModel``.

The conventions of transformers' DistilHuBERT port (2 layers, group-norm CNN without conv bias, no
feature-projection LayerNorm), read from our checkpoint with no ``eval`` and no download (transformers' own
converter needs both and fails on torch 2.8, where weight norm is a parametrization). The export checks itself:
a new process loads it with ``HubertModel.from_pretrained`` and ``AutoModel`` and must give our hidden states.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from robustdistiller_upstream.export.card import model_card
from robustdistiller_upstream.export.check import check_batch, max_abs_diff
from robustdistiller_upstream.export.errors import ExportError
from robustdistiller_upstream.export.outputs import atomic_folder
from robustdistiller_upstream.export.source import ExportSource
from robustdistiller_upstream.model import StudentConfig, StudentModel

TOLERANCE = 1e-4
HEADS_FILE = "prediction_heads.safetensors"
# our (s3prl distiller) parameter name -> HubertModel's; {i} is a layer index
_KEY_MAP = [
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"feature_extractor.conv_layers.\1.conv.weight"),
    (r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"feature_extractor.conv_layers.0.layer_norm.\1"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"encoder\.pos_conv\.0\.(weight_g|weight_v|bias)", r"encoder.pos_conv_embed.conv.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.([qkv]_proj|out_proj)\.(weight|bias)", r"encoder.layers.\1.attention.\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
]


@dataclass
class HfExportReport:
    path: Path
    max_diff: dict[str, float]  # "layer_i" -> max |HubertModel hidden_states[i] - ours| over valid frames
    auto_class: str  # what AutoModel.from_pretrained resolved to


def hubert_config(config: StudentConfig) -> dict[str, Any]:
    """``HubertConfig`` keywords for the student; layer drop and SpecAugment off (an exported encoder)."""
    return {
        "architectures": ["HubertModel"],
        "model_type": "hubert",
        "conv_dim": [c for c, _, _ in config.extractor_conv_layers],
        "conv_kernel": [k for _, k, _ in config.extractor_conv_layers],
        "conv_stride": [s for _, _, s in config.extractor_conv_layers],
        "conv_bias": False,
        "feat_extract_norm": "group" if config.extractor_mode == "default" else "layer",
        "feat_extract_activation": "gelu",
        "feat_proj_layer_norm": False,
        "feat_proj_dropout": 0.0,
        "hidden_size": config.encoder_embed_dim,
        "num_hidden_layers": config.encoder_layers,
        "num_attention_heads": config.encoder_attention_heads,
        "intermediate_size": config.encoder_ffn_embed_dim,
        "hidden_act": "gelu",
        "hidden_dropout": config.dropout,
        "attention_dropout": config.attention_dropout,
        "activation_dropout": config.activation_dropout,
        "layer_norm_eps": 1e-5,
        "layerdrop": 0.0,
        "do_stable_layer_norm": config.layer_norm_first,
        "num_conv_pos_embeddings": config.conv_pos,
        "num_conv_pos_embedding_groups": config.conv_pos_groups,
        "apply_spec_augment": False,
        "mask_time_prob": 0.0,
        "mask_feature_prob": 0.0,
    }


def hubert_state_dict(state: dict[str, Tensor], config: StudentConfig) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """-> (HubertModel weights, prediction-head weights). A weight no rule maps is an error."""
    model, heads = {}, {}
    for key, value in state.items():
        if key.startswith("output_layer."):
            heads[key] = value.contiguous()
            continue
        for pattern, target in _KEY_MAP:
            if re.fullmatch(pattern, key):
                model[re.sub(pattern, target, key)] = value.contiguous()
                break
        else:
            raise ExportError(f"no HubertModel parameter for the student's {key!r}")
    if "post_extract_proj.weight" not in state:  # CNN as wide as the transformer: HubertModel still projects
        dim = config.encoder_embed_dim
        model["feature_projection.projection.weight"] = torch.eye(dim)
        model["feature_projection.projection.bias"] = torch.zeros(dim)
    return model, heads


def refuse_pruned(source: ExportSource) -> None:
    if source.kind != "pruned":
        return
    if source.is_wavlm:
        raise ExportError(f"{source.path}: a pruned WavLM-based model (RD-DPWavLM) cannot be exported to Hugging "
                          "Face: transformers has no per-layer-pruned WavLM (WavLMModel has one head count and FFN "
                          "size for every layer, and the kept heads select slices of its relative-position bias). "
                          "Use --to onnx.")
    raise ExportError(f"{source.path}: a pruned model cannot be exported to Hugging Face: HubertModel has one head "
                      "count and FFN size for every layer, a pruned model has its own per layer. Use --to onnx.")


def expected_states(model: StudentModel, wav: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
    """What HubertModel's hidden_states[1:] must equal: each transformer layer's output (the last one after the
    final layer norm in pre-LN models, where transformers applies it)."""
    with torch.no_grad():
        out = model.eval()(wav, lengths, predict=False)
        layers = list(out.layer_hiddens)
        if model.config.layer_norm_first:
            layers[-1] = model.encoder.layer_norm(layers[-1])
    return layers, out.frame_lengths


_CHECK_SCRIPT = """
import sys, json, numpy as np, torch
from transformers import AutoModel, HubertModel
folder, batch, out = sys.argv[1:4]
data = np.load(batch)
model = HubertModel.from_pretrained(folder, output_loading_info=True)
model, info = model
problems = {k: v for k, v in info.items() if v}
with torch.no_grad():
    wav = torch.from_numpy(data["wav"])
    mask = (torch.arange(wav.shape[1])[None, :] < torch.from_numpy(data["lengths"])[:, None]).long()
    hidden = model.eval()(wav, attention_mask=mask, output_hidden_states=True).hidden_states
np.savez(out, *[h.numpy() for h in hidden])
print(json.dumps({"auto": type(AutoModel.from_pretrained(folder)).__name__, "problems": problems}))
"""


def check_in_new_process(folder: Path, model: StudentModel, wav: Tensor, lengths: Tensor) -> HfExportReport:
    """Loads ``folder`` with transformers in a fresh interpreter and compares its layers to ours (1e-4)."""
    expected, frames = expected_states(model, wav, lengths)
    with tempfile.TemporaryDirectory() as tmp:
        batch, out = Path(tmp) / "batch.npz", Path(tmp) / "hidden.npz"
        np.savez(batch, wav=wav.numpy(), lengths=lengths.numpy())
        result = subprocess.run([sys.executable, "-c", _CHECK_SCRIPT, str(folder), str(batch), str(out)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise ExportError(f"transformers cannot load the export: {result.stderr.strip().splitlines()[-1]}")
        loaded = json.loads(result.stdout.strip().splitlines()[-1])
        with np.load(out) as arrays:
            hidden = [torch.from_numpy(arrays[f"arr_{i}"]) for i in range(len(arrays.files))]
    if loaded["problems"]:
        raise ExportError(f"HubertModel.from_pretrained did not fit the weights exactly: {loaded['problems']}")
    diffs = {f"layer_{i + 1}": max_abs_diff(h, e, frames) for i, (h, e) in enumerate(zip(hidden[1:], expected))}
    worst = max(diffs, key=diffs.get)
    if len(hidden) != len(expected) + 1 or diffs[worst] > TOLERANCE:
        raise ExportError(f"the HubertModel export differs from the student by {diffs[worst]:.2e} on {worst} "
                          f"(> {TOLERANCE:g})")
    return HfExportReport(folder, diffs, loaded["auto"])


def export_hf(source: ExportSource, out: str | Path, force: bool = False, keep_heads: bool = False,
              results: Optional[str | Path] = None) -> HfExportReport:
    """Writes ``out/`` (config.json, model.safetensors, README.md[, prediction_heads.safetensors]) after checking
    it in a new process; nothing is left at ``out`` when the check fails. A non-empty ``out`` needs ``force``."""
    from safetensors.torch import save_file

    refuse_pruned(source)
    checkpoint = source.student
    out = Path(out)
    model = checkpoint.build_model().eval()
    weights, heads = hubert_state_dict(checkpoint.state_dict, checkpoint.config)
    wav, lengths = check_batch()
    with atomic_folder(out, force) as folder:
        (folder / "config.json").write_text(json.dumps(hubert_config(checkpoint.config), indent=2) + "\n")
        save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
        if keep_heads:
            save_file(heads, str(folder / HEADS_FILE), metadata={"format": "pt", "pred_layer_id": json.dumps(
                list(checkpoint.config.pred_layer_id))})
        card = model_card(checkpoint.path.name, checkpoint.metadata, model.num_parameters(),
                          checkpoint.config.encoder_layers, HEADS_FILE if keep_heads else None,
                          Path(results) if results else None)
        (folder / "README.md").write_text(card)
        report = check_in_new_process(folder, model, wav, lengths)
    report.path = out
    return report
