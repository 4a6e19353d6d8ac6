"""What each SUPERB evaluation read: the sweep run under ``strace``, the audio files each evaluate runner opened.

Audio is opened in C (libsndfile, torchaudio's sox, the ``sox`` program of a ``wav.scp`` pipe), out of sight of
Python's audit hooks; ``strace -f -y`` sees every ``open``/``openat`` of the sweep's process tree with the opened
file's real path. A runner is told apart by its ``execve`` (``superb.launch -m evaluate``, the run folder named by its
``args.expdir`` override or ``-p``), and owns every process and thread it starts.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from system_packages import strace_works

STRACE = ["strace", "-f", "-qq", "-y", "--seccomp-bpf", "-e", "signal=none", "-e", "status=successful",
          "-e", "trace=openat,open,execve,clone,clone3,fork,vfork", "-s", "8192"]
AUDIO = (".wav", ".flac")

_CHILD = re.compile(r"^(clone3?|v?fork)\(.*\) = (\d+)$")
# the run folder: the args.expdir override of an evaluation of a checkpoint, else -p (QbE)
_EVALUATE = re.compile(r'^execve\(.*"robustdistiller_upstream\.superb\.launch", "-m", "evaluate"'
                       r'.*(?:args\.expdir=([^",]+)|"-p", "([^"]+)")')
_OPENED = re.compile(r"^open(?:at)?\(.*\) = \d+<(.*)>$")


TRACE = "strace.txt"  # in the sweep's results root


def traced(command: list[str], exp: Path) -> list[str]:
    """``command`` (a sweep writing under ``exp``) under strace where it works, its trace in ``exp/TRACE``."""
    return [*STRACE, "-o", str(exp / TRACE), *command] if strace_works() else command


def evaluation_reads(trace: Path) -> dict[Path, set[Path]]:
    """``{run folder: real paths of the audio files its evaluate runner (and the processes it started) opened}``."""
    parent: dict[str, str] = {}
    runner: dict[str, Path] = {}
    opened: list[tuple[str, Path]] = []
    for line in trace.read_text(errors="replace").splitlines():
        pid, _, call = line.partition(" ")
        call = call.strip()
        if match := _CHILD.match(call):
            parent[match.group(2)] = pid
        elif match := _EVALUATE.match(call):
            runner[pid] = Path(match.group(1) or match.group(2))
        elif (match := _OPENED.match(call)) and match.group(1).endswith(AUDIO):
            opened.append((pid, Path(match.group(1))))
    reads: dict[Path, set[Path]] = defaultdict(set)
    for pid, path in opened:
        while pid in parent and pid not in runner:
            pid = parent[pid]
        if pid in runner:
            reads[runner[pid]].add(path)
    return reads


def copy_files(cond_root: Path, label: str, condition: str) -> tuple[set[Path], set[Path]]:
    """(contaminated files, their clean originals) of the condition copy ``<cond_root>/<label>/<condition>/``,
    from the manifest ``robustdistiller contaminate`` wrote (real paths)."""
    out = cond_root / label / condition / "out"
    rows = [json.loads(line) for line in (out / ".robustdistiller" / "manifest.jsonl").read_text().splitlines()]
    assert rows, f"{out}: empty condition copy"
    return {(out / r["path"]).resolve() for r in rows}, {Path(r["source"]).resolve() for r in rows}


def assert_reads(exp: Path, tag: str, label: str, noisy: str, evaluated: tuple[str, ...],
                 cond_root: Path | None = None) -> None:
    """In the traced sweep of ``exp`` (results ``exp/<tag>/``, copies in ``cond_root``, by default
    ``exp/_conditions/``), each of the ``evaluated`` conditions of ``label``: a contaminated one opened every
    contaminated file of its condition copy and none of their clean originals; ``clean`` opened every clean test
    file of the ``noisy`` copy and none of its contaminated files."""
    reads = evaluation_reads(exp / TRACE)
    cond_root = cond_root or exp / "_conditions"
    for condition in evaluated:
        contaminated, originals = copy_files(cond_root, label, noisy if condition == "clean" else condition)
        opened = reads[exp / tag / label / condition]
        wanted, unwanted = (originals, contaminated) if condition == "clean" else (contaminated, originals)
        assert opened, f"{label}/{condition}: its evaluation opened no audio (traced: {sorted(reads)})"
        assert not opened & unwanted, f"{label}/{condition} opened {sorted(opened & unwanted)[:3]}"
        assert wanted <= opened, f"{label}/{condition} did not open {sorted(wanted - opened)[:3]}"
