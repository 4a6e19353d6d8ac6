"""Runs at interpreter start (from our .pth file): arranges for our hub entries to appear in ``s3prl.hub``.

Must stay cheap (no torch, no s3prl import here) and must never break Python start-up.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # no typing/importlib.abc import at start-up (~10 ms); finders and loaders are duck-typed
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Optional, Sequence

_HUB_MODULE = "s3prl.hub"


class _RegisteringLoader:
    """Wraps the real loader of ``s3prl.hub``; after the module has run, adds our hub functions."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def create_module(self, spec: ModuleSpec) -> Optional[ModuleType]:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        from robustdistiller_upstream.s3prl_plugin.registration import register_quietly

        register_quietly(module)


class _S3prlHubFinder:
    """Finds ``s3prl.hub`` through the other finders and wraps its loader."""

    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Optional[ModuleSpec]:
        if fullname != _HUB_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    if any(isinstance(f, _S3prlHubFinder) for f in sys.meta_path):
        return
    hub = sys.modules.get(_HUB_MODULE)
    if hub is not None:  # already imported (unusual at start-up): register directly
        from robustdistiller_upstream.s3prl_plugin.registration import register_quietly

        register_quietly(hub)
        return
    sys.meta_path.insert(0, _S3prlHubFinder())


try:
    install()
except Exception:  # noqa: BLE001 - a broken hook must never stop the interpreter from starting
    pass
