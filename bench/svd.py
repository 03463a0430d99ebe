"""Distributed SVD side by side: hpcml's methods at 1 and 2 ranks, scipy, scikit-learn, Spark.

    python bench/svd.py [--scale 1.0] [--cases tall,wide,csr] [--ranks 1 2] [--repeats 3]
                        [--spark tall|all|none] [--methods lanczos,...] [--no-serial]

Cases (``--scale`` shrinks the rows, and the columns of the CSR case):

* ``tall``: dense 200000 × 200, k = 10;
* ``wide``: dense 20000 × 2000, k = 10;
* ``csr``:  1,000,000 × 100,000 with 10⁷ non-zeros, k = 20.

The dense matrices are ``H₁H₂ [diag(s); 0] H₃H₄`` with Householder
reflectors, so their singular values ``s`` (geometric, 100 down to 1 over
200 columns) are known exactly and the matrix costs O(mn) to build.  The
CSR matrix has Gaussian non-zeros and column j scaled by 1/(j+1); its
reference is scipy's ARPACK at tol 1e-10.

For every candidate the table gives the median time, the products with
``A`` or ``Aᵀ``, the worst relative error of the top-k singular values, and
the ratio of its time to hpcml's lanczos at 2 ranks.  hpcml runs under
``mpiexec`` (launched from here, timed inside the job after a barrier, so
start-up is excluded); each rank also times one distributed ``AᵀA v``
and the time to stream its rows once, concurrently on every rank, and the
table gives their ratio (target ≤ 1.3).  Spark's ``RowMatrix.computeSVD``
runs in ``local[2]`` with its rows cached on the JVM side; JVM start-up
and loading are reported separately.  Every process gets one BLAS thread.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CASES = {
    "tall": {"rows": 200_000, "cols": 200, "k": 10, "methods": ["lanczos", "golub-kahan", "randomized", "gram", "tsqr"]},
    "wide": {"rows": 20_000, "cols": 2000, "k": 10, "methods": ["lanczos", "golub-kahan", "randomized"]},
    "csr": {"rows": 1_000_000, "cols": 100_000, "nnz": 10_000_000, "k": 20,
            "methods": ["lanczos", "golub-kahan", "randomized"]},
}


# -- data ---------------------------------------------------------------------------------------


def _reflect(X, rng):
    """Apply a random Householder reflector from the left: (I − 2uuᵀ) X."""
    u = rng.standard_normal(X.shape[0])
    u /= np.linalg.norm(u)
    X -= 2.0 * np.outer(u, u @ X)
    return X


def known_spectrum(m, n, rng):
    """A dense m × n matrix (m ≥ n) with known singular values, built in O(mn).

    ``sᵢ = 100 · 0.977ⁱ`` (floored at 0.01): 100 down to 1 over 200 columns,
    the same decay for the top of the wide case.
    """
    s = np.maximum(100.0 * np.exp(np.log(0.01) / 199 * np.arange(n)), 0.01)
    A = np.zeros((m, n))
    A[np.arange(n), np.arange(n)] = s
    for _ in range(2):
        _reflect(A, rng)
    At = np.ascontiguousarray(A.T)
    for _ in range(2):
        _reflect(At, rng)
    return np.ascontiguousarray(At.T), s


def make_case(name, scale, folder):
    """Write the case's matrix to ``folder/name.h5:/A``; returns (A, exact s or None, spec)."""
    from hpcml.io.hdf5 import write_matrix

    case = CASES[name]
    rng = np.random.default_rng(42)
    m = max(int(case["rows"] * scale), 4 * case["cols"] if name != "csr" else 1000)
    if name == "csr":
        n = max(int(case["cols"] * scale), 1000)
        density = case["nnz"] * scale / (m * n)
        A = sp.random(m, n, density=density, format="csr", rng=rng, data_rvs=rng.standard_normal)
        # Column j scaled by 1/(j+1): a decaying spectrum with ~5% gaps at the
        # top (a plain random matrix has its top values clustered at the
        # Marchenko–Pastur edge, where no method converges in useful time).
        A = sp.csr_matrix(A @ sp.diags(1.0 / np.arange(1, n + 1)))
        exact = None
    else:
        A, exact = known_spectrum(m, case["cols"], rng)
    path = os.path.join(folder, f"{name}.h5")
    write_matrix(f"{path}:/A", A, mode="w")
    return A, exact, f"{path}:/A"


