"""PDLP (hpcml.optim.pdlp) against HiGHS: random LPs of every kind, the classic MPS models, certificates."""

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import mpi_script
from hpcml.comm import Comm
from hpcml.distmat import DistMatrix
from hpcml.io.lp import read_lp
from hpcml.io.mps import read_mps
from hpcml.kernels import pdhg
from hpcml.optim import problems
from hpcml.optim.pdlp import pdlp, precondition
from hpcml.optim.synthetic import random_lp
from lp_models import CLASSIC, INFEASIBLE, UNBOUNDED
from lp_random import check_farkas, check_ray, general_lp, highs, infeasible_lp, presolvable_lp, unbounded_lp

pytestmark = pytest.mark.numerics

COMM = Comm.self_comm()


def solve(lp, **kw):
    dist = {k: None if lp[k] is None else DistMatrix(lp[k], COMM) for k in ("A_eq", "A_ub")}
    return pdlp(lp["c"], dist["A_eq"], lp["b_eq"], dist["A_ub"], lp["b_ub"], (lp["lower"], lp["upper"]), **kw)


def relative_kkt(lp, out):
    """PDLP's relative KKT error recomputed from the returned x, multipliers and reduced costs."""
    x, c = out["x"], lp["c"]
    res, q, y_dot_b = [], [], 0.0
    grad = c - out["reduced_costs"]
    for kind in ("eq", "ub"):
        A, b = lp[f"A_{kind}"], lp[f"b_{kind}"]
        if A is None:
            continue
        r = A @ x - b
        res.append(r if kind == "eq" else np.maximum(r, 0))
        q.append(b)
        y = out[f"marginals_{kind}"]
        grad = grad - A.T @ y
        y_dot_b += b @ y
    r = out["reduced_costs"]
    lam = np.where(np.isfinite(lp["lower"]), np.maximum(r, 0), 0) + np.where(np.isfinite(lp["upper"]),
                                                                             np.minimum(r, 0), 0)
    dual_obj = y_dot_b + lam[lam > 0] @ lp["lower"][lam > 0] + lam[lam < 0] @ lp["upper"][lam < 0]
    primal = np.linalg.norm(np.concatenate(res)) / (1 + np.linalg.norm(np.concatenate(q)))
    # The reported reduced costs are c − Aᵀλ itself (grad ≈ 0), and what the bounds cannot absorb is dual infeasibility.
    dual = (np.linalg.norm(grad) + np.linalg.norm(r - lam)) / (1 + np.linalg.norm(c))
    gap = abs(c @ x - dual_obj) / (1 + abs(c @ x) + abs(dual_obj))
    return max(primal, dual, gap)


def test_fused_steps_match_their_numpy_forms():
    rng = np.random.default_rng(0)
    n, m = 37, 23
    x, KTy, c = rng.standard_normal((3, n))
    lower = np.where(rng.random(n) < 0.5, -0.3, -np.inf)
    upper = np.where(rng.random(n) < 0.5, 0.4, np.inf)
    np.testing.assert_array_equal(pdhg.primal_step(x, KTy, c, lower, upper, 0.7),
                                  pdhg.primal_step_reference(x, KTy, c, lower, upper, 0.7))
    y, q, Kx1, Kx0 = rng.standard_normal((4, m))
    is_eq = rng.random(m) < 0.4
    got, ref = pdhg.dual_step(y, q, Kx1, Kx0, is_eq, 1.3), pdhg.dual_step_reference(y, q, Kx1, Kx0, is_eq, 1.3)
    # fastmath may contract to fused multiply-adds: the last bit can differ.
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-14, atol=1e-15)
    assert got[1] == pytest.approx(ref[1], rel=1e-13)
    x_new = x + rng.standard_normal(n)
    KTy_new = KTy + rng.standard_normal(n)
    np.testing.assert_allclose(pdhg.movement(x_new, x, KTy_new, KTy),
                               pdhg.movement_reference(x_new, x, KTy_new, KTy), rtol=1e-13)
    mean = x.copy()
    pdhg.average(mean, c, 0.25)
    np.testing.assert_allclose(mean, x + 0.25 * (c - x), rtol=1e-14)
    for K in (sp.random(m, n, density=0.3, format="csr", rng=rng), sp.csr_matrix((0, n)), sp.csr_matrix((m, n))):
        np.testing.assert_allclose(pdhg.csr_matvec(K, x), K @ x, rtol=1e-13, atol=1e-14)
    with pytest.raises(ValueError, match="contiguous float64"):
        pdhg.primal_step(x.astype(np.float32), KTy, c, lower, upper, 1.0)


