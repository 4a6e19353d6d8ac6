"""Locks on a shared filesystem, so that concurrent builders (two sweeps, two SLURM jobs, two threads) make a
cached thing once: the second waits, then finds it finished.

The lock is ``filelock``'s (an ``fcntl`` lock, a lock file elsewhere): the kernel releases it when its holder
dies, so a builder killed mid-way leaves no stale lock, only its partial output for the next holder to resume.
(``filelock`` comes with torch; the ``cluster`` extra names it.) Users: the noise/RIR bank cache
(``augment/banks.py``) and the sweep's condition copies (``superb/conditions.py``).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


@contextmanager
def exclusive(path: str | Path, what: str = "") -> Iterator[None]:
    """Holds the lock file ``path`` (created with its folder) for the block; waits while another process or
    thread holds it, with one log line saying for what (``what``, default the path)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not thread-local and not a singleton: each caller its own lock, so threads of one process exclude each other
    lock = FileLock(str(path), thread_local=False, preserve_lock_file=True)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for %s (another process is building it)", what or path)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def exclusive_if_possible(path: str | Path, what: str = "") -> Iterator[None]:
    """:func:`exclusive`, or no lock (one warning) where the lock file cannot be made, e.g. a read-only cache
    folder that its readers only read."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).touch()
    except OSError as exc:
        log.warning("cannot lock %s (%s): going on without the lock", path, exc)
        yield
        return
    with exclusive(path, what):
        yield
