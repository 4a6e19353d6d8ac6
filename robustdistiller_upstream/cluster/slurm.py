"""``--launcher slurm|local-submitit`` and ``--slurm key=value,...``: submitit executors for our jobs.

``slurm`` submits with sbatch (submitit's ``SlurmExecutor``); ``local-submitit`` runs the very same job objects as
local processes (submitit's ``LocalExecutor``: one process per task, the time-limit signal and the requeue
included), which is how the tests exercise the SLURM path without a cluster.

Preemption and time limits: SLURM sends ``SIGUSR2`` ``signal_delay_s`` seconds before it kills a job; submitit
calls the job's ``checkpoint()`` on rank 0 and requeues it (``scontrol requeue``), at most ``max_requeues``
times (``requeue`` in the script keeps the job requeueable where a cluster's default says otherwise).
"""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustdistiller_upstream.config import from_dict, parse_overrides
from robustdistiller_upstream.errors import ConfigError

LAUNCHERS = ("local", "slurm", "local-submitit")
# slurmctld checks time limits every 30 s and sends the warning signal up to that much before signal_delay_s
# (measured on SLURM 22.05: time=1,signal_delay_s=40 signalled the requeued job 4 s after it started, and it died)
SIGNAL_EARLY_S = 30


@dataclass
class SlurmOptions:
    """``--slurm key=value,...`` (keys as below; unknown keys are errors)."""

    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 0  # 0: one task per GPU (one task without GPUs)
    cpus_per_task: int = 0  # 0: the cluster's default
    mem_gb: float = 0.0  # 0: the cluster's default
    time: int = 60  # minutes of the time limit
    partition: str = ""
    account: str = ""
    qos: str = ""
    constraint: str = ""
    exclusive: bool = False  # the job's nodes for it alone
    # any other sbatch option, e.g. additional_parameters.mail_type=END -> #SBATCH --mail-type=END
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    signal_delay_s: int = 120  # SIGUSR2 this long before the time limit: the job's checkpoint hook runs then
    max_requeues: int = 20  # time limits / preemptions a job may be requeued after
    poll_s: float = 30.0  # a sweep asks SLURM (sacct, squeue) about its jobs this often

    @property
    def tasks(self) -> int:
        return self.tasks_per_node or max(1, self.gpus_per_node)


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """``--launcher`` and ``--slurm`` (shared by ``pretrain``, ``prune`` and ``run_superb.sh``)."""
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local",
                        help="local: run here (default; torchrun for DDP); slurm: submit with sbatch (submitit); "
                             "local-submitit: the same jobs as local processes")
    parser.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE,...",
                        help="job resources, e.g. nodes=2,gpus_per_node=8,partition=gpu,time=2880,account=me "
                             f"(keys: {', '.join(SlurmOptions.__dataclass_fields__)})")


def parse_slurm_options(values: list[str], launcher: str) -> SlurmOptions:
    """``--slurm`` values -> options; refused with ``--launcher local`` (nothing would use them)."""
    if values and launcher == "local":
        raise ConfigError("--slurm needs --launcher slurm or local-submitit")
    options = from_dict(SlurmOptions, parse_overrides(values), "--slurm")
    if min(options.nodes, options.time) < 1 or min(options.gpus_per_node, options.tasks_per_node) < 0:
        raise ConfigError(f"--slurm: nodes and time must be >= 1, gpus_per_node and tasks_per_node >= 0 ({options})")
    if options.signal_delay_s + SIGNAL_EARLY_S + 60 > options.time * 60:
        raise ConfigError(f"--slurm: time ({options.time} min) must leave a minute beyond signal_delay_s "
                          f"({options.signal_delay_s} s) + {SIGNAL_EARLY_S} s: SLURM may send SIGUSR2 that much "
                          f"early, and one that arrives while the job starts kills it instead of requeueing it")
    taken = sorted(set(options.additional_parameters) & {*SlurmOptions.__dataclass_fields__, *_SET_HERE})
    if taken:
        raise ConfigError(f"--slurm: additional_parameters.{taken[0]} is set by the launcher or by its own key")
    return options


