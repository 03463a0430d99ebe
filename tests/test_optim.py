"""The conic solver's pieces and front-ends on one process, against independent references."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog, nnls

from hpcml import operator as L
from hpcml.comm import Comm
from hpcml.distmat import DistMatrix
from hpcml.errors import InputError
from hpcml.io.mps import read_mps, write_mps
from hpcml.optim import problems
from hpcml.optim import prox as P
from hpcml.optim import smooth as S
from hpcml.optim.algorithms import METHODS, minimize
from hpcml.optim.synthetic import lasso_problem, random_lp, tfocs_lp
from hpcml.space import Space
from lp_models import CLASSIC, INFEASIBLE, UNBOUNDED, fixed_format

pytestmark = pytest.mark.numerics

# A wrong adjoint misses by O(1); a right one by the rounding of two products and
# two dots, about (m + n)·ε·|L||x||y| ≈ 1e-14 of ‖Lx‖‖y‖ for these ≤ 25-row
# operators, whatever order the BLAS sums in; 1e-12 leaves room for |L||x| > ‖Lx‖.
ADJOINT_TOL = 1e-12

COMM = Comm.self_comm()
REPLICATED = Space(COMM, sharded=False)


def dist(A):
    return DistMatrix.from_global(A, COMM)


# -- operators -------------------------------------------------------------------------


def test_adjoint_test_passes_for_every_operator():
    rng = np.random.default_rng(0)
    dense = dist(rng.standard_normal((23, 7)))
    csr = dist(sp.random(19, 7, density=0.3, format="csr", rng=rng))
    M = L.MatrixOperator
    ops = [M(dense), M(csr), M(dense).H, L.Scaled(M(csr), -2.5),
           L.Stacked([M(dense), M(csr)]), L.Stacked([M(csr)]).H,
           L.Scaled(L.Stacked([M(dense), M(csr)]).H, -1.0),
           L.Normal(M(dense)), L.Identity(REPLICATED, 7),
           L.Centred(dense), L.Centred(csr).H, L.Normal(L.Centred(csr)),
           L.Stacked([L.Centred(dense), M(csr)])]
    for op in ops:
        assert L.adjoint_test(op) <= ADJOINT_TOL, op


def test_adjoint_test_catches_a_wrong_adjoint():
    op = L.MatrixOperator(dist(np.random.default_rng(1).standard_normal((9, 4))))
    op.rmatvec = lambda y: 1.001 * L.MatrixOperator.rmatvec(op, y)
    assert L.adjoint_test(op) > 1e-4


def test_norm_estimate_is_the_largest_singular_value():
    A = np.random.default_rng(2).standard_normal((40, 9))
    sigma = np.linalg.svd(A, compute_uv=False)[0]
    assert abs(L.MatrixOperator(dist(A)).norm_estimate(iterations=300) - sigma) <= 1e-5 * sigma


# -- proxes --------------------------------------------------------------------------


def all_proxes(n, rng):
    w = rng.random(n)
    lo, hi = -rng.random(n), rng.random(n)
    return {
        "l1": P.l1(1.3), "l1 weighted": P.l1(w), "zero": P.zero(), "nonneg": P.nonneg(),
        "box": P.box(lo, hi), "half box": P.box(lo, np.inf), "linf ball": P.linf_ball(0.4),
        "l2 ball": P.l2_ball(0.7), "l2 norm": P.L2Norm(0.9), "shifted nonneg": P.shifted_nonneg(w - 0.5),
        "tilted l2 norm": P.Tilted(P.L2Norm(0.5), w), "translated l1": P.Translated(P.l1(0.3), w),
        "linear": P.LinearBox(c=w),
    }


@pytest.mark.parametrize("t", [0.1, 1.0, 7.0])
def test_moreau_and_fenchel_young_hold_for_every_prox(t):
    rng = np.random.default_rng(3)
    for name, h in all_proxes(11, rng).items():
        for _ in range(3):
            v = 2 * rng.standard_normal(11)
            check = P.prox_pair_test(h, v, t)
            assert check["ok"], (name, check)
            check = P.prox_pair_test(h.conjugate(), v, t)
            assert check["ok"], (name, "conjugate", check)


def test_prox_pair_test_catches_a_wrong_prox():
    h = P.l1(1.0)
    h.prox = lambda v, t: (np.sign(v) * np.maximum(np.abs(v) - 0.9 * t, 0), 0.0)
    assert not P.prox_pair_test(h, np.linspace(-3, 3, 9), 1.0)["ok"]


def test_proxes_match_their_closed_forms():
    rng = np.random.default_rng(4)
    v, w, t = rng.standard_normal(20), rng.random(20), 0.7
    assert np.allclose(P.l1(w).prox(v, t)[0], np.sign(v) * np.maximum(np.abs(v) - t * w, 0), atol=1e-15)
    assert np.array_equal(P.nonneg().prox(v, t)[0], np.maximum(v, 0))
    assert np.array_equal(P.box(-0.2, 0.3).prox(v, t)[0], np.clip(v, -0.2, 0.3))
    u = P.l2_ball(0.5).prox(v, t)[0]
    assert np.allclose(u, v * 0.5 / np.linalg.norm(v))
    assert np.array_equal(P.shifted_nonneg(w).prox(v, t)[0], np.maximum(v - t * w, 0))
    assert P.l1(w).value(v) == pytest.approx(np.sum(w * np.abs(v)))
    assert P.nonneg().value(-np.ones(2)) == np.inf and P.l2_ball(1.0).value(2 * np.ones(1)) == np.inf


def test_prox_rejects_bad_parameters():
    with pytest.raises(InputError):
        P.l1(-1.0)
    with pytest.raises(InputError):
        P.box(1.0, 0.0)


# -- smooth functions ---------------------------------------------------------------


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    z, d = rng.standard_normal(15), rng.standard_normal(15)
    y = np.sign(rng.standard_normal(15))
    for f in (S.Quadratic(rng.standard_normal(15)), S.Huber(0.5, rng.standard_normal(15)),
              S.Logistic(y), S.Linear(rng.standard_normal(15))):
        value, grad = f.local(z)
        eps = 1e-6
        numeric = (f.local(z + eps * d)[0] - f.local(z - eps * d)[0]) / (2 * eps)
        assert numeric == pytest.approx(grad @ d, rel=1e-6, abs=1e-8), type(f).__name__


def test_smooth_values_match_their_definitions():
    rng = np.random.default_rng(6)
    z, b = rng.standard_normal(30), rng.standard_normal(30)
    y = np.sign(rng.standard_normal(30))
    assert S.Quadratic(b).local(z)[0] == pytest.approx(0.5 * np.sum((z - b) ** 2))
    assert S.Logistic(y).local(z)[0] == pytest.approx(np.sum(np.log1p(np.exp(-y * z))))
    r = z - b
    huber = np.where(np.abs(r) <= 0.5, r ** 2, np.abs(r) - 0.25).sum()
    assert S.Huber(0.5, b).local(z)[0] == pytest.approx(huber)
    A = rng.standard_normal((30, 6))
    x = rng.standard_normal(6)
    G = S.GramQuadratic(A.T @ A, A.T @ b, 0.5 * b @ b).local(x)
    assert G[0] == pytest.approx(0.5 * np.sum((A @ x - b) ** 2), rel=1e-12)
    assert np.allclose(G[1], A.T @ (A @ x - b))


# -- algorithms and front-ends ------------------------------------------------------------


@pytest.fixture(scope="module")
def lasso_data():
    rng = np.random.default_rng(7)
    A, b, _ = lasso_problem(301, 40, 6, 0.1, rng)
    return A, b


def sklearn_lasso(A, b, lam):
    from sklearn.linear_model import Lasso
    w = Lasso(alpha=lam / A.shape[0], fit_intercept=False, tol=1e-14, max_iter=200000).fit(A, b).coef_
    return w, 0.5 * np.sum((A @ w - b) ** 2) + lam * np.abs(w).sum()


@pytest.mark.parametrize("ratio", [0.5, 0.1, 0.01])
def test_lasso_matches_scikit_learn(lasso_data, ratio):
    A, b = lasso_data
    lam = ratio * np.abs(A.T @ b).max()
    w, ref = sklearn_lasso(A, b, lam)
    # The prox and coordinate descent both give exact zeros off the support, so
    # the 1e-9 threshold below splits the supports exactly as long as every
    # true non-zero lies far above it.
    assert np.abs(w[w != 0]).min() > 1e-6
    for method in METHODS:
        for mode in ("gram", "normal", "matvec"):
            out = problems.lasso(dist(A), b, lam, method=method, mode=mode, tol=1e-12)
            assert out["status"] == "converged", (method, mode, out["status"])
            assert abs(out["objective"] - ref) <= 1e-8 * ref, (method, mode, out["objective"], ref)
            assert np.array_equal(np.abs(out["x"]) > 1e-9, np.abs(w) > 1e-9), (method, mode)
            assert out["gap"] <= 1e-5 and out["dual_residual"] <= 1e-5


def test_lasso_on_csr_equals_dense(lasso_data):
    A, b = lasso_data
    lam = 0.1 * np.abs(A.T @ b).max()
    dense = problems.lasso(dist(A), b, lam, mode="matvec", tol=1e-12)
    sparse = problems.lasso(dist(sp.csr_matrix(A)), b, lam, mode="matvec", tol=1e-12)
    assert np.allclose(dense["x"], sparse["x"], atol=1e-9)


def test_iteration_limit_is_reported_honestly(lasso_data):
    A, b = lasso_data
    out = problems.lasso(dist(A), b, 0.01 * np.abs(A.T @ b).max(), mode="matvec", max_iter=3)
    assert out["status"] == "max_iterations" and out["iterations"] == 3


def test_history_and_restart(lasso_data):
    A, b = lasso_data
    op = L.MatrixOperator(dist(A))
    result = minimize(S.Quadratic(), op, P.l1(1.0), offset=-b, tol=1e-12, max_iter=2000)
    hist = result.history
    assert len(hist["objective"]) == result.iterations == len(hist["L"]) == len(hist["step"])
    assert hist["objective"][-1] <= hist["objective"][0]
    # The backtracking estimate ends near the true Lipschitz constant ‖A‖² (within 1/alpha·1/beta).
    sigma2 = np.linalg.svd(A, compute_uv=False)[0] ** 2
    assert 0.4 * sigma2 <= result.L <= 2.5 * sigma2


def test_nonneg_least_squares_matches_scipy():
    rng = np.random.default_rng(8)
    A, b = rng.standard_normal((60, 15)), rng.standard_normal(60)
    x_ref, _ = nnls(A, b)
    out = problems.nonneg_least_squares(dist(A), b, tol=1e-13)
    assert out["status"] == "converged"
    assert np.allclose(out["x"], x_ref, atol=1e-8)
    assert out["primal_residual"] == 0.0 and out["dual_residual"] <= 1e-7


def test_l1_logistic_regression_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(9)
    A = rng.standard_normal((200, 12))
    y = np.sign(A[:, :3] @ np.array([2.0, -1.0, 1.0]) + 0.5 * rng.standard_normal(200))
    lam = 3.0
    out = problems.l1_logistic_regression(dist(A), y, lam, tol=1e-12)
    w = LogisticRegression(penalty="l1", C=1 / lam, solver="liblinear", fit_intercept=False,
                           tol=1e-12, max_iter=100000).fit(A, y).coef_.ravel()
    ref = np.sum(np.logaddexp(0, -y * (A @ w))) + lam * np.abs(w).sum()
    assert out["status"] == "converged"
    assert out["objective"] <= ref * (1 + 1e-8) and abs(out["objective"] - ref) <= 1e-6 * ref
    assert np.array_equal(np.abs(out["x"]) > 1e-8, np.abs(w) > 1e-8)


def test_basis_pursuit_denoise_equals_the_lasso_with_the_same_misfit(lasso_data):
    A, b = lasso_data
    lam = 0.1 * np.abs(A.T @ b).max()
    ref = problems.lasso(dist(A), b, lam, tol=1e-13)
    eps = np.linalg.norm(A @ ref["x"] - b)
    out = problems.basis_pursuit_denoise(dist(A), b, eps, tol=1e-7)
    assert out["status"] == "converged", out["status"]
    assert abs(out["objective"] - np.abs(ref["x"]).sum()) <= 1e-5 * np.abs(ref["x"]).sum()
    assert np.allclose(out["x"], ref["x"], atol=1e-4 * np.abs(ref["x"]).max())


def test_dantzig_selector_matches_its_lp():
    rng = np.random.default_rng(10)
    A, b, _ = lasso_problem(80, 10, 3, 0.1, rng)
    G, Atb = A.T @ A, A.T @ b
    delta = 0.2 * np.abs(Atb).max()
    n = A.shape[1]
    # x = u - v, u, v >= 0: minimise Σu + Σv subject to |G(u - v) - Aᵀb| <= δ.
    M = np.hstack([G, -G])
    ref = linprog(np.ones(2 * n), A_ub=np.vstack([M, -M]), b_ub=np.concatenate([Atb + delta, delta - Atb]),
                  bounds=(0, None), method="highs")
    out = problems.dantzig_selector(dist(A), b, delta, tol=1e-7)
    assert out["status"] == "converged", out["status"]
    assert abs(out["objective"] - ref.fun) <= 1e-4 * ref.fun
    assert out["primal_residual"] <= 1e-6


# -- linear programs ------------------------------------------------------------------


def highs(c, A_eq, b_eq, A_ub, b_ub, lower, upper):
    bounds = [(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None) for lo, hi in zip(lower, upper)]
    return linprog(c, A_eq=A_eq, b_eq=b_eq, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")


def check_against_highs(out, ref, c, A_eq, b_eq, A_ub, b_ub):
    assert ref.status == 0
    assert out["status"] == "converged", out["status"]
    assert abs(out["objective"] - ref.fun) <= 1e-4 * max(abs(ref.fun), 1e-12)
    x = out["x"]
    scale = 1 + max(np.abs(b).max() for b in (b_eq, b_ub) if b is not None)
    if A_eq is not None:
        assert np.abs(A_eq @ x - b_eq).max() <= 1e-5 * scale
    if A_ub is not None:
        assert np.maximum(A_ub @ x - b_ub, 0).max() <= 1e-5 * scale


def check_marginals(out, ref, tol=1e-4):
    """The multipliers against HiGHS's (same sign convention), relative to their size."""
    pairs = [("reduced_costs", ref.lower.marginals + ref.upper.marginals)]
    pairs += [(f"marginals_{kind}", getattr(ref, field).marginals)
              for kind, field in (("eq", "eqlin"), ("ub", "ineqlin")) if f"marginals_{kind}" in out]
    for key, expected in pairs:
        error = np.abs(out[key] - expected).max(initial=0.0)
        assert error <= tol * max(1.0, np.abs(expected).max(initial=0.0)), (key, error)