# -- the hpcml side, inside mpiexec ------------------------------------------------------------


def worker(spec, k, methods, repeats):
    """Run under mpiexec: time each method and the per-product figures; rank 0 prints JSON."""
    from harness import stream_read as stream
    from hpcml.comm import Comm
    from hpcml.io import read_matrix
    from hpcml.linalg import svd
    from hpcml.operator import MatrixOperator, Normal

    comm = Comm.world()
    A = read_matrix(spec, comm)
    out = {"ranks": comm.size}

    def timed(fn, count):
        times = []
        for _ in range(count):
            comm.barrier()
            t0 = time.perf_counter()
            value = fn()
            elapsed = comm.allreduce_scalar(time.perf_counter() - t0, "max")
            times.append(elapsed)
        return statistics.median(times), value

    blocks = [A.local.data, A.local.indices] if A.issparse else [A.local.reshape(-1)]
    v = np.random.default_rng(0).standard_normal(A.shape[1])
    op = MatrixOperator(A, A.dtype)   # the SVD's operator
    normal = Normal(op)
    normal.matvec(v)
    [stream(b) for b in blocks]
    out["normal_matvec_s"], _ = timed(lambda: normal.matvec(v), 15)
    out["stream_s"], _ = timed(lambda: [stream(b) for b in blocks], 15)
    out["matvec_pair_s"], _ = timed(lambda: op.rmatvec(op.matvec(v)), 5)
    for method in methods:
        svd(A, k, method=method, allow_partial=True)   # warm-up: JIT, page faults
        seconds, result = timed(lambda: svd(A, k, method=method, allow_partial=True), repeats)
        out[method] = {"seconds": seconds, "matvecs": result.matvecs, "iterations": result.iterations,
                       "s": result.s.tolist(), "converged": result.n_converged}
    if comm.rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def run_hpcml(spec, k, methods, ranks, repeats):
    from hpcml.launch import mpiexec_path

    command = [mpiexec_path(), "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker", spec,
               "--k", str(k), "--methods", ",".join(methods), "--repeats", str(repeats)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"hpcml worker failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(line[len("RESULT "):])


# -- the serial peers -------------------------------------------------------------------------------


class Counting:
    """A LinearOperator counting products (scipy svds, as hpcml counts them)."""

    def __init__(self, A):
        self.A = A
        self.count = 0

    def linear_operator(self):
        from scipy.sparse.linalg import LinearOperator

        def mv(x):
            self.count += 1 if x.ndim == 1 else x.shape[1]
            return self.A @ x

        def rmv(x):
            self.count += 1 if x.ndim == 1 else x.shape[1]
            return self.A.T @ x

        return LinearOperator(self.A.shape, matvec=mv, rmatvec=rmv, matmat=mv, rmatmat=rmv, dtype=self.A.dtype)


def run_serial(A, k, repeats):
    from scipy.sparse.linalg import svds
    from sklearn.utils.extmath import randomized_svd

    from harness import compare

    results = {}
    counts = {}

    def candidate(name, fn):
        def run():
            counter = Counting(A)
            s = fn(counter.linear_operator())
            counts[name] = counter.count
            results[name] = np.sort(s)[::-1][:k]
        return run

    v0 = np.random.default_rng(0).standard_normal(min(A.shape))
    medians = compare({
        "scipy svds arpack (1 core)": candidate(
            "scipy svds arpack (1 core)", lambda L: svds(L, k, solver="arpack", tol=1e-10, v0=v0, return_singular_vectors=False)),
        "scipy svds propack (1 core)": candidate(
            "scipy svds propack (1 core)", lambda L: svds(A, k, solver="propack", tol=1e-10, random_state=0,
                                                          return_singular_vectors=False)),
        "sklearn randomized_svd (1 core)": candidate(
            "sklearn randomized_svd (1 core)", lambda L: randomized_svd(A, k, n_iter=7, random_state=0)[1]),
    }, repeats=repeats, warmup=0)
    return {name: {"seconds": medians[name], "s": results[name].tolist(), "matvecs": counts.get(name)}
            for name in medians}


# -- Spark ------------------------------------------------------------------------------------------------


def run_spark(A, k, repeats):
    """computeSVD in local[2] with the rows cached in the JVM (hpcml.baselines.spark); start-up apart."""
    from hpcml.baselines.spark import SparkBaseline, check_available
    from hpcml.errors import InputError

    try:
        check_available()
    except InputError as exc:
        return {"error": str(exc)}
    t0 = time.perf_counter()
    with SparkBaseline(cores=2, driver_memory="8g") as spark:
        spark.sc.parallelize([1, 2]).count()   # the first job finishes the start-up
        startup = time.perf_counter() - t0
        matrix, load = spark.row_matrix(A)
        times, s = [], None
        for _ in range(repeats):
            s, _, seconds = spark.svd(matrix, k)
            times.append(seconds)
    return {"seconds": statistics.median(times), "s": np.asarray(s).tolist(), "startup_s": startup, "load_s": load}


# -- report -------------------------------------------------------------------------------------------------


def report(name, A, k, exact, rows, bound_rows):
    reference = np.asarray(exact[:k] if exact is not None else rows["scipy svds arpack (1 core)"]["s"][:k])
    base = rows.get("hpcml lanczos, 2 ranks", {}).get("seconds")
    shape = f"{A.shape[0]} x {A.shape[1]}" + (f", {A.nnz} non-zeros" if sp.issparse(A) else "")
    print(f"\n== {name}: {shape}, k = {k}; accuracy against "
          f"{'the exact singular values' if exact is not None else 'scipy ARPACK at tol 1e-10'}")
    print(f"{'candidate':<36} {'median s':>9} {'products':>9} {'max rel err':>12} {'vs hpcml lanczos@2':>19}")
    for label, row in rows.items():
        if "error" in row:
            print(f"{label:<36} {row['error']}")
            continue
        s = np.asarray(row["s"])[:k]
        err = np.max(np.abs(s - reference[:len(s)]) / reference[:len(s)]) if len(s) == k else float("nan")
        ratio = f"{row['seconds'] / base:>18.2f}x" if base else ""
        products = row.get("matvecs") or "-"
        print(f"{label:<36} {row['seconds']:>9.3f} {products!s:>9} {err:>12.1e} {ratio:>19}")
    for label, figures in bound_rows.items():
        print(f"{label}: distributed AᵀA v {figures['normal_matvec_s'] * 1e3:.2f} ms, streaming the rows once "
              f"{figures['stream_s'] * 1e3:.2f} ms -> {figures['normal_matvec_s'] / figures['stream_s']:.2f}x the "
              f"one-pass bound (target <= 1.3); A v then Aᵀ y {figures['matvec_pair_s'] * 1e3:.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--methods", default="", help="hpcml methods to run (default: all that suit the case)")
    parser.add_argument("--k", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the cases (rows, CSR columns and nnz)")
    parser.add_argument("--cases", default="tall,wide,csr")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spark", choices=["tall", "all", "none"], default="tall",
                        help="which cases Spark runs (loading a big matrix through py4j takes minutes)")
    parser.add_argument("--no-serial", action="store_true", help="skip scipy and scikit-learn")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.k, [m for m in args.methods.split(",") if m], args.repeats)
    with tempfile.TemporaryDirectory(prefix="hpcml-bench-svd-") as folder:
        for name in args.cases.split(","):
            k = CASES[name]["k"]
            methods = [m for m in args.methods.split(",") if m] or CASES[name]["methods"]
            A, exact, spec = make_case(name, args.scale, folder)
            rows, bounds = {}, {}
            for ranks in args.ranks:
                out = run_hpcml(spec, k, methods, ranks, args.repeats)
                for method in methods:
                    rows[f"hpcml {method}, {ranks} rank{'s' if ranks > 1 else ''}"] = out[method]
                bounds[f"{ranks} rank{'s' if ranks > 1 else ''}"] = out
            if not args.no_serial:
                rows.update(run_serial(A, k, args.repeats))
            if args.spark == "all" or args.spark == name:
                spark = run_spark(A, k, args.repeats)
                rows["Spark computeSVD, local[2]"] = spark
                if "startup_s" in spark:
                    print(f"\nSpark: JVM start-up {spark['startup_s']:.1f} s, loading and caching the rows "
                          f"{spark['load_s']:.1f} s (both excluded from its time)")
            report(name, A, k, exact, rows, bounds)


if __name__ == "__main__":
    main()
