"""``hpcml lasso``, ``hpcml lp``, ``hpcml solve`` and the generators under real mpiexec."""

import json
import os

import h5py
import numpy as np
import pytest

from conftest import hpcml, mpi_script
from hpcml.comm import Comm
from hpcml.io import read_matrix
from hpcml.operator import MatrixOperator
from hpcml.optim import prox, smooth
from hpcml.optim.algorithms import minimize
from lp_models import CLASSIC, INFEASIBLE

pytestmark = [pytest.mark.mpi, pytest.mark.numerics]


def summary(result):
    assert result.returncode == 0, result
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_solver_on_shards_equals_one_rank(ranks):
    mpi_script(ranks, "check_optim.py", timeout=180)


def test_lasso_command_matches_scikit_learn(tmp_path):
    from sklearn.linear_model import Lasso

    data = tmp_path / "d.h5"
    summary(hpcml(1, "data", "lasso", "--rows", 3 * 100 + 1, "--cols", 30, "--nonzeros", 5,
                  "--output", data, "--json"))
    with h5py.File(data, "r") as handle:
        A, b = handle["A"][()], handle["b"][()]
    lam = 0.05 * np.abs(A.T @ b).max()
    out = tmp_path / "x.h5"
    got = summary(hpcml(3, "lasso", "--input", f"{data}:/A", "--rhs", f"{data}:/b", "--lam", lam,
                        "--mode", "matvec", "--output", out, "--json"))
    w = Lasso(alpha=lam / A.shape[0], fit_intercept=False, tol=1e-14, max_iter=100000).fit(A, b).coef_
    ref = 0.5 * np.sum((A @ w - b) ** 2) + lam * np.abs(w).sum()
    assert got["status"] == "converged" and got["ranks"] == 3
    assert abs(got["objective"] - ref) <= 1e-8 * ref
    with h5py.File(out, "r") as handle:
        x = handle["x"][()]
        assert handle.attrs["status"] == "converged"
        assert len(handle["history/objective"]) == got["iterations"]
    # Both solvers give exact zeros off the support, so the threshold splits the
    # supports exactly as long as every true non-zero lies far above it.
    assert np.abs(w[w != 0]).min() > 1e-6
    assert np.array_equal(np.abs(x) > 1e-9, np.abs(w) > 1e-9)


def test_lp_command_reads_mps_and_hdf5(tmp_path):
    mps = tmp_path / "wyndor.mps"
    mps.write_text(CLASSIC["wyndor"])
    got = summary(hpcml(2, "lp", "--input", mps, "--json", "--output", tmp_path / "w.h5"))
    assert got["status"] == "converged" and abs(got["objective"] - 36.0) <= 1e-5 * 36
    with h5py.File(tmp_path / "w.h5", "r") as handle:
        # Hillier & Lieberman's shadow prices of the three plants (the profit maximised).
        np.testing.assert_allclose(handle["marginals/rows"][()], [0.0, 1.5, 1.0], atol=1e-5)
        np.testing.assert_allclose(handle["reduced_costs"][()], [0.0, 0.0], atol=1e-5)
    data = tmp_path / "lp.h5"
    made = summary(hpcml(1, "data", "lp", "--rows", 3 * 5 + 1, "--cols", 30, "--inequalities", 4,
                         "--density", 0.3, "--seed", 18, "--output", data, "--json"))
    got = summary(hpcml(3, "lp", "--input", data, "--mu", 0.01, "--json", "--output", tmp_path / "x.h5"))
    assert got["status"] == "converged"
    assert abs(got["objective"] - made["objective"]) <= 1e-5 * abs(made["objective"])
    assert got["primal_residual"] <= 1e-5
    # The multipliers written rank by rank certify the optimum:
    # c = A_eqᵀλ_eq + A_ubᵀλ_ub + r, λ_ub ≤ 0, r ≥ 0 (x ≥ 0) and bᵀλ = cᵀx.
    with h5py.File(data, "r") as handle:
        A_eq, A_ub = (read_matrix(f"{data}:/{key}", Comm.self_comm()).local for key in ("A_eq", "A_ub"))
        c, b_eq, b_ub = (handle[key][()] for key in ("c", "b_eq", "b_ub"))
    with h5py.File(tmp_path / "x.h5", "r") as handle:
        eq, ub, r = (handle[key][()] for key in ("marginals/eq", "marginals/ub", "reduced_costs"))
    assert eq.shape == b_eq.shape and ub.shape == b_ub.shape
    np.testing.assert_allclose(A_eq.T @ eq + A_ub.T @ ub + r, c, atol=1e-10)
    size = max(1.0, np.abs(c).max())
    assert ub.max() <= 1e-5 * size and r.min() >= -1e-5 * size
    assert abs(b_eq @ eq + b_ub @ ub - made["objective"]) <= 1e-5 * abs(made["objective"])


