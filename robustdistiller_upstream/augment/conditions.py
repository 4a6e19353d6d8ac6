"""Test conditions: a one-line spec (``noise:musan:snr=5``) -> contamination and bank configs.

Grammar: ``OP[:SOURCE][:KEY=VALUE]...`` with OP one of ``clean``, ``noise``, ``reverb``, ``noise+reverb``.

- noise sources (SOURCE of ``noise``/``noise+reverb``): ``white``, ``pink``, ``brown`` (generated) or a bank
  name; key ``snr=DB`` (a number) or ``snr=LO..HI`` (uniform; integers when both ends are integers).
- reverberation: ``rir=BANK`` (SOURCE of ``reverb``) or ``rt60=S`` (simulated rooms of RT60 S seconds;
  ``rooms=N`` of them, 8 by default, sides ``room=WxDxH`` m or random 4-10 x 3-8 x 2.5-4 m).
- ``align=0`` keeps the RIR's direct-path delay (default 1: compensated, frames stay aligned).

Bank names: ``musan`` (MUSAN ``noise/``), ``musan_music``, ``musan_speech``, ``urbansound8k``, ``dns`` (noise
folder), ``slr28`` and ``dns_rirs`` (RIR layouts); any other name is a plain folder of audio files.

Conditions YAML::

    banks:                       # name -> folder; ${VAR} and ~ are expanded
      musan: ${DATA_ROOT}/musan
      slr28: ${DATA_ROOT}/RIRS_NOISES
    conditions:                  # name -> {spec, seed} or just the spec string
      musan_snr5: {spec: "noise:musan:snr=5", seed: 0}
      reverb_0.6: "reverb:rt60=0.6"
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from robustdistiller_upstream.augment.config import (
    BankConfig,
    ContaminationConfig,
    NoiseSourceConfig,
    RirSourceConfig,
    SimulatedRoomsConfig,
)
from robustdistiller_upstream.augment.contaminator import OPS
from robustdistiller_upstream.augment.generators import COLORS
from robustdistiller_upstream.config import read_yaml
from robustdistiller_upstream.errors import ConfigError

_KEYS = {"snr", "rir", "rt60", "rooms", "room", "align"}
_RIR_LAYOUTS = {"slr28": "slr28", "dns_rirs": "dns"}
_NOISE_LAYOUTS = {"urbansound8k": "urbansound8k", "dns": "dns"}


@dataclass
class Condition:
    """A parsed condition: the engine's config and where its banks come from."""

    spec: str
    contamination: ContaminationConfig
    banks: BankConfig = field(default_factory=BankConfig)


def expand_path(value: str, where: str) -> str:
    """``${VAR}``/``$VAR``/``~`` expanded; an unset variable is a ``ConfigError`` naming ``where``."""
    expanded = os.path.expanduser(os.path.expandvars(value))
    unresolved = re.findall(r"\$\{?(\w+)", expanded)
    if unresolved:
        raise ConfigError(f"{where}: environment variable(s) {unresolved} not set in {value!r}")
    return expanded


def _noise_source(name: str, path: str) -> NoiseSourceConfig:
    if name == "musan" or name.startswith("musan_"):
        return NoiseSourceConfig(kind="musan", path=path, subsets=[name.partition("_")[2] or "noise"])
    return NoiseSourceConfig(kind=_NOISE_LAYOUTS.get(name, "folder"), path=path)


def _bank_path(name: str, banks: Mapping[str, str], spec: str) -> str:
    if name not in banks:
        raise ConfigError(f"condition {spec!r}: bank {name!r} not given (known: {sorted(banks) or 'none'}; "
                          f"add --bank {name}=PATH or a banks: entry)")
    return banks[name]


def _snr(value: str, spec: str) -> tuple[float, float, bool]:
    lo, sep, hi = value.partition("..")
    try:
        low, high = float(lo), float(hi if sep else lo)
    except ValueError:
        raise ConfigError(f"condition {spec!r}: snr={value!r} is not a number or LO..HI") from None
    integer = bool(sep) and low.is_integer() and high.is_integer()
    return low, high, integer


