"""hpcml under a real single-node SLURM (slurmctld + slurmd on this machine).

The module-scoped ``cluster`` fixture installs SLURM with apt when it is
missing and we are root, starts both daemons under a temporary directory and
stops them afterwards.  Where SLURM cannot be had the tests skip with the
reason; with ``HPCML_REQUIRE_SLURM=1`` (CI) they fail instead.
"""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    from . import slurm_cluster
except ImportError:
    import slurm_cluster

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def _unavailable(reason):
    if os.environ.get("HPCML_REQUIRE_SLURM"):
        pytest.fail(f"SLURM required (HPCML_REQUIRE_SLURM) but unavailable: {reason}")
    pytest.skip(f"SLURM unavailable: {reason}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        slurm_cluster.ensure_installed()
    except slurm_cluster.SlurmUnavailable as exc:
        _unavailable(str(exc))
    c = slurm_cluster.SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        c.start()
    except slurm_cluster.SlurmUnavailable as exc:
        _unavailable(str(exc))
    yield c
    c.stop()


def job_fields(cluster, jid):
    """``scontrol show job`` as a dict (the cluster keeps finished jobs for MinJobAge)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", str(jid)], env=cluster.env(),
                         capture_output=True, text=True, timeout=30).stdout
    return dict(w.split("=", 1) for w in out.split() if "=" in w)


def wait_job(cluster, jid, timeout=90, until=TERMINAL):
    """Poll until the job's state is in ``until``; return its fields."""
    deadline = time.monotonic() + timeout
    while True:
        fields = job_fields(cluster, jid)
        if fields.get("JobState") in until:
            return fields
        if time.monotonic() > deadline:
            subprocess.run(["scancel", str(jid)], env=cluster.env(), timeout=30)
            pytest.fail(f"job {jid} not in {sorted(until)} after {timeout} s: {fields.get('JobState')} "
                        f"| slurmctld: {cluster.log_tail('slurmctld')}")
        time.sleep(0.2)


def sbatch(cluster, cwd, *argv):
    proc = subprocess.run(["sbatch", "--parsable", *argv], cwd=cwd, env=cluster.env(),
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def test_cluster_runs_a_batch_job(cluster, tmp_path):
    jid = sbatch(cluster, tmp_path, "-o", "out.txt", "--wrap", "hostname")
    fields = wait_job(cluster, jid)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0")
    assert (tmp_path / "out.txt").read_text().strip() == socket.gethostname()


MPI_PROGRAM = """
from mpi4py import MPI
comm = MPI.COMM_WORLD
print(comm.rank, comm.size, comm.allreduce(comm.rank + 1), flush=True)
"""


def test_srun_pmi2_starts_pip_mpich_ranks(cluster, tmp_path):
    (tmp_path / "hello.py").write_text(MPI_PROGRAM)
    jid = sbatch(cluster, tmp_path, "-n", "2", "-o", "out.txt",
                 "--wrap", f"srun --mpi=pmi2 {sys.executable} hello.py")
    fields = wait_job(cluster, jid)
    assert fields["JobState"] == "COMPLETED", (tmp_path / "out.txt").read_text()
    lines = sorted((tmp_path / "out.txt").read_text().split("\n"))
    # One MPI world of two ranks (not two worlds of one): the sum is 1 + 2.
    assert [line for line in lines if line] == ["0 2 3", "1 2 3"]


SLEEPER = """
import signal, sys, time
signal.signal(signal.SIGUSR1, lambda s, f: sys.exit(75))
open("ready", "w").close()
time.sleep(60)
"""


def _wait_for(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not created in {timeout} s"
        time.sleep(0.1)


def test_submit_status_signal_and_cancel(cluster, tmp_path, monkeypatch):
    from hpcml import slurm

    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    spec = tmp_path / "job.toml"
    spec.write_text('workload = "sleep"\n')
    settings = slurm.merge_settings({"job_name": "sleeper", "command": [sys.executable, str(tmp_path / "sleeper.py")]})
    runs = []
    for k in range(2):
        run_dir = tmp_path / f"run{k}"
        slurm.prepare_run(settings, run_dir, spec)
        runs.append((run_dir, slurm.submit(run_dir)))
    for run_dir, jid in runs:
        assert slurm.job_id(run_dir) == jid
        _wait_for(run_dir / "ready")
        info = slurm.status(run_dir)
        assert (info["state"], info["source"]) == ("RUNNING", "squeue")
    # USR1 to the batch script reaches the step, which exits 75; without
    # --requeue the job ends with that code.
    (run_dir, jid), (run_dir2, jid2) = runs
    slurm.cancel(run_dir, "USR1")
    slurm.cancel(run_dir2)
    assert wait_job(cluster, jid)["ExitCode"] == "75:0"
    assert wait_job(cluster, jid2)["JobState"] == "CANCELLED"
    info = slurm.status(run_dir)
    assert (info["state"], info["exit_code"], info["requeues"]) == ("FAILED", "75:0", 0)
    assert info["last_event"].endswith("finished rc=75")
    assert slurm.status(run_dir2)["state"] == "CANCELLED"
