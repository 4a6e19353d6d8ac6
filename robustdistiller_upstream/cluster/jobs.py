"""Training as one job description: ``--launcher local`` calls it here, ``slurm`` / ``local-submitit`` pickle the
same object and submitit calls it in every task of the job (so a test of one launcher tests the other's job).

Under submitit the job exports rank, world size, local rank and the master address from the job environment as
torchrun would (``cluster.slurm.export_torch_environment``), and the loop starts its process group from them. At
preemption or the time limit submitit calls ``checkpoint()`` on rank 0: the loop's own resume files are the
checkpoint (written every ``run.save_every`` steps, atomically), so the requeued job resumes from the newest one,
bit-exactly as ``--resume`` does, and loses at most ``save_every`` steps of work.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from robustdistiller_upstream.cluster.slurm import (export_torch_environment, make_executor, parse_slurm_options,
                                                    sbatch_script)
from robustdistiller_upstream.cluster.state import JOBS_FILE, failure_reason, job_fields
from robustdistiller_upstream.errors import ConfigError, TrainingError
from robustdistiller_upstream.files import write_json_atomic
from robustdistiller_upstream.log_setup import setup_logging
from robustdistiller_upstream.train.digest import parameters_digest
from robustdistiller_upstream.train.runner import Trainer, checkpoints
from robustdistiller_upstream.train.stage import Recipe

log = logging.getLogger(__name__)

JOBS_FOLDER = "jobs"  # submitit's pickles and logs, inside the experiment folder


@dataclass
class TrainingJob:
    """``robustdistiller pretrain`` (``kind="pretrain"``) or ``prune`` of one experiment folder: the job builds
    ``recipe(config)`` (a class, picked by the subcommand) and trains it."""

    kind: str
    recipe: Callable[[Any], Recipe]  # PretrainRecipe | PruneRecipe
    config: Any  # its config: PretrainConfig | PruneConfig
    exp_dir: Path
    resume: bool = False

    def has_resume_state(self) -> bool:
        return bool(checkpoints(self.exp_dir))

    def __call__(self) -> dict[str, Any]:
        """Trains (every rank); returns this rank's ``rank``, ``step``, ``parameters`` digest and, on rank 0, the
        final ``checkpoint``."""
        setup_logging(verbose=False)  # a no-op where the CLI runs the job itself (local launcher)
        import torch.distributed as dist

        if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):  # a submitit job: rank etc.
            export_torch_environment()
        try:
            trainer = Trainer(self.recipe(self.config), self.exp_dir, self.resume)
            checkpoint = trainer.fit()
            return {"rank": trainer.env.rank, "step": trainer.progress.step,
                    "parameters": parameters_digest(trainer.task.state_dict()), "checkpoint": str(checkpoint or "")}
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()

    def checkpoint(self) -> Any:
        """submitit's hook at preemption / time limit (rank 0): requeue this job, resuming from the newest resume
        file when there is one (a job stopped before its first one starts afresh)."""
        from submitit.helpers import DelayedSubmission

        log.info("%s stopped by the cluster: requeued, resuming from its newest resume file", self.exp_dir)
        return DelayedSubmission(dataclasses.replace(self, resume=self.resume or self.has_resume_state()))


def launch_training(job: TrainingJob, args: argparse.Namespace) -> int:
    """Runs ``job`` as ``--launcher`` says: here (local), or submitted with its state in ``<exp>/jobs.json``
    (slurm: returns once queued; local-submitit: waits for the job and fails with it)."""
    options = parse_slurm_options(args.slurm, args.launcher)
    if args.dry_run and args.launcher != "slurm":
        raise ConfigError("--dry-run prints the sbatch script of --launcher slurm")
    if args.launcher == "local":
        job()
        return 0
    folder = (job.exp_dir / JOBS_FOLDER).resolve()
    name = f"{job.kind}-{job.exp_dir.name}"
    if args.dry_run:
        print(sbatch_script(folder, options, name))
        return 0
    if not job.resume and job.has_resume_state():  # the job would refuse it: say so before it queues
        raise TrainingError(f"{job.exp_dir} already holds a run: pass --resume or pick another -n name")
    job = dataclasses.replace(job, exp_dir=job.exp_dir.resolve())  # the job may start in another folder
    submitted = make_executor(args.launcher, folder, options, name).submit(job)
    row = {"task": job.exp_dir.name, "kind": job.kind, "condition": "", "status": "queued", "reason": "",
           **job_fields(submitted)}
    _write_jobs(job.exp_dir, args.launcher, folder, row)
    log.info("%s job %s submitted (%d task(s)); log %s; `robustdistiller jobs %s` shows its state", job.kind,
             submitted.job_id, options.tasks * options.nodes, row["log"], job.exp_dir)
    if args.launcher == "slurm":
        return 0
    reason = ""
    try:
        submitted.results()
    except Exception as exc:  # the job's own error, with the log to read
        reason = failure_reason(exc)
    row.update(status="failed" if reason else "done", reason=reason)
    _write_jobs(job.exp_dir, args.launcher, folder, row)
    if reason:
        log.error("%s job %s failed: %s (log %s)", job.kind, submitted.job_id, reason, row["log"])
        return 1
    return 0


def _write_jobs(exp_dir: Path, launcher: str, folder: Path, row: dict[str, Any]) -> None:
    write_json_atomic(exp_dir / JOBS_FILE, {"launcher": launcher, "jobs_folder": str(folder), "runs": [row]})

