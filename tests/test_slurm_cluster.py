"""hpcml under a real single-node SLURM (slurmctld + slurmd on this machine).

The module-scoped ``cluster`` fixture installs SLURM with apt when it is
missing and we are root, starts both daemons under a temporary directory and
stops them afterwards.  Where SLURM cannot be had the tests skip with the
reason; with ``HPCML_REQUIRE_SLURM=1`` (CI) they fail instead.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import hpcml as mpi_hpcml
from hpcml import slurm

try:
    from . import slurm_cluster
    from .slurm_helpers import TERMINAL, run_hpcml, unavailable
    from .slurm_helpers import wait_job as slurm_wait_job
except ImportError:
    import slurm_cluster
    from slurm_helpers import TERMINAL, run_hpcml, unavailable
    from slurm_helpers import wait_job as slurm_wait_job

pytestmark = pytest.mark.mpi

def _unavailable(reason):
    unavailable("SLURM", reason)


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


def wait_job(cluster, jid, timeout=90, until=TERMINAL):
    """Poll until the job's state is in ``until``; return its fields."""
    return slurm_wait_job(cluster, jid, timeout, until)


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


# Stops like a checkpointing hpcml job: exit 75 on SIGUSR1 or SIGTERM.
SLEEPER = """
import signal, sys, time
signal.signal(signal.SIGUSR1, lambda s, f: sys.exit(75))
signal.signal(signal.SIGTERM, lambda s, f: sys.exit(75))
open("ready", "w").close()
time.sleep(60)
"""


def _wait_for(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not created in {timeout} s"
        time.sleep(0.1)


def test_submit_status_signal_and_cancel(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    (tmp_path / "sleeper.py").write_text(SLEEPER)
    spec = tmp_path / "job.toml"
    spec.write_text('workload = "sleep"\n')
    runs = []
    for k, requeue in enumerate((False, True)):
        settings = slurm.merge_settings({"job_name": "sleeper", "requeue": requeue,
                                         "command": [sys.executable, str(tmp_path / "sleeper.py")]})
        run_dir = tmp_path / f"run{k}"
        slurm.prepare_run(settings, run_dir, spec, work_dir=run_dir)
        runs.append((run_dir, slurm.submit(run_dir)))
    for run_dir, jid in runs:
        assert slurm.job_id(run_dir) == jid
        _wait_for(run_dir / "ready")
        info = slurm.status(run_dir)
        assert (info["state"], info["source"]) == ("RUNNING", "squeue")
    (run_dir, jid), (run_dir2, jid2) = runs
    # USR1 to the batch script reaches the step, which exits 75; without
    # --requeue the job ends with that code.
    slurm.cancel(run_dir, "USR1")
    # scancel also makes the step exit 75, but a cancelled job stays
    # cancelled even when submitted with --requeue.
    proc = run_hpcml("cancel", run_dir2, cwd=tmp_path, env=cluster.env())
    assert (proc.returncode, proc.stdout) == (0, f"cancelled job {jid2}\n"), proc.stderr
    assert wait_job(cluster, jid)["ExitCode"] == "75:0"
    fields = wait_job(cluster, jid2)
    assert (fields["JobState"], fields["Restarts"]) == ("CANCELLED", "0")
    info = slurm.status(run_dir)
    assert (info["state"], info["exit_code"], info["requeues"]) == ("FAILED", "75:0", 0)
    assert info["last_event"].endswith("finished rc=75")
    info = slurm.status(run_dir2)
    assert (info["state"], info["requeues"]) == ("CANCELLED", 0)
    assert "signal TERM" in " ".join(slurm.events(run_dir2))


# ---------------------------------------------------------------------------
# Job specs through `hpcml submit`, compared with the same jobs under mpiexec.

REPO = Path(__file__).resolve().parent.parent
JOBS = REPO / "jobs"


def submit(cluster, cwd, spec, *args, env=None):
    """``hpcml submit SPEC ARGS --json`` in ``cwd``; returns (run_dir, job_id)."""
    proc = run_hpcml("submit", spec, "--json", *args, cwd=cwd, env=cluster.env(dict(os.environ, **(env or {}))))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    return Path(summary["run_dir"]), summary["job_id"]


def hpcml_status(cluster, run_dir):
    proc = run_hpcml("status", run_dir, "--json", cwd=run_dir, env=cluster.env())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def logs(run_dir):
    return "".join(p.read_text() for p in sorted(run_dir.glob("slurm-*.*")))


def h5_contents(path):
    """Every dataset of an HDF5 file by name (provenance attributes left out: they hold timings)."""
    out = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def assert_same_datasets(a, b):
    ca, cb = h5_contents(a), h5_contents(b)
    assert sorted(ca) == sorted(cb)
    for name in ca:
        # Same ranks, same MPI library, same reduction order: equal bits.
        np.testing.assert_array_equal(ca[name], cb[name], err_msg=name)


@pytest.fixture(scope="module")
def demo_direct(tmp_path_factory):
    """The demo steps under plain mpiexec -n 2, from a fresh directory."""
    folder = tmp_path_factory.mktemp("direct")
    for step in ("demo-data-matrix.toml", "stats-demo.toml"):
        result = mpi_hpcml(2, "run", JOBS / step, cwd=folder)
        assert result.returncode == 0, result
    return folder / "runs" / "demo"


def test_demo_jobs_through_submit_equal_mpiexec(cluster, tmp_path, demo_direct):
    # The data step starts its ranks with the venv's mpiexec inside the
    # allocation, the stats step with srun --mpi=pmi2 (the default).
    data_dir, data_id = submit(cluster, tmp_path, JOBS / "demo-data-matrix.toml", "--run-dir", "data",
                               "--launcher", "mpiexec", "--ntasks-per-node", "2")
    fields = wait_job(cluster, data_id)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), logs(data_dir)
    stats_dir, stats_id = submit(cluster, tmp_path, JOBS / "stats-demo.toml", "--run-dir", "stats",
                                 "--set", "input=data/matrix.h5:/A")
    fields = wait_job(cluster, stats_id)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), logs(stats_dir)
    assert_same_datasets(data_dir / "matrix.h5", demo_direct / "matrix.h5")
    assert_same_datasets(stats_dir / "stats.h5", demo_direct / "stats.h5")
    with h5py.File(stats_dir / "stats.h5", "r") as handle:
        assert handle.attrs["ranks"] == 2
    info = hpcml_status(cluster, stats_dir)
    assert (info["job_id"], info["state"], info["exit_code"]) == (stats_id, "COMPLETED", "0:0")
    assert info["last_event"].endswith("finished rc=0")
    # Everything about the run is in its directory.
    assert {p.name for p in stats_dir.iterdir()} >= {
        "job.sbatch", "job.toml", "settings.json", "job.id", f"slurm-{stats_id}.out",
        f"slurm-{stats_id}.err", "events.log", "stats.h5"}


