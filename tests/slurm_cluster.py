"""A throw-away single-node SLURM cluster for the tests.

Installs Debian's ``slurmctld slurmd slurm-client`` with apt when they are
missing (only as root, only where apt exists), writes a configuration under a
temporary directory, starts ``slurmctld`` and ``slurmd -N localhost`` in the
foreground as child processes, waits until the node is idle, and stops both
with ``scontrol shutdown``.  Clients find the cluster through ``SLURM_CONF``,
which :meth:`SlurmCluster.env` returns and ``sbatch`` passes on to the jobs.

The configuration is the one known to work on these machines (see
``DESIGN.md``): no munge (``auth/none``), no cgroups, no systemd, state and
spool under the temporary directory, ports picked free so that several
clusters can run side by side on one host.

Used by the test fixture and also runnable by hand::

    python tests/slurm_cluster.py install        # apt-get when needed
    python tests/slurm_cluster.py up DIR         # start; prints SLURM_CONF=...
    python tests/slurm_cluster.py down DIR       # stop
"""

from __future__ import annotations

import getpass
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client")
PROGRAMS = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be installed or started here; the message says why."""


def _missing_programs():
    return [p for p in PROGRAMS if shutil.which(p) is None]


def ensure_installed(timeout=600):
    """Make the SLURM programs available, installing them with apt if needed.

    Returns immediately when all programs are already on ``PATH``.

    Raises
    ------
    SlurmUnavailable
        When a program is missing and cannot be installed (not Linux, not
        root, no apt, or apt failed); the message is the reason.
    """
    missing = _missing_programs()
    if not missing:
        return
    if not sys.platform.startswith("linux"):
        raise SlurmUnavailable(f"SLURM tests need Linux (missing {', '.join(missing)})")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed and apt-get not available")
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed and not root to apt-get them")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    commands = (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    )
    for cmd in commands:
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"{' '.join(cmd)} timed out after {timeout} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SlurmUnavailable(f"{' '.join(cmd)} failed: {tail[0]}")
    missing = _missing_programs()
    if missing:
        raise SlurmUnavailable(f"apt-get installed SLURM but {', '.join(missing)} still missing")


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_hardware():
    """The node's hardware words as ``slurmd -C`` sees them (CPUs, cores, memory).

    Declaring exactly what slurmd measures keeps the node from being drained
    for a configuration mismatch.
    """
    try:
        out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    first = out.splitlines()[0] if out else ""
    words = [w for w in first.split() if re.match(r"^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=\d+$", w)]
    if not any(w.startswith("CPUs=") for w in words):
        words = [f"CPUs={os.cpu_count() or 1}"]
    return " ".join(words)


class SlurmCluster:
    """A single-node SLURM cluster living under ``root``.

    Parameters
    ----------
    root : path-like
        An empty or non-existent directory for the configuration, state,
        spool and daemon logs.
    name : str
        ``ClusterName``.
    """

    def __init__(self, root, name="hpcmltest"):
        self.root = Path(root).resolve()
        self.name = name
        self.conf = self.root / "slurm.conf"
        self._daemons = {}

    def env(self, base=None):
        """The environment for SLURM clients talking to this cluster."""
        env = dict(os.environ if base is None else base)
        env["SLURM_CONF"] = str(self.conf)
        return env

    def write_config(self):
        """Write ``slurm.conf`` (fresh ports, state and spool under ``root``)."""
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text("\n".join(self.config_lines()) + "\n")
        return self.conf

    def config_lines(self):
        """The lines of ``slurm.conf``, one setting each (subclasses edit them)."""
        user = getpass.getuser()
        r = self.root
        lines = [
            f"ClusterName={self.name}",
            "SlurmctldHost=localhost(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            f"SlurmUser={user}",
            f"SlurmdUser={user}",
            "AuthType=auth/none",
            "CredType=cred/none",
            # A requeued job waits one credential lifetime before it may
            # start again (120 s by default); 5 s keeps requeue tests quick
            # while leaving ample time to launch a step on a busy machine.
            "AuthInfo=cred_expire=5",
            "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=2,bf_interval=2",
            "ReturnToService=2",
            # Short waits keep cancellation and shutdown quick in tests.
            "KillWait=5",
            "MessageTimeout=10",
            "InactiveLimit=0",
            "MinJobAge=600",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"NodeName=localhost NodeAddr=127.0.0.1 {_node_hardware()} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO",
            # MPICH names its shared-memory files after the PMI job name, which
            # is SLURM's JOBID.STEP: a file left by a killed job of another
            # cluster with the same job id (every cluster counts from 1) makes
            # MPI_Init fail ("Out of memory").  Job ids start at a random place
            # below MaxJobId (67043328 by default).
            f"FirstJobId={random.randrange(10**5, 6 * 10**7)}",
        ]
        return lines

    def _spawn(self, name, argv):
        log = open(self.root / "log" / f"{name}.stdout", "ab")
        try:
            self._daemons[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
            )
        finally:
            log.close()

    def start(self, timeout=60):
        """Start both daemons and wait until the node is idle.

        Raises
        ------
        SlurmUnavailable
            When a daemon exits or the node does not become idle in time;
            the message carries the tail of the daemon logs.
        """
        self.write_config()
        self._spawn("slurmctld", ["slurmctld", "-D", "-c", "-f", str(self.conf)])
        self._spawn_slurmds()
        deadline = time.monotonic() + timeout
        state = "no answer"
        while time.monotonic() < deadline:
            for name, proc in self._daemons.items():
                if proc.poll() is not None:
                    self.stop()
                    raise SlurmUnavailable(f"{name} exited with {proc.returncode}: {self.log_tail(name)}")
            state = self.node_state()
            if state.startswith("IDLE"):
                return self
            time.sleep(0.25)
        self.stop()
        raise SlurmUnavailable(f"node not idle after {timeout} s (state {state}): {self.log_tail('slurmd')}")

    def _spawn_slurmds(self):
        self._spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)])

    def node_state(self):
        """The node's state word (``IDLE``, ``ALLOCATED``, ``DOWN*`` ...) or a reason it is unknown."""
        proc = subprocess.run(
            ["sinfo", "-h", "-N", "-n", "localhost", "-o", "%T"],
            capture_output=True, text=True, env=self.env(), timeout=30,
        )
        return proc.stdout.strip().upper() if proc.returncode == 0 else "no answer"

    def log_tail(self, name, lines=5):
        """The last lines of a daemon's log file, joined into one line."""
        for path in (self.root / "log" / f"{name}.log", self.root / "log" / f"{name}.stdout"):
            if path.exists() and path.stat().st_size:
                return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def cancel_all(self, timeout=30):
        """Cancel every job and wait until the queue is empty.

        ``scontrol shutdown`` leaves running jobs behind (their slurmstepd
        outlives slurmd), so the cluster is emptied first.
        """
        def queued():
            proc = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                                  env=self.env(), timeout=timeout)
            return proc.stdout.split() if proc.returncode == 0 else []

        jobs = queued()
        if not jobs:
            return
        subprocess.run(["scancel", "--full", *jobs], capture_output=True, env=self.env(), timeout=timeout)
        deadline = time.monotonic() + timeout
        while queued() and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self, timeout=30):
        """Stop both daemons: cancel all jobs, ``scontrol shutdown``, then signals to the ones still running."""
        if not self.conf.exists():
            return
        try:
            self.cancel_all(timeout)
            subprocess.run(["scontrol", "shutdown"], capture_output=True, env=self.env(), timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for proc in self._daemons.values():
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._daemons.clear()
        # Daemons started by another process (``up`` from the command line)
        # are only known through their pid files.
        for pidfile in (self.root / "slurmd.pid", self.root / "slurmctld.pid"):
            _wait_pidfile_gone(pidfile, timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _wait_pidfile_gone(pidfile, timeout):
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def main(argv=None):
    """``install``, ``up DIR`` or ``down DIR``; exit status 0 on success."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("install", "up", "down") or (argv[0] != "install" and len(argv) != 2):
        print("usage: slurm_cluster.py install | up DIR | down DIR", file=sys.stderr)
        return 2
    try:
        if argv[0] == "install":
            ensure_installed()
        elif argv[0] == "up":
            ensure_installed()
            cluster = SlurmCluster(argv[1]).start()
            # The daemons must outlive this process: forget the handles.
            cluster._daemons.clear()
            print(f"SLURM_CONF={cluster.conf}")
        else:
            SlurmCluster(argv[1]).stop()
    except SlurmUnavailable as exc:
        print(f"slurm_cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
