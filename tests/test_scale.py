"""The scaling model (hpcml.scale): its cost formulas against hand-computed
cases, its prediction, and ``hpcml scale`` on a real run's output."""

import json
import importlib.util
import os
import sys

import h5py
import numpy as np
import pytest

from conftest import hpcml
from hpcml import scale
from hpcml.cli import main
from hpcml.errors import InputError
from hpcml.io.hdf5 import write_matrix

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
NET = scale.Network("test", alpha=2e-6, beta=1e-9)
SHM = scale.Network("shm", alpha=1e-7, beta=1e-10)


# ----------------------------------------------------------------- formulas

def test_log2_ceil():
    assert [scale.log2_ceil(p) for p in (1, 2, 3, 4, 5, 8, 9, 1024, 1025)] == [0, 1, 2, 2, 3, 3, 4, 10, 11]


@pytest.mark.parametrize("n, p", [(1e6, 4), (3e3, 7), (8.0, 2)])
def test_allreduce_costs_by_hand(n, p):
    a, b = NET.alpha, NET.beta
    # ring: P-1 reduce-scatter steps and P-1 allgather steps, each moving n/P
    assert scale.allreduce_ring(n, p, NET) == pytest.approx(2 * (p - 1) * a + 2 * (p - 1) / p * n * b)
    rounds = int(np.ceil(np.log2(p)))
    assert scale.allreduce_recursive_doubling(n, p, NET) == pytest.approx(rounds * (a + n * b))
    assert scale.allreduce_rabenseifner(n, p, NET) == pytest.approx(2 * rounds * a + 2 * (p - 1) / p * n * b)


def test_ring_allreduce_four_nodes_one_megabyte():
    # 2·3·2 µs + 2·3/4·1e6 B·1 ns/B = 12 µs + 1.5 ms
    assert scale.allreduce_ring(1e6, 4, NET) == pytest.approx(12e-6 + 1.5e-3)


def test_other_collectives_by_hand():
    n, p = 5e5, 8
    a, b = NET.alpha, NET.beta
    assert scale.bcast_binomial(n, p, NET) == pytest.approx(3 * (a + n * b))
    assert scale.bcast_scatter_allgather(n, p, NET) == pytest.approx((3 + 7) * a + 2 * 7 / 8 * n * b)
    assert scale.allgather_ring(n, p, NET) == pytest.approx(7 * a + 7 / 8 * n * b)
    assert scale.allgather_recursive_doubling(n, p, NET) == pytest.approx(3 * a + 7 / 8 * n * b)
    assert scale.gather_linear(n, p, NET) == pytest.approx(7 * a + 7 / 8 * n * b)
    assert scale.latency_only(n, p, NET) == pytest.approx(3 * a)


@pytest.mark.parametrize("kind, n, p, large, expected", [
    ("allreduce", 2048, 64, "rabenseifner", scale.allreduce_recursive_doubling),
    ("allreduce", 2049, 64, "rabenseifner", scale.allreduce_rabenseifner),
    ("allreduce", 2049, 64, "ring", scale.allreduce_ring),
    ("shared_sum", 1e6, 4, "ring", scale.allreduce_ring),
    ("bcast", 12287, 64, "rabenseifner", scale.bcast_binomial),
    ("bcast", 12288, 7, "rabenseifner", scale.bcast_binomial),
    ("bcast", 12288, 8, "rabenseifner", scale.bcast_scatter_allgather),
    ("allgatherv", 81919, 6, "rabenseifner", scale.allgather_recursive_doubling),
    ("allgatherv", 81920, 6, "rabenseifner", scale.allgather_ring),
    ("allgatherv", 524287, 8, "rabenseifner", scale.allgather_recursive_doubling),
    ("allgatherv", 524288, 8, "rabenseifner", scale.allgather_ring),
    ("gatherv", 10, 8, "rabenseifner", scale.gather_linear),
    ("object", 0, 8, "rabenseifner", scale.latency_only),
    ("barrier", 0, 8, "rabenseifner", scale.latency_only),
])
def test_algorithm_chosen_by_message_size_as_mpich(kind, n, p, large, expected):
    assert scale.flat_algorithm(kind, n, p, large) is expected


