"""The job state of a folder (a sweep's ``summary.json``, a training run's ``jobs.json``) and the table
``robustdistiller jobs DIR`` prints.

Both files hold ``{"launcher": ..., "jobs_folder": ..., "runs": [row, ...]}``; a row has ``task``, ``kind``,
``condition``, ``status`` (todo / queued / running / done / skipped / failed / cancelled / blocked), ``reason``
and, for a
run submitted through submitit, ``job_id`` and ``log`` (its stdout; stderr beside it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from robustdistiller_upstream.cluster.slurm import NEVER_SATISFIED, never_satisfied
from robustdistiller_upstream.errors import UserError

JOBS_FILE = "jobs.json"
STATE_FILES = ("summary.json", JOBS_FILE)  # a sweep's, a training run's
IN_FLIGHT = ("queued", "running")
UNFINISHED = ("failed", "cancelled", "blocked")  # a rerun submits these again
# SLURM states (sacct) -> ours; any other state of a job that left the queue is a failure
_SLURM = {"PENDING": "queued", "REQUEUED": "queued", "CONFIGURING": "queued", "RUNNING": "running",
          "COMPLETING": "running", "COMPLETED": "done", "CANCELLED": "cancelled"}


def slurm_status(state: str) -> Optional[str]:
    """Ours of a SLURM job state as submitit reports it (``CANCELLED by 0``...), None for ``UNKNOWN`` (no sacct
    here, or the job not yet in the accounting database)."""
    state = state.split()[0].upper() if state.strip() else "UNKNOWN"
    return _SLURM.get(state, "failed" if state != "UNKNOWN" else None)


def job_fields(job: Any) -> dict[str, str]:
    """``job_id`` and ``log`` of a submitted submitit job (rank 0's stdout)."""
    return {"job_id": str(job.job_id), "log": str(job.paths.stdout)}


def failure_reason(exc: BaseException) -> str:
    """One line out of a failed submitit job's error: the last line of the job's traceback (``Class: message``;
    the message alone for a step's own failure, a ``...StepFailed``), else the error's last line."""
    text = str(exc)
    sections = text.split("-" * 22)  # submitit's FailedJobError frames the job's traceback with these
    lines = [line.strip() for line in (sections[1] if len(sections) >= 3 else text).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    name, sep, message = lines[-1].partition(": ")
    if sep and name.replace(".", "").replace("_", "").isalnum():
        return message if name.endswith("StepFailed") else f"{name.rsplit('.', 1)[-1]}: {message}"
    return lines[-1]


def live_status(job: Any) -> str:
    """queued / running / finished (its result or error is ready) of a submitted submitit job."""
    if job.done():
        return "finished"
    return "queued" if slurm_status(str(job.state)) == "queued" else "running"


def _status_from_folder(row: dict[str, Any], folder: Path, launcher: str) -> Optional[str]:
    """The status of a row's job read back from submitit's files (any launcher) or sacct (SLURM), None when
    nothing says more than the row."""
    import submitit
    from submitit.core.utils import JobPaths, pickle_load

    result = JobPaths(folder, row["job_id"], 0).result_pickle
    if result.exists():
        outcome, value = pickle_load(result)
        if outcome != "success":
            return "failed"
        return value.get("status", "done") if isinstance(value, dict) else "done"
    if launcher != "slurm":
        return None
    try:
        status = slurm_status(str(submitit.SlurmJob(folder, row["job_id"]).state))
    except Exception:  # no sacct here (another machine than the cluster's)
        return None
    if status == "queued" and never_satisfied([row["job_id"]]):
        return "blocked"  # afterok on a job that failed: SLURM holds it for good
    return status


def read_state(folder: str | Path, refresh: bool = True) -> tuple[Path, dict[str, Any]]:
    """The state file of ``folder`` and its content; rows still in flight are brought up to date from the jobs'
    files (and sacct on a SLURM login node) when ``refresh``."""
    folder = Path(folder)
    path = next((folder / name for name in STATE_FILES if (folder / name).is_file()), None)
    if path is None:
        raise UserError(f"{folder}: no {' or '.join(STATE_FILES)} (not a sweep or training folder, or nothing "
                        f"was started there yet)")
    state = json.loads(path.read_text())
    if refresh and state.get("jobs_folder"):
        for row in state["runs"]:
            if row.get("job_id") and row["status"] in IN_FLIGHT:
                row["status"] = _status_from_folder(row, Path(state["jobs_folder"]), state["launcher"]) or row["status"]
                if row["status"] == "blocked" and not row.get("reason"):
                    row["reason"] = f"SLURM: {NEVER_SATISFIED} (a job it needs did not complete)"
    return path, state


def table(state: dict[str, Any]) -> str:
    """One line per run: task, run, status, job id, log (and the reason of a failure)."""
    header = ("TASK", "RUN", "STATUS", "JOB", "LOG")
    lines = [header]
    for row in state["runs"]:
        run = row["kind"] + (f" {row['condition']}" if row.get("condition") else "")
        lines.append((row["task"], run, row["status"], row.get("job_id", "") or "-", row.get("log", "") or "-"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1] for line in lines]
    counts: dict[str, int] = {}
    for row in state["runs"]:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    out.append(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    out += [f"{row['task']} {row['kind']} {row.get('condition', '')}: {row['reason']}".replace("  ", " ")
            for row in state["runs"] if row["status"] in UNFINISHED and row.get("reason")]
    return "\n".join(out)
