"""Noise and RIR banks: corpus layouts -> a cached index of usable files -> audio at the bank's rate.

Every file is checked once (header, then a full decode for NaN/silence) and the verdict is cached in
``<cache_dir>/<source hash>.json`` keyed by path, size and mtime. Bad files (``unreadable``, ``empty``,
``silent``, ``nan``, ``wrong-rate`` (below the bank's rate, unless ``skip_low_rate`` is off), ``too-short``) are
skipped with one warning each and
counted in ``bank.skipped``; a bank left with no file is an ``AudioError`` at construction.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass
from itertools import accumulate
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from robustdistiller_upstream.audio import AUDIO_SUFFIXES, audio_info, read_audio, resample
from robustdistiller_upstream.files import atomic_output
from robustdistiller_upstream.augment.config import BankConfig, NoiseSourceConfig, RirSourceConfig
from robustdistiller_upstream.augment.rooms import simulate_rir
from robustdistiller_upstream.locks import exclusive_if_possible
from robustdistiller_upstream.errors import AudioError

log = logging.getLogger(__name__)

# Peak below which a file counts as silent (about -120 dBFS).
_SILENCE_PEAK = 1e-6
# Decode this many frames at a time when checking a file, so huge files need little memory.
_CHECK_BLOCK = 1 << 20


@dataclass(frozen=True)
class IndexEntry:
    """One indexed file: header facts and the check's verdict (``"ok"`` or a bad-file kind)."""

    path: str
    frames: int
    sample_rate: int
    channels: int
    status: str


def _expand(path: str) -> Path:
    """``$VAR``/``${VAR}`` and ``~`` expanded."""
    return Path(os.path.expandvars(path)).expanduser()


def _audio_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise AudioError(f"{root}: bank folder not found")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def noise_files(source: NoiseSourceConfig) -> list[Path]:
    """The audio files of one noise source in its layout (see ``NoiseSourceConfig``)."""
    root = _expand(source.path)
    if source.kind == "musan":
        return [f for subset in source.subsets for f in _audio_files(root / subset)]
    if source.kind == "urbansound8k":
        table = root / "metadata" / "UrbanSound8K.csv"
        if not table.is_file():
            raise AudioError(f"{table}: UrbanSound8K metadata not found (path must be the UrbanSound8K folder)")
        excluded = set(source.exclude_classes)
        with table.open(newline="") as f:
            rows = list(csv.DictReader(f))
        missing = {"slice_file_name", "fold", "class"} - set(rows[0] if rows else {})
        if missing:
            raise AudioError(f"{table}: columns {sorted(missing)} missing")
        return [
            root / "audio" / f"fold{row['fold']}" / row["slice_file_name"]
            for row in rows
            if row["class"] not in excluded
        ]
    return _audio_files(root)


def rir_files(source: RirSourceConfig) -> list[Path]:
    """The RIR files of one RIR source in its layout (see ``RirSourceConfig``)."""
    root = _expand(source.path)
    if source.kind != "slr28":
        return _audio_files(root)
    if (root / "RIRS_NOISES").is_dir():
        root = root / "RIRS_NOISES"
    if not source.rirs_only:  # the reference's glob(SLR28/**/*.wav)
        return [f for f in _audio_files(root) if f.suffix.lower() == ".wav"]
    simulated = root / "simulated_rirs"
    real = root / "real_rirs_isotropic_noises"
    if not simulated.is_dir() and not real.is_dir():
        raise AudioError(f"{root}: not an SLR28 tree (no simulated_rirs/ or real_rirs_isotropic_noises/)")
    files = _audio_files(simulated) if simulated.is_dir() else []
    if real.is_dir():  # this folder mixes RIRs (RWCP, REVERB: *_rir_*; AIR: air_*) with isotropic noise recordings
        files += [f for f in _audio_files(real) if "_noise_" not in f.name]
    return files