def test_hierarchical_allreduce_is_shared_memory_then_leaders():
    n = 4e6
    seconds, how = scale.collective_seconds("allreduce", n, 16, 4, NET, SHM)
    inside = 2 * 2 * SHM.alpha + 2 * 3 / 4 * n * SHM.beta   # Rabenseifner on 4 ranks, shared memory
    across = 2 * 4 * NET.alpha + 2 * 15 / 16 * n * NET.beta  # Rabenseifner on 16 leaders
    assert seconds == pytest.approx(inside + across)
    assert "in node" in how
    # One rank per node: the leaders are all the ranks.
    assert scale.collective_seconds("allreduce", n, 16, 1, NET, SHM)[0] == pytest.approx(across)
    # One node: shared memory only; one rank: nothing.
    assert scale.collective_seconds("allreduce", n, 1, 4, NET, SHM)[0] == pytest.approx(inside)
    assert scale.collective_seconds("allreduce", n, 1, 1, NET, SHM) == (0.0, "none")


def test_allgatherv_runs_flat_over_every_rank():
    n = 1e6   # above 512 KiB: a ring over all 8 ranks
    seconds, _ = scale.collective_seconds("allgatherv", n, 4, 2, NET, SHM)
    assert seconds == pytest.approx(7 * NET.alpha + 7 / 8 * n * NET.beta)


def test_network_refuses_negative_or_nan_figures():
    with pytest.raises(InputError, match="alpha"):
        scale.Network("x", -1.0, 1e-9)
    with pytest.raises(InputError, match="beta"):
        scale.Network("x", 1e-6, float("nan"))
    with pytest.raises(InputError, match="unknown network"):
        scale.network_of("token-ring")
    for net in scale.NETWORKS.values():
        assert 0 < net.alpha < 1e-4 and 0 < net.beta < 1e-9 and net.source


# ----------------------------------------------------------------- prediction

def _profile(**kw):
    figures = dict(command="svd", ranks=2, ranks_per_node=(2,), iterations=10, compute_s=0.1,
                   comm_s=0.01, wall_s=0.11,
                   collectives={"allreduce": (3.0, 8e4), "allgatherv": (1.0, 2e5)})
    figures.update(kw)
    return scale.Profile(**figures)


def test_strong_scaling_divides_compute_and_adds_collectives():
    prof = _profile()
    rows = scale.predict(prof, [1, 4], NET, SHM, ranks_per_node=2)
    assert rows[0]["compute_s"] == pytest.approx(0.1)
    assert rows[1]["compute_s"] == pytest.approx(0.1 * 2 / 8)
    allreduce = (2 * SHM.alpha + 1 / 2 * 2 * 8e4 * SHM.beta) + (2 * 2 * NET.alpha + 2 * 3 / 4 * 8e4 * NET.beta)
    gather = 3 * NET.alpha + 7 / 8 * 2e5 * NET.beta    # recursive doubling: 8 ranks, < 512 KiB
    assert rows[1]["network_s"] == pytest.approx(3 * allreduce + gather)
    assert rows[1]["total_s"] == pytest.approx(rows[1]["compute_s"] + rows[1]["network_s"])
    assert rows[1]["speedup"] == pytest.approx(rows[0]["total_s"] / rows[1]["total_s"])
    assert rows[0]["network_share"] == pytest.approx(rows[0]["network_s"] / rows[0]["total_s"])


def test_weak_scaling_keeps_compute_and_grows_gathers():
    prof = _profile(collectives={"allgatherv": (1.0, 2e5)})
    row = scale.predict(prof, [6], NET, SHM, ranks_per_node=1, weak=True)[0]
    assert row["compute_s"] == pytest.approx(0.1)
    n = 2e5 * 6 / 2  # each rank keeps its part: the gathered total triples from 2 to 6 ranks
    assert row["network_s"] == pytest.approx(5 * NET.alpha + 5 / 6 * n * NET.beta)  # a ring


def test_profile_from_report_and_its_errors():
    report = {"iterations": 5, "ranks": 3, "ranks_per_node": [2, 1],
              "compute_s": {"min": 1, "median": 2, "max": 3}, "comm_s": {"min": 0, "median": 0, "max": 1},
              "wall_s": {"min": 4, "median": 4, "max": 4},
              "collectives": {"allreduce": {"calls": {"min": 2, "median": 2, "max": 2},
                                            "bytes": {"min": 16, "median": 16, "max": 16}},
                              "gatherv": {"calls": {"min": 1, "median": 1, "max": 1},
                                          "bytes": {"min": 8, "median": 8, "max": 24}}}}
    prof = scale.Profile.from_report(report, "lasso")
    assert prof.compute_s == 3 and prof.nodes == 2 and prof.ranks == 3
    assert prof.collectives == {"allreduce": (2, 8.0), "gatherv": (1, 24.0)}
    with pytest.raises(InputError, match="fewer than two iterations"):
        scale.Profile.from_report({**report, "iterations": 1}, "lasso")


