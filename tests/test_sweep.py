"""Sweeps and pipelines run here, without SLURM (hpcml.sweep, hpcml.pipeline).

The jobs are ``stats`` runs on a small matrix with known singular values:
each point's spectral norm is checked against LAPACK's, and every point's
output against the same job run directly.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import hpcml as mpi_hpcml
from conftest import launch
from hpcml import pipeline, runs, sweep
from hpcml.errors import InputError

pytestmark = pytest.mark.mpi

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
every = 5
[resources]
ranks = {ranks}
"""


def cli(*args, cwd, timeout=120):
    """``hpcml ARGS`` (one process; it starts its own mpiexec for local runs)."""
    return launch([sys.executable, "-m", "hpcml", *map(str, args)], timeout=timeout, cwd=cwd,
                  env={"HPCML_SLURM_CONFIG": os.devnull})


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """A 61 x 6 matrix with singular values 5 .. 0.5 (``data matrix``)."""
    folder = tmp_path_factory.mktemp("matrix")
    result = mpi_hpcml(1, "data", "matrix", "--rows", 61, "--cols", 6, "--spectrum", "geometric:5:0.5",
                       "--output", folder / "A.h5:/A", "--seed", 3, cwd=folder)
    assert result.returncode == 0, result
    return folder / "A.h5"


def stats_spec(folder, matrix, ranks=2):
    path = Path(folder) / "stats.toml"
    path.write_text(STATS.format(matrix=matrix, ranks=ranks))
    return path


def h5_data(path):
    with h5py.File(path, "r") as handle:
        return {k: handle[k][()] for k in handle if isinstance(handle[k], h5py.Dataset)}


# ---------------------------------------------------------------- points and specs
def test_grid_and_random_points():
    grid = [sweep.parse_grid("lr=0.1,0.01"), sweep.parse_grid("model=vcnn1,vcnn2")]
    assert grid == [("lr", [0.1, 0.01]), ("model", ["vcnn1", "vcnn2"])]
    points = sweep.points_from(grid)
    assert points == [{"lr": 0.1, "model": "vcnn1"}, {"lr": 0.1, "model": "vcnn2"},
                      {"lr": 0.01, "model": "vcnn1"}, {"lr": 0.01, "model": "vcnn2"}]
    ranges = [sweep.parse_range("lr=1e-4:1e-1:log"), sweep.parse_range("epochs=2:5")]
    assert ranges[0].log and not ranges[0].integer and ranges[1].integer
    draws = sweep.points_from(ranges=ranges, count=200, seed=7)
    assert draws == sweep.points_from(ranges=ranges, count=200, seed=7)   # the seed decides
    lrs = np.array([d["lr"] for d in draws])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1
    # Log-uniform: each decade gets about a third of the draws.
    counts = np.histogram(np.log10(lrs), bins=[-4, -3, -2, -1])[0]
    assert counts.min() > 40, counts
    assert {d["epochs"] for d in draws} == {2, 3, 4, 5}
    crossed = sweep.points_from(grid[:1], ranges[1:], count=3, seed=1)
    assert len(crossed) == 6 and [p["lr"] for p in crossed] == [0.1] * 3 + [0.01] * 3


