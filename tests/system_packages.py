"""The Debian packages that some tests need, and the skip that names the package to install where one is missing.

``.ci/run`` installs all of them and sets ``RD_REQUIRE_SYSTEM_PACKAGES=1`` (``REQUIRE``): there a missing package
fails the tests that need it, naming the package, instead of skipping them (CI never passes with them skipped);
docs/development.md ("System packages") says which tests each unlocks.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Optional, TypeVar

import pytest
import torchaudio

from robustdistiller_upstream.s3prl_stack import SOX_PACKAGE, sox_extension_error
from robustdistiller_upstream.espeak import MISSING
from robustdistiller_upstream.synthetic import have_espeak

REQUIRE = "RD_REQUIRE_SYSTEM_PACKAGES"
Test = TypeVar("Test", bound=Callable[..., Any])


def _install(package: str, what: str) -> str:
    return f"needs Debian's {package} (apt-get install {package}): {what}"


ESPEAK = f"{MISSING}: the spoken corpora are made with it"
SOX_PROGRAM = _install("sox", "the Kaldi wav.scp pipe entry runs the sox program")
SOX_EXTENSION = _install(SOX_PACKAGE, "s3prl's KS, QbE and ASV datasets read audio through torchaudio's sox "
                                      "extension, which opens the unversioned libsox.so")


def required() -> bool:
    """Whether a missing system package fails the tests that need it (``REQUIRE`` set, as ``.ci/run`` does)."""
    return os.environ.get(REQUIRE, "") not in ("", "0")


def missing(reason: str) -> None:
    """Skips the calling test or fixture with ``reason`` (the package to install); fails it where ``required()``."""
    if required():
        pytest.fail(f"{REQUIRE} is set and a system package is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def skip_without_espeak() -> None:
    """Skips the calling test or fixture where espeak-ng is missing (fails it where ``required()``)."""
    if not have_espeak():
        missing(ESPEAK)


def _needs(reason: Optional[str]) -> Callable[[Test], Test]:
    """A test decorator: the test as it is (``reason`` None: nothing missing), skipped with ``reason``, or, where
    ``required()``, a test that fails with ``reason`` before any of its fixtures is set up."""

    def decorate(test: Test) -> Test:
        if reason is None:
            return test
        if not required():
            return pytest.mark.skipif(True, reason=reason)(test)

        def fail() -> None:
            missing(reason)

        functools.update_wrapper(fail, test)  # its name and marks; no __wrapped__: pytest sets up no fixtures
        del fail.__wrapped__
        return fail  # type: ignore[return-value]

    return decorate


needs_espeak = _needs(None if have_espeak() else ESPEAK)
# where torchaudio has no sox_effects at all (the current stack) the stack, not a package, is missing: a plain skip
needs_sox_extension = (_needs(SOX_EXTENSION if sox_extension_error() else None) if hasattr(torchaudio, "sox_effects")
                       else pytest.mark.skipif(True, reason=SOX_EXTENSION))
