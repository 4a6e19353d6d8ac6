"""The Debian packages that some tests need, and the skip that names the package to install where one is missing.

``.ci/run`` installs all of them; docs/development.md ("System packages") says which tests each unlocks.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

from robustdistiller_upstream.s3prl_stack import SOX_PACKAGE, sox_extension_error
from robustdistiller_upstream.espeak import MISSING
from robustdistiller_upstream.synthetic import have_espeak


def _install(package: str, what: str) -> str:
    return f"needs Debian's {package} (apt-get install {package}): {what}"


ESPEAK = f"{MISSING}: the spoken corpora are made with it"
SOX_PROGRAM = _install("sox", "the Kaldi wav.scp pipe entry runs the sox program")
SOX_EXTENSION = _install(SOX_PACKAGE, "s3prl's KS, QbE and ASV datasets read audio through torchaudio's sox "
                                      "extension, which opens the unversioned libsox.so")


STRACE = _install("strace", "the SUPERB read proofs trace which audio files each evaluation opens")


@functools.cache
def strace_works() -> bool:
    """strace is installed and may trace here (a container may forbid ptrace)."""
    return shutil.which("strace") is not None and subprocess.run(
        ["strace", "-f", "-qq", "--seccomp-bpf", "-o", os.devnull, "true"], capture_output=True).returncode == 0


def skip_without_espeak() -> None:
    """Skips the calling test or fixture where espeak-ng is missing."""
    if not have_espeak():
        pytest.skip(ESPEAK)


needs_espeak = pytest.mark.skipif(not have_espeak(), reason=ESPEAK)
needs_sox_program = pytest.mark.skipif(shutil.which("sox") is None, reason=SOX_PROGRAM)
needs_sox_extension = pytest.mark.skipif(sox_extension_error() is not None, reason=SOX_EXTENSION)
needs_strace = pytest.mark.skipif(not strace_works(), reason=f"{STRACE} (installed: ptrace must be allowed)")
