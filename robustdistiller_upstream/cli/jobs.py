"""``robustdistiller jobs DIR``: the runs of a sweep (``exp/superb/TAG``) or a training run (``exp/NAME``) and their
jobs: queued, running, done, failed, with job ids and log paths."""

from __future__ import annotations

import argparse

HELP = "show the jobs of a sweep or training folder: queued, running, done, failed, with log paths"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a sweep's EXP_ROOT/TAG or a training run's EXP_ROOT/NAME")


def run(args: argparse.Namespace) -> int:
    from robustdistiller_upstream.cluster.state import read_state, table

    path, state = read_state(args.folder)
    print(f"{path} ({state.get('launcher', 'local')} launcher)")
    print(table(state))
    return 0
