"""Sweeps as SLURM job arrays and pipelines of dependent jobs, on the real test cluster.

The cluster (``tests/slurm_cluster.py``) is started once for this module, as
in ``test_slurm_cluster.py``; where SLURM cannot be had the tests skip
(``HPCML_REQUIRE_SLURM=1`` makes them fail instead).
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import hpcml as mpi_hpcml
from hpcml import pipeline, runs, sweep

try:
    from .slurm_helpers import run_hpcml
    from .test_slurm_cluster import _catches, _is_hpcml_rank, assert_same_datasets, cluster, wait_job
except ImportError:
    from slurm_helpers import run_hpcml
    from test_slurm_cluster import _catches, _is_hpcml_rank, assert_same_datasets, cluster, wait_job

pytestmark = pytest.mark.mpi
assert cluster   # the module-scoped fixture, used by name

REPO = Path(__file__).resolve().parent.parent

STATS = """\
workload = "stats"
[params]
input = "{matrix}:/A"
output = "stats.h5"
power_iterations = 10
tol = 0
[checkpoint]
dir = "ckpt"
every = 500
[resources]
ranks = 1
"""

# Iteration counts of the sweep; the last point is preempted.
POINTS = (500, 1000, 1500, 8000)
STAGE_DONE = {"done", "failed", "cancelled", "blocked", "timeout"}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """A 4001 x 40 matrix with singular values 10 .. 0.01."""
    folder = tmp_path_factory.mktemp("matrix")
    result = mpi_hpcml(1, "data", "matrix", "--rows", 4001, "--cols", 40, "--spectrum", "geometric:10:0.01",
                       "--output", folder / "A.h5:/A", "--seed", 1, cwd=folder)
    assert result.returncode == 0, result
    return folder / "A.h5"


def hpcml(cluster, *args, cwd, timeout=60):
    proc = run_hpcml(*args, cwd=cwd, env=cluster.env(), timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


def task_job(cluster, array_id, task, timeout=120):
    """The job id of a running array task."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["scontrol", "-o", "show", "job", f"{array_id}_{task}"], env=cluster.env(),
                             capture_output=True, text=True, timeout=30).stdout
        fields = dict(w.split("=", 1) for w in out.split() if "=" in w)
        if fields.get("JobState") == "RUNNING" and fields.get("ArrayTaskId") == str(task):
            return fields["JobId"]
        assert time.monotonic() < deadline, f"task {task} of {array_id} not running: {out}"
        time.sleep(0.1)