def test_preconditioning_is_a_diagonal_scaling_that_equilibrates():
    rng = np.random.default_rng(1)
    K = sp.random(30, 20, density=0.3, format="csr", rng=rng) * sp.diags(10.0 ** rng.integers(-3, 4, 20))
    for local in (K, K.toarray()):
        Ks, Dr, Dc = precondition(local, COMM)
        Ks = Ks.toarray() if sp.issparse(Ks) else Ks
        np.testing.assert_allclose(Ks, Dr[:, None] * K.toarray() * Dc[None, :], rtol=1e-12)
        nonzero = np.abs(Ks).max(axis=1) > 0
        # Pock–Chambolle after Ruiz: row and column ℓ1 norms near 1 (entries spread 1e6 before).
        assert 0.1 < np.abs(Ks).max() <= 1.0 + 1e-12 and np.abs(Ks).sum(axis=1)[nonzero].max() < 2.5


@pytest.mark.parametrize("seed", range(16))
def test_random_lps_match_highs(seed):
    lp = general_lp(seed, m_eq=3 + seed % 5, m_ub=seed % 4, n=8 + seed)
    ref = highs(lp)
    out = solve(lp, tol=1e-9, certificate_tol=1e-6)
    # Some draws have no optimum: the same status as HiGHS's, and a ray that checks.
    assert ref.status in (0, 3) and out["status"] == ("converged", "unbounded")[ref.status // 3], \
        (ref.status, out["status"])
    if ref.status == 3:
        check_ray(lp, out["ray"], tol=1e-6)
        return
    assert abs(out["objective"] - ref.fun) <= 1e-6 * max(1.0, abs(ref.fun))
    # The reported KKT error is the one recomputed from the returned vectors.
    assert out["kkt"] <= 1e-9 and relative_kkt(lp, out) <= 2e-9


@pytest.mark.parametrize("seed,inequalities", [(11, 0), (16, 8), (12, 5)])
def test_multipliers_match_highs_where_unique(seed, inequalities):
    lp = random_lp(15, 40, 0.5, np.random.default_rng(seed), inequalities)
    lp.update(lower=np.zeros(40), upper=np.full(40, np.inf))
    ref = highs(lp)
    out = solve(lp, tol=1e-9)
    assert out["status"] == "converged" and abs(out["objective"] - ref.fun) <= 1e-7 * abs(ref.fun)
    # (test_optim.test_lp_multipliers_match_highs checks these draws have unique multipliers.)
    np.testing.assert_allclose(out["marginals_eq"], ref.eqlin.marginals, atol=1e-6)
    if inequalities:
        np.testing.assert_allclose(out["marginals_ub"], ref.ineqlin.marginals, atol=1e-6)
    np.testing.assert_allclose(out["reduced_costs"], ref.lower.marginals, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_infeasible_lps_come_with_a_checked_farkas_ray(seed):
    lp = infeasible_lp(seed)
    assert highs(lp).status == 2
    out = solve(lp)
    assert out["status"] == "infeasible"
    check_farkas(lp, out)


@pytest.mark.parametrize("seed", range(4))
def test_unbounded_lps_come_with_a_checked_ray_and_a_feasible_point(seed):
    lp = unbounded_lp(seed)
    assert highs(lp).status == 3
    out = solve(lp)
    assert out["status"] == "unbounded" and out["primal_residual"] <= 1e-6
    check_ray(lp, out["ray"])


def test_iteration_limit_is_not_called_converged():
    out = solve(general_lp(3), max_iter=10)
    assert out["status"] == "max_iterations" and out["iterations"] == 10 and out["kkt"] > 1e-6


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_classic_mps_models_match_highs(tmp_path, name):
    (tmp_path / "m.mps").write_text(CLASSIC[name])
    model = read_mps(tmp_path / "m.mps")
    A_eq, b_eq, A_ub, b_ub = model.standard_rows()
    lp = {"c": model.c, "A_eq": A_eq if A_eq.shape[0] else None, "b_eq": b_eq if A_eq.shape[0] else None,
          "A_ub": A_ub if A_ub.shape[0] else None, "b_ub": b_ub if A_ub.shape[0] else None,
          "lower": model.lower, "upper": model.upper}
    ref = highs(lp)
    got = problems.solve_lp(read_lp(str(tmp_path / "m.mps"), COMM), COMM, tol=1e-9)
    assert got["status"] == "converged" and got["method"] == "pdlp"
    assert abs(got["objective"] - model.sense * (ref.fun + model.offset)) <= 1e-6 * abs(ref.fun + model.offset)
    # The multipliers of these small models are unique: HiGHS's, in the file's sense.
    rows = model.row_marginals(ref.eqlin.marginals if A_eq.shape[0] else np.zeros(0),
                               ref.ineqlin.marginals if A_ub.shape[0] else np.zeros(0))
    np.testing.assert_allclose(got["marginals_rows"], rows, atol=1e-6)
    np.testing.assert_allclose(got["reduced_costs"], model.sense * (ref.lower.marginals + ref.upper.marginals),
                               atol=1e-6)


def test_classic_infeasible_and_unbounded_models(tmp_path):
    for text, status in ((INFEASIBLE, "infeasible"), (UNBOUNDED, "unbounded")):
        (tmp_path / "m.mps").write_text(text)
        got = problems.solve_lp(read_lp(str(tmp_path / "m.mps"), COMM), COMM)
        assert got["status"] == status


@pytest.mark.parametrize("seed", range(4))
def test_presolve_reductions_keep_the_optimum_and_complete_multipliers(seed):
    lp = presolvable_lp(seed)
    ref = highs(lp)
    out = solve(lp, tol=1e-9)
    assert ref.status == 0 and out["status"] == "converged"
    # The empty row, the four singleton rows and the two columns held only by them
    # (x₀, x₂ fixed once bounded) and x₃, x₇, x₈: at least that much goes.
    assert out["presolve"]["rows_removed"] >= 5 and out["presolve"]["columns_removed"] >= 4
    assert abs(out["objective"] - ref.fun) <= 1e-7 * max(1.0, abs(ref.fun))
    # Multipliers of the removed rows recovered: the KKT error recomputed on the original LP.
    assert relative_kkt(lp, out) <= 2e-9
    # The singleton rows x₀ ≥ ½ (−2x₀ ≤ −1), x₁ ≤ 2 (3x₁ ≤ 6), x₄ ≥ ¼ and 2x₂ = 3: HiGHS's multipliers,
    # most of them active.
    np.testing.assert_allclose(out["marginals_ub"][3:6], ref.ineqlin.marginals[3:6], atol=1e-6)
    assert np.count_nonzero(np.abs(ref.ineqlin.marginals[3:6]) > 1e-3) >= 2
    assert abs(out["marginals_eq"][2] - ref.eqlin.marginals[2]) <= 1e-6
    assert out["marginals_ub"][2] == 0.0             # the empty row


@pytest.mark.parametrize("dense", [False, True])
def test_presolve_chain_is_undone_in_reverse_order(dense):
    # Round 1: 2x₂ = 2 fixes x₂ = 1; round 2: x₀ + x₂ ≤ 3 is then the singleton x₀ ≤ 2. The
    # postsolve gives that row x₀'s reduced cost first, then the equality x₂'s (which includes it).
    lp = {"c": np.array([-2.0, -1.0, 0.5]), "A_eq": sp.csr_matrix([[0.0, 0.0, 2.0]]), "b_eq": np.array([2.0]),
          "A_ub": sp.csr_matrix([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]]),
          "b_ub": np.array([3.0, 5.0, 4.0]), "lower": np.zeros(3), "upper": np.full(3, np.inf)}
    ref = highs(lp)
    if dense:
        lp.update(A_eq=lp["A_eq"].toarray(), A_ub=lp["A_ub"].toarray())
    out = solve(lp, tol=1e-10)
    assert out["status"] == "converged" and abs(out["objective"] - ref.fun) <= 1e-8
    assert out["presolve"]["rounds"] >= 2 and out["presolve"]["rows_removed"] >= 2
    np.testing.assert_allclose(out["marginals_eq"], ref.eqlin.marginals, atol=1e-7)
    np.testing.assert_allclose(out["marginals_ub"], ref.ineqlin.marginals, atol=1e-7)
    np.testing.assert_allclose(out["reduced_costs"], ref.lower.marginals + ref.upper.marginals, atol=1e-7)
    assert relative_kkt(lp, out) <= 1e-9


def test_presolve_off_gives_the_same_solution():
    lp = presolvable_lp(1)
    on, off = solve(lp, tol=1e-9), solve(lp, tol=1e-9, presolve=False)
    assert "presolve" not in off and off["status"] == on["status"] == "converged"
    assert abs(on["objective"] - off["objective"]) <= 1e-7 * max(1.0, abs(off["objective"]))


@pytest.mark.parametrize("case", ["empty_row", "crossing"])
def test_presolve_proves_infeasibility_with_a_checked_farkas_ray(case):
    lp = presolvable_lp(0, case)
    assert highs(lp).status == 2
    out = solve(lp)
    assert out["status"] == "infeasible" and out["iterations"] == 0 and out["farkas"] > 0
    check_farkas(lp, out)


def test_presolve_empty_column_toward_an_infinite_bound_is_unbounded_once_feasible():
    lp = presolvable_lp(0, "unbounded_column")
    assert highs(lp).status == 3
    out = solve(lp)
    assert out["status"] == "unbounded" and out["primal_residual"] <= 1e-6
    check_ray(lp, out["ray"])
    np.testing.assert_array_equal(np.flatnonzero(out["ray"]), [8])
    # The same column in an infeasible LP: infeasible, not unbounded.
    lp["b_ub"][4] = -1.0
    out = solve(lp)
    assert out["status"] == "infeasible"
    check_farkas(lp, out)


@pytest.mark.parametrize("ranks", [2, 3])
def test_pdlp_on_shards_matches_highs(ranks):
    mpi_script(ranks, "check_pdlp.py", timeout=300)
