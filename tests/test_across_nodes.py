"""Every workload across emulated nodes, and its communication per iteration.

MPICH splits the ranks of one machine into emulated nodes
(``MPIR_CVAR_NUM_CLIQUES``): traffic between cliques leaves the
shared-memory transport, the node-aware collective algorithms take over and
hpcml's own node-aware paths run (LDA's replicated layout).  Each workload
runs once per layout in one MPI job (``tests/mpi/run_across_nodes.py``):
4 ranks on one node and as 2 nodes x 2, 3 ranks on one node and as 3 nodes
x 1.  What must agree:

* bit for bit, at the same rank count: stats, every SVD method, PCA, LASSO,
  LP, LDA in the replicated layout, LDA inference, and a stopped-and-resumed
  run against an uninterrupted one.  Floating-point sums add the ranks'
  arrays in rank order (:meth:`hpcml.comm.Comm.allreduce`); MPICH's own
  allreduce sums inside each node first when ranks span nodes, so without
  that its last bits would depend on the layout
  (:func:`test_float_sums_do_not_depend_on_the_node_layout`).
* within a tolerance: LDA's default layout is shared memory on one node and
  replicated across nodes, two different (equally valid) Markov chains;
  their log-likelihood, held-out perplexity and recovered topics agree.

The recorded per-iteration bytes (the ``communication`` attribute of every
output) are checked against each workload's formula (README, "Across
nodes").
"""

import itertools
import json
import os
import sys

import h5py
import numpy as np
import pytest

from conftest import MPI_SCRIPTS, mpi_script, mpirun

sys.path.insert(0, MPI_SCRIPTS)
import run_across_nodes as runs  # noqa: E402

#: (ranks, emulated nodes); 1 node is MPICH's default placement.
LAYOUTS = ((4, 1), (4, 2), (3, 1), (3, 3))
#: Outputs that must be equal bit for bit between layouts of one rank count.
BITWISE = ("stats", *(f"svd-{m}" for m in runs.SVD_METHODS), "pca", "pca-auto", "lasso-matvec",
           "lasso-auto", *(f"lp-{m}" for m in runs.LP_METHODS), "lda-dense", "lda-infer",
           "stats-resumed", "lda-resumed")
#: Datasets that hold seconds (differ from run to run).
TIMED = ("history/compute_s", "history/comm_s", "history/tokens_per_s")


def _env(nodes):
    return {**os.environ, "MPIR_CVAR_NUM_CLIQUES": str(nodes)}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """``{(ranks, nodes): folder of outputs}`` and the inputs' folder."""
    data = tmp_path_factory.mktemp("inputs")
    script = os.path.join(MPI_SCRIPTS, "run_across_nodes.py")
    done = mpirun(1, [sys.executable, script, "data", str(data)], timeout=120)
    assert done.returncode == 0, done
    folders = {}
    for ranks, nodes in LAYOUTS:
        out = tmp_path_factory.mktemp(f"out-{ranks}x{nodes}")
        done = mpirun(ranks, [sys.executable, script, "jobs", str(data), str(out)], timeout=300,
                      env=_env(nodes))
        assert done.returncode == 0, done
        folders[ranks, nodes] = out
    return data, folders


def _datasets(path):
    """Every dataset of an output file, by name (timings left out)."""
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) and name not in TIMED else None)
    return found


def _communication(path):
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["communication"])


def _same_bits(a, b, what):
    assert a.keys() == b.keys(), what
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), \
            f"{what}: {name} differs"


# -- the reduction itself ---------------------------------------------------------


@pytest.mark.parametrize("ranks, layouts", [(4, (1, 2)), (3, (1, 3, 2))])
def test_float_sums_do_not_depend_on_the_node_layout(ranks, layouts):
    """Comm.allreduce adds in rank order: the same bits on one node, on 2 x 2,
    on 3 x 1 and on 2 + 1 (each run also checks them against the rank-order
    sum computed from every rank's array)."""
    digests = {mpi_script(ranks, "check_ordered_sum.py", env=_env(nodes)).stdout.split()[-1]
               for nodes in layouts}
    assert len(digests) == 1, digests


# -- the same answers on every layout ---------------------------------------------


