"""Adds our hub functions to ``s3prl.hub`` (where s3prl's runner and ``S3PRLUpstream`` look them up)."""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType
from typing import Callable, Optional

from robustdistiller_upstream.s3prl_stack import import_s3prl_hub

# Modules whose HUB_ENTRIES names are added to s3prl.hub.
HUB_MODULES = ("robustdistiller_upstream.s3prl_plugin.hubconf", "robustdistiller_upstream.s3prl_plugin.dpwavlm")


def hub_entries() -> dict[str, Callable]:
    entries: dict[str, Callable] = {}
    for module_name in HUB_MODULES:
        module = importlib.import_module(module_name)
        entries.update({name: getattr(module, name) for name in module.HUB_ENTRIES})
    return entries


def register_into_s3prl_hub(hub: Optional[ModuleType] = None) -> None:
    """Adds every hub entry to ``hub`` (default: ``import s3prl.hub``). Idempotent."""
    if hub is None:
        hub = import_s3prl_hub()
    for name, function in hub_entries().items():
        setattr(hub, name, function)


def register_quietly(hub: ModuleType) -> None:
    """Used by the import hook: a failure here must never break ``import s3prl.hub``."""
    try:
        register_into_s3prl_hub(hub)
    except Exception as exc:  # noqa: BLE001
        warnings.warn(f"robustdistiller: could not register s3prl hub entries: {exc!r}", RuntimeWarning, stacklevel=2)
