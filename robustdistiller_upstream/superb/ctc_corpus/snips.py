"""SF's reader (``ctc`` expert, corpus ``snips``): Audio SNIPS ``<split>/<Speaker>-snips-<split>-<n>.wav`` labelled
by ``all.iob.snips.txt`` (``UID BOS WORDS EOS<TAB>O SLOTS INTENT``; ``all-trans.txt`` for a tokenizer without
slots), kept when the utterance id starts with one of the split's speakers (``<split>_speakers``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.superb.ctc_corpus.buckets import BucketedLabels, read_keyed_lines

log = logging.getLogger(__name__)


class SnipsDataset(BucketedLabels):
    """Labels of the ``*.wav`` files under ``path/<split>`` spoken by the split's speakers."""

    def __init__(self, split: Sequence[str], tokenizer: Any, bucket_size: int, path: str, ascending: bool = False,
                 **kwargs: Any) -> None:
        key = f"{split if isinstance(split, str) else split[0]}_speakers"
        if key not in kwargs:
            raise ConfigError(f"downstream_expert.corpus.{key} missing (the speakers of split {split})")
        speakers = list(kwargs[key])
        name = "all.iob.snips.txt" if "-slot" in tokenizer.token_type else "all-trans.txt"
        transcripts = read_keyed_lines(Path(path, name))
        files = []
        for part in split:
            kept, unlabelled = [], []
            for file in Path(path, part).rglob("*.wav"):
                uid = file.name.split(".wav", 1)[0]
                if uid not in transcripts:
                    unlabelled.append(file)
                elif any(uid.startswith(speaker) for speaker in speakers):
                    kept.append(file)
            if unlabelled:
                log.warning("snips %s: %d files without a line in %s, e.g. %s", part, len(unlabelled), name,
                            unlabelled[0])
            if not kept:
                raise ConfigError(f"no .wav files of speakers {speakers} under {Path(path, part)}")
            log.info("snips %s: %d utterances of the speakers %s", part, len(kept), speakers)
            files += kept
        labels = [tokenizer.encode(transcripts[f.name.split(".wav", 1)[0]]) for f in files]
        super().__init__(files, labels, bucket_size, ascending)
