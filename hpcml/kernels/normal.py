"""The fused normal-equation product ``Aᵀ(A v)`` over a local row block.

A two-pass ``A.T @ (A @ v)`` streams the block from memory twice.  Here each
row is used twice while it sits in L1: once for ``t = a_i · v`` and once for
``out += t a_i``, so the block is read from memory once — the product is
bound by one pass of memory bandwidth.
"""

import numpy as np
import scipy.sparse as sp
from numba import njit

from hpcml.kernels import JIT


@njit(**JIT)
def _normal_dense(A, V, out):
    m, n = A.shape
    k = V.shape[1]
    t = np.empty(k, dtype=out.dtype)
    for i in range(m):
        for c in range(k):
            acc = 0.0
            for j in range(n):
                acc += A[i, j] * V[j, c]
            t[c] = acc
        for j in range(n):
            a = A[i, j]
            for c in range(k):
                out[j, c] += a * t[c]


@njit(**JIT)
def _normal_dense_vec(A, v, out):
    m, n = A.shape
    for i in range(m):
        acc = 0.0
        for j in range(n):
            acc += A[i, j] * v[j]
        for j in range(n):
            out[j] += acc * A[i, j]


# The CSR kernels index with unsigned integers (np.uintp): a signed index
# makes Numba emit a wrap-around test for negative values on every gather
# and scatter, which blocks vectorisation and made the fused product ~1.5x
# slower than scipy's two passes; unsigned, it is faster than them.


@njit(**JIT)
def _normal_csr_vec(data, indices, indptr, v, out):
    for i in range(indptr.shape[0] - 1):
        lo, hi = np.uintp(indptr[i]), np.uintp(indptr[i + 1])
        acc = 0.0
        for p in range(lo, hi):
            acc += data[p] * v[np.uintp(indices[p])]
        for p in range(lo, hi):
            out[np.uintp(indices[p])] += acc * data[p]


@njit(**JIT)
def _normal_csr(data, indices, indptr, V, out):
    m = indptr.shape[0] - 1
    k = V.shape[1]
    t = np.empty(k, dtype=out.dtype)
    for i in range(m):
        lo, hi = np.uintp(indptr[i]), np.uintp(indptr[i + 1])
        for c in range(k):
            t[c] = 0.0
        for p in range(lo, hi):
            a = data[p]
            col = np.uintp(indices[p])
            for c in range(k):
                t[c] += a * V[col, c]
        for p in range(lo, hi):
            a = data[p]
            col = np.uintp(indices[p])
            for c in range(k):
                out[col, c] += a * t[c]


def normal_product(local, V):
    """Return ``localᵀ (local V)`` for this rank's rows, reading them once.

    Parameters
    ----------
    local : numpy.ndarray or scipy.sparse.csr_matrix
        The local row block, float32 or float64, shape ``(m, n)``.
    V : numpy.ndarray
        Shape ``(n,)`` or ``(n, k)``; cast to the block's dtype.

    Returns
    -------
    numpy.ndarray
        Same shape as ``V``, dtype of the block.
    """
    dtype = local.dtype
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"normal_product needs float32 or float64, got {dtype}")
    n = local.shape[1]
    V = np.asarray(V)
    if V.shape[0] != n or V.ndim not in (1, 2):
        raise ValueError(f"V has shape {V.shape}, expected ({n},) or ({n}, k)")
    vector = V.ndim == 1
    V2 = np.ascontiguousarray(V.reshape(n, -1), dtype=dtype)
    out = np.zeros_like(V2)
    if sp.issparse(local):
        csr = local.tocsr()
        if vector:
            _normal_csr_vec(csr.data, csr.indices, csr.indptr, V2.ravel(), out.ravel())
        else:
            _normal_csr(csr.data, csr.indices, csr.indptr, V2, out)
    elif vector:
        A = np.ascontiguousarray(local)
        _normal_dense_vec(A, V2.ravel(), out.ravel())
    else:
        _normal_dense(np.ascontiguousarray(local), V2, out)
    return out[:, 0] if vector else out