# min x + 2y + 3z, x + y + z ≥ 4, x ≤ 3 (a singleton row), z fixed at ½: x = 3, y = ½, objective 5.5,
# row multipliers 2 and −1 (the singleton row's recovered by the postsolve).
PRESOLVABLE = """NAME PRE
ROWS
 N COST
 G C1
 L C2
COLUMNS
 X COST 1 C1 1
 X C2 1
 Y COST 2 C1 1
 Z COST 3 C1 1
RHS
 RHS C1 4 C2 3
BOUNDS
 FX BND Z 0.5
ENDATA
"""


def test_lp_command_reports_the_presolve(tmp_path):
    (tmp_path / "p.mps").write_text(PRESOLVABLE)
    got = summary(hpcml(2, "lp", "--input", tmp_path / "p.mps", "--json", "--output", tmp_path / "p.h5"))
    assert got["status"] == "converged" and abs(got["objective"] - 5.5) <= 1e-6 * 5.5
    assert got["presolve_rows_removed"] == 1 and got["presolve_columns_removed"] >= 1
    with h5py.File(tmp_path / "p.h5", "r") as handle:
        np.testing.assert_allclose(handle["marginals/rows"][()], [2.0, -1.0], atol=1e-6)
        np.testing.assert_allclose(handle["reduced_costs"][()], [0.0, 0.0, 1.0], atol=1e-6)
    got = summary(hpcml(1, "lp", "--input", tmp_path / "p.mps", "--json", "--no-presolve"))
    assert "presolve_rows_removed" not in got and abs(got["objective"] - 5.5) <= 1e-6 * 5.5


