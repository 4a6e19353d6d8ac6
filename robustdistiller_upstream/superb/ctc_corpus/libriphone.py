"""PR's reader (``ctc`` expert, corpus ``libriphone``): LibriSpeech ``<split>/SPK/CH/SPK-CH-NNNN.flac`` with the
chapter's ``SPK-CH.trans.txt``, words turned into phonemes by the lexicon files (``WORD<TAB>PH PH ...``; the
first pronunciation of a word wins, as in s3prl)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.superb.ctc_corpus.buckets import BucketedLabels, read_keyed_lines

log = logging.getLogger(__name__)


def read_lexicon(files: Sequence[str], phonemes: set[str]) -> dict[str, list[str]]:
    """``{WORD: [phoneme, ...]}``; a phoneme outside ``phonemes`` (the vocabulary) is an error naming the line."""
    lexicon: dict[str, list[str]] = {}
    for file in files:
        with open(file) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                word, *pron = line.split()
                unknown = [p for p in pron if p not in phonemes]
                if unknown:
                    raise ConfigError(f"{file}:{number}: phonemes {unknown} of {word!r} are not in the vocabulary")
                lexicon.setdefault(word, pron)
    return lexicon


class LibriPhoneDataset(BucketedLabels):
    """Phoneme labels of every ``*.flac`` under ``path/<split>`` for the splits in ``split``."""

    def __init__(self, split: Sequence[str], tokenizer: Any, bucket_size: int, path: str, lexicon: Sequence[str],
                 ascending: bool = False, **_: Any) -> None:
        word2phonemes = read_lexicon(lexicon, set(tokenizer._vocab2idx))
        files, labels = [], []
        chapters: dict[Path, dict[str, str]] = {}
        for name in split:
            found = list(Path(path, name).rglob("*.flac"))
            if not found:
                raise ConfigError(f"no .flac files under {Path(path, name)} (LibriSpeech layout expected)")
            for file in found:
                chapter = file.with_name(file.stem.rsplit("-", 1)[0] + ".trans.txt")
                if chapter not in chapters:
                    chapters[chapter] = read_keyed_lines(chapter) if chapter.is_file() else {}
                if file.stem not in chapters[chapter]:
                    raise ConfigError(f"{file}: no transcript line {file.stem!r} in {chapter}")
                words = chapters[chapter][file.stem].split()
                missing = sorted({w for w in words if w not in word2phonemes})
                if missing:
                    raise ConfigError(f"{file}: words {missing} are not in the lexicon {list(lexicon)}")
                files.append(file)
                labels.append(tokenizer.encode(" ".join(p for w in words for p in word2phonemes[w])))
        log.info("libriphone %s: %d utterances", list(split), len(files))
        super().__init__(files, labels, bucket_size, ascending)
