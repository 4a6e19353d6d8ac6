"""Condition copies of dataset trees: every audio file of ``src`` contaminated into the same place under ``dst``.

Relative paths, names, format, subtype, sample rate, channels and length are kept; other files are copied
unchanged; Kaldi ``wav.scp`` files are rewritten to point at the contaminated copies (audio they name outside
``src`` is contaminated into ``dst/_external/``; ``cmd |`` pipe entries are run only when allowed).
Each file's transform is seeded by its relative path, so outputs do not depend on worker count or order.

State lives in ``dst/.robustdistiller/``: ``condition.json`` (what is being made) and ``manifest.jsonl`` (one
line per finished audio file, written after the file's atomic rename). A rerun skips what the manifest lists.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from robustdistiller_upstream.audio import (
    audio_subtype,
    is_audio_path,
    read_audio,
    resample,
    write_audio_atomic,
)
from robustdistiller_upstream.augment.contaminator import Contaminator
from robustdistiller_upstream.errors import AudioError, ConfigError
from robustdistiller_upstream.files import (
    atomic_output,
    read_jsonl,
    remove_stale_temporaries,
    write_jsonl_atomic,
    write_text_atomic,
)

log = logging.getLogger(__name__)

META_DIR = ".robustdistiller"
MANIFEST = "manifest.jsonl"
STATE = "condition.json"
EXTERNAL_DIR = "_external"
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE"}


@dataclass(frozen=True)
class AudioJob:
    """One audio file to contaminate: ``source`` (a path, or a shell command ending in ``|`` that writes
    audio to stdout) -> ``dst/rel``; ``utt_id`` seeds its transform."""

    rel: str
    source: str
    utt_id: str


@dataclass
class TreePlan:
    """What a tree needs: audio jobs, plain copies (relative paths) and rewritten ``wav.scp`` texts."""

    jobs: list[AudioJob]
    copies: list[str]
    scp_texts: dict[str, str]


def check_dirs(src: str | Path, dst: str | Path) -> tuple[Path, Path]:
    """Resolved (src, dst); refuses a missing src, dst equal to or inside src, and src inside dst."""
    src_path, dst_path = Path(src).resolve(), Path(dst).resolve()
    if not src_path.is_dir():
        raise ConfigError(f"--src {src}: not a directory")
    if dst_path == src_path or src_path in dst_path.parents:
        raise ConfigError(f"--dst {dst} is {src} or inside it; the source must stay untouched")
    if dst_path in src_path.parents:
        raise ConfigError(f"--src {src} is inside --dst {dst}; outputs could overwrite the source")
    return src_path, dst_path


def _walk(src: Path) -> Iterator[str]:
    """Relative paths of the files below ``src``, sorted, through linked folders (each real folder once)."""
    seen = set()
    for folder, dirs, files in os.walk(src, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link cycle or a second link to the same folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if d != META_DIR)
        for name in sorted(files):
            yield (Path(folder) / name).relative_to(src).as_posix()


def _external_rel(key: str, name: str) -> str:
    return f"{EXTERNAL_DIR}/{hashlib.sha1(key.encode()).hexdigest()[:12]}/{name}"


def _resolve_scp_path(rx: str, scp: Path, src: Path) -> Path | None:
    """The absolute path (links kept, so a file under ``src`` stays under it) of a wav.scp entry: as is, or
    relative to the working directory, the wav.scp folder or ``src``."""
    path = Path(rx)
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, scp.parent / path, src / path]
    return next((Path(os.path.abspath(c)) for c in candidates if c.is_file()), None)


def plan_tree(src: Path, dst: Path, run_pipes: bool = False) -> TreePlan:
    """Lists ``src``: audio jobs (tree files first, then audio named by ``wav.scp`` outside it), copies and
    the rewritten ``wav.scp`` texts (absolute paths into ``dst``)."""
    jobs: dict[str, AudioJob] = {}
    copies, scps = [], []
    for rel in _walk(src):
        if is_audio_path(rel):
            jobs[rel] = AudioJob(rel, str(src / rel), rel)
        elif Path(rel).name == "wav.scp":
            scps.append(rel)
        else:
            copies.append(rel)
    scp_texts = {}
    for rel in scps:
        scp = src / rel
        lines = []
        for number, line in enumerate(scp.read_text().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.strip().split(None, 1)
            if len(fields) != 2:
                raise AudioError(f"{scp}:{number}: expected 'RECORDING_ID PATH', got {line!r}")
            rec, rx = fields
            where = f"{scp}:{number}"
            if rx.endswith("|"):
                if not run_pipes:
                    raise AudioError(f"{where}: pipe entry {rx!r}; pass --run-pipes to run such commands")
                job = AudioJob(_external_rel(rx, f"{rec}.wav"), rx, rx)
            else:
                path = _resolve_scp_path(rx, scp, src)
                if path is None:
                    raise AudioError(f"{where}: audio file {rx!r} not found")
                if not is_audio_path(path):
                    raise AudioError(f"{where}: {rx!r} is not an audio file we can write (wav/flac/ogg/...)")
                if src in path.parents:
                    job = AudioJob(path.relative_to(src).as_posix(), str(path), path.relative_to(src).as_posix())
                else:
                    job = AudioJob(_external_rel(str(path), path.name), str(path), str(path))
            jobs.setdefault(job.rel, job)
            lines.append(f"{rec} {dst / job.rel}\n")
        scp_texts[rel] = "".join(lines)
    return TreePlan(list(jobs.values()), copies, scp_texts)


def _read_source(source: str) -> tuple[np.ndarray, int, str]:
    """(audio (frames, channels), rate, subtype) of a file or of a pipe command's stdout."""
    if source.endswith("|"):
        result = subprocess.run(source[:-1], shell=True, capture_output=True)
        if result.returncode != 0:
            raise AudioError(f"pipe {source!r} failed: {result.stderr.decode(errors='replace').strip()}")
        try:
            with sf.SoundFile(io.BytesIO(result.stdout)) as f:
                subtype, rate = f.subtype, f.samplerate
                audio = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"pipe {source!r}: output is not audio ({exc})") from None
        return audio, rate, subtype
    subtype = audio_subtype(source)
    audio, rate = read_audio(source)
    return (audio if audio.ndim == 2 else audio[:, None]), rate, subtype