def _check(path: Path, sample_rate: int, min_frames: int, skip_low_rate: bool) -> IndexEntry:
    """Header and full-decode checks of one file (block by block)."""
    try:
        frames, rate, channels = audio_info(path)
    except AudioError:
        return IndexEntry(str(path), 0, 0, 0, "unreadable")
    entry = dict(path=str(path), frames=frames, sample_rate=rate, channels=channels)
    if frames == 0:
        return IndexEntry(**entry, status="empty")
    if skip_low_rate and rate < sample_rate:
        return IndexEntry(**entry, status="wrong-rate")
    if frames * sample_rate < min_frames * rate:
        return IndexEntry(**entry, status="too-short")
    peak = 0.0
    try:
        for start in range(0, frames, _CHECK_BLOCK):
            block, _ = read_audio(path, start, min(_CHECK_BLOCK, frames - start))
            if not np.isfinite(block).all():
                return IndexEntry(**entry, status="nan")
            peak = max(peak, float(np.abs(block).max(initial=0.0)))
    except AudioError:
        return IndexEntry(**entry, status="unreadable")
    return IndexEntry(**entry, status="ok" if peak >= _SILENCE_PEAK else "silent")


def index_files(
    files: Sequence[Path], cache_dir: str | Path, sample_rate: int, min_frames: int, tag: str,
    skip_low_rate: bool = True,
) -> list[IndexEntry]:
    """Index entries of ``files``, reusing cached verdicts of unchanged files (same size and mtime)."""
    cache_dir = _expand(str(cache_dir))
    listing = "\n".join(map(str, files))
    key = hashlib.sha1(f"{tag}|{sample_rate}|{min_frames}|{skip_low_rate}|{listing}".encode()).hexdigest()[:16]
    cache_path = cache_dir / f"{tag}-{key}.json"
    # concurrent indexers of one cache (DDP ranks, runs or jobs sharing cache_dir) index once: the others wait and
    # read the cache
    with exclusive_if_possible(cache_path.with_name(f".{cache_path.name}.lock"), f"bank index {cache_path}"):
        return _index_with_cache(files, cache_path, sample_rate, min_frames, tag, skip_low_rate)


def _index_with_cache(files: Sequence[Path], cache_path: Path, sample_rate: int, min_frames: int, tag: str,
                      skip_low_rate: bool) -> list[IndexEntry]:
    try:
        cached = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cached = {}
    entries, fresh = [], {}
    for path in tqdm(files, desc=f"indexing {tag} files", unit="file", disable=len(files) < 500):
        try:
            stat = path.stat()
            stamp = [stat.st_size, stat.st_mtime_ns]
        except OSError:
            entries.append(IndexEntry(str(path), 0, 0, 0, "unreadable"))
            continue
        hit = cached.get(str(path))
        fresh_check = hit is None or hit["stamp"] != stamp
        entry = _check(path, sample_rate, min_frames, skip_low_rate) if fresh_check else IndexEntry(**hit["entry"])
        fresh[str(path)] = {"stamp": stamp, "entry": asdict(entry)}
        entries.append(entry)
    if fresh != cached:
        try:
            with atomic_output(cache_path) as tmp:
                tmp.write_text(json.dumps(fresh))
        except OSError as exc:
            log.warning("cannot write bank index cache %s (%s); indexing again next time", cache_path, exc)
    return entries


def _keep_good(entries: Iterable[IndexEntry], what: str) -> tuple[list[IndexEntry], Counter]:
    good, skipped = [], Counter()
    for entry in entries:
        if entry.status == "ok":
            good.append(entry)
        else:
            skipped[entry.status] += 1
            log.warning("%s bank: skipping %s (%s)", what, entry.path, entry.status)
    return good, skipped


class _Bank:
    """What noise and RIR banks share: item names (file paths or room names), rate, skipped-file counts."""

    what = "bank"

    def __init__(self, names: Sequence[str], sample_rate: int, skipped: Counter):
        if not names:
            raise AudioError(f"{self.what} bank is empty (skipped files: {dict(skipped) or 'none'})")
        self.names = list(names)
        self._position = {name: i for i, name in enumerate(self.names)}
        self.sample_rate = sample_rate
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.names)

    def index_of(self, name: str) -> int:
        """Position of the item ``name`` (as recorded in a transform record)."""
        try:
            return self._position[name]
        except KeyError:
            raise AudioError(f"{self.what} {name!r} is not in this bank") from None


