"""The contamination engine: exact SNR, FFT reverb, delay compensation, determinism, replay, curriculum."""

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from robustdistiller_upstream import synthetic
from robustdistiller_upstream.audio import read_audio, write_audio_atomic
from robustdistiller_upstream.augment import (
    BankConfig,
    ContaminationConfig,
    Contaminator,
    NoiseSourceConfig,
    RirBank,
    TransformRecord,
    build_banks,
    mean_power,
)
from robustdistiller_upstream.augment.config import DistortionSetConfig
from robustdistiller_upstream.augment.effects import pitch_shift
from robustdistiller_upstream.augment.ops import (
    direct_path_delay,
    fft_convolve,
    fft_size,
    place_rirs,
    reverb_fft_size,
)
from robustdistiller_upstream.augment.spectra import RirSpectra
from robustdistiller_upstream.config import load_config
from robustdistiller_upstream.errors import AudioError
from robustdistiller_upstream.train.config import PretrainConfig

LENGTHS = [48000, 31000, 40000, 17000]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """(batch, samples) padded speech (espeak-ng where installed) with junk in the padding, and lengths."""
    folder = tmp_path_factory.mktemp("speech")
    rows = []
    for i, n in enumerate(LENGTHS):
        if synthetic.have_espeak():
            audio, _ = read_audio(synthetic.speak("the quick brown fox jumps over the lazy dog again and again",
                                                  folder / f"{i}.wav", voice=synthetic.ESPEAK_VOICES[i]))
            audio = np.resize(audio, n)
        else:
            audio = synthetic.synthetic_speech(n / 16000, 16000, seed=i)[:n]
        rows.append(torch.from_numpy(audio))
    wav = torch.full((len(LENGTHS), max(LENGTHS)), 0.7)  # junk padding must never count
    for i, row in enumerate(rows):
        wav[i, : len(row)] = row
    return wav, torch.tensor(LENGTHS)


@pytest.fixture(scope="module")
def banks(tmp_path_factory):
    root = tmp_path_factory.mktemp("banks")
    synthetic.write_musan_noise(root / "musan", n_files=6, seconds=2.0)
    config = BankConfig(noises=[NoiseSourceConfig(kind="musan", path=str(root / "musan"))],
                        cache_dir=str(root / "cache"))
    config.simulated_rooms.n_rooms = 3
    config.simulated_rooms.rt60 = (0.2, 0.3)
    return build_banks(config)


def _unit_rir_bank(delay: int) -> RirBank:
    rir = torch.zeros(1, 400)
    rir[0, delay] = 1.0
    return RirBank([f"impulse@{delay}"], [rir], 16000, skipped={})


def _measured_snr(clean, noisy, lengths):
    masked = clean * (torch.arange(clean.shape[1], device=clean.device)[None] < lengths[:, None])
    return 10 * torch.log10(mean_power(masked, lengths) / mean_power(noisy - masked, lengths))


@pytest.mark.parametrize("p_file_noise", [1.0, 0.0])
def test_snr_within_0_05_db_of_target_padding_ignored(speech, banks, p_file_noise):
    wav, lengths = speech
    config = ContaminationConfig(p_clean=0, p_noise=1, p_reverb=0, p_noise_reverb=0, snr_min=-5, snr_max=20,
                                 p_file_noise=p_file_noise, generated_noise=["white", "pink", "brown"])
    contaminator = Contaminator(config, banks[0], None)
    for step in range(3):
        noisy, records = contaminator(wav, lengths, step=step)
        target = torch.tensor([r.snr_db for r in records])
        assert (_measured_snr(wav, noisy, lengths) - target).abs().max() < 0.05
        assert all(r.op == "noise" and r.noise_gain > 0 for r in records)
        for i, n in enumerate(LENGTHS):
            assert not noisy[i, n:].any()  # padding comes out zero


def test_unit_impulse_rir_is_identity(speech):
    wav, lengths = speech
    config = ContaminationConfig(p_clean=0, p_noise=0, p_reverb=1, p_noise_reverb=0)
    noisy, records = Contaminator(config, None, _unit_rir_bank(0))(wav, lengths)
    masked = wav * (torch.arange(wav.shape[1])[None] < lengths[:, None])
    torch.testing.assert_close(noisy, masked, atol=1e-6, rtol=0)
    assert [r.rir_delay for r in records] == [0] * len(LENGTHS)


