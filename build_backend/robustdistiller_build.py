"""PEP 517 build backend: setuptools, plus the s3prl hub hook in every wheel.

s3prl finds upstreams only as attributes of ``s3prl.hub``. A ``.pth`` file in site-packages runs one import
line at interpreter start; ours installs a post-import hook that adds our hub functions when ``s3prl.hub``
is imported. setuptools has no public way to put a top-level file into an editable wheel, so this backend
delegates every hook to ``setuptools.build_meta`` and then adds the ``.pth`` (and its RECORD line) to the
finished wheel. Only the PEP 517 hooks and the wheel format (PEP 427) are relied on.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (re-exported PEP 517 hooks)
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

PTH_NAME = "robustdistiller_upstream-s3prl-hook.pth"
# Sorted after setuptools' "__editable__.*.pth", so the package is importable when this line runs.
PTH_LINE = b"import robustdistiller_upstream._startup_hook\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"


def _add_pth(wheel_path: str) -> None:
    """Rewrites the wheel with the hook file at its root and a RECORD entry for it."""
    tmp_path = wheel_path + ".tmp"
    with zipfile.ZipFile(wheel_path) as src, zipfile.ZipFile(tmp_path, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith(".dist-info/RECORD"):
                data = data + _record_line(PTH_NAME, PTH_LINE).encode()
                dst.writestr(PTH_NAME, PTH_LINE)
            dst.writestr(item, data)
    os.replace(tmp_path, wheel_path)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    _add_pth(os.path.join(wheel_directory, name))
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    name = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    _add_pth(os.path.join(wheel_directory, name))
    return name
