"""The ``robustdistiller`` command: one subcommand per module in this package.

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Run as ``robustdistiller SUB ...`` or ``python -m robustdistiller_upstream.cli SUB ...`` (torchrun).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from robustdistiller_upstream.version import __version__
from robustdistiller_upstream.log_setup import setup_logging

# subcommand name -> module under robustdistiller_upstream.cli
SUBCOMMANDS = {
    "contaminate": "contaminate",
    "demo": "demo",
    "export": "export",
    "info": "info",
    "jobs": "jobs",
    "prepare-librispeech": "prepare_librispeech",
    "pretrain": "pretrain",
    "prune": "prune",
    "report": "report",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustdistiller", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"robustdistiller {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"robustdistiller_upstream.cli.{module_name}")
        sub_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        logging.getLogger("robustdistiller").error("interrupted")
        return 130
    except Exception as exc:  # one clear line for expected user errors; a traceback with -v
        from robustdistiller_upstream.errors import UserError

        if isinstance(exc, UserError) and not args.verbose:
            logging.getLogger("robustdistiller").error("%s", exc)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
