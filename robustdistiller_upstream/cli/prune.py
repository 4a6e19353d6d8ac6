"""``robustdistiller prune -c pretrain/rd_dpwavlm.yaml -n NAME [-o key=value ...] [--resume]``: RD-DPWavLM."""

from __future__ import annotations

import argparse

from robustdistiller_upstream.cli.experiment import add_experiment_arguments, load_experiment

HELP = "prune a WavLM/HuBERT teacher by joint distillation + structured pruning (RD-DPWavLM)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, "pretrain/rd_dpwavlm.yaml")


def run(args: argparse.Namespace) -> int:
    from robustdistiller_upstream.prune.train import PruneConfig, prune_and_distill

    config, exp_dir = load_experiment(args, PruneConfig)
    prune_and_distill(config, exp_dir, resume=args.resume)
    return 0
