"""``robustdistiller prune -c pretrain/rd_dpwavlm.yaml -n NAME [-o key=value ...] [--resume]``: RD-DPWavLM."""

from __future__ import annotations

import argparse

from robustdistiller_upstream.cli.experiment import add_experiment_arguments, load_experiment

HELP = "prune a WavLM/HuBERT teacher by joint distillation + structured pruning (RD-DPWavLM)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, "pretrain/rd_dpwavlm.yaml")


def run(args: argparse.Namespace) -> int:
    from robustdistiller_upstream.cluster.jobs import TrainingJob, launch_training
    from robustdistiller_upstream.prune.train import PruneConfig, PruneRecipe

    config, exp_dir = load_experiment(args, PruneConfig)
    return launch_training(TrainingJob("prune", PruneRecipe, config, exp_dir, args.resume), args)
