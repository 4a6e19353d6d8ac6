"""The s3prl upstream for pruned models: our exports and DPHuBERT-layout files, s3prl's output contract."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from prune_helpers import batch, gated_copy, valid_max_diff, write_teacher

from robustdistiller_upstream.errors import CheckpointError, ConfigError
from robustdistiller_upstream.prune.checkpoint import describe_pruned_checkpoint, save_pruned_checkpoint
from robustdistiller_upstream.prune.export import export_pruned
from robustdistiller_upstream.s3prl_plugin.dpwavlm import HUB_ENTRIES


def robustdistiller_dpwavlm_local(**kwargs):
    """Through stock s3prl's hub, as the runner and S3PRLUpstream look it up."""
    import s3prl.hub

    return s3prl.hub.robustdistiller_dpwavlm_local(**kwargs)


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    dense = export_pruned(gated_copy(write_teacher("wavlm", root / "teacher.pt")))
    return dense, save_pruned_checkpoint(root / "pruned.pth", dense, {"stage": "final", "original_num_params": 1})


def test_hub_entry_gives_s3prl_hidden_states(pruned):
    dense, path = pruned
    assert HUB_ENTRIES == ["robustdistiller_dpwavlm_local", "robustdistiller_dpwavlm_url"]
    expert = robustdistiller_dpwavlm_local(ckpt=str(path)).eval()
    assert expert.get_downsample_rates("hidden_states") == 320
    wav, lengths = batch([16000, 9600])
    with torch.no_grad():
        out = expert([wav[0], wav[1, :9600]])
        reference, frames = dense(wav, lengths)
        alone = expert([wav[1, :9600]])
    hidden = out["hidden_states"]
    assert len(hidden) == 3 and all(h.shape == (2, 49, 64) for h in hidden)
    assert out["last_hidden_state"] is hidden[-1]
    assert out["pad_mask"].sum(1).tolist() == frames.tolist() == [49, 29]
    assert valid_max_diff(hidden, reference, frames) <= 1e-5
    # the first CNN layer's group norm spans the padding (as in fairseq and stock s3prl): batching changes the
    # short utterance's features; the rest (attention masks, positional conv) must not add to that
    assert max(float((a[0] - b[1, :29]).abs().max()) for a, b in zip(alone["hidden_states"], hidden)) > 1e-3


def test_bf16_autocast_option_returns_float32(pruned, tmp_path):
    """``autocast: bf16`` (``-g`` file or keyword) runs the pruned model in bf16 and hands s3prl float32 states close
    to the float32 ones; ``trust_checkpoint`` does not apply to these tensor-only files and says so."""
    _, path = pruned
    wav, _ = batch([16000, 9600])
    wavs = [wav[0], wav[1, :9600]]
    options = tmp_path / "options.yaml"
    options.write_text("autocast: bf16\n")
    with torch.no_grad():
        reference = robustdistiller_dpwavlm_local(ckpt=str(path)).eval()(wavs)
        outs = [robustdistiller_dpwavlm_local(ckpt=str(path), **kw).eval()(wavs)
                for kw in ({"model_config": str(options)}, {"autocast": "bf16"})]
    valid = reference["pad_mask"].bool()
    for out in outs:
        assert all(h.dtype == torch.float32 for h in out["hidden_states"]) and out["pad_mask"].dtype == torch.float32
        pairs = list(zip(reference["hidden_states"], out["hidden_states"], strict=True))
        assert min(F.cosine_similarity(a, b, dim=-1)[valid].mean().item() for a, b in pairs) >= 0.99
        assert max((a - b).abs().max().item() for a, b in pairs) > 1e-4  # it did not run in float32
    options.write_text("trust_checkpoint: true\n")
    with pytest.raises(ConfigError, match=f"{options}: trust_checkpoint does not apply"):
        robustdistiller_dpwavlm_local(ckpt=str(path), model_config=str(options))
    options.write_text("autocast: fp16\n")
    with pytest.raises(ConfigError, match=f"{options}: autocast: 'fp16' is not one of"):
        robustdistiller_dpwavlm_local(ckpt=str(path), model_config=str(options))


def test_padding_does_not_leak_without_group_norm(tmp_path):
    dense = export_pruned(gated_copy(write_teacher("wavlm", tmp_path / "t.pt", extractor_mode="layer_norm")))
    path = save_pruned_checkpoint(tmp_path / "ln.pth", dense)
    expert = robustdistiller_dpwavlm_local(ckpt=str(path)).eval()
    wav, _ = batch([16000, 9600])
    with torch.no_grad():
        together = expert([wav[0], wav[1, :9600]])["hidden_states"]
        alone = expert([wav[1, :9600]])["hidden_states"]
    assert max(float((a[0] - b[1, :29]).abs().max()) for a, b in zip(alone, together)) <= 1e-4


def test_dphubert_layout_checkpoint_loads(tmp_path):
    """A file as DPHuBERT's prune.py writes it: config + state_dict + distill_linear_projs, no metadata, and the
    weight-norm parameters under torch's parametrizations names."""
    dense = export_pruned(gated_copy(write_teacher("hubert", tmp_path / "teacher.pt"), seed=3))
    state = {k.replace("conv.weight_g", "conv.parametrizations.weight.original0")
              .replace("conv.weight_v", "conv.parametrizations.weight.original1"): v
             for k, v in dense.state_dict().items()}
    config = dense.arch.to_checkpoint_dict()
    assert "encoder_remaining_heads" not in config and isinstance(config["encoder_num_heads"], list)
    path = tmp_path / "DPHuBERT-sp0.75.pth"
    torch.save({"state_dict": state, "config": config,
                "distill_linear_projs": {"0.weight": torch.eye(64), "0.bias": torch.zeros(64)}}, path)
    expert = robustdistiller_dpwavlm_local(ckpt=str(path)).eval()
    wav, lengths = batch([12000])
    with torch.no_grad():
        ours = expert([wav[0]])["hidden_states"]
        reference, frames = dense(wav, lengths)
    assert valid_max_diff(ours, reference, frames) <= 1e-5
    text = describe_pruned_checkpoint(path)
    assert "dphubert format, pruned HuBERT-style model" in text


def test_bad_checkpoints_are_named(tmp_path, pruned):
    _, path = pruned
    with pytest.raises(CheckpointError, match="exists; refusing to overwrite"):
        save_pruned_checkpoint(path, export_pruned(gated_copy(write_teacher("wavlm", tmp_path / "t.pt"))))
    wrong = tmp_path / "distiller.ckpt"
    torch.save({"Config": {}, "Distiller": {}}, wrong)
    with pytest.raises(CheckpointError, match="distiller.ckpt: not a DPHuBERT-layout pruned checkpoint"):
        robustdistiller_dpwavlm_local(ckpt=str(wrong))
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"config": {}, "state_dict": {}, "extra": CheckpointError("pickled object")}, unsafe)
    with pytest.raises(CheckpointError, match="unsafe.pth: refused to load"):
        robustdistiller_dpwavlm_local(ckpt=str(unsafe))
    bad_config = tmp_path / "bad.pth"
    torch.save({"config": {"encoder_num_layers": 2, "surprise": 1}, "state_dict": {}}, bad_config)
    with pytest.raises(CheckpointError, match=r"bad.pth config.*unknown key\(s\) \['surprise'\]"):
        robustdistiller_dpwavlm_local(ckpt=str(bad_config))