@pytest.mark.parametrize("text, expected", [
    ("1,2,4,...,1024", [2 ** k for k in range(11)]),
    ("1,2,...,4,6", [1, 2, 4, 6]),
    ("1,2,...,5", [1, 2, 3, 4, 5]),
    ("2,4,...,10", [2, 4, 6, 8, 10]),
    ("3", [3]),
])
def test_parse_nodes(text, expected):
    assert scale.parse_nodes(text) == expected


@pytest.mark.parametrize("text, message", [
    ("1,x", "not a whole number"), ("0,2", ">= 1"), ("4,2", "increase"), ("...,4", "two counts"),
    ("1,2,...", "two counts"), ("1,4,...,9", "does not reach"), ("1,,2", "not a whole number"),
])
def test_parse_nodes_refuses(text, message):
    with pytest.raises(InputError, match=message):
        scale.parse_nodes(text)


# ----------------------------------------------------------------- the command

def _scale(capsys, *args):
    """``hpcml scale ARGS`` in this process: (exit status, stdout)."""
    code = main(["scale", *map(str, args)])
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def run_output(tmp_path_factory):
    """``hpcml stats`` on 2 emulated nodes: a real output with a communication record."""
    folder = tmp_path_factory.mktemp("scale")
    cols = 300
    write_matrix(f"{folder}/a.h5:/A", np.random.default_rng(1).standard_normal((2 * 20 + 1, cols)))
    out = folder / "stats.h5"
    result = hpcml(2, "stats", "--input", f"{folder}/a.h5:/A", "--output", out, "--tol", 0,
                   "--power-iterations", 8, env={**os.environ, "MPIR_CVAR_NUM_CLIQUES": "2"})
    assert result.returncode == 0, result
    return folder, out, cols


@pytest.mark.mpi
def test_scale_command_on_a_real_run(run_output, capsys):
    folder, out, cols = run_output
    with h5py.File(out, "r") as handle:
        report = json.loads(handle.attrs["communication"])
    assert report["ranks_per_node"] == [1, 1]
    prof = scale.read_profile(str(out))
    # stats' power iteration: one allreduce of the n-vector AᵀAv per iteration.
    assert prof.command == "stats" and prof.collectives == {"allreduce": (1.0, 8.0 * cols)}
    code, stdout = _scale(capsys, out, "--network", "ib-edr", "--nodes", "1,2,...,8", "--json")
    assert code == 0, stdout
    summary = json.loads(stdout.strip().splitlines()[-1])
    rows = summary["rows"]
    assert [r["nodes"] for r in rows] == [1, 2, 4, 8] and [r["ranks"] for r in rows] == [1, 2, 4, 8]
    assert rows[0]["compute_s"] == pytest.approx(2 * prof.compute_s)
    assert rows[0]["network_s"] == 0.0
    edr = scale.NETWORKS["ib-edr"]
    for row in rows[1:]:
        p = row["nodes"]
        # Comm sums floats in rank order: 8·cols·P bytes are short, so gathered whole.
        assert prof.ordered_sums and p * 8 * cols <= scale.ORDERED_GATHER_BYTES
        expected = scale.log2_ceil(p) * edr.alpha + (p - 1) * 8 * cols * edr.beta
        assert row["network_s"] == pytest.approx(expected)
    if HAVE_MATPLOTLIB:
        assert summary["chart"] == str(out)[:-3] + "-scale.png" and os.path.getsize(summary["chart"]) > 0
    else:
        assert summary["chart"] is None


