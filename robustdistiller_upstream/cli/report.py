"""``robustdistiller report``: SUPERB sweep results -> task x condition tables (CSV, Markdown) and plots (PNG)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.superb.configs import config_dir
from robustdistiller_upstream.superb.report import collect, read_reference, write_report
from robustdistiller_upstream.superb.results import read_results

HELP = "tables (csv, md) and plots (png) of SUPERB sweep results (run_superb.sh), vs clean and across upstreams"

log = logging.getLogger("robustdistiller.report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("expdirs", nargs="+", help="sweep folders (exp/superb/TAG) or their parent; several "
                                                   "upstreams are compared in the plots")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--reference", default=None, help="reference points of the overall score "
                                                          "(default: downstream_configs/superb_reference.yaml)")


def run(args: argparse.Namespace) -> int:
    expdirs = [Path(p) for p in args.expdirs]
    missing = [str(p) for p in expdirs if not p.is_dir()]
    if missing:
        raise ConfigError(f"not a folder: {', '.join(missing)}")
    cells = collect(read_results(expdirs))
    if not cells:
        raise ConfigError(f"no result.json under {', '.join(map(str, expdirs))} (run run_superb.sh first)")
    reference = read_reference(Path(args.reference) if args.reference else config_dir() / "superb_reference.yaml")
    for path in write_report(cells, reference, Path(args.out)):
        log.info("wrote %s", path)
    return 0