class NoiseBank(_Bank):
    """Mono noises at ``sample_rate``, in memory (under the memory cap) or read from disk by segment.

    ``segment(i, offset, length, out)`` writes ``length`` samples of file ``i`` from ``offset`` (samples at the
    bank's rate), tiled when the file is shorter than ``length``, into ``out`` on any device. An in-memory bank
    keeps one copy of its audio on each device it is asked for (GPU memory: the bank's size, once), so
    segments are copied there on the device, never sent from the host at each batch. ``groups``: source name
    (``NoiseSourceConfig.name``, default its kind) -> positions of that source's files.
    """

    what = "noise"

    def __init__(self, entries: Sequence[IndexEntry], sample_rate: int, memory_cap_mb: float, skipped: Counter,
                 sources: dict[str, str] | None = None):
        super().__init__([e.path for e in entries], sample_rate, skipped)
        self.entries = list(entries)
        # source name -> positions of its files (``sources``: path -> source name; one source "" without)
        self.groups: dict[str, list[int]] = {}
        for i, e in enumerate(self.entries):
            self.groups.setdefault((sources or {}).get(e.path, ""), []).append(i)
        self.lengths = [int(e.frames * sample_rate // e.sample_rate) for e in self.entries]
        total_mb = 4 * sum(self.lengths) / 2**20
        self.in_memory = total_mb <= memory_cap_mb
        self._audio: list[torch.Tensor] = []
        self._on_device: dict[torch.device, torch.Tensor] = {}  # device -> all files end to end
        if self.in_memory:
            loading = tqdm(self.entries, desc="loading noises", unit="file", disable=len(self.entries) < 500)
            self._audio = [torch.from_numpy(self._decode(e)) for e in loading]
            self.lengths = [len(a) for a in self._audio]
            self._starts = list(accumulate(self.lengths, initial=0))  # of each file in a device copy
        log.info(
            "noise bank: %d files, %.1f h, %s (%.0f MB); skipped %s",
            len(self), sum(self.lengths) / sample_rate / 3600,
            "in memory" if self.in_memory else "read by segment", total_mb, dict(skipped) or "none",
        )

    @classmethod
    def from_config(cls, config: BankConfig) -> "NoiseBank":
        """All noise sources of ``config`` as one bank."""
        sources: dict[str, str] = {}
        for source in config.noises:
            for f in noise_files(source):
                sources.setdefault(str(f), source.name or source.kind)
        files = [Path(f) for f in sources]
        if not files:
            raise AudioError(f"noise bank: no audio files under {[s.path for s in config.noises]}")
        min_frames = int(config.min_noise_seconds * config.sample_rate)
        entries = index_files(files, config.cache_dir, config.sample_rate, min_frames, "noise", config.skip_low_rate)
        good, skipped = _keep_good(entries, "noise")
        return cls(good, config.sample_rate, config.memory_cap_mb, skipped, sources)

    def _decode(self, entry: IndexEntry, start: int = 0, frames: int = -1) -> np.ndarray:
        audio, rate = read_audio(entry.path, start, frames)
        if audio.ndim > 1:
            audio = audio.mean(axis=1)
        return resample(audio, rate, self.sample_rate)

    def _in_memory(self, index: int, device: torch.device) -> torch.Tensor:
        """Float32 ``(lengths[index],)``: in-memory file ``index`` on ``device`` (copied there once)."""
        if device.type == "cpu":
            return self._audio[index]
        flat = self._on_device.get(device)
        if flat is None:
            flat = torch.empty(self._starts[-1], device=device)
            for start, audio in zip(self._starts, self._audio):
                flat[start : start + len(audio)].copy_(audio)
            self._on_device[device] = flat
        return flat[self._starts[index] : self._starts[index + 1]]

    def segment(self, index: int, offset: int, length: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Float32 ``(length,)`` of file ``index`` from sample ``offset``, wrapping around (tiling) as needed;
        written into ``out`` (on any device) when given, else a new CPU tensor."""
        out = torch.empty(length) if out is None else out
        offset %= self.lengths[index]
        if self.in_memory:
            audio = self._in_memory(index, out.device)
        else:
            entry = self.entries[index]
            audio = None
            if offset + length <= self.lengths[index]:  # read only the segment
                ratio = entry.sample_rate / self.sample_rate
                start = int(offset * ratio)
                piece = self._decode(entry, start, min(int(np.ceil(length * ratio)) + 64, entry.frames - start))
                if len(piece) >= length:
                    audio, offset = torch.from_numpy(piece), 0
            if audio is None:
                audio = torch.from_numpy(self._decode(entry))
        # on the host through numpy: a plain memcpy per piece, no thread-pool hand-off that stalls on a busy CPU
        dst, src = (out.numpy(), audio.numpy()) if out.device.type == "cpu" else (out, audio)
        filled = 0
        while filled < length:
            take = min(length - filled, len(audio) - offset)
            dst[filled : filled + take] = src[offset : offset + take]
            filled, offset = filled + take, 0
        return out


class RirBank(_Bank):
    """RIRs at ``sample_rate``, each ``(channels, samples)``; ``names`` identify them in records; ``longest``:
    the longest one's samples.

    Kept in memory when the files fit ``memory_cap_mb`` (float32 at the bank rate), else read from disk at each
    use (RIR files are small). Simulated rooms are named ``sim:rt60=<s>:room=<W>x<D>x<H>:seed=<n>``.
    """

    what = "RIR"

    def __init__(
        self, names: Sequence[str], rirs: Sequence[torch.Tensor | IndexEntry], sample_rate: int, skipped: Counter
    ):
        if len(names) != len(rirs):
            raise ValueError(f"{len(names)} names for {len(rirs)} RIRs")
        super().__init__(names, sample_rate, skipped)
        self.rirs = list(rirs)
        # resample_poly gives ceil(frames * rate / file rate) samples
        self.longest = max(-(-r.frames * sample_rate // r.sample_rate) if isinstance(r, IndexEntry) else r.shape[-1]
                           for r in self.rirs)
        on_disk = sum(isinstance(r, IndexEntry) for r in self.rirs)
        log.info("RIR bank: %d RIRs (%d read at each use); skipped %s", len(self), on_disk, dict(skipped) or "none")

    @classmethod
    def from_config(cls, config: BankConfig) -> "RirBank":
        """All RIR sources and simulated rooms of ``config`` as one bank."""
        names: list[str] = []
        rirs: list[torch.Tensor | IndexEntry] = []
        skipped: Counter = Counter()
        if config.rirs:
            files = [f for source in config.rirs for f in rir_files(source)]
            if not files:
                raise AudioError(f"RIR bank: no audio files under {[s.path for s in config.rirs]}")
            entries = index_files(files, config.cache_dir, config.sample_rate, 1, "rir", config.skip_low_rate)
            good, skipped = _keep_good(entries, "RIR")
            rate = config.sample_rate
            total_mb = 4 * sum(e.frames * e.channels * rate / e.sample_rate for e in good) / 2**20
            in_memory = total_mb <= config.memory_cap_mb
            for entry in tqdm(good, desc="loading RIRs", unit="file", disable=len(good) < 500 or not in_memory):
                names.append(entry.path)
                rirs.append(_decode_rir(entry, rate) if in_memory else entry)
        rooms = config.simulated_rooms
        rng = np.random.default_rng(rooms.seed)
        for i in range(rooms.n_rooms):
            rt60 = round(float(rng.uniform(*rooms.rt60)), 3)
            dims = tuple(round(float(rng.uniform(lo, hi)), 2) for lo, hi in zip(rooms.room_dim_min, rooms.room_dim_max))
            seed = rooms.seed * 100003 + i
            names.append(f"sim:rt60={rt60}:room={'x'.join(map(str, dims))}:seed={seed}")
            rirs.append(torch.from_numpy(simulate_rir(rt60, dims, config.sample_rate, seed))[None])
        if not config.rirs and not rooms.n_rooms:
            raise AudioError("RIR bank: no RIR source and simulated_rooms.n_rooms = 0")
        return cls(names, rirs, config.sample_rate, skipped)

    def channels(self, index: int) -> int:
        rir = self.rirs[index]
        return rir.channels if isinstance(rir, IndexEntry) else int(rir.shape[0])

    def get(self, index: int, channel: int) -> torch.Tensor:
        """Float32 ``(samples,)``: one channel of RIR ``index``."""
        rir = self.rirs[index]
        if isinstance(rir, IndexEntry):
            rir = _decode_rir(rir, self.sample_rate)
        return rir[channel]


def _decode_rir(entry: IndexEntry, sample_rate: int) -> torch.Tensor:
    """Float32 ``(channels, samples)`` of one RIR file at ``sample_rate``."""
    audio, rate = read_audio(entry.path)
    audio = resample(audio.reshape(len(audio), -1), rate, sample_rate)
    return torch.from_numpy(np.ascontiguousarray(audio.T))


def build_banks(config: BankConfig) -> tuple[NoiseBank | None, RirBank | None]:
    """The noise bank (None without noise sources) and RIR bank (None without RIR sources or rooms)."""
    noise = NoiseBank.from_config(config) if config.noises else None
    has_rirs = config.rirs or config.simulated_rooms.n_rooms
    return noise, RirBank.from_config(config) if has_rirs else None
