"""Golub–Kahan–Lanczos bidiagonalisation of ``A`` with thick restart.

Working on ``A`` (products ``A q`` and ``Aᵀ p``) rather than on ``AᵀA``
keeps the condition number unsquared: the Ritz values come from the SVD
of a small projected matrix and are accurate to ``O(ε‖A‖)`` absolutely,
so singular values far below ``√ε ‖A‖`` are still resolved — where
``gram`` and ``lanczos`` (and Spark's ``computeSVD``) lose them.

After ``j`` steps, with ``P`` (``m × j``, row-sharded) and ``Q``
(``n × (j+1)``, replicated) orthonormal::

    A Q_j = P_j B_j,      Aᵀ P_j = Q_j B_jᵀ + β_j q_{j+1} e_jᵀ,

``B_j`` upper triangular (bidiagonal except after a restart).  Both sides
are fully reorthogonalised by classical Gram–Schmidt applied twice
("twice is enough"), which keeps ``A Q = P B`` exact to rounding and the
bases orthonormal to working precision.  With ``B = X Σ Yᵀ`` the Ritz
triplet ``(σ_i, P x_i, Q y_i)`` has residual ``β_j |e_jᵀ x_i|``, known
without touching ``A``.  Thick restart (Wu & Simon; Baglama & Reichel's
IRLBA) keeps the best ``ℓ`` Ritz vectors and ``q_{j+1}``; the new first
column of couplings is recovered by the next reorthogonalisation.

Control flow: the per-step quantities ``α`` come out of allreduces and
``β`` out of local work on allreduced (replicated) vectors, as in the
rest of hpcml; the decision to stop after a restart cycle is taken on
rank 0 and broadcast, so the ranks leave the loop together.
"""

import numpy as np


def _orthogonalise_rows(P, w, comm):
    """CGS2 of the row-sharded ``w`` against the row-sharded ``P``; returns ``w``, coefficients, ``‖w‖``.

    Two allreduces: the first projection, then the second projection with
    ``‖w‖²`` riding in the same message.
    """
    j = P.shape[1]
    c1 = comm.allreduce(np.ascontiguousarray(P.T @ w)) if j else np.zeros(0)
    if j:
        w = w - P @ c1
    buf = comm.allreduce(np.concatenate([P.T @ w, [w @ w]]))
    c2 = buf[:j]
    if j:
        w = w - P @ c2
    norm = np.sqrt(max(buf[j] - c2 @ c2, 0.0))
    return w, c1 + c2, norm


def _orthogonalise_cols(Q, r):
    """CGS2 of the replicated ``r`` against the replicated ``Q`` (no communication)."""
    for _ in range(2):
        r = r - Q @ (Q.T @ r)
    return r, float(np.linalg.norm(r))


def golub_kahan(op, k, tol, max_iter, seed, ncv=None):
    """Top ``k`` singular triplets of ``op`` by thick-restarted Lanczos bidiagonalisation (collective).

    Parameters
    ----------
    op : hpcml.operator.MatrixOperator
        ``A`` or the centred ``A − 1μᵀ`` (:class:`~hpcml.operator.Centred`).
    k : int
    tol : float
        A triplet has converged when its residual ``‖Aᵀu − σv‖`` is at most
        ``max(tol · σᵢ, ε j σ₁)``: relative to its own singular value, down
        to the rounding level of the basis.
    max_iter : int
        Most restarts.
    seed : int
    ncv : int, optional
        Basis size ``j`` (default ``min(m, n, max(2k + 10, 20))``).

    Returns
    -------
    V : numpy.ndarray
        ``(n, k)`` right Ritz vectors, descending, replicated.
    info : dict
        ``s`` (Ritz values), ``U`` (this rank's rows of the left Ritz
        vectors), ``iterations`` (bidiagonalisation steps), ``restarts``,
        ``converged`` (count among the top ``k``), ``ritz_residuals``,
        ``message`` (empty on success).
    """
    m, n = op.shape
    comm = op.comm
    eps = np.finfo(np.float64).eps
    size = min(m, n, max(2 * k + 10, 20)) if ncv is None else min(ncv, m, n)
    keep = min(size - 1, max(k, (k + size) // 2))
    shared = np.random.default_rng(seed)              # same draws on every rank
    local = np.random.default_rng([seed, comm.rank])  # this rank's rows of new left vectors
    Q = np.zeros((n, size + 1))
    P = np.zeros((op.local_rows, size))
    B = np.zeros((size, size))
    q = shared.standard_normal(n)
    Q[:, 0] = q / np.linalg.norm(q)
    start, restarts, steps, scale = 0, 0, 0, 0.0
    while True:
        for i in range(start, size):
            steps += 1
            w, coupling, alpha = _orthogonalise_rows(P[:, :i], op.matmat(Q[:, i]), comm)
            scale = max(scale, alpha, np.abs(coupling).max(initial=0.0))
            B[:i, i] = coupling
            if alpha <= eps * size * scale:
                # A Q lies in span(P): continue with any new direction,
                # coupled by α = 0 so that A Q = P B stays exact.
                w, _, norm = _orthogonalise_rows(P[:, :i], local.standard_normal(op.local_rows), comm)
                P[:, i] = w / norm
                alpha = 0.0
            else:
                P[:, i] = w / alpha
            B[i, i] = alpha
            r, beta = _orthogonalise_cols(Q[:, :i + 1], op.rmatmat(P[:, i]))
            scale = max(scale, beta)
            if beta > eps * size * scale:
                Q[:, i + 1] = r / beta
            elif i + 1 < min(size, n):
                r, norm = _orthogonalise_cols(Q[:, :i + 1], shared.standard_normal(n))
                Q[:, i + 1] = r / norm
                beta = 0.0
            else:
                Q[:, i + 1] = 0.0
                beta = 0.0
            comm.mark_iteration()   # one bidiagonalisation step
        X, sigma, Yt = np.linalg.svd(B)
        residuals = beta * np.abs(X[size - 1, :])
        # Relative to each σᵢ (floored at rounding level), so that small
        # singular values are resolved to working precision, not to tol·σ₁.
        floor = eps * size * max(sigma[0], np.finfo(float).tiny)
        converged = int(np.sum(residuals[:k] <= np.maximum(tol * sigma[:k], floor)))
        done = comm.bcast_obj(converged == k or restarts >= max_iter, root=0)
        if done:
            break
        restarts += 1
        # Thick restart: keep the best `keep` Ritz vectors and q_{j+1}.
        Q[:, :keep] = Q[:, :size] @ Yt[:keep].T
        Q[:, keep] = Q[:, size]
        P[:, :keep] = P @ X[:, :keep]
        B[:] = 0.0
        B[np.arange(keep), np.arange(keep)] = sigma[:keep]
        start = keep
    message = "" if converged == k else f"not converged after {restarts} restarts"
    # The Ritz triplets themselves: σ from the small SVD of B is more
    # accurate for the small values than a new Rayleigh–Ritz step through
    # A V would be (that product rounds at ε‖A‖ per entry).
    return np.ascontiguousarray(Q[:, :size] @ Yt[:k].T), {
        "iterations": steps, "restarts": restarts, "converged": converged,
        "ritz_residuals": residuals[:k], "s": sigma[:k].copy(),
        "U": np.ascontiguousarray(P @ X[:, :k]), "message": message}
