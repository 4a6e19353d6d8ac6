"""ESPnet's own ``S3prlFrontend`` on one of our checkpoints (issue 9; espnet is a test dependency of the current
stack: ``make test-current``)."""

from __future__ import annotations

from typing import Optional

import pytest
import torch
import torch.nn.functional as F
from s3prl import hub
from s3prl_checkpoints import SMALL_DISTILLER, make_s3prl_distiller_checkpoint

s3prl_frontend = pytest.importorskip("espnet2.asr.frontend.s3prl",
                                     reason="espnet is installed on the current stack only (make test-current)")

# prediction heads as wide as the encoder: ESPnet's Featurizer sums all hidden states, so they must share a width
CONFIG = dict(SMALL_DISTILLER, final_dim=SMALL_DISTILLER["encoder_embed_dim"], feature_grad_mult=0.1)
LENGTHS = [32000, 20000]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(make_s3prl_distiller_checkpoint(tmp_path_factory.mktemp("ckpt") / "student.ckpt", CONFIG))


def _frontend(ckpt: str, extra_conf: Optional[dict] = None, **kwargs) -> torch.nn.Module:
    conf = {"upstream": "robustdistiller_local", "path_or_url": ckpt, "extra_conf": extra_conf}
    return s3prl_frontend.S3prlFrontend(frontend_conf=conf, **kwargs)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    wav = torch.randn(len(LENGTHS), max(LENGTHS), generator=generator) * 0.1
    lengths = torch.tensor(LENGTHS)
    wav[1, LENGTHS[1]:] = 0
    return wav, lengths


def _ours_per_utterance(ckpt: str, wav: torch.Tensor) -> list[list[torch.Tensor]]:
    """Our expert's hidden states of each utterance alone: [utterance][layer] (frames, dim)."""
    expert = hub.robustdistiller_local(ckpt=ckpt).eval()
    with torch.no_grad():
        return [[h[0] for h in expert([wav[b, :n]])["hidden_states"]] for b, n in enumerate(LENGTHS)]


def test_multilayer_features_shape_and_lengths(ckpt):
    frontend = _frontend(ckpt, multilayer_feature=True).eval()
    wav, lengths = _batch()
    with torch.no_grad():
        feats, feats_lens = frontend(wav, lengths)
    width = CONFIG["encoder_embed_dim"]
    assert frontend.output_size() == width and frontend.hop_length == 320
    # s3prl's wrapper counts ceil(samples / 320) frames; our CNN gives (samples - 400) // 320 + 1 and the wrapper
    # repeats the last one (as for every wav2vec 2.0-style upstream)
    assert feats.shape == (2, 100, width) and feats_lens.tolist() == [100, 63]
    ours = _ours_per_utterance(ckpt, wav)
    assert [utterance[-1].shape for utterance in ours] == [(99, width), (62, width)]
    assert torch.isfinite(feats).all()


def test_layer_selection_is_our_hidden_state(ckpt):
    wav, lengths = _batch()
    ours = _ours_per_utterance(ckpt, wav)
    with torch.no_grad():
        for layer in range(len(ours[0])):
            feats, feats_lens = _frontend(ckpt, layer=layer).eval()(wav, lengths)
            assert feats_lens.tolist() == [100, 63]
            for b, utterance in enumerate(ours):
                frames = len(utterance[layer])
                torch.testing.assert_close(feats[b, :frames], utterance[layer], atol=1e-5, rtol=1e-5)


def test_bf16_autocast_option_in_frontend_conf(ckpt):
    """``frontend_conf: {extra_conf: {autocast: bf16}}``: ESPnet's features are float32, computed in bf16, close to
    the float32 ones on every valid frame."""
    wav, lengths = _batch()
    with torch.no_grad():
        reference, _ = _frontend(ckpt, multilayer_feature=True).eval()(wav, lengths)
        feats, feats_lens = _frontend(ckpt, {"autocast": "bf16"}, multilayer_feature=True).eval()(wav, lengths)
    assert feats.dtype == torch.float32 and feats_lens.tolist() == [100, 63]
    valid = torch.arange(feats.shape[1])[None, :] < feats_lens[:, None]
    assert F.cosine_similarity(reference, feats, dim=-1)[valid].mean().item() >= 0.99
    assert (reference - feats).abs().max().item() > 1e-4  # it did not run in float32


def test_espnet_feature_grad_mult_reaches_the_cnn(ckpt):
    """ESPnet sets ``upstream.upstream.model.feature_grad_mult = 1.0``: fine-tuning must then reach the CNN with the
    full gradient, as with s3prl's distiller (the checkpoint says 0.1)."""
    frontend = _frontend(ckpt, multilayer_feature=True).train()
    model = frontend.upstream.upstream.model
    assert model.feature_grad_mult == 1.0
    wav, lengths = _batch()

    def first_conv_grad() -> torch.Tensor:
        frontend.zero_grad()
        torch.manual_seed(0)
        frontend(wav, lengths)[0].pow(2).mean().backward()
        return next(model.feature_extractor.parameters()).grad.clone()

    full = first_conv_grad()
    model.feature_grad_mult = 0.1  # what the checkpoint asked for: a tenth of it
    torch.testing.assert_close(first_conv_grad(), 0.1 * full, atol=1e-7, rtol=1e-4)
