"""Hugging Face export (issue 18): a student becomes a transformers ``HubertModel`` folder that a new process loads
with ``from_pretrained`` (and ``AutoModel``) and that gives our hidden states; pruned WavLM models are refused."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from prune_helpers import gated_copy, write_teacher
from s3prl import hub
from s3prl_checkpoints import BASE_DISTILLER, SMALL_DISTILLER, make_s3prl_distiller_checkpoint

from robustdistiller_upstream.checkpoint import load_student_checkpoint, save_student_checkpoint
from robustdistiller_upstream.export.check import max_abs_diff, pad_batch
from robustdistiller_upstream.export.errors import ExportError
from robustdistiller_upstream.export.hf import export_hf
from robustdistiller_upstream.export.source import load_export_source
from robustdistiller_upstream.prune.checkpoint import save_pruned_checkpoint
from robustdistiller_upstream.prune.export import export_pruned
from robustdistiller_upstream.synthetic import synthetic_speech

LOAD = textwrap.dedent("""
    import sys, json, numpy as np, torch
    from transformers import AutoModel, HubertModel
    folder, batch, out = sys.argv[1:]
    data = np.load(batch)
    model = HubertModel.from_pretrained(folder).eval()
    wav = torch.from_numpy(data["wav"])
    mask = (torch.arange(wav.shape[1])[None, :] < torch.from_numpy(data["lengths"])[:, None]).long()
    with torch.no_grad():
        hidden = model(wav, attention_mask=mask, output_hidden_states=True).hidden_states
    np.savez(out, *[h.numpy() for h in hidden])
    print(json.dumps({"auto": type(AutoModel.from_pretrained(folder)).__name__,
                      "layers": model.config.num_hidden_layers}))
""")


def load_in_new_process(folder, wav, lengths, tmp_path):
    np.savez(tmp_path / "batch.npz", wav=wav.numpy(), lengths=lengths.numpy())
    result = subprocess.run([sys.executable, "-c", LOAD, str(folder), str(tmp_path / "batch.npz"),
                             str(tmp_path / "hidden.npz")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    with np.load(tmp_path / "hidden.npz") as arrays:
        hidden = [torch.from_numpy(arrays[f"arr_{i}"]) for i in range(len(arrays.files))]
    return hidden, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("distiller", [BASE_DISTILLER, SMALL_DISTILLER], ids=["base", "small_pre_ln"])
def test_hubert_model_from_pretrained_gives_our_hidden_states(tmp_path, distiller):
    ckpt = make_s3prl_distiller_checkpoint(tmp_path / "student.ckpt", distiller)
    report = export_hf(load_export_source(ckpt), tmp_path / "hf")
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert report.auto_class == "HubertModel"
    waves = [synthetic_speech(s, seed=20 + i) for i, s in enumerate((1.1, 0.7, 0.35))]
    wav, lengths = pad_batch(waves)
    hidden, info = load_in_new_process(tmp_path / "hf", wav, lengths, tmp_path)
    assert info == {"auto": "HubertModel", "layers": distiller["encoder_layers"]}

    upstream = hub.robustdistiller_local(ckpt=str(ckpt)).eval()
    with torch.no_grad():
        ours = upstream([torch.from_numpy(w) for w in waves])
    frames = ours["pad_mask"].sum(1).long()
    layers = distiller["encoder_layers"]
    assert len(hidden) == layers + 1
    expected = ours["hidden_states"][1:1 + layers]
    model = upstream.model
    if distiller["layer_norm_first"]:  # transformers puts the final layer norm on its last hidden state
        expected = [*expected[:-1], model.encoder.layer_norm(expected[-1])]
    for theirs, mine in zip(hidden[1:], expected):
        assert max_abs_diff(theirs, mine, frames) <= 1e-4
    # hidden_states[0] is the first layer's input (after the positional conv), not s3prl's projected features
    assert max_abs_diff(hidden[0], ours["hidden_states"][0], frames) > 1e-2
    with torch.no_grad():
        x = ours["hidden_states"][0]
        first_input = x + torch.nn.functional.gelu(model.encoder.pos_conv[0](x.transpose(1, 2))[
            ..., : x.shape[1]]).transpose(1, 2)
        if not distiller["layer_norm_first"]:
            first_input = model.encoder.layer_norm(first_input)
    assert max_abs_diff(hidden[0], first_input, frames) <= 1e-4


def test_model_card_heads_and_results(tmp_path):
    checkpoint = load_student_checkpoint(make_s3prl_distiller_checkpoint(tmp_path / "s.ckpt", SMALL_DISTILLER))
    ckpt = save_student_checkpoint(tmp_path / "student-step200.ckpt", checkpoint.build_model(), {
        "teacher": {"name": "wavlm_local", "ckpt": "/ckpt/WavLM-Base+.pt"}, "step": 200,
        "recipe": {"description": "RD-WavLM (test)", "data": {"subsets": ["train-clean-100"]},
                   "objective": {"name": "layerwise"}}})
    results = tmp_path / "results.md"
    results.write_text("| task | metric | clean |\n| --- | --- | --- |\n| KS | Acc ↑ | 96.1 |\n")
    out = tmp_path / "hf"
    command = [sys.executable, "-m", "robustdistiller_upstream.cli", "export", str(ckpt), "--to", "hf", str(out),
               "--keep-heads", "--results", str(results)]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "AutoModel: HubertModel" in done.stdout
    card = (out / "README.md").read_text()
    for text in ("RD-WavLM (test)", "`wavlm_local` (`/ckpt/WavLM-Base+.pt`)", "steps: 200", "train-clean-100",
                 "| KS | Acc ↑ | 96.1 |", "hidden_states[0]"):
        assert text in card, text
    from safetensors.torch import load_file

    heads = load_file(str(out / "prediction_heads.safetensors"))
    assert set(heads) == {k for k in checkpoint.state_dict if k.startswith("output_layer.")}
    assert not any(k.startswith("output_layer.") for k in load_file(str(out / "model.safetensors")))
    config = json.loads((out / "config.json").read_text())
    assert config["feat_proj_layer_norm"] is False and config["layerdrop"] == 0.0

    # a non-empty folder is refused (nothing changes), an empty one is fine, --force replaces
    before = {p.name: p.stat().st_mtime for p in out.iterdir()}
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 2 and "folder is not empty" in refused.stderr
    assert before == {p.name: p.stat().st_mtime for p in out.iterdir()}
    assert subprocess.run(command + ["--force"], capture_output=True, text=True).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_pruned_wavlm_is_refused_with_the_reason(tmp_path):
    dense = export_pruned(gated_copy(write_teacher("wavlm", tmp_path / "teacher.pt")))
    ckpt = save_pruned_checkpoint(tmp_path / "pruned.pth", dense)
    with pytest.raises(ExportError, match="transformers has no per-layer-pruned WavLM"):
        export_hf(load_export_source(ckpt), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