# sbatch options the launcher writes itself (a sweep adds the dependency of each job)
_SET_HERE = ("job_name", "ntasks_per_node", "requeue", "dependency", "output", "error", "signal", "mem")


def additional_parameters(options: SlurmOptions, **launcher: Any) -> dict[str, Any]:
    """``SlurmExecutor``'s ``additional_parameters``: the user's, ``requeue``, the launcher's (``dependency``)."""
    return {**options.additional_parameters, "requeue": True, **launcher}


def _slurm_parameters(options: SlurmOptions, name: str) -> dict[str, Any]:
    """Keyword arguments of ``SlurmExecutor.update_parameters``."""
    parameters: dict[str, Any] = {"job_name": name, "nodes": options.nodes, "ntasks_per_node": options.tasks,
                                  "time": options.time, "signal_delay_s": options.signal_delay_s,
                                  "additional_parameters": additional_parameters(options)}
    if options.gpus_per_node:
        parameters["gpus_per_node"] = options.gpus_per_node
    if options.cpus_per_task:
        parameters["cpus_per_task"] = options.cpus_per_task
    if options.mem_gb:
        parameters["mem"] = f"{int(options.mem_gb * 1024)}MB"
    for key in ("partition", "account", "qos", "constraint", "exclusive"):
        if getattr(options, key):
            parameters[key] = getattr(options, key)
    return parameters


def make_executor(launcher: str, folder: str | Path, options: SlurmOptions, name: str):
    """A submitit executor writing its pickles and logs (``%j_<task>_log.out/err``) to ``folder``."""
    import submitit

    if launcher == "slurm":
        return _slurm_executor(submitit.SlurmExecutor, folder, options, name)
    if launcher != "local-submitit":
        raise ConfigError(f"--launcher {launcher!r}: no executor (one of {LAUNCHERS[1:]})")
    if options.nodes != 1:
        raise ConfigError("--launcher local-submitit runs on this machine: --slurm nodes must be 1")
    executor = submitit.LocalExecutor(folder, max_num_timeout=options.max_requeues)
    # LocalExecutor hides the GPUs it was not asked for (CUDA_VISIBLE_DEVICES)
    executor.update_parameters(timeout_min=options.time, tasks_per_node=options.tasks,
                               gpus_per_node=options.gpus_per_node, signal_delay_s=options.signal_delay_s)
    return executor


def _slurm_executor(executor_class: Any, folder: str | Path, options: SlurmOptions, name: str) -> Any:
    executor = executor_class(folder, max_num_timeout=options.max_requeues)
    executor.update_parameters(**_slurm_parameters(options, name))
    return executor


def sbatch_script(folder: str | Path, options: SlurmOptions, name: str) -> str:
    """The sbatch file ``--launcher slurm`` submits for a job (what ``--dry-run`` prints), written by submitit's own
    ``SlurmExecutor``; nothing is submitted, and no SLURM is needed here."""
    import submitit

    class ScriptOnly(submitit.SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:  # submitit refuses to build a SlurmExecutor where srun is missing
            return 1

    executor = _slurm_executor(ScriptOnly, folder, options, name)
    return executor._make_submission_file_text(executor._submitit_command_str, "<uid>")


def export_torch_environment() -> None:
    """Inside a submitit job: sets torch.distributed's ``MASTER_ADDR`` (the job's first node), ``MASTER_PORT`` (from
    the job id), ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from ``submitit.JobEnvironment``, as torchrun would."""
    from submitit.helpers import TorchDistributedEnvironment

    # CUDA_VISIBLE_DEVICES stays: the loop picks cuda:LOCAL_RANK among the node's GPUs
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


NEVER_SATISFIED = "DependencyNeverSatisfied"  # squeue's reason of a job held by afterok on a job that failed


def never_satisfied(job_ids: list[str]) -> set[str]:
    """The queued jobs among ``job_ids`` that SLURM holds for good: a job they need (``afterok``) did not complete."""
    if not job_ids:
        return set()
    result = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r", "-j", ",".join(job_ids)],
                            capture_output=True, text=True)
    pairs = (line.split(maxsplit=1) for line in result.stdout.splitlines() if result.returncode == 0)
    return {job for job, reason in pairs if reason.strip() == NEVER_SATISFIED}
