"""``robustdistiller pretrain -c RECIPE.yaml -n NAME [-o key=value ...] [--resume]`` (also under torchrun, or
``--launcher slurm --slurm nodes=2,gpus_per_node=8,...``: README "On a cluster")."""

from __future__ import annotations

import argparse

from robustdistiller_upstream.cli.experiment import add_experiment_arguments, load_experiment

HELP = "pretrain a student by (robust) distillation from an s3prl teacher"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, "pretrain/*.yaml")


def run(args: argparse.Namespace) -> int:
    from robustdistiller_upstream.cluster.jobs import TrainingJob, launch_training
    from robustdistiller_upstream.train.config import PretrainConfig
    from robustdistiller_upstream.train.recipe import PretrainRecipe

    config, exp_dir = load_experiment(args, PretrainConfig)
    return launch_training(TrainingJob("pretrain", PretrainRecipe, config, exp_dir, args.resume), args)
