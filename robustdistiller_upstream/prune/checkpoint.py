"""Pruned-model checkpoints, DPHuBERT's layout: ``{"config": ArchConfig keywords, "state_dict": ...}``.

Ours add ``"robustdistiller"`` (metadata: teacher, sparsity, steps) and may carry ``"distill_linear_projs"`` like
DPHuBERT's. Everything is plain tensors/containers, so ``torch.load(weights_only=True)`` reads them; DPHuBERT and
DPWavLM releases (and the reference ``RDDPWavLM-sp0.75.pth``) load the same way. A checkpoint whose config still
has prune flags (a stage-1 file with gates) is exported to its dense model on load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from torch import Tensor

from robustdistiller_upstream.checkpoint import atomic_torch_save, load_torch_file
from robustdistiller_upstream.errors import CheckpointError
from robustdistiller_upstream.prune.arch import ArchConfig, arch_from_checkpoint_dict
from robustdistiller_upstream.prune.export import export_pruned
from robustdistiller_upstream.prune.model import PrunableWav2Vec2
from robustdistiller_upstream.prune.params import num_params


@dataclass
class PrunedCheckpoint:
    arch: ArchConfig
    state_dict: dict[str, Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    distill_linear_projs: dict[str, Tensor] = field(default_factory=dict)
    source: str = "<memory>"

    def build_model(self) -> PrunableWav2Vec2:
        """The dense model (eval mode); gated checkpoints are exported first. Mismatched weights name the file."""
        model = PrunableWav2Vec2(self.arch)
        state = {_modern_key(k): v for k, v in self.state_dict.items()}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{self.source}: state_dict does not fit its config ({exc})") from None
        if self.arch.prunes_anything:
            model = export_pruned(model.eval())
        return model.eval()


def _modern_key(key: str) -> str:
    """Weight-norm parameters saved through torch's parametrizations API -> the weight_g / weight_v names."""
    return key.replace("parametrizations.weight.original0", "weight_g").replace(
        "parametrizations.weight.original1", "weight_v")


def save_pruned_checkpoint(path: str | Path, model: PrunableWav2Vec2, metadata: Optional[Mapping[str, Any]] = None,
                           distill_linear_projs: Optional[Mapping[str, Tensor]] = None, overwrite: bool = False) -> Path:
    """Writes ``model`` atomically; an existing file is an error unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path}: exists; refusing to overwrite a finished result")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": model.arch.to_checkpoint_dict(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "robustdistiller": {"num_params": num_params(model), **dict(metadata or {})},
    }
    if distill_linear_projs:
        payload["distill_linear_projs"] = {k: v.detach().cpu() for k, v in distill_linear_projs.items()}
    atomic_torch_save(payload, path)
    return path


def load_pruned_checkpoint(path: str | Path) -> PrunedCheckpoint:
    """Reads our or a DPHuBERT-format pruned checkpoint with ``weights_only=True``; bad files name themselves."""
    return pruned_checkpoint_from_dict(load_torch_file(path), str(path))


def is_pruned_checkpoint(ckpt: Any) -> bool:
    """True for a loaded checkpoint in the DPHuBERT layout."""
    return isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict) and "state_dict" in ckpt


def pruned_checkpoint_from_dict(ckpt: Any, source: str) -> PrunedCheckpoint:
    if not is_pruned_checkpoint(ckpt):
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{source}: not a DPHuBERT-layout pruned checkpoint (needs 'config' and "
                              f"'state_dict'); found {found}")
    return PrunedCheckpoint(
        arch=arch_from_checkpoint_dict(ckpt["config"], source),
        state_dict=dict(ckpt["state_dict"]),
        metadata=dict(ckpt.get("robustdistiller", {})),
        distill_linear_projs=dict(ckpt.get("distill_linear_projs", {})),
        source=source,
    )


def pruned_summary(ckpt: PrunedCheckpoint) -> dict[str, Any]:
    """Plain-data description: per-layer kept heads and FFN units, CNN channels, parameter count."""
    model = ckpt.build_model()
    arch = model.arch
    layers = []
    for i in range(arch.encoder_num_layers):
        layers.append({
            "layer": i + 1,
            "heads": arch.heads(i) if arch.encoder_use_attention[i] else 0,
            "total_heads": arch.encoder_total_num_heads[i] if arch.is_wavlm else None,
            "ffn_units": arch.encoder_ff_interm_features[i] if arch.encoder_use_feed_forward[i] else 0,
        })
    meta = ckpt.metadata
    original = meta.get("original_num_params")
    return {
        "path": ckpt.source,
        "format": "robustdistiller-pruned" if meta else "dphubert",
        "style": "WavLM" if arch.is_wavlm else "HuBERT",
        "parameters": num_params(model),
        "sparsity": (1 - num_params(model) / original) if original else None,
        "conv_channels": [c for c, _, _ in arch.extractor_conv_layer_config],
        "encoder_embed_dim": arch.encoder_embed_dim,
        "layers": layers,
        "downsample_rate": model.downsample_rate,
        "metadata": {k: v for k, v in meta.items() if k not in ("recipe", "num_params")},
    }


def format_pruned_summary(info: dict[str, Any]) -> str:
    lines = [
        f"{info['path']}  ({info['format']} format, pruned {info['style']}-style model)",
        f"  parameters: {info['parameters'] / 1e6:.2f}M ({info['parameters']:,})"
        + (f", sparsity {info['sparsity']:.3f} of the teacher" if info["sparsity"] is not None else ""),
        f"  CNN channels: {info['conv_channels']} (downsample x{info['downsample_rate']})",
        f"  transformer: {len(info['layers'])} layers x {info['encoder_embed_dim']}-d",
        "  layer  heads  ffn_units",
    ]
    for layer in info["layers"]:
        heads = f"{layer['heads']}/{layer['total_heads']}" if layer["total_heads"] else str(layer["heads"])
        lines.append(f"  {layer['layer']:>5}  {heads:>5}  {layer['ffn_units']:>9}")
    for key, value in info["metadata"].items():
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)


def describe_pruned_checkpoint(path: str | Path) -> str:
    """``robustdistiller info`` text for a pruned checkpoint."""
    return format_pruned_summary(pruned_summary(load_pruned_checkpoint(path)))
