"""The s3prl upstream expert for our students (and any DistilHuBERT-format checkpoint)."""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch
from s3prl.upstream.interfaces import UpstreamBase
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from robustdistiller_upstream.checkpoint import load_student_checkpoint
from robustdistiller_upstream.s3prl_plugin.options import read_upstream_options

logger = logging.getLogger(__name__)

def featurizer_safe(states: list[Tensor]) -> list[Tensor]:
    """The states of ``states[0]``'s (the encoder's) width, each (batch, frames, dim), in order.

    s3prl's default featurizer stacks every tensor of ``hidden_states`` for its weighted sum, so prediction heads
    of another width (e.g. 80-d log-mel heads on a 256-d encoder) must not be among them. When all widths agree,
    as in every paper recipe, nothing is dropped.
    """
    width = states[0].shape[-1]
    return [state for state in states if state.shape[-1] == width]


class UpstreamExpert(UpstreamBase):
    """``forward(list of (samples,) 16 kHz tensors)`` -> s3prl's distiller output contract.

    ``hidden_states``: [projected CNN features, each transformer layer, each prediction head], every one
    (batch, frames, dim) - the same list, order and lengths as stock ``distiller_local`` for the same weights -
    without the heads when their width differs from the encoder's (``featurizer_safe``). ``predictions``: the
    heads alone (``-s predictions``), ``paper``: the last transformer layer (``-s paper``). All float32, also
    under ``autocast: bf16``.

    Options (``trust_checkpoint``, ``autocast``) come from the ``model_config`` YAML (s3prl's ``-g``) and the
    keyword arguments (``extra_conf``): :class:`~robustdistiller_upstream.s3prl_plugin.options.UpstreamOptions`.
    """

    def __init__(
        self,
        ckpt: str,
        model_config: Optional[str] = None,
        trust_checkpoint: Optional[bool] = None,
        autocast: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("refresh", None)  # s3prl passes it to every entry; it only matters for downloads
        super().__init__(**kwargs)
        self.options = read_upstream_options(model_config, trust_checkpoint=trust_checkpoint, autocast=autocast)
        checkpoint = load_student_checkpoint(ckpt, self.options.trust_checkpoint)
        self.model = checkpoint.build_model()
        self.metadata = checkpoint.metadata
        logger.info("loaded %s (%.1fM parameters without heads)", ckpt, self.model.num_parameters() / 1e6)

    def get_downsample_rates(self, key: str) -> int:
        return self.model.config.downsample_rate

    def forward(self, wavs: list[Tensor]) -> dict[str, Any]:
        lengths = torch.tensor([len(wav) for wav in wavs], device=wavs[0].device)
        with self.options.forward_context(wavs[0].device):
            out = self.model(pad_sequence(wavs, batch_first=True), lengths)
        states = self.options.as_returned([out.projected, *out.layer_hiddens, *out.predictions.unbind(1)])
        layers, heads = states[1 : 1 + len(out.layer_hiddens)], states[1 + len(out.layer_hiddens) :]
        hidden_states = featurizer_safe(states)
        return {
            "hidden_states": hidden_states,
            "last_hidden_state": hidden_states[-1],
            "pad_mask": (~out.padding_mask).to(states[0].dtype),  # (batch, frames), 1 = valid, as s3prl
            "paper": layers[-1],  # the DistilHuBERT paper's representation
            "predictions": heads,
        }
