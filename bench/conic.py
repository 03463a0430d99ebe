"""The conic solver against scikit-learn, Spark MLlib, HiGHS and OR-Tools' PDLP, side by side; prints ratios.

    python bench/conic.py [--rows 100000] [--cols 500] [--no-spark] [--no-lp]
    python bench/conic.py --no-lasso --no-lp-tfocs --lp-repeats 3      # the LP families
    python bench/conic.py --no-lasso --no-lp-suite [--lp-method pdlp scd] [--lp-rows 2500 --lp-cols 5000]

LP families (``bench/lp_suite.py``: transportation, diet, multicommodity
flow, staircase, set-cover relaxation, a sparse random LP and the
TFOCS-shaped LP, both built around a known optimum): hpcml's PDLP at one
rank and OR-Tools' PDLP on one thread (``pip install -e .[bench]``), timed
by interleaved repeats (medians), and HiGHS once; each solver's relative KKT
error (PDLP's definition) is recomputed here from its x and duals, and the
table ends with the geometric means of the time and iteration ratios.

LASSO (A m×n Gaussian, 25-sparse truth, noise): each candidate is timed at
the loosest of its own tolerances that brings its objective within 1e-8
relative of the best objective any candidate reached — the time to the same
answer.  hpcml runs at 1 rank in this process and at 2 ranks under mpiexec
(the workers read their row blocks from HDF5 before the clock starts and
report the median of their repeats); scikit-learn's coordinate descent gets
a Fortran-ordered copy made before timing; Spark's ``LinearRegression``
(elasticNetParam=1, standardization=False) runs in ``local[2]`` with its
JVM start-up and data loading reported apart from the fit.

LP: a random sparse LP in the shape of TFOCS's ``test_LinearProgram``
(2500 equality rows, 5000 columns, density 0.01, uniform entries; see
``hpcml.optim.synthetic.tfocs_lp``: built around a known optimal pair, so
the objective is checked against the construction even where HiGHS does not
finish within ``--highs-time-limit``), hpcml at 1 and 2 ranks (under
mpiexec, data read before the clock starts) against HiGHS (scipy
``linprog``), then the classic MPS models of the tests at 1 rank: time,
the ratio hpcml/HiGHS, the objective's relative difference (from HiGHS's,
or from the construction's when HiGHS hit its time limit: the ratio is then
an upper bound, printed with ``<``), constraint violation and both statuses.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import compare  # noqa: E402
from hpcml.comm import Comm  # noqa: E402
from hpcml.distmat import DistMatrix  # noqa: E402
from hpcml.optim import problems  # noqa: E402
from hpcml.optim.pdlp import pdlp  # noqa: E402
from hpcml.optim.synthetic import lasso_problem, random_lp  # noqa: E402
from lp_suite import FAMILIES, ortools_pdlp, relative_kkt  # noqa: E402

TARGET = 1e-8
TOLERANCES = {"hpcml": (1e-6, 1e-8, 1e-10, 1e-12), "sklearn": (1e-4, 1e-6, 1e-8, 1e-10, 1e-12),
              "spark": (1e-6, 1e-9, 1e-12)}


def lasso_objective(A, b, x, lam):
    r = A @ x - b
    return 0.5 * float(r @ r) + lam * float(np.abs(x).sum())


# -- the 2-rank worker --------------------------------------------------------------


def worker(args):
    """Under mpiexec: read this rank's rows, solve ``repeats`` times, print the median on rank 0."""
    from hpcml.io.hdf5 import read_matrix, read_rows

    comm = Comm.world()
    A = read_matrix(f"{args.data}:/A", comm)
    b, _ = read_rows(f"{args.data}:/b", comm)
    times, out = [], None
    for _ in range(args.repeats):
        comm.barrier()
        start = time.perf_counter()
        out = problems.lasso(A, b, args.lam, method=args.method, tol=args.tol, mode=args.mode)
        times.append(comm.allreduce_scalar(time.perf_counter() - start, "max"))
    if comm.rank == 0:
        print(json.dumps({"seconds": float(np.median(times)), "x": out["x"].tolist(),
                          "status": out["status"], "iterations": out["iterations"]}))


