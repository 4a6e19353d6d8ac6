"""Runs the stock s3prl ``run_downstream.py`` with the arguments given, after three fixes the sweep needs.

``python -m robustdistiller_upstream.superb.launch -m train -u ... -d ...`` (also under ``torchrun``):

- ``RD_SUPERB_SID_CACHE``: the folder where s3prl's voxceleb1 expert caches its file lists (stock: one
  ``.cache/{split}.pkl`` inside the package, keyed by split only, so a noisy copy would silently reuse the clean
  list; DESIGN 5);
- ``S3PRL_DIR`` + ``RD_SUPERB_DOWNSTREAM``: the s3prl git checkout's ``s3prl/downstream/<expert>/`` folder
  extends the installed expert's package (the PyPI s3prl lacks e.g. ``ctc/corpus/``, which PR and SF import);
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


def main() -> None:
    args = sys.argv[1:]
    if os.environ.get("RD_SUPERB_SID_CACHE"):
        import s3prl.downstream.voxceleb1.dataset as sid_dataset

        sid_dataset.CACHE_PATH = os.environ["RD_SUPERB_SID_CACHE"].rstrip("/") + "/"
    if os.environ.get("S3PRL_DIR") and os.environ.get("RD_SUPERB_DOWNSTREAM"):
        _extend_expert(Path(os.environ["S3PRL_DIR"]), os.environ["RD_SUPERB_DOWNSTREAM"])
    if os.environ.get("LOCAL_RANK") is not None and "--local_rank" not in args:
        args += ["--local_rank", os.environ["LOCAL_RANK"]]
    import s3prl

    runner = Path(s3prl.__file__).parent / "run_downstream.py"
    sys.argv = [str(runner), *args]
    runpy.run_path(str(runner), run_name="__main__")


if __name__ == "__main__":
    main()
