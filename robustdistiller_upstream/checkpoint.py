"""Student checkpoints: reading s3prl's DistilHuBERT format and writing ours (a superset that stock s3prl reads).

Layout (s3prl ``distiller_local``): ``{"Config": {"distiller": {...}, ...}, "Distiller": state_dict}``. Ours adds
``"RobustDistiller": {"format_version", "package_version", ...}`` (teacher, recipe, step) and nothing that needs
unpickling of code, so ``torch.load(weights_only=True)`` reads it and stock s3prl loads it unchanged.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import Tensor

from robustdistiller_upstream.version import __version__
from robustdistiller_upstream.errors import CheckpointError
from robustdistiller_upstream.files import atomic_output
from robustdistiller_upstream.model import StudentConfig, StudentModel

PathLike = Union[str, "os.PathLike[str]"]
FORMAT_VERSION = 1
TRUST_HINT = (
    "If you trust where it came from, allow unpickling with trust_checkpoint=True "
    "(s3prl runner: -g CONFIG.yaml with the line 'trust_checkpoint: true'; "
    "S3PRLUpstream(..., extra_conf={'trust_checkpoint': True}))."
)


def looks_like_torch_file(path: Path) -> bool:
    """A zip archive (torch >= 1.6) or a legacy pickle stream: what ``torch.save`` writes."""
    with path.open("rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_torch_file(path: PathLike, trust_checkpoint: bool = False) -> Any:
    """``torch.load`` on CPU with clear errors; refuses pickled code unless ``trust_checkpoint``.

    ``argparse.Namespace`` (the ``Args`` that s3prl's runners store) is allowed: it is a plain attribute bag.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not looks_like_torch_file(path):  # torch's own error would advise weights_only=False, for any file
        with path.open("rb") as f:
            head = f.read(16)
        what = f"it starts with {head!r}" if head else "the file is empty"
        raise CheckpointError(f"{path}: not a PyTorch checkpoint: neither a zip archive (what torch.save writes) nor "
                              f"a pickle; {what}")
    try:
        if trust_checkpoint:
            with _s3prl_optimizers_alias():
                return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch names the class or function the file wants to import ("Unsupported global: GLOBAL x.y")
        detail = next((line for line in str(exc).splitlines() if "Unsupported global" in line), None)
        if detail is not None:
            raise CheckpointError(
                f"{path}: refused to load: the file holds pickled Python objects, and unpickling them can run "
                f"code from the file ({detail.strip().rstrip('.')}). {TRUST_HINT}"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (corrupt?): {str(exc).splitlines()[0]}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {exc}") from None


class _s3prl_optimizers_alias:
    """Old DistilHuBERT checkpoints pickle schedulers from a top-level ``optimizers`` module (now s3prl's)."""

    def __enter__(self) -> None:
        self._previous = sys.modules.get("optimizers")
        try:
            import s3prl.optimizers
        except ImportError:
            return
        sys.modules["optimizers"] = s3prl.optimizers

    def __exit__(self, *exc: object) -> None:
        if self._previous is None:
            sys.modules.pop("optimizers", None)
        else:
            sys.modules["optimizers"] = self._previous


@dataclass
class StudentCheckpoint:
    """A student read from disk: its config, weights (prediction heads included) and our metadata, if any."""

    path: Path
    config: StudentConfig
    state_dict: dict[str, Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)  # the "RobustDistiller" section; {} for s3prl files

    def build_model(self) -> StudentModel:
        model = StudentModel(self.config)
        result = model.load_state_dict(self.state_dict, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(
                f"{self.path}: weights do not fit Config.distiller "
                f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
            )
        return model


def load_student_checkpoint(path: PathLike, trust_checkpoint: bool = False) -> StudentCheckpoint:
    """Reads an s3prl DistilHuBERT checkpoint (reference RobustDistiller releases included) or one of ours."""
    return student_checkpoint_from_dict(load_torch_file(path, trust_checkpoint), path)


def student_checkpoint_from_dict(states: Any, path: PathLike) -> StudentCheckpoint:
    """Validates what ``load_torch_file(path)`` returned as a DistilHuBERT-format checkpoint."""
    path = Path(path)
    if not isinstance(states, Mapping):
        raise CheckpointError(f"{path}: expected a dict checkpoint, found {type(states).__name__}")
    for key in ("Config", "Distiller"):
        if key not in states:
            raise CheckpointError(
                f"{path}: not a DistilHuBERT-format checkpoint: key {key!r} missing (found {sorted(states)[:8]})"
            )
    config = states["Config"]
    if not isinstance(config, Mapping) or not isinstance(config.get("distiller"), Mapping):
        raise CheckpointError(f"{path}: Config.distiller missing or not a mapping")
    state_dict = states["Distiller"]
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path}: 'Distiller' is not a state dict of tensors")
    metadata = states.get("RobustDistiller", {})
    if metadata and int(metadata.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer robustdistiller (format {metadata['format_version']}); upgrade the package"
        )
    return StudentCheckpoint(
        path=path,
        config=StudentConfig.from_s3prl(config["distiller"], source=str(path)),
        state_dict=dict(state_dict),
        metadata=dict(metadata),
    )


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: a reader never sees half a file."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def save_student_checkpoint(
    path: PathLike, model: StudentModel, extra: Optional[Mapping[str, Any]] = None
) -> Path:
    """Writes ``model`` in our format (stock s3prl ``distiller_local`` loads it).

    ``extra``: plain data (str/int/float/bool/lists/dicts) kept under ``"RobustDistiller"``, e.g.
    ``{"teacher": {...}, "recipe": {...}, "step": 1000}``; a ``"teacher"`` entry is also copied to
    ``Config["teacher"]`` where s3prl's pretraining configs keep it.
    """
    extra = dict(extra or {})
    state_dict = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    config: dict[str, Any] = {"distiller": model.config.to_s3prl()}
    if "teacher" in extra:
        config["teacher"] = extra["teacher"]
    states = {
        "Config": config,
        "Distiller": state_dict,
        "RobustDistiller": {"format_version": FORMAT_VERSION, "package_version": __version__, **extra},
    }
    return atomic_torch_save(states, path)