def run_ranks(ranks, data, lam, method, tol, repeats, mode="auto"):
    from hpcml.launch import mpiexec_path
    command = [mpiexec_path(), "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker",
               "--data", data, "--lam", repr(lam), "--method", method, "--tol", repr(tol),
               "--repeats", str(repeats), "--mode", mode]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- LASSO ------------------------------------------------------------------------------


def loosest(run, tolerances, objective_of, best_holder):
    """The loosest tolerance whose result is within TARGET of the best seen; (tol, objective, extra)."""
    results = []
    for tol in tolerances:
        x, extra = run(tol)
        value = objective_of(x)
        best_holder[0] = min(best_holder[0], value)
        results.append((tol, value, extra))
    for tol, value, extra in results:
        if value - best_holder[0] <= TARGET * best_holder[0]:
            return tol, value, extra
    return results[-1]


def bench_lasso(args):
    rng = np.random.default_rng(args.seed)
    A, b, _ = lasso_problem(args.rows, args.cols, args.nonzeros, args.noise, rng)
    lam = args.lam_ratio * float(np.abs(A.T @ b).max())
    m, n = A.shape
    print(f"LASSO: A {m}x{n} Gaussian, {args.nonzeros}-sparse truth, noise {args.noise}, "
          f"λ = {args.lam_ratio}·λ_max = {lam:.6g}")
    comm = Comm.self_comm()
    D = DistMatrix(A, comm)
    A_fortran = np.asfortranarray(A)
    best = [np.inf]
    objective = lambda x: lasso_objective(A, b, x, lam)  # noqa: E731

    from sklearn.linear_model import Lasso

    def sk(tol, precompute):
        def fit():
            return Lasso(alpha=lam / m, fit_intercept=False, tol=tol, max_iter=100000,
                         precompute=precompute).fit(A_fortran, b).coef_
        return fit

    def hp(tol, method, mode="auto"):
        return lambda: problems.lasso(D, b, lam, method=method, tol=tol, mode=mode)["x"]

    # Pick every candidate's loosest tolerance that reaches the common target.
    pick = {}
    for name, make, tols in (
            ("hpcml AT, 1 rank", lambda t: hp(t, "AT"), TOLERANCES["hpcml"]),
            ("hpcml N83, 1 rank", lambda t: hp(t, "N83"), TOLERANCES["hpcml"]),
            ("hpcml AT A·x/Aᵀr (TFOCS), 1 rank", lambda t: hp(t, "AT", "matvec"), TOLERANCES["hpcml"]),
            ("sklearn CD", lambda t: sk(t, False), TOLERANCES["sklearn"]),
            ("sklearn CD, Gram precomputed", lambda t: sk(t, True), TOLERANCES["sklearn"])):
        tol, value, _ = loosest(lambda t: (make(t)(), None), tols, objective, best)
        pick[name] = (make(tol), tol)
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "lasso.h5")
        with h5py.File(data, "w") as handle:
            handle["A"], handle["b"] = A, b
        ranks2 = {}
        for method in ("AT", "N83"):
            def run(tol, method=method):
                got = run_ranks(2, data, lam, method, tol, 1)
                return np.array(got["x"]), got
            tol, value, _ = loosest(run, TOLERANCES["hpcml"], objective, best)
            ranks2[method] = tol
        medians = compare({name: fn for name, (fn, _) in pick.items()}, repeats=args.repeats, warmup=1)
        values = {name: objective(fn()) for name, (fn, _) in pick.items()}
        for method, tol in ranks2.items():
            got = run_ranks(2, data, lam, method, tol, args.repeats)
            name = f"hpcml {method}, 2 ranks"
            medians[name], values[name] = got["seconds"], objective(np.array(got["x"]))
            pick[name] = (None, tol)
    spark = None if args.no_spark else bench_spark(A, b, lam, objective, best)
    if spark:
        medians["Spark LinearRegression local[2]"] = spark["fit_s"]
        values["Spark LinearRegression local[2]"] = spark["objective"]
        pick["Spark LinearRegression local[2]"] = (None, spark["tol"])
    reference = "hpcml AT, 2 ranks"
    print(f"\n{'candidate':<36} {'tol':>7} {'median s':>9} {'rel. objective gap':>19} {'time / ' + reference:>26}")
    for name, seconds in medians.items():
        gap = (values[name] - best[0]) / best[0]
        flag = "" if gap <= TARGET else "  (target not reached)"
        print(f"{name:<36} {pick[name][1]:>7.0e} {seconds:>9.3f} {gap:>19.2e} {seconds / medians[reference]:>26.2f}{flag}")
    if spark:
        print(f"Spark JVM start-up {spark['startup_s']:.1f} s and data loading {spark['load_s']:.1f} s "
              f"(not in the fit time above); fit iterations capped at {spark['max_iter']}")
    hp2 = medians[reference]
    print(f"\nsklearn CD / hpcml AT 2 ranks: {medians['sklearn CD'] / hp2:.2f}x (must be >= 1)")
    if spark:
        print(f"Spark fit / hpcml AT 2 ranks: {spark['fit_s'] / hp2:.1f}x (must be >= 10); "
              f"with start-up and loading: {(spark['fit_s'] + spark['load_s'] + spark['startup_s']) / hp2:.0f}x")


