"""ONNX export (issue 18): fp32 graphs equal our PyTorch upstreams in ONNX Runtime on ragged batches (base
student, the narrow preset, a pruned RD-DPWavLM export), int8 stays close to fp32 on espeak-ng speech, and the
exporter refuses to overwrite or to keep a graph that failed its check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from prune_helpers import gated_copy, write_teacher
from s3prl import hub
from s3prl_checkpoints import BASE_DISTILLER, make_s3prl_distiller_checkpoint

from robustdistiller_upstream.checkpoint import load_student_checkpoint, save_student_checkpoint
from robustdistiller_upstream.config import from_dict, read_yaml
from robustdistiller_upstream.export.check import max_abs_diff, mean_cosine, pad_batch, read_mono_16k
from robustdistiller_upstream.export.errors import ExportError
from robustdistiller_upstream.export.onnx import FP32_TOLERANCE, export_onnx, ort_session, run_session
from robustdistiller_upstream.export.source import load_export_source
from robustdistiller_upstream.model import StudentConfig, StudentModel
from robustdistiller_upstream.prune.checkpoint import save_pruned_checkpoint
from robustdistiller_upstream.prune.export import export_pruned
from robustdistiller_upstream.synthetic import speak, synthetic_speech
from system_packages import skip_without_espeak

REPO = Path(__file__).resolve().parents[1]


def ragged_batch() -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Three utterances of other lengths than the exporter's trace and check batches."""
    waves = [synthetic_speech(s, seed=40 + i) for i, s in enumerate((0.93, 0.52, 0.21))]
    wav, lengths = pad_batch(waves)
    return [torch.from_numpy(w) for w in waves], wav, lengths


