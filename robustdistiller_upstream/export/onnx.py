"""ONNX export of an upstream, checked in ONNX Runtime before it is kept.

The graph: inputs ``wav`` (batch, samples) float32, zero-padded, and ``lengths`` (batch,) int64 valid samples,
both with dynamic axes; outputs every hidden state of the s3prl upstream, each (batch, frames, dim), named as
``ExportSource.hidden_names``, and ``frame_lengths`` (batch,) int64. The file's metadata (``metadata_props``)
says what it is: ``robustdistiller.hidden_names``, ``robustdistiller.downsample_rate``, ``robustdistiller.kind``,
``robustdistiller.precision``; ``robustdistiller_onnx_local`` reads them.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from robustdistiller_upstream.version import __version__
from robustdistiller_upstream.export.check import (check_batch, int8_check_batch, max_abs_diff, mean_cosine,
                                                   pad_batch)
from robustdistiller_upstream.export.errors import ExportError
from robustdistiller_upstream.export.outputs import refuse_existing
from robustdistiller_upstream.export.source import ExportSource
from robustdistiller_upstream.files import atomic_output
from robustdistiller_upstream.synthetic import synthetic_speech

logger = logging.getLogger(__name__)

OPSET = 17  # LayerNormalization is one ONNX op from 17 on
FP32_TOLERANCE = 1e-4  # largest |ONNX Runtime - PyTorch| allowed on any valid frame of any hidden state
INT8_MODES = ("auto", "static", "dynamic")
INT8_COSINE_GOAL = 0.99  # every hidden state's int8 cosine to fp32 that "auto" requires; forced modes warn below it
META_PREFIX = "robustdistiller."


@dataclass
class OnnxExportReport:
    path: Path
    precision: str  # "fp32", "int8-dynamic", "int8-static"
    fp32_max_diff: dict[str, float]  # hidden state -> max |ORT fp32 - PyTorch|
    int8_cosine: dict[str, float] = field(default_factory=dict)  # hidden state -> mean frame cosine to fp32
    int8_tried: dict[str, dict[str, float]] = field(default_factory=dict)  # int8 mode -> its int8_cosine, as tried
    int8_speech: dict[str, str] = field(default_factory=dict)  # "calibration", "check" -> which speech, in words
    size_bytes: int = 0


def _dynamic_axes(names: Sequence[str]) -> dict[str, dict[int, str]]:
    axes = {"wav": {0: "batch", 1: "samples"}, "lengths": {0: "batch"}, "frame_lengths": {0: "batch"}}
    axes.update({name: {0: "batch", 1: "frames"} for name in names})
    return axes


def write_metadata(path: Path, source: ExportSource, precision: str) -> None:
    """Stores what the file is in its ``metadata_props`` (rewrites ``path``)."""
    import onnx

    model = onnx.load(str(path))
    props = {
        "hidden_names": json.dumps(source.hidden_names),
        "downsample_rate": str(source.downsample_rate),
        "kind": source.kind,
        "precision": precision,
        "source": source.path.name,
        "package_version": __version__,
    }
    onnx.helper.set_model_props(model, {META_PREFIX + k: v for k, v in props.items()})
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``robustdistiller.*`` metadata of an exported file, prefix removed; {} for other ONNX files."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return metadata_of(session)


def metadata_of(session) -> dict[str, str]:
    props = session.get_modelmeta().custom_metadata_map
    return {k[len(META_PREFIX):]: v for k, v in props.items() if k.startswith(META_PREFIX)}


def trace_to_onnx(source: ExportSource, path: Path) -> None:
    """Writes the fp32 graph to ``path``; traced in eval mode on a ragged two-utterance batch."""
    example = pad_batch([synthetic_speech(1.0, seed=11), synthetic_speech(0.6, seed=12)])
    outputs = [*source.hidden_names, "frame_lengths"]
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about Python ints read from shapes; the ORT check below is what proves the graph
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        kwargs = {"dynamo": False} if "dynamo" in torch.onnx.export.__code__.co_varnames else {}
        torch.onnx.export(source.graph.eval(), example, str(path), input_names=["wav", "lengths"],
                          output_names=outputs, dynamic_axes=_dynamic_axes(source.hidden_names),
                          opset_version=OPSET, do_constant_folding=True, **kwargs)


def ort_session(path: str | Path, threads: Optional[int] = None):
    """A CPU ``onnxruntime.InferenceSession``; ``threads``: intra-op threads (None: ONNX Runtime's default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ExportError(f"{path}: ONNX Runtime cannot load it ({exc})") from None


def run_session(session, wav: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
    """wav (batch, samples), lengths (batch,) -> (hidden states (batch, frames, dim) each, frame lengths)."""
    outputs = session.run(None, {"wav": wav.numpy().astype(np.float32), "lengths": lengths.numpy().astype(np.int64)})
    return [torch.from_numpy(o) for o in outputs[:-1]], torch.from_numpy(outputs[-1])


def fp32_differences(source: ExportSource, session, wav: Tensor, lengths: Tensor) -> dict[str, float]:
    """Hidden state -> max |ONNX Runtime - PyTorch upstream| over valid frames; frame lengths must be equal."""
    reference, frames = source.reference(wav, lengths)
    hidden, ort_frames = run_session(session, wav, lengths)
    if not torch.equal(frames, ort_frames):
        raise ExportError(f"frame lengths differ: PyTorch {frames.tolist()}, ONNX Runtime {ort_frames.tolist()}")
    if len(hidden) != len(reference) or any(a.shape != b.shape for a, b in zip(hidden, reference)):
        raise ExportError(f"hidden state shapes differ: PyTorch {[tuple(t.shape) for t in reference]}, "
                          f"ONNX Runtime {[tuple(t.shape) for t in hidden]}")
    return {name: max_abs_diff(a, b, frames) for name, a, b in zip(source.hidden_names, hidden, reference)}


def int8_cosines(source: ExportSource, fp32_session, int8_session, wav: Tensor, lengths: Tensor) -> dict[str, float]:
    """Hidden state -> mean frame cosine of the int8 model's output to the fp32 model's, over valid frames."""
    fp32, frames = run_session(fp32_session, wav, lengths)
    int8, _ = run_session(int8_session, wav, lengths)
    return {name: mean_cosine(a, b, frames) for name, a, b in zip(source.hidden_names, int8, fp32)}


def quantize_checked(source: ExportSource, fp32_path: Path, fp32_session, int8: str,
                     calibration_files: Sequence[str | Path], min_cosine: float, report: OnnxExportReport) -> None:
    """Replaces the checked fp32 file ``fp32_path`` by its int8 model and fills ``report``'s int8 fields. ``int8``:
    "static" or "dynamic" as asked (a warning when a cosine is below ``min_cosine``), or "auto": static, else
    dynamic, the first whose every hidden state keeps a cosine to fp32 >= ``min_cosine`` on speech its calibration
    never heard (``int8_check_batch``); ExportError when neither does."""
    from robustdistiller_upstream.export.quantize import calibration_speech, quantize_int8

    wav, lengths, report.int8_speech["check"] = int8_check_batch()
    int8_path = fp32_path.with_name(fp32_path.name + ".int8")
    try:
        for mode in ("static", "dynamic") if int8 == "auto" else (int8,):
            calibration = []
            if mode == "static":
                calibration, report.int8_speech["calibration"] = calibration_speech(calibration_files)
            quantize_int8(fp32_path, int8_path, mode, calibration)
            cosines = report.int8_tried[mode] = int8_cosines(source, fp32_session, ort_session(int8_path), wav, lengths)
            worst = min(cosines, key=cosines.get)
            if cosines[worst] >= min_cosine:
                break
            logger.info("int8 %s: cosine to fp32 %.4f on %s, below %g", mode, cosines[worst], worst, min_cosine)
        else:
            tried = ", ".join(f"{m} {min(c.values()):.4f}" for m, c in report.int8_tried.items())
            if int8 == "auto":
                raise ExportError(f"{source.path}: no int8 mode keeps every hidden state's cosine to fp32 >= "
                                  f"{min_cosine:g} (lowest: {tried}); nothing was written to {report.path}")
            logger.warning("int8 %s: cosine to fp32 below %g (lowest %s): check it on your own audio", mode,
                           min_cosine, tried)
        write_metadata(int8_path, source, f"int8-{mode}")
        int8_path.replace(fp32_path)  # the fp32 file was only a step
    finally:
        int8_path.unlink(missing_ok=True)
    report.precision, report.int8_cosine = f"int8-{mode}", cosines


def export_onnx(source: ExportSource, out: str | Path, int8: Optional[str] = None,
                calibration: Sequence[str | Path] = (), force: bool = False,
                min_cosine: float = INT8_COSINE_GOAL) -> OnnxExportReport:
    """Exports ``source`` to ``out``: fp32, or int8 when ``int8`` is "auto", "static" or "dynamic"
    (``quantize_checked``; static calibrates on the ``calibration`` audio files, else on generated speech). The
    fp32 graph must match PyTorch within ``FP32_TOLERANCE`` on a ragged batch (the calibration files, else synthetic
    speech), or nothing is written; an existing ``out`` is refused unless ``force``."""
    out = Path(out)
    if int8 is not None and int8 not in INT8_MODES:
        raise ExportError(f"int8 mode {int8!r}: choose one of {INT8_MODES}")
    if not 0 < min_cosine <= 1:
        raise ExportError(f"minimum int8 cosine {min_cosine:g}: must be in (0, 1]")
    refuse_existing(out, force)
    if out.is_dir():
        raise ExportError(f"{out}: is a folder; an ONNX export is one file")
    wav, lengths = check_batch(calibration)
    with atomic_output(out) as fp32_path:
        trace_to_onnx(source, fp32_path)
        write_metadata(fp32_path, source, "fp32")
        fp32_session = ort_session(fp32_path)
        diffs = fp32_differences(source, fp32_session, wav, lengths)
        worst = max(diffs, key=diffs.get)
        if diffs[worst] > FP32_TOLERANCE:
            raise ExportError(f"{source.path}: the ONNX graph differs from PyTorch by {diffs[worst]:.2e} on "
                              f"{worst} (> {FP32_TOLERANCE:g}); nothing was written to {out}")
        logger.info("ONNX Runtime fp32 matches PyTorch: max |diff| %.2e (%s)", diffs[worst], worst)
        report = OnnxExportReport(out, "fp32", diffs)
        if int8 is not None:
            quantize_checked(source, fp32_path, fp32_session, int8, calibration, min_cosine, report)
    report.size_bytes = out.stat().st_size
    return report
