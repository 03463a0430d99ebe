"""Small random LPs of every kind (bounds of all sorts, equality and ≤ rows), for the LP solver tests."""

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog


def general_lp(seed, m_eq=6, m_ub=5, n=14, density=0.5):
    """A random LP with free, boxed, lower- and upper-bounded variables, feasible by construction.

    Its status (optimal or unbounded) is whatever HiGHS finds.  Returns a
    dict with ``c``, ``A_eq``, ``b_eq``, ``A_ub``, ``b_ub`` (CSR or
    ``None``), ``lower``, ``upper``.
    """
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 4, n)              # 0: x ≥ l, 1: l ≤ x ≤ u, 2: free, 3: x ≤ u
    lower = np.where((kinds == 0) | (kinds == 1), rng.uniform(-2, 1, n), -np.inf)
    upper = np.where((kinds == 1) | (kinds == 3), rng.uniform(1, 3, n), np.inf)
    x0 = np.where(np.isfinite(lower), lower, 0.0) + rng.random(n)
    x0 = np.minimum(x0, upper)

    def matrix(rows):
        return sp.random(rows, n, density=density, format="csr", rng=rng, data_rvs=rng.standard_normal)
    A_eq = matrix(m_eq) if m_eq else None
    A_ub = matrix(m_ub) if m_ub else None
    # c = A_eqᵀy + A_ubᵀz + (nonnegative where a lower bound, nonpositive where an
    # upper bound) with z ≤ 0 keeps most draws bounded; a few still are not.
    c = rng.standard_normal(n) * 0.1
    if m_eq:
        c += A_eq.T @ rng.standard_normal(m_eq)
    if m_ub:
        c -= A_ub.T @ rng.random(m_ub)
    c += np.where(np.isfinite(lower), rng.random(n), 0) - np.where(np.isfinite(upper), rng.random(n), 0)
    return {"c": c, "A_eq": A_eq, "b_eq": None if A_eq is None else A_eq @ x0,
            "A_ub": A_ub, "b_ub": None if A_ub is None else A_ub @ x0 + rng.random(m_ub) * (rng.random(m_ub) < 0.5),
            "lower": lower, "upper": upper}


def highs(lp):
    """scipy's HiGHS on the same LP."""
    bounds = [(lo if np.isfinite(lo) else None, hi if np.isfinite(hi) else None)
              for lo, hi in zip(lp["lower"], lp["upper"])]
    dense = {k: (None if lp[k] is None else lp[k].toarray()) for k in ("A_eq", "A_ub")}
    return linprog(lp["c"], A_eq=dense["A_eq"], b_eq=lp["b_eq"], A_ub=dense["A_ub"], b_ub=lp["b_ub"],
                   bounds=bounds, method="highs")


def check_farkas(lp, out, tol=1e-6):
    """Independently check an infeasibility certificate ``farkas_eq``/``farkas_ub`` (full rows)."""
    d_eq = out.get("farkas_eq", np.zeros(0))
    d_ub = out.get("farkas_ub", np.zeros(0))
    assert np.all(d_ub <= 0)
    g = np.zeros(lp["c"].size)
    rhs = 0.0
    if lp["A_eq"] is not None:
        g += lp["A_eq"].T @ d_eq
        rhs += lp["b_eq"] @ d_eq
    if lp["A_ub"] is not None:
        g += lp["A_ub"].T @ d_ub
        rhs += lp["b_ub"] @ d_ub
    # max over the box of gᵀx: +inf terms (g toward an infinite bound) must vanish.
    top = np.where(g > 0, lp["upper"], np.where(g < 0, lp["lower"], 0.0))
    infinite = (g != 0) & ~np.isfinite(top)
    finite_max = float(g[~infinite] @ top[~infinite]) if (~infinite).any() else 0.0
    margin = rhs - finite_max
    assert margin > 0, margin
    assert np.linalg.norm(g[infinite]) <= tol * margin


def check_ray(lp, ray, tol=1e-6):
    """Independently check an unboundedness certificate ``ray`` (a primal direction)."""
    descent = lp["c"] @ ray
    assert descent < 0
    viol = [np.zeros(0)]
    if lp["A_eq"] is not None:
        viol.append(lp["A_eq"] @ ray)
    if lp["A_ub"] is not None:
        viol.append(np.maximum(lp["A_ub"] @ ray, 0))
    viol.append(np.minimum(ray[np.isfinite(lp["lower"])], 0))
    viol.append(np.maximum(ray[np.isfinite(lp["upper"])], 0))
    assert np.linalg.norm(np.concatenate(viol)) <= tol * abs(descent)


