"""Configs of the contamination engine: what to draw (``ContaminationConfig``) and from where (``BankConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from robustdistiller_upstream.augment.generators import COLORS
from robustdistiller_upstream.errors import ConfigError


@dataclass
class NoiseSourceConfig:
    """One noise corpus. ``kind`` picks the layout read under ``path``:

    - ``musan``: ``<path>/<subset>/**`` for each of ``subsets`` (``noise``, ``music``, ``speech``);
    - ``urbansound8k``: ``<path>/metadata/UrbanSound8K.csv`` lists ``<path>/audio/fold*/...``, minus
      ``exclude_classes``;
    - ``dns`` (the DNS-challenge ``noise`` folder) and ``folder``: every wav/flac/ogg under ``path``.

    ``name`` (default: ``kind``) is how ``DistortionSetConfig.additive`` picks this source's files.
    """

    kind: Literal["musan", "urbansound8k", "dns", "folder"] = "folder"
    path: str = ""
    name: str = ""
    subsets: list[str] = field(default_factory=lambda: ["noise"])
    exclude_classes: list[str] = field(default_factory=lambda: ["children_playing", "street_music"])


@dataclass
class RirSourceConfig:
    """One RIR corpus: ``slr28`` (``RIRS_NOISES/simulated_rirs/**`` and the files of
    ``real_rirs_isotropic_noises`` but its ``*_noise_*`` recordings: RWCP, REVERB and AIR RIRs; ``path`` is
    ``RIRS_NOISES`` or its parent), ``dns`` (the DNS-challenge ``impulse_responses`` folder) or ``folder`` (every
    audio file under ``path``). ``rirs_only: false`` takes every ``.wav`` under an ``slr28`` tree as given, noise
    recordings included (OpenSLR's download has point-source and isotropic noises; the DNS-Challenge copy the
    RobustDistiller README names stores RIRs only: docs/fidelity.md)."""

    kind: Literal["slr28", "dns", "folder"] = "folder"
    path: str = ""
    rirs_only: bool = True


@dataclass
class SimulatedRoomsConfig:
    """Shoebox rooms simulated once at start-up (pyroomacoustics). RT60 in s, sides in m."""

    n_rooms: int = 0
    rt60: tuple[float, float] = (0.2, 0.8)
    room_dim_min: tuple[float, float, float] = (3.0, 3.0, 2.5)
    room_dim_max: tuple[float, float, float] = (10.0, 8.0, 4.0)
    seed: int = 0


@dataclass
class BankConfig:
    """Where noises and RIRs come from. Banks are decoded and resampled to ``sample_rate`` once; noise banks
    larger than ``memory_cap_mb`` (float32 at ``sample_rate``) stay on disk and are read by segment.
    ``skip_low_rate``: files below ``sample_rate`` are skipped (ours: their upsampled copies have no high band);
    false: upsampled, as the reference does. Noises shorter than ``min_noise_seconds`` are skipped (0: none,
    the reference: short noises are tiled)."""

    noises: list[NoiseSourceConfig] = field(default_factory=list)
    rirs: list[RirSourceConfig] = field(default_factory=list)
    simulated_rooms: SimulatedRoomsConfig = field(default_factory=SimulatedRoomsConfig)
    cache_dir: str = "~/.cache/robustdistiller/banks"
    memory_cap_mb: float = 4096.0
    sample_rate: int = 16000
    min_noise_seconds: float = 0.5
    skip_low_rate: bool = True


NON_ADDITIVE = ("reverb", "pitch", "band_reject", "clean")


@dataclass
class DistortionSetConfig:
    """Setup 2 of the correlation paper ("double" distortions: nobel861017/distort-robust-distilSSL
    ``distortions.py`` ``add_multi_distortions``): per utterance one additive distortion uniform over ``additive``,
    then one non-additive effect uniform over ``non_additive`` on the mixture. Replaces the ``p_*`` op draw and
    ``p_file_noise`` when ``enabled``; the SNR range, ``short_noise`` and the RIR options still apply.

    ``additive``: ``clean`` (none), a generated colour (``white`` = Gaussian) or the ``name`` of a noise source
    (one of its files, uniform). ``non_additive``: ``reverb`` (an RIR of the RIR bank), ``pitch`` (integer cents
    uniform in [-``pitch_cents``, ``pitch_cents``)), ``band_reject`` (a band uniform on the mel scale, up to
    27 * ``band_scaler`` / 256 of the mel range wide: SpecAugment's), ``clean``.
    """

    enabled: bool = False
    additive: list[str] = field(default_factory=lambda: ["musan", "white", "wham", "clean"])
    non_additive: list[str] = field(default_factory=lambda: list(NON_ADDITIVE))
    pitch_cents: int = 500
    band_scaler: float = 0.5

    def __post_init__(self) -> None:
        unknown = sorted(set(self.non_additive) - set(NON_ADDITIVE))
        if unknown or not self.non_additive or not self.additive:
            raise ConfigError(f"distortion_set: additive {self.additive} and non_additive {self.non_additive} must "
                              f"be non-empty, non_additive from {list(NON_ADDITIVE)}")
        if self.pitch_cents < 1 or self.band_scaler <= 0:
            raise ConfigError(f"distortion_set: pitch_cents {self.pitch_cents} must be >= 1 and band_scaler "
                              f"{self.band_scaler} > 0")


@dataclass
class ContaminationConfig:
    """What happens to each utterance (DESIGN 1). Defaults follow the RobustDistiller recipe.

    One op per utterance with probabilities ``p_clean``/``p_noise``/``p_reverb``/``p_noise_reverb`` (normalised).
    SNR in dB drawn uniformly from [``snr_min``, ``snr_max``] (integers when ``snr_integer``). A noise is a bank
    file with probability ``p_file_noise``, else a generated colour from ``generated_noise``.
    ``curriculum="inc_steps_noises"`` (the reference's, with N = ``curriculum_steps``): at step ``s < N`` the
    lowest SNR is ``round(linspace(snr_max, snr_min, N))[s]`` and a drawn reverberant op reverberates with
    probability ``linspace(0, 1, N)[s]`` (else it is ``clean`` / ``noise``); from step N on, ``snr_min`` and 1.
    ``compensate_delay`` shifts reverberant output left by the RIR's direct-path delay (its peak), so frames
    stay aligned with the clean input; ``normalize_rir`` scales each RIR to unit energy. Both are ours: the
    reference convolves with the raw RIR and keeps the first ``len(x)`` samples (both false in the paper recipes).
    ``short_noise``: a file noise shorter than the utterance is tiled (``tile``, RobustDistiller) or stretched
    (``stretch``): each sample repeated ``length // file_length + 1`` times and cut (setup 2's ``np.repeat``: the
    noise slowed down).
    ``distortion_set``: setup 2's draw instead of the op draw (``DistortionSetConfig``).
    """

    p_clean: float = 0.25
    p_noise: float = 0.25
    p_reverb: float = 0.25
    p_noise_reverb: float = 0.25
    snr_min: float = 0.0
    snr_max: float = 20.0
    snr_integer: bool = True
    p_file_noise: float = 0.7
    generated_noise: list[str] = field(default_factory=lambda: ["white"])
    curriculum: Literal["none", "inc_steps_noises"] = "none"
    curriculum_steps: int = 0
    compensate_delay: bool = True
    normalize_rir: bool = True
    short_noise: Literal["tile", "stretch"] = "tile"
    distortion_set: DistortionSetConfig = field(default_factory=DistortionSetConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        probs = (self.p_clean, self.p_noise, self.p_reverb, self.p_noise_reverb)
        if min(probs) < 0 or sum(probs) <= 0:
            raise ConfigError(f"op probabilities {probs} must be >= 0 with a positive sum")
        if self.snr_min > self.snr_max:
            raise ConfigError(f"snr_min {self.snr_min} > snr_max {self.snr_max}")
        if not 0.0 <= self.p_file_noise <= 1.0:
            raise ConfigError(f"p_file_noise {self.p_file_noise} is not in [0, 1]")
        if self.curriculum != "none" and self.curriculum_steps <= 0:
            raise ConfigError("curriculum needs curriculum_steps > 0")
        unknown = sorted(set(self.generated_noise) - set(COLORS))
        if unknown or not self.generated_noise:
            raise ConfigError(f"generated_noise {self.generated_noise}: pick from {sorted(COLORS)}")
