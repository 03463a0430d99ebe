"""The row-sharded matrix seen as a linear operator, optionally centred.

PCA needs the SVD of ``A − 1 μᵀ`` (``μ`` the column means).  Forming it
would densify a sparse ``A``; instead the shift is folded into every
product, at no extra communication:

* ``(A − 1μᵀ) X = A X − 1 (μᵀ X)`` — local rows, no message;
* ``(A − 1μᵀ)ᵀ Y = Aᵀ Y − μ (1ᵀ Y)`` — the column sums of ``Y`` ride in
  the same allreduce as ``Aᵀ Y``;
* ``(A − 1μᵀ)ᵀ (A − 1μᵀ) V = AᵀA V − m μ (μᵀ V)`` since ``Aᵀ1 = m μ`` —
  the fused one-pass product plus a rank-one term computed locally.
"""

import numpy as np
import scipy.sparse as sp

from hpcml.kernels.normal import normal_product


class RowOperator:
    """``A`` or ``A − 1 μᵀ`` for a :class:`~hpcml.distmat.DistMatrix` ``A``.

    Parameters
    ----------
    A : hpcml.distmat.DistMatrix
    mean : numpy.ndarray, optional
        Replicated column shift ``μ`` (length ``n``); ``None`` for ``A`` itself.

    Attributes
    ----------
    matvecs : int
        Products with ``A`` or ``Aᵀ`` so far, one per column of the block
        (a fused ``AᵀA v`` counts as two): the figure iterative methods
        are compared by.
    """

    def __init__(self, A, mean=None):
        self.A = A
        self.comm = A.comm
        self.shape = A.shape
        self.dtype = A.dtype
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.matvecs = 0

    @property
    def local_rows(self):
        return self.A.local_rows

    @property
    def issparse(self):
        return self.A.issparse

    def _cols(self, X):
        return 1 if X.ndim == 1 else X.shape[1]

    def matmat(self, X):
        """``A X`` (this rank's rows) for a replicated ``X`` of shape ``(n,)`` or ``(n, k)``."""
        self.matvecs += self._cols(X)
        Y = np.asarray(self.A.local @ X.astype(self.dtype, copy=False), dtype=np.float64)
        if self.mean is not None:
            Y = Y - self.mean @ X
        return Y

    def rmatmat(self, Y):
        """``Aᵀ Y`` (replicated, one allreduce) for this rank's rows ``Y``."""
        self.matvecs += self._cols(Y)
        Y = np.asarray(Y, dtype=np.float64)
        Y2 = Y[:, None] if Y.ndim == 1 else Y
        n = self.shape[1]
        head = np.asarray(self.A.local.T @ Y2, dtype=np.float64)
        if self.mean is None:
            out = self.comm.allreduce(np.ascontiguousarray(head))
        else:
            # One message: the column sums of Y travel as an extra row.
            buf = np.vstack([head, Y2.sum(axis=0, keepdims=True)])
            buf = self.comm.allreduce(np.ascontiguousarray(buf))
            out = buf[:n] - np.outer(self.mean, buf[n])
        return out[:, 0] if Y.ndim == 1 else out

    def normal(self, V):
        """``AᵀA V`` with one allreduce.

        A vector goes through the fused one-pass kernel (the product is
        memory-bound); a dense block of several columns through two GEMMs,
        which are compute-bound and faster than any single pass in Numba.
        """
        self.matvecs += 2 * self._cols(V)
        local = self.A.local
        if V.ndim == 2 and V.shape[1] > 1 and not self.issparse:
            Vc = V.astype(self.dtype, copy=False)
            part = np.ascontiguousarray(local.T @ (local @ Vc))
        else:
            part = normal_product(local, V)
        out = self.comm.allreduce(part).astype(np.float64, copy=False)
        if self.mean is not None:
            out = out - self.shape[0] * np.multiply.outer(self.mean, self.mean @ V)
        return out

    def gram(self):
        """``AᵀA`` (``n × n``, float64, replicated) with one allreduce."""
        local = self.A.local
        if sp.issparse(local):
            local = local.astype(np.float64)
            g = (local.T @ local).toarray()
        else:
            local = local.astype(np.float64, copy=False)
            g = local.T @ local
        g = self.comm.allreduce(np.ascontiguousarray(g))
        self.matvecs += 2 * self.shape[1]
        if self.mean is not None:
            g -= self.shape[0] * np.outer(self.mean, self.mean)
        return g

    def local_dense(self):
        """This rank's rows as a dense float64 array (tall-skinny methods only).

        Counted as ``n`` products: it is ``A I``, one pass over the rows.
        """
        self.matvecs += self.shape[1]
        local = self.A.local
        block = local.toarray() if sp.issparse(local) else local
        block = np.array(block, dtype=np.float64)
        if self.mean is not None:
            block -= self.mean
        return block

    def frobenius_sq(self):
        """``‖A‖_F²`` of the (centred) operator, collective; sparse input stays sparse."""
        local = self.A.local
        values = local.data if sp.issparse(local) else local
        total = self.comm.allreduce_scalar(float(np.sum(values.astype(np.float64) ** 2)))
        if self.mean is not None:
            total -= self.shape[0] * float(self.mean @ self.mean)
        return max(total, 0.0)
