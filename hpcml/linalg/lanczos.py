"""ARPACK (scipy ``eigsh``) on ``AᵀA``, driven by the distributed fused product.

This is Spark MLlib's ``dist-eigs`` mode: the Lanczos vectors are ``n``
long and live where ARPACK runs; the matrix is touched only through
``v ↦ AᵀA v``, one pass over every rank's rows plus one allreduce of an
``n``-vector.

Lock-step by construction: **only rank 0 runs ARPACK**.  Every product
ARPACK asks for is announced by a broadcast from rank 0 of one buffer
holding a command word and the vector; every rank (rank 0 included) then
computes its part of ``AᵀA v`` and joins the allreduce.  When ARPACK
returns or raises, rank 0 broadcasts the stop command and then its
results.  So there is a single ARPACK state in the job, the other ranks'
control flow is a loop whose only input is what rank 0 broadcast, and
every rank takes part in exactly the same sequence of collectives:
``bcast, allreduce, bcast, allreduce, …, bcast(stop), bcast(result)``.
No rank can diverge because no rank other than 0 takes a decision — a
redundant run of ARPACK on every rank would instead rely on every rank's
BLAS producing bit-identical results, which heterogeneous nodes do not
promise.
"""

import numpy as np
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

_STOP, _PRODUCT = 0.0, 1.0


class _Driver:
    """Rank 0's side of the protocol: each call broadcasts ``v`` then joins the product."""

    def __init__(self, op):
        self.op = op
        self.n = op.shape[1]

    def __call__(self, v):
        v = np.asarray(v, dtype=np.float64).reshape(self.n)
        self.op.comm.bcast(np.concatenate([[_PRODUCT], v]), root=0)
        product = self.op.normal(v)
        self.op.comm.mark_iteration()   # one Lanczos step: one product
        return product

    def stop(self):
        self.op.comm.bcast(np.array([_STOP]), root=0)


def _serve(op):
    """The other ranks' side: do every product rank 0 announces until it says stop."""
    while True:
        message = op.comm.bcast(None, root=0)
        if message[0] == _STOP:
            return
        op.normal(np.ascontiguousarray(message[1:]))
        op.comm.mark_iteration()


def lanczos(op, k, tol, max_iter, seed, ncv=None):
    """Top ``k`` eigenpairs of ``AᵀA`` by implicitly restarted Lanczos (collective).

    Parameters
    ----------
    op : hpcml.operator.MatrixOperator
        ``A`` or the centred ``A − 1μᵀ`` (:class:`~hpcml.operator.Centred`).
    k : int
    tol : float
        ARPACK's relative tolerance on the eigenvalues of ``AᵀA``.
    max_iter : int
        ARPACK's limit on restarts.
    seed : int
        Start vector (drawn on rank 0).
    ncv : int, optional
        Lanczos basis size (default ``min(n, max(2k + 1, 20))``).

    Returns
    -------
    V : numpy.ndarray
        ``(n, j)`` Ritz vectors of the converged eigenpairs, descending,
        bit-identical on every rank; ``j == k`` unless ARPACK stopped early.
    info : dict
        ``iterations`` (Lanczos steps = products), ``converged`` (count),
        ``message`` (empty on success).
    """
    n = op.shape[1]
    comm = op.comm
    before = op.matvecs
    ncv = min(n, max(2 * k + 1, 20)) if ncv is None else ncv
    if comm.rank == 0:
        driver = _Driver(op)
        operator = LinearOperator((n, n), matvec=driver, dtype=np.float64)
        v0 = np.random.default_rng(seed).standard_normal(n)
        message = ""
        try:
            values, vectors = eigsh(operator, k=k, which="LA", tol=tol, maxiter=max_iter, ncv=ncv, v0=v0)
        except ArpackNoConvergence as exc:
            values, vectors = exc.eigenvalues, exc.eigenvectors
            message = f"ARPACK stopped after {max_iter} restarts"
        except (ArpackError, ValueError, TypeError) as exc:
            # Turned into every rank's error below instead of leaving the
            # other ranks waiting for a broadcast that would never come.
            values, vectors = np.zeros(0), np.zeros((n, 0))
            message = f"ARPACK failed: {exc}"
        finally:
            driver.stop()
        order = np.argsort(values)[::-1]
        result = np.ascontiguousarray(vectors[:, order])
        status = message
    else:
        _serve(op)
        result, status = None, None
    status = comm.bcast_obj(status, root=0)
    V = comm.bcast(result, root=0)
    steps = (op.matvecs - before) // 2
    return V, {"iterations": steps, "converged": V.shape[1], "message": status}