def test_delay_compensation_aligns_a_delayed_impulse(speech):
    wav, lengths = speech
    masked = wav * (torch.arange(wav.shape[1])[None] < lengths[:, None])
    bank = _unit_rir_bank(137)
    aligned, records = Contaminator(ContaminationConfig(p_clean=0, p_noise=0, p_reverb=1, p_noise_reverb=0),
                                    None, bank)(wav, lengths)
    torch.testing.assert_close(aligned, masked, atol=1e-6, rtol=0)
    assert {r.rir_delay for r in records} == {137}
    late, _ = Contaminator(ContaminationConfig(p_clean=0, p_noise=0, p_reverb=1, p_noise_reverb=0,
                                               compensate_delay=False), None, bank)(wav, lengths)
    for i, n in enumerate(LENGTHS):  # without compensation: delayed by 137 samples, cut at the length
        torch.testing.assert_close(late[i, 137:n], masked[i, : n - 137], atol=1e-6, rtol=0)


def test_fft_convolution_equals_scipy_with_real_rirs(banks):
    rirs = [banks[1].get(i, 0) for i in range(len(banks[1]))]
    x = torch.randn(len(rirs), 20000, generator=torch.Generator().manual_seed(0))
    delays = [direct_path_delay(r) for r in rirs]
    n_fft = fft_size(20000, max(map(len, rirs)))
    out = fft_convolve(x, torch.fft.rfft(place_rirs(rirs, delays, n_fft, x.device)), n_fft)
    for i, (rir, d) in enumerate(zip(rirs, delays)):
        expected = scipy.signal.fftconvolve(x[i].double().numpy(), rir.double().numpy())[d : d + 20000]
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("compensate_delay", [False, True])
def test_rirs_longer_than_the_batch_reverberate_exactly_at_the_batch_width(compensate_delay):
    """A bank with a recording far longer than the batch (SLR28 with ``rirs_only: false``): the FFT size follows
    the batch width, not the longest file, and every row still equals the full linear convolution, shifted by
    the delay and cut to its length (direct paths before, inside and after the batch width)."""
    gen = torch.Generator().manual_seed(3)
    samples, lengths = 3000, torch.tensor([3000, 2100, 3000, 900])
    rirs = []
    for n, delay in ((40000, 25000), (400, 30), (9000, 2500), (16000, 7)):
        rir = torch.randn(1, n, generator=gen) * torch.exp(-torch.arange(n) / n * 3)
        rir[0, delay] = 40.0
        rirs.append(rir)
    bank = RirBank([f"long{i}" for i in range(len(rirs))], rirs, 16000, skipped={})
    config = ContaminationConfig(p_clean=0, p_noise=0, p_reverb=1, p_noise_reverb=0,
                                 compensate_delay=compensate_delay, normalize_rir=False)
    contaminator = Contaminator(config, None, bank)
    wav = torch.randn(len(rirs), samples, generator=gen)
    records = [TransformRecord(op="reverb", seed=0, rir=f"long{i}", rir_channel=0) for i in range(len(rirs))]
    out, filled = contaminator.apply(wav, lengths, records)
    n_fft = reverb_fft_size(samples, bank.longest)
    assert n_fft < fft_size(samples, bank.longest) // 4
    assert contaminator.rir_spectra.bytes == len(rirs) * (n_fft // 2 + 1) * 8  # spectra at that size
    for i, (rir, n) in enumerate(zip(rirs, lengths.tolist())):
        shift = direct_path_delay(rir[0]) if compensate_delay else 0
        assert filled[i].rir_delay == shift
        full = scipy.signal.fftconvolve(wav[i, :n].double().numpy(), rir[0].double().numpy())
        np.testing.assert_allclose(out[i, :n].numpy(), full[shift : shift + n], atol=2e-3, rtol=0)
        assert not out[i, n:].any()


def test_deterministic_bytes_and_replay(speech, banks):
    wav, lengths = speech
    ids = ["spk1/a", "spk1/b", "spk2/c", "spk3/d"]
    first, records = Contaminator(ContaminationConfig(seed=7), *banks)(wav, lengths, utt_ids=ids)
    second, again = Contaminator(ContaminationConfig(seed=7), *banks)(wav, lengths, utt_ids=ids)
    assert first.numpy().tobytes() == second.numpy().tobytes() and records == again
    other, _ = Contaminator(ContaminationConfig(seed=8), *banks)(wav, lengths, utt_ids=ids)
    assert not torch.equal(first, other)
    # the same utterance gets the same transform wherever it sits in a batch
    alone, single = Contaminator(ContaminationConfig(seed=7), *banks)(wav[2:3], lengths[2:3], utt_ids=ids[2:3])
    assert single[0] == records[2]
    torch.testing.assert_close(alone[0], first[2], atol=1e-6, rtol=0)
    # records survive a JSON round trip and replay exactly
    replayed, _ = Contaminator(ContaminationConfig(seed=99), *banks).apply(
        wav, lengths, [TransformRecord.from_dict(r.to_dict()) for r in records])
    assert replayed.numpy().tobytes() == first.numpy().tobytes()


def test_training_stream_is_seeded_and_ops_are_balanced(banks):
    config = ContaminationConfig(seed=3)
    a = Contaminator(config, *banks).plan([16000] * 400)
    b = Contaminator(config, *banks).plan([16000] * 400)
    assert a == b
    counts = {op: sum(r.op == op for r in a) for op in ("clean", "noise", "reverb", "noise+reverb")}
    assert all(60 <= c <= 140 for c in counts.values()), counts
    noisy = [r for r in a if r.snr_db is not None]
    assert {r.snr_db for r in noisy} <= set(map(float, range(21)))
    file_share = np.mean([r.noise not in ("white", "pink", "brown") for r in noisy])
    assert 0.55 < file_share < 0.85  # p_file_noise = 0.7


def _reference_curriculum(step: int, n: int, low: float = 0, high: float = 20) -> tuple[float, list[float]]:
    """The reference's RobustEnvironment (robustness.py) with inc_steps_noises = n at step ``step``: the lowest SNR
    ``round(linspace(high, low, n))[idx]`` and the op probabilities (clean, noise, reverb, noise+reverb) of
    drawing each op at 1/4 and reverberating with probability ``linspace(0, 1, n)[idx]``."""
    idx = step if step < n else -1
    floor = float(torch.round(torch.linspace(high, low, n))[idx])
    p = float(torch.linspace(0, 1, n)[idx])
    return floor, [0.25 + 0.25 * (1 - p), 0.25 + 0.25 * (1 - p), 0.25 * p, 0.25 * p]


@pytest.mark.parametrize("step", [0, 500, 1000])
def test_curriculum_follows_the_reference_formulas(step):
    n = 1000
    config = ContaminationConfig(curriculum="inc_steps_noises", curriculum_steps=n, snr_min=0, snr_max=20,
                                 p_file_noise=0.0)
    contaminator = Contaminator(config, None, _unit_rir_bank(0))
    floor, probs = _reference_curriculum(step, n)
    assert contaminator.snr_range(step) == (floor, 20)
    np.testing.assert_allclose(contaminator.op_probabilities(step), probs, rtol=0, atol=1e-12)
    plan = contaminator.plan([1000] * 4000, step=step)
    counts = np.array([sum(r.op == op for r in plan) for op in ("clean", "noise", "reverb", "noise+reverb")])
    assert np.abs(counts / len(plan) - probs).max() < 0.03
    snrs = {r.snr_db for r in plan if r.snr_db is not None}
    assert snrs <= set(map(float, range(int(floor), 21))) and min(snrs) == floor


def test_paper_recipe_reverb_is_the_raw_rir_without_delay_compensation(speech):
    """rd_wavlm.yaml: an impulse at sample 100 delays the input by 100 samples and keeps its scale (the reference
    convolves with the raw RIR and keeps the first len(x) samples)."""
    recipe = load_config(PretrainConfig, Path(__file__).resolve().parents[1] / "pretrain" / "rd_wavlm.yaml")
    config = dataclasses.replace(recipe.denoising.contamination, p_clean=0, p_noise=0, p_reverb=1, p_noise_reverb=0)
    wav, lengths = speech
    masked = wav * (torch.arange(wav.shape[1])[None] < lengths[:, None])
    for scale in (1.0, 0.25):
        rir = torch.zeros(1, 400)
        rir[0, 100] = scale
        bank = RirBank([f"impulse*{scale}@100"], [rir], 16000, skipped={})
        out, records = Contaminator(config, None, bank)(wav, lengths)
        assert {r.rir_delay for r in records} == {0}
        for i, n in enumerate(LENGTHS):
            torch.testing.assert_close(out[i, 100:n], scale * masked[i, : n - 100], atol=1e-6, rtol=0)
            assert out[i, :100].abs().max() < 1e-6


def test_missing_banks_fail_at_start_up():
    with pytest.raises(AudioError, match="RIR bank is empty"):
        Contaminator(ContaminationConfig(p_file_noise=0.0), None, None)
    with pytest.raises(AudioError, match="noise bank is empty"):
        Contaminator(ContaminationConfig(p_reverb=0, p_noise_reverb=0), None, None)


def test_dtype_and_device_kept(speech):
    wav, lengths = speech
    config = ContaminationConfig(p_file_noise=0.0)
    noisy, _ = Contaminator(config, None, _unit_rir_bank(3))(wav.double(), lengths)
    assert noisy.dtype == torch.float64 and noisy.shape == wav.shape


def test_full_length_batch_leaves_the_input_untouched(speech, banks):
    wav, _ = speech
    wav = wav[:, : min(LENGTHS)].contiguous()  # no padding: the whole-batch path
    lengths = torch.full((len(LENGTHS),), wav.shape[1])
    before = wav.clone()
    for p_noise, p_noise_reverb in ((1, 0), (0, 1)):
        config = ContaminationConfig(p_clean=0, p_noise=p_noise, p_reverb=0, p_noise_reverb=p_noise_reverb,
                                     snr_min=3, snr_max=3)
        noisy, _ = Contaminator(config, *banks)(wav, lengths)
        assert torch.equal(wav, before) and not torch.equal(noisy, wav)
        if p_noise:
            assert (_measured_snr(wav, noisy, lengths) - 3).abs().max() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_keeps_the_snr(speech, banks):
    wav, lengths = speech
    config = ContaminationConfig(seed=5, p_clean=0, p_noise=0.5, p_reverb=0, p_noise_reverb=0.5)
    cpu, records = Contaminator(config, *banks)(wav, lengths)
    gpu, gpu_records = Contaminator(config, *banks)(wav.cuda(), lengths.cuda())
    assert gpu.is_cuda
    # the plan never depends on the device; the measured gains agree to float rounding (reductions differ)
    assert [dataclasses.replace(r, noise_gain=None) for r in gpu_records] == [
        dataclasses.replace(r, noise_gain=None) for r in records]
    for on_gpu, on_cpu in zip(gpu_records, records):
        assert (on_gpu.noise_gain is None) == (on_cpu.noise_gain is None)
        if on_cpu.noise_gain is not None:
            assert on_gpu.noise_gain == pytest.approx(on_cpu.noise_gain, rel=1e-5)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    noise_only = ContaminationConfig(seed=5, p_clean=0, p_noise=1, p_reverb=0, p_noise_reverb=0)
    noisy, records = Contaminator(noise_only, *banks)(wav.cuda(), lengths.cuda())
    snr = _measured_snr(wav.cuda(), noisy, lengths.cuda()).cpu()
    assert (snr - torch.tensor([r.snr_db for r in records])).abs().max() < 0.05


def test_cached_rir_spectra_give_the_bytes_of_fresh_ones(speech, banks):
    wav, lengths = speech
    config = ContaminationConfig(seed=4, p_clean=0, p_noise=0, p_reverb=0.5, p_noise_reverb=0.5)
    contaminator = Contaminator(config, *banks)
    records = [contaminator.plan(LENGTHS) for _ in range(6)]
    warm = [contaminator.apply(wav, lengths, r)[0] for r in records]
    # same-width batches share one FFT size: one spectrum per RIR, however many batches drew it
    assert len(contaminator.rir_spectra) == len({r.rir for batch in records for r in batch})
    for batch, out in zip(records, warm):  # a fresh contaminator computes every spectrum anew
        assert Contaminator(config, *banks).apply(wav, lengths, batch)[0].numpy().tobytes() == out.numpy().tobytes()


def test_rir_spectra_cache_is_bounded_lru_and_exact(banks):
    bank, cpu = banks[1], torch.device("cpu")
    n_fft = fft_size(8000, bank.longest)
    one = (n_fft // 2 + 1) * 8  # bytes of one complex64 spectrum
    spectra = RirSpectra(bank, normalize=True, compensate_delay=True, max_bytes=2 * one)
    first, delay = spectra.get(0, 0, n_fft, cpu)
    rir = bank.get(0, 0) / bank.get(0, 0).norm()
    assert delay == direct_path_delay(rir)
    assert torch.equal(first, torch.fft.rfft(place_rirs([rir], [delay], n_fft, cpu)[0]))
    second, _ = spectra.get(1, 0, n_fft, cpu)
    assert spectra.get(0, 0, n_fft, cpu)[0] is first  # a hit, and now the most recently used
    spectra.get(2, 0, n_fft, cpu)  # evicts RIR 1, the least recently used
    assert len(spectra) == 2 and spectra.bytes == 2 * one
    assert spectra.get(0, 0, n_fft, cpu)[0] is first
    again, _ = spectra.get(1, 0, n_fft, cpu)  # computed anew: the same bytes
    assert again is not second and torch.equal(again, second)
    assert len(spectra) == 2 and spectra.bytes == 2 * one


def _tone(freq: float, samples: int) -> torch.Tensor:
    return torch.sin(2 * np.pi * freq * torch.arange(samples) / 16000)


def _peak_hz(x: torch.Tensor) -> float:
    return float(torch.fft.rfft(x).abs().argmax()) * 16000 / len(x)


@pytest.mark.parametrize("cents", [-500, -7, 300, 499])
def test_pitch_shift_moves_a_tone_by_the_ratio_and_keeps_length_and_power(cents):
    """Setup 2's pitch effect: every frequency times 2^(cents/1200), the length kept, a steady tone's power kept
    (the phase locking; without it an upward shift loses two thirds)."""
    for freq in (440.0, 1000.0):
        shifted = pitch_shift(_tone(freq, 32000), cents)
        assert shifted.shape == (32000,)
        assert abs(_peak_hz(shifted) - freq * 2 ** (cents / 1200)) <= 0.5  # the FFT's bin width
        assert float(shifted[2000:-2000].pow(2).mean()) == pytest.approx(0.5, rel=0.02)


def test_pitch_and_band_records_apply_to_their_rows_only_and_keep_the_padding_zero():
    """Recorded pitch and band-reject effects on a padded batch: a 1 kHz tone and a 3 kHz tone in every row; the
    band [900, 1100] Hz removes the first only, +300 cents moves both, an empty record changes nothing."""
    lengths = torch.tensor([32000, 24000, 32000])
    wav = torch.zeros(3, 32000)
    for row, n in enumerate(lengths.tolist()):
        wav[row, :n] = _tone(1000, n) + _tone(3000, n)
    wav[1, 24000:] = 0.7  # junk in the padding
    records = [TransformRecord("clean+band_reject", 1, band_low_hz=900.0, band_high_hz=1100.0),
               TransformRecord("clean+pitch", 2, pitch_cents=300), TransformRecord("clean+clean", 3)]
    effects_only = DistortionSetConfig(enabled=True, additive=["clean"], non_additive=["pitch", "band_reject", "clean"])
    contaminator = Contaminator(ContaminationConfig(distortion_set=effects_only))  # needs no bank
    out, filled = contaminator.apply(wav, lengths, records)
    assert filled == records
    banded = torch.fft.rfft(out[0]).abs()
    assert banded[2000] < 1e-3 * banded[6000]  # 1 kHz gone (bin 2000 of 32000 samples), 3 kHz kept
    assert float(out[0].pow(2).mean()) == pytest.approx(0.5, rel=0.01)
    assert abs(_peak_hz(out[1, :24000]) - 1000 * 2 ** 0.25) <= 1.0 and not out[1, 24000:].any()
    assert torch.equal(out[2], wav[2])


def test_distortion_set_draws_one_additive_then_one_effect_uniformly(tmp_path):
    """Setup 2's draw: each of the 4 x 4 (additive, effect) pairs about equally often, SNRs integers in 10..19,
    each file noise from the named source's files, pitch in [-500, 500), bands within SpecAugment's width; the
    records replay to the same bytes, through JSON too."""
    synthetic.write_musan_noise(tmp_path / "musan", n_files=4, seconds=2.0)
    wham = [write_audio_atomic(tmp_path / "wham" / f"{i}.wav", synthetic.make_noise("babble", 0.5, 16000, i),
                               16000) for i in range(2)]
    config = BankConfig(noises=[NoiseSourceConfig(kind="musan", path=str(tmp_path / "musan")),
                                NoiseSourceConfig(kind="folder", path=str(tmp_path / "wham"), name="wham")],
                        cache_dir=str(tmp_path / "cache"), min_noise_seconds=0.0)
    config.simulated_rooms.n_rooms = 2
    noise_bank, rir_bank = build_banks(config)
    assert sorted(map(noise_bank.names.__getitem__, noise_bank.groups["wham"])) == sorted(map(str, wham))
    setup2 = ContaminationConfig(snr_min=10, snr_max=19, short_noise="stretch")
    setup2.distortion_set.enabled = True
    contaminator = Contaminator(setup2, noise_bank, rir_bank)
    records = contaminator.plan([16000] * 1600)
    pairs = Counter(r.op for r in records)
    assert len(pairs) == 16 and min(pairs.values()) > 60 and max(pairs.values()) < 140  # 100 expected
    for r in records:
        additive, effect = r.op.split("+")
        assert (r.snr_db is None) == (additive == "clean")
        if r.snr_db is not None:
            assert r.snr_db in range(10, 20)
        if additive in ("musan", "wham"):
            assert noise_bank.index_of(r.noise) in noise_bank.groups[additive]
            assert r.noise_repeat == (16000 // 8000 + 1 if additive == "wham" else None)  # 0.5 s files stretched
        assert (r.pitch_cents is not None) == (effect == "pitch") and (r.rir is not None) == (effect == "reverb")
        if effect == "pitch":
            assert -500 <= r.pitch_cents < 500
        if effect == "band_reject":
            mel = lambda hz: 2595 * np.log10(1 + hz / 700)  # noqa: E731
            assert 0 <= mel(r.band_high_hz) - mel(r.band_low_hz) <= mel(8000) * 27 * 0.5 / 256
    assert {r.snr_db for r in records if r.snr_db is not None} == set(map(float, range(10, 20)))
    wav = torch.from_numpy(synthetic.synthetic_speech(1.0, 16000, seed=1)[:16000]).repeat(32, 1)
    lengths = torch.full((32,), 16000)
    first, filled = contaminator.apply(wav, lengths, records[:32])
    again, _ = contaminator.apply(wav, lengths, [TransformRecord.from_dict(json.loads(json.dumps(r.to_dict())))
                                                 for r in filled])
    assert torch.equal(first, again)
    assert all(r.noise_gain > 0 for r in filled if r.noise is not None)


def test_short_noise_stretch_repeats_each_sample_as_setup_2(banks):
    """``short_noise: stretch``: a noise shorter than the utterance enters as ``np.repeat(noise, n)[:length]``
    (each sample n times, n = length // file length + 1), the reference's quirk; ``tile`` repeats the file."""
    noise_bank, _ = banks
    index = int(np.argmin(noise_bank.lengths))
    file = noise_bank.segment(index, 0, noise_bank.lengths[index])
    length = 2 * len(file) + 123
    wav, lengths = torch.ones(1, length), torch.tensor([length])  # unit speech: the noise is (out - 1) / gain
    for mode, expected in (("stretch", np.repeat(file.numpy(), 3)[:length]),
                           ("tile", np.resize(file.numpy(), length))):
        contaminator = Contaminator(ContaminationConfig(p_clean=0, p_reverb=0, p_noise_reverb=0, p_file_noise=1.0,
                                                        short_noise=mode), noise_bank)
        record = dataclasses.replace(contaminator.plan([length])[0], noise=noise_bank.names[index], noise_offset=0)
        record = dataclasses.replace(record, noise_repeat=3 if mode == "stretch" else None)
        out, (filled,) = contaminator.apply(wav, lengths, [record])
        np.testing.assert_allclose(((out[0] - 1) / filled.noise_gain).numpy(), expected, atol=1e-4)
    drawn = Contaminator(ContaminationConfig(p_clean=0, p_reverb=0, p_noise_reverb=0, p_file_noise=1.0,
                                             short_noise="stretch"), noise_bank).plan([10**6])
    assert drawn[0].noise_repeat == 10**6 // noise_bank.lengths[noise_bank.index_of(drawn[0].noise)] + 1