def rank_ready(cluster, jid, timeout=120):
    """Wait until the job's one rank catches SIGTERM and SIGUSR1 (a stop is then a stop request)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["scontrol", "listpids", jid], env=cluster.env(), capture_output=True,
                             text=True, timeout=30).stdout
        ranks = [int(line.split()[0]) for line in out.splitlines()[1:]
                 if line.split()[2:3] == ["0"] and _is_hpcml_rank(line.split()[0])]
        if ranks and all(_catches(p, s) for p in ranks for s in (signal.SIGTERM, signal.SIGUSR1)):
            return ranks
        assert time.monotonic() < deadline, f"rank of job {jid} not ready: {out}"
        time.sleep(0.02)


def test_sweep_array_with_a_preempted_point_resumes_to_the_same_result(cluster, tmp_path, matrix, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    spec = tmp_path / "stats.toml"
    spec.write_text(STATS.format(matrix=matrix))
    grid = ",".join(map(str, POINTS))
    out = hpcml(cluster, "sweep", spec, "--grid", f"power_iterations={grid}", "--max-parallel", "2",
                "--requeue", "--metric", "spectral_norm", "--goal", "max", "--dir", "sw", "--json",
                cwd=tmp_path).stdout
    started = json.loads(out.splitlines()[-1])
    directory = tmp_path / "sw"
    assert "#SBATCH --array=0-3%2" in (directory / "array.sbatch").read_text()
    # What SLURM sends signal_seconds before the time limit, to the last point only.
    jid = task_job(cluster, started["job_id"], 3)
    rank_ready(cluster, jid)
    # ARRAY_TASK names the task alone (its job id may be the array's own).
    subprocess.run(["scancel", "--batch", "--signal=USR1", f"{started['job_id']}_3"], env=cluster.env(),
                   check=True, timeout=30)
    # The uninterrupted reference runs while the point checkpoints and is requeued.
    reference = mpi_hpcml(1, "run", spec, "--set", f"power_iterations={POINTS[-1]}",
                          "--set", f"checkpoint.dir={tmp_path / 'ck'}", "--output", tmp_path / "ref.h5",
                          cwd=tmp_path, timeout=180)
    assert reference.returncode == 0, reference
    fields = wait_job(cluster, started["report_id"], timeout=240)
    point = directory / "points" / "3"
    logs = "".join(p.read_text() for p in sorted(point.glob("slurm-*")))
    assert (fields["JobState"], fields["ExitCode"]) == ("COMPLETED", "0:0"), logs
    words = [line.split(" ", 3)[2:] for line in (point / "events.log").read_text().splitlines()]
    assert words == [["restart=0", "started"], ["restart=0", "signal USR1"], ["restart=0", "finished rc=75"],
                     ["restart=0", "requeue"], ["restart=1", "started"], ["restart=1", "finished rc=0"]]
    stopped = int(logs.split("checkpoint of iteration ")[1].split()[0])
    resumed = int(logs.split("resuming power iteration after iteration ")[1].split()[0])
    assert 1 <= stopped == resumed < POINTS[-1]
    assert_same_datasets(point / "stats.h5", tmp_path / "ref.h5")
    # Every other point ran once, straight through.
    rows = sweep.status(directory)
    assert [(r["state"], r["restarts"], r.get("slurm")) for r in rows] == (
        [("done", 0, "COMPLETED")] * 3 + [("done", 1, "COMPLETED")])
    shown = hpcml(cluster, "sweep", "status", directory, cwd=tmp_path).stdout
    assert "restarts=1 (slurm COMPLETED)" in shown.splitlines()[3]
    # The report job compared the points by the metric the sweep was given.
    report = json.loads((directory / "results.json").read_text())
    assert (report["metric"], report["goal"]) == ("spectral_norm", "max")
    with h5py.File(matrix, "r") as handle:
        sigma = np.linalg.norm(handle["A"][()], 2)
    values = []
    for k in range(len(POINTS)):
        with h5py.File(directory / "points" / str(k) / "stats.h5", "r") as handle:
            values.append(float(handle["spectral_norm"][()]))
    # All points converge to sigma_1; the best is the largest (the first of equals).
    assert [r["spectral_norm"] for r in report["rows"]] == values
    assert report["best"]["index"] == int(np.argmax(values))
    assert max(abs(v - sigma) for v in values) < 1e-8 * sigma
    assert [r["power_iterations"] for r in report["rows"]] == list(POINTS)


PIPELINE = """\
[stages.data]
workload = "data matrix"
params = {{ rows = 61, cols = 6, spectrum = "geometric:5:0.5", output = "A.h5:/A", seed = 3 }}

[stages.other]
after = ["data"]
workload = "stats"
params = {{ input = "extra.h5:/A", output = "other.h5", power_iterations = 5 }}

[stages.scan]
after = ["data"]
job = "{spec}"
params = {{ input = "${{data.output}}" }}
sweep = {{ grid = {{ power_iterations = [2, 30] }}, max_parallel = 2 }}

