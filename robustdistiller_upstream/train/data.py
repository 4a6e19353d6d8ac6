"""Pretraining corpus: LibriSpeech layouts and (path, length) CSV manifests, length-bucketed batches, random crops.

Batches are a pure function of (seed, epoch, position), so a resumed run reads exactly the batches an
uninterrupted run would; every rank of a DDP run takes every ``world_size``-th batch. Unreadable files are
skipped and counted (``Batch.skipped``).
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from robustdistiller_upstream.audio import audio_info, read_audio, resample
from robustdistiller_upstream.errors import AudioError, ConfigError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000


@dataclass
class DataConfig:
    """``librispeech_root`` + ``subsets`` and/or ``manifests`` (CSV with ``path,length`` columns; relative paths
    are relative to the CSV). Lengths and ``sequence_length`` (the random crop) in samples at 16 kHz; utterances
    shorter than ``min_length`` are left out. ``batch_size`` utterances per rank and micro-step, or, with
    ``batch_seconds`` > 0, as many utterances of similar length as hold at most ``batch_seconds`` of audio
    (counted at their cropped lengths; ``batch_size`` is then unused): DPHuBERT's
    ``BucketizeBatchSampler(max_token_count=seconds_per_batch * 16000)``."""

    librispeech_root: Optional[str] = None
    subsets: list[str] = field(default_factory=lambda: ["train-clean-100", "train-clean-360", "train-other-500"])
    manifests: list[str] = field(default_factory=list)
    sequence_length: int = 250000
    min_length: int = 16000
    batch_size: int = 24
    batch_seconds: float = 0.0
    num_workers: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_seconds < 0 or self.batch_size < 1:
            raise ConfigError(f"data.batch_seconds must be >= 0 and data.batch_size >= 1, got "
                              f"{self.batch_seconds} and {self.batch_size}")


@dataclass
class Utterance:
    path: str
    length: int  # samples


def librispeech_files(root: str | Path, subsets: Sequence[str]) -> list[Path]:
    """``<root>/<subset>/<speaker>/<chapter>/*.flac`` of each subset, sorted; a missing subset is an error."""
    root = Path(root).expanduser()
    files = []
    for subset in subsets:
        folder = root / subset
        if not folder.is_dir():
            raise ConfigError(f"data.subsets: {folder} does not exist (data.librispeech_root={root})")
        files.extend(sorted(folder.glob("*/*/*.flac")))
    if not files:
        raise ConfigError(f"data.librispeech_root: no */*/*.flac under {root} for subsets {list(subsets)}")
    return files


def measure(files: Sequence[Path]) -> tuple[list[Utterance], list[str]]:
    """Lengths from the headers; returns (utterances, unreadable paths)."""
    utterances, bad = [], []
    for path in files:
        try:
            frames, rate, _ = audio_info(path)
        except AudioError as exc:
            logger.warning("skipping %s", exc)
            bad.append(str(path))
            continue
        utterances.append(Utterance(str(path), frames * SAMPLE_RATE // rate))
    return utterances, bad


def write_manifest(utterances: Sequence[Utterance], path: str | Path) -> Path:
    """Writes a ``path,length`` CSV atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "length"])
        writer.writerows((u.path, u.length) for u in utterances)
    tmp.replace(path)
    return path


def read_manifest(path: str | Path) -> list[Utterance]:
    path = Path(path).expanduser()
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ConfigError(f"data.manifests: {path} does not exist") from None
    out = []
    for line, row in enumerate(rows, start=2):
        try:
            audio = Path(row["path"])
            out.append(Utterance(str(audio if audio.is_absolute() else path.parent / audio), int(row["length"])))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}:{line}: expected columns path,length with an integer length") from None
    return out


def load_corpus(config: DataConfig) -> tuple[list[Utterance], int]:
    """All utterances of the config's manifests and LibriSpeech subsets, at least ``min_length`` long, and the
    number of files left out because their header is unreadable."""
    utterances: list[Utterance] = []
    unreadable: list[str] = []
    for manifest in config.manifests:
        utterances.extend(read_manifest(manifest))
    if config.librispeech_root:
        found, unreadable = measure(librispeech_files(config.librispeech_root, config.subsets))
        utterances.extend(found)
    if not config.manifests and not config.librispeech_root:
        raise ConfigError("data: set data.manifests or data.librispeech_root")
    kept = [u for u in utterances if u.length >= config.min_length]
    if not kept:
        raise ConfigError(f"data: no utterance of at least data.min_length={config.min_length} samples")
    return kept, len(unreadable)


def bucketed_batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int,
                     max_samples: int = 0) -> list[list[int]]:
    """Batches of similar length: sort by (cropped) length with a seeded tie shuffle, cut into batches of
    ``batch_size`` or, with ``max_samples`` > 0, into runs whose lengths sum to at most ``max_samples`` (an
    utterance longer than that alone), shuffle the batch order. Deterministic in (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    lengths = np.asarray(lengths)
    sorting = np.lexsort((rng.permutation(len(lengths)), lengths))
    order = sorting.tolist()
    if max_samples <= 0:
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    else:
        # the lengths in sorted order: the loop reads them one after the other, not scattered over the corpus (a
        # random read per utterance made a corpus of 281k utterances cost 3x more per utterance than one of 28k)
        batches, start, total = [], 0, 0
        for position, length in enumerate(lengths[sorting].tolist()):
            if position > start and total + length > max_samples:
                batches.append(order[start:position])
                start, total = position, 0
            total += length
        batches += [order[start:]] if order else []
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass
class Batch:
    wav: torch.Tensor  # (batch, samples) float32, zero-padded
    lengths: torch.Tensor  # (batch,) long, valid samples
    paths: list[str]
    skipped: int  # unreadable files left out of this batch


class CropDataset(Dataset):
    """Reads utterance ``index`` cropped at random to ``sequence_length`` samples; items are (index, crop seed)."""

    def __init__(self, utterances: Sequence[Utterance], sequence_length: int) -> None:
        self.utterances = list(utterances)
        self.sequence_length = sequence_length

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, item: tuple[int, int]) -> Optional[tuple[np.ndarray, str]]:
        index, crop_seed = item
        utt = self.utterances[index]
        try:
            frames, rate, _ = audio_info(utt.path)
            want = int(np.ceil(self.sequence_length * rate / SAMPLE_RATE))
            start = int(np.random.default_rng(crop_seed).integers(frames - want + 1)) if frames > want else 0
            audio, rate = read_audio(utt.path, start, min(want, frames))
            if audio.ndim == 2:
                audio = audio.mean(axis=1)
            if rate != SAMPLE_RATE:
                audio = resample(audio, rate, SAMPLE_RATE)
            if audio.size == 0 or not np.isfinite(audio).all():
                raise AudioError(f"{utt.path}: empty or not finite")
        except AudioError as exc:
            logger.warning("skipping unreadable corpus file: %s", exc)
            return None
        return audio[: self.sequence_length].astype(np.float32, copy=False), utt.path


def collate(items: list[Optional[tuple[np.ndarray, str]]]) -> Batch:
    good = [item for item in items if item is not None]
    lengths = torch.tensor([len(a) for a, _ in good], dtype=torch.long)
    wav = torch.zeros(len(good), int(lengths.max()) if good else 0)
    for row, (audio, _) in enumerate(good):
        wav[row, : len(audio)] = torch.from_numpy(audio)
    return Batch(wav, lengths, [p for _, p in good], len(items) - len(good))


class BatchStream:
    """Endless batches for one rank, resumable at (epoch, position): ``position`` counts this rank's batches."""

    def __init__(self, config: DataConfig, utterances: Sequence[Utterance], rank: int = 0, world_size: int = 1) -> None:
        self.config = config
        self.dataset = CropDataset(utterances, config.sequence_length)
        self.cropped = [min(u.length, config.sequence_length) for u in utterances]
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position = 0, 0
        if len(self._epoch_batches(0)) == 0:
            size = f"{config.batch_seconds} s" if config.batch_seconds > 0 else str(config.batch_size)
            raise ConfigError(f"data: {len(utterances)} utterances give no batch of {size} for each of {world_size} "
                              "ranks")

    def _epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        batches = bucketed_batches(self.cropped, self.config.batch_size, self.config.seed, epoch,
                                   int(self.config.batch_seconds * SAMPLE_RATE))
        usable = len(batches) - len(batches) % self.world_size  # equal batch counts on every rank
        mine = batches[self.rank : usable : self.world_size]
        seeds = np.random.default_rng([self.config.seed, epoch, 1]).integers(2**62, size=len(self.cropped))
        return [[(i, int(seeds[i])) for i in batch] for batch in mine]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def __iter__(self) -> Iterator[Batch]:
        while True:
            batches = self._epoch_batches(self.epoch)
            loader = DataLoader(
                self.dataset,
                batch_sampler=batches[self.position :],
                collate_fn=collate,
                num_workers=self.config.num_workers,
                generator=torch.Generator().manual_seed(self.epoch),  # keeps the global RNG untouched
                persistent_workers=False,
            )
            for batch in loader:
                self.position += 1
                yield batch
            self.epoch, self.position = self.epoch + 1, 0
