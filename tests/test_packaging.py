"""Installation and hub registration as users meet them: stock runner, start-up cost, both pip install modes."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import s3prl

REPO = Path(__file__).resolve().parents[1]
S3PRL_DIR = Path(s3prl.__file__).parent
OUR_NAMES = ("robustdistiller", "robustdistiller_dpwavlm_local", "robustdistiller_dpwavlm_url", "robustdistiller_local",
             "robustdistiller_url")


def _run(args: list[str], cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def test_stock_run_downstream_lists_our_upstreams():
    """Unmodified s3prl 0.4.18 `run_downstream.py -h` (run from its package folder) offers our hub names."""
    usage = _run([sys.executable, "run_downstream.py", "-h"], cwd=S3PRL_DIR)
    upstream_choices = usage.split("--upstream UPSTREAM", 1)[1].split("-k {PATH")[0]
    for name in OUR_NAMES:
        assert name in upstream_choices


def test_interpreter_start_stays_light():
    """The site-packages hook must not import torch or s3prl at start-up."""
    out = _run([sys.executable, "-c", "import sys; print(sorted(m for m in ('torch', 's3prl', 'robustdistiller_upstream') if m in sys.modules))"])
    assert out.strip() == "['robustdistiller_upstream']"


def test_broken_s3prl_does_not_break_python(tmp_path):
    """An s3prl that fails to import must fail with its own error, and Python must still start."""
    broken = tmp_path / "shadow" / "s3prl"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    (broken / "hub.py").write_text("raise ImportError('this s3prl is broken')\n")
    env = dict(os.environ, PYTHONPATH=str(broken.parent))
    assert _run([sys.executable, "-c", "print('started')"], env=env).strip() == "started"
    result = subprocess.run([sys.executable, "-c", "import s3prl.hub"], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "this s3prl is broken" in result.stderr


def test_explicit_register_into_a_hub_module():
    import types

    import robustdistiller_upstream

    fake_hub = types.ModuleType("some_hub")
    from robustdistiller_upstream.s3prl_plugin.registration import register_into_s3prl_hub

    register_into_s3prl_hub(fake_hub)
    assert all(callable(getattr(fake_hub, name)) for name in OUR_NAMES)
    robustdistiller_upstream.register()  # the public entry: idempotent on the real s3prl.hub
    import s3prl.hub as hub

    assert all(name in hub.options() for name in OUR_NAMES)


@pytest.mark.parametrize("mode", ["regular", "editable"])
def test_fresh_venv_install_registers_the_hub(tmp_path, mode):
    """`pip install .` and `pip install -e .` in a new venv both install the hook (torch/s3prl borrowed from ours)."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    # Make the already-installed torch + s3prl importable without reinstalling GBs: a path line, no hooks.
    (site / "00-borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = tmp_path / "src"
    _run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(source)])
    _run(["cp", "-r", *[str(REPO / p) for p in ("robustdistiller_upstream", "build_backend", "setup.cfg", "pyproject.toml")], str(source)])
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps"]
    _run(install + (["-e", str(source)] if mode == "editable" else [str(source)]), timeout=600)
    hook = site / "robustdistiller_upstream-s3prl-hook.pth"
    assert hook.is_file()
    out = _run([str(python), "-c", "import s3prl.hub as h; import robustdistiller_upstream as r; "
                "print(sorted(n for n in h.options() if n.startswith('robustdistiller'))); print(r.__file__)"],
               cwd=tmp_path)
    names, location = out.strip().splitlines()[-2:]
    assert names == str(sorted(OUR_NAMES))
    assert location.startswith(str(source) if mode == "editable" else str(site))
    _run([str(python), "-m", "pip", "uninstall", "--quiet", "--yes", "robustdistiller"])
    assert not hook.exists()