def contaminate_file(contaminator: Contaminator, job: AudioJob, dst: Path) -> dict[str, Any]:
    """Contaminates one file into ``dst/job.rel`` (same rate, length, channels, subtype); returns its
    manifest row. All channels get the same transform. Audio not at the bank rate is resampled there and back;
    integer formats are scaled down (``output_gain`` < 1) rather than clipped."""
    audio, rate, subtype = _read_source(job.source)
    frames, channels = audio.shape
    bank_rate = contaminator.sample_rate
    x = torch.from_numpy(np.ascontiguousarray(resample(audio, rate, bank_rate).T))
    record = contaminator.plan([x.shape[1]], utt_ids=[job.utt_id])[0]
    out, records = contaminator.apply(x, torch.full((channels,), x.shape[1]), [record] * channels)
    y = resample(out.numpy().T, bank_rate, rate)[:frames]
    if len(y) < frames:
        y = np.pad(y, ((0, frames - len(y)), (0, 0)))
    peak = float(np.abs(y).max(initial=0.0))
    gain = 0.999 / peak if peak >= 1.0 and subtype not in _FLOAT_SUBTYPES else 1.0
    y = y * gain
    write_audio_atomic(dst / job.rel, y[:, 0] if channels == 1 else y, rate, subtype)
    return {
        "path": job.rel,
        "source": job.source,
        "frames": frames,
        "sample_rate": rate,
        "channels": channels,
        "output_gain": gain,
        "transforms": [r.to_dict() for r in records],
    }


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """Rows by output path; a torn last line (killed mid-write) is dropped."""
    return {row["path"]: row for row in read_jsonl(path) if "path" in row}


