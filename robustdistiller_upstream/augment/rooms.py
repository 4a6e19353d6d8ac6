"""Simulated room impulse responses (image source method, pyroomacoustics) for users without RIR corpora."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from robustdistiller_upstream.errors import AudioError

# Source and microphone keep this distance (m) from every wall.
_WALL_MARGIN = 0.5


def simulate_rir(
    rt60: float,
    room_dim: Sequence[float] = (6.0, 5.0, 3.0),
    sample_rate: int = 16000,
    seed: int = 0,
) -> np.ndarray:
    """Float32 ``(samples,)`` RIR of a shoebox room with reverberation time ``rt60`` (s), size ``room_dim`` (m).

    Absorption and reflection order come from Sabine's formula (``pyroomacoustics.inverse_sabine``); source and
    microphone are placed uniformly at random (``seed``) at least 0.5 m from the walls. Simulation time grows
    with RT60 (about 0.5 s for 0.6 s in a 6 x 5 x 3 m room).
    """
    import pyroomacoustics as pra

    dims = [float(d) for d in room_dim]
    if len(dims) != 3 or min(dims) <= 2 * _WALL_MARGIN:
        raise AudioError(f"room_dim {tuple(room_dim)}: need 3 sides longer than {2 * _WALL_MARGIN} m")
    try:
        absorption, max_order = pra.inverse_sabine(float(rt60), dims)
    except ValueError as exc:
        raise AudioError(f"rt60={rt60} s does not fit room {tuple(dims)} m ({exc})") from None
    rng = np.random.default_rng(seed)
    room = pra.ShoeBox(dims, fs=sample_rate, materials=pra.Material(absorption), max_order=max_order)
    room.add_source([rng.uniform(_WALL_MARGIN, d - _WALL_MARGIN) for d in dims])
    room.add_microphone([rng.uniform(_WALL_MARGIN, d - _WALL_MARGIN) for d in dims])
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float32)
