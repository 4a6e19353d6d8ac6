"""A real one-node SLURM for the tests (the ``slurm`` fixture, session-scoped, a plugin of ``tests/conftest.py``):
munge, MariaDB + slurmdbd (accounting, so ``sacct`` reports job states), slurmctld and slurmd, started here by hand
(no systemd) with their configuration, sockets, ports, state and logs in one temporary folder, and stopped by the
process ids started here.

Needs root and Debian's ``slurm-wlm``, ``slurmdbd``, ``munge`` and ``mariadb-server`` (``.ci/run`` installs them);
elsewhere the tests that use it skip and say why. Daemons already running on the machine (someone else's SLURM,
MariaDB or munge) are left alone: every daemon here has its own ports, socket, pid file and state folder, and the
client commands (``sbatch``, ``sacct``, submitit's calls) find this cluster through ``SLURM_CONF``.

The partition is one node with ``CPUs=2`` (measured set-up: DESIGN 10; no ``cgroup.conf``: slurmd 22.05 does not
start with ``CgroupPlugin=disabled``).

``python tests/slurm_cluster.py DIR`` starts one in ``DIR`` and keeps it until Ctrl-C (to try the CLI by hand:
``SLURM_CONF=DIR/slurm.conf``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import pytest

from system_packages import missing

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED")
PACKAGES = ("slurm-wlm", "slurmdbd", "munge", "mariadb-server")
DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
CLUSTER = "rdtest"
PARTITION = "rdtest"
DB_USER, DB_PASSWORD = "slurm", "rdtest"


def unavailable() -> Optional[str]:
    """Why a SLURM cannot be started here, None when it can."""
    if os.geteuid() != 0:
        return "needs root (the SLURM daemons run as root here): a real one-node SLURM is started for these tests"
    missing = [name for name in DAEMONS if _which(name) is None]
    if missing:
        return (f"needs Debian's {', '.join(PACKAGES)} (apt-get install {' '.join(PACKAGES)}; .ci/run does): "
                f"{', '.join(missing)} not found")
    return None


def _which(name: str) -> Optional[str]:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log.is_file() else "(no log)"
            raise RuntimeError(f"SLURM test cluster: {what} not up after {timeout:.0f} s; {log}:\n{tail}")
        time.sleep(0.5)


class SlurmCluster:
    """The daemons of one test cluster under ``root``; ``env`` is the environment its client commands need."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.conf = self.root / "slurm.conf"
        self.partition = PARTITION
        self.node = socket.gethostname()
        self.processes: dict[str, subprocess.Popen] = {}
        self.ports = {name: _free_port() for name in ("mysql", "slurmdbd", "slurmctld", "slurmd")}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf),
                    "PATH": os.pathsep.join([os.environ.get("PATH", ""), *SBIN])}

    # ---- the daemons, in start order
    def start(self) -> "SlurmCluster":
        try:
            self._munge()
            self._mariadb()
            self._slurmdbd()
            self._slurm()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, command: list[str], log: Path) -> subprocess.Popen:
        out = open(log, "ab")
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                   start_new_session=True)
        out.close()
        self.processes[name] = process
        return process

    def _alive(self, name: str) -> bool:
        process = self.processes[name]
        if process.poll() is not None:
            raise RuntimeError(f"SLURM test cluster: {name} exited with {process.returncode}; its log: "
                               f"{self.root / (name + '.log')}:\n"
                               f"{(self.root / (name + '.log')).read_text()[-3000:]}")
        return True

    def _munge(self) -> None:
        munge = self.root / "munge"
        munge.mkdir(mode=0o700)
        key = munge / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.munge_socket = munge / "munge.socket"
        log = self.root / "munged.log"
        self._spawn("munged", [_which("munged"), "--foreground", "--force", f"--key-file={key}",
                               f"--socket={self.munge_socket}", f"--pid-file={munge / 'munged.pid'}",
                               f"--seed-file={munge / 'munged.seed'}", f"--log-file={log}"], self.root / "munged.out")
        _wait("munged", lambda: self._alive("munged") and self.munge_socket.exists(), log)

    def _mariadb(self) -> None:
        data = self.root / "mysql"
        self.mysql_socket = self.root / "mysql.sock"
        log = self.root / "mariadbd.log"
        setup = subprocess.run([_which("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
                                "--skip-test-db", "--auth-root-authentication-method=socket"],
                               capture_output=True, text=True, env=self.env)
        if setup.returncode:
            raise RuntimeError(f"SLURM test cluster: mariadb-install-db failed:\n{setup.stdout[-2000:]}"
                               f"{setup.stderr[-2000:]}")
        self._spawn("mariadbd", [_which("mariadbd"), "--no-defaults", f"--datadir={data}", "--user=root",
                                 f"--socket={self.mysql_socket}", f"--port={self.ports['mysql']}",
                                 "--bind-address=127.0.0.1", f"--pid-file={self.root / 'mariadbd.pid'}",
                                 f"--log-error={log}", "--innodb-buffer-pool-size=64M",
                                 "--innodb-flush-log-at-trx-commit=0"], self.root / "mariadbd.out")
        _wait("mariadbd", lambda: self._alive("mariadbd") and self.mysql_socket.exists(), log)
        sql = (f"CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}';"
               f"GRANT ALL ON *.* TO '{DB_USER}'@'127.0.0.1';")
        subprocess.run([_which("mariadb"), "--no-defaults", f"--socket={self.mysql_socket}", "-uroot", "-e", sql],
                       check=True, capture_output=True, env=self.env)

    def _slurmdbd(self) -> None:
        conf = self.root / "slurmdbd.conf"
        log = self.root / "slurmdbd.log"
        conf.write_text("\n".join([
            "AuthType=auth/munge", f"AuthInfo=socket={self.munge_socket}", "DbdHost=localhost",
            f"DbdPort={self.ports['slurmdbd']}", "SlurmUser=root", f"PidFile={self.root / 'slurmdbd.pid'}",
            f"LogFile={log}", "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1",
            f"StoragePort={self.ports['mysql']}", f"StorageUser={DB_USER}", f"StoragePass={DB_PASSWORD}",
            "StorageLoc=slurm_acct_db", ""]))
        conf.chmod(0o600)
        self.conf.write_text(self._slurm_conf())  # slurmdbd reads slurmdbd.conf beside $SLURM_CONF
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"], self.root / "slurmdbd.out")
        _wait("slurmdbd", lambda: self._alive("slurmdbd") and self._listening(self.ports["slurmdbd"]), log)

    def _slurm_conf(self) -> str:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 ** 20 // 2
        spool, state = self.root / "slurmd", self.root / "slurmctld"
        spool.mkdir(exist_ok=True)
        state.mkdir(exist_ok=True)
        return "\n".join([
            f"ClusterName={CLUSTER}", f"SlurmctldHost={self.node}", "SlurmUser=root", "AuthType=auth/munge",
            "CredType=cred/munge",
            # cred_expire: also how long a requeued job waits before it may start again (default 120 s)
            f"AuthInfo=socket={self.munge_socket},cred_expire=20",
            f"SlurmctldPort={self.ports['slurmctld']}", f"SlurmdPort={self.ports['slurmd']}",
            f"StateSaveLocation={state}", f"SlurmdSpoolDir={spool}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}", f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'slurmctld.log'}", f"SlurmdLogFile={self.root / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none",
            "SchedulerType=sched/backfill", "SchedulerParameters=sched_interval=2,bf_interval=2",
            "AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=localhost",
            f"AccountingStoragePort={self.ports['slurmdbd']}", f"AccountingStoragePass={self.munge_socket}",
            "JobCompType=jobcomp/none", "MailProg=/bin/true",
            # job ids (hence submitit's MASTER_PORT, derived from the id) differ from one test session to the next
            f"FirstJobId={random.randrange(1000, 60000)}",
            "MinJobAge=300", "KillWait=5", "InactiveLimit=0", "SlurmctldDebug=info", "SlurmdDebug=info",
            f"NodeName={self.node} CPUs=2 RealMemory={memory} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP", ""])

    def _slurm(self) -> None:
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"], self.root / "slurmctld.out")
        _wait("slurmctld", lambda: self._alive("slurmctld") and self._run("sinfo").returncode == 0,
              self.root / "slurmctld.log")
        self._spawn("slurmd", [_which("slurmd"), "-D"], self.root / "slurmd.out")
        _wait("the node idle", lambda: self._alive("slurmd") and self._alive("slurmctld") and self._run(
            "sinfo", "-h", "-N", "-o", "%T").stdout.strip() == "idle", self.root / "slurmd.log")
        _wait("accounting (sacct)", lambda: self._run("sacct", "-n", "-X").returncode == 0,
              self.root / "slurmdbd.log")

    def _listening(self, port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run([_which(command[0]) or command[0], *command[1:]], capture_output=True, text=True,
                              env=self.env)

    # ---- the tests' view
    def run(self, *command: str) -> str:
        """A client command (``squeue``, ``scancel``, ``sacct``...) on this cluster; its stdout."""
        result = self._run(*command)
        if result.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
        return result.stdout

    def state(self, job_id: str) -> str:
        """SLURM's state of a job (its allocation), e.g. ``COMPLETED``, ``CANCELLED``, ``PENDING``.

        The controller's (``squeue``), which is current; slurmdbd (``sacct``) records a job a moment after the
        controller, so a final state is returned only once ``sacct`` shows it too (a test then reads that job's
        history there), and a job the controller has forgotten is answered from ``sacct``."""
        deadline = time.monotonic() + 60
        while True:
            current = self._run("squeue", "-h", "-t", "all", "-o", "%T", "-j", job_id).stdout.strip()
            accounted = self.run("sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id).split()[:1]
            if not current:
                return accounted[0] if accounted else ""
            if current not in FINAL_STATES or accounted == [current] or time.monotonic() > deadline:
                return current
            time.sleep(0.2)

    def wait_idle(self, timeout: float = 300) -> None:
        """Until no job of this cluster is queued or running (a test's leftovers do not hold the next test)."""
        deadline = time.monotonic() + timeout
        while self.run("squeue", "-h", "-o", "%i").strip():
            if time.monotonic() > deadline:
                raise RuntimeError(f"SLURM test cluster: jobs left after {timeout:.0f} s:\n{self.run('squeue')}")
            time.sleep(1)

    def stop(self) -> None:
        """Cancels the jobs left (a failed test's), waits until their steps are gone (slurmstepd outlives slurmd),
        then stops the daemons started here, last first, by their process ids."""
        if "slurmd" in self.processes and self.processes["slurmd"].poll() is None:
            jobs = self._run("squeue", "-h", "-o", "%i").stdout.split()
            if jobs:
                self._run("scancel", "--full", *jobs)
            deadline = time.monotonic() + 60
            while (self._run("squeue", "-h", "-o", "%i").stdout.strip()
                   or any(self.root.joinpath("slurmd").glob(f"{self.node}_*"))) and time.monotonic() < deadline:
                time.sleep(0.5)
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.processes.clear()


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> Iterator[SlurmCluster]:
    """A running one-node SLURM; ``SLURM_CONF`` points at it for the test's commands (and what they start)."""
    why = unavailable()
    if why:
        missing(why)  # skipped; failed where CI requires the system packages
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    saved = {key: os.environ.get(key) for key in ("SLURM_CONF", "PATH")}
    os.environ.update(SLURM_CONF=cluster.env["SLURM_CONF"], PATH=cluster.env["PATH"])
    try:
        yield cluster
    finally:
        cluster.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stops the daemons as Ctrl-C does
    cluster = SlurmCluster(Path(sys.argv[1])).start()
    print(f"SLURM_CONF={cluster.conf}; {cluster.run('sinfo')}", flush=True)
    try:
        signal.pause()
    finally:
        cluster.stop()