@pytest.mark.parametrize("seed,inequalities", [(11, 0), (16, 8), (13, 20)])
def test_random_lps_match_highs(seed, inequalities):
    lp = random_lp(15, 40, 0.25, np.random.default_rng(seed), inequalities)
    n = lp["c"].size
    out = problems.lp(lp["c"], dist(lp["A_eq"]), lp["b_eq"],
                      None if lp["A_ub"] is None else dist(lp["A_ub"]), lp["b_ub"])
    ref = highs(lp["c"], lp["A_eq"], lp["b_eq"], lp["A_ub"], lp["b_ub"], np.zeros(n), np.full(n, np.inf))
    check_against_highs(out, ref, lp["c"], lp["A_eq"], lp["b_eq"], lp["A_ub"], lp["b_ub"])
    assert abs(ref.fun - lp["objective"]) <= 1e-7 * abs(lp["objective"])


def test_tfocs_shaped_lp_has_the_optimum_it_was_built_around():
    lp = tfocs_lp(20, 40, 0.6, np.random.default_rng(1))
    A, b, c, x_star, y_star = lp["A_eq"], lp["b_eq"], lp["c"], lp["x_star"], lp["y_star"]
    n = c.size
    assert A.min() >= 0 and np.count_nonzero(x_star) == 20 and x_star.min() >= 0
    reduced = c - A.T @ y_star
    assert reduced.min() >= -1e-12 and abs(reduced @ x_star) <= 1e-9
    ref = highs(c, A, b, None, None, np.zeros(n), np.full(n, np.inf))
    assert abs(ref.fun - lp["objective"]) <= 1e-9 * abs(lp["objective"])
    out = problems.lp(c, dist(A), b)
    check_against_highs(out, ref, c, A, b, None, None)
    # With independent support columns the multipliers are unique: y* itself.  Their
    # error grows with the support's condition number (2e-3 at 7e3 on a sparser
    # draw), so this draw is a well-conditioned one.
    assert np.linalg.cond(A[:, x_star > 0].toarray()) < 100
    np.testing.assert_allclose(ref.eqlin.marginals, y_star, atol=1e-8)
    check_marginals(out, ref)