@pytest.mark.parametrize("job", BITWISE)
def test_bit_for_bit_across_nodes(outputs, job):
    _, folders = outputs
    for ranks, nodes in ((4, 2), (3, 3)):
        one = _datasets(folders[ranks, 1] / f"{job}.h5")
        _same_bits(one, _datasets(folders[ranks, nodes] / f"{job}.h5"),
                   f"{job}: {ranks} ranks on 1 node vs {nodes} nodes")


@pytest.mark.parametrize("method", [*runs.SVD_METHODS, "pca"])
def test_svd_answers_are_right(outputs, method):
    """What agrees bit for bit is also right: σ against LAPACK's."""
    data, folders = outputs
    with h5py.File(data / "m.h5", "r") as f:
        A = f["A"][...]
    if method == "pca":
        A = A - A.mean(axis=0)
    want = np.linalg.svd(A, compute_uv=False)[:3]
    name = "pca" if method == "pca" else f"svd-{method}"
    for layout, folder in folders.items():
        with h5py.File(folder / f"{name}.h5", "r") as f:
            np.testing.assert_allclose(f["s"][...], want, rtol=1e-8, err_msg=str(layout))


@pytest.mark.parametrize("stopped, whole", [("stats-resumed", "stats"), ("lda-resumed", "lda-dense")])
def test_resumed_equals_uninterrupted(outputs, stopped, whole):
    """A run stopped at its iteration limit and resumed from its checkpoint,
    on every layout, equals the uninterrupted run (and, by the test above,
    the same run on the other layout)."""
    _, folders = outputs
    for layout, folder in folders.items():
        a, b = _datasets(folder / f"{stopped}.h5"), _datasets(folder / f"{whole}.h5")
        _same_bits(a, b, f"{stopped} vs {whole} on {layout}")


def test_stopped_on_two_nodes_resumed_on_one(outputs, tmp_path):
    """A checkpoint belongs to the rank count, not to the placement: stats and
    LDA (replicated layout) stopped on 2 nodes x 2 and resumed with the 4
    ranks on one node equal the uninterrupted runs on one node."""
    data, folders = outputs
    script = os.path.join(MPI_SCRIPTS, "run_across_nodes.py")
    for nodes, jobs in ((2, ("stats-stopped", "lda-stopped")), (1, ("stats-resumed", "lda-resumed"))):
        done = mpirun(4, [sys.executable, script, "jobs", str(data), str(tmp_path), *jobs], timeout=120,
                      env=_env(nodes))
        assert done.returncode == 0, done
    for resumed, whole in (("stats-resumed", "stats"), ("lda-resumed", "lda-dense")):
        _same_bits(_datasets(tmp_path / f"{resumed}.h5"), _datasets(folders[4, 1] / f"{whole}.h5"),
                   f"{resumed} (stopped on 2 nodes) vs {whole} on 1 node")


def _topic_distance(word_topic, phi):
    """Mean total-variation distance between the learned topics and the
    true ones, under the best matching of the two."""
    learned = (word_topic / np.maximum(word_topic.sum(axis=0), 1)).T
    K = phi.shape[0]
    return min(np.mean([0.5 * np.abs(learned[p[k]] - phi[k]).sum() for k in range(K)])
               for p in itertools.permutations(range(K)))


def test_lda_default_layout_agrees_statistically(outputs):
    """On one node LDA shares its counts (one Markov chain), across nodes it
    replicates them and exchanges changes (another, equally valid): the two
    cannot agree bit for bit, but their statistics must.  On this corpus
    (4,320 training tokens, 30 sweeps) chains of seeds 0-3 on one layout
    spread by 1.3% in log-likelihood per token and 3% in held-out perplexity
    (measured; a chain caught in a mode with two topics merged differs by
    12%).  The tolerances are about 1.5 times that spread: 2% and 6%, and
    each layout recovers the true topics to a mean total-variation distance
    of 0.1 (measured 0.04-0.06)."""
    data, folders = outputs
    with h5py.File(data / "corpus.h5", "r") as f:
        phi = f["truth/phi"][...]
    for ranks, nodes in ((4, 2), (3, 3)):
        figures = []
        for layout in ((ranks, 1), (ranks, nodes)):
            with h5py.File(folders[layout] / "lda.h5", "r") as f:
                ll = f["history/log_likelihood"][-1] / f.attrs["n_tokens"]
                perplexity = f["history/perplexity"][-1]
                figures.append((ll, perplexity, _topic_distance(f["word_topic"][...], phi)))
        (ll1, p1, d1), (ll2, p2, d2) = figures
        assert abs(ll1 - ll2) <= 0.02 * abs(ll1), figures
        assert abs(p1 - p2) <= 0.06 * p1, figures
        assert max(d1, d2) <= 0.1, figures


