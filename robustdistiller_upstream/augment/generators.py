"""Generated noises: white, pink and brown (power spectral density ~ 1/f^0, 1/f^1, 1/f^2).

All return unit mean power per row, so an SNR gain applies to them as to any file noise.
"""

from __future__ import annotations

import torch

# colour -> exponent of the 1/f^exponent power spectral density
COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}


def colored_noise(
    shape: tuple[int, ...], color: str = "white", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Gaussian noise of the given colour, float32 ``shape`` = ``(..., samples)``, unit mean power per row.

    Coloured noise is white noise shaped in the frequency domain (amplitude ~ f^(-exponent/2)), DC removed.
    Drawn on the CPU from ``generator``, so a seeded generator gives the same samples on every machine.
    """
    if color not in COLORS:
        raise ValueError(f"unknown noise colour {color!r}; known: {sorted(COLORS)}")
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    exponent = COLORS[color]
    samples = shape[-1]
    if exponent and samples > 1:
        spectrum = torch.fft.rfft(noise, dim=-1)
        freqs = torch.arange(spectrum.shape[-1], dtype=torch.float32)
        shaping = freqs.clamp(min=1.0).pow(-exponent / 2)
        shaping[0] = 0.0
        noise = torch.fft.irfft(spectrum * shaping, n=samples, dim=-1)
    power = noise.pow(2).mean(dim=-1, keepdim=True).clamp(min=1e-20)
    return noise / power.sqrt()
