"""hpcml across two real SLURM nodes: network namespaces on this machine (tests/slurm_nodes.py).

Each node has its own address, host name and slurmd; the ranks of different
nodes talk over TCP.  Each workload runs submitted with ``hpcml submit
--nodes 2`` and, as the reference, the same job with ``--nodes 1``; a run
preempted by ``scontrol requeue`` resumes across the nodes to the result of
an uninterrupted run.  The tests skip where namespaces or SLURM cannot be
had (not root, no ``ip netns``, no apt); with ``HPCML_REQUIRE_SLURM=1`` (CI)
they fail instead.
"""

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import hpcml as mpi_hpcml
from hpcml import slurm

try:
    from . import slurm_nodes
    from .slurm_helpers import TERMINAL, job_fields, run_hpcml, unavailable
    from .slurm_helpers import wait_job as slurm_wait_job
except ImportError:
    import slurm_nodes
    from slurm_helpers import TERMINAL, job_fields, run_hpcml, unavailable
    from slurm_helpers import wait_job as slurm_wait_job

pytestmark = pytest.mark.mpi

REPO = Path(__file__).resolve().parent.parent
JOBS = REPO / "jobs"
def _unavailable(reason):
    unavailable("2-node SLURM cluster", reason)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    try:
        slurm_nodes.check_possible()
        slurm_nodes.ensure_installed()
    except slurm_nodes.SlurmUnavailable as exc:
        _unavailable(str(exc))
    c = slurm_nodes.SlurmNodes(tmp_path_factory.mktemp("nodes"))
    try:
        c.start()
    except slurm_nodes.SlurmUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site configuration whose environment sends MPI traffic between nodes over TCP."""
    path = tmp_path_factory.mktemp("site") / "slurm.toml"
    path.write_text("[env]\n" + "".join(f'{k} = "{v}"\n' for k, v in slurm_nodes.MPI_ENV.items()))
    return path


def wait_job(cluster, jid, timeout=120, until=TERMINAL):
    """Poll until the job's state is in ``until``; return its fields."""
    return slurm_wait_job(cluster, jid, timeout, until)


def logs(run_dir):
    return "".join(p.read_text() for p in sorted(Path(run_dir).glob("slurm-*.*")))


def submit(cluster, site, cwd, spec, *args):
    """``hpcml submit SPEC ARGS --json`` with the test site configuration; returns (run_dir, job_id)."""
    proc = run_hpcml("submit", spec, "--json", "--config", site, *args, cwd=cwd, env=cluster.env())
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    return Path(summary["run_dir"]), summary["job_id"]


def completed(cluster, run_dir, jid, timeout=120):
    fields = wait_job(cluster, jid, timeout)
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), logs(run_dir)
    return fields


# ---------------------------------------------------------------------------
# The cluster itself: two hosts, MPI between them over TCP.

HELLO = """
import socket
from mpi4py import MPI
comm = MPI.COMM_WORLD
node = comm.Split_type(MPI.COMM_TYPE_SHARED)
# One file per rank: mpiexec interleaves the ranks' output.
with open(f"rank-{comm.rank}.txt", "w") as f:
    print(comm.rank, comm.size, comm.allreduce(comm.rank + 1), socket.gethostname(), node.size, file=f)
"""


def test_two_nodes_with_their_own_hosts(nodes, tmp_path):
    assert nodes.node_state() == "IDLE"
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %o"], env=nodes.env(), capture_output=True,
                         text=True, timeout=30).stdout.split()
    net = nodes.network
    assert out == ["node1", net.address(1), "node2", net.address(2)]
    assert net.address(1).startswith("10.250.")
    # Each node resolves the others by name through its own /etc/hosts.
    for k in (1, 2):
        proc = subprocess.run(net.node_argv(k, ["sh", "-c", "hostname; getent hosts node1 node2"]),
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.split("\n")
        assert lines[0] == f"node{k}"
        assert sorted(lines[1].split() + lines[2].split()) == sorted(
            [net.address(1), "node1", net.address(2), "node2"])


def _namespaces():
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout


def _links():
    return subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30).stdout