# -- communication per iteration -------------------------------------------------


def _per_iteration(path, kind=None):
    """(bytes, calls) per iteration of one rank, checked equal on every rank."""
    c = _communication(path)
    assert c["iterations"] >= 2, c
    figures = c if kind is None else c["collectives"][kind]
    for key in ("bytes", "calls"):
        assert figures[key]["min"] == figures[key]["max"], (key, c)
    return figures["bytes"]["min"], figures["calls"]["min"], c


N = runs.COLS


def test_communication_of_the_power_iteration(outputs):
    """stats: one allreduce of the n-vector AᵀA v per iteration, 8n bytes."""
    for folder in outputs[1].values():
        nbytes, calls, c = _per_iteration(folder / "stats.h5")
        assert (nbytes, calls) == (8 * N, 1) and set(c["collectives"]) == {"allreduce"}


@pytest.mark.parametrize("job", ["svd-lanczos", "pca"])
def test_communication_of_lanczos(outputs, job):
    """Lanczos (ARPACK on rank 0): per product rank 0 broadcasts v with a
    flag, 8(n+1) bytes, and AᵀA v is allreduced, 8n bytes."""
    for folder in outputs[1].values():
        path = folder / f"{job}.h5"
        assert _per_iteration(path, "allreduce")[:2] == (8 * N, 1)
        assert _per_iteration(path, "bcast")[:2] == (8 * (N + 1), 1)
        assert _per_iteration(path)[0] == 8 * N + 8 * (N + 1)


