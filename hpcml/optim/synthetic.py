"""Test problems with known structure: sparse regression and LPs with a known optimum."""

import h5py
import numpy as np
import scipy.sparse as sp

from hpcml.io.hdf5 import atomic_file, write_matrix
from hpcml.io.mps import write_mps


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


def write_lasso_problem(path, rows, cols, nonzeros, noise, seed):
    """Write ``/A``, ``/b`` and ``/x_true`` of :func:`lasso_problem` to ``path`` (atomically; serial).

    ``seed`` seeds a fresh :func:`numpy.random.default_rng`.
    """
    A, b, x = lasso_problem(rows, cols, nonzeros, noise, np.random.default_rng(seed))
    with atomic_file(path) as tmp, h5py.File(tmp, "w") as handle:
        handle["A"], handle["b"], handle["x_true"] = A, b, x


def write_random_lp(path, rows, cols, inequalities, density, seed, mps=None):
    """Write a :func:`random_lp` to ``path`` (atomically; serial), and to ``mps`` as free MPS if given.

    The HDF5 file holds ``c``, ``A_eq`` and ``b_eq`` (and ``A_ub``, ``b_ub``
    with inequalities) as :func:`hpcml.io.lp.read_lp` reads them, and the
    optimum ``x_star`` with its value as the ``objective`` attribute.

    Returns
    -------
    float
        The optimal objective.
    """
    lp = random_lp(rows, cols, density, np.random.default_rng(seed), inequalities)
    with atomic_file(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle["c"], handle["b_eq"], handle["x_star"] = lp["c"], lp["b_eq"], lp["x_star"]
            handle.attrs["objective"] = lp["objective"]
            if lp["A_ub"] is not None:
                handle["b_ub"] = lp["b_ub"]
        write_matrix(f"{tmp}:/A_eq", lp["A_eq"])
        if lp["A_ub"] is not None:
            write_matrix(f"{tmp}:/A_ub", lp["A_ub"])
        if mps:
            A = sp.vstack([lp["A_eq"]] + ([lp["A_ub"]] if lp["A_ub"] is not None else []))
            lo = [lp["b_eq"]] + ([np.full(inequalities, -np.inf)] if inequalities else [])
            hi = [lp["b_eq"]] + ([lp["b_ub"]] if inequalities else [])
            write_mps(mps, lp["c"], A, np.concatenate(lo), np.concatenate(hi))
    return lp["objective"]


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