def infeasible_lp(seed):
    """:func:`general_lp` plus a ≤ row asking ``a₀ᵀx ≥ b₀ + 1`` of its first equality ``a₀ᵀx = b₀``."""
    lp = general_lp(seed)
    row = lp["A_eq"][0]
    lp["A_ub"] = sp.vstack([lp["A_ub"], -row], format="csr")
    lp["b_ub"] = np.append(lp["b_ub"], -lp["b_eq"][0] - 1.0)
    return lp


def unbounded_lp(seed):
    """:func:`general_lp` plus two columns ``a``, ``−a`` (both ``≥ 0``) whose sum lowers the cost."""
    lp = general_lp(seed)
    rng = np.random.default_rng(seed + 1000)
    n = lp["c"].size
    a_eq = rng.standard_normal(lp["A_eq"].shape[0])
    a_ub = rng.standard_normal(lp["A_ub"].shape[0])
    lp["A_eq"] = sp.hstack([lp["A_eq"], sp.csr_matrix(np.c_[a_eq, -a_eq])], format="csr")
    lp["A_ub"] = sp.hstack([lp["A_ub"], sp.csr_matrix(np.c_[a_ub, -a_ub])], format="csr")
    lp["c"] = np.append(lp["c"], [-1.0, 0.5])
    lp["lower"] = np.append(lp["lower"], [0.0, 0.0])
    lp["upper"] = np.append(lp["upper"], [np.inf, np.inf])
    assert lp["c"].size == n + 2
    return lp


def presolvable_lp(seed, case="all"):
    """A random LP with every presolve reduction in it, or one that the presolve alone decides.

    ``case``: ``all`` (feasible, bounded: an empty row, singleton ≤ rows with
    both signs, an equality singleton, a fixed variable, empty columns),
    ``empty_row`` (infeasible: ``0 ≤ −1``), ``crossing`` (infeasible:
    singleton bounds ``x₀ ≥ 2`` and ``x₀ ≤ 1`` on different rows),
    ``unbounded_column`` (an empty column with ``c < 0``, no upper bound).
    """
    rng = np.random.default_rng(seed)
    n, m = 9, 4
    x_star = rng.uniform(0.5, 1.5, n)
    dense = rng.standard_normal((m, n))
    dense[:, 7:] = 0.0                              # x₇, x₈ appear in no row
    A_eq = np.vstack([dense[:2], np.eye(n)[2] * 2.0])          # 2 x₂ = 3
    b_eq = np.concatenate([dense[:2] @ x_star, [3.0]])
    b_eq[:2] += 2.0 * dense[:2, 2] * (1.5 / 2.0 - x_star[2])  # consistent with x₂ = 1.5
    ub_rows = [dense[2:], np.zeros((1, n)), -2.0 * np.eye(n)[0], 3.0 * np.eye(n)[1], -np.eye(n)[4]]
    A_ub = np.vstack(ub_rows)
    x_feas = x_star.copy()
    x_feas[2] = 1.5
    x_feas[3] = 1.0
    b_ub = np.concatenate([dense[2:] @ x_feas + rng.uniform(0.1, 1.0, m - 2), [0.5], [-1.0], [6.0], [-0.25]])
    lower, upper = np.zeros(n), np.full(n, np.inf)
    lower[3] = upper[3] = 1.0                       # fixed
    lower[5], upper[6] = -np.inf, 4.0
    c = rng.uniform(-1.0, 1.0, n)
    c[0], c[1], c[4] = 3.0, -2.0, 1.0               # push onto the singleton bounds x₀ ≥ ½, x₁ ≤ 2, x₄ ≥ ¼
    c[7], c[8] = 0.7, 0.0
    # Keep it bounded: x₅ free and x₆ ≤ 4 are held by ‖·‖∞-style ≤ rows.
    A_ub = np.vstack([A_ub, np.eye(n)[5], -np.eye(n)[5], np.eye(n)[6] - np.eye(n)[5]])
    b_ub = np.concatenate([b_ub, [5.0, 5.0, 6.0]])
    A_ub[-1, 0] = 0.5
    b_ub[-1] += 0.5 * 2.0
    if case == "empty_row":
        b_ub[m - 2] = -1.0
    elif case == "crossing":
        A_ub = np.vstack([A_ub, np.eye(n)[0]])
        b_ub = np.concatenate([b_ub, [0.25]])
    elif case == "unbounded_column":
        c[8] = -1.0
    return {"c": c, "A_eq": sp.csr_matrix(A_eq), "b_eq": b_eq, "A_ub": sp.csr_matrix(A_ub), "b_ub": b_ub,
            "lower": lower, "upper": upper}
