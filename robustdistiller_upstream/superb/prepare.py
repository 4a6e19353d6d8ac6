"""Task data files the PyPI s3prl lacks but that follow from the dataset itself (DESIGN 5).

ASR (``asr`` expert) needs ``len_for_bucket/<split>.csv`` (s3prl's ``preprocess/generate_len_for_bucket.py``:
``file_path`` relative to the LibriSpeech root, ``length`` in samples) and a fairseq character dictionary
(``char.dict``: ``CHAR COUNT`` lines, most frequent first, ``|`` for the word boundary). When the configured files
do not exist they are derived from the LibriSpeech tree into a cache folder and the config is pointed there.
"""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from robustdistiller_upstream.audio import audio_info
from robustdistiller_upstream.errors import ConfigError

log = logging.getLogger(__name__)


def write_bucket_csv(libri_root: Path, split: str, path: Path) -> int:
    """``path``: ``file_path,length`` of every ``<split>/**/*.flac`` under ``libri_root``; returns the row count."""
    files = sorted((libri_root / split).rglob("*.flac"))
    if not files:
        raise ConfigError(f"{libri_root / split}: no .flac files (LibriSpeech layout expected)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file_path", "length"])
        for file in tqdm(files, desc=f"lengths of {split}", unit="file"):
            writer.writerow([file.relative_to(libri_root).as_posix(), audio_info(file)[0]])
    tmp.replace(path)
    return len(files)


def char_counts(libri_root: Path, splits: list[str]) -> Counter:
    """Character counts of the transcripts (upper case, ``|`` between and after words, as the asr expert
    tokenises them)."""
    counts: Counter = Counter()
    for split in splits:
        for trans in sorted((libri_root / split).rglob("*.trans.txt")):
            for line in trans.read_text().splitlines():
                words = line.split()[1:]
                counts.update("|".join(words).upper() + "|")
    if not counts:
        raise ConfigError(f"{libri_root}: no *.trans.txt under {splits}")
    return counts


def prepare_asr(config: dict[str, Any], cache: Path) -> None:
    """Fills ``datarc.bucket_file`` / ``datarc.dict_path`` of an ``asr`` config with derived files when the
    configured ones are missing (``cache``: where to write them; reused when present)."""
    datarc = config["downstream_expert"]["datarc"]
    libri_root = Path(datarc["libri_root"])
    keys = ("train", "dev-clean", "dev-other", "test-clean", "test-other")
    splits = [split for key in keys for split in datarc.get(key, [])]
    if not Path(datarc["bucket_file"]).is_dir():
        buckets = cache / "len_for_bucket"
        for split in dict.fromkeys(splits):
            if not (buckets / f"{split}.csv").is_file() and (libri_root / split).is_dir():
                log.info("ASR: %d lengths of %s -> %s", write_bucket_csv(libri_root, split, buckets / f"{split}.csv"),
                         split, buckets)
        datarc["bucket_file"] = str(buckets)
    if not Path(datarc.get("dict_path", "")).is_file():
        path = cache / "char.dict"
        if not path.is_file():
            counts = char_counts(libri_root, list(datarc["train"]))
            tmp = path.with_suffix(".tmp")
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            tmp.write_text("".join(f"{char} {n}\n" for char, n in ranked))
            tmp.replace(path)
        datarc["dict_path"] = str(path)
