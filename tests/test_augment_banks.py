"""Noise and RIR banks: layouts, bad-file handling, cached index, segment reads."""

import logging

import numpy as np
import pytest
import torch

from robustdistiller_upstream import synthetic
from robustdistiller_upstream.audio import write_audio_atomic
from robustdistiller_upstream.augment import (
    BankConfig,
    NoiseBank,
    NoiseSourceConfig,
    RirBank,
    RirSourceConfig,
    SimulatedRoomsConfig,
)
from robustdistiller_upstream.augment.banks import IndexEntry
from robustdistiller_upstream.errors import AudioError


def _bad_files(folder):
    """One file of each bad kind; returns {kind: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "unreadable.wav").write_bytes(b"RIFF garbage that is no wave file")
    files = {"unreadable": folder / "unreadable.wav"}
    files["empty"] = write_audio_atomic(folder / "empty.wav", np.zeros(0, np.float32), 16000)
    files["silent"] = write_audio_atomic(folder / "silent.flac", np.zeros(16000, np.float32), 16000)
    nan = synthetic.make_noise("white", 1.0, 16000, 0)
    nan[100] = np.nan
    files["nan"] = write_audio_atomic(folder / "nan.wav", nan, 16000, "FLOAT")
    files["wrong-rate"] = write_audio_atomic(folder / "narrow.wav", synthetic.make_noise("pink", 1.0, 8000, 0), 8000)
    files["too-short"] = write_audio_atomic(folder / "short.wav", synthetic.make_noise("pink", 0.1, 16000, 0), 16000)
    return files


def _config(tmp_path, noise_dir, **kwargs):
    return BankConfig(noises=[NoiseSourceConfig(kind="folder", path=str(noise_dir))],
                      cache_dir=str(tmp_path / "cache"), **kwargs)


def test_each_bad_file_kind_is_skipped_warned_once_and_counted(tmp_path, caplog):
    noise_dir = tmp_path / "noises"
    bad = _bad_files(noise_dir)
    good = synthetic.write_musan_noise(tmp_path / "musan", n_files=4, seconds=1.0)
    for path in good[:2]:
        (noise_dir / path.name).write_bytes(path.read_bytes())
    with caplog.at_level(logging.WARNING, logger="robustdistiller_upstream.augment.banks"):
        bank = NoiseBank.from_config(_config(tmp_path, noise_dir))
    assert len(bank) == 2
    assert dict(bank.skipped) == {kind: 1 for kind in bad}
    for kind, path in bad.items():
        hits = [r for r in caplog.records if str(path) in r.getMessage()]
        assert len(hits) == 1 and kind in hits[0].getMessage()


def test_empty_bank_is_an_error_at_start_up(tmp_path):
    _bad_files(tmp_path / "noises")
    with pytest.raises(AudioError, match="noise bank is empty"):
        NoiseBank.from_config(_config(tmp_path, tmp_path / "noises"))
    with pytest.raises(AudioError, match="not found"):
        NoiseBank.from_config(_config(tmp_path, tmp_path / "missing"))


def test_index_cache_is_reused_and_invalidated_by_a_changed_file(tmp_path):
    noise_dir = tmp_path / "noises"
    paths = [write_audio_atomic(noise_dir / f"n{i}.wav", synthetic.make_noise("white", 1.0, 16000, i), 16000)
             for i in range(2)]
    config = _config(tmp_path, noise_dir)
    assert len(NoiseBank.from_config(config)) == 2
    cache_files = list((tmp_path / "cache").glob("noise-*.json"))
    assert len(cache_files) == 1 and str(paths[0]) in cache_files[0].read_text()
    silent = np.zeros(16000, np.float32)
    write_audio_atomic(paths[0], silent, 16000)  # new size/mtime: checked again
    bank = NoiseBank.from_config(config)
    assert len(bank) == 1 and dict(bank.skipped) == {"silent": 1}


def test_musan_layout_and_resampling_to_16k(tmp_path):
    synthetic.write_musan_noise(tmp_path / "musan", n_files=4, seconds=1.0)
    config = BankConfig(noises=[NoiseSourceConfig(kind="musan", path=str(tmp_path / "musan"))],
                        cache_dir=str(tmp_path / "cache"))
    bank = NoiseBank.from_config(config)
    assert len(bank) == 4 and bank.lengths == [16000] * 4  # the 44.1 kHz file resampled
    with pytest.raises(AudioError, match="not found"):
        NoiseBank.from_config(BankConfig(noises=[NoiseSourceConfig(kind="musan", path=str(tmp_path / "musan"),
                                                                   subsets=["music"])]))


def test_urbansound8k_layout_excludes_classes(tmp_path):
    root = tmp_path / "UrbanSound8K"
    rows = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    for i, label in enumerate(["dog_bark", "children_playing", "street_music", "siren"]):
        write_audio_atomic(root / f"audio/fold{i % 2 + 1}/{i}.wav", synthetic.make_noise("hum", 1.0, 22050, i), 22050)
        rows.append(f"{i}.wav,1,0,1,1,{i % 2 + 1},{i},{label}")
    (root / "metadata").mkdir()
    (root / "metadata/UrbanSound8K.csv").write_text("\n".join(rows) + "\n")
    bank = NoiseBank.from_config(BankConfig(noises=[NoiseSourceConfig(kind="urbansound8k", path=str(root))],
                                            cache_dir=str(tmp_path / "cache")))
    assert sorted(name.rsplit("/", 1)[1] for name in bank.names) == ["0.wav", "3.wav"]


def test_segment_reads_from_disk_match_memory_and_tile(tmp_path):
    noise_dir = tmp_path / "noises"
    write_audio_atomic(noise_dir / "n.flac", synthetic.make_noise("pink", 1.0, 16000, 0), 16000)
    in_memory = NoiseBank.from_config(_config(tmp_path, noise_dir))
    on_disk = NoiseBank.from_config(_config(tmp_path, noise_dir, memory_cap_mb=0))
    assert in_memory.in_memory and not on_disk.in_memory
    np.testing.assert_array_equal(on_disk.segment(0, 5000, 4000), in_memory.segment(0, 5000, 4000))
    tiled = on_disk.segment(0, 15000, 20000)
    full = in_memory.segment(0, 0, 16000)
    assert tiled.shape == (20000,) and tiled.dtype == torch.float32
    np.testing.assert_array_equal(tiled[:1000], full[15000:])
    np.testing.assert_array_equal(tiled[1000:17000], full)
    rows = torch.zeros(2, 20000)  # written in place, on any device
    assert in_memory.segment(0, 15000, 20000, out=rows[1]).data_ptr() == rows[1].data_ptr()
    assert torch.equal(rows[1], tiled) and not rows[0].any()


def test_slr28_rir_bank_multichannel_resampled_and_simulated_rooms(tmp_path):
    synthetic.write_slr28_rirs(tmp_path, n_files=2, n_multichannel=1)
    air = tmp_path / "RIRS_NOISES" / "real_rirs_isotropic_noises" / "air_type1_air_binaural_booth_0_1_1.wav"
    write_audio_atomic(air, synthetic.simulate_rir(0.3, (4.0, 3.0, 2.5), 16000, seed=5), 16000, "FLOAT")
    config = BankConfig(rirs=[RirSourceConfig(kind="slr28", path=str(tmp_path))], cache_dir=str(tmp_path / "cache"),
                        simulated_rooms=SimulatedRoomsConfig(n_rooms=2, rt60=(0.2, 0.3)))
    bank = RirBank.from_config(config)
    assert len(bank) == 6  # 2 simulated files + 1 real + 1 AIR (the isotropic noise file excluded) + 2 rooms
    assert not any("_noise_" in name.rsplit("/", 1)[-1] for name in bank.names)
    assert str(air) in bank.names  # AIR RIRs have no "_rir_" in their names; the reference's pool has them
    real = bank.index_of(next(n for n in bank.names if "_rir_" in n.rsplit("/", 1)[-1]))
    assert bank.channels(real) == 2 and bank.get(real, 1).dim() == 1
    assert sum(n.startswith("sim:rt60=") for n in bank.names) == 2
    config.memory_cap_mb = 0  # files read at each use instead
    on_disk = RirBank.from_config(config)
    assert on_disk.names[:4] == bank.names[:4] and on_disk.channels(real) == 2
    assert isinstance(on_disk.rirs[real], IndexEntry)
    np.testing.assert_array_equal(on_disk.get(real, 1).numpy(), bank.get(real, 1).numpy())
    with pytest.raises(AudioError, match="no RIR source"):
        RirBank.from_config(BankConfig())


def test_reference_pools_keep_low_rate_and_short_noises_upsampled(tmp_path):
    """skip_low_rate=false, min_noise_seconds=0 (the paper recipes): the reference's pool, every listed noise,
    below-16 kHz files upsampled; unusable files are still skipped."""
    noise_dir = tmp_path / "noises"
    bad = _bad_files(noise_dir)
    bank = NoiseBank.from_config(_config(tmp_path, noise_dir, skip_low_rate=False, min_noise_seconds=0.0))
    assert sorted(bank.names) == sorted([str(bad["wrong-rate"]), str(bad["too-short"])])
    assert dict(bank.skipped) == {"unreadable": 1, "empty": 1, "silent": 1, "nan": 1}
    assert bank.lengths[bank.index_of(str(bad["wrong-rate"]))] == 16000  # 1 s at 8 kHz, upsampled
    # the verdicts depend on the switch: the default bank on the same cache skips them again
    assert len(NoiseBank.from_config(_config(tmp_path, noise_dir, min_noise_seconds=0.0))) == 1


def test_slr28_every_wav_like_the_reference_glob(tmp_path):
    synthetic.write_slr28_rirs(tmp_path, n_files=2, n_multichannel=1)
    every = [p for p in tmp_path.rglob("*.wav")]
    config = BankConfig(rirs=[RirSourceConfig(kind="slr28", path=str(tmp_path), rirs_only=False)],
                        cache_dir=str(tmp_path / "cache"))
    bank = RirBank.from_config(config)
    assert sorted(bank.names) == sorted(map(str, every))
    assert any("_noise_" in name.rsplit("/", 1)[-1] for name in bank.names)  # what rirs_only leaves out
