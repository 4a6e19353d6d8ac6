"""The README's commands work as printed.

Each command line of the README's ``bash`` blocks is either run as printed (the ones that need no data: with
generated checkpoints at the paths the README names, in a folder laid out like this repository), or, where it needs
data the tests cannot put at its path (``/data/...``, a real teacher), checked as far as it goes without the data:
the CLI's own parser accepts it, and a recipe named with ``-c`` loads with its ``-o`` overrides. A command of any
other form fails the test, so a new README command cannot go unchecked.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from s3prl_checkpoints import SMALL_DISTILLER, make_s3prl_distiller_checkpoint

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent

# Commands that need no data: run as printed.
RUN_AS_PRINTED = (
    "robustdistiller info ",
    "robustdistiller export ",
    "bash run_superb.sh --upstream wavlm_base_plus --tasks KS,IC --data-root /data/superb --dry-run",
)


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """Command lines of a bash block: continuation lines joined, trailing comments dropped."""
    joined = re.sub(r"\\\n\s*", "", block)
    lines = (re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines())
    return [line for line in lines if line]


def readme_commands() -> list[str]:
    return [c for block in code_blocks(README.read_text(), "bash") for c in commands(block)]


def bench_commands() -> list[str]:
    """The ``python bench/X.py [flags]`` commands quoted inline (the performance table)."""
    return sorted(set(re.findall(r"`(python bench/[^`]+)`", README.read_text())))


def test_the_readme_has_the_commands_this_test_knows():
    found = readme_commands()
    assert {"make demo", "make test"} <= set(found)
    for prefix in RUN_AS_PRINTED:
        assert any(c.startswith(prefix) for c in found), f"README lost the command {prefix!r}: update this test"
    assert len(README.read_text().splitlines()) <= 250


def _cli_args(command: str) -> list[str] | None:
    """The ``robustdistiller`` arguments of a command (also under torchrun), else None."""
    words = shlex.split(command)
    if words[0] == "robustdistiller":
        return words[1:]
    if words[0] == "torchrun" and "robustdistiller_upstream.cli" in words:
        return words[words.index("robustdistiller_upstream.cli") + 1:]
    return None


def check_accepted(command: str) -> None:
    """What a command that needs data can be checked for here; raises AssertionError naming it otherwise."""
    words = shlex.split(command)
    cli_args = _cli_args(command)
    if cli_args is not None:
        from robustdistiller_upstream.cli import build_parser
        from robustdistiller_upstream.cli.experiment import load_experiment
        from robustdistiller_upstream.prune.train import PruneConfig
        from robustdistiller_upstream.train.config import PretrainConfig

        args = build_parser().parse_args(cli_args)
        if args.command in ("pretrain", "prune") and args.config:
            args.config = str(REPO / args.config)
            config_class = PretrainConfig if args.command == "pretrain" else PruneConfig
            load_experiment(args, config_class)  # the recipe exists and every -o key is one of its keys
        return
    if words[:2] == ["bash", "run_superb.sh"]:
        from robustdistiller_upstream.superb.__main__ import build_parser as superb_parser

        superb_parser().parse_args(words[2:])
        return
    if words[:2] == ["python", "run_downstream.py"]:
        import s3prl
        import s3prl.hub

        upstream = words[words.index("-u") + 1]
        assert callable(getattr(s3prl.hub, upstream, None)), f"s3prl.hub has no {upstream}"
        runner = Path(s3prl.__file__).parent / "run_downstream.py"
        usage = subprocess.run([sys.executable, str(runner), "-h"], capture_output=True, text=True, timeout=300,
                               cwd=runner.parent)
        assert usage.returncode == 0, usage.stderr[-2000:]
        flags = [w for w in words[2:] if w.startswith("-")]
        unknown = [f for f in flags if not re.search(rf"(^|[\s\[,]){re.escape(f)}[\s,\]]", usage.stdout, re.M)]
        assert not unknown, f"{command}: run_downstream.py has no {unknown}"
        return
    if words[0] == "make":
        dry = subprocess.run(["make", "-n", *words[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, f"{command}: {dry.stderr}"
        return
    if words == ["bash", ".ci/run"]:
        ci = (REPO / ".ci" / "run").read_text()
        assert "suite stock test " in ci, ".ci/run no longer runs the README's test command (make test)"
        return
    raise AssertionError(f"README command of a form this test does not check: {command}")


def test_commands_that_need_data_are_accepted():
    needing_data = [c for c in readme_commands() if not c.startswith(RUN_AS_PRINTED)]
    for command in needing_data:
        check_accepted(command)


def test_a_wrong_command_is_not_accepted():
    """The checks above can fail: a recipe key that does not exist, an unknown flag, an unknown hub name."""
    from robustdistiller_upstream.errors import ConfigError

    with pytest.raises(ConfigError, match="no_such_key"):
        check_accepted('robustdistiller pretrain -c pretrain/rd_wavlm.yaml -n x -o "teacher.no_such_key=1"')
    with pytest.raises(SystemExit):
        check_accepted("robustdistiller export student.ckpt --to onnx --no-such-flag out.onnx")
    with pytest.raises(SystemExit):
        check_accepted("bash run_superb.sh --upstream x --no-such-flag")
    with pytest.raises(AssertionError, match="s3prl.hub has no no_such_upstream"):
        check_accepted("python run_downstream.py -m train -u no_such_upstream -k x.ckpt")
    with pytest.raises(AssertionError, match="flag-that-s3prl-lacks"):
        check_accepted("python run_downstream.py -m train -u robustdistiller_local --flag-that-s3prl-lacks")
    with pytest.raises(AssertionError, match="of a form this test does not check"):
        check_accepted("pip install robustdistiller")


@pytest.fixture()
def repo_like(tmp_path: Path) -> Path:
    """A folder laid out like this repository, with generated checkpoints where the README's commands read them."""
    for name in ("run_superb.sh", "pretrain", "downstream_configs"):
        (tmp_path / name).symlink_to(REPO / name)
    for path in ("student.ckpt", "exp/rd_wavlm/student.ckpt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        make_s3prl_distiller_checkpoint(tmp_path / path, SMALL_DISTILLER)
    return tmp_path


def test_commands_that_need_no_data_run_as_printed(repo_like: Path):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", PYTHON=sys.executable)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    ran = [c for c in readme_commands() if c.startswith(RUN_AS_PRINTED)]
    for command in ran:
        done = subprocess.run(command, shell=True, cwd=repo_like, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        if command.startswith("robustdistiller info"):
            assert "parameters" in done.stdout.lower(), done.stdout
        if command.startswith("bash run_superb.sh"):
            assert re.search(r"^KS .*\n\s+train\s+todo", done.stdout, re.M), done.stdout[:2000]
            assert re.search(r"^IC ", done.stdout, re.M), done.stdout[:2000]
    for output in ("out/rd_wavlm.onnx", "out/rd_wavlm.int8.onnx", "out/rd_wavlm_hf/config.json"):
        assert (repo_like / output).stat().st_size > 0, output
    assert not (repo_like / "exp" / "superb").exists(), "the dry run wrote results"


def test_bench_commands_accept_their_flags():
    benches = bench_commands()
    assert benches, "the README quotes no bench command"
    for command in benches:
        words = shlex.split(command)
        usage = subprocess.run([sys.executable, words[1], "--help"], cwd=REPO, capture_output=True, text=True,
                               timeout=300)
        assert usage.returncode == 0, f"{command}: {usage.stderr[-2000:]}"
        assert all(flag in usage.stdout for flag in words[2:] if flag.startswith("--")), (command, usage.stdout)
