"""``tests/system_packages.py``: a missing system package skips the tests that need it, naming the package, and
fails them, naming it, where ``.ci/run`` sets ``RD_REQUIRE_SYSTEM_PACKAGES`` (CI never passes with them skipped)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from system_packages import REQUIRE

TESTS = Path(__file__).resolve().parent
PROBE = '''
import pytest
from system_packages import _needs, missing

needs_nothing = _needs(None)
needs_frob = _needs("needs Debian's frob (apt-get install frob)")


@pytest.fixture
def costly():
    raise AssertionError("set up although the test cannot run")


@needs_nothing
def test_present():
    pass


@pytest.mark.slow_marker
@needs_frob
def test_absent(costly):
    pass


def test_absent_in_a_fixture():
    missing("needs Debian's frob (apt-get install frob)")
'''


def _run(tmp_path: Path, require: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != REQUIRE}
    env.update({REQUIRE: require, "PYTHONPATH": os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])})
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-ra", "-q", "-W",
                           "ignore::pytest.PytestUnknownMarkWarning", str(tmp_path / "test_probe.py")],
                          env=env, capture_output=True, text=True, cwd=tmp_path)


def test_a_missing_package_skips_with_its_name(tmp_path):
    result = _run(tmp_path, "")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 passed, 2 skipped" in result.stdout
    assert result.stdout.count("apt-get install frob") == 2


def test_where_ci_requires_the_packages_it_fails_naming_the_package(tmp_path):
    result = _run(tmp_path, "1")
    assert result.returncode == 1, result.stdout[-2000:]
    assert "2 failed, 1 passed" in result.stdout
    assert result.stdout.count(f"{REQUIRE} is set and a system package is missing: needs Debian's frob") >= 2
    assert "set up although" not in result.stdout  # the decorated test fails before its fixtures