@pytest.mark.parametrize("seed,inequalities", [(11, 0), (16, 8), (12, 5)])
def test_lp_multipliers_match_highs(seed, inequalities):
    lp = random_lp(15, 40, 0.5, np.random.default_rng(seed), inequalities)
    n = lp["c"].size
    # The multipliers are unique (so comparable) when the active rows restricted to
    # the optimum's support have full row rank.
    active = [lp["A_eq"].toarray()]
    if inequalities:
        active.append(lp["A_ub"].toarray()[lp["A_ub"] @ lp["x_star"] >= lp["b_ub"]])
    active = np.vstack(active)[:, lp["x_star"] > 0]
    assert np.linalg.matrix_rank(active) == active.shape[0]
    out = problems.lp(lp["c"], dist(lp["A_eq"]), lp["b_eq"],
                      None if lp["A_ub"] is None else dist(lp["A_ub"]), lp["b_ub"])
    ref = highs(lp["c"], lp["A_eq"], lp["b_eq"], lp["A_ub"], lp["b_ub"], np.zeros(n), np.full(n, np.inf))
    check_against_highs(out, ref, lp["c"], lp["A_eq"], lp["b_eq"], lp["A_ub"], lp["b_ub"])
    check_marginals(out, ref)


def solve_mps(path, fmt="free"):
    model = read_mps(path, fmt)
    A_eq, b_eq, A_ub, b_ub = model.standard_rows()
    out = problems.lp(model.c, dist(A_eq) if A_eq.shape[0] else None, b_eq,
                      dist(A_ub) if A_ub.shape[0] else None, b_ub, (model.lower, model.upper))
    return model, (A_eq, b_eq, A_ub, b_ub), out


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_classic_mps_lps_match_highs(tmp_path, name):
    path = tmp_path / f"{name}.mps"
    path.write_text(CLASSIC[name])
    model, (A_eq, b_eq, A_ub, b_ub), out = solve_mps(path)
    A_eq, b_eq = (A_eq, b_eq) if A_eq.shape[0] else (None, None)
    A_ub, b_ub = (A_ub, b_ub) if A_ub.shape[0] else (None, None)
    ref = highs(model.c, A_eq, b_eq, A_ub, b_ub, model.lower, model.upper)
    check_against_highs(out, ref, model.c, A_eq, b_eq, A_ub, b_ub)
    check_marginals(out, ref)


