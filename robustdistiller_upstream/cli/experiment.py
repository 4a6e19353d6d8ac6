"""Arguments and recipe loading shared by the training subcommands (``pretrain``, ``prune``), which run here or
as a SLURM job (``cluster.jobs``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Type, TypeVar

from robustdistiller_upstream.cluster.slurm import add_launcher_arguments

T = TypeVar("T")


def add_experiment_arguments(parser: argparse.ArgumentParser, recipe_hint: str) -> None:
    """``-c RECIPE -n NAME -o key=value --exp-root DIR --resume --launcher L --slurm key=value --dry-run``."""
    parser.add_argument("-c", "--config", help=f"recipe YAML ({recipe_hint}); with --resume, default: the saved one")
    parser.add_argument("-n", "--name", required=True, help="experiment name: results go to EXP_ROOT/NAME")
    parser.add_argument("-o", "--override", action="append", default=[],
                        help="key=value[,key=value] overrides of the recipe, e.g. teacher.ckpt=/ckpt/WavLM-Base+.pt")
    parser.add_argument("--exp-root", default="exp", help="folder of experiment folders (default: exp)")
    parser.add_argument("--resume", action="store_true", help="continue NAME from its newest resume state")
    add_launcher_arguments(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="with --launcher slurm: print the sbatch script and exit without submitting")


def load_experiment(args: argparse.Namespace, config_class: Type[T]) -> tuple[T, Path]:
    """The recipe (``-c``, or the experiment's saved ``config.yaml`` with ``--resume``) with ``-o`` applied."""
    from robustdistiller_upstream.config import load_config
    from robustdistiller_upstream.errors import ConfigError

    exp_dir = Path(args.exp_root) / args.name
    recipe = args.config
    if recipe is None:
        if not args.resume:
            raise ConfigError(f"{args.command}: -c RECIPE.yaml is required (or --resume an existing experiment)")
        recipe = exp_dir / "config.yaml"
    return load_config(config_class, recipe, args.override), exp_dir