def assert_matches_upstream(onnx_path: Path, upstream) -> None:
    """ONNX Runtime on a ragged batch vs the s3prl upstream, over valid frames; pad masks equal."""
    waves, wav, lengths = ragged_batch()
    hidden, frames = run_session(ort_session(onnx_path), wav, lengths)
    with torch.no_grad():
        reference = upstream.eval()(waves)
    assert len(hidden) == len(reference["hidden_states"])
    assert frames.tolist() == reference["pad_mask"].sum(1).long().tolist()
    for ours, theirs in zip(hidden, reference["hidden_states"]):
        assert ours.shape == theirs.shape
        assert max_abs_diff(ours, theirs, frames) <= FP32_TOLERANCE


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The base student (s3prl's own DistillerModel, random init) and its fp32 export."""
    root = tmp_path_factory.mktemp("base")
    ckpt = make_s3prl_distiller_checkpoint(root / "base.ckpt", BASE_DISTILLER)
    return ckpt, export_onnx(load_export_source(ckpt), root / "base.onnx")


def test_base_student_fp32_matches_pytorch_and_has_no_dropout(base):
    ckpt, report = base
    assert report.precision == "fp32" and max(report.fp32_max_diff.values()) <= FP32_TOLERANCE
    assert list(report.fp32_max_diff) == ["projected_features", "layer_1", "layer_2", "prediction_layer_4",
                                          "prediction_layer_8", "prediction_layer_12"]
    assert_matches_upstream(report.path, hub.robustdistiller_local(ckpt=str(ckpt)))
    graph = onnx.load(str(report.path)).graph
    # traced in eval mode: no dropout, no random layer drop (torchaudio's export breaks on it, pytorch/audio #4116)
    assert not {n.op_type for n in graph.node} & {"Dropout", "RandomUniform", "RandomUniformLike", "Bernoulli"}
    assert [i.name for i in graph.input] == ["wav", "lengths"]
    # a batch of one (another batch size than the trace's) works
    hidden, frames = run_session(ort_session(report.path), torch.zeros(1, 8000), torch.tensor([8000]))
    assert frames.tolist() == [24] and hidden[0].shape == (1, 24, 768)


def test_narrow_preset_fp32_matches_pytorch(tmp_path):
    student = read_yaml(REPO / "pretrain" / "rd_wavlm_small.yaml")["student"]
    torch.manual_seed(0)
    ckpt = save_student_checkpoint(tmp_path / "small.ckpt", StudentModel(from_dict(StudentConfig, student)))
    report = export_onnx(load_export_source(ckpt), tmp_path / "small.onnx")
    assert max(report.fp32_max_diff.values()) <= FP32_TOLERANCE
    assert_matches_upstream(tmp_path / "small.onnx", hub.robustdistiller_local(ckpt=str(ckpt)))
    hidden, _ = run_session(ort_session(tmp_path / "small.onnx"), *pad_batch([synthetic_speech(0.5)]))
    assert [h.shape[-1] for h in hidden] == [384] * 6


@pytest.mark.parametrize("kind,cfg", [("wavlm", {}), ("hubert", {}),
                                     ("wavlm", {"extractor_mode": "layer_norm", "normalize": True})],
                         ids=["wavlm", "hubert", "wavlm_large_style"])
def test_pruned_export_fp32_matches_pytorch(tmp_path, kind, cfg):
    """Per-layer head and FFN-unit counts (some blocks removed) survive the export; so do WavLM Large's layer-norm
    CNN and waveform normalisation."""
    dense = export_pruned(gated_copy(write_teacher(kind, tmp_path / "teacher.pt", **cfg)))
    assert dense.arch.normalize_waveform == bool(cfg.get("normalize"))
    assert len(set(dense.arch.encoder_ff_interm_features)) > 1  # really per-layer sizes
    ckpt = save_pruned_checkpoint(tmp_path / "pruned.pth", dense)
    report = export_onnx(load_export_source(ckpt), tmp_path / "pruned.onnx")
    assert list(report.fp32_max_diff)[0] == "transformer_input"
    assert_matches_upstream(tmp_path / "pruned.onnx", hub.robustdistiller_dpwavlm_local(ckpt=str(ckpt)))


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    skip_without_espeak()
    root = tmp_path_factory.mktemp("speech")
    texts = ["turn on the kitchen lights please", "what is the weather like tomorrow", "stop"]
    return [speak(text, root / f"{i}.wav", pitch=30 + 20 * i) for i, text in enumerate(texts)]


def test_int8_dynamic_stays_close_to_fp32_on_speech(tmp_path, base, speech):
    base_ckpt, fp32 = base
    report = export_onnx(load_export_source(base_ckpt), tmp_path / "int8.onnx", int8="dynamic", calibration=speech)
    assert report.precision == "int8-dynamic" and min(report.int8_cosine.values()) >= 0.99, report.int8_cosine
    assert report.size_bytes < 0.6 * fp32.size_bytes
    # checked again here, independently of the exporter's own numbers, on the speech it was not given
    waves = [synthetic_speech(0.8, seed=5), synthetic_speech(1.4, seed=6)]
    a, frames = run_session(ort_session(fp32.path), *pad_batch(waves))
    b, _ = run_session(ort_session(tmp_path / "int8.onnx"), *pad_batch(waves))
    assert min(mean_cosine(x, y, frames) for x, y in zip(a, b)) >= 0.99
    assert onnx.load(str(tmp_path / "int8.onnx")).metadata_props  # the upstream's metadata survives


def int8_conv_names(path: Path) -> list[str]:
    """The Conv nodes of a QDQ model whose weight arrives through a DequantizeLinear (int8 convs), in graph order."""
    graph = onnx.load(str(path)).graph
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in graph.node if n.op_type == "Conv" and n.input[1] in dequantized]


def test_int8_static_calibrates_on_the_named_files(tmp_path, base, speech):
    base_ckpt, fp32 = base
    report = export_onnx(load_export_source(base_ckpt), tmp_path / "static.onnx", int8="static", calibration=speech)
    assert report.precision == "int8-static" and report.int8_speech["calibration"] == "3 --calibrate file(s)"
    assert report.size_bytes <= 0.35 * fp32.size_bytes
    # int8 convs: the CNN's middle ones and the positional conv; the waveform's and the CNN's last two stay fp32
    assert int8_conv_names(report.path) == [f"/conv_layers.{i}.0/Conv" for i in range(1, 5)] + [
        "/encoder/pos_conv.0/Conv"]
    # random weights quantize worse than trained ones: the projected features lose most (docs/performance.md)
    assert min(report.int8_cosine.values()) >= 0.97, report.int8_cosine
    assert min(v for k, v in report.int8_cosine.items() if k.startswith("layer")) >= 0.99, report.int8_cosine
    # checked again here, independently of the exporter, on speech neither its calibration nor its check heard
    texts = ["seven green books near the river", "music in the old house by the hill"]
    wav, lengths = pad_batch([read_mono_16k(speak(text, tmp_path / f"{i}.wav", voice="en-029"))
                              for i, text in enumerate(texts)])
    a, frames = run_session(ort_session(fp32.path), wav, lengths)
    b, _ = run_session(ort_session(report.path), wav, lengths)
    assert min(mean_cosine(x, y, frames) for x, y in zip(a, b)) >= 0.97