def test_known_optima_of_the_classic_lps(tmp_path):
    expected = {"wyndor": 36.0, "testlp": -5.5}
    for name, value in expected.items():
        path = tmp_path / f"{name}.mps"
        path.write_text(CLASSIC[name])
        model, _, out = solve_mps(path)
        assert abs(model.sense * (out["objective"] + model.offset) - value) <= 1e-5 * abs(value)


def test_infeasible_and_unbounded_lps_are_reported(tmp_path):
    for text, status in ((INFEASIBLE, "infeasible"), (UNBOUNDED, "unbounded")):
        path = tmp_path / "m.mps"
        path.write_text(text)
        out = solve_mps(path)[2]
        assert out["status"] == status, out["status"]


def test_lp_that_cannot_finish_is_not_called_converged():
    lp = random_lp(15, 40, 0.25, np.random.default_rng(14))
    out = problems.lp(lp["c"], dist(lp["A_eq"]), lp["b_eq"], max_outer=2, inner_max=5)
    assert out["status"] == "max_iterations"


# -- MPS --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_fixed_and_free_mps_agree(tmp_path, name):
    (tmp_path / "free.mps").write_text(CLASSIC[name])
    (tmp_path / "fixed.mps").write_text(fixed_format(CLASSIC[name]))
    free, fixed = read_mps(tmp_path / "free.mps"), read_mps(tmp_path / "fixed.mps", "fixed")
    for key in ("c", "row_lower", "row_upper", "lower", "upper"):
        assert np.array_equal(getattr(free, key), getattr(fixed, key)), key
    assert (free.A != fixed.A).nnz == 0 and free.offset == fixed.offset