@pytest.mark.parametrize("call, message", [
    (lambda: sweep.parse_grid("lr"), "expected KEY=V1,V2"),
    (lambda: sweep.parse_grid("lr=0.1,"), "no empty value"),
    (lambda: sweep.parse_range("lr=1:0.1"), "LOW must be below HIGH"),
    (lambda: sweep.parse_range("lr=0:1:log"), "a log range needs LOW > 0"),
    (lambda: sweep.parse_range("lr=a:b"), "finite numbers"),
    (lambda: sweep.parse_range("lr=1:2:ln"), "KEY=LOW:HIGH:log"),
    (lambda: sweep.points_from(), "a sweep needs"),
    (lambda: sweep.points_from([("lr", [1])], [sweep.Range("lr", 0, 1)], 2), "given twice"),
    (lambda: sweep.points_from(ranges=[sweep.Range("lr", 0, 1)]), "go together"),
])
def test_bad_sweep_options_are_one_line(call, message):
    with pytest.raises(InputError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_unknown_key_or_bad_value_is_refused_before_anything_runs(tmp_path, matrix):
    spec = stats_spec(tmp_path, matrix)
    result = cli("sweep", spec, "--grid", "power_iteratons=5,10", "--local", "--dir", "sw", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "hpcml: error: sweep point power_iteratons=5: unknown parameter 'power_iteratons' for 'stats'")
    assert not (tmp_path / "sw" / "points").exists()
    with pytest.raises(InputError, match="parameter 'power_iterations' must be an integer"):
        sweep.create(spec, tmp_path / "sw2", [{"power_iterations": "many"}])
    with pytest.raises(InputError, match="not a parameter or one of"):
        sweep.create(spec, tmp_path / "sw3", [{"nosuch.key": 1}])
    with pytest.raises(InputError, match="--max-parallel must be >= 1, got 0"):
        sweep.start(spec, tmp_path / "sw4", [{}], None, max_parallel=0)


def test_spec_round_trip(tmp_path):
    raw = {"workload": "cnn train", "description": 'a "quoted" é',
           "params": {"lr": 0.1, "epochs": 3, "factored_gradients": False, "model_files": ["a", "b"]},
           "checkpoint": {"every": 2}, "resources": {"ranks": 2, "time": "00:01:00"}}
    path = tmp_path / "x.toml"
    path.write_text(runs.dumps_spec(raw))
    assert tomllib.loads(path.read_text()) == raw


# ---------------------------------------------------------------- a local sweep
def test_local_sweep_reports_the_best_point(tmp_path, matrix):
    spec = stats_spec(tmp_path, matrix, ranks=1)
    result = cli("sweep", spec, "--grid", "power_iterations=2,40", "--grid", "seed=1,2", "--local",
                 "--max-parallel", "2", "--dir", "sw", "--metric", "spectral_norm", "--goal", "max", "--json",
                 cwd=tmp_path)
    assert result.returncode == 0, result
    report = json.loads(result.stdout.splitlines()[-1])["report"]
    directory = tmp_path / "sw"
    got = cli("sweep", "report", directory, "--metric", "spectral_norm", "--goal", "max", "--json",
              cwd=tmp_path)
    assert got.returncode == 0, got
    assert json.loads(got.stdout.splitlines()[-1])["rows"] == report["rows"]
    sigma = np.linalg.norm(h5_data(matrix)["A"], 2)
    assert abs(sigma - 5) < 1e-9
    for row in report["rows"]:
        # Each point's metric is its own output's.
        assert row["state"] == "done"
        data = h5_data(directory / "points" / str(row["index"]) / "stats.h5")
        assert row["spectral_norm"] == data["spectral_norm"] <= sigma * (1 + 1e-12)
    # A point's output equals the same job run directly.
    row = report["rows"][1]
    direct = mpi_hpcml(1, "run", spec, "--set", f"power_iterations={row['power_iterations']}",
                       "--set", f"checkpoint.dir={tmp_path / 'ck'}", "--seed", row["seed"],
                       "--output", tmp_path / "direct.h5", cwd=tmp_path)
    assert direct.returncode == 0, direct
    data = h5_data(directory / "points" / "1" / "stats.h5")
    for name, value in h5_data(tmp_path / "direct.h5").items():
        np.testing.assert_array_equal(data[name], value, err_msg=name)
    best = report["best"]
    assert best["spectral_norm"] == max(r["spectral_norm"] for r in report["rows"])
    assert best["power_iterations"] == 40 and abs(best["spectral_norm"] - sigma) < 1e-8 * sigma
    with open(directory / "results.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [float(r["spectral_norm"]) for r in table] == [r["spectral_norm"] for r in report["rows"]]
    assert json.loads((directory / "results.json").read_text())["best"]["index"] == best["index"]
    best_spec = tomllib.loads((directory / "best.toml").read_text())
    assert best_spec["params"]["power_iterations"] == 40 and best_spec["params"]["seed"] == best["seed"]
    assert best_spec["params"]["output"] == "stats.h5"      # the source's output, to rerun the best
    assert (directory / "best.h5").resolve() == (directory / "points" / str(best["index"]) / "stats.h5")
    pytest.importorskip("matplotlib")
    assert sorted(Path(p).name for p in report["plots"]) == ["metric-power_iterations.png", "metric-seed.png"]
    status = cli("sweep", "status", directory, cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.splitlines()[-1] == "4 done", status


def test_report_without_matplotlib_says_so(tmp_path, matrix, monkeypatch):
    spec = stats_spec(tmp_path, matrix, ranks=1)
    monkeypatch.chdir(tmp_path)
    sweep.create(spec, "sw", sweep.points_from([sweep.parse_grid("power_iterations=1,3")]))
    assert sweep.run_local("sw", 2) == {0: 0, 1: 0}
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = sweep.report("sw", "spectral_norm", "max")
    assert report["plots"] == [] and "matplotlib is not installed" in report["note"]
    assert report["best"]["power_iterations"] == 3
    with pytest.raises(InputError, match="no default metric; name one with --metric"):
        sweep.report("sw")
    with pytest.raises(InputError, match="no point reported 'val_accuracy'"):
        sweep.report("sw", "val_accuracy")


# ---------------------------------------------------------------- pipelines
PIPELINE = """\
description = "data, a stats job on a file the work directory must hold, a sweep, a last step"

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
sweep = {{ grid = {{ power_iterations = [2, 30] }}, metric = "spectral_norm", goal = "max", max_parallel = 2 }}

[stages.last]
after = ["scan", "other"]
workload = "stats"
params = {{ input = "${{data.output}}", output = "last.h5", power_iterations = 30, tol = 0 }}
"""


@pytest.mark.parametrize("text, message", [
    ('[stages.a]\nworkload = "stats"\nafter = ["b"]\n[stages.b]\nworkload = "stats"\nafter = ["a"]\n',
     "cycle in after: a -> b -> a"),
    ('[stages.a]\nworkload = "stats"\nafter = ["nope"]\n', "after names unknown stage 'nope'"),
    ('[stages.a]\nworkload = "stats"\nwhen = 1\n', "unknown key 'when'"),
    ('[stages.a]\nparams = {k = 1}\n', "needs workload"),
    ('[stages.a]\nworkload = "stats"\nsweep = {grid = {k = 1}}\n', "grid.k must be a non-empty list"),
    ('[stages.a]\nworkload = "stats"\nsweep = {range = {k = "1:2"}}\n', "--random N and --range"),
    ('[stages.a]\nworkload = "stats"\nsweep = {random = 2, range = {k = "2:1"}}\n', "LOW must be below HIGH"),
    ('[stages.a]\nworkload = "stats"\nsweep = {grid = {k = [1]}, every = 2}\n', "unknown key 'every'"),
    ('stage = 1\n', "unknown key 'stage'"),
])
def test_bad_pipelines_are_one_line(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        pipeline.load(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("reference, message", [
    ("${nope.output}", "names unknown stage 'nope'"),
    ("${b.output}", "which this stage does not come after"),
    ("${a.best}", "a reference is"),
    ("${a.output}", "stage 'a' writes no output"),
])
def test_bad_references_are_one_line(tmp_path, reference, message):
    path = tmp_path / "p.toml"
    path.write_text(f'[stages.a]\nworkload = "stats"\n[stages.b]\nworkload = "stats"\n'
                    f'[stages.c]\nafter = ["a"]\nworkload = "stats"\nparams = {{input = "{reference}"}}\n')
    with pytest.raises(InputError, match=message):
        pipeline.resolve(pipeline.load(path)[1], tmp_path / "run")


def test_references_resolve_to_stage_outputs(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[stages.a]\nworkload = "data matrix"\nparams = {output = "m.h5:/A"}\n'
                    '[stages.s]\nafter = ["a"]\nworkload = "stats"\nparams = {input = "${a.output}", output = "s.h5"}\n'
                    'sweep = {grid = {tol = [0.1]}}\n'
                    '[stages.c]\nafter = ["s"]\nworkload = "stats"\n'
                    'params = {input = "${s.output}", output = "$${a.dir}/${a.dir}"}\n')
    got = pipeline.resolve(pipeline.load(path)[1], tmp_path / "run")
    run = tmp_path / "run"
    assert got["s"]["raw"]["params"]["input"] == f"{run}/a/m.h5:/A"
    assert got["s"]["output"] == f"{run}/s/best.h5"
    assert got["c"]["raw"]["params"]["input"] == f"{run}/s/best.h5"
    assert got["c"]["raw"]["params"]["output"] == f"${{a.dir}}/{run}/a"


def test_local_pipeline_failure_stops_dependants_and_resume_finishes(tmp_path, matrix):
    spec = stats_spec(tmp_path, matrix, ranks=1)
    (tmp_path / "p.toml").write_text(PIPELINE.format(spec=spec))
    result = cli("pipeline", "p.toml", "--local", "--dir", "run", cwd=tmp_path)
    assert result.returncode == 1, result
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("hpcml: error: stage(s) failed: other: exit 2; not run: last"), last
    shown = cli("pipeline", "status", "run", cwd=tmp_path)
    lines = shown.stdout.splitlines()
    assert [line.split()[:3] for line in lines[:4]] == [
        ["[x]", "data", "done"], ["[!]", "other", "failed"], ["[x]", "scan", "(sweep)"],
        ["[-]", "last", "blocked"]], shown.stdout
    assert lines[-1] == "2 of 4 stage(s) done"
    done_events = (tmp_path / "run" / "data" / "events.log").read_text()
    # Fix the cause (the missing input), then run only what did not finish.
    os.link(tmp_path / "run" / "data" / "A.h5", tmp_path / "extra.h5")
    result = cli("pipeline", "p.toml", "--local", "--dir", "run", "--resume", cwd=tmp_path)
    assert result.returncode == 0, result
    assert (tmp_path / "run" / "data" / "events.log").read_text() == done_events
    assert (tmp_path / "run" / ".attempts" / "other.1" / "events.log").exists()
    rows = pipeline.status(tmp_path / "run")
    assert [r["state"] for r in rows] == ["done"] * 4
    sigma = np.linalg.norm(h5_data(tmp_path / "run" / "data" / "A.h5")["A"], 2)
    assert abs(h5_data(tmp_path / "run" / "last" / "last.h5")["spectral_norm"] - sigma) < 1e-8 * sigma
    best = json.loads((tmp_path / "run" / "scan" / "results.json").read_text())["best"]
    assert best["power_iterations"] == 30


@pytest.mark.parametrize("name, sweeps", [("fusionnet.toml", 4), ("fusionnet-small.toml", 2)])
def test_shipped_fusionnet_pipelines_render(tmp_path, monkeypatch, name, sweeps):
    monkeypatch.setenv("HPCML_SLURM_CONFIG", os.devnull)
    result = pipeline.start(REPO / "jobs" / name, tmp_path / "run", dry_run=True, work_dir=tmp_path)
    assert result["stages"] == ["shapes", "voxelize", "render", "vcnn1", "vcnn2", "mvcnn", "fuse", "evaluate"]
    run = tmp_path / "run"
    fuse = tomllib.loads((run / "specs" / "fuse.toml").read_text())["params"]
    assert fuse["model_files"] == [f"{run}/{m}/best.h5" for m in ("vcnn1", "vcnn2", "mvcnn")]
    for model in ("vcnn1", "vcnn2", "mvcnn"):
        record = json.loads((run / model / "sweep.json").read_text())
        assert len(record["points"]) == sweeps and record["keys"] == ["lr"]
    assert [r["state"] for r in pipeline.status(run)] == ["pending"] * 8


def test_local_sweep_stopped_by_a_signal_resumes_to_the_same_result(tmp_path, matrix):
    spec = tmp_path / "stats.toml"
    spec.write_text(STATS.format(matrix=matrix, ranks=1).replace("every = 5", "every = 500"))
    command = [sys.executable, "-m", "hpcml", "sweep", str(spec), "--grid", "power_iterations=20,30000",
               "--local", "--max-parallel", "2", "--dir", "sw", "--metric", "spectral_norm"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HPCML_SLURM_CONFIG": os.devnull})
    try:
        # The long point's loop runs with its stop handlers in place (it wrote
        # a first checkpoint), and the short point has ended (else, on a slow
        # machine, the signal stops it too and it saves a checkpoint as well).
        deadline = time.monotonic() + 120

        def short_done():
            return (tmp_path / "sw" / "points" / "0" / "events.log").exists() and \
                sweep.status(tmp_path / "sw")[0]["state"] == "done"

        while not (list((tmp_path / "sw" / "points" / "1" / "checkpoints").glob("ckpt-*"))
                   and short_done()):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 75, err
    assert err.strip().splitlines()[-1] == (
        f"hpcml: sweep stopped by SIGTERM; 1 point(s) saved a checkpoint: continue with "
        f"`hpcml sweep {tmp_path / 'sw'} --resume --local`")
    # The short point may have been stopped while it ended (then it runs again).
    short, long = sweep.status(tmp_path / "sw")
    assert long["state"] == "stopped" and short["state"] in ("done", "failed")
    first = (tmp_path / "sw" / "points" / "0" / "events.log").read_text()
    result = cli("sweep", "sw", "--resume", "--local", "--json", cwd=tmp_path)
    assert result.returncode == 0, result
    codes = {"1": 0} if short["state"] == "done" else {"0": 0, "1": 0}
    assert json.loads(result.stdout.splitlines()[-1])["codes"] == codes
    if short["state"] == "done":
        assert (tmp_path / "sw" / "points" / "0" / "events.log").read_text() == first
    log = (tmp_path / "sw" / "points" / "1" / "stderr.log").read_text()
    assert "resuming power iteration after iteration" in log
    direct = mpi_hpcml(1, "run", spec, "--set", "power_iterations=30000", "--set",
                       f"checkpoint.dir={tmp_path / 'ck'}", "--output", tmp_path / "direct.h5", cwd=tmp_path)
    assert direct.returncode == 0, direct
    data = h5_data(tmp_path / "sw" / "points" / "1" / "stats.h5")
    for name, value in h5_data(tmp_path / "direct.h5").items():
        np.testing.assert_array_equal(data[name], value, err_msg=name)
