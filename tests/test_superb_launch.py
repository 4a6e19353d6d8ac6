"""The runner launcher's fixes, in a fresh interpreter with the real s3prl package."""

from __future__ import annotations

import subprocess
import sys


def test_an_s3prl_checkout_extends_the_installed_expert_package(tmp_path):
    # the PyPI s3prl has no ctc/corpus/ (PR and SF import it); a checkout's folder is appended to the package
    corpus = tmp_path / "s3prl" / "downstream" / "ctc" / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "__init__.py").write_text("")
    (corpus / "libriphone.py").write_text("FROM_CHECKOUT = True\n")
    code = ("import sys; from pathlib import Path; from robustdistiller_upstream.superb.launch import _extend_expert; "
            f"_extend_expert(Path({str(tmp_path)!r}), 'ctc'); "
            "from s3prl.downstream.ctc.corpus.libriphone import FROM_CHECKOUT; import s3prl.downstream.ctc.expert; "
            "print(FROM_CHECKOUT)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("True")


def test_sid_cache_and_local_rank_reach_the_stock_runner(tmp_path):
    # -h makes the stock runner print its usage and exit after our fixes ran
    env = {"RD_SUPERB_SID_CACHE": str(tmp_path / "sid"), "LOCAL_RANK": "0", "PATH": "/usr/bin:/bin"}
    code = ("import runpy, sys; import s3prl.downstream.voxceleb1.dataset as d; "
            "sys.argv = ['launch', '-h']; "
            "import robustdistiller_upstream.superb.launch as launch\n"
            "try:\n    launch.main()\nexcept SystemExit:\n    pass\n"
            "print('CACHE', d.CACHE_PATH); print('ARGV', sys.argv[1:])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"CACHE {tmp_path / 'sid'}/" in result.stdout
    assert "ARGV ['-h', '--local_rank', '0']" in result.stdout
    assert "--local_rank LOCAL_RANK" in result.stdout  # the stock runner's usage was printed
