"""Installation and hub registration as users meet them: stock runner, start-up cost, both pip install modes."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import s3prl

from robustdistiller_upstream.s3prl_stack import FORK, s3prl_distributions

REPO = Path(__file__).resolve().parents[1]
S3PRL_DIR = Path(s3prl.__file__).parent
OUR_NAMES = ("robustdistiller", "robustdistiller_dpwavlm_local", "robustdistiller_dpwavlm_url", "robustdistiller_local",
             "robustdistiller_onnx_local", "robustdistiller_onnx_url", "robustdistiller_url")


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


def _fresh_venv(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A new venv that sees this environment's packages through a path line (no hooks, no reinstall of GBs) and a
    clean copy of our source: (python, its site-packages, source). It has no pip or setuptools of its own (they
    would shadow the borrowed ones): ``_pip`` drives this environment's pip into it."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (site / "00-borrowed-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = tmp_path / "src"
    _run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(source)])
    _run(["cp", "-r", *[str(REPO / p) for p in ("robustdistiller_upstream", "build_backend", "setup.cfg", "pyproject.toml")], str(source)])
    return python, site, source


def _pip(python: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--python", str(python), *args]


def _hub_names(python: Path, cwd: Path) -> tuple[str, str]:
    """(our names in s3prl.hub, where robustdistiller_upstream was imported from), as that interpreter sees them."""
    out = _run([str(python), "-c", "import s3prl.hub as h; import robustdistiller_upstream as r; "
                "print(sorted(n for n in h.options() if n.startswith('robustdistiller'))); print(r.__file__)"], cwd=cwd)
    names, location = out.strip().splitlines()[-2:]
    return names, location


@pytest.mark.parametrize("mode", ["regular", "editable"])
def test_fresh_venv_install_registers_the_hub(tmp_path, mode):
    """`pip install .` and `pip install -e .` in a new venv both install the hook (torch/s3prl borrowed from ours)."""
    python, site, source = _fresh_venv(tmp_path)
    install = _pip(python, "install", "--quiet", "--no-deps")
    _run(install + (["-e", str(source)] if mode == "editable" else [str(source)]), timeout=600)
    hook = site / "robustdistiller_upstream-s3prl-hook.pth"
    assert hook.is_file()
    names, location = _hub_names(python, tmp_path)
    assert names == str(sorted(OUR_NAMES))
    assert location.startswith(str(source) if mode == "editable" else str(site))
    _run(_pip(python, "uninstall", "--quiet", "--yes", "robustdistiller"))
    assert not hook.exists()


def _changed_module_files(distribution: str) -> list[str]:
    """The ``.py`` files of an installed distribution that are missing or differ from its RECORD hashes."""
    changed = []
    for entry in importlib.metadata.distribution(distribution).files or []:
        if entry.hash is None or entry.suffix != ".py":
            continue
        path = Path(entry.locate())
        digest = hashlib.new(entry.hash.mode, path.read_bytes()).digest() if path.is_file() else b""
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != entry.hash.value:
            changed.append(str(entry))
    return changed


def test_install_beside_the_existing_s3prl_keeps_it(tmp_path):
    """Installing ours, with the extra of the stack the venv already has, pulls in no other s3prl distribution and
    leaves the installed one's files as they were (DESIGN 7: both write the same module files)."""
    (installed, version), = s3prl_distributions().items()  # exactly one of s3prl / espnet-s3prl
    extra = "espnet" if installed == FORK else "s3prl"
    python, site, source = _fresh_venv(tmp_path)
    report = tmp_path / "plan.json"
    _run(_pip(python, "install", "--quiet", "--dry-run", "--report", str(report), f"{source}[{extra}]"), timeout=600)
    planned = {item["metadata"]["name"] for item in json.loads(report.read_text())["install"]}
    assert planned == {"robustdistiller"}, f"pip would also install {sorted(planned - {'robustdistiller'})}"
    _run(_pip(python, "install", "--quiet", f"{source}[{extra}]"), timeout=600)
    assert not (site / "s3prl").exists() and not list(site.glob("*s3prl*.dist-info"))
    assert _changed_module_files(installed) == []
    out = _run([str(python), "-c", "from robustdistiller_upstream.s3prl_stack import describe_stack; "
                "print(describe_stack())"], cwd=tmp_path)
    assert out.startswith(f"{installed} {version};")
    assert _hub_names(python, tmp_path)[0] == str(sorted(OUR_NAMES))


def test_no_s3prl_names_what_to_install(tmp_path):
    """Without any s3prl module, using the plugin says which stack to install instead of a bare import error."""
    venv = tmp_path / "bare"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    result = subprocess.run([str(venv / "bin" / "python"), "-c", "import robustdistiller_upstream as r; r.register()"],
                            env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("robustdistiller_upstream.s3prl_stack.S3prlStackError: no s3prl module is importable")
    assert "robustdistiller[s3prl]" in message and "robustdistiller[espnet]" in message


def test_our_code_calls_no_torchaudio():
    """Audio I/O is soundfile's: nothing of ours may depend on what torchaudio 2.9 removed (issue 9). The one
    import allowed asks torchaudio which APIs it still has (the SUPERB sweep's stack check)."""
    importers = sorted(str(path.relative_to(REPO)) for path in (REPO / "robustdistiller_upstream").rglob("*.py")
                       if re.search(r"^\s*(import|from) torchaudio\b", path.read_text(), re.MULTILINE))
    assert importers == ["robustdistiller_upstream/s3prl_stack.py"]
