"""s3prl hub entries for pruned WavLM/HuBERT models (RD-DPWavLM; DPHuBERT/DPWavLM releases).

``robustdistiller_dpwavlm_local(ckpt=PATH)`` and ``robustdistiller_dpwavlm_url(ckpt=URL)`` load a checkpoint in
DPHuBERT's layout (``{"config", "state_dict"}``: our ``robustdistiller prune`` exports, ``DPHuBERT-sp0.75.pth``,
``DPWavLM-sp0.75.pth``, the reference ``RDDPWavLM-sp0.75.pth``) with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from s3prl.upstream.interfaces import UpstreamBase
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from robustdistiller_upstream.errors import CheckpointError, ConfigError
from robustdistiller_upstream.prune.checkpoint import load_pruned_checkpoint
from robustdistiller_upstream.prune.params import num_params
from robustdistiller_upstream.s3prl_plugin.download import download_checkpoint
from robustdistiller_upstream.s3prl_plugin.options import read_upstream_options

logger = logging.getLogger(__name__)

HUB_ENTRIES = ["robustdistiller_dpwavlm_local", "robustdistiller_dpwavlm_url"]


class DPWavLMExpert(UpstreamBase):
    """``forward(list of (samples,) 16 kHz tensors)`` -> ``hidden_states``: the transformer input and every
    layer's output (s3prl's WavLM/HuBERT convention), each (batch, frames, dim); ``last_hidden_state``; ``pad_mask``
    (batch, frames), 1 on valid frames. All float32, also under the ``autocast: bf16`` option (``model_config``
    YAML or keyword argument, as for ``robustdistiller_local``)."""

    def __init__(self, ckpt: str, model_config: Optional[str] = None, autocast: Optional[str] = None,
                 **kwargs: Any) -> None:
        kwargs.pop("refresh", None)
        super().__init__(**kwargs)
        self.options = read_upstream_options(model_config, autocast=autocast)
        if self.options.trust_checkpoint:
            raise ConfigError(f"{model_config}: trust_checkpoint does not apply to robustdistiller_dpwavlm_local "
                              "(pruned checkpoints hold only tensors and always load with weights_only=True)")
        self.model = load_pruned_checkpoint(ckpt).build_model()
        logger.info("loaded %s (%.2fM parameters)", ckpt, num_params(self.model) / 1e6)

    def get_downsample_rates(self, key: str) -> int:
        return self.model.downsample_rate

    def forward(self, wavs: list[Tensor]) -> dict[str, Any]:
        lengths = torch.tensor([len(wav) for wav in wavs], device=wavs[0].device)
        with self.options.forward_context(wavs[0].device):
            hidden_states, frame_lengths = self.model(pad_sequence(wavs, batch_first=True), lengths)
        hidden_states = self.options.as_returned(hidden_states)
        frames = hidden_states[0].shape[1]
        valid = torch.arange(frames, device=lengths.device)[None, :] < frame_lengths[:, None]
        return {
            "hidden_states": hidden_states,
            "last_hidden_state": hidden_states[-1],
            "pad_mask": valid.to(hidden_states[0].dtype),
        }


def robustdistiller_dpwavlm_local(ckpt: str, *args: Any, **kwargs: Any) -> DPWavLMExpert:
    """A pruned WavLM/HuBERT from a local DPHuBERT-layout checkpoint. ckpt: PATH."""
    if not ckpt:
        raise CheckpointError("robustdistiller_dpwavlm_local needs a checkpoint path (s3prl: -k PATH)")
    return DPWavLMExpert(ckpt, *args, **kwargs)


def robustdistiller_dpwavlm_url(ckpt: str, refresh: bool = False, *args: Any, **kwargs: Any) -> DPWavLMExpert:
    """A pruned model downloaded from ckpt (URL; ``#sha256=HEX`` pins its hash), cached by s3prl."""
    return robustdistiller_dpwavlm_local(str(download_checkpoint(ckpt, refresh=refresh)), *args, **kwargs)
