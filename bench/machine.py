"""What the benches print about the machine they ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# The instructions torch's CPU bf16 kernels (oneDNN) use: AVX-512 BF16 dot products, AMX tile multiplies.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags(names: tuple[str, ...] = BF16_FLAGS) -> str:
    """Which of ``names`` the CPU has, e.g. ``"avx512_bf16 yes, amx_bf16 no"`` (``unknown`` without /proc), and the
    ``ONEDNN_MAX_CPU_ISA`` limit where one is set (it makes oneDNN's kernels act as on an older CPU)."""
    flags = next((set(line.split(":", 1)[1].split()) for line in _cpuinfo() if line.startswith("flags")), None)
    found = ", ".join(f"{name} {'unknown' if flags is None else 'yes' if name in flags else 'no'}" for name in names)
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return f"{found}; oneDNN limited to ONEDNN_MAX_CPU_ISA={limit}" if limit else found
