"""The log format of every entry point (the CLI, ``run_superb.sh``, a cluster job)."""

from __future__ import annotations

import logging


def setup_logging(verbose: bool) -> None:
    """INFO (DEBUG with ``verbose``) to stderr, one timestamped line per record; a no-op where a handler is set."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
