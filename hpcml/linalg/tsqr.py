"""Communication-avoiding QR of a tall-skinny row-sharded matrix (TSQR).

Benson, Gleich and Demmel's "direct TSQR": each rank factors its rows
``Y_r = Q_r R_r`` (Householder, so ``Q_r`` is orthogonal to working
precision); the small ``R_r`` are gathered on rank 0, which factors the
stack ``[R_0; R_1; …] = Q̃ R`` and sends every rank its block of ``Q̃`` and
the final ``R``.  Then ``Q = diag(Q_r) Q̃`` is orthogonal to working
precision whatever the conditioning of ``Y``, unlike Spark's
``tallSkinnyQR`` which forms ``Q = Y R⁻¹``.  One gather and one broadcast
of ``p`` small matrices; the tall matrix never moves.
"""

import numpy as np


def _local_factor(Y):
    rows, k = Y.shape
    if rows >= k:
        return np.linalg.qr(Y)
    # Fewer rows than columns: the rows are their own "R" (identity Q₁),
    # so the stack on rank 0 still holds all the information.
    return np.eye(rows), Y


def _factor_stack(stacked, svd):
    Q2, R = np.linalg.qr(stacked)
    # Signs fixed so that R has a non-negative diagonal: the unique
    # factorisation, hence the same Q for any rank count.
    signs = np.where(np.diag(R) < 0, -1.0, 1.0)
    Q2 = Q2 * signs
    R = signs[:, None] * R
    if not svd:
        return Q2, R
    Ur, s, Wt = np.linalg.svd(R)
    return Q2 @ Ur, np.vstack([s, Wt.T])


def _tsqr(Y, comm, svd):
    Y = np.asarray(Y, dtype=np.float64)
    Q1, R1 = _local_factor(Y)
    stacked = comm.gatherv(np.ascontiguousarray(R1), root=0)
    counts = np.array(comm.allgather_obj(R1.shape[0]), dtype=np.int64)
    # Rank 0 alone factors the stack and broadcasts: every rank then holds
    # bit-identical small factors whatever its BLAS does.
    both = np.vstack(_factor_stack(stacked, svd)) if comm.rank == 0 else None
    both = comm.bcast(both, root=0)
    start = int(counts[:comm.rank].sum())
    return Q1 @ both[start:start + counts[comm.rank]], both[counts.sum():]


def tsqr(Y, comm):
    """Thin QR of the row-sharded ``Y`` (this rank's rows, shape ``(m_r, k)``).

    Parameters
    ----------
    Y : numpy.ndarray
        This rank's rows; any rank may hold none.  Global rows ``m >= k``.
    comm : hpcml.comm.Comm

    Returns
    -------
    Q : numpy.ndarray
        This rank's rows of the orthonormal factor, shape ``(m_r, k)``.
    R : numpy.ndarray
        The ``k × k`` upper-triangular factor with a non-negative diagonal,
        bit-identical on every rank.
    """
    return _tsqr(Y, comm, svd=False)


def tsqr_svd(Y, comm):
    """Thin SVD ``Y = U diag(s) Wᵀ`` of a tall-skinny row-sharded ``Y`` through TSQR.

    Returns
    -------
    U : numpy.ndarray
        This rank's rows of the left singular vectors, ``(m_r, k)``.
    s : numpy.ndarray
        Singular values, descending (bit-identical on every rank).
    W : numpy.ndarray
        Right singular vectors as columns, ``(k, k)`` (bit-identical on every rank).
    """
    U, tail = _tsqr(Y, comm, svd=True)
    return U, tail[0].copy(), np.ascontiguousarray(tail[1:])