def test_failed_start_and_dead_owners_leave_nothing_behind(nodes, tmp_path):
    # A start that fails (here: no slurmd becomes ready) removes its namespaces and bridge.
    broken = slurm_nodes.SlurmNodes(tmp_path / "broken")
    broken._spawn_slurmds = lambda: None
    with pytest.raises(slurm_nodes.SlurmUnavailable, match="not idle"):
        broken.start(timeout=3)
    net = broken.network
    assert net.netns(1) not in _namespaces() and f" {net.bridge}:" not in _links()
    assert not (Path("/etc/netns") / net.netns(1)).exists()
    # A network whose owner died without removing it goes at the next start.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = slurm_nodes.NodeNetwork(state={"count": 2, "owner": dead.pid, "subnet": None}).create()
    assert stale.netns(2) in _namespaces()
    slurm_nodes.sweep_stale()
    assert stale.netns(1) not in _namespaces() and stale.netns(2) not in _namespaces()
    assert f" {stale.bridge}:" not in _links()
    # The running cluster is not touched.
    assert nodes.network.netns(1) in _namespaces() and nodes.node_state() == "IDLE"


@pytest.mark.parametrize("launcher", ["srun --mpi=pmi2", "mpiexec"])
def test_pip_mpich_ranks_span_both_nodes_over_tcp(nodes, tmp_path, launcher):
    (tmp_path / "hello.py").write_text(HELLO)
    if launcher == "mpiexec":
        # Hydra (pip's MPICH) inside the allocation starts its proxies with srun.
        launcher = f"{Path(sys.executable).parent / 'mpiexec'} -n 4"
    env = " ".join(f"{k}={v}" for k, v in slurm_nodes.MPI_ENV.items())
    proc = subprocess.run(
        ["sbatch", "--parsable", "-N", "2", "--ntasks-per-node", "2", "-o", "out.txt", "--wrap",
         f"{env} MPIR_CVAR_DEBUG_SUMMARY=1 {launcher} {sys.executable} hello.py"],
        cwd=tmp_path, env=nodes.env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    jid = proc.stdout.strip().split(";")[0]
    fields = wait_job(nodes, jid)
    text = (tmp_path / "out.txt").read_text()
    assert fields["JobState"] == "COMPLETED", text
    ranks = sorted((tmp_path / f"rank-{r}.txt").read_text().split() for r in range(4))
    # One world of 4 ranks (1 + 2 + 3 + 4 = 10); two ranks on each host,
    # which MPI sees as one node each.
    assert ranks == [["0", "4", "10", "node1", "2"], ["1", "4", "10", "node1", "2"],
                     ["2", "4", "10", "node2", "2"], ["3", "4", "10", "node2", "2"]]
    # MPICH's own report: between nodes it uses libfabric's tcp provider on
    # the nodes' subnet.
    assert f"libfabric provider: tcp - 10.250.{nodes.network.subnet}.0/24" in text, text


# ---------------------------------------------------------------------------
# `hpcml submit --nodes N`: the rendered script and what each rank gets.

PROBE = """
import json, os, socket, sys
from mpi4py import MPI
comm = MPI.COMM_WORLD
row = {"rank": comm.rank, "size": comm.size, "host": socket.gethostname(),
       "node_size": comm.Split_type(MPI.COMM_TYPE_SHARED).size, "argv": sys.argv[1:],
       "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                  "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")},
       "cpus": int(os.environ.get("SLURM_CPUS_PER_TASK", "0"))}
rows = comm.gather(row)
if comm.rank == 0:
    print("PROBE " + json.dumps(rows), flush=True)
"""


def directives(text):
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")]


@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_submit_nodes_gives_each_node_its_ranks_and_threads(nodes, tmp_path, launcher):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    site = tmp_path / "site.toml"
    site.write_text(f"command = [{json.dumps(sys.executable)}, {json.dumps(str(probe))}]\n"
                    f'launcher = "{launcher}"\n[env]\n'
                    + "".join(f'{k} = "{v}"\n' for k, v in slurm_nodes.MPI_ENV.items()))
    spec = tmp_path / "job.toml"
    spec.write_text('workload = "info"\n[resources]\nranks = 2\n')
    args = ["--nodes", "2", "--cpus-per-task", "2", "--set", "resources.ranks=2"]
    proc = run_hpcml("submit", spec, "--config", site, "--run-dir", "dry", "--dry-run", *args,
                     cwd=tmp_path, env=nodes.env())
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    # Two ranks over two nodes: one rank per node, two cores (threads) each.
    assert directives(text)[1:4] == ["--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=2"]
    assert "export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 NUMBA_NUM_THREADS=2" in text
    for key, value in slurm_nodes.MPI_ENV.items():
        assert f"export {key}={value}" in text
    (step,) = [line.strip() for line in text.splitlines() if line.strip().endswith("&")]
    if launcher == "srun":
        assert step.startswith("srun --mpi=pmi2 --cpus-per-task=2 ")
    else:
        assert step.startswith(f"{Path(sys.executable).parent / 'mpiexec'} -n 2 ")
    # The same script, submitted, on the two nodes.
    proc = run_hpcml("submit", spec, "--config", site, "--run-dir", "run", "--json", *args,
                     cwd=tmp_path, env=nodes.env())
    assert proc.returncode == 0, proc.stderr
    jid = json.loads(proc.stdout)["job_id"]
    run_dir = tmp_path / "run"
    completed(nodes, run_dir, jid)
    assert (run_dir / "job.sbatch").read_text() == text.replace(str(tmp_path / "dry"), str(run_dir))
    (line,) = [line for line in logs(run_dir).splitlines() if line.startswith("PROBE ")]
    rows = json.loads(line[len("PROBE "):])
    assert [(r["rank"], r["size"], r["host"], r["node_size"]) for r in rows] == [
        (0, 2, "node1", 1), (1, 2, "node2", 1)]
    assert all(r["argv"][:2] == ["run", str(run_dir / "job.toml")] for r in rows)
    assert all(set(r["threads"].values()) == {"2"} for r in rows)
    if launcher == "srun":
        assert all(r["cpus"] == 2 for r in rows)


# ---------------------------------------------------------------------------
# The workloads across the two nodes against the same job on one node.

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Tiny inputs: a matrix, a LASSO problem and an LDA corpus."""
    folder = tmp_path_factory.mktemp("data")
    steps = [
        ("demo-data-matrix.toml", "matrix.h5:/A", ["rows=601", "cols=12"]),
        ("demo-data-lasso.toml", "lasso.h5", ["rows=301", "cols=30", "nonzeros=5"]),
        ("demo-data-corpus.toml", "corpus.h5", ["docs=301", "words=300", "topics=5", "doc_length=60"]),
    ]

    def make(step):
        spec, output, sets = step
        args = [a for s in sets for a in ("--set", s)]
        return mpi_hpcml(1, "run", JOBS / spec, *args, "--output", folder / output, cwd=folder)

    with ThreadPoolExecutor(len(steps)) as pool:
        for result in pool.map(make, steps):
            assert result.returncode == 0, result
    return folder


WORKLOADS = {
    "stats": ("stats-demo.toml", ["input=MATRIX", "power_iterations=50", "tol=0"]),
    "svd": ("svd-demo.toml", ["input=MATRIX", "k=3"]),
    "lasso": ("lasso-demo.toml", ["input=DATA/lasso.h5:/A", "rhs=DATA/lasso.h5:/b"]),
    "lda": ("lda-demo.toml", ["input=DATA/corpus.h5", "topics=5", "iterations=60", "eval_every=30",
                              "optimize_every=10"]),
}


@pytest.fixture(scope="module")
def runs(nodes, site, data, tmp_path_factory):
    """Every workload submitted twice at once: 2 nodes x 1 rank, and 1 node x 2 ranks."""
    folder = tmp_path_factory.mktemp("runs")

    def one(key):
        name, n = key
        spec, sets = WORKLOADS[name]
        sets = [s.replace("MATRIX", f"{data}/matrix.h5:/A").replace("DATA", str(data)) for s in sets]
        args = [a for s in sets for a in ("--set", s)]
        return submit(nodes, site, folder, JOBS / spec, "--run-dir", f"{name}-{n}", "--nodes", str(n),
                      "--set", "resources.ranks=2", *args)

    keys = [(name, n) for name in WORKLOADS for n in (2, 1)]
    with ThreadPoolExecutor(len(keys)) as pool:
        return dict(zip(keys, pool.map(one, keys)))


def h5_contents(path):
    out = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def communication(path):
    with h5py.File(path, "r") as handle:
        return json.loads(handle.attrs["communication"])


def output_of(run_dir):
    (path,) = [p for p in run_dir.glob("*.h5")]
    return path


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_workload_on_two_nodes_equals_one_node(nodes, runs, name):
    results = {}
    for n in (2, 1):
        run_dir, jid = runs[name, n]
        completed(nodes, run_dir, jid)
        results[n] = output_of(run_dir)
    # The ranks really ran on two hosts (one each) and on one host.
    assert communication(results[2])["ranks_per_node"] == [1, 1]
    assert communication(results[1])["ranks_per_node"] == [2]
    two, one = h5_contents(results[2]), h5_contents(results[1])
    assert sorted(two) == sorted(one)
    if name != "lda":
        # Two ranks: every reduction adds the same two numbers, on one node
        # or across two, so the answers agree bit for bit.
        for key in two:
            np.testing.assert_array_equal(two[key], one[key], err_msg=key)
        return
    # LDA's layout depends on the nodes (counts shared by the ranks of a
    # node, or replicated and exchanged between nodes): two equally valid
    # chains, which reach the same quality, not the same counts.  On this
    # corpus (18000 tokens, 5 topics) chains of 60 sweeps agree within 0.2%
    # in log-likelihood and 1% in held-out perplexity (seeds 2, 3, 8 under
    # emulated nodes); a chain stuck with two topics merged is 7% and 20% off.
    assert two["word_topic"].sum() == one["word_topic"].sum()
    assert two["history/log_likelihood"][-1] == pytest.approx(one["history/log_likelihood"][-1], rel=0.01)
    assert two["history/perplexity"][-1] == pytest.approx(one["history/perplexity"][-1], rel=0.03)


# ---------------------------------------------------------------------------
# Preemption across the nodes: requeue while running, resume, same result.

# Power iterations to a fixed count (tol=0), so that a resumed run must end
# exactly where an uninterrupted one does.  How long a count runs depends on
# the machine's load (one allreduce between the nodes took 0.05 to 6 ms
# here), so a job that ended before the requeue reached it is tried again
# with four times the count.
COUNTS = (1500, 6000, 24000)


def _preempted_run(nodes, site, data, folder, count):
    """Submit the job and its reference, requeue the job once it has a checkpoint.

    Returns (run_dir, jid, ref_dir, ref_id), or None when the requeue came
    too late: the job had finished, or had left its loop and was writing its
    output (a stop there saves nothing: exit 128 + 15).
    """
    args = ["--nodes", "2", "--set", "resources.ranks=2", "--set", f"input={data}/matrix.h5:/A",
            "--set", f"power_iterations={count}", "--set", "tol=0", "--set", f"checkpoint.every={count // 30}"]
    ref_dir, ref_id = submit(nodes, site, folder, JOBS / "stats-demo.toml", "--run-dir", "ref", *args)
    run_dir, jid = submit(nodes, site, folder, JOBS / "stats-demo.toml", "--run-dir", "pre", "--requeue", *args)
    # Once a checkpoint exists the ranks are inside their loop, their stop
    # handlers installed; preempt the job as the scheduler would.
    deadline = time.monotonic() + 120
    while not list((run_dir / "checkpoints").glob("ckpt-*")):
        assert time.monotonic() < deadline, f"no checkpoint after 120 s: {logs(run_dir)}"
        assert job_fields(nodes, jid).get("JobState") in ("PENDING", "RUNNING"), logs(run_dir)
        time.sleep(0.05)
    subprocess.run(["scontrol", "requeue", jid], env=nodes.env(), check=True, timeout=30)
    completed(nodes, run_dir, jid, timeout=180)
    first = [line.split(" ", 3)[3] for line in slurm.events(run_dir) if " restart=0 " in line]
    if first in (["started", "finished rc=0"], ["started", "signal TERM", "finished rc=143"]):
        completed(nodes, ref_dir, ref_id)
        return None
    return run_dir, jid, ref_dir, ref_id


def test_requeue_across_nodes_resumes_to_the_uninterrupted_result(nodes, site, data, tmp_path):
    for count in COUNTS:
        (tmp_path / str(count)).mkdir()
        attempt = _preempted_run(nodes, site, data, tmp_path / str(count), count)
        if attempt is not None:
            break
    else:
        pytest.fail(f"every job left its loop before its requeue, up to {count} iterations")
    run_dir, jid, ref_dir, ref_id = attempt
    assert job_fields(nodes, jid)["Restarts"] == "1", logs(run_dir)
    words = [line.split(" ", 3)[2:] for line in slurm.events(run_dir)]
    assert words == [["restart=0", "started"], ["restart=0", "signal TERM"], ["restart=0", "finished rc=75"],
                     ["restart=1", "started"], ["restart=1", "finished rc=0"]], words
    text = logs(run_dir)
    stopped = int(text.split("checkpoint of iteration ")[1].split()[0])
    resumed = int(text.split("resuming power iteration after iteration ")[1].split()[0])
    assert count // 30 <= stopped == resumed < count
    completed(nodes, ref_dir, ref_id)
    assert "resuming" not in logs(ref_dir)
    for path in (run_dir / "stats.h5", ref_dir / "stats.h5"):
        assert communication(path)["ranks_per_node"] == [1, 1]
    a, b = h5_contents(run_dir / "stats.h5"), h5_contents(ref_dir / "stats.h5")
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