@pytest.mark.mpi
def test_scale_prints_table_and_chart_note(run_output, capsys):
    folder, out, _ = run_output
    chart = folder / "chart.png"
    code, stdout = _scale(capsys, out, "--alpha", "3e-6", "--beta", "1e-10", "--nodes", "1,2,4",
                          "--ranks-per-node", 2, "--weak", "--chart", chart)
    assert code == 0, stdout
    assert "weak scaling" in stdout and "alpha = 3 us" in stdout
    table = [line.split() for line in stdout.splitlines() if line.split()[:1] in (["1"], ["2"], ["4"])]
    assert [int(t[1]) for t in table] == [2, 4, 8]
    if HAVE_MATPLOTLIB:
        assert chart.stat().st_size > 0 and f"chart: {chart}" in stdout
    else:
        assert "matplotlib is not installed" in stdout


def test_without_matplotlib_no_chart_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import fails
    rows = scale.predict(_profile(), [1, 2], NET, SHM)
    assert scale.write_chart(_profile(), rows, NET, str(tmp_path / "c.png")) is False
    assert not (tmp_path / "c.png").exists()


@pytest.mark.mpi
@pytest.mark.parametrize("make, args, message", [
    ("plain", ["--network", "ib-hdr"], "no 'communication' attribute"),
    ("run", ["--network", "ib-hdr", "--nodes", "1,2,x"], "not a whole number of nodes"),
    ("run", ["--nodes", "1,2"], "give --network"),
    ("run", ["--network", "ib-hdr", "--alpha", "1e-6", "--beta", "1e-9"], "not both"),
    ("run", ["--alpha", "1e-6"], "give --network"),
    ("missing", ["--network", "ib-hdr"], "no such file"),
    ("text", ["--network", "ib-hdr"], "not an HDF5 file"),
])
def test_bad_inputs_exit_2_with_one_line(run_output, make, args, message, capsys):
    folder, out, _ = run_output
    path = {"run": out, "plain": folder / "a.h5", "missing": folder / "none.h5",
            "text": folder / "notes.txt"}[make]
    if make == "text":
        path.write_text("not a run\n")
    assert main(["scale", str(path), *args, "--chart", ""]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_command_name_from_params():
    assert scale._command_of({"command": "lda", "lda_command": "train", "seed": 0}) == "lda train"
    assert scale._command_of({"command": "stats"}) == "stats"
    assert scale._command_of({}) == "job"


@pytest.mark.mpi
def test_default_chart_path_is_checked_like_any_output(run_output, tmp_path, capsys):
    _, out, _ = run_output
    run = tmp_path / "run.h5"
    run.write_bytes(out.read_bytes())
    (tmp_path / "run-scale.png").mkdir()
    assert main(["scale", str(run), "--network", "ib-hdr", "--nodes", "1,2"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_kinds_of_the_node_aware_paths():
    """The CNN's leaders-only collectives cost one level among the nodes, its
    shared factors only shared-memory bandwidth, LDA's ring one message."""
    n = 1 << 20
    seconds, how = scale.collective_seconds("leaders_allreduce", n, 4, 8, NET, SHM)
    assert seconds == pytest.approx(scale.allreduce_rabenseifner(n, 4, NET)) and "leaders" in how
    assert scale.collective_seconds("leaders_allreduce", n, 1, 8, NET, SHM) == (0.0, "none")
    assert scale.collective_seconds("shared_factors", n, 4, 8, NET, SHM)[0] == pytest.approx(n * SHM.beta)
    assert scale.collective_seconds("send", n, 2, 1, NET, SHM)[0] == pytest.approx(NET.alpha + n * NET.beta)
    seconds, _ = scale.collective_seconds("alltoall", n, 4, 1, NET, SHM)
    assert seconds == pytest.approx(3 * NET.alpha + 0.75 * n * NET.beta)


def test_rank_order_sums_cost_what_comm_does():
    """A run that summed in rank order (Comm's default) is costed by that
    algorithm, flat over all ranks: whole arrays gathered while short."""
    from hpcml.comm import Comm

    assert scale.ORDERED_GATHER_BYTES == Comm.ORDERED_GATHER_BYTES
    short, long = 1024, 1 << 20
    seconds, how = scale.collective_seconds("allreduce", short, 4, 2, NET, SHM, ordered=True)
    assert how == "allreduce_rank_order"
    assert seconds == pytest.approx(3 * NET.alpha + 7 / 8 * 8 * short * NET.beta)
    seconds, _ = scale.collective_seconds("allreduce", long, 4, 2, NET, SHM, ordered=True)
    assert seconds == pytest.approx(2 * 7 * NET.alpha + 2 * 7 / 8 * long * NET.beta)
