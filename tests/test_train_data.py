"""Pretraining corpus: manifests, LibriSpeech layout, bucketing, crops, deterministic resumable streams."""

from __future__ import annotations

import numpy as np
import pytest

from pretrain_helpers import cli
from robustdistiller_upstream.audio import write_audio_atomic
from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.synthetic import write_librispeech
from robustdistiller_upstream.train.data import (
    BatchStream,
    DataConfig,
    bucketed_batches,
    load_corpus,
    read_manifest,
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "LibriSpeech"
    write_librispeech(root, ["train-clean-100"], n_speakers=2, n_utterances=3, use_espeak=False)
    bad = root / "train-clean-100" / "100" / "1000" / "100-1000-0099.flac"
    bad.write_bytes(b"not audio at all" * 100)
    return root


def test_bucketing_groups_lengths_and_is_deterministic():
    lengths = [5, 99, 6, 98, 200, 201, 50, 51]
    batches = bucketed_batches(lengths, 2, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(abs(lengths[a] - lengths[b]) == 1 for a, b in batches)
    assert batches == bucketed_batches(lengths, 2, seed=1, epoch=0)
    assert batches != bucketed_batches(lengths, 2, seed=1, epoch=1)


def test_prepare_librispeech_manifest_skips_unreadable(corpus, tmp_path):
    result = cli("prepare-librispeech", "--root", str(corpus), "--out", str(tmp_path / "m.csv"),
                 "--subsets", "train-clean-100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "6 utterances" in result.stderr and "1 unreadable" in result.stderr
    utterances = read_manifest(tmp_path / "m.csv")
    assert len(utterances) == 6 and all(u.length > 16000 for u in utterances)
    config = DataConfig(manifests=[str(tmp_path / "m.csv")], batch_size=2)
    assert len(load_corpus(config)[0]) == 6
    missing = cli("prepare-librispeech", "--root", str(corpus), "--out", str(tmp_path / "x.csv"),
                  "--subsets", "dev-other", cwd=tmp_path)
    assert missing.returncode == 2 and "dev-other does not exist" in missing.stderr


def test_stream_crops_resumes_and_counts_files_broken_after_indexing(corpus, tmp_path):
    config = DataConfig(librispeech_root=str(corpus), subsets=["train-clean-100"], sequence_length=16000,
                        batch_size=2, num_workers=0)
    utterances, unreadable = load_corpus(config)
    assert (len(utterances), unreadable) == (6, 1)
    # a file that turns bad after indexing is skipped and counted at read time
    broken = tmp_path / "broken.flac"
    write_audio_atomic(broken, np.zeros(20000, dtype=np.float32) + 0.1, 16000)
    utterances.append(type(utterances[0])(str(broken), 20000))
    broken.write_bytes(b"garbage")
    stream = BatchStream(config, utterances)
    first = [b for _, b in zip(range(8), stream)]  # two epochs of 4 batches
    assert all(b.wav.shape[1] <= 16000 and b.wav.shape[0] == len(b.paths) for b in first)
    assert sum(b.skipped for b in first) == 2  # once per epoch
    resumed = BatchStream(config, utterances)
    resumed.load_state_dict({"epoch": 1, "position": 1})
    again = [b for _, b in zip(range(3), resumed)]
    for a, b in zip(first[5:], again):
        assert a.paths == b.paths and (a.wav == b.wav).all()


def test_corpus_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data.manifests or data.librispeech_root"):
        load_corpus(DataConfig())
    (tmp_path / "bad.csv").write_text("path,length\na.flac,notanint\n")
    with pytest.raises(ConfigError, match="bad.csv:2: expected columns path,length"):
        load_corpus(DataConfig(manifests=[str(tmp_path / "bad.csv")]))


def test_batch_seconds_fills_batches_up_to_dphubert_s_160_seconds():
    """``BucketizeBatchSampler(max_token_count=160 * 16000, min_len=32000, max_len=250000)`` (DPHuBERT's
    distill.py, run.sh ``--seconds_per_batch 160``): rd_dpwavlm.yaml's setting; each batch a run of similar
    lengths summing to at most 160 s, closed only when the next utterance would not fit."""
    from pathlib import Path

    from robustdistiller_upstream.config import load_config
    from robustdistiller_upstream.prune.train import PruneConfig

    data = load_config(PruneConfig, Path(__file__).resolve().parents[1] / "pretrain" / "rd_dpwavlm.yaml").data
    assert (data.batch_seconds, data.min_length, data.sequence_length) == (160, 32000, 250000)
    budget = int(data.batch_seconds * 16000)
    lengths = np.random.default_rng(0).integers(32000, 250001, size=3000).tolist()
    batches = bucketed_batches(lengths, data.batch_size, seed=0, epoch=0, max_samples=budget)
    assert sorted(i for batch in batches for i in batch) == list(range(3000))
    assert all(sum(lengths[i] for i in batch) <= budget for batch in batches)
    by_length = sorted(batches, key=lambda batch: min(lengths[i] for i in batch))
    for batch, following in zip(by_length, by_length[1:]):
        assert max(lengths[i] for i in batch) <= min(lengths[i] for i in following)  # runs in length order
        assert sum(lengths[i] for i in batch) + min(lengths[i] for i in following) > budget  # closed when full
    sizes = [len(batch) for batch in batches]
    assert min(sizes) >= 10 and max(sizes) <= 80  # 160 s of 2-15.6 s utterances
    assert batches != bucketed_batches(lengths, data.batch_size, seed=0, epoch=1, max_samples=budget)
