"""Randomized subspace iteration (Halko, Martinsson & Tropp 2011).

A Gaussian block ``Ω`` of ``k + p`` columns (``p`` the oversampling) is
drawn from the seed, identically on every rank, and refined by power
iterations ``Ω ← orth(AᵀA Ω)``.  Each iteration is one fused pass over the
local rows (block kernel) and one allreduce of an ``n × (k+p)`` block;
re-orthonormalising after every product keeps the small directions from
drowning in rounding, as HMT's Algorithm 4.4 prescribes.

Between iterations a Rayleigh–Ritz step on ``AᵀA`` (``T = Ωᵀ Z`` with
``Z = AᵀA Ω``) gives Ritz values and residuals with no extra
communication, so the loop stops once the top ``k`` have converged — or
after a fixed number of power iterations when one is given, the classic
HMT use.  The caller's final Rayleigh–Ritz step through TSQR gives the
singular triplets.
"""

import numpy as np


def randomized(op, k, tol, max_iter, seed, oversampling=10, power_iterations=None):
    """An orthonormal basis of (nearly) the top-``k`` right singular subspace (collective).

    Parameters
    ----------
    op : hpcml.operator.MatrixOperator
        ``A`` or the centred ``A − 1μᵀ`` (:class:`~hpcml.operator.Centred`).
    k : int
    tol : float
        Stop when each of the top ``k`` Ritz pairs of ``AᵀA`` has
        residual at most ``max(tol · σ₁ σ_i, 100 ε σ₁²)`` (a triplet
        residual of about ``tol · σ₁`` where rounding allows).
    max_iter : int
        Most power iterations when iterating to ``tol``.
    seed : int
    oversampling : int
    power_iterations : int, optional
        Run exactly this many power iterations and do not test convergence.

    Returns
    -------
    V : numpy.ndarray
        ``(n, k + p)`` orthonormal basis, replicated (``k + p`` capped at
        ``min(m, n)``).
    info : dict
        ``iterations`` (power iterations), ``converged`` (count, ``None``
        with a fixed number of power iterations), ``message``.
    """
    m, n = op.shape
    comm = op.comm
    width = min(k + oversampling, m, n)
    omega, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, width)))
    limit = max_iter if power_iterations is None else power_iterations
    converged, iterations = 0, 0
    for iterations in range(1, limit + 1):
        Z = op.normal(omega)
        if power_iterations is None:
            T = omega.T @ Z
            values, W = np.linalg.eigh((T + T.T) / 2)
            values, W = values[::-1][:k], W[:, ::-1][:, :k]
            residual = np.linalg.norm(Z @ W - omega @ (W * values), axis=0)
            top = max(values[0], np.finfo(float).tiny)
            # Below √(ε/tol)·σ₁ rounding in AᵀA hides the pair; such pairs count
            # as settled here and the caller's residuals on A itself judge them.
            bound = np.maximum(tol * np.sqrt(top * np.maximum(values, 0.0)), 100 * np.finfo(float).eps * top)
            converged = int(np.sum(residual <= bound))
            if comm.bcast_obj(converged == k, root=0):
                comm.mark_iteration()
                return omega, {"iterations": iterations, "converged": k, "message": ""}
        omega, _ = np.linalg.qr(Z)
        comm.mark_iteration()   # one power iteration
    if power_iterations is not None:
        # A fixed count promises nothing: the caller's measured residuals judge.
        return omega, {"iterations": iterations, "converged": None, "message": ""}
    return omega, {"iterations": iterations, "converged": converged,
                   "message": f"not converged after {limit} power iterations"}