def parse_condition(
    spec: str, banks: Mapping[str, str], seed: int = 0, cache_dir: str | None = None
) -> Condition:
    """Builds the configs of ``spec`` (grammar in the module docstring); ``banks`` maps names to folders."""
    op, *parts = spec.strip().split(":")
    if op not in OPS:
        raise ConfigError(f"condition {spec!r}: operation {op!r} is not one of {list(OPS)}")
    source, keys = None, {}
    for i, part in enumerate(parts):
        key, sep, value = part.partition("=")
        if not sep:
            if i or op == "clean":
                raise ConfigError(f"condition {spec!r}: {part!r} should be KEY=VALUE")
            source = part
        elif key not in _KEYS:
            raise ConfigError(f"condition {spec!r}: unknown key {key!r} (known: {sorted(_KEYS)})")
        else:
            keys[key] = value
    has_noise, has_reverb = "noise" in op, "reverb" in op
    if op == "reverb" and source is not None:
        keys.setdefault("rir", source)
        source = None
    if has_noise and (source is None or "snr" not in keys):
        raise ConfigError(f"condition {spec!r}: {op} needs a noise source and snr=, e.g. {op}:white:snr=5")
    if has_reverb and ("rir" in keys) == ("rt60" in keys):
        raise ConfigError(f"condition {spec!r}: {op} needs exactly one of rir=BANK or rt60=SECONDS")
    if not has_noise and "snr" in keys or not has_reverb and {"rir", "rt60"} & set(keys):
        raise ConfigError(f"condition {spec!r}: keys {sorted(keys)} do not fit operation {op!r}")
    if {"rooms", "room"} & set(keys) and "rt60" not in keys:
        raise ConfigError(f"condition {spec!r}: rooms=/room= describe simulated rooms and need rt60=")

    probs = {f"p_{name.replace('+', '_')}": float(name == op) for name in OPS}
    fields: dict = dict(probs, seed=seed, compensate_delay=keys.get("align", "1") != "0")
    bank = BankConfig(cache_dir=cache_dir or BankConfig().cache_dir)
    if has_noise:
        fields["snr_min"], fields["snr_max"], fields["snr_integer"] = _snr(keys["snr"], spec)
        if source in COLORS:
            fields.update(p_file_noise=0.0, generated_noise=[source])
        else:
            fields["p_file_noise"] = 1.0
            bank.noises = [_noise_source(source, _bank_path(source, banks, spec))]
    if "rir" in keys:
        name = keys["rir"]
        bank.rirs = [RirSourceConfig(kind=_RIR_LAYOUTS.get(name, "folder"), path=_bank_path(name, banks, spec))]
    if "rt60" in keys:
        try:
            rt60, rooms = float(keys["rt60"]), int(keys.get("rooms", "8"))
            dims = [float(d) for d in keys["room"].split("x")] if "room" in keys else None
        except ValueError:
            raise ConfigError(f"condition {spec!r}: rt60/rooms/room values are not numbers") from None
        if dims is not None and len(dims) != 3:
            raise ConfigError(f"condition {spec!r}: room={keys['room']!r} should be WxDxH in metres")
        bank.simulated_rooms = SimulatedRoomsConfig(
            n_rooms=rooms,
            rt60=(rt60, rt60),
            room_dim_min=tuple(dims) if dims else (4.0, 3.0, 2.5),
            room_dim_max=tuple(dims) if dims else (10.0, 8.0, 4.0),
            seed=seed,
        )
    return Condition(spec=spec, contamination=ContaminationConfig(**fields), banks=bank)


def load_conditions(path: str | Path) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """Reads a conditions YAML: ``(banks {name: folder}, conditions {name: (spec, seed)})``."""
    data = read_yaml(path)
    unknown = sorted(set(data) - {"banks", "conditions"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}; known: ['banks', 'conditions']")
    raw_banks = data.get("banks") or {}
    if not isinstance(raw_banks, dict):
        raise ConfigError(f"{path}: banks must map names to folders")
    banks = {str(k): expand_path(str(v), f"{path}: banks.{k}") for k, v in raw_banks.items()}
    conditions = {}
    for name, entry in (data.get("conditions") or {}).items():
        if isinstance(entry, str):
            entry = {"spec": entry}
        if not isinstance(entry, dict) or "spec" not in entry or set(entry) - {"spec", "seed"}:
            raise ConfigError(f"{path}: conditions.{name} must be a spec string or {{spec: ..., seed: N}}")
        seed = entry.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"{path}: conditions.{name}.seed must be an integer")
        conditions[str(name)] = (str(entry["spec"]), seed)
    return banks, conditions