# ---------------------------------------------------------------------------
# Preemption: USR1 -> checkpoint -> requeue -> resume -> the same result.

# Power iterations run to a fixed count (tol=0), so a resumed run must end
# exactly where the uninterrupted one does.
LONG_STATS = ("--set", "power_iterations=600", "--set", "tol=0", "--set", "checkpoint.every=50")


def job_ranks(cluster, jid, catching=(), timeout=60):
    """Pids of the job's two ranks (step 0), once they exist.

    With ``catching``, wait until both have handlers for all those signals
    (``SigCgt`` in /proc): from then on a stop signal is a stop request, not
    a kill, however fast the machine runs the job.
    """
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["scontrol", "listpids", jid], env=cluster.env(), capture_output=True,
                             text=True, timeout=30).stdout
        ranks = [int(line.split()[0]) for line in out.splitlines()[1:]
                 if line.split()[2:3] == ["0"] and _is_hpcml_rank(line.split()[0])]
        if len(ranks) == 2 and all(_catches(pid, signum) for pid in ranks for signum in catching):
            return ranks
        assert time.monotonic() < deadline, f"ranks of job {jid} not ready after {timeout} s: {out}"
        time.sleep(0.02)


def _is_hpcml_rank(pid):
    try:
        return b"hpcml" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _catches(pid, signum):
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask >> (signum - 1) & 1)