def test_lp_command_reports_infeasible_and_bad_mps(tmp_path):
    (tmp_path / "inf.mps").write_text(INFEASIBLE)
    got = summary(hpcml(2, "lp", "--input", tmp_path / "inf.mps", "--json"))
    assert got["status"] == "infeasible"
    (tmp_path / "bad.mps").write_text(CLASSIC["testlp"].replace(" YTWO MYEQN -1.0", " YTWO MYEQN minus"))
    result = hpcml(2, "lp", "--input", tmp_path / "bad.mps", timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.mps:11: expected a number, got 'minus'" in lines[0], result


def test_solve_composes_named_pieces(tmp_path):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((2 * 50 + 1, 8))
    b = A @ rng.standard_normal(8) + rng.standard_normal(101) ** 3
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["A"], handle["b"] = A, b
    got = summary(hpcml(2, "solve", "--input", f"{tmp_path}/d.h5:/A", "--rhs", f"{tmp_path}/d.h5:/b",
                        "--smooth", "huber", "--tau", 0.5, "--prox", "l1", "--weight", 2.0,
                        "--tol", 1e-12, "--json", "--output", tmp_path / "x.h5"))
    from hpcml.distmat import DistMatrix
    comm = Comm.self_comm()
    ref = minimize(smooth.Huber(0.5), MatrixOperator(DistMatrix(A, comm)), prox.l1(2.0), offset=-b,
                   tol=1e-12)
    assert got["status"] == "converged"
    assert abs(got["objective"] - ref.objective) <= 1e-10 * ref.objective
    with h5py.File(tmp_path / "x.h5", "r") as handle:
        assert np.allclose(handle["x"][()], ref.x, atol=1e-9)


def test_bad_lasso_options_exit_2(tmp_path):
    result = hpcml(2, "lasso", "--input", "x.h5:/A", "--rhs", "x.h5:/b", "--lam", -1, timeout=60)
    assert result.returncode == 2 and result.stderr.count("--lam must be > 0") == 1, result


def test_lasso_checkpoint_and_resume(tmp_path):
    rng = np.random.default_rng(4)
    A = rng.standard_normal((2 * 60 + 1, 10))
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["A"], handle["b"] = A, A @ rng.standard_normal(10) + rng.standard_normal(121)
    common = ["lasso", "--input", f"{tmp_path}/d.h5:/A", "--rhs", f"{tmp_path}/d.h5:/b", "--lam", 5.0,
              "--mode", "matvec", "--json", "--checkpoint-dir", tmp_path / "ck"]
    part = summary(hpcml(2, *common, "--max-iter", 4, "--checkpoint-every", 2, "--allow-partial"))
    assert part["status"] == "max_iterations" and sorted(n.rsplit("-", 1)[0] for n in os.listdir(tmp_path / "ck")) == ["ckpt-00000002", "ckpt-00000004"]
    whole = summary(hpcml(2, *common, "--resume"))
    fresh = summary(hpcml(1, *common[:-2]))
    assert whole["status"] == fresh["status"] == "converged"
    assert abs(whole["objective"] - fresh["objective"]) <= 1e-10 * fresh["objective"]


def _datasets(path):
    with h5py.File(path, "r") as handle:
        found = {}
        handle.visititems(lambda name, obj: found.update({name: obj[()]})
                          if isinstance(obj, h5py.Dataset) else None)
        return found, dict(handle.attrs)


def test_library_gives_what_lp_command_writes(tmp_path):
    import filecmp

    from hpcml.io.lp import read_lp
    from hpcml.optim import problems, synthetic

    comm = Comm.self_comm()
    data = tmp_path / "lp.h5"
    made = summary(hpcml(1, "data", "lp", "--rows", 7, "--cols", 20, "--inequalities", 3,
                         "--density", 0.4, "--seed", 5, "--output", data, "--mps", tmp_path / "lp.mps",
                         "--json"))
    objective = synthetic.write_random_lp(tmp_path / "own.h5", 7, 20, 3, 0.4, 5, mps=tmp_path / "own.mps")
    assert objective == made["objective"]
    assert filecmp.cmp(data, tmp_path / "own.h5", shallow=False)
    assert filecmp.cmp(tmp_path / "lp.mps", tmp_path / "own.mps", shallow=False)
    (tmp_path / "wyndor.mps").write_text(CLASSIC["wyndor"])
    # An HDF5 model (sharded marginals) and an MPS model that maximises (marginals per file row).
    for model, rows in ((str(data), ("marginals/eq", "marginals/ub")),
                        (str(tmp_path / "wyndor.mps"), ("marginals/rows",))):
        got = summary(hpcml(1, "lp", "--input", model, "--mu", 0.01, "--output", tmp_path / "x.h5",
                            "--json"))
        result = problems.solve_lp(read_lp(model, comm), comm, mu=0.01)
        written, attrs = _datasets(tmp_path / "x.h5")
        assert result["iterations"] == got["iterations"] == attrs["iterations"]
        assert result["objective"] == pytest.approx(attrs["objective"], rel=1e-12)
        for key in ("x", "reduced_costs", *rows):
            np.testing.assert_allclose(result[key.replace("/", "_")], written[key], rtol=1e-10,
                                       atol=1e-12)
        assert not set(written) & {"marginals/eq", "marginals/ub", "marginals/rows"} - set(rows)


def test_composite_gives_what_solve_command_writes(tmp_path):
    from hpcml.distmat import DistMatrix
    from hpcml.optim import problems

    rng = np.random.default_rng(7)
    A = rng.standard_normal((41, 6))
    labels = np.where(A @ rng.standard_normal(6) + 0.5 * rng.standard_normal(41) > 0, 1.0, -1.0)
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["A"], handle["y"] = A, labels
    comm = Comm.self_comm()
    for options in ({"smooth": "logistic", "prox": "l1", "weight": 0.5},
                    {"smooth": "huber", "tau": 0.5, "prox": "box", "lower": -0.2, "upper": 0.3}):
        flags = [str(v) if i % 2 else f"--{v}" for item in options.items() for i, v in enumerate(item)]
        got = summary(hpcml(1, "solve", "--input", f"{tmp_path}/d.h5:/A", "--rhs", f"{tmp_path}/d.h5:/y",
                            *flags, "--output", tmp_path / "x.h5", "--json"))
        result = problems.composite(DistMatrix(A, comm), labels, **options)
        written, attrs = _datasets(tmp_path / "x.h5")
        assert result["status"] == got["status"] == "converged"
        assert result["iterations"] == got["iterations"] > 1
        assert result["objective"] == pytest.approx(got["objective"], rel=1e-12)
        assert result["dual_residual"] == pytest.approx(attrs["dual_residual"], rel=1e-8, abs=1e-14)
        np.testing.assert_allclose(result["x"], written["x"], rtol=1e-10, atol=1e-12)


@pytest.fixture
def lp_with_free_variables(tmp_path):
    """An HDF5 LP whose bounds hold -inf (a free variable) and a finite upper bound."""
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3, 6))
    b = A @ rng.random(6)
    c = rng.random(6) + 0.5
    lower, upper = np.zeros(6), np.full(6, np.inf)
    lower[1], upper[2] = -np.inf, 5.0
    path = tmp_path / "lp.h5"
    with h5py.File(path, "w") as handle:
        handle["c"], handle["A_eq"], handle["b_eq"] = c, A, b
        handle["lower"], handle["upper"] = lower, upper
    return path, c, A, b, lower, upper