def test_communication_of_golub_kahan(outputs):
    """Golub–Kahan step i (i left vectors so far): Aᵀp, 8n bytes, and the
    two Gram–Schmidt projections of A q onto the i left vectors, 8i and
    8(i+1) bytes (‖w‖² rides in the second), 8 bytes when i = 0."""
    k, m = 3, runs.ROWS
    size = min(m, N, max(2 * k + 10, 20))
    keep = min(size - 1, max(k, (k + size) // 2))
    for folder in outputs[1].values():
        path = folder / "svd-golub-kahan.h5"
        with h5py.File(path, "r") as f:
            steps = int(f.attrs["iterations"])
        order = list(range(size))
        while len(order) < steps:
            order += list(range(keep, size))
        step_bytes = [8 * N + (8 * (2 * i + 1) if i else 8) for i in order[:steps]]
        nbytes, _, c = _per_iteration(path)
        assert c["iterations"] == steps
        # The first step's bytes precede the first mark.
        assert nbytes == pytest.approx(sum(step_bytes[1:]) / (steps - 1), rel=1e-12)


def test_communication_of_randomized(outputs):
    """Randomized subspace iteration: one allreduce of the n x w block
    AᵀA Ω per power iteration, w = min(k + 10, m, n) columns."""
    w = min(3 + 10, runs.ROWS, N)
    for folder in outputs[1].values():
        assert _per_iteration(folder / "svd-randomized.h5", "allreduce")[:2] == (8 * N * w, 1)


@pytest.mark.parametrize("job", ["svd-gram", "svd-tsqr", "pca-auto"])
def test_one_pass_methods_have_no_iterations(outputs, job):
    """The Gram matrix and TSQR read the matrix once: no iteration to count."""
    for folder in outputs[1].values():
        c = _communication(folder / f"{job}.h5")
        assert c["iterations"] == 0 and c["ranks"] in (3, 4), c


def test_communication_of_lasso(outputs):
    """LASSO, --mode matvec: each backtracking round allreduces Aᵀr (8n
    bytes) and its 8 scalars (64 bytes); a round whose curvature test falls
    back to gradients adds another Aᵀr and one scalar (8n + 8 bytes in 2
    calls).  The recorded calls and bytes must decompose into whole rounds,
    at least one per iteration, and whole fallbacks.  --mode auto (the Gram
    matrix of this tall A) iterates without a message."""
    n = 12
    for folder in outputs[1].values():
        nbytes, calls, c = _per_iteration(folder / "lasso-matvec.h5")
        iterations = c["iterations"] - 1
        total_bytes, total_calls = round(nbytes * iterations), round(calls * iterations)
        # calls = 2(R + F), bytes = R(8n + 64) + F(8n + 8)
        rounds, rest = divmod(total_bytes - total_calls // 2 * (8 * n + 8), 56)
        fallbacks = total_calls // 2 - rounds
        assert total_calls % 2 == 0 and rest == 0 and rounds >= iterations and fallbacks >= 0, \
            (nbytes, calls, c)
        c = _communication(folder / "lasso-auto.h5")
        assert c["iterations"] >= 2 and c["bytes"]["max"] == 0 and c["calls"]["max"] == 0, c


def test_communication_of_pdlp(outputs):
    """LP by PDLP: each step allreduces Kᵀy with the step-size rule's one
    scalar, 8(n+1) bytes in one call; every 64 steps the KKT evaluation adds
    an allreduce of a few scalars and the certificate check one of Kᵀy (at
    most 8(n+1) + 128 more bytes in two calls, spread over 64 steps)."""
    n = 8
    for folder in outputs[1].values():
        nbytes, calls, c = _per_iteration(folder / "lp-pdlp.h5")
        assert c["iterations"] >= 2 and set(c["collectives"]) == {"allreduce"}, c
        assert 8 * (n + 1) <= nbytes <= 8 * (n + 1) + (8 * (n + 1) + 128) / 64, c
        assert 1 <= calls <= 1 + 2 / 64, c


@pytest.mark.parametrize("method", [m for m in runs.LP_METHODS if m != "pdlp"])
def test_communication_of_lp(outputs, method):
    """LP (smoothed dual): each backtracking round of a dual iteration
    allreduces Aᵀy, 8n bytes, with its 8 scalars, 64 bytes; a fallback adds
    8n + 8 in two calls; every few iterations the feasibility test adds a scalar or two
    (8 bytes each).  Hence per iteration at least 8n + 64 bytes, and a whole
    number of 8-byte words over the run."""
    n = 8
    for folder in outputs[1].values():
        nbytes, calls, c = _per_iteration(folder / f"lp-{method}.h5")
        iterations = c["iterations"] - 1
        assert nbytes >= 8 * n + 64 and calls >= 2, c
        assert set(c["collectives"]) == {"allreduce"}
        total = nbytes * iterations
        assert abs(total - 8 * round(total / 8)) < 1e-6, c


def test_communication_of_lda(outputs):
    """LDA per sweep.  Shared layout (one node): one allreduce of the K
    int64 topic totals per phase, P phases, 8KP bytes, plus the
    log-likelihood's 2 doubles (16 bytes) each iteration and the held-out
    perplexity's 2 at the last.  Replicated, dense exchange: every rank's
    topics in word order all-gathered after each of the S segments,
    S·2N bytes (N training tokens, 2 bytes each)."""
    K, S = 4, 2
    data, folders = outputs
    for (ranks, nodes), folder in folders.items():
        with h5py.File(folder / "lda-dense.h5", "r") as f:
            tokens = int(f.attrs["n_tokens"])
        assert _per_iteration(folder / "lda-dense.h5", "allgatherv")[:2] == (S * 2 * tokens, S)
        nbytes, _, c = _per_iteration(folder / "lda.h5")
        iterations = c["iterations"] - 1
        if nodes == 1:
            assert nbytes * iterations == pytest.approx(iterations * (8 * K * ranks + 16) + 16)
        else:
            # Replicated, auto exchange: per segment the P change counts (8P
            # bytes), then the changed tokens (8 bytes each) or the dense form.
            assert nbytes >= S * 8 * ranks + 16


@pytest.mark.parametrize("ranks, nodes", [(4, 2), (3, 3)])
def test_communication_of_lda_sparse_exchange(outputs, ranks, nodes):
    """LDA, replicated layout, sparse exchange: per exchange 8P bytes of
    change counts and 8 bytes per changed token of every rank, counted by
    the script itself sweep by sweep."""
    data, _ = outputs
    mpi_script(ranks, "check_lda_exchange_bytes.py", data / "corpus.h5", env=_env(nodes))


def test_lda_infer_exchanges_nothing(outputs):
    """lda infer: each rank folds its own documents into the fixed model;
    its iterations (blocks of documents) send no message."""
    for folder in outputs[1].values():
        c = _communication(folder / "lda-infer.h5")
        assert c["iterations"] >= 2 and c["bytes"]["max"] == 0 and c["calls"]["max"] == 0, c
