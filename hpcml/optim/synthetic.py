"""Test problems with known structure: sparse regression and LPs with a known optimum."""

import numpy as np
import scipy.sparse as sp


def lasso_problem(m, n, nonzeros, noise, rng, dtype=np.float64):
    """Gaussian ``A`` (m × n), a ``nonzeros``-sparse truth and ``b = A x + noise·ε``.

    Returns
    -------
    A, b, x_true
    """
    A = rng.standard_normal((m, n)).astype(dtype)
    x = np.zeros(n)
    support = rng.choice(n, size=min(nonzeros, n), replace=False)
    x[support] = rng.choice([-1.0, 1.0], size=support.size) * (1.0 + rng.random(support.size))
    b = A @ x + noise * rng.standard_normal(m)
    return A, b, x


def random_lp(m, n, density, rng, inequalities=0):
    """A random sparse LP with a known optimal primal-dual pair (TFOCS ``test_sLP`` style).

    ``minimise cᵀx`` s.t. ``A_eq x = b_eq``, ``A_ub x ≤ b_ub``, ``x ≥ 0``;
    the optimum ``x*`` has about half its entries positive, and ``c`` is
    built from a dual point and complementary reduced costs, so ``x*`` is
    optimal with objective ``cᵀx*``.

    Returns
    -------
    dict
        ``c``, ``A_eq``, ``b_eq``, ``A_ub``, ``b_ub`` (CSR or ``None``),
        ``x_star``, ``objective``.
    """
    def matrix(rows):
        return sp.random(rows, n, density=density, format="csr", rng=rng,
                         data_rvs=rng.standard_normal)
    A_eq = matrix(m)
    x_star = np.where(rng.random(n) < 0.5, rng.random(n), 0.0)
    y_eq = rng.standard_normal(m)
    reduced = np.where(x_star > 0, 0.0, rng.random(n))
    c = A_eq.T @ y_eq + reduced
    A_ub = b_ub = None
    if inequalities:
        A_ub = matrix(inequalities)
        slack = np.where(rng.random(inequalities) < 0.5, rng.random(inequalities), 0.0)
        b_ub = A_ub @ x_star + slack
        # Active rows (no slack) get a positive multiplier: ub rows enter c with minus sign.
        y_ub = np.where(slack == 0, rng.random(inequalities), 0.0)
        c = c - A_ub.T @ y_ub
    return {"c": c, "A_eq": A_eq, "b_eq": A_eq @ x_star, "A_ub": A_ub, "b_ub": b_ub,
            "x_star": x_star, "objective": float(c @ x_star)}


def tfocs_lp(m, n, density, rng):
    """An LP in the shape of TFOCS's ``test_LinearProgram`` with a known optimal pair.

    TFOCS draws ``A = sprand(m, n, density)`` (uniform entries in [0, 1)),
    a point ``x ~ N(10, 1)``, ``c ~ N(0, 1)`` and sets ``b = A x``: feasible,
    with an optimum known only from another solver.  Here ``A`` and the
    scale of ``x`` are drawn the same way, but on ``m`` random columns
    only (the other entries of ``x*`` are 0), and ``c = Aᵀy* + r`` with
    ``y* ~ N(0, 1)`` and reduced costs ``r`` uniform in [0, 1) off the
    support, 0 on it.  So ``x*`` and ``y*`` are optimal (complementary),
    unique when the ``m`` support columns are independent, and
    ``objective = cᵀx* = bᵀy*``.

    Returns
    -------
    dict
        ``c``, ``A_eq`` (CSR), ``b_eq``, ``A_ub``/``b_ub`` (``None``),
        ``x_star``, ``y_star``, ``objective``.
    """
    A = sp.random(m, n, density=density, format="csr", rng=rng, data_rvs=rng.random)
    support = rng.choice(n, size=min(m, n), replace=False)
    x_star = np.zeros(n)
    x_star[support] = np.abs(10.0 + rng.standard_normal(support.size))
    y_star = rng.standard_normal(m)
    reduced = rng.random(n)
    reduced[support] = 0.0
    c = A.T @ y_star + reduced
    return {"c": c, "A_eq": A, "b_eq": A @ x_star, "A_ub": None, "b_ub": None,
            "x_star": x_star, "y_star": y_star, "objective": float(c @ x_star)}
