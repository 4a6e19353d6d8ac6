"""int8 quantization of an exported fp32 graph through ``onnxruntime.quantization``.

- dynamic: int8 weights, activations quantized per call from their observed range (no data needed);
- static: int8 weights and activations, activation ranges calibrated on audio files the user names (QDQ format,
  per-channel weights), so no range is computed at run time.
"""

from __future__ import annotations

import io
import logging
import tempfile
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from robustdistiller_upstream.export.check import SAMPLE_RATE, read_mono_16k
from robustdistiller_upstream.export.errors import ExportError

logger = logging.getLogger(__name__)

# What each mode quantizes. Dynamic: the linear layers (ONNX Runtime's dynamic ConvInteger is slower than its
# fp32 conv). Static: the CNN's convolutions too (QLinearConv), which bound the model on CPU (DESIGN 4).
QUANTIZED_OPS = {"dynamic": ["MatMul", "Gemm"], "static": ["MatMul", "Gemm", "Conv"]}


CALIBRATION_SECONDS = 2.0


class AudioCalibrationReader:
    """``onnxruntime.quantization.CalibrationDataReader``: consecutive ``CALIBRATION_SECONDS`` chunks of the files
    (a shorter file: zero-padded), one per call, as a batch of one."""

    def __init__(self, files: Sequence[str | Path]) -> None:
        self.files = [Path(f) for f in files]
        self._items: Optional[Iterator[dict[str, np.ndarray]]] = None

    def _feeds(self) -> Iterator[dict[str, np.ndarray]]:
        size = int(CALIBRATION_SECONDS * SAMPLE_RATE)
        for path in self.files:
            wav = read_mono_16k(path)
            for start in range(0, max(len(wav) - size, 0) + 1, size):
                chunk = wav[start:start + size]
                # one shape for every call: ONNX Runtime's histogram calibrators stack their activations
                yield {"wav": np.pad(chunk, (0, size - len(chunk)))[None, :],
                       "lengths": np.array([len(chunk)], dtype=np.int64)}

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
    channel, a small share of the CNN's work) and the feature projection, the first linear layer (per-tensor
    activation ranges over CNN features are set by loud frames and flatten quiet ones; it is a small layer)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {init.name for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT}
    conv = next((n.name for n in graph.node if n.op_type == "Conv"), None)
    linear = next((n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in weights), None)
    return [name for name in (conv, linear) if name is not None]


def quantize_int8(fp32: Path, out: Path, mode: str, calibration: Sequence[str | Path] = ()) -> None:
    """Writes the int8 model of ``fp32`` to ``out``; ``mode``: "dynamic" or "static" (calibrated on
    ``calibration``)."""
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
            raise ExportError("static int8 quantization needs calibration audio files")
        reader = AudioCalibrationReader(calibration)  # duck-typed CalibrationDataReader
        logger.info("calibrating activation ranges on %d file(s)", len(calibration))
        with redirect_stdout(io.StringIO()):  # the calibrators print their progress
            quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            calibrate_method=CalibrationMethod.Percentile, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS["static"],
                            nodes_to_exclude=fp32_nodes(prepared))
