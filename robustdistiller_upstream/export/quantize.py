"""int8 quantization of an exported fp32 graph through ``onnxruntime.quantization``.

- dynamic: int8 weights, activations quantized per call from their observed range (no data needed);
- static: int8 weights and activations, activation ranges calibrated on speech (QDQ format, per-channel weights,
  percentile ranges), so no range is computed at run time.

Which nodes stay fp32, the calibration method and how much speech were measured (docs/performance.md, "int8 export
(issue 31)"): per-channel or per-tensor weights and 4, 8 or 16 calibration sentences changed the cosines by < 0.001;
MinMax and Entropy ranges lost more than Percentile; the CNN's last convolutions set the projected features' cosine.
"""

from __future__ import annotations

import io
import logging
import tempfile
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from robustdistiller_upstream.export.check import (CALIBRATION_SEED, CALIBRATION_VOICES, SAMPLE_RATE, generated_speech,
                                                   read_mono_16k)
from robustdistiller_upstream.export.errors import ExportError

logger = logging.getLogger(__name__)

# What each mode quantizes. Dynamic: the linear layers (ONNX Runtime's dynamic ConvInteger is slower than its
# fp32 conv). Static: the CNN's convolutions too (QLinearConv), which bound the model on CPU (DESIGN 4).
QUANTIZED_OPS = {"dynamic": ["MatMul", "Gemm"], "static": ["MatMul", "Gemm", "Conv"]}


CALIBRATION_SECONDS = 2.0
# the CNN's last convolutions stay fp32: their int8 outputs, normalised frame by frame by the layer norm before the
# projection, cost quiet frames most (projected features' cosine 0.986 -> 0.994 on the base student); they run at
# 100 and 50 frames/s, ~3% of the CNN's work
FP32_LAST_CONVS = 2
GENERATED_CALIBRATION = 8  # generated utterances (~30 s) when the user names no files: 4 to 16 calibrated alike


def calibration_speech(files: Sequence[str | Path] = ()) -> tuple[list[np.ndarray], str]:
    """The utterances static int8 is calibrated on (float32 (samples,) at 16 kHz) and what they are, in words: the
    ``files`` (each at most ``MAX_SECONDS``), else ``GENERATED_CALIBRATION`` generated ones."""
    if files:
        return [read_mono_16k(path) for path in files], f"{len(files)} --calibrate file(s)"
    return generated_speech(GENERATED_CALIBRATION, CALIBRATION_VOICES, CALIBRATION_SEED)


class CalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader``: the utterances (float32 (samples,) at 16 kHz) joined end to
    end and cut into consecutive ``CALIBRATION_SECONDS`` chunks, one per call, as a batch of one (the rest is
    dropped; a stream shorter than one chunk is repeated to fill it). Every call has one shape (ONNX Runtime's
    histogram calibrators stack their activations) and no chunk is zero-padded: padding frames, which s3prl never
    reads, widened the ranges (a 0.5 s word padded to 2 s: projected features' cosine 0.982 -> 0.968)."""

    def __init__(self, waves: Sequence[np.ndarray]) -> None:
        self.waves = waves
        self._items: Optional[Iterator[dict[str, np.ndarray]]] = None

    def _feeds(self) -> Iterator[dict[str, np.ndarray]]:
        size = int(CALIBRATION_SECONDS * SAMPLE_RATE)
        stream = np.concatenate([np.asarray(w, dtype=np.float32) for w in self.waves])
        stream = np.resize(stream, max(len(stream), size))
        for start in range(0, len(stream) - size + 1, size):
            yield {"wav": stream[None, start:start + size], "lengths": np.array([size], dtype=np.int64)}

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        if self._items is None:
            self._items = self._feeds()
        return next(self._items, None)

    def rewind(self) -> None:
        self._items = None


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime.quantization logs every tensor it skips (float64 ones: a warning) on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def fp32_nodes(path: Path) -> list[str]:
    """Nodes left in fp32: the conv that reads the waveform (8 bits cannot hold speech's dynamic range; one input
    channel, a small share of the CNN's work), the CNN's last ``FP32_LAST_CONVS`` convs and the feature projection,
    the first linear layer (per-tensor activation ranges over CNN features are set by loud frames and flatten quiet
    ones; it is a small layer). The CNN's convs are those before that linear layer in the (topologically sorted)
    graph; the positional conv comes after it."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT}
    linears = [i for i, n in enumerate(graph.node) if n.op_type in ("MatMul", "Gemm") and n.input[1] in weights]
    projection = linears[0] if linears else len(graph.node)
    cnn = [n.name for n in graph.node[:projection] if n.op_type == "Conv"]
    return cnn[:1] + cnn[1:][-FP32_LAST_CONVS:] + [graph.node[i].name for i in linears[:1]]


def quantize_int8(fp32: Path, out: Path, mode: str, calibration: Sequence[np.ndarray] = ()) -> None:
    """Writes the int8 model of ``fp32`` to ``out``; ``mode``: "dynamic" or "static" (calibrated on the
    ``calibration`` utterances, float32 (samples,) at 16 kHz)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize.") as scratch, _quiet_root_logger():
        prepared = Path(scratch) / "prepared.onnx"
        # ONNX Runtime's advice before quantizing: shape inference and graph optimisation (fused ops quantize better)
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(out), weight_type=QuantType.QInt8,
                             op_types_to_quantize=QUANTIZED_OPS["dynamic"], nodes_to_exclude=fp32_nodes(prepared))
            return
        if not calibration:
            raise ExportError("static int8 quantization needs calibration speech")
        reader = CalibrationReader(calibration)  # duck-typed CalibrationDataReader
        logger.info("calibrating activation ranges on %d utterance(s)", len(calibration))
        with redirect_stdout(io.StringIO()):  # the calibrators print their progress
            quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            calibrate_method=CalibrationMethod.Percentile, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS["static"],
                            nodes_to_exclude=fp32_nodes(prepared))
