"""``robustdistiller prepare-librispeech --root LibriSpeech --out data/libri960.csv``: a (path, length) manifest."""

from __future__ import annotations

import argparse
import logging

HELP = "write a path,length CSV of LibriSpeech subsets (for length bucketing in pretraining)"

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="the LibriSpeech folder (holding train-clean-100 ...)")
    parser.add_argument("--out", required=True, help="CSV to write (path,length in samples at 16 kHz)")
    parser.add_argument("--subsets", nargs="+", default=["train-clean-100", "train-clean-360", "train-other-500"],
                        help="subset folders to include (default: the 960 h training set)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from robustdistiller_upstream.train.data import librispeech_files, measure, write_manifest

    files = librispeech_files(args.root, args.subsets)
    utterances, bad = measure(tqdm(files, desc="reading headers", unit="file"))
    write_manifest(utterances, args.out)
    hours = sum(u.length for u in utterances) / 16000 / 3600
    logger.info("%s: %d utterances, %.1f h; %d unreadable file(s) left out", args.out, len(utterances), hours, len(bad))
    return 0
