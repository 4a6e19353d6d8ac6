"""RIR spectra computed once and reused: the FFT of RIR ``i`` (channel ``c``, normalised and advanced by its
direct-path delay as the config says) at FFT size ``n_fft`` on ``device`` is a pure function of those, so
batches of the same width reuse it instead of transforming the RIR again (one FFT of three per batch).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch

from robustdistiller_upstream.augment.banks import RirBank
from robustdistiller_upstream.augment.ops import direct_path_delay, place_rirs

# (RIR index, channel, n_fft, device)
SpectrumKey = tuple[int, int, int, torch.device]


class RirSpectra:
    """Least-recently-used cache of complex64 ``(n_fft // 2 + 1,)`` RIR spectra of ``bank``, at most
    ``max_bytes`` of them (the entries a batch still uses survive their eviction until it is done).

    ``normalize`` scales each RIR to unit energy; ``compensate_delay`` advances it by its direct-path delay
    (samples), returned beside the spectrum. Each spectrum is its own FFT, so its bytes never depend on which
    other RIRs were missing at the same time (outputs stay identical whatever the cache held).
    """

    def __init__(self, bank: RirBank, normalize: bool, compensate_delay: bool, max_bytes: int):
        self.bank = bank
        self.normalize = normalize
        self.compensate_delay = compensate_delay
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[SpectrumKey, tuple[torch.Tensor, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, index: int, channel: int, n_fft: int, device: torch.device) -> tuple[torch.Tensor, int]:
        """(complex64 ``(n_fft // 2 + 1,)`` spectrum on ``device``, delay in samples) of one RIR channel."""
        key = (index, channel, n_fft, device)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        rir = self.bank.get(index, channel)
        if self.normalize:
            rir = rir / rir.norm().clamp(min=1e-12)
        delay = direct_path_delay(rir) if self.compensate_delay else 0
        entry = torch.fft.rfft(place_rirs([rir], [delay], n_fft, device)[0]), delay
        self._entries[key] = entry
        self.bytes += entry[0].nbytes
        while self.bytes > self.max_bytes and self._entries:
            _, (old, _) = self._entries.popitem(last=False)
            self.bytes -= old.nbytes
        return entry

    def batch(
        self, rirs: Sequence[tuple[int, int]], n_fft: int, device: torch.device
    ) -> tuple[list[torch.Tensor], list[int]]:
        """Complex64 ``(n_fft // 2 + 1,)`` spectra of the (index, channel) pairs ``rirs`` and their delays
        (samples)."""
        entries = [self.get(index, channel, n_fft, device) for index, channel in rirs]
        return [spectrum for spectrum, _ in entries], [delay for _, delay in entries]
