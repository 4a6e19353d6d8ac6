"""The contamination engine: draw one transform per utterance (``plan``), then apply a batch of them (``apply``).

Every random choice of an utterance comes from one integer ``seed`` kept in its ``TransformRecord``; records
serialise to plain dicts (JSON lines) and ``apply`` replays them exactly. With ``utt_ids`` the seed is a hash of
(``config.seed``, utterance id), so the same utterance always gets the same transform (test conditions);
without, seeds come from a stream seeded by ``config.seed`` (training).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from robustdistiller_upstream.augment.banks import NoiseBank, RirBank
from robustdistiller_upstream.augment.config import ContaminationConfig
from robustdistiller_upstream.augment.effects import band_reject, draw_band, pitch_shift
from robustdistiller_upstream.augment.generators import COLORS, colored_noise
from robustdistiller_upstream.augment.ops import fft_convolve, length_mask, reverb_fft_size, snr_gain
from robustdistiller_upstream.augment.spectra import RirSpectra
from robustdistiller_upstream.errors import AudioError

OPS = ("clean", "noise", "reverb", "noise+reverb")

# Memory for cached RIR spectra (about 1 MB each for 16 s batches), per contaminator.
RIR_SPECTRA_CACHE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class TransformRecord:
    """What was done to one utterance, in this order: noise, reverberation, pitch shift, band rejection. Noise
    offsets and delays in samples at the bank rate; SNR in dB.

    ``op``: one of ``OPS``, or ``<additive>+<non-additive>`` under a distortion set (``white+pitch``). ``noise``: a
    noise file path or a generated colour (``white``/``pink``/``brown``, drawn from ``noise_seed``);
    ``noise_repeat``: each sample of a short file noise repeated that many times (``short_noise: stretch``).
    ``rir``: an RIR file path or a simulated room name. ``pitch_cents``: pitch shift in cents;
    ``band_low_hz``/``band_high_hz``: the rejected band. ``noise_gain`` (linear factor on the noise) and
    ``rir_delay`` (samples removed by delay compensation) are filled in by ``apply``.
    """

    op: str
    seed: int
    snr_db: Optional[float] = None
    noise: Optional[str] = None
    noise_offset: Optional[int] = None
    noise_seed: Optional[int] = None
    noise_gain: Optional[float] = None
    noise_repeat: Optional[int] = None
    rir: Optional[str] = None
    rir_channel: Optional[int] = None
    rir_delay: Optional[int] = None
    pitch_cents: Optional[int] = None
    band_low_hz: Optional[float] = None
    band_high_hz: Optional[float] = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TransformRecord":
        return cls(**data)


def utterance_seed(seed: int, utt_id: str) -> int:
    """A 63-bit seed from (seed, utterance id), the same on every machine and Python version."""
    digest = hashlib.sha256(f"{seed}\0{utt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Contaminator:
    """Contaminates batches of speech at ``sample_rate`` (the banks' rate):
    ``noisy, records = contaminator(wav, lengths, step, utt_ids)``.

    ``wav`` is ``(batch, samples)`` on any device, ``lengths`` ``(batch,)`` long valid samples. The output has
    the input's shape, dtype and device, zero padding. SNR is mean power over the valid samples (``ops``);
    for ``noise+reverb`` the noise is mixed at the SNR first and the mixture is reverberated. RIR spectra are
    cached in ``rir_spectra`` (``RIR_SPECTRA_CACHE_BYTES`` at most), noise segments copied from the noise
    bank's copy on the batch's device.
    """

    def __init__(
        self,
        config: ContaminationConfig,
        noise_bank: NoiseBank | None = None,
        rir_bank: RirBank | None = None,
        sample_rate: int = 16000,
    ):
        if noise_bank is not None and noise_bank.sample_rate != sample_rate:
            raise AudioError(f"noise bank at {noise_bank.sample_rate} Hz for speech at {sample_rate} Hz")
        if rir_bank is not None and rir_bank.sample_rate != sample_rate:
            raise AudioError(f"RIR bank at {rir_bank.sample_rate} Hz for speech at {sample_rate} Hz")
        self.config = config
        self.sample_rate = sample_rate
        self.noise_bank = noise_bank
        self.rir_bank = rir_bank
        self.rir_spectra = None if rir_bank is None else RirSpectra(
            rir_bank, config.normalize_rir, config.compensate_delay, RIR_SPECTRA_CACHE_BYTES)
        distortions = config.distortion_set
        if distortions.enabled:
            sources = [a for a in distortions.additive if a != "clean" and a not in COLORS]
            missing = sorted(set(sources) - set(noise_bank.groups if noise_bank else ()))
            if missing:
                raise AudioError(f"distortion_set.additive names noise sources {missing}, but the noise bank has "
                                 f"{sorted(noise_bank.groups) if noise_bank else 'none'} (NoiseSourceConfig.name)")
            if "reverb" in distortions.non_additive and not rir_bank:
                raise AudioError("distortion_set.non_additive draws reverb but the RIR bank is empty")
        else:
            needs_noise = config.p_noise + config.p_noise_reverb > 0
            if needs_noise and config.p_file_noise > 0 and not noise_bank:
                raise AudioError("contamination draws file noises (p_file_noise > 0) but the noise bank is empty")
            if config.p_reverb + config.p_noise_reverb > 0 and not rir_bank:
                raise AudioError("contamination draws reverberation but the RIR bank is empty")
        self._stream = np.random.default_rng(config.seed)
        if config.curriculum == "inc_steps_noises":
            # the reference's tables (robustness.py, RobustEnvironment): float32 linspace, round half to even
            steps = config.curriculum_steps
            self._snr_floor = torch.round(torch.linspace(config.snr_max, config.snr_min, steps)).tolist()
            self._reverb_ramp = torch.linspace(0, 1, steps).tolist()
        self._buffers: dict[tuple[str, torch.device], torch.Tensor] = {}

    def __call__(
        self,
        wav: torch.Tensor,
        lengths: torch.Tensor,
        step: int = 0,
        utt_ids: Sequence[str] | None = None,
    ) -> tuple[torch.Tensor, list[TransformRecord]]:
        """Draws and applies one transform per row; returns ``(noisy (batch, samples), records)``."""
        return self.apply(wav, lengths, self.plan(lengths.tolist(), step, utt_ids))

    def op_probabilities(self, step: int) -> np.ndarray:
        """``(4,)`` probabilities of ``OPS`` at training step ``step``. Under the curriculum the reverberant ops
        keep their weights but reverberate with probability ``r = reverb_probability(step)`` (else ``reverb``
        is ``clean`` and ``noise+reverb`` is ``noise``), as in the reference."""
        cfg = self.config
        p_clean, p_noise, p_reverb, p_noise_reverb = np.array(
            [cfg.p_clean, cfg.p_noise, cfg.p_reverb, cfg.p_noise_reverb]) / (
            cfg.p_clean + cfg.p_noise + cfg.p_reverb + cfg.p_noise_reverb)
        r = self.reverb_probability(step)
        return np.array([p_clean + p_reverb * (1 - r), p_noise + p_noise_reverb * (1 - r), p_reverb * r,
                         p_noise_reverb * r])

    def _curriculum_index(self, step: int) -> int:
        """The reference's table index: the step until the end of the curriculum, then the last entry."""
        return max(0, step) if step < self.config.curriculum_steps else -1

    def reverb_probability(self, step: int) -> float:
        """Probability that a reverberant op reverberates: 1, or ``linspace(0, 1, N)[step]`` under the curriculum."""
        if self.config.curriculum == "none":
            return 1.0
        return self._reverb_ramp[self._curriculum_index(step)]

    def snr_range(self, step: int) -> tuple[float, float]:
        """(lowest, highest) SNR in dB at training step ``step``; under the curriculum the lowest is the
        reference's ``round(linspace(snr_max, snr_min, N))[step]``."""
        cfg = self.config
        if cfg.curriculum == "none":
            return cfg.snr_min, cfg.snr_max
        return self._snr_floor[self._curriculum_index(step)], cfg.snr_max

    def plan(
        self, lengths: Sequence[int], step: int = 0, utt_ids: Sequence[str] | None = None
    ) -> list[TransformRecord]:
        """One record per utterance of ``lengths`` samples (seeded by ``utt_ids`` when given)."""
        if utt_ids is not None and len(utt_ids) != len(lengths):
            raise ValueError(f"{len(utt_ids)} utterance ids for {len(lengths)} utterances")
        probs, snr_range = self.op_probabilities(step), self.snr_range(step)
        records = []
        for b, length in enumerate(lengths):
            if utt_ids is not None:
                seed = utterance_seed(self.config.seed, utt_ids[b])
            else:
                seed = int(self._stream.integers(2**63 - 1))
            records.append(self._draw(seed, int(length), probs, snr_range))
        return records

    def _draw(self, seed: int, length: int, probs: np.ndarray, snr_range: tuple[float, float]) -> TransformRecord:
        cfg, rng = self.config, np.random.default_rng(seed)
        if cfg.distortion_set.enabled:
            return self._draw_set(rng, seed, length, snr_range)
        op = OPS[int(rng.choice(len(OPS), p=probs))]
        fields: dict[str, Any] = {}
        if "noise" in op:
            fields["snr_db"] = self._snr(rng, snr_range)
            if self.noise_bank and rng.random() < cfg.p_file_noise:
                fields.update(self._file_noise(rng, int(rng.integers(len(self.noise_bank))), length))
            else:
                color = cfg.generated_noise[int(rng.integers(len(cfg.generated_noise)))]
                fields.update(self._generated_noise(rng, color))
        if "reverb" in op:
            fields.update(self._rir(rng))
        return TransformRecord(op=op, seed=seed, **fields)

    def _draw_set(self, rng: np.random.Generator, seed: int, length: int,
                  snr_range: tuple[float, float]) -> TransformRecord:
        """Setup 2's draw: one additive distortion, then one non-additive effect, each uniform over its list."""
        distortions = self.config.distortion_set
        additive = distortions.additive[int(rng.integers(len(distortions.additive)))]
        effect = distortions.non_additive[int(rng.integers(len(distortions.non_additive)))]
        fields: dict[str, Any] = {}
        if additive != "clean":
            fields["snr_db"] = self._snr(rng, snr_range)
            if additive in COLORS:
                fields.update(self._generated_noise(rng, additive))
            else:
                files = self.noise_bank.groups[additive]
                fields.update(self._file_noise(rng, files[int(rng.integers(len(files)))], length))
        if effect == "reverb":
            fields.update(self._rir(rng))
        elif effect == "pitch":
            fields["pitch_cents"] = int(rng.integers(-distortions.pitch_cents, distortions.pitch_cents))
        elif effect == "band_reject":
            fields["band_low_hz"], fields["band_high_hz"] = draw_band(rng, self.sample_rate, distortions.band_scaler)
        return TransformRecord(op=f"{additive}+{effect}", seed=seed, **fields)

    def _snr(self, rng: np.random.Generator, snr_range: tuple[float, float]) -> float:
        lo, hi = snr_range
        if self.config.snr_integer and math.ceil(lo) <= math.floor(hi):
            return float(rng.integers(math.ceil(lo), math.floor(hi) + 1))
        return float(rng.uniform(lo, hi))

    def _file_noise(self, rng: np.random.Generator, index: int, length: int) -> dict[str, Any]:
        """File ``index`` of the noise bank: a random offset when longer than ``length``; when shorter, tiled
        from 0 or (``short_noise: stretch``) each sample repeated ``noise_repeat`` times."""
        file_length = self.noise_bank.lengths[index]
        fields: dict[str, Any] = {"noise": self.noise_bank.names[index], "noise_offset": 0}
        if file_length > length:
            fields["noise_offset"] = int(rng.integers(file_length - length + 1))
        elif file_length < length and self.config.short_noise == "stretch":
            fields["noise_repeat"] = length // file_length + 1
        return fields

    @staticmethod
    def _generated_noise(rng: np.random.Generator, color: str) -> dict[str, Any]:
        return {"noise": color, "noise_seed": int(rng.integers(2**31 - 1))}

    def _rir(self, rng: np.random.Generator) -> dict[str, Any]:
        index = int(rng.integers(len(self.rir_bank)))
        return {"rir": self.rir_bank.names[index], "rir_channel": int(rng.integers(self.rir_bank.channels(index)))}

    def _noise_batch(self, records: Sequence[TransformRecord], lengths: Sequence[int], samples: int,
                     device: torch.device) -> torch.Tensor:
        """Float32 ``(len(records), samples)`` noises on ``device``, zero beyond each length."""
        noise = self._workspace("noise", (len(records), samples), torch.float32, device)
        for row, record, length in zip(noise, records, lengths):
            if record.noise in COLORS:
                generator = torch.Generator().manual_seed(record.noise_seed)
                row[:length].copy_(colored_noise((length,), record.noise, generator))
            elif self.noise_bank is None:
                raise AudioError(f"record names noise file {record.noise!r} but there is no noise bank")
            else:
                bank = self.noise_bank
                index = bank.index_of(record.noise)
                if record.noise_repeat:  # setup 2's np.repeat: each sample noise_repeat times
                    whole = torch.empty(bank.lengths[index], device=row.device)
                    bank.segment(index, 0, len(whole), out=whole)
                    row[:length].copy_(whole.repeat_interleave(record.noise_repeat)[:length])
                else:
                    bank.segment(index, record.noise_offset or 0, length, out=row[:length])
            if length < samples:
                row[length:] = 0.0
        return noise

    def _workspace(self, name: str, shape: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A ``shape`` buffer kept between batches (contents undefined): fresh host tensors of tens of MB cost
        page faults at every batch, a third of the time on CPU when the allocator hands them back to the system."""
        numel = shape[0] * shape[1]
        buffer = self._buffers.get((name, device))
        if buffer is None or buffer.numel() < numel or buffer.dtype != dtype:
            buffer = self._buffers[(name, device)] = torch.empty(numel, dtype=dtype, device=device)
        return buffer[:numel].view(shape)

    @torch.no_grad()
    def apply(
        self, wav: torch.Tensor, lengths: torch.Tensor, records: Sequence[TransformRecord]
    ) -> tuple[torch.Tensor, list[TransformRecord]]:
        """Applies ``records`` (one per row) to ``wav`` ``(batch, samples)``; returns the contaminated batch
        and the records with ``noise_gain`` and ``rir_delay`` filled in. Deterministic given the records.

        On CUDA the only host syncs are reading ``lengths`` and, at the end, the gains for the records."""
        if wav.dim() != 2 or len(records) != wav.shape[0] or lengths.shape != (wav.shape[0],):
            raise ValueError(f"wav {tuple(wav.shape)}, lengths {tuple(lengths.shape)}, {len(records)} records")
        batch, samples = wav.shape
        if samples == 0:
            return wav.clone(), list(records)
        device = wav.device
        host_lengths = [min(int(n), samples) for n in lengths.tolist()]
        noisy = [b for b, r in enumerate(records) if r.noise is not None]
        reverberant = [b for b, r in enumerate(records) if r.rir is not None]
        if reverberant and self.rir_spectra is None:
            raise AudioError(f"record names RIR {records[reverberant[0]].rir!r} but there is no RIR bank")
        # every host -> device copy before the first kernel, while the device is idle
        lengths = torch.tensor(host_lengths, device=device)
        noise_rows, reverb_rows = torch.tensor(noisy, device=device), torch.tensor(reverberant, device=device)
        snr = torch.tensor([records[b].snr_db for b in noisy], device=device)

        padded = min(host_lengths) < samples
        base = wav.float() * length_mask(lengths, samples) if padded else wav.float()
        owned = padded or wav.dtype != torch.float32  # else base is the caller's tensor: never write into it
        filled = list(records)
        gains = None
        if noisy:
            everyone = len(noisy) == batch  # then whole-batch ops instead of gathers and scatters
            noise = self._noise_batch([records[b] for b in noisy], [host_lengths[b] for b in noisy], samples, device)
            gains = snr_gain(base if everyone else base[noise_rows], noise, lengths[noise_rows], snr)
            if everyone:
                out = base.addcmul_(noise, gains[:, None]) if owned else torch.addcmul(base, noise, gains[:, None])
            else:
                out = base if owned else base.clone()
                out.index_add_(0, noise_rows, noise.mul_(gains[:, None]))
        else:
            out = base if owned else base.clone()

        if reverberant:
            everyone = len(reverberant) == batch
            bank = self.rir_bank
            # n_fft from the batch width and the bank's longest RIR, not from this draw: batches of one width
            # reuse the cached RIR spectra
            n_fft = reverb_fft_size(samples, bank.longest)
            spectra, delays = self.rir_spectra.batch(
                [(bank.index_of(records[b].rir), records[b].rir_channel or 0) for b in reverberant], n_fft, device)
            shape = (len(reverberant), n_fft)
            workspace = (self._workspace("signal", shape, torch.float32, device),
                         self._workspace("spectrum", (shape[0], n_fft // 2 + 1), torch.complex64, device))
            wet = fft_convolve(out if everyone else out[reverb_rows], spectra, n_fft, workspace)
            if padded:
                wet.mul_(length_mask(lengths[reverb_rows], samples))
            if everyone:
                out.copy_(wet)
            else:
                out[reverb_rows] = wet
            for b, delay in zip(reverberant, delays):
                filled[b] = dataclasses.replace(filled[b], rir_delay=delay)
        for b, record in enumerate(records):  # each its own rate: one row at a time, on the device
            if record.pitch_cents:
                out[b, : host_lengths[b]] = pitch_shift(out[b, : host_lengths[b]], record.pitch_cents)
        banded = [b for b, r in enumerate(records) if r.band_low_hz is not None]
        if banded:
            rows = torch.tensor(banded, device=device)
            edges = torch.tensor([[records[b].band_low_hz, records[b].band_high_hz] for b in banded], device=device)
            filtered = band_reject(out[rows], edges[:, 0], edges[:, 1], self.sample_rate)
            if padded:
                filtered.mul_(length_mask(lengths[rows], samples))
            out[rows] = filtered
        if gains is not None:
            for b, gain in zip(noisy, gains.tolist()):
                filled[b] = dataclasses.replace(filled[b], noise_gain=gain)
        return out.to(wav.dtype), filled