def bench_spark(A, b, lam, objective, best):
    from hpcml.baselines.spark import SparkBaseline, check_available
    from hpcml.errors import InputError
    try:
        check_available()
    except InputError as exc:
        print(f"Spark: not run ({exc})")
        return None
    max_iter = 1000
    with SparkBaseline(cores=2) as spark:
        runs = []
        for tol in TOLERANCES["spark"]:
            x, _, load_s, fit_s = spark.lasso(A, b, lam, max_iter=max_iter, tol=tol)
            value = objective(x)
            best[0] = min(best[0], value)
            runs.append({"tol": tol, "objective": value, "load_s": load_s, "fit_s": fit_s})
            if value - best[0] <= TARGET * best[0]:
                break
        chosen = next((r for r in runs if r["objective"] - best[0] <= TARGET * best[0]), runs[-1])
        return {**chosen, "startup_s": spark.startup_s, "max_iter": max_iter}


# -- LP ---------------------------------------------------------------------------------------


def lp_worker(args):
    """Under mpiexec: read this rank's rows of the LP, solve once, print the result on rank 0."""
    from hpcml.io.hdf5 import read_matrix, read_replicated, read_rows

    comm = Comm.world()
    A = read_matrix(f"{args.data}:/A_eq", comm)
    b, _ = read_rows(f"{args.data}:/b_eq", comm)
    c = read_replicated(f"{args.data}:/c", comm)
    if args.method == "pdlp":
        # Compile the numba kernels outside the clock.
        pdlp(np.ones(2), DistMatrix(np.ones((1, 2)) if comm.rank == 0 else np.zeros((0, 2)), comm),
             np.ones(1) if comm.rank == 0 else np.zeros(0), max_iter=2, comm=comm)
    comm.barrier()
    start = time.perf_counter()
    if args.method == "pdlp":
        out = pdlp(c, A, b, tol=args.tol, comm=comm)
    else:
        out = problems.lp(c, A, b, mu=args.mu, tol=args.tol, max_outer=args.max_outer)
    seconds = comm.allreduce_scalar(time.perf_counter() - start, "max")
    y = comm.allgatherv(np.ascontiguousarray(out["marginals_eq"]))
    if comm.rank == 0:
        print(json.dumps({"seconds": seconds, "x": out["x"].tolist(), "y": y.tolist(), "status": out["status"],
                          "iterations": out["iterations"], "outer": out["outer"]}))


def run_lp_ranks(ranks, data, args, method="pdlp"):
    from hpcml.launch import mpiexec_path
    command = [mpiexec_path(), "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--lp-worker",
               "--data", data, "--mu", repr(args.lp_mu), "--tol", repr(args.lp_tol),
               "--max-outer", str(args.lp_max_outer), "--method", method]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(done.stderr)
    got = json.loads(done.stdout.strip().splitlines()[-1])
    return got["seconds"], {"x": np.array(got["x"]), "y": np.array(got["y"]), "status": got["status"],
                            "iterations": got["iterations"], "outer": got["outer"]}


