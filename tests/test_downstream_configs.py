"""Each of the 12 downstream configs against the stock s3prl expert it names.

The keys an expert reads with ``[...]`` (so a missing one is a KeyError at run time) are taken from the
installed expert's source: ``downstream_expert['x']`` and the sections it binds from it (``self.datarc =
downstream_expert['datarc']`` -> ``datarc['y']``); the runner's keys from ``runner.py`` the same way.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.superb.configs import config_dir, expand, load_task_config
from robustdistiller_upstream.superb.tasks import TASKS, get_key, resolve_tasks

S3PRL_DOWNSTREAM = Path(importlib.util.find_spec("s3prl").origin).parent / "downstream"
ENV = {"DATA_ROOT": "/data", "S3PRL_DIR": "/s3prl"}


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def _const(node: ast.Subscript) -> str | None:
    return node.slice.value if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str) else None


def expert_keys(expert: str) -> set[tuple[str, ...]]:
    """Paths under ``downstream_expert`` that the expert indexes, e.g. ``("datarc", "batch_size")``."""
    tree = ast.parse((S3PRL_DOWNSTREAM / expert / "expert.py").read_text())
    sections = {"downstream_expert": ()}
    for node in ast.walk(tree):  # self.datarc = downstream_expert["datarc"]
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Subscript) and _const(node.value):
            if _name(node.value.value) == "downstream_expert":
                for target in node.targets:
                    if _name(target):
                        sections[_name(target)] = (_const(node.value),)
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _const(node) and _name(node.value) in sections:
            keys.add(sections[_name(node.value)] + (_const(node),))
    return keys


def runner_keys() -> set[str]:
    """Keys of ``config['runner']`` the stock runner indexes."""
    tree = ast.parse((S3PRL_DOWNSTREAM / "runner.py").read_text())
    return {_const(node) for node in ast.walk(tree)
            if isinstance(node, ast.Subscript) and _const(node) and isinstance(node.value, ast.Subscript)
            and _const(node.value) == "runner"}


def test_twelve_tasks_each_with_a_config_file():
    assert list(TASKS) == ["PR", "KS", "IC", "SID", "ER", "ASR", "QbE", "SF", "ASV", "SD", "SE", "SS"]
    assert sorted(p.name for p in config_dir().glob("*.yaml")) == sorted(
        [t.config for t in TASKS.values()] + ["conditions.yaml", "superb_reference.yaml"])


@pytest.mark.parametrize("name", list(TASKS))
def test_config_has_every_key_its_expert_reads(name):
    task = TASKS[name]
    assert (S3PRL_DOWNSTREAM / task.downstream / "expert.py").is_file(), task.downstream
    config = load_task_config(task, ENV)
    keys = expert_keys(task.downstream)
    assert len(keys) >= 3, f"found too few keys in {task.downstream}/expert.py: {keys}"
    for path in keys:
        get_key(config["downstream_expert"], ".".join(path), f"{task.config} for {task.downstream}")
    get_key(config["downstream_expert"], task.test_key, task.config)
    if task.trains:
        missing = runner_keys() - set(config["runner"])
        assert not missing, f"{task.config}: runner keys {missing} missing"
        assert config["optimizer"]["lr"] > 0
    text = str(config)
    assert "${" not in text and "/data" in text  # every path came from DATA_ROOT (or S3PRL_DIR)


def test_paths_come_from_data_root_environment_and_task_variables():
    ks = load_task_config(TASKS["KS"], {"DATA_ROOT": "/d", "KS_TEST_ROOT": "/elsewhere"})
    datarc = ks["downstream_expert"]["datarc"]
    assert datarc["speech_commands_root"] == "/d/speech_commands_v0.01"
    assert datarc["speech_commands_test_root"] == "/elsewhere"
    assert datarc["num_workers"] == 8  # a lone placeholder is re-read as YAML: an int, as s3prl expects
    overridden = load_task_config(TASKS["KS"], {"DATA_ROOT": "/d", "SUPERB_NUM_WORKERS": "0"},
                                  ["runner.total_steps=7", "KS:optimizer.lr=0.5", "IC:optimizer.lr=9"])
    assert overridden["runner"]["total_steps"] == 7 and overridden["optimizer"]["lr"] == 0.5
    assert overridden["downstream_expert"]["datarc"]["num_workers"] == 0


def test_missing_variables_are_named():
    with pytest.raises(ConfigError, match=r"ks\.yaml.*DATA_ROOT"):
        load_task_config(TASKS["KS"], {})
    with pytest.raises(ConfigError, match="S3PRL_DIR"):
        load_task_config(TASKS["PR"], {"DATA_ROOT": "/d"})
    assert expand("${A:-${B}/x}", {"B": "/b"}, "here") == "/b/x"
    with pytest.raises(ConfigError, match="unbalanced"):
        expand("${A", {}, "here")


def test_task_selection():
    assert [t.name for t in resolve_tasks("ks, ic")] == ["KS", "IC"]
    assert len(resolve_tasks("all")) == 12
    with pytest.raises(ConfigError, match="XX"):
        resolve_tasks("KS,XX")
