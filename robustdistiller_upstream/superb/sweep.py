"""The SUPERB sweep: per task, train the downstream once on clean data, then evaluate its best checkpoint on
every test condition, all with the stock s3prl runner (through ``superb.launch``).

Layout of one upstream's sweep, ``<exp_root>/<tag>/``::

    <TASK>/train/           s3prl expdir of the training run; done.json once finished: the checkpoint its
                            evaluations use (``pick_checkpoint``: the dev-best one, else the last, and why)
    <TASK>/<CONDITION>/     s3prl expdir of one evaluate run; run.log (runner output), result.json once parsed
    summary.json            what the last invocation did, per run: done / skipped / failed (+ reason); on a
                            cluster also queued / running, job ids and logs (``superb.cluster``)
    jobs/                   submitit's job files and logs (cluster launchers)

Condition copies live in ``<cond_root>/<TASK>/<CONDITION>/`` (``superb.conditions``), shared by upstreams.
A run with its marker (done.json, result.json) is skipped; an interrupted training resumes from its last
s3prl checkpoint (``-a``); a failure is recorded and the sweep goes on with the next task.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from robustdistiller_upstream.augment.conditions import load_conditions
from robustdistiller_upstream.cluster.state import UNFINISHED
from robustdistiller_upstream.errors import ConfigError, UserError
from robustdistiller_upstream.files import write_json_atomic
from robustdistiller_upstream.s3prl_stack import (SOX_PACKAGE, describe_stack, import_s3prl_hub, removed_torchaudio_calls,
                                                  sox_effects_users, sox_extension_error)
from robustdistiller_upstream.superb.conditions import EvalCondition, build_condition
from robustdistiller_upstream.superb.configs import config_dir, load_task_config, overridden_keys
from robustdistiller_upstream.superb.prepare import ASV_LENGTHS
from robustdistiller_upstream.superb.results import RESULT, parse_metrics
from robustdistiller_upstream.superb.tasks import TaskSpec, get_key, read_test_parts, resolve_tasks, set_key

log = logging.getLogger(__name__)

DONE = "done.json"
RUN_LOG = "run.log"
SCORE = "score.out"  # what QbE's scorer writes
SID_CACHE = ".sid_cache"
_LAUNCH = [sys.executable, "-m", "robustdistiller_upstream.superb.launch"]
# the downstream checkpoint evaluated (``pick_checkpoint``): in done.json, result.json and summary.json rows
CHECKPOINT_KEYS = ("checkpoint", "checkpoint_kind", "checkpoint_why")


@dataclass
class SweepConfig:
    """What ``run_superb.sh`` was asked for (see ``superb.__main__`` for the options)."""

    upstream: str
    ckpt: str = ""
    upstream_config: str = ""
    tag: str = ""
    tasks: str = "all"
    conditions: str = ""
    only_conditions: list[str] = field(default_factory=list)
    data_root: str = ""
    s3prl_dir: str = ""
    exp_root: str = "exp/superb"
    cond_root: str = ""
    gpus: list[str] = field(default_factory=list)
    nproc: int = 1
    overrides: list[str] = field(default_factory=list)
    runner_args: list[str] = field(default_factory=list)
    contaminate_workers: int = 1
    launcher: str = "local"  #: local | slurm | local-submitit (superb.cluster)
    slurm: list[str] = field(default_factory=list)  #: --slurm key=value,... (cluster.slurm.SlurmOptions)
    max_parallel: int = 0  #: jobs in flight at most (cluster launchers; 0: superb.cluster's default)
    er_folds: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])  #: IEMOCAP test sessions (ER's folds)


@dataclass
class Run:
    """One step of the sweep and what became of it."""

    task: str
    kind: str  # "train" | "evaluate" | "condition" (a condition copy: its own job on a cluster)
    condition: str
    expdir: Path
    # todo | queued | running (a cluster job) | done (this invocation) | skipped (finished earlier) | failed |
    # cancelled (its cluster job, e.g. by scancel) | blocked
    status: str = "todo"
    reason: str = ""
    seconds: float = 0.0
    job_id: str = ""  # the cluster job that runs it, and that job's log
    log: str = ""
    # the downstream checkpoint a training picked and its evaluations use: path, "dev-best" | "last", and why
    checkpoint: str = ""
    checkpoint_kind: str = ""
    checkpoint_why: str = ""

    def checkpoint_record(self) -> dict[str, str]:
        """The ``CHECKPOINT_KEYS`` fields."""
        return {key: getattr(self, key) for key in CHECKPOINT_KEYS}

    def take_checkpoint(self, record: dict[str, Any]) -> None:
        """Takes the ``CHECKPOINT_KEYS`` fields of ``record`` (a marker, a cluster job's result; absent: "")."""
        for key in CHECKPOINT_KEYS:
            setattr(self, key, str(record.get(key, "")))


@dataclass
class TaskPlan:
    """A task's resolved config (or why it cannot run) and its runs in order; one plan per fold of a task with
    folds (ER: ``fold`` = ``fold2`` tests on IEMOCAP's Session 2; its runs live in ``<TASK>/fold2/``)."""

    spec: TaskSpec
    config: Optional[dict[str, Any]]
    error: str
    runs: list[Run]
    fold: str = ""

    @property
    def label(self) -> str:
        """``ER/fold2`` for a fold, else the task name: the runs' ``task`` and the folder under the sweep."""
        return f"{self.spec.name}/{self.fold}" if self.fold else self.spec.name


def pick_checkpoint(expdir: Path, runner: dict[str, Any]) -> dict[str, str]:
    """The checkpoint of a finished training that its evaluations use: ``{"checkpoint", "checkpoint_kind",
    "checkpoint_why"}``. The expert's dev-best (``*best*.ckpt``) where it saved one, else the runner's last
    ``states-*.ckpt``: with no dev set (``runner.eval_dataloaders`` empty: ASV, whose stock expert scores its dev
    evaluation with the test trials), or when no dev evaluation saved a best one."""
    best = sorted(expdir.glob("*best*.ckpt"))
    if best:
        return {"checkpoint": str(best[0]), "checkpoint_kind": "dev-best",
                "checkpoint_why": f"the expert's best dev score ({best[0].name})"}
    states = sorted(expdir.glob("states-*.ckpt"), key=lambda p: int(p.stem.split("-")[-1]))
    if not states:
        raise RuntimeError(f"training finished without a checkpoint in {expdir}")
    dev = runner.get("eval_dataloaders") or []
    why = ("no dev set (runner.eval_dataloaders is empty)" if not dev else
           f"no dev evaluation on {', '.join(dev)} saved a best checkpoint (runner.eval_step "
           f"{runner.get('eval_step')}, total_steps {runner.get('total_steps')})")
    return {"checkpoint": str(states[-1]), "checkpoint_kind": "last", "checkpoint_why": f"{why}: {states[-1].name}"}


def default_tag(cfg: SweepConfig) -> str:
    """``--tag``, else the checkpoint's folder name (``exp/rd_wavlm/student.ckpt`` -> ``rd_wavlm``), else the
    upstream name."""
    if cfg.tag:
        return cfg.tag
    return Path(cfg.ckpt).resolve().parent.name if cfg.ckpt and "://" not in cfg.ckpt else cfg.upstream


def _check_override_value(value: str, what: str) -> str:
    # s3prl's -o splits on ",," and "=" and eval()s values
    if "=" in value or ",," in value:
        raise ConfigError(f"{what} {value!r}: s3prl -o values may not contain '=' or ',,'")
    return value


def _check_upstream(name: str) -> None:
    """The runner finds upstreams only as attributes of ``s3prl.hub`` (ours are added at its import)."""
    hub = import_s3prl_hub()
    if not callable(getattr(hub, name, None)) or name.startswith("_"):
        close = sorted(n for n in dir(hub) if not n.startswith("_") and name.split("_")[0] in n)[:10]
        raise ConfigError(f"--upstream {name!r} is not in s3prl.hub (similar: {close or 'none'})")


def _import_expert(downstream: str) -> None:
    """Imports the stock expert here first, so a missing per-task dependency (catalyst, libsox, ...) is one clear
    line in the plan instead of a traceback in each run's log."""
    import importlib

    removed = removed_torchaudio_calls(downstream)
    if removed:
        raise ConfigError(f"cannot run on this stack ({describe_stack()}): {'; '.join(removed)} (removed in "
                          f"torchaudio 2.9); run it on the stock stack (constraints.txt, docs/superb.md)")
    sox_users = sox_effects_users(downstream)
    if sox_users and (sox_error := sox_extension_error()):
        raise ConfigError(f"cannot run on this machine: {sox_users[0]} reads audio through torchaudio.sox_effects, "
                          f"whose sox extension does not load ({sox_error}); install Debian's {SOX_PACKAGE} "
                          f"(apt-get install {SOX_PACKAGE}: torchaudio opens the unversioned libsox.so, which "
                          f"libsox3 alone does not ship)")
    try:
        importlib.import_module(f"s3prl.downstream.{downstream}.expert")
    except Exception as exc:  # ImportError, OSError (libsox), AttributeError (old catalyst on Python 3.11)
        raise ConfigError(f"s3prl expert {downstream!r} does not import: {type(exc).__name__}: {exc} "
                          f"(per-task dependencies: docs/superb.md)") from None


class Sweep:
    """Plans and runs one upstream's sweep."""

    def __init__(self, cfg: SweepConfig) -> None:
        self.cfg = cfg
        self.tag = default_tag(cfg)
        self.exp = Path(cfg.exp_root).resolve() / self.tag
        self.cond_root = Path(cfg.cond_root or Path(cfg.exp_root) / "_conditions").resolve()
        self.conditions_file = Path(cfg.conditions or config_dir() / "conditions.yaml").resolve()
        self.env = self._environment()
        _check_upstream(cfg.upstream)
        self.conditions = self._conditions()
        self.ckpt = str(Path(cfg.ckpt).resolve()) if cfg.ckpt and Path(cfg.ckpt).exists() else cfg.ckpt
        self.plans = [plan for spec in resolve_tasks(cfg.tasks) for plan in self._plans(spec)]
        self.copies: list[Run] = []  # condition-copy jobs (cluster launchers)
        self.jobs_folder = str(self.exp / "jobs") if cfg.launcher != "local" else ""
        # the last invocation's rows by (task, kind, condition): a cluster rerun finds its jobs still in flight
        self.earlier: dict[tuple[str, str, str], dict[str, Any]] = self._earlier_jobs()

    def _earlier_jobs(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """The rows of the last ``summary.json``; runs finished by an earlier invocation keep the job id and log of
        the job that ran them."""
        path = self.exp / "summary.json"
        if not path.is_file():
            return {}
        earlier = {(r["task"], r["kind"], r["condition"]): r for r in json.loads(path.read_text())["runs"]}
        for run in (r for plan in self.plans for r in plan.runs if r.status == "skipped"):
            row = earlier.get((run.task, run.kind, run.condition), {})
            run.job_id, run.log = row.get("job_id", ""), row.get("log", "")
        return earlier

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.cfg.data_root:
            env["DATA_ROOT"] = str(Path(self.cfg.data_root).resolve())
        if self.cfg.s3prl_dir:
            env["S3PRL_DIR"] = str(Path(self.cfg.s3prl_dir).resolve())
        # ASV's length cache (superb.prepare.asv_lengths), made before its runs
        env["RD_SUPERB_ASV_LENGTHS"] = str(self.cond_root / "_prepared" / "ASV" / ASV_LENGTHS)
        # s3prl downstream checkpoints pickle an argparse.Namespace (DESIGN 5): only the runner needs this
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
        return env

    def _conditions(self) -> list[EvalCondition]:
        if not self.conditions_file.is_file():
            raise ConfigError(f"--conditions {self.conditions_file}: not found")
        saved = dict(os.environ)
        os.environ.update(self.env)  # the conditions file may name ${DATA_ROOT}
        try:
            _, conditions = load_conditions(self.conditions_file)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        unknown = sorted(set(self.cfg.only_conditions) - set(conditions))
        if unknown:
            raise ConfigError(f"--only-conditions {unknown}: not in {self.conditions_file} ({sorted(conditions)})")
        wanted = self.cfg.only_conditions or list(conditions)
        return [EvalCondition(name, *conditions[name]) for name in wanted]

    def _plans(self, spec: TaskSpec) -> list[TaskPlan]:
        """The task's plan, or one per fold in ``--er-folds`` for a task with folds."""
        if not spec.folds:
            return [self._plan(spec)]
        wrong = sorted(set(self.cfg.er_folds) - set(range(1, spec.folds + 1)))
        if wrong or not self.cfg.er_folds:
            raise ConfigError(f"--er-folds {self.cfg.er_folds}: {spec.name} has folds 1..{spec.folds}")
        return [self._plan(spec, f"fold{k}") for k in sorted(set(self.cfg.er_folds))]

    def _plan(self, spec: TaskSpec, fold: str = "") -> TaskPlan:
        error, config = "", None
        try:
            if spec.needs_s3prl_dir and not Path(self.env.get("S3PRL_DIR", ""), "s3prl", "downstream").is_dir():
                raise ConfigError(f"{spec.name} needs files the PyPI s3prl lacks: pass --s3prl-dir (an s3prl git "
                                  f"checkout, holding s3prl/downstream/) or set S3PRL_DIR")
            config = load_task_config(spec, self.env, self.cfg.overrides)
            get_key(config["downstream_expert"], spec.test_key, spec.config)
            if fold:  # the emotion expert's key (it reads Session N's meta data for fold N)
                set_key(config["downstream_expert"], "datarc.test_fold", fold)
            _import_expert(spec.downstream)
            if spec.check is not None:  # after the stack and machine checks: those hold for every dataset
                spec.check(config["downstream_expert"])
        except (UserError, OSError) as exc:
            error = str(exc)
        plan = TaskPlan(spec, config, error, [], fold)
        task_dir = self.exp / plan.label
        runs = [Run(plan.label, "train", "", task_dir / "train")] if spec.trains else []
        runs += [Run(plan.label, "evaluate", c.name, task_dir / c.name) for c in self.conditions]
        for run in runs:
            marker = run.expdir / (DONE if run.kind == "train" else RESULT)
            if marker.is_file():
                run.status = "skipped"
                made = json.loads(marker.read_text())
                run.take_checkpoint(made)
                if (made.get("upstream"), made.get("ckpt")) != (self.cfg.upstream, self.ckpt):
                    error = error or (f"{marker} was made with upstream {made.get('upstream')!r} ckpt "
                                      f"{made.get('ckpt')!r}, not {self.cfg.upstream!r} {self.ckpt!r}: "
                                      f"choose another --tag (finished results are never overwritten)")
        plan.error, plan.runs = error, runs
        return plan

    # ---- commands -------------------------------------------------------------------------------------

    def _upstream_args(self) -> list[str]:
        args = ["-u", self.cfg.upstream]
        if self.cfg.ckpt:
            args += ["-k", self.ckpt]
        if self.cfg.upstream_config:
            args += ["-g", str(Path(self.cfg.upstream_config).resolve())]
        return args + list(self.cfg.runner_args)

    def _device_args(self, gpu: Optional[str]) -> list[str]:
        # the runner defaults to cuda and fails without it (DESIGN 5)
        return ["--device", "cuda" if gpu is not None or self._has_cuda() else "cpu"]

    @staticmethod
    def _has_cuda() -> bool:
        import torch

        return torch.cuda.is_available()

    def train_command(self, plan: TaskPlan, run: Run, gpu: Optional[str]) -> list[str]:
        prefix = list(_LAUNCH)
        if self.cfg.nproc > 1:
            # --standalone: a free rendezvous port, so parallel DDP runs on other GPU groups do not collide
            prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                      f"--nproc_per_node={self.cfg.nproc}", "-m", "robustdistiller_upstream.superb.launch"]
        return prefix + ["-m", "train", *self._upstream_args(), "-d", plan.spec.downstream,
                         "-c", str(run.expdir / "superb_config.yaml"), "-p", str(run.expdir), "-a",
                         *self._device_args(gpu)]

    def _overrides(self, plan: TaskPlan) -> dict[str, Any]:
        """``{dotted key: value}`` that this sweep's ``-o`` set in the task's config (values as filled there)."""
        return {key: get_key(plan.config, key, plan.spec.config)
                for key in overridden_keys(plan.spec, self.cfg.overrides)}

    def evaluate_command(self, plan: TaskPlan, run: Run, root: Path, gpu: Optional[str],
                         checkpoint: Optional[Path]) -> list[str]:
        """``checkpoint``: the trained downstream (None for QbE, which does not train). The runner reads the config
        inside ``checkpoint``: this sweep's ``-o`` overrides are given to it again, then the test data and expdir."""
        split = ["-t", plan.spec.evaluate_split]
        if checkpoint is None:
            return _LAUNCH + ["-m", "evaluate", *self._upstream_args(), "-d", plan.spec.downstream, "-c",
                              str(run.expdir / "superb_config.yaml"), "-p", str(run.expdir), *split,
                              *self._device_args(gpu)]
        values = {f"config.{key}": repr(value) for key, value in self._overrides(plan).items()}
        values[f"config.downstream_expert.{plan.spec.test_key}"] = repr(str(root))
        values["args.expdir"] = str(run.expdir)
        override = ",,".join(f"{key}={_check_override_value(value, key)}" for key, value in values.items())
        return _LAUNCH + ["-m", "evaluate", "-e", str(checkpoint), *split, "-o", override, *self._device_args(gpu)]

    def trained(self, plan: TaskPlan) -> dict[str, str]:
        """The checkpoint of the task's finished training, its kind and why (``pick_checkpoint``, in done.json)."""
        done = json.loads((self.exp / plan.label / "train" / DONE).read_text())
        return {key: done.get(key, "") for key in CHECKPOINT_KEYS}

    # ---- running --------------------------------------------------------------------------------------

    def _run_runner(self, command: list[str], run: Run, gpu: Optional[str], expert: str) -> None:
        run.expdir.mkdir(parents=True, exist_ok=True)
        # SID's file lists (absolute paths, keyed by split only): built by this runner for the root it reads
        shutil.rmtree(run.expdir / SID_CACHE, ignore_errors=True)
        env = dict(self.env, RD_SUPERB_SID_CACHE=str(run.expdir / SID_CACHE), RD_SUPERB_DOWNSTREAM=expert)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu.replace("+", ",")  # "0+1": a group of GPUs for one DDP run
        with open(run.expdir / RUN_LOG, "a") as out:
            out.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
            out.flush()
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=run.expdir).returncode
        if code != 0:
            raise RuntimeError(f"s3prl runner exited with {code}; see {run.expdir / RUN_LOG}")

    def _write_config(self, plan: TaskPlan, run: Run, test_root: Optional[Path] = None) -> None:
        import yaml

        config = json.loads(json.dumps(plan.config))
        if test_root is not None:
            set_key(config["downstream_expert"], plan.spec.test_key, str(test_root))
        run.expdir.mkdir(parents=True, exist_ok=True)
        (run.expdir / "superb_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _train(self, plan: TaskPlan, run: Run, gpu: Optional[str]) -> None:
        if plan.spec.prepare is not None:
            plan.spec.prepare(plan.config, self.cond_root / "_prepared" / plan.spec.name)
        self._write_config(plan, run)
        self._run_runner(self.train_command(plan, run, gpu), run, gpu, plan.spec.downstream)
        run.take_checkpoint(pick_checkpoint(run.expdir, plan.config["runner"]))
        write_json_atomic(run.expdir / DONE, {"task": plan.label, **run.checkpoint_record(),
                                              "upstream": self.cfg.upstream, "ckpt": self.ckpt})

    def _clean_root(self, plan: TaskPlan) -> Path:
        return Path(get_key(plan.config["downstream_expert"], plan.spec.test_key, plan.spec.config))

    def _trained_expert(self, plan: TaskPlan, checkpoint: Path) -> dict[str, Any]:
        """The ``downstream_expert`` section the runner will use to evaluate ``checkpoint``: the one inside it (the
        runner reads every key from there) with this sweep's overrides given again (``evaluate_command``)."""
        import torch

        config = copy.deepcopy(torch.load(checkpoint, map_location="cpu", weights_only=False)["Config"])
        for key, value in self._overrides(plan).items():
            set_key(config, key, value)
        return config["downstream_expert"]

    def condition_copy(self, plan: TaskPlan, condition: EvalCondition, checkpoint: Optional[Path] = None) -> Path:
        """The task's test data under ``condition`` (built once, shared by sweeps: ``superb.conditions``).

        ``checkpoint``: the trained downstream to be evaluated on it. The parts are derived from the config the
        runner will use (the one inside it); a key they depend on that differs from this sweep's config is a
        ``ConfigError`` naming it (the copy would contaminate files the evaluation does not read)."""
        clean_root = self._clean_root(plan)
        if not clean_root.exists():
            raise ConfigError(f"{plan.spec.name}: test data {clean_root} not found (key {plan.spec.test_key})")
        if plan.spec.prepare is not None:  # the test parts may be listed in derived files (ER's meta data)
            plan.spec.prepare(plan.config, self.cond_root / "_prepared" / plan.spec.name)
        ours = plan.config["downstream_expert"]
        expert = ours if checkpoint is None else self._trained_expert(plan, checkpoint)
        parts, keys = read_test_parts(plan.spec, expert, clean_root)
        for key in keys:
            trained, here = get_key(expert, key, "", None), get_key(ours, key, "", None)
            if trained != here:
                raise ConfigError(f"{plan.label}: {checkpoint} was trained with downstream_expert.{key} = {trained!r}, "
                                  f"this sweep's config has {here!r}: its test set would be another one; pass "
                                  f"-o {plan.spec.name}:downstream_expert.{key}=... to evaluate on another, or train "
                                  f"again under another --tag")
        # a fold tests other files: its copies are its own (<cond_root>/ER/fold2/<CONDITION>/)
        return build_condition(plan.label, condition, clean_root, parts, self.cond_root, self.conditions_file,
                               self.env, self.cfg.contaminate_workers)

    def _evaluate(self, plan: TaskPlan, run: Run, condition: EvalCondition, gpu: Optional[str]) -> None:
        clean_root = self._clean_root(plan)
        run.take_checkpoint(self.trained(plan) if plan.spec.trains else {
            "checkpoint_kind": "none", "checkpoint_why": f"{plan.spec.name} does not train"})
        checkpoint = Path(run.checkpoint) if plan.spec.trains else None
        root = self.condition_copy(plan, condition, checkpoint)
        if not plan.spec.trains:
            self._write_config(plan, run, root)
        (run.expdir / RUN_LOG).unlink(missing_ok=True)  # parse this attempt's output only
        self._run_runner(self.evaluate_command(plan, run, root, gpu, checkpoint), run, gpu, plan.spec.downstream)
        output = self._score_qbe(clean_root, run) if plan.spec.name == "QbE" else run.expdir / RUN_LOG
        metrics = parse_metrics(plan.spec, output.read_text(errors="replace"))
        if plan.spec.metric.name not in metrics:
            raise RuntimeError(f"no {plan.spec.metric.name} in {output}")
        write_json_atomic(run.expdir / RESULT, {
            "task": plan.spec.name, "fold": plan.fold, "condition": condition.name, "spec": condition.spec,
            "seed": condition.seed,
            "upstream": self.cfg.upstream, "ckpt": self.ckpt, "tag": self.tag, "metrics": metrics,
            "metric": plan.spec.metric.name, "higher_better": plan.spec.metric.higher_better,
            **run.checkpoint_record(),
            "log": str(run.expdir / RUN_LOG)})

    def _score_qbe(self, clean_root: Path, run: Run) -> Path:
        """QUESST 2014's NIST scorer (in the dataset's ``scoring/``) turns the runner's
        ``benchmark.stdlist.xml`` into MTWV; its output goes to run.log. Returns the file to read MTWV from:
        ``score.out``, which the scorer writes in the run folder (and s3prl's QbE scoring reads), else run.log."""
        script = clean_root / "scoring" / "score-TWV-Cnxe.sh"
        if not script.is_file():
            raise RuntimeError(f"QbE scoring script {script} not found (QUESST 2014 ships it)")
        score = run.expdir / SCORE
        score.unlink(missing_ok=True)  # this attempt's only
        with open(run.expdir / RUN_LOG, "a") as out:
            subprocess.run(["bash", str(script), str(run.expdir), "groundtruth_quesst14_eval", "-10"],
                           cwd=script.parent, stdout=out, stderr=subprocess.STDOUT, check=True)
        return score if score.is_file() else run.expdir / RUN_LOG

    def attempt(self, plan: TaskPlan, run: Run, gpu: Optional[str]) -> None:
        """Runs one step of the sweep (what a cluster job runs, ``superb.cluster.SweepStep``); its failure is
        recorded in ``run``, never raised."""
        condition = {c.name: c for c in self.conditions}.get(run.condition)
        start = time.monotonic()
        log.info("%s %s %s%s", self.tag, plan.label, run.kind, f" on {run.condition}" * bool(run.condition))
        try:
            if run.kind == "train":
                self._train(plan, run, gpu)
            elif run.kind == "condition":
                self.condition_copy(plan, condition)
            else:
                self._evaluate(plan, run, condition, gpu)
            run.status = "done"
        except Exception as exc:  # any failure of one run is recorded; the sweep goes on
            run.status, run.reason = "failed", str(exc)
            log.error("%s %s %s failed: %s", plan.label, run.kind, run.condition, exc)
        run.seconds = time.monotonic() - start

    def _run_task(self, plan: TaskPlan, gpu: Optional[str]) -> None:
        blocked = plan.error
        for run in plan.runs:
            if run.status == "skipped":
                continue
            if blocked:
                run.status, run.reason = ("failed" if run is plan.runs[0] else "blocked"), blocked
                continue
            self.attempt(plan, run, gpu)
            if run.kind == "train" and run.status == "failed":
                blocked = f"training failed: {run.reason}"

    def run(self) -> int:
        """Runs what is not finished here, in threads (one task per ``--gpus`` slot; the cluster launchers'
        scheduler is ``superb.cluster.run_on_cluster``); returns 0 if nothing failed."""
        slots: "queue.Queue[Optional[str]]" = queue.Queue()
        for gpu in self.cfg.gpus or [None]:
            slots.put(gpu)
        threads = []
        for plan in self.plans:
            if all(r.status == "skipped" for r in plan.runs):
                continue
            gpu = slots.get()  # one task per device at a time

            def work(plan: TaskPlan = plan, gpu: Optional[str] = gpu) -> None:
                try:
                    self._run_task(plan, gpu)
                finally:
                    slots.put(gpu)

            thread = threading.Thread(target=work, name=plan.label)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        return self.finish()

    def finish(self) -> int:
        """Writes the summary, names what cannot run; 1 if anything failed."""
        self.write_summary()
        for plan in self.plans:
            if plan.error:
                log.error("%s cannot run: %s", plan.label, plan.error)
        failed = any(r.status in UNFINISHED for p in self.plans for r in p.runs)
        return 1 if failed or any(p.error for p in self.plans) else 0

    # ---- reporting ------------------------------------------------------------------------------------

    def plan_text(self) -> str:
        """The plan, one line per run, with the command each pending run will execute."""
        lines = [f"upstream {self.cfg.upstream} (tag {self.tag}) -> {self.exp}",
                 f"conditions {self.conditions_file}: {', '.join(c.name for c in self.conditions)}",
                 f"condition copies -> {self.cond_root}"]
        gpu = self.cfg.gpus[0] if self.cfg.gpus else None
        for plan in self.plans:
            note = f": CANNOT RUN: {plan.error}" if plan.error else ""
            if not plan.error and not self._clean_root(plan).exists():
                note = f": test data {self._clean_root(plan)} not found (the runs will fail)"
            lines.append(f"{plan.label} ({plan.spec.downstream}, {plan.spec.config}){note}")
            for run in plan.runs:
                command: list[str] = []
                if run.status == "todo" and not plan.error:
                    if run.kind == "train":
                        command = self.train_command(plan, run, gpu)
                    else:
                        clean = run.condition == "clean"
                        root = self._clean_root(plan) if clean else Path("<condition copy>")
                        best = self.exp / plan.label / "train" / "<best>.ckpt" if plan.spec.trains else None
                        command = self.evaluate_command(plan, run, root, gpu, best)
                what = run.kind + (f" {run.condition}" if run.condition else "")
                lines.append(f"  {what:<28} {run.status:<8} {' '.join(command)}")
        return "\n".join(lines)

    def write_summary(self, quiet: bool = False) -> None:
        """``summary.json``: every run (and, on a cluster, every condition-copy job) with its status, job id and
        log; ``robustdistiller jobs EXP_ROOT/TAG`` prints it. ``quiet``: an update while the sweep runs."""
        rows = [{"task": r.task, "kind": r.kind, "condition": r.condition, "status": r.status, "reason": r.reason,
                 "seconds": round(r.seconds, 1), "expdir": str(r.expdir), "job_id": r.job_id, "log": r.log,
                 **r.checkpoint_record()}
                for r in [*(r for p in self.plans for r in p.runs), *self.copies]]
        write_json_atomic(self.exp / "summary.json", {"tag": self.tag, "upstream": self.cfg.upstream,
                                                     "ckpt": self.ckpt, "launcher": self.cfg.launcher,
                                                     "jobs_folder": self.jobs_folder, "runs": rows})
        if quiet:
            return
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        log.info("summary (%s): %s", self.exp / "summary.json", counts)
        for row in rows:
            if row["status"] in UNFINISHED:
                log.warning("%s %s %s %s: %s", row["task"], row["kind"], row["condition"], row["status"],
                            row["reason"])
