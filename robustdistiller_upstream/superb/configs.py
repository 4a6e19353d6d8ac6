"""Our downstream configs (``downstream_configs/*.yaml``): where they are and how their paths get filled.

A config value may hold ``${VAR}`` or ``${VAR:-default}`` (defaults may nest: ``${A:-${DATA_ROOT}/x}``),
filled from the environment plus ``DATA_ROOT`` (``--data-root``) and ``S3PRL_DIR``. A value that is one
placeholder only is re-read as YAML after filling (``${SUPERB_NUM_WORKERS:-8}`` is the integer 8).
The filled config is what the stock runner gets with ``-c``; nobody edits paths by hand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from robustdistiller_upstream.config import merge, parse_overrides, read_yaml
from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.superb.tasks import TaskSpec

CONFIG_DIR_ENV = "RD_SUPERB_CONFIGS"
_PACKAGE_CONFIGS = Path(__file__).resolve().parent / "downstream_configs"
_REPO_CONFIGS = Path(__file__).resolve().parents[2] / "downstream_configs"


def config_dir() -> Path:
    """``$RD_SUPERB_CONFIGS``, else the configs shipped in the package, else the repository's folder."""
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV])
    return _PACKAGE_CONFIGS if (_PACKAGE_CONFIGS / "ks.yaml").is_file() else _REPO_CONFIGS


def _closing(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` at ``start``; -1 if unbalanced."""
    depth = 0
    for i in range(start, len(text)):
        if text.startswith("${", i):
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def expand(text: str, env: Mapping[str, str], where: str) -> str:
    """Fills ``${VAR}`` and ``${VAR:-default}`` from ``env``; an unset variable without a default is a
    ``ConfigError`` naming ``where`` and the variable."""
    out, i = [], 0
    while True:
        start = text.find("${", i)
        if start < 0:
            return "".join(out) + text[i:]
        end = _closing(text, start)
        if end < 0:
            raise ConfigError(f"{where}: unbalanced '${{' in {text!r}")
        name, sep, default = text[start + 2:end].partition(":-")
        if env.get(name):
            value = env[name]
        elif sep:
            value = expand(default, env, where)
        else:
            raise ConfigError(f"{where}: ${{{name}}} is not set (export {name}=... or pass the matching option)")
        out.append(text[i:start] + value)
        i = end + 1


def _fill(node: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, env, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, env, f"{where}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        filled = expand(node, env, where)
        whole = node.startswith("${") and _closing(node, 0) == len(node) - 1
        return yaml.safe_load(filled) if whole else filled
    return node


def load_task_config(
    task: TaskSpec, env: Mapping[str, str], overrides: Sequence[str] = (), directory: Path | None = None
) -> dict[str, Any]:
    """The task's config with placeholders filled from ``env`` and ``overrides`` merged in.

    ``overrides``: ``"key.path=value"`` (all tasks) or ``"TASK:key.path=value"`` (one task), as in
    ``run_superb.sh -o``; keys are relative to the config root (``runner.total_steps=1000``).
    """
    path = (directory or config_dir()) / task.config
    if not path.is_file():
        raise ConfigError(f"{path}: config of task {task.name} not found (set ${CONFIG_DIR_ENV} or reinstall)")
    config = merge(read_yaml(path), parse_overrides(task_overrides(task, overrides)))
    return _fill(config, env, str(path))


def task_overrides(task: TaskSpec, overrides: Sequence[str]) -> list[str]:
    """The ``overrides`` that apply to ``task``: every ``"key=value"`` and its own ``"TASK:key=value"`` (prefix
    dropped)."""
    mine = []
    for item in overrides:
        prefix, sep, rest = item.partition(":")
        if sep and "=" not in prefix:
            if prefix.upper() == task.name.upper():
                mine.append(rest)
        else:
            mine.append(item)
    return mine


def overridden_keys(task: TaskSpec, overrides: Sequence[str]) -> list[str]:
    """The dotted keys (``downstream_expert.corpus.test``) that ``overrides`` set in ``task``'s config."""

    def leaves(node: Mapping[str, Any], prefix: str) -> list[str]:
        return [key for name, value in node.items()
                for key in (leaves(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"])]

    return leaves(parse_overrides(task_overrides(task, overrides)), "")
