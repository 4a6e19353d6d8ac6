"""Student configuration: the DistilHuBERT shape (DESIGN 1), every size configurable.

The dataclass round-trips through s3prl's ``Config['distiller']`` dict (the DistilHuBERT checkpoint format), so our
checkpoints load in stock s3prl ``distiller_local`` and stock checkpoints load here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from robustdistiller_upstream.errors import CheckpointError

ConvSpec = tuple[int, int, int]  # (channels, kernel, stride)

DEFAULT_CONV_LAYERS: list[ConvSpec] = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


@dataclass
class StudentConfig:
    """DistilHuBERT-shaped student. Defaults: the RobustDistiller student (23.5M parameters without heads)."""

    extractor_conv_layers: list[ConvSpec] = field(default_factory=lambda: list(DEFAULT_CONV_LAYERS))
    extractor_mode: Literal["default", "layer_norm"] = "default"  #: default: group norm on the first conv only
    extractor_dropout: float = 0.0
    feature_grad_mult: float = 0.1
    conv_pos: int = 128
    conv_pos_groups: int = 16
    encoder_layers: int = 2
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    layer_norm_first: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.1
    pred_layer_id: list[int] = field(default_factory=lambda: [4, 8, 12])  #: teacher layers predicted by the heads
    final_dim: int = 768  #: width of each prediction head (the teacher's width)
    out_layer_inter_dim: int = -1  #: -1: encoder_embed_dim

    def __post_init__(self) -> None:
        self.extractor_conv_layers = [tuple(int(v) for v in spec) for spec in self.extractor_conv_layers]
        if not self.extractor_conv_layers or any(len(s) != 3 or min(s) < 1 for s in self.extractor_conv_layers):
            raise ValueError(f"extractor_conv_layers must be (channels, kernel, stride) triples: {self.extractor_conv_layers}")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            raise ValueError(
                f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by "
                f"encoder_attention_heads {self.encoder_attention_heads}"
            )
        if self.encoder_embed_dim % self.conv_pos_groups:
            raise ValueError(f"encoder_embed_dim {self.encoder_embed_dim} is not divisible by conv_pos_groups {self.conv_pos_groups}")
        if self.encoder_layers < 1:
            raise ValueError("encoder_layers must be >= 1")

    @property
    def extractor_dim(self) -> int:
        return self.extractor_conv_layers[-1][0]

    @property
    def downsample_rate(self) -> int:
        rate = 1
        for _, _, stride in self.extractor_conv_layers:
            rate *= stride
        return rate

    @property
    def n_pred(self) -> int:
        return len(self.pred_layer_id)

    @property
    def inter_dim(self) -> int:
        return self.out_layer_inter_dim if self.out_layer_inter_dim > 0 else self.encoder_embed_dim

    def to_s3prl(self) -> dict[str, Any]:
        """The ``Config['distiller']`` dict that stock s3prl's ``DistillerConfig`` reads."""
        layers = " + ".join(f"[({c},{k},{s})]" for c, k, s in self.extractor_conv_layers)
        return {
            "extractor_mode": self.extractor_mode,
            "extractor_conv_feature_layers": layers,
            "extractor_dropout": self.extractor_dropout,
            "feature_grad_mult": self.feature_grad_mult,
            "conv_pos": self.conv_pos,
            "conv_pos_groups": self.conv_pos_groups,
            "encoder_layers": self.encoder_layers,
            "encoder_embed_dim": self.encoder_embed_dim,
            "encoder_ffn_embed_dim": self.encoder_ffn_embed_dim,
            "encoder_attention_heads": self.encoder_attention_heads,
            "activation_fn": "gelu",
            "layer_norm_first": self.layer_norm_first,
            "attention_type": "original",
            "dropout": self.dropout,
            "attention_dropout": self.attention_dropout,
            "activation_dropout": self.activation_dropout,
            "encoder_layerdrop": 0.0,
            "final_dim": self.final_dim,
            "out_layer_type": "expand-last",
            "out_layer_inter_dim": self.out_layer_inter_dim,
            "n_tasks": self.n_pred,
            "task_emb_type": "expand-last",
            "pred_layer_id": list(self.pred_layer_id),
        }

    @classmethod
    def from_s3prl(cls, distiller: Mapping[str, Any], source: str = "<config>") -> "StudentConfig":
        """Reads s3prl's ``Config['distiller']``; options this model does not implement are refused by name."""
        get = distiller.get
        unsupported = {
            "activation_fn": ("gelu",),
            "attention_type": ("original",),
            "task_emb_type": ("expand-last",),
            "out_layer_type": ("expand-last",),
        }
        for key, allowed in unsupported.items():
            value = str(get(key, allowed[0]))
            if value not in allowed:
                raise CheckpointError(f"{source}: Config.distiller.{key}={value!r} is not supported (only {allowed})")
        layers = _parse_conv_layers(
            str(get("extractor_conv_feature_layers", "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2")), source
        )
        n_tasks = int(get("n_tasks", 12))
        pred_layer_id = [int(v) for v in get("pred_layer_id", range(1, n_tasks + 1))]
        if len(pred_layer_id) != n_tasks:
            raise CheckpointError(f"{source}: Config.distiller.pred_layer_id has {len(pred_layer_id)} entries, n_tasks={n_tasks}")
        try:
            return cls(
                extractor_conv_layers=layers,
                extractor_mode=str(get("extractor_mode", "default")),  # type: ignore[arg-type]
                extractor_dropout=float(get("extractor_dropout", 0.0)),
                feature_grad_mult=float(get("feature_grad_mult", 1.0)),
                conv_pos=int(get("conv_pos", 128)),
                conv_pos_groups=int(get("conv_pos_groups", 16)),
                encoder_layers=int(get("encoder_layers", 1)),
                encoder_embed_dim=int(get("encoder_embed_dim", 768)),
                encoder_ffn_embed_dim=int(get("encoder_ffn_embed_dim", 3072)),
                encoder_attention_heads=int(get("encoder_attention_heads", 12)),
                layer_norm_first=_as_bool(get("layer_norm_first", False)),
                dropout=float(get("dropout", 0.1)),
                attention_dropout=float(get("attention_dropout", 0.1)),
                activation_dropout=float(get("activation_dropout", 0.1)),
                pred_layer_id=pred_layer_id,
                final_dim=int(get("final_dim", 768)),
                out_layer_inter_dim=int(get("out_layer_inter_dim", -1)),
            )
        except ValueError as exc:
            raise CheckpointError(f"{source}: Config.distiller: {exc}") from None


def _as_bool(value: Any) -> bool:
    # s3prl configs sometimes carry booleans as strings ("True")
    return value.strip().lower() in ("1", "true", "yes") if isinstance(value, str) else bool(value)


def _parse_conv_layers(spec: str, source: str) -> list[ConvSpec]:
    """Parses s3prl's ``"[(512,10,5)] + [(512,3,2)] * 4"`` without ``eval``: only list literals, ``+`` and ``* int``."""

    def value(node: ast.AST) -> list:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            left, right = (node.left, node.right) if isinstance(node.right, ast.Constant) else (node.right, node.left)
            if not (isinstance(right, ast.Constant) and isinstance(right.value, int)):
                raise ValueError("a list may only be multiplied by an integer")
            return value(left) * right.value
        literal = ast.literal_eval(node)
        if not isinstance(literal, list):
            raise ValueError("expected a list of (channels, kernel, stride)")
        return literal

    try:
        layers = value(ast.parse(spec, mode="eval").body)
        return [tuple(int(v) for v in item) for item in layers]  # type: ignore[misc]
    except (ValueError, SyntaxError, TypeError) as exc:
        raise CheckpointError(f"{source}: cannot parse extractor_conv_feature_layers {spec!r} ({exc})") from None
