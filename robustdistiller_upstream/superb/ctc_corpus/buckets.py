"""The dataset shape the stock ctc expert expects from a corpus reader (s3prl ``ctc/data.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

from torch.utils.data import Dataset

Item = tuple[Path, list[int]]


def read_keyed_lines(file: Path) -> dict[str, str]:
    """``{first word: the rest of the line}`` of a ``KEY TEXT`` file (LibriSpeech ``.trans.txt``, SNIPS' label
    files)."""
    rows = (line.strip().split(" ", 1) for line in file.read_text().splitlines() if line.strip())
    return {row[0]: row[1] if len(row) > 1 else "" for row in rows}


class BucketedLabels(Dataset):
    """``(audio path, token ids)`` pairs sorted by label length, longest first (stable), as s3prl's readers sort.

    ``bucket_size > 1`` (training with bucketing): item ``i`` is the window of ``bucket_size`` pairs starting at
    ``i`` (moved back so it ends at the last pair); otherwise one pair.
    """

    def __init__(self, files: Sequence[Path], labels: Sequence[list[int]], bucket_size: int, ascending: bool) -> None:
        order = sorted(range(len(files)), key=lambda i: len(labels[i]), reverse=not ascending)
        self.file_list = [files[i] for i in order]
        self.text = [labels[i] for i in order]
        self.bucket_size = bucket_size

    def __getitem__(self, index: int) -> Union[Item, list[Item]]:
        if self.bucket_size > 1:
            index = min(len(self.file_list) - self.bucket_size, index)
            return list(zip(self.file_list[index:index + self.bucket_size], self.text[index:index + self.bucket_size]))
        return self.file_list[index], self.text[index]

    def __len__(self) -> int:
        return len(self.file_list)