@pytest.mark.parametrize("ranks", [1, 2])
def test_hdf5_lp_with_infinite_bounds_matches_highs(lp_with_free_variables, ranks):
    from scipy.optimize import linprog

    path, c, A, b, lower, upper = lp_with_free_variables
    ref = linprog(c, A_eq=A, b_eq=b, bounds=[(lo, None if up == np.inf else up) for lo, up in zip(lower, upper)],
                  method="highs")
    got = summary(hpcml(ranks, "lp", "--input", path, "--json"))
    # Converged to the default tol 1e-6 (relative gap and infeasibility): the objective too.
    assert got["status"] == "converged" and abs(got["objective"] - ref.fun) <= 1e-5 * abs(ref.fun)


@pytest.mark.parametrize("key,value,message", [
    ("lower", np.zeros(3), "/lower has shape (3,); c has 6 entries"),
    ("lower", np.full(6, np.nan), "/lower has a NaN"),
    ("lower", np.full(6, 6.0), "variable 2 has bounds [6.0, 5.0]"),
    ("upper", np.full(6, -np.inf), "need lower <= upper, lower < inf and upper > -inf"),
])
def test_hdf5_lp_bad_bounds_are_one_line(lp_with_free_variables, key, value, message):
    path = lp_with_free_variables[0]
    with h5py.File(path, "a") as handle:
        del handle[key]
        handle[key] = value
    result = hpcml(2, "lp", "--input", path)
    assert result.returncode == 2 and message in result.stderr, result
    assert result.stderr.count("hpcml: error") == 1, result


@pytest.mark.parametrize("ranks,limits", [(1, ["--max-iter", 3]), (2, ["--max-iter", 3]),
                                          (2, ["--method", "scd", "--max-outer", 1, "--inner-max", 3])])
def test_not_solved_exits_2_unless_allow_partial(lp_with_free_variables, tmp_path, ranks, limits):
    """Non-convergence is handled as svd does: exit 2 naming the status, --allow-partial keeps the point."""
    path = lp_with_free_variables[0]
    args = ["lp", "--input", path, *limits, "--output", tmp_path / "x.h5"]
    result = hpcml(ranks, *args)
    assert result.returncode == 2 and "lp: not solved to --tol 1e-06 (status max_iterations" in result.stderr, result
    assert result.stderr.count("hpcml: error") == 1 and not (tmp_path / "x.h5").exists()
    got = summary(hpcml(ranks, *args, "--allow-partial", "--json"))
    assert got["status"] == "max_iterations"
    with h5py.File(tmp_path / "x.h5") as handle:
        assert handle.attrs["status"] == "max_iterations"


def test_lasso_that_diverges_writes_nothing(tmp_path):
    rng = np.random.default_rng(4)
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["A"], handle["b"] = rng.standard_normal((21, 4)), rng.standard_normal(21) * 1e300
    result = hpcml(2, "lasso", "--input", f"{tmp_path}/d.h5:/A", "--rhs", f"{tmp_path}/d.h5:/b", "--lam", 1.0,
                   "--allow-partial", "--output", tmp_path / "x.h5")
    assert result.returncode == 2 and "diverged to NaN or Inf" in result.stderr, result
    assert not (tmp_path / "x.h5").exists()


MIP = """NAME          TINYMIP
ROWS
 N  COST
 L  LIM1
COLUMNS
    MARKER                 'MARKER'                 'INTORG'
    X1        COST         -1.0   LIM1         2.0
    MARKER                 'MARKER'                 'INTEND'
    X2        COST         -1.0   LIM1         1.0
RHS
    RHS       LIM1         3.0
BOUNDS
 UP BND       X1           4.0
 UP BND       X2           1.0
ENDATA
"""


def test_integer_markers_are_refused_unless_relax(tmp_path):
    from scipy.optimize import linprog

    (tmp_path / "mip.mps").write_text(MIP)
    result = hpcml(2, "lp", "--input", tmp_path / "mip.mps")
    assert result.returncode == 2 and "mip.mps:6: 1 integer variable(s)" in result.stderr, result
    assert "pass --relax" in result.stderr
    got = summary(hpcml(2, "lp", "--input", tmp_path / "mip.mps", "--relax", "--json"))
    assert got["status"] == "converged, LP relaxation of 1 integer variable(s)"
    ref = linprog([-1.0, -1.0], A_ub=[[2.0, 1.0]], b_ub=[3.0], bounds=[(0, 4), (0, 1)], method="highs")
    assert abs(got["objective"] - ref.fun) <= 1e-5 * abs(ref.fun)
