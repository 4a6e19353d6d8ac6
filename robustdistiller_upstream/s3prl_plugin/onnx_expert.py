"""The s3prl upstream that runs an exported ONNX file (fp32 or int8) in ONNX Runtime on the CPU.

Same output contract as the PyTorch upstream it was exported from (``robustdistiller_local`` or
``robustdistiller_dpwavlm_local``): the hidden-state list, ``last_hidden_state`` and ``pad_mask``, so the SUPERB
sweep and ``run_downstream.py`` evaluate it the same way under every test condition.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from s3prl.upstream.interfaces import UpstreamBase
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from robustdistiller_upstream.errors import CheckpointError, ConfigError, UserError
from robustdistiller_upstream.s3prl_plugin.expert import featurizer_safe

logger = logging.getLogger(__name__)


class OnnxUpstreamExpert(UpstreamBase):
    """``forward(list of (samples,) 16 kHz tensors)`` -> ``hidden_states`` (each (batch, frames, dim), on the
    input's device), ``last_hidden_state``, ``pad_mask`` (batch, frames), 1 on valid frames. ONNX Runtime uses
    ``torch.get_num_threads()`` intra-op threads (``OMP_NUM_THREADS`` applies to both)."""

    def __init__(self, ckpt: str, model_config: Optional[str] = None, **kwargs: Any) -> None:
        kwargs.pop("refresh", None)
        if model_config:
            raise ConfigError(f"{model_config}: robustdistiller_onnx_local takes no upstream options (-g): the ONNX "
                              "file holds the whole model")
        super().__init__(**kwargs)
        from robustdistiller_upstream.export.onnx import metadata_of, ort_session

        self.session = ort_session(ckpt, threads=torch.get_num_threads())
        meta = metadata_of(self.session)
        if "downsample_rate" not in meta:
            raise CheckpointError(f"{ckpt}: not an ONNX file written by `robustdistiller export` (no "
                                  "robustdistiller.* metadata)")
        self.downsample_rate = int(meta["downsample_rate"])
        self.precision = meta.get("precision", "?")
        logger.info("loaded %s (%s, %s) into ONNX Runtime", ckpt, meta.get("kind"), self.precision)

    def get_downsample_rates(self, key: str) -> int:
        return self.downsample_rate

    def forward(self, wavs: list[Tensor]) -> dict[str, Any]:
        from robustdistiller_upstream.export.onnx import run_session

        if self.training and torch.is_grad_enabled():
            raise UserError("robustdistiller_onnx_local is a frozen ONNX Runtime graph: upstream fine-tuning "
                            "(run_downstream.py -f) is not possible with it. Fine-tune the PyTorch checkpoint with "
                            "-u robustdistiller_local instead (outside s3prl's runner: call .eval() or run under "
                            "torch.no_grad() to use it as a frozen feature extractor).")
        device = wavs[0].device
        lengths = torch.tensor([len(wav) for wav in wavs])
        wav = pad_sequence([w.detach().float().cpu() for w in wavs], batch_first=True)
        hidden, frame_lengths = run_session(self.session, wav, lengths)
        hidden = featurizer_safe([h.to(device) for h in hidden])
        valid = torch.arange(hidden[0].shape[1])[None, :] < frame_lengths[:, None]
        return {"hidden_states": hidden, "last_hidden_state": hidden[-1], "pad_mask": valid.float().to(device)}