def _open_state(dst: Path, state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Checks ``dst`` holds nothing or an earlier run of the same condition; returns its finished rows."""
    meta = dst / META_DIR
    if (meta / STATE).exists():
        previous = json.loads((meta / STATE).read_text())
        if {k: previous.get(k) for k in state} != state:
            raise ConfigError(f"--dst {dst} holds another condition ({previous.get('spec')!r}, seed "
                              f"{previous.get('seed')}, src {previous.get('src')}); choose another --dst")
    elif dst.exists() and any(dst.iterdir()):
        raise ConfigError(f"--dst {dst} exists and is not a contamination output; refusing to write into it")
    meta.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dst)  # left by a killed run
    write_text_atomic(meta / STATE, json.dumps({**state, "complete": False}, indent=1) + "\n")
    rows = read_manifest(meta / MANIFEST)
    write_jsonl_atomic(meta / MANIFEST, list(rows.values()))
    return rows


_WORKER: dict[str, Any] = {}


def _init_worker(contaminator: Contaminator, dst: Path) -> None:
    torch.set_num_threads(1)
    _WORKER.update(contaminator=contaminator, dst=dst)


def _work(job: AudioJob) -> dict[str, Any]:
    return contaminate_file(_WORKER["contaminator"], job, _WORKER["dst"])


def contaminate_tree(
    src: str | Path,
    dst: str | Path,
    contaminator: Contaminator,
    state: dict[str, Any],
    workers: int = 1,
    run_pipes: bool = False,
) -> dict[str, int]:
    """Makes (or finishes) the condition copy of ``src`` in ``dst``. ``state`` (JSON-able: spec, seed, ...)
    identifies the condition; a ``dst`` made with another state is refused. Returns counts of audio files
    written, skipped as finished, files copied and ``wav.scp`` files rewritten."""
    src_path, dst_path = check_dirs(src, dst)
    plan = plan_tree(src_path, dst_path, run_pipes)
    done = _open_state(dst_path, {**state, "src": str(src_path)})
    for rel in plan.copies:
        source, target = src_path / rel, dst_path / rel
        if not target.exists() or target.stat().st_size != source.stat().st_size:
            with atomic_output(target) as tmp:
                shutil.copy2(source, tmp)
    todo = [job for job in plan.jobs if job.rel not in done or not (dst_path / job.rel).exists()]
    log.info("%d audio files: %d finished earlier, %d to do", len(plan.jobs), len(plan.jobs) - len(todo), len(todo))
    with open(dst_path / META_DIR / MANIFEST, "a") as manifest, tqdm(total=len(todo), unit="file") as bar:
        for row in _run_jobs(todo, contaminator, dst_path, workers):
            manifest.write(json.dumps(row) + "\n")
            manifest.flush()
            bar.update()
    for rel, text in plan.scp_texts.items():
        write_text_atomic(dst_path / rel, text)
    write_text_atomic(dst_path / META_DIR / STATE,
                       json.dumps({**state, "src": str(src_path), "complete": True}, indent=1) + "\n")
    return {"written": len(todo), "skipped": len(plan.jobs) - len(todo), "copied": len(plan.copies),
            "wav_scp": len(plan.scp_texts)}


def _run_jobs(jobs: Sequence[AudioJob], contaminator: Contaminator, dst: Path, workers: int) -> Iterator[dict]:
    if workers <= 1 or len(jobs) <= 1:
        # one thread, as in the workers: float reductions, hence output bytes, do not depend on the worker count
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for job in jobs:
                yield contaminate_file(contaminator, job, dst)
        finally:
            torch.set_num_threads(threads)
        return
    # fork shares the decoded banks with the workers copy-on-write instead of pickling them
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, _init_worker, (contaminator, dst)) as pool:
        yield from pool.imap_unordered(_work, jobs, chunksize=4)
