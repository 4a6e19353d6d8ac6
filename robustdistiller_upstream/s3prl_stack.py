"""Which s3prl stack this environment has, and one clear error when it has none or a broken one (DESIGN 5, 7).

Two distributions install the same module ``s3prl``: the stock ``s3prl`` (0.4.18, imports only with torch and
torchaudio < 2.9) and ESPnet's ``espnet-s3prl`` fork (current torch). We require neither: the extras ``s3prl`` and
``espnet`` choose one, and installing ours never replaces the one a user has.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import re
import warnings
from pathlib import Path
from types import ModuleType
from typing import Iterator, Optional

from robustdistiller_upstream.errors import UserError

STOCK, FORK = "s3prl", "espnet-s3prl"
# the Debian package that gives torchaudio < 2.9 a loadable sox extension (``sox_extension_error``)
SOX_PACKAGE = "libsox-dev"
INSTALL_HINT = (
    "install one stack: pip install 'robustdistiller[s3prl]' (stock s3prl 0.4.18, torch < 2.9; pins: "
    "constraints.txt) or pip install 'robustdistiller[espnet]' (ESPnet's espnet-s3prl fork, current torch; pins: "
    "constraints-current.txt)"
)
# torchaudio APIs that 2.9 removed and that s3prl's downstream datasets still call (DESIGN 7)
_REMOVED_TORCHAUDIO = re.compile(r"torchaudio\.(sox_effects|info\b|set_audio_backend|io\b)|from torchaudio import sox_effects")


class S3prlStackError(UserError):
    """No usable ``s3prl`` module: missing, or installed for another torch."""


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def s3prl_distributions() -> dict[str, str]:
    """``{distribution: version}`` of the installed distributions that provide the module ``s3prl``."""
    return {name: version for name in (STOCK, FORK) if (version := _version(name))}


def describe_stack() -> str:
    """One line: the s3prl distribution(s), torch and torchaudio versions installed."""
    found = s3prl_distributions()
    s3prl = ", ".join(f"{name} {version}" for name, version in found.items()) or "no s3prl distribution"
    return f"{s3prl}; torch {_version('torch') or 'not installed'}; torchaudio {_version('torchaudio') or 'not installed'}"


def import_s3prl_hub() -> ModuleType:
    """``import s3prl.hub``, or an ``S3prlStackError`` that says what is installed and what to install."""
    if importlib.util.find_spec("s3prl") is None:
        raise S3prlStackError(f"no s3prl module is importable ({describe_stack()}): {INSTALL_HINT}")
    try:
        import s3prl.hub as hub
    except Exception as exc:  # noqa: BLE001 - the stock s3prl on torchaudio >= 2.9 fails with AttributeError
        if len(s3prl_distributions()) > 1:
            cause = "both distributions are installed and overwrite each other's files: uninstall both, reinstall one"
        else:
            cause = "s3prl 0.4.18 needs torch/torchaudio < 2.9; on current torch use ESPnet's espnet-s3prl fork"
        raise S3prlStackError(f"s3prl does not import ({type(exc).__name__}: {exc}) with {describe_stack()}: "
                              f"{cause}; {INSTALL_HINT}") from exc
    return hub


def _expert_sources(downstream: str) -> Iterator[tuple[str, str]]:
    """``(path from site-packages, text)`` of each ``.py`` file of s3prl's ``downstream/<downstream>/``."""
    spec = importlib.util.find_spec(f"s3prl.downstream.{downstream}")
    if spec is None or not spec.submodule_search_locations:
        return
    for folder in spec.submodule_search_locations:
        for source in sorted(Path(folder).rglob("*.py")):
            yield str(source.relative_to(Path(folder).parents[2])), source.read_text(errors="replace")


def removed_torchaudio_calls(downstream: str) -> list[str]:
    """``file: API`` for each call in s3prl's ``downstream/<downstream>/`` of a torchaudio API this torchaudio lacks.

    Empty on the stock stack (torchaudio < 2.9 still has them all).
    """
    import torchaudio

    calls = []
    for source, text in _expert_sources(downstream):
        for match in sorted(set(_REMOVED_TORCHAUDIO.findall(text))):
            api = match or "sox_effects"
            if not hasattr(torchaudio, api):
                calls.append(f"{source}: torchaudio.{api}")
    return calls


def sox_effects_users(downstream: str) -> list[str]:
    """The files of s3prl's ``downstream/<downstream>/`` that read audio through ``torchaudio.sox_effects``
    (KS, QbE and ASV in s3prl 0.4.18)."""
    return [source for source, text in _expert_sources(downstream) if "sox_effects" in text]


@functools.lru_cache(maxsize=None)
def sox_extension_error() -> Optional[str]:
    """Why torchaudio's sox extension does not load in this process (``None`` when it loads).

    torchaudio < 2.9 loads it on first use: its ``libtorchaudio_sox.so`` needs the unversioned ``libsox.so``, which
    on Debian only ``libsox-dev`` installs (``libsox3`` ships ``libsox.so.3`` alone), so without it the stock KS,
    QbE and ASV datasets fail inside the runner, minutes into a run (DESIGN 5).
    """
    import torchaudio

    if not hasattr(torchaudio, "sox_effects"):
        return f"torchaudio {torchaudio.__version__} has no sox_effects"
    try:
        with warnings.catch_warnings():  # torchaudio 2.8 marks every sox API deprecated
            warnings.simplefilter("ignore")
            torchaudio.sox_effects.effect_names()
    except Exception as exc:  # noqa: BLE001 - OSError (libsox.so missing or broken), RuntimeError (built without sox)
        return f"{type(exc).__name__}: {exc}"
    return None
