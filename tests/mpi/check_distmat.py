"""DistMatrix statistics and its operator's products against numpy, dense and CSR, with uneven and empty shards."""

import sys

import numpy as np
import scipy.sparse as sp

from hpcml.comm import Comm
from hpcml.distmat import DistMatrix
from hpcml.operator import Centred, MatrixOperator, Normal

comm = Comm.world()
p = comm.size
rng = np.random.default_rng(42)
n = 13
for m in (p * 7 + 1, 1, 0 if p > 1 else 2):   # uneven shards, then ranks with no rows
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        full = rng.standard_normal((m, n)).astype(dtype)
        full[:, 3] = 0.0
        sparse = sp.random(m, n, density=0.3, format="csr", dtype=dtype, rng=rng)
        for G in (full, sparse):
            dense = G.toarray() if sp.issparse(G) else G
            A = DistMatrix.from_global(G, comm)
            assert A.shape == (m, n) and A.issparse == sp.issparse(G)
            lo, hi = A.row_offset, A.row_offset + A.local_rows
            x = rng.standard_normal(n)
            y = rng.standard_normal(m)
            V = rng.standard_normal((n, 4))
            scale = max(1.0, np.abs(dense).sum())
            def close(a, b):
                assert np.allclose(a, b, rtol=tol, atol=tol * scale), (np.abs(a - b).max(), m, dtype)
            op = MatrixOperator(A, dtype)
            close(op.matvec(x), dense[lo:hi] @ x)
            close(op.matmat(V), dense[lo:hi] @ V)
            close(op.rmatvec(y[lo:hi]), dense.T @ y)
            close(op.rmatmat(dense[lo:hi] @ V), dense.T @ (dense @ V))
            close(op.gram(), dense.T @ dense)
            close(Normal(op).matvec(x), dense.T @ (dense @ x))
            close(op.normal(V), dense.T @ (dense @ V))
            close(A.col_norms(), np.linalg.norm(dense.astype(np.float64), axis=0))
            assert A.nnz == (G.nnz if sp.issparse(G) else G.size)
            whole = A.gather(root=0)
            if comm.rank == 0:
                assert np.array_equal(whole, dense)
            if not m:
                continue   # no column means
            close(A.col_means(), dense.astype(np.float64).mean(axis=0))
            # The centred operator against the centred matrix formed densely.
            C = Centred(A, dtype=dtype)
            shifted = dense - dense.astype(np.float64).mean(axis=0)
            close(C.matmat(V), shifted[lo:hi] @ V)
            close(C.rmatvec(y[lo:hi]), shifted.T @ y)
            close(C.rmatmat(shifted[lo:hi] @ V), shifted.T @ (shifted @ V))
            close(C.normal(V), shifted.T @ (shifted @ V))
            close(C.gram(), shifted.T @ shifted)
            close(C.local_dense(), shifted[lo:hi])
            assert abs(C.frobenius_sq() - np.sum(shifted.astype(np.float64) ** 2)) <= tol * scale ** 2
print("ok", file=sys.stderr)