[stages.last]
after = ["scan", "other"]
workload = "stats"
params = {{ input = "${{data.output}}", output = "last.h5", power_iterations = 3 }}
"""


def wait_pipeline(directory, timeout=180):
    deadline = time.monotonic() + timeout
    while True:
        rows = pipeline.status(directory)
        if all(r["state"] in STAGE_DONE for r in rows):
            return {r["name"]: r for r in rows}
        assert time.monotonic() < deadline, pipeline.format_status(rows)
        time.sleep(0.5)


def test_pipeline_failed_stage_cancels_dependants_and_resume_finishes(cluster, tmp_path, matrix, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    spec = tmp_path / "stats.toml"
    spec.write_text(STATS.format(matrix=matrix))
    (tmp_path / "p.toml").write_text(PIPELINE.format(spec=spec))
    hpcml(cluster, "pipeline", "p.toml", "--dir", "run", cwd=tmp_path)
    plan = json.loads((tmp_path / "run" / "pipeline.json").read_text())
    scripts = {e["name"]: e for e in plan["stages"]}
    assert "report_id" in scripts["scan"] and "job_id" in scripts["last"]
    rows = wait_pipeline(tmp_path / "run")
    states = {name: r["state"] for name, r in rows.items()}
    # The sweep's report names no best point for a workload without a
    # default metric, so it fails too; `last` needs both.
    assert states == {"data": "done", "other": "failed", "scan": "failed", "last": "cancelled"}, states
    fields = wait_job(cluster, scripts["last"]["job_id"])
    assert fields["JobState"] == "CANCELLED"
    data_job = scripts["data"]["job_id"]
    # Fix both causes: the missing input, and the sweep's metric.
    os.link(tmp_path / "run" / "data" / "A.h5", tmp_path / "extra.h5")
    (tmp_path / "p.toml").write_text(PIPELINE.format(spec=spec).replace(
        "max_parallel = 2", 'max_parallel = 2, metric = "spectral_norm", goal = "max"'))
    hpcml(cluster, "pipeline", "p.toml", "--dir", "run", "--resume", cwd=tmp_path)
    plan = json.loads((tmp_path / "run" / "pipeline.json").read_text())
    assert [e["name"] for e in plan["stages"] if e["render"]] == ["other", "scan", "last"]
    rows = wait_pipeline(tmp_path / "run")
    assert {n: r["state"] for n, r in rows.items()} == dict.fromkeys(states, "done"), \
        pipeline.format_status(list(rows.values()))
    assert (tmp_path / "run" / "data" / "job.id").read_text().strip() == data_job
    shown = hpcml(cluster, "pipeline", "status", "run", cwd=tmp_path).stdout
    assert shown.splitlines()[-1] == "4 of 4 stage(s) done"
    assert rows["scan"]["best"]["power_iterations"] == 30
    with h5py.File(tmp_path / "run" / "last" / "last.h5", "r") as handle:
        assert handle["frobenius_norm"][()] > 0


def _accuracy(scores, labels):
    return float((np.asarray(scores).argmax(axis=1) == np.asarray(labels)).mean())


def test_fusionnet_small_pipeline_end_to_end(cluster, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    start = time.monotonic()
    hpcml(cluster, "pipeline", REPO / "jobs" / "fusionnet-small.toml", "--dir", "fn", cwd=tmp_path)
    rows = wait_pipeline(tmp_path / "fn", timeout=240)
    seconds = time.monotonic() - start
    assert {r["state"] for r in rows.values()} == {"done"}, pipeline.format_status(list(rows.values()))
    run = tmp_path / "fn"
    best_files = []
    for name in ("vcnn1", "vcnn2", "mvcnn"):
        # The report's best point is the one with the highest validation
        # accuracy computed here from each point's stored scores.
        accuracies = []
        for point in sorted((run / name / "points").iterdir(), key=lambda p: int(p.name)):
            with h5py.File(point / f"{name}.h5", "r") as handle:
                accuracies.append(_accuracy(handle["val/scores"][()], handle["val/labels"][()]))
        result = json.loads((run / name / "results.json").read_text())
        assert [r["val_accuracy"] for r in result["rows"]] == pytest.approx(accuracies, abs=1e-12)
        assert result["best"]["index"] == int(np.argmax(accuracies))
        assert (run / name / "best.h5").resolve() == run / name / "points" / str(result["best"]["index"]) / f"{name}.h5"
        best_files.append(run / name / "best.h5")
    # Fusion: weights on the simplex, at least as good on validation as the
    # best single network, and the reported test accuracy recomputed here.
    fused = runs.summary(run / "fuse")
    with h5py.File(run / "fuse" / "fusion.h5", "r") as handle:
        weights = handle["weights"][()]
    assert weights.min() >= 0 and abs(weights.sum() - 1) < 1e-12
    scores = []
    for path in best_files:
        with h5py.File(path, "r") as handle:
            scores.append({k: handle[k][()] for k in ("val/scores", "val/labels", "test/scores", "test/labels")})
    singles = [_accuracy(s["val/scores"], s["val/labels"]) for s in scores]
    assert fused["val_accuracy"] >= max(singles) - 1e-12
    test = np.tensordot(weights, np.stack([s["test/scores"] for s in scores]), axes=1)
    assert fused["fused_test_accuracy"] == pytest.approx(_accuracy(test, scores[0]["test/labels"]), abs=1e-12)
    # The evaluation of the best MV-CNN scores its test split as stored at training.
    evaluated = runs.summary(run / "evaluate")
    assert evaluated["accuracy"] == pytest.approx(_accuracy(scores[2]["test/scores"], scores[2]["test/labels"]),
                                                  abs=1e-12)
    print(f"fusionnet-small under SLURM: {seconds:.1f} s, fused test accuracy {fused['fused_test_accuracy']:.3f}")
