"""The sweep on a cluster (``run_superb.sh --launcher slurm|local-submitit``): every condition copy, every task's
training and every evaluation is one job, ``SweepStep``, which runs ``Sweep.attempt``, the very step the local
launcher runs in its threads.

This process stays and schedules: at most ``--max-parallel`` jobs in flight (queued or running); an evaluation
waits for its task's training and its condition copy (on SLURM it is queued at once with ``afterok`` on them;
submitit's LocalExecutor knows no dependencies, so there it is submitted when they are done); a failure is
recorded (a job cancelled with ``scancel``: cancelled), the runs that needed it are blocked (their queued jobs
cancelled) and every other job goes on. ``summary.json`` is rewritten at each change, with job ids and log paths
(``robustdistiller jobs EXP_ROOT/TAG``).

SLURM, not this process, is the source of truth: a rerun submits only what is not done (the markers: ``done.json``,
``result.json``, a copy's ``ready.json``), and on SLURM first finds the jobs of the last invocation still queued or
running by the ids in ``summary.json`` and follows them instead of submitting them again. A queued job SLURM holds
for good (``DependencyNeverSatisfied``: a job it needs failed while no sweep watched) is cancelled and submitted
again with its needs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from robustdistiller_upstream.cluster.slurm import (NEVER_SATISFIED, additional_parameters, make_executor,
                                                    never_satisfied, parse_slurm_options, sbatch_script)
from robustdistiller_upstream.cluster.state import IN_FLIGHT, failure_reason, job_fields, live_status, slurm_status
from robustdistiller_upstream.errors import ConfigError
from robustdistiller_upstream.log_setup import setup_logging
from robustdistiller_upstream.superb.conditions import READY
from robustdistiller_upstream.superb.sweep import Run, Sweep, SweepConfig, TaskPlan

log = logging.getLogger(__name__)

DEFAULT_MAX_PARALLEL = 8
LOCAL_POLL_SECONDS = 0.5  # local-submitit (SLURM: --slurm poll_s)


class StepFailed(RuntimeError):
    """A sweep step that failed (the job fails with it, so SLURM's ``afterok`` holds what depends on it)."""


def _step_run(sweep: Sweep, plan: TaskPlan, kind: str, condition: str) -> Run:
    if kind == "condition":
        folder = sweep.cond_root / plan.label / condition
        return Run(plan.label, kind, condition, folder, status="skipped" if (folder / READY).is_file() else "todo")
    return next(r for r in plan.runs if (r.kind, r.condition) == (kind, condition))


@dataclass
class SweepStep:
    """One job of the sweep: ``kind`` (train / evaluate / condition) of ``task`` (under ``condition``)."""

    cfg: SweepConfig  # absolute paths, launcher local (the job runs its step here)
    task: str
    kind: str
    condition: str = ""

    def __call__(self) -> dict[str, Any]:
        setup_logging(verbose=False)
        task, _, fold = self.task.partition("/")  # "ER/fold2": that fold only
        folds = [int(fold.removeprefix("fold"))] if fold else self.cfg.er_folds
        sweep = Sweep(dataclasses.replace(self.cfg, tasks=task, er_folds=folds))
        plan = sweep.plans[0]
        if plan.error:
            raise StepFailed(plan.error)
        run = _step_run(sweep, plan, self.kind, self.condition)
        if run.status != "skipped":  # finished meanwhile (e.g. by another sweep)
            sweep.attempt(plan, run, None)
        if run.status == "failed":
            raise StepFailed(run.reason)
        return {"status": run.status, "seconds": run.seconds, **run.checkpoint_record()}

    def checkpoint(self) -> Any:
        """Time limit / preemption: requeue; a training resumes from its last s3prl checkpoint (``-a``), a
        condition copy from the files it made, an evaluation starts again."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


@dataclass
class Node:
    """A run of the sweep, the runs it needs done first, and its job once submitted."""

    plan: TaskPlan
    run: Run
    needs: list["Node"] = field(default_factory=list)
    job: Any = None


def job_config(sweep: Sweep) -> SweepConfig:
    """The sweep's config as its jobs see it: every path absolute (a job may start in another folder), the tag
    fixed, and the step run where the job runs."""
    cfg = sweep.cfg

    def absolute(path: str) -> str:
        return str(Path(path).resolve()) if path else ""

    return dataclasses.replace(
        cfg, ckpt=sweep.ckpt, upstream_config=absolute(cfg.upstream_config), tag=sweep.tag,
        conditions=str(sweep.conditions_file), data_root=absolute(cfg.data_root), s3prl_dir=absolute(cfg.s3prl_dir),
        exp_root=str(sweep.exp.parent), cond_root=str(sweep.cond_root), launcher="local", slurm=[], max_parallel=0,
        gpus=[])


def _graph(sweep: Sweep) -> list[Node]:
    """What to run, in submission order; runs of a task that cannot run are failed / blocked at once."""
    nodes: list[Node] = []
    for plan in sweep.plans:
        todo = [r for r in plan.runs if r.status != "skipped"]
        if plan.error:
            for run in todo:
                run.status, run.reason = ("failed" if run is plan.runs[0] else "blocked"), plan.error
            continue
        train = None
        by_name = {c.name: c for c in sweep.conditions}
        for run in todo:
            if run.kind == "train":
                train = Node(plan, run)
                nodes.append(train)
                continue
            needs = [train] if train else []
            if not by_name[run.condition].is_clean:
                copy = _step_run(sweep, plan, "condition", run.condition)
                if copy.status != "skipped":
                    sweep.copies.append(copy)
                    needs.append(Node(plan, copy))
                    nodes.insert(0, needs[-1])  # copies first: they need nothing
            nodes.append(Node(plan, run, needs))
    return nodes


class Scheduler:
    """Submits the nodes of one sweep and follows them to the end."""

    def __init__(self, sweep: Sweep) -> None:
        cfg = sweep.cfg
        self.sweep, self.launcher = sweep, cfg.launcher
        options = parse_slurm_options(cfg.slurm, cfg.launcher)
        # one task per job (a DDP training is torchrun inside it, --nproc); condition copies need no GPU
        self.options = options = dataclasses.replace(options, tasks_per_node=1)
        self.poll = options.poll_s if cfg.launcher == "slurm" else LOCAL_POLL_SECONDS
        self.folder = folder = Path(sweep.jobs_folder)
        self.executors = {
            "gpu": make_executor(cfg.launcher, folder, options, sweep.tag),
            "cpu": make_executor(cfg.launcher, folder, dataclasses.replace(options, gpus_per_node=0), sweep.tag),
        }
        self.max_parallel = cfg.max_parallel or DEFAULT_MAX_PARALLEL
        self.job_config = job_config(sweep)

    def _submit(self, node: Node) -> None:
        run = node.run
        executor = self.executors["cpu" if run.kind == "condition" else "gpu"]
        name = "-".join(filter(None, (self.sweep.tag, run.task, run.kind, run.condition)))
        if self.launcher == "slurm":
            after = [n.job.job_id for n in node.needs if n.job is not None and n.run.status != "done"]
            dependency = {"dependency": "afterok:" + ":".join(after)} if after else {}
            executor.update_parameters(job_name=name, additional_parameters=additional_parameters(self.options,
                                                                                                  **dependency))
        node.job = executor.submit(SweepStep(self.job_config, run.task, run.kind, run.condition))
        fields = job_fields(node.job)
        run.status, run.job_id, run.log = "queued", fields["job_id"], fields["log"]
        log.info("%s: job %s (log %s)", name, run.job_id, run.log)

    def _ready(self, node: Node) -> bool:
        """Its needs are done (or, on SLURM, submitted: ``afterok`` holds the job until they are)."""
        if self.launcher == "slurm":
            return all(n.run.status == "done" or n.job is not None for n in node.needs)
        return all(n.run.status == "done" for n in node.needs)

    def _block(self, nodes: list[Node], failed: Node) -> None:
        """Every run that needs ``failed`` is blocked; its queued job (SLURM, ``afterok``) is cancelled."""
        what = "training" if failed.run.kind == "train" else f"condition copy {failed.run.condition}"
        for node in nodes:
            if failed in node.needs and node.run.status in ("todo", "queued", "running"):
                if node.job is not None:
                    node.job.cancel(check=False)
                node.run.status, node.run.reason = "blocked", f"{what} {failed.run.status}: {failed.run.reason}"

    def _finished(self, node: Node) -> None:
        try:
            record = node.job.result()
            node.run.status, node.run.seconds = "done", float(record["seconds"])
            node.run.take_checkpoint(record)
        except Exception as exc:  # the step failed, or its job did (killed, out of memory, time limit), or scancel
            cancelled = slurm_status(str(node.job.state)) == "cancelled"
            reason = "its job was cancelled (scancel)" if cancelled else failure_reason(exc)
            node.run.status = "cancelled" if cancelled else "failed"
            node.run.reason = f"{reason} (job log {node.run.log})"
            log.error("%s %s %s %s: %s", node.run.task, node.run.kind, node.run.condition, node.run.status,
                      node.run.reason)

    def _reattach(self, nodes: list[Node]) -> None:
        """SLURM: the last invocation's jobs of runs not done, still queued or running, are followed again (by
        the ids in ``summary.json``) instead of submitted again; one that can never start is cancelled."""
        import submitit

        for node in nodes:
            row = self.sweep.earlier.get((node.run.task, node.run.kind, node.run.condition), {})
            if node.run.status != "todo" or row.get("status") not in IN_FLIGHT or not row.get("job_id"):
                continue
            job = submitit.SlurmJob(self.folder, row["job_id"])
            status = slurm_status(str(job.state))
            if status == "queued" and never_satisfied([job.job_id]):
                job.cancel(check=False)
                log.info("job %s: %s, cancelled; submitted again", job.job_id, NEVER_SATISFIED)
            elif status in IN_FLIGHT:
                node.job, node.run.status, node.run.job_id, node.run.log = job, status, row["job_id"], row["log"]
                log.info("%s %s %s: job %s still %s", node.run.task, node.run.kind, node.run.condition, job.job_id,
                         status)

    def _never_satisfied(self, nodes: list[Node]) -> None:
        """SLURM holds a queued job for good (a job it needs did not complete): it is cancelled and blocked."""
        queued = {n.job.job_id: n for n in nodes if n.job is not None and n.run.status == "queued"}
        for job_id in never_satisfied(list(queued)) if self.launcher == "slurm" else ():
            node = queued[job_id]
            node.job.cancel(check=False)
            node.run.status, node.run.reason = "blocked", f"SLURM: {NEVER_SATISFIED} (a job it needs did not complete)"

    def run(self) -> None:
        nodes = _graph(self.sweep)
        if self.launcher == "slurm":
            self._reattach(nodes)
        while True:
            changed = False
            for node in nodes:
                if node.job is not None and node.run.status in ("queued", "running"):
                    before, status = node.run.status, live_status(node.job)
                    if status == "finished":
                        self._finished(node)
                        if node.run.status in ("failed", "cancelled"):
                            self._block(nodes, node)
                    else:
                        node.run.status = status
                    changed |= node.run.status != before
            blocked = sum(n.run.status == "blocked" for n in nodes)
            self._never_satisfied(nodes)
            changed |= sum(n.run.status == "blocked" for n in nodes) != blocked
            in_flight = sum(n.run.status in ("queued", "running") for n in nodes)
            for node in nodes:
                if node.run.status == "todo" and in_flight < self.max_parallel and self._ready(node):
                    self._submit(node)
                    in_flight += 1
                    changed = True
            if changed:
                self.sweep.write_summary(quiet=True)
            if not any(n.run.status in ("todo", "queued", "running") for n in nodes):
                return
            time.sleep(self.poll)


def run_on_cluster(sweep: Sweep) -> None:
    """Runs the sweep's unfinished work as jobs (``--launcher``); the statuses land in its runs."""
    if sweep.cfg.gpus:
        raise ConfigError("--gpus picks local GPUs; on a cluster use --slurm gpus_per_node=N")
    scheduler = Scheduler(sweep)
    try:
        scheduler.run()
    finally:  # also when this process is interrupted: the submitted jobs go on, their ids stay on record
        sweep.write_summary(quiet=True)


def sbatch_preview(sweep: Sweep) -> Optional[str]:
    """For ``--dry-run``: the sbatch script of the sweep's training jobs (SLURM), None on other launchers."""
    if sweep.cfg.launcher != "slurm":
        return None
    options = dataclasses.replace(parse_slurm_options(sweep.cfg.slurm, "slurm"), tasks_per_node=1)
    return sbatch_script(sweep.jobs_folder, options, sweep.tag)
