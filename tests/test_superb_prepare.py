"""ASR's derived data files (bucket CSVs, character dictionary) as the stock s3prl asr dataset reads them."""

from __future__ import annotations

import csv

import soundfile as sf
from s3prl.downstream.asr.dataset import SequenceDataset
from s3prl.downstream.asr.dictionary import Dictionary

from robustdistiller_upstream.superb.configs import load_task_config
from robustdistiller_upstream.superb.prepare import prepare_asr
from robustdistiller_upstream.superb.tasks import TASKS
from robustdistiller_upstream.synthetic import write_librispeech


def test_asr_files_are_derived_once_and_load_in_the_stock_dataset(tmp_path):
    libri = tmp_path / "LibriSpeech"
    paths = write_librispeech(libri, subsets=("train-clean-100", "dev-clean", "test-clean"), n_speakers=2,
                              n_utterances=2, use_espeak=False)
    config = load_task_config(TASKS["ASR"], {"DATA_ROOT": str(tmp_path)})
    datarc = config["downstream_expert"]["datarc"]
    assert datarc["libri_root"] == str(libri) and not (libri / "char.dict").exists()
    cache = tmp_path / "cache"
    prepare_asr(config, cache)
    assert datarc["bucket_file"] == str(cache / "len_for_bucket") and datarc["dict_path"] == str(cache / "char.dict")
    rows = list(csv.DictReader(open(cache / "len_for_bucket" / "test-clean.csv")))
    assert len(rows) == 4 and {r["file_path"].split("/")[0] for r in rows} == {"test-clean"}
    first = next(p for p in paths if p.relative_to(libri).as_posix() == rows[0]["file_path"])
    assert int(rows[0]["length"]) == sf.info(first).frames
    lines = (cache / "char.dict").read_text().splitlines()
    assert lines[0].startswith("| ") and all(len(line.split()) == 2 for line in lines)

    dictionary = Dictionary.load(datarc["dict_path"])
    dataset = SequenceDataset("test-clean", 2, dictionary, **datarc)
    batches = [dataset[i] for i in range(len(dataset))]
    assert sum(len(wavs) for wavs, _, _ in batches) == 4  # every test utterance, with its label
    assert all(len(label) > 0 for _, labels, _ in batches for label in labels)
    before = (cache / "char.dict").stat().st_mtime
    prepare_asr(load_task_config(TASKS["ASR"], {"DATA_ROOT": str(tmp_path)}), cache)
    assert (cache / "char.dict").stat().st_mtime == before