def test_int8_auto_keeps_the_first_mode_that_holds_the_cosine(tmp_path, base):
    """--int8 (auto) tries static, then dynamic (which loses less here), and keeps the first whose every cosine holds;
    with none, nothing is written. Calibrated on generated speech (no files named); calibration is deterministic."""
    source = load_export_source(base[0])
    strict = export_onnx(source, tmp_path / "strict.onnx", int8="auto", min_cosine=0.999)
    static, dynamic = (min(strict.int8_tried[mode].values()) for mode in ("static", "dynamic"))
    assert static < 0.999 <= dynamic, strict.int8_tried
    assert strict.precision == "int8-dynamic" and strict.int8_cosine == strict.int8_tried["dynamic"]
    assert not int8_conv_names(strict.path) and "espeak-ng" in strict.int8_speech["calibration"]
    loose = export_onnx(source, tmp_path / "loose.onnx", int8="auto", min_cosine=static - 1e-3)
    assert list(loose.int8_tried) == ["static"] and loose.precision == "int8-static"
    assert loose.int8_cosine == strict.int8_tried["static"] and int8_conv_names(loose.path)
    with pytest.raises(ExportError, match="no int8 mode keeps every hidden state's cosine to fp32 >= 0.99999"):
        export_onnx(source, tmp_path / "none.onnx", int8="auto", min_cosine=0.99999)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loose.onnx", "strict.onnx"]


def test_existing_output_is_refused_unless_forced(tmp_path):
    ckpt = save_student_checkpoint(tmp_path / "tiny.ckpt", StudentModel(StudentConfig(
        extractor_conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2, encoder_layers=1,
        encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2, conv_pos=8, conv_pos_groups=2,
        pred_layer_id=[1], final_dim=32)))
    out = tmp_path / "out.onnx"
    out.write_bytes(b"a finished result")
    command = [sys.executable, "-m", "robustdistiller_upstream.cli", "export", str(ckpt), "--to", "onnx", str(out)]
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 2 and "file exists; refusing to overwrite" in refused.stderr
    assert out.read_bytes() == b"a finished result"
    forced = subprocess.run(command + ["--force"], capture_output=True, text=True)
    assert forced.returncode == 0, forced.stderr
    assert "projected_features" in forced.stdout and onnx.load(str(out)).graph.node


def test_cli_refuses_int8_options_without_an_int8_mode(tmp_path, base):
    """--min-cosine means nothing for an fp32 export, and --int8 nothing for --to hf: exit 2 naming the flag, nothing
    written."""
    ckpt, _ = base
    for flags, out, flag in ((["--to", "onnx", "--min-cosine", "0.9"], tmp_path / "out.onnx", "--min-cosine"),
                             (["--to", "hf", "--int8"], tmp_path / "hf", "--int8")):
        command = [sys.executable, "-m", "robustdistiller_upstream.cli", "export", str(ckpt), *flags, str(out)]
        refused = subprocess.run(command, capture_output=True, text=True)
        assert refused.returncode == 2 and flag in refused.stderr, refused.stderr
        assert not out.exists()


def test_a_graph_that_fails_its_check_leaves_nothing(tmp_path, base):
    """Projected features of ~1e5 cannot match to 1e-4 in float32: the export is refused and no file stays."""
    checkpoint = load_student_checkpoint(base[0])
    model = checkpoint.build_model()
    with torch.no_grad():
        model.post_extract_proj.weight.mul_(1e4)
    ckpt = save_student_checkpoint(tmp_path / "loud.ckpt", model)
    with pytest.raises(ExportError, match="differs from PyTorch by .* on projected_features"):
        export_onnx(load_export_source(ckpt), tmp_path / "loud.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loud.ckpt"]
