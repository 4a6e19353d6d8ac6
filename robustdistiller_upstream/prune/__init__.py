"""RD-DPWavLM: structured pruning of WavLM/HuBERT by joint distillation (DPHuBERT, Peng et al. 2023) with the
RobustDistiller recipe.

- ``hardconcrete``: the gates; ``arch``: the architecture config (DPHuBERT's checkpoint ``config``);
- ``model``: ``PrunableWav2Vec2``, gated or dense; ``convert``: teacher checkpoints (s3prl formats) -> model;
- ``params``: expected parameter count; ``sparsity``: the Lagrangian controller;
- ``export``: gated -> smaller dense model; ``checkpoint``: DPHuBERT-layout files; ``train``: both stages.
"""

from robustdistiller_upstream.prune.arch import ArchConfig
from robustdistiller_upstream.prune.checkpoint import (
    PrunedCheckpoint,
    describe_pruned_checkpoint,
    load_pruned_checkpoint,
    save_pruned_checkpoint,
)
from robustdistiller_upstream.prune.convert import model_from_teacher
from robustdistiller_upstream.prune.export import export_pruned
from robustdistiller_upstream.prune.hardconcrete import HardConcrete
from robustdistiller_upstream.prune.model import PrunableWav2Vec2
from robustdistiller_upstream.prune.params import expected_num_params, num_params

__all__ = [
    "ArchConfig",
    "HardConcrete",
    "PrunableWav2Vec2",
    "PrunedCheckpoint",
    "describe_pruned_checkpoint",
    "expected_num_params",
    "export_pruned",
    "load_pruned_checkpoint",
    "model_from_teacher",
    "num_params",
    "save_pruned_checkpoint",
]
