"""Atomic file writes (text, JSON, JSON lines): a reader never sees half a file, and an interrupted write leaves
nothing behind."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

logger = logging.getLogger(__name__)


_TEMP_SUFFIX = ".tmp"


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` to write; renames it onto ``path`` when the block succeeds and
    removes it when it fails, so ``path`` is never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Writes ``text`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Writes ``data`` as JSON (indented, keys sorted) to ``path`` through :func:`atomic_output`."""
    return write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def remove_stale_temporaries(root: str | Path) -> int:
    """Deletes the temporary files that :func:`atomic_output` leaves when its process is killed (SIGKILL skips
    the clean-up) anywhere below ``root``; for resuming into a folder only our writers write to. Returns the count."""
    stale = [p for p in Path(root).rglob(f".*{_TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink()
    return len(stale)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log; a line a killed writer cut short is dropped (with a warning)."""
    records = []
    path = Path(path)
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s: dropping an incomplete line", path)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def write_jsonl_atomic(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """Rewrites a JSON-lines log through :func:`atomic_output`."""
    return write_text_atomic(path, "".join(json.dumps(record) + "\n" for record in records))