def test_mps_sections_are_read_as_specified(tmp_path):
    (tmp_path / "t.mps").write_text(CLASSIC["testlp"])
    lp = read_mps(tmp_path / "t.mps")
    assert np.array_equal(lp.c, [1, 2, -1])
    assert np.array_equal(lp.A.toarray(), [[1, 1, 0], [1, 0, 0], [0, -1, 1]])
    assert np.array_equal(lp.row_lower, [1.5, 1, 7]) and np.array_equal(lp.row_upper, [4, np.inf, 7])
    assert np.array_equal(lp.lower, [0, -1, 0]) and np.array_equal(lp.upper, [4, 1, np.inf])
    (tmp_path / "w.mps").write_text(CLASSIC["wyndor"])
    assert read_mps(tmp_path / "w.mps").sense == -1
    (tmp_path / "d.mps").write_text(CLASSIC["diet"])
    diet = read_mps(tmp_path / "d.mps")
    assert diet.offset == 10.0 and diet.lower[3] == -np.inf and diet.upper[2] == 3.0


def test_mps_round_trip(tmp_path):
    lp = random_lp(6, 9, 0.5, np.random.default_rng(15), inequalities=3)
    A = sp.vstack([lp["A_eq"], lp["A_ub"]])
    lo = np.concatenate([lp["b_eq"], np.full(3, -np.inf)])
    hi = np.concatenate([lp["b_eq"], lp["b_ub"]])
    write_mps(tmp_path / "r.mps", lp["c"], A, lo, hi, upper=np.full(9, 5.0))
    back = read_mps(tmp_path / "r.mps")
    assert np.array_equal(back.c, lp["c"]) and np.allclose(back.A.toarray(), A.toarray(), rtol=0)
    assert np.array_equal(back.row_lower, lo) and np.array_equal(back.row_upper, hi)
    assert np.array_equal(back.upper, np.full(9, 5.0))


@pytest.mark.parametrize("change,message", [
    (("COLUMNS", "COLUMNZ"), "t.mps:7: unknown section 'COLUMNZ'"),
    ((" XONE COST 1.0 LIM1 1.0", " XONE COST one LIM1 1.0"), "t.mps:8: expected a number, got 'one'"),
    ((" YTWO MYEQN -1.0", " YTWO NOROW -1.0"), "t.mps:11: unknown row 'NOROW'"),
    ((" UP BND XONE 4.0", " XX BND XONE 4.0"), "t.mps:19: unknown bound type 'XX'"),
    ((" L LIM1", " Q LIM1"), "t.mps:4: unknown row type 'Q'"),
    (("ENDATA", ""), "no ENDATA line"),
])
def test_malformed_mps_names_the_line(tmp_path, change, message):
    (tmp_path / "t.mps").write_text(CLASSIC["testlp"].replace(*change, 1))
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        read_mps(tmp_path / "t.mps")
