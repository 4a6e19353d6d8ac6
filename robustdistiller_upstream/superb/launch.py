"""Runs the stock s3prl ``run_downstream.py`` with the arguments given, after three fixes the sweep needs.

``python -m robustdistiller_upstream.superb.launch -m train -u ... -d ...`` (also under ``torchrun``):

- ``RD_SUPERB_SID_CACHE``: the folder where s3prl's voxceleb1 expert caches its file lists (stock: one
  ``.cache/{split}.pkl`` inside the package, keyed by split only, so a noisy copy would silently reuse the clean
  list; DESIGN 5);
- ``RD_SUPERB_ASV_LENGTHS``: the folder holding sv_voxceleb1's cache of its training files' lengths (stock:
  ``.wav_lengths/Voxceleb1_length.pt`` inside the package, keyed by nothing, so another VoxCeleb1 folder would get
  the first one's file list), made by ``superb.prepare.asv_lengths``;
- ``--device cpu`` with sv_voxceleb1: its expert moves a mask with a bare ``.cuda()``; on a CPU run that stays on
  the CPU (every other tensor of the run is there already);
- ``S3PRL_DIR`` + ``RD_SUPERB_DOWNSTREAM``: the s3prl git checkout's ``s3prl/downstream/<expert>/`` folder
  extends the installed expert's package (the PyPI s3prl lacks e.g. ``ctc/corpus/``, which PR and SF import);
- ``RD_SUPERB_DOWNSTREAM=ctc`` without a checkout's ``ctc/corpus/``: our readers (``superb.ctc_corpus``) stand in;
  and ctc's ``load_dataset`` gets a copy of the corpus config: stock, it pops ``num_workers`` from the expert's
  own dict, so every later loader (dev, and test from a checkpoint, whose config lost the key) uses 12 workers;
- ``LOCAL_RANK`` (set by ``torchrun``): passed as ``--local_rank``, the only form s3prl parses.

Nothing else is changed: the runner, experts and checkpoints are stock.
"""

from __future__ import annotations

import importlib
import os
import runpy
import sys
from pathlib import Path


def _extend_expert(s3prl_dir: Path, expert: str) -> None:
    extra = s3prl_dir / "s3prl" / "downstream" / expert
    if not extra.is_dir():
        raise SystemExit(f"S3PRL_DIR={s3prl_dir}: no s3prl/downstream/{expert} folder (expected an s3prl checkout)")
    package = importlib.import_module(f"s3prl.downstream.{expert}")
    package.__path__.append(str(extra))


def _ctc_fixes() -> None:
    import importlib.util

    if importlib.util.find_spec("s3prl.downstream.ctc.corpus") is None:
        from robustdistiller_upstream.superb import ctc_corpus

        sys.modules["s3prl.downstream.ctc.corpus"] = ctc_corpus
    import s3prl.downstream.ctc.data as ctc_data

    stock = ctc_data.load_dataset
    ctc_data.load_dataset = lambda split, tokenizer, corpus: stock(split, tokenizer, dict(corpus))


def _on_cpu(args: list[str]) -> bool:
    return "--device" in args and args[args.index("--device") + 1] == "cpu"


def main() -> None:
    args = sys.argv[1:]
    if os.environ.get("RD_SUPERB_SID_CACHE"):
        import s3prl.downstream.voxceleb1.dataset as sid_dataset

        sid_dataset.CACHE_PATH = os.environ["RD_SUPERB_SID_CACHE"].rstrip("/") + "/"
    if os.environ.get("RD_SUPERB_DOWNSTREAM") == "sv_voxceleb1" and os.environ.get("RD_SUPERB_ASV_LENGTHS"):
        import s3prl.downstream.sv_voxceleb1.dataset as sv_dataset

        # it builds the cache path from its module's __file__ at call time
        sv_dataset.__file__ = os.path.join(os.environ["RD_SUPERB_ASV_LENGTHS"], "dataset.py")
    if os.environ.get("RD_SUPERB_DOWNSTREAM") == "sv_voxceleb1" and _on_cpu(args):
        import torch

        torch.Tensor.cuda = lambda self, *_, **__: self
    if os.environ.get("S3PRL_DIR") and os.environ.get("RD_SUPERB_DOWNSTREAM"):
        _extend_expert(Path(os.environ["S3PRL_DIR"]), os.environ["RD_SUPERB_DOWNSTREAM"])
    if os.environ.get("RD_SUPERB_DOWNSTREAM") == "ctc":
        _ctc_fixes()
    if os.environ.get("LOCAL_RANK") is not None and "--local_rank" not in args:
        args += ["--local_rank", os.environ["LOCAL_RANK"]]
    import s3prl

    runner = Path(s3prl.__file__).parent / "run_downstream.py"
    sys.argv = [str(runner), *args]
    runpy.run_path(str(runner), run_name="__main__")


if __name__ == "__main__":
    main()
