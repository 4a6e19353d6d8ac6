"""Where an export writes: a new file or folder appears whole at its path, and finished results are not replaced
unless the user forces it."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from robustdistiller_upstream.export.errors import ExportError


def refuse_existing(path: Path, force: bool) -> None:
    """An existing file, or a non-empty folder, at ``path`` is an error unless ``force``."""
    if force or not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    what = "folder is not empty" if path.is_dir() else "file exists"
    raise ExportError(f"{path}: {what}; refusing to overwrite it (pass --force to replace it)")


@contextmanager
def atomic_folder(path: Path, force: bool) -> Iterator[Path]:
    """Yields a temporary folder beside ``path`` to fill; on success it replaces ``path`` (an empty folder, or
    anything when ``force``), on failure it is removed and ``path`` is left as it was."""
    refuse_existing(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        _default_permissions(tmp)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _default_permissions(folder: Path) -> None:
    """mkdtemp makes a private folder (and some writers private files): give them the user's umask instead."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for item in folder.rglob("*"):
        item.chmod((0o777 if item.is_dir() else 0o666) & ~umask)
