"""``robustdistiller info CKPT``: what a checkpoint holds (architecture, parameter counts, training metadata)."""

from __future__ import annotations

import argparse
import json

from robustdistiller_upstream.checkpoint import StudentCheckpoint, load_torch_file, student_checkpoint_from_dict

HELP = "describe a student checkpoint: config, parameter counts, training metadata (pruned ones: per-layer sizes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ckpt", help="checkpoint file (ours, s3prl DistilHuBERT format, or a DPHuBERT-layout pruned model)")
    parser.add_argument("--trust-checkpoint", action="store_true", help="allow pickled objects (only for trusted files)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def describe_student(checkpoint: StudentCheckpoint) -> dict:
    model = checkpoint.build_model()
    config = checkpoint.config
    return {
        "path": str(checkpoint.path),
        "format": "robustdistiller" if checkpoint.metadata else "s3prl-distiller",
        "parameters": model.num_parameters(include_heads=False),
        "parameters_with_heads": model.num_parameters(include_heads=True),
        "encoder_layers": config.encoder_layers,
        "encoder_embed_dim": config.encoder_embed_dim,
        "encoder_ffn_embed_dim": config.encoder_ffn_embed_dim,
        "encoder_attention_heads": config.encoder_attention_heads,
        "extractor_conv_layers": [list(spec) for spec in config.extractor_conv_layers],
        "predicted_teacher_layers": list(config.pred_layer_id),
        "prediction_dim": config.final_dim,
        "downsample_rate": config.downsample_rate,
        "metadata": checkpoint.metadata,
    }


def run(args: argparse.Namespace) -> int:
    from robustdistiller_upstream.prune.checkpoint import (
        format_pruned_summary,
        is_pruned_checkpoint,
        pruned_checkpoint_from_dict,
        pruned_summary,
    )

    raw = load_torch_file(args.ckpt, args.trust_checkpoint)
    if is_pruned_checkpoint(raw):  # RD-DPWavLM / DPHuBERT layout: per-layer kept heads and units
        pruned = pruned_summary(pruned_checkpoint_from_dict(raw, args.ckpt))
        print(json.dumps(pruned, indent=2, default=str) if args.json else format_pruned_summary(pruned))
        return 0
    info = describe_student(student_checkpoint_from_dict(raw, args.ckpt))
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{info['path']}  ({info['format']} format)")
    print(f"  parameters: {info['parameters'] / 1e6:.2f}M ({info['parameters_with_heads'] / 1e6:.2f}M with prediction heads)")
    print(
        f"  transformer: {info['encoder_layers']} layers x {info['encoder_embed_dim']}-d, "
        f"FFN {info['encoder_ffn_embed_dim']}, {info['encoder_attention_heads']} heads"
    )
    print(f"  CNN: {info['extractor_conv_layers']} (downsample x{info['downsample_rate']})")
    print(f"  prediction heads: teacher layers {info['predicted_teacher_layers']} at {info['prediction_dim']}-d")
    for key, value in info["metadata"].items():
        print(f"  {key}: {json.dumps(value, default=str) if isinstance(value, (dict, list)) else value}")
    return 0
