"""The model card (README.md) of a Hugging Face export: what the model is, how it was trained, how to load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from robustdistiller_upstream.export.errors import ExportError


def _training_lines(metadata: Mapping[str, Any]) -> list[str]:
    recipe = metadata.get("recipe") or {}
    teacher = metadata.get("teacher") or recipe.get("teacher") or {}
    data = recipe.get("data") or {}
    lines = []
    if recipe.get("description"):
        lines.append(f"- recipe: {recipe['description']}")
    if teacher:
        name = teacher.get("name", "?")
        lines.append(f"- teacher: `{name}`" + (f" (`{teacher['ckpt']}`)" if teacher.get("ckpt") else ""))
    if "step" in metadata:
        lines.append(f"- steps: {metadata['step']}")
    if data:
        subsets = ", ".join(data.get("subsets") or []) or "?"
        lines.append(f"- data: LibriSpeech {subsets}" + (f", crops of {data['sequence_length']} samples"
                                                         if data.get("sequence_length") else ""))
    objective = (recipe.get("objective") or {}).get("name")
    if objective:
        lines.append(f"- objective: `{objective}`")
    return lines or ["- training metadata: none in the checkpoint (an s3prl DistilHuBERT-format file)"]


def model_card(source_name: str, metadata: Mapping[str, Any], parameters: int, layers: int,
               heads_file: Optional[str], results: Optional[Path]) -> str:
    """README.md text. ``results``: a ``robustdistiller report`` results.md whose tables are appended."""
    superb = ""
    if results is not None:
        try:
            superb = results.read_text().strip()
        except OSError as exc:
            raise ExportError(f"{results}: cannot read the SUPERB results ({exc})") from None
    heads = (f"The distillation prediction heads are in `{heads_file}` (not part of the `HubertModel`)."
             if heads_file else "The distillation prediction heads were dropped.")
    sections = [
        "---",
        "library_name: transformers",
        "tags: [audio, speech, self-supervised-learning, distillation, robustdistiller, distilhubert]",
        "---",
        "",
        "# RobustDistiller student (DistilHuBERT shape)",
        "",
        f"A {layers}-layer `HubertModel` ({parameters / 1e6:.2f}M parameters) exported by `robustdistiller export "
        f"--to hf` from `{source_name}`. {heads}",
        "",
        "## Training",
        "",
        *_training_lines(metadata),
        "",
        "## Use",
        "",
        "```python",
        "from transformers import HubertModel",
        "model = HubertModel.from_pretrained(PATH).eval()",
        "out = model(wav, attention_mask=mask, output_hidden_states=True)  # wav: (batch, samples), 16 kHz",
        "```",
        "",
        "Hidden states: transformers' `hidden_states[0]` is the first layer's input (after the positional "
        "convolution and its layer norm); s3prl's `distiller`/`robustdistiller_local` put the projected CNN "
        "features there. Transformer layers 1..N are the same states in both. Pass an `attention_mask` with "
        "batches of different lengths: the model was checked equal to the s3prl upstream with it.",
    ]
    if superb:
        sections += ["", "## SUPERB results", "", superb]
    return "\n".join(sections) + "\n"
