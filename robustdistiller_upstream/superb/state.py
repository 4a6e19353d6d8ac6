"""Small JSON state files of the sweep (done markers, results), written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robustdistiller_upstream.files import write_text_atomic


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Writes ``data`` as JSON to ``path`` through a temporary file and a rename (never a torn file)."""
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
