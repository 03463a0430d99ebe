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