def test_usr1_checkpoints_requeues_and_resumes_to_the_same_result(cluster, tmp_path, demo_direct,
                                                                  long_reference):
    matrix = demo_direct / "matrix.h5"
    run_dir, jid = submit(cluster, tmp_path, JOBS / "stats-demo.toml", "--run-dir", "pre", "--requeue",
                          "--set", f"input={matrix}:/A", *LONG_STATS)
    # MPICH's MPI_Init installs a SIGUSR1 handler of its own, which hpcml
    # replaces together with its SIGTERM handler: wait for both.
    job_ranks(cluster, jid, catching=(signal.SIGTERM, signal.SIGUSR1))
    # What SLURM does signal_seconds before the time limit.
    subprocess.run(["scancel", "--batch", "--signal=USR1", jid], env=cluster.env(), check=True, timeout=30)
    # The reference runs while the job checkpoints and waits to be requeued.
    reference = long_reference()
    fields = wait_job(cluster, jid, timeout=120)
    assert (fields["JobState"], fields["ExitCode"], fields["Restarts"]) == ("COMPLETED", "0:0", "1"), logs(run_dir)
    words = [line.split(" ", 3)[2:] for line in slurm.events(run_dir)]
    assert words == [["restart=0", "started"], ["restart=0", "signal USR1"], ["restart=0", "finished rc=75"],
                     ["restart=0", "requeue"], ["restart=1", "started"], ["restart=1", "finished rc=0"]]
    text = logs(run_dir)
    stopped = int(text.split("checkpoint of iteration ")[1].split()[0])
    resumed = int(text.split("resuming power iteration after iteration ")[1].split()[0])
    assert 1 <= stopped == resumed < 600
    assert_same_datasets(run_dir / "stats.h5", reference)
    info = hpcml_status(cluster, run_dir)
    assert (info["state"], info["restarts"], info["requeues"]) == ("COMPLETED", 1, 1)


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory, demo_direct):
    """The LONG_STATS job run straight through under mpiexec (computed on first use)."""
    folder = tmp_path_factory.mktemp("reference")
    done = []

    def get():
        if not done:
            result = mpi_hpcml(2, "run", JOBS / "stats-demo.toml", "--set", f"input={demo_direct}/matrix.h5:/A",
                               *LONG_STATS, "--set", f"checkpoint.dir={folder / 'ckpt'}",
                               "--output", folder / "ref.h5", cwd=folder)
            assert result.returncode == 0, result
            done.append(folder / "ref.h5")
        return done[0]

    return get


def test_job_killed_before_any_checkpoint_starts_over(cluster, tmp_path, demo_direct, long_reference):
    run_dir, jid = submit(cluster, tmp_path, JOBS / "stats-demo.toml", "--run-dir", "killed", "--requeue",
                          "--set", f"input={demo_direct}/matrix.h5:/A", *LONG_STATS,
                          "--set", "checkpoint.every=0")
    # Kill the ranks outright, as the OOM killer or a dying node would: no
    # signal handler runs and no checkpoint is written.
    for pid in job_ranks(cluster, jid):
        os.kill(pid, signal.SIGKILL)
    fields = wait_job(cluster, jid)
    assert fields["JobState"] == "FAILED", logs(run_dir)
    assert not list((run_dir / "checkpoints").glob("ckpt-*"))
    # A requeue (here by hand, as SLURM does after a node failure) resumes
    # from the newest checkpoint; there is none, so the job starts over.
    subprocess.run(["scontrol", "requeue", jid], env=cluster.env(), check=True, timeout=30)
    fields = wait_job(cluster, jid)
    assert (fields["JobState"], fields["Restarts"]) == ("COMPLETED", "1"), logs(run_dir)
    assert "resuming" not in logs(run_dir)
    assert [line.split(" ", 3)[2:] for line in slurm.events(run_dir)][-2:] == [
        ["restart=1", "started"], ["restart=1", "finished rc=0"]]
    assert_same_datasets(run_dir / "stats.h5", long_reference())



def test_hostile_names_stay_inert_under_slurm(cluster, tmp_path, demo_direct):
    """Directories and an input file named like shell code: the job runs on them as plain names."""
    home = tmp_path / "home"
    home.mkdir()
    canary = home / "canary"
    canary.write_text("alive")
    work = tmp_path / "w$(touch pwned)`touch pwned`"
    work.mkdir()
    matrix = work / "m'; touch pwned; '.h5"
    shutil.copyfile(demo_direct / "matrix.h5", matrix)
    run_dir, jid = submit(cluster, work, JOBS / "stats-demo.toml", "--run-dir", 'x"; rm -f ~/canary; touch pwned; echo "',
                          "--set", f"input={matrix.name}:/A", env={"HOME": str(home)})
    assert run_dir == work / 'x"; rm -f ~/canary; touch pwned; echo "'
    fields = wait_job(cluster, jid)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), logs(run_dir)
    assert canary.read_text() == "alive"
    assert not list(tmp_path.rglob("pwned"))
    assert_same_datasets(run_dir / "stats.h5", demo_direct / "stats.h5")
    with h5py.File(run_dir / "stats.h5", "r") as handle:
        assert json.loads(handle.attrs["params"])["input"] == f"{matrix.name}:/A"