def highs_solve(c, A_eq, b_eq, A_ub, b_ub, lower, upper, time_limit):
    from scipy.optimize import linprog
    bounds = [(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None) for lo, hi in zip(lower, upper)]
    start = time.perf_counter()
    ref = linprog(c, A_eq=A_eq, b_eq=b_eq, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs",
                  options={"time_limit": time_limit})
    status = {0: "optimal", 1: "time limit", 2: "infeasible", 3: "unbounded"}.get(ref.status, f"status {ref.status}")
    return time.perf_counter() - start, ref, status


def violation(x, A_eq, b_eq, A_ub, b_ub):
    worst = 0.0
    for A, b, eq in ((A_eq, b_eq, True), (A_ub, b_ub, False)):
        if A is not None:
            d = A @ x - b
            worst = max(worst, float((np.abs(d) if eq else np.maximum(d, 0)).max()) / (1 + np.abs(b).max()))
    return worst


HEADER = (f"{'problem':<34} {'hpcml status':>14} {'HiGHS':>11} {'hpcml s':>9} {'HiGHS s':>9} {'hpcml/HiGHS':>11} "
          f"{'rel. obj':>10} {'violation':>10} {'iterations':>10} {'rel. KKT':>9}")


def lp_line(name, seconds, ours, highs_seconds, ref, highs_status, A_eq, b_eq, A_ub, b_ub, c, known=None):
    """One row; the objective is compared with HiGHS's, or with the construction's when HiGHS did not finish."""
    if highs_status == "optimal" or known is not None:
        best = ref.fun if highs_status == "optimal" else known
        rel = abs(float(c @ ours["x"]) - best) / max(abs(best), 1e-300)
        accuracy = f"{rel:>10.1e} {violation(ours['x'], A_eq, b_eq, A_ub, b_ub):>10.1e}"
    else:
        accuracy = f"{'-':>10} {'-':>10}"
    ratio = seconds / highs_seconds
    ratio = f"{'<' if highs_status == 'time limit' else ''}{ratio:.2f}"
    kkt = "-"
    if "y" in ours and A_ub is None:
        lp = {"c": c, "A_eq": A_eq, "b_eq": b_eq, "A_ub": None, "b_ub": None, "lower": np.zeros(c.size),
              "upper": np.full(c.size, np.inf)}
        kkt = f"{relative_kkt(lp, ours['x'], ours['y'], None):.1e}"
    print(f"{name:<34} {ours['status']:>14} {highs_status:>11} {seconds:>9.2f} {highs_seconds:>9.2f} {ratio:>11} "
          f"{accuracy} {ours['iterations']:>10} {kkt:>9}", flush=True)


