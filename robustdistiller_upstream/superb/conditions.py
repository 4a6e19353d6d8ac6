"""Condition copies of a task's test data, made once with ``robustdistiller contaminate`` and shared by upstreams.

Layout under ``<cond_root>/<TASK>/<CONDITION>/``:

- ``view/``: links to the clean test files of the task (only when the test data is part of a larger folder);
- ``out/``: the contaminated copy (``robustdistiller contaminate`` output, resumable, seeded per file);
- ``root/``: what the expert reads: the clean folder with the test parts replaced by their contaminated copies
  (links everywhere else, so train/dev data and side files stay the clean originals);
- ``ready.json``: written last; a folder without it is finished by the next run.

Builders of one folder (two sweeps, two cluster jobs) take its lock (``locks.py``): one builds, the others
wait and find it ready; a builder killed mid-way leaves partial output the next one resumes (and no stale lock).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from robustdistiller_upstream.locks import exclusive
from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.files import write_json_atomic

log = logging.getLogger(__name__)

CLEAN = "clean"
READY = "ready.json"


@dataclass(frozen=True)
class EvalCondition:
    """A named test condition: its ``robustdistiller contaminate`` spec and seed."""

    name: str
    spec: str
    seed: int

    @property
    def is_clean(self) -> bool:
        return self.spec.strip() == CLEAN


def _link_view(clean_root: Path, parts: list[str], view: Path) -> None:
    """``view/<part>`` links to every file of each part (a file or a folder of ``clean_root``)."""
    if view.exists():
        shutil.rmtree(view)
    for part in parts:
        source = clean_root / part
        if not source.exists():
            raise ConfigError(f"{source}: test data listed for the condition copy is missing")
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        for file in files:
            target = view / file.relative_to(clean_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(file.resolve())


def _overlay(clean_root: Path, contaminated: Path, parts: set[str], dst: Path) -> None:
    """``dst`` mirrors ``clean_root``: entries in ``parts`` link into ``contaminated``, folders on the way to a
    part are real folders, everything else links to the clean original."""
    ancestors = {Path(p).parents[i].as_posix() for p in parts for i in range(len(Path(p).parents) - 1)}
    stack = [""]
    while stack:
        rel = stack.pop()
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for entry in sorted(os.listdir(clean_root / rel)):
            entry_rel = f"{rel}/{entry}" if rel else entry
            if entry_rel in parts:
                (dst / entry_rel).symlink_to((contaminated / entry_rel).resolve())
            elif entry_rel in ancestors:
                stack.append(entry_rel)
            else:
                (dst / entry_rel).symlink_to((clean_root / entry_rel).resolve())


def _check_inside(root: Path, copy: Path, parts: list[str]) -> None:
    """Every part of the evaluated ``root`` resolves inside the contaminated ``copy`` (a part not in normal form,
    ``test-clean/`` or ``./x``, would otherwise be contaminated in ``out/`` while ``root`` links the clean
    original)."""
    inside = copy.resolve()
    for part in parts:
        target = (root / part).resolve()
        if not target.is_relative_to(inside):
            raise ConfigError(f"{root}: test part {part!r} resolves to {target}, outside the condition copy {inside}: "
                              f"the evaluation would read clean audio; name the part in normal form (no trailing "
                              f"'/', no './' or '..')")


def build_condition(
    task: str,
    condition: EvalCondition,
    clean_root: Path,
    parts: list[str],
    cond_root: Path,
    conditions_file: Path,
    env: Mapping[str, str],
    workers: int = 1,
) -> Path:
    """The folder to give the expert for ``condition`` (``clean_root`` itself for the clean condition).

    ``parts``: test files/folders relative to ``clean_root`` (``["."]``: all of it). Built once (cached by
    ``ready.json``), resumed when interrupted, refused when the cached folder holds another spec or seed, or when a
    part of the returned folder does not resolve inside the contaminated copy.
    """
    if condition.is_clean:
        return clean_root
    folder = cond_root / task / condition.name
    identity = {"task": task, "spec": condition.spec, "seed": condition.seed, "src": str(clean_root.resolve()),
                "parts": parts}
    whole = parts == ["."]
    root = folder / ("out" if whole else "root")
    # several sweeps (and their cluster jobs) share the copies: the first builds, the others wait for ready.json
    with exclusive(folder / ".lock", f"condition copy {task}/{condition.name}"):
        ready = folder / READY
        if ready.is_file():
            built = json.loads(ready.read_text())
            if built != identity:
                other = (f"{built['spec']!r} seed {built['seed']} from {built['src']}, not {condition.spec!r} seed "
                         f"{condition.seed} from {clean_root}" if built.get("parts") == parts else
                         f"{len(built.get('parts') or [])} other test parts, not these {len(parts)}")
                raise ConfigError(f"{folder}: built for {other}; remove it or rename the condition")
            _check_inside(root, folder / "out", parts)
            return root
        if whole:
            src = clean_root
        else:
            src = folder / "view"
            _link_view(clean_root, parts, src)
        command = [sys.executable, "-m", "robustdistiller_upstream.cli", "contaminate", "--src", str(src),
                   "--dst", str(folder / "out"), "--conditions", str(conditions_file), "--name", condition.name,
                   "--workers", str(workers)]
        log.info("building %s/%s (%s): %s", task, condition.name, condition.spec, " ".join(command))
        with open(folder / "contaminate.log", "a") as out:
            out.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")  # one line per build
            out.flush()
            result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=dict(env))
        if result.returncode != 0:
            raise RuntimeError(f"robustdistiller contaminate failed for {task}/{condition.name} "
                               f"(exit {result.returncode}); see {folder / 'contaminate.log'}")
        if not whole:
            if root.exists():
                shutil.rmtree(root)
            _overlay(clean_root, folder / "out", set(parts), root)
        _check_inside(root, folder / "out", parts)
        write_json_atomic(ready, identity)
    return root
