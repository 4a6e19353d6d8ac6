"""The frozen teacher: any s3prl upstream, its hidden states selected by layer index (DESIGN 1).

``hidden_states`` follow s3prl's convention: index 0 is the transformer input (CNN + projection + positional
convolution), index ``i`` the output of transformer layer ``i``; DistilHuBERT's ``pred_layer_id`` indexes them.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from robustdistiller_upstream.errors import TeacherError
from robustdistiller_upstream.s3prl_stack import import_s3prl_hub

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TeacherConfig:
    """``name``: an s3prl hub entry (``wavlm_base_plus``, ``hubert_local``, ``baseline_local``...); ``ckpt``: the
    checkpoint path or URL of ``*_local``/``*_url`` entries; ``model_config``: the YAML of config-built entries
    (``baseline_local``). ``precision``: dtype of the teacher's autocast (fp32 = off). ``max_frame_diff``: frames
    the teacher may differ from the student by (both are cut to the shorter; more is an error). ``dropout``: the
    pretraining loop puts the teacher in train mode, so its dropout is active while it computes the targets (the
    reference: s3prl's pretrain runner calls ``.train()`` on the whole expert, teacher included, and only sets the
    teacher's layer drop to 0); false: eval mode, deterministic targets. Layer drop is 0 either way.
    ``contamination``: the teacher hears its own draw of ``denoising.contamination``, independent of the student's
    (the correlation paper's setup 2); false: the clean input (RobustDistiller, DistilHuBERT)."""

    name: str = "wavlm_base_plus"
    ckpt: Optional[str] = None
    model_config: Optional[str] = None
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    max_frame_diff: int = 2
    dropout: bool = False
    contamination: bool = False


def _hub_entry(name: str):
    hub = import_s3prl_hub()
    entry = getattr(hub, name, None)
    if entry is None or not callable(entry):
        close = difflib.get_close_matches(name, [n for n in dir(hub) if not n.startswith("_")], n=5)
        raise TeacherError(f"teacher.name: {name!r} is not an s3prl hub entry (close: {close})")
    return entry


def load_upstream(config: TeacherConfig) -> nn.Module:
    """Builds the s3prl upstream named by ``config`` (file arguments checked first, with the key named)."""
    kwargs = {}
    if config.name.endswith("_local"):
        path = config.ckpt if config.name != "baseline_local" else config.model_config
        key = "teacher.ckpt" if config.name != "baseline_local" else "teacher.model_config"
        if not path:
            raise TeacherError(f"{key}: teacher {config.name} needs a file, none given")
        if not os.path.isfile(path):
            raise TeacherError(f"{key}: {path} does not exist (teacher {config.name})")
    if config.ckpt:
        kwargs["ckpt"] = config.ckpt
    if config.model_config:
        kwargs["model_config"] = config.model_config
    entry = _hub_entry(config.name)
    try:
        return entry(**kwargs)
    except (OSError, KeyError, RuntimeError, ValueError, AssertionError) as exc:
        raise TeacherError(f"teacher {config.name} ({config.ckpt or config.model_config}): cannot load ({exc})") from exc


class Teacher(nn.Module):
    """A frozen s3prl upstream that returns the hidden states ``layers`` for a padded batch.

    ``forward(wav (batch, samples), wav_lengths (batch,)) -> list of (batch, frames, dim)``, one per layer, no grad.
    Built in eval mode; ``train()`` turns its dropout on (never its layer drop, never gradients).
    """

    def __init__(self, config: TeacherConfig, layers: Sequence[int], upstream: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.config = config
        self.layers = list(layers)
        self.upstream = upstream if upstream is not None else load_upstream(config)
        self.upstream.eval()
        self.upstream.requires_grad_(False)
        if hasattr(self.upstream, "set_layer_drop"):
            self.upstream.set_layer_drop(0.0)
        encoder = getattr(getattr(self.upstream, "model", None), "encoder", None)
        if hasattr(encoder, "layerdrop"):  # what the reference sets, for experts without set_layer_drop
            encoder.layerdrop = 0.0
        self.downsample_rate = int(self.upstream.get_downsample_rates("hidden_states"))
        self.num_hidden_states, self.dim = self._probe()
        bad = [layer for layer in self.layers if not 0 <= layer < self.num_hidden_states]
        if bad:
            raise TeacherError(
                f"student.pred_layer_id: layer(s) {bad} do not exist in teacher {config.name}, which has "
                f"{self.num_hidden_states} hidden states (indices 0..{self.num_hidden_states - 1})"
            )

    @torch.no_grad()
    def _probe(self) -> tuple[int, int]:
        device = next(self.upstream.parameters(), torch.empty(0)).device
        hidden = self.upstream([torch.zeros(16000, device=device)])["hidden_states"]
        return len(hidden), int(hidden[0].shape[-1])

    def _autocast(self, device: torch.device):
        dtype = PRECISIONS[self.config.precision]
        if dtype is torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    @torch.no_grad()
    def forward(self, wav: Tensor, wav_lengths: Tensor) -> list[Tensor]:
        """wav: (batch, samples) float, zero-padded; wav_lengths: (batch,) -> ``len(layers)`` x (batch, frames, dim) fp32."""
        wavs = [w[: int(n)] for w, n in zip(wav, wav_lengths)]
        with self._autocast(wav.device):
            hidden = self.upstream(wavs)["hidden_states"]
        return [hidden[layer].float() for layer in self.layers]


def align_frames(student_frames: int, teacher: list[Tensor], max_diff: int, teacher_name: str) -> tuple[int, list[Tensor]]:
    """Cuts teacher states and the student's frame count to the shorter one; a gap over ``max_diff`` is an error
    (different frame rates: e.g. a 10 ms teacher for a 20 ms student)."""
    teacher_frames = teacher[0].shape[1]
    if abs(teacher_frames - student_frames) > max_diff:
        raise TeacherError(
            f"teacher {teacher_name} gives {teacher_frames} frames where the student gives {student_frames} "
            f"(more than teacher.max_frame_diff={max_diff}): their frame rates differ; the student downsamples by "
            "its extractor_conv_layers strides"
        )
    frames = min(teacher_frames, student_frames)
    return frames, [t[:, :frames] for t in teacher]


# Student parameter prefixes copied from the teacher besides the transformer layers: the reference's
# (RobustDistiller and s3prl's DistilHuBERT pretrain_expert.py); encoder.layer_norm keeps its fresh init there
_FRONT_END = ("feature_extractor.", "post_extract_proj.", "encoder.pos_conv.")
# WavLM parameters the student does not have (gated relative-position attention): never copied
_WAVLM_ONLY = ("relative_attention_bias", "grep_linear", "grep_a")


def teacher_module(upstream: nn.Module) -> nn.Module:
    """The wav2vec2-family model inside an s3prl expert (``expert.model``), which holds the parameter tree."""
    model = getattr(upstream, "model", None)
    if not isinstance(model, nn.Module) or not hasattr(model, "feature_extractor"):
        raise TeacherError(
            f"{type(upstream).__module__}: this teacher has no wav2vec2-style model (feature_extractor, encoder) to "
            "initialise the student from; set student_init=false"
        )
    return model


def init_student_from_teacher(student: nn.Module, upstream: nn.Module) -> list[str]:
    """Copies the CNN, projection and positional convolution, and transformer layer ``i`` from teacher layer ``i``
    (the reference's set: ``encoder.layer_norm`` keeps its fresh init; s3prl's DistilHuBERT names equal the
    teacher's). Returns the copied student keys.

    WavLM's relative-position and gating parameters have no student counterpart and are left out. A missing or
    mis-shaped parameter is an error naming it.
    """
    source = teacher_module(upstream).state_dict()
    target = student.state_dict()
    n_layers = len(student.encoder.layers)
    wanted = [
        key
        for key in target
        if key.startswith(_FRONT_END) or any(key.startswith(f"encoder.layers.{i}.") for i in range(n_layers))
    ]
    missing = [key for key in wanted if key not in source]
    shapes = [f"{key} {tuple(source[key].shape)} vs {tuple(target[key].shape)}" for key in wanted
              if key in source and source[key].shape != target[key].shape]
    if missing or shapes:
        raise TeacherError(
            "student init from teacher: "
            + (f"teacher lacks {missing[:5]}{'...' if len(missing) > 5 else ''}; " if missing else "")
            + (f"shapes differ: {shapes[:3]}; " if shapes else "")
            + "match the student's sizes to the teacher's or set student_init=false"
        )
    skipped = sorted(k for k in source if any(tag in k for tag in _WAVLM_ONLY))
    if skipped:
        logger.info("student init: not copied (WavLM relative position / gating): %s", ", ".join(skipped))
    student.load_state_dict({key: source[key] for key in wanted}, strict=False)
    logger.info("student init: copied %d tensors from the teacher (%d transformer layers)", len(wanted), n_layers)
    return wanted