def bench_lp(args):
    from hpcml.io.mps import read_mps
    from hpcml.optim.synthetic import tfocs_lp
    from lp_models import CLASSIC, INFEASIBLE, UNBOUNDED

    m, n = args.lp_rows, args.lp_cols
    make = tfocs_lp if args.lp_kind == "tfocs" else random_lp
    lp = make(m, n, args.lp_density, np.random.default_rng(args.seed))
    c, A, b = lp["c"], lp["A_eq"], lp["b_eq"]
    print(f"\nLP: hpcml ({' and '.join(args.lp_method)}, tol {args.lp_tol:g}; SCD with μ={args.lp_mu}) and OR-Tools PDLP "
          f"(one thread) vs HiGHS (time limit {args.highs_time_limit:g} s); "
          f"{args.lp_kind} LP {m}x{n}, density {args.lp_density}, optimum {lp['objective']:.10g} known "
          "from the construction")
    print(HEADER)
    highs_seconds, ref, highs_status = highs_solve(c, A, b, None, None, np.zeros(n), np.full(n, np.inf),
                                                   args.highs_time_limit)
    if highs_status == "optimal":
        print(f"HiGHS objective vs the construction's: {abs(ref.fun - lp['objective']) / abs(lp['objective']):.1e} relative")
    with tempfile.TemporaryDirectory() as folder:
        from hpcml.io.hdf5 import write_matrix
        data = os.path.join(folder, "lp.h5")
        with h5py.File(data, "w") as handle:
            handle["c"], handle["b_eq"] = c, b
        write_matrix(f"{data}:/A_eq", A)
        for method in args.lp_method:
            for ranks in args.lp_ranks:
                seconds, ours = run_lp_ranks(ranks, data, args, method)
                lp_line(f"{args.lp_kind} {m}x{n}, {method}, {ranks} rank{'s' if ranks > 1 else ''}", seconds, ours,
                        highs_seconds, ref, highs_status, A, b, None, None, c, lp["objective"])
    suite_form = {"c": c, "A_eq": A, "b_eq": b, "A_ub": None, "b_ub": None, "lower": np.zeros(n),
                  "upper": np.full(n, np.inf)}
    p_seconds, px, py_eq, _, p_iterations, p_status = ortools_pdlp(suite_form, args.lp_tol)
    lp_line(f"{args.lp_kind} {m}x{n}, OR-Tools PDLP", p_seconds,
            {"x": px, "y": py_eq, "status": p_status, "iterations": p_iterations}, highs_seconds, ref,
            highs_status, A, b, None, None, c, lp["objective"])
    if args.no_mps:
        return
    comm = Comm.self_comm()
    with tempfile.TemporaryDirectory() as folder:
        for name, text in list(CLASSIC.items()) + [("infeasible", INFEASIBLE), ("unbounded", UNBOUNDED)]:
            path = os.path.join(folder, f"{name}.mps")
            with open(path, "w") as handle:
                handle.write(text)
            model = read_mps(path)
            A_eq, b_eq, A_ub, b_ub = model.standard_rows()
            A_eq, b_eq = (A_eq, b_eq) if A_eq.shape[0] else (None, None)
            A_ub, b_ub = (A_ub, b_ub) if A_ub.shape[0] else (None, None)
            result = {}
            solver = pdlp if args.lp_method[0] == "pdlp" else partial(problems.lp, mu=args.lp_mu)
            medians = compare({"hpcml": lambda: result.__setitem__("hpcml", solver(
                model.c, None if A_eq is None else DistMatrix(A_eq, comm), b_eq,
                None if A_ub is None else DistMatrix(A_ub, comm), b_ub, (model.lower, model.upper),
                tol=args.lp_tol))}, repeats=args.lp_repeats, warmup=0)
            highs_seconds, ref, highs_status = highs_solve(model.c, A_eq, b_eq, A_ub, b_ub, model.lower,
                                                           model.upper, args.highs_time_limit)
            lp_line(f"{name}.mps, 1 rank", medians["hpcml"], result["hpcml"], highs_seconds, ref, highs_status,
                    A_eq, b_eq, A_ub, b_ub, model.c)


def bench_lp_suite(args):
    """hpcml's PDLP at 1 rank, OR-Tools' PDLP (one thread) and HiGHS on the LP families of ``lp_suite``."""
    comm = Comm.self_comm()

    def ours(lp):
        mats = {k: None if lp[k] is None else DistMatrix(lp[k], comm) for k in ("A_eq", "A_ub")}
        start = time.perf_counter()
        out = pdlp(lp["c"], mats["A_eq"], lp["b_eq"], mats["A_ub"], lp["b_ub"], (lp["lower"], lp["upper"]),
                   tol=args.lp_tol, comm=comm)
        return time.perf_counter() - start, out

    ours(FAMILIES[0](np.random.default_rng(0), 3, 4)[1])       # compile the kernels outside the clock
    print(f"\nLP families, tolerance {args.lp_tol:g} (relative KKT, PDLP's definition, recomputed here for "
          f"every solver from its x and duals); hpcml and OR-Tools PDLP on one thread, median of "
          f"{args.lp_repeats} interleaved runs; HiGHS once")
    print(f"{'problem':<44} {'nnz':>8} | {'hpcml s':>8} {'iters':>6} {'KKT':>8} {'status':>10} | "
          f"{'PDLP s':>8} {'iters':>6} {'KKT':>8} | {'HiGHS s':>8} {'KKT':>8} | {'t/PDLP':>6} {'it/PDLP':>7}")
    time_ratios, iteration_ratios = [], []
    for family in FAMILIES:
        name, lp = family(np.random.default_rng(args.seed))
        nnz = sum(lp[k].nnz for k in ("A_eq", "A_ub") if lp[k] is not None)
        # Interleaved repeats (harness.compare), the medians compared: the machine's load varies.
        got = {}
        medians = compare({"hpcml": lambda: got.__setitem__("hpcml", ours(lp)[1]),
                           "pdlp": lambda: got.__setitem__("pdlp", ortools_pdlp(lp, args.lp_tol))},
                          repeats=args.lp_repeats, warmup=0)
        seconds, out, p_seconds = medians["hpcml"], got["hpcml"], medians["pdlp"]
        kkt = relative_kkt(lp, out["x"], out.get("marginals_eq"), out.get("marginals_ub"))
        _, px, py_eq, py_ub, p_iterations, p_status = got["pdlp"]
        p_kkt = relative_kkt(lp, px, py_eq, py_ub)
        h_seconds, ref, h_status = highs_solve(lp["c"], lp["A_eq"], lp["b_eq"], lp["A_ub"], lp["b_ub"], lp["lower"],
                                               lp["upper"], args.highs_time_limit)
        h_kkt = (relative_kkt(lp, ref.x, ref.eqlin.marginals if lp["A_eq"] is not None else None,
                              ref.ineqlin.marginals if lp["A_ub"] is not None else None)
                 if h_status == "optimal" else float("nan"))
        time_ratios.append(seconds / p_seconds)
        iteration_ratios.append(out["iterations"] / max(p_iterations, 1))
        print(f"{name:<44} {nnz:>8} | {seconds:>8.2f} {out['iterations']:>6} {kkt:>8.1e} {out['status']:>10} | "
              f"{p_seconds:>8.2f} {p_iterations:>6} {p_kkt:>8.1e} | {h_seconds:>8.2f} {h_kkt:>8.1e} | "
              f"{time_ratios[-1]:>6.2f} {iteration_ratios[-1]:>7.2f}", flush=True)
        if "known" in lp:
            print(f"{'':<44} objective vs the known optimum: hpcml {abs(out['objective'] - lp['known']) / abs(lp['known']):.1e},"
                  f" PDLP {abs(float(lp['c'] @ px) - lp['known']) / abs(lp['known']):.1e} relative")

    def geomean(values):
        return float(np.exp(np.mean(np.log(values))))
    print(f"geometric mean hpcml/PDLP: time {geomean(time_ratios):.2f}, iterations {geomean(iteration_ratios):.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=500)
    parser.add_argument("--nonzeros", type=int, default=25)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--lam-ratio", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lp-rows", type=int, default=2500)
    parser.add_argument("--lp-cols", type=int, default=5000)
    parser.add_argument("--lp-density", type=float, default=0.01)
    parser.add_argument("--lp-kind", choices=["tfocs", "normal"], default="tfocs",
                        help="tfocs: TFOCS test_LinearProgram's distributions (uniform entries); "
                        "normal: Gaussian entries (synthetic.random_lp)")
    parser.add_argument("--lp-ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--lp-mu", type=float, default=1e-3)
    parser.add_argument("--lp-tol", type=float, default=1e-6)
    parser.add_argument("--lp-max-outer", type=int, default=500)
    parser.add_argument("--highs-time-limit", type=float, default=600.0)
    parser.add_argument("--lp-repeats", type=int, default=1)
    parser.add_argument("--no-mps", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--no-lasso", action="store_true")
    parser.add_argument("--no-lp", action="store_true")
    parser.add_argument("--no-lp-suite", action="store_true", help="skip the LP families (hpcml, OR-Tools PDLP, HiGHS)")
    parser.add_argument("--no-lp-tfocs", action="store_true", help="skip the TFOCS-shaped LP and the MPS models")
    parser.add_argument("--lp-method", choices=["pdlp", "scd"], nargs="+", default=["pdlp"],
                        help="hpcml's method(s) on the TFOCS-shaped LP (the first also on the MPS models)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mu", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--max-outer", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--lam", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--method", default="AT", help=argparse.SUPPRESS)
    parser.add_argument("--tol", type=float, default=1e-10, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.lp_worker:
        return lp_worker(args)
    if not args.no_lasso:
        bench_lasso(args)
    if not args.no_lp and not args.no_lp_suite:
        bench_lp_suite(args)
    if not args.no_lp and not args.no_lp_tfocs:
        bench_lp(args)


if __name__ == "__main__":
    main()
