"""Top-``k`` singular triplets of a row-sharded matrix: one entry point, six methods.

Every method but ``golub-kahan`` (which has its own Ritz triplets)
produces an orthonormal basis of (nearly) the top right singular subspace;
one shared Rayleigh–Ritz step then turns it into the triplets: ``Y = A V`` (one pass), ``Y = U R`` by TSQR (so ``U`` is
orthogonal to working precision however ill-conditioned ``A`` is), and the
SVD of the small ``R`` rotates ``U`` and ``V`` and gives ``s``.  ``U`` is
never formed as ``A V S⁻¹``, which loses orthogonality as soon as ``S``
spans many orders of magnitude.  The residuals of every triplet,
``‖A vᵢ − σᵢ uᵢ‖`` and ``‖Aᵀ uᵢ − σᵢ vᵢ‖``, are then measured, and decide
convergence the same way for every method.
"""

import logging
import time

import numpy as np

from hpcml.errors import ConvergenceError, InputError
from hpcml.linalg.golub_kahan import golub_kahan
from hpcml.linalg.lanczos import lanczos
from hpcml.linalg.randomized import randomized
from hpcml.linalg.tsqr import tsqr_svd
from hpcml.operator import Centred, MatrixOperator

log = logging.getLogger("hpcml")

#: Dense matrices at most this wide are decomposed by one TSQR pass.
NARROW = 64

METHODS = ("auto", "gram", "lanczos", "golub-kahan", "tsqr", "randomized")

#: Default ``max_iter`` of each iterative method (ARPACK restarts,
#: bidiagonalisation restarts, power iterations).
DEFAULT_MAX_ITER = {"lanczos": 1000, "golub-kahan": 500, "randomized": 300}


class NotConverged(ConvergenceError):
    """Fewer than ``k`` triplets met the tolerance; ``result`` holds what was found.

    Exit code 2, like every other bad outcome the user can fix by changing
    the options (``--max-iter``, ``--tol``, ``--allow-partial``).
    """

    exit_code = 2

    def __init__(self, message, result):
        super().__init__(message, collective=True)
        self.result = result


class SVDResult:
    """Singular triplets and how they were obtained.

    Attributes
    ----------
    s : numpy.ndarray
        Singular values, descending (every rank).
    V : numpy.ndarray
        ``(n, k)`` right singular vectors (every rank).
    U : numpy.ndarray or None
        This rank's rows of the ``(m, k)`` left singular vectors
        (row-sharded like ``A``) when asked for.
    residuals : numpy.ndarray
        ``sqrt(‖A vᵢ − σᵢ uᵢ‖² + ‖Aᵀ uᵢ − σᵢ vᵢ‖²)`` per triplet; the two
        parts are in ``left_residuals`` and ``right_residuals``.
    converged : numpy.ndarray of bool
        ``residuals <= tol · σ₁``.
    method, reason : str
        The method that ran and why it was picked.
    iterations, matvecs : int
        Steps of the method and products with ``A`` or ``Aᵀ`` (one per
        vector; the final Rayleigh–Ritz step and residuals included).
    tol : float
    seconds : float
    message : str
        The method's own note when it stopped early (empty otherwise).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @property
    def n_converged(self):
        return int(np.sum(self.converged))

    def summary(self):
        """A JSON-able dict of the small results and facts."""
        return {"method": self.method, "reason": self.reason, "k": int(len(self.s)),
                "s": self.s.tolist(), "residuals": self.residuals.tolist(),
                "converged": self.n_converged, "iterations": int(self.iterations),
                "matvecs": int(self.matvecs), "tol": self.tol, "seconds": self.seconds}


def default_tol(dtype):
    """``1e-10`` for float64 matrices, ``1e-5`` for float32 (its products round at ~1e-7)."""
    return 1e-10 if np.dtype(dtype) == np.float64 else 1e-5


def choose_method(shape, k, sparse):
    """The method ``auto`` runs for a matrix of ``shape`` and ``k`` triplets, and why.

    Returns
    -------
    (str, str)
    """
    m, n = shape
    small = min(m, n)
    if k >= small:
        if m >= n:
            return "tsqr", f"k = min(m, n) = {k}: every triplet, by one pass of TSQR"
        return "gram", f"k = min(m, n) = {k} of a wide matrix: every triplet, from the n x n Gram matrix"
    tall_dense = not sparse and m >= n   # TSQR factors tall matrices only
    if tall_dense and n <= NARROW:
        # One pass of TSQR costs about n/2 passes of A^T A v; ARPACK needs
        # more products than that for any k when n is this small.
        return "tsqr", f"n = {n} is narrow (<= {NARROW}): one pass of TSQR gives every triplet exactly"
    if tall_dense and n <= 1000 and k > n // 10:
        return "tsqr", f"n = {n} is narrow and k = {k} > n/10: one pass of TSQR gives every triplet exactly"
    if k <= max(small // 10, 1) or sparse:
        return "lanczos", (f"k = {k} is small against min(m, n) = {small}"
                           + (" and the matrix is sparse" if sparse else "")
                           + ": ARPACK on AᵀA through the fused one-pass product "
                           "(use golub-kahan for singular values below √ε·σ₁)")
    return "randomized", (f"k = {k} is a large share of min(m, n) = {small}: "
                          "block subspace iteration reads the matrix once per k + p products")


def _check(A, k, method, tol, ncv):
    m, n = A.shape
    if method not in METHODS:
        raise InputError(f"svd: unknown method {method!r} (known: {', '.join(METHODS)})", collective=True)
    if m == 0 or n == 0:
        raise InputError(f"svd: the matrix is empty (shape {m} x {n})", collective=True)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= min(m, n):
        raise InputError(f"svd: need 1 <= k <= min(m, n) = {min(m, n)} for a {m} x {n} matrix, got k = {k}",
                         collective=True)
    if k == min(m, n) and method not in ("auto", "gram") and not (method == "tsqr" and m >= n):
        # The Krylov and randomized methods need room beyond the k vectors.
        raise InputError(f"svd: k = min(m, n) = {k} (every triplet) needs method gram, or tsqr when "
                         f"m >= n; {method} finds k < {k}", collective=True)
    if tol is not None and not tol > 0:
        raise InputError(f"svd: --tol must be > 0, got {tol}", collective=True)
    if ncv is not None and not k < ncv:
        raise InputError(f"svd: the Krylov basis size ncv = {ncv} must exceed k = {k}", collective=True)


def _rayleigh_ritz(op, V, k):
    """Triplets from a basis ``V`` (``None``: the identity, i.e. ``A`` itself)."""
    Y = op.local_dense() if V is None else op.matmat(V)
    U, s, W = tsqr_svd(Y, op.comm)
    rotate = W[:, :k]
    V_out = rotate.copy() if V is None else V @ rotate
    return U[:, :k], s[:k], np.ascontiguousarray(V_out), Y @ rotate


def _residuals(op, U, s, V, AV):
    left = op.comm.allreduce(np.ascontiguousarray(np.sum((AV - U * s) ** 2, axis=0)))
    right = np.linalg.norm(op.rmatmat(U) - V * s, axis=0)
    return np.sqrt(left), right


def svd(A, k, method="auto", tol=None, max_iter=None, compute_u=False, seed=0, ncv=None,
        oversampling=10, power_iterations=None, allow_partial=False, mean=None, check_finite=True):
    """Top ``k`` singular triplets of a row-sharded matrix (collective).

    Parameters
    ----------
    A : hpcml.distmat.DistMatrix
        Dense or CSR, float32 or float64.
    k : int
        How many triplets, ``1 <= k <= min(m, n)``; ``k = min(m, n)`` (every
        triplet) with ``gram``, ``tsqr`` (when ``m >= n``) or ``auto``.
    method : {"auto", "gram", "lanczos", "golub-kahan", "tsqr", "randomized"}
        ``gram``: ``AᵀA`` by one allreduce and a dense eigensolver (small
        ``n``; squares the condition number).  ``lanczos``: ARPACK on
        ``AᵀA`` through the fused product (Spark's dist-eigs; squares it
        too).  ``golub-kahan``: restarted Lanczos bidiagonalisation of
        ``A``, accurate to ``O(ε σ₁)`` for the small singular values.
        ``tsqr``: exact thin SVD of a tall-skinny ``A`` by TSQR.
        ``randomized``: HMT block subspace iteration.  ``auto`` picks by
        shape, ``k`` and sparsity and logs its reason.
    tol : float, optional
        A triplet has converged when its residual is at most
        ``tol · σ₁`` (default :func:`default_tol`; never below
        ``100 ε`` of the matrix's dtype).
    max_iter : int, optional
        Restarts (lanczos, golub-kahan) or power iterations (randomized).
    compute_u : bool
        Return this rank's rows of ``U`` as well.
    seed : int
        Start vectors (the same on every rank).
    ncv : int, optional
        Krylov basis size of lanczos and golub-kahan.
    oversampling, power_iterations : int
        Of the randomized method (``power_iterations=None``: iterate to ``tol``).
    allow_partial : bool
        On non-convergence return the converged triplets instead of raising.
    mean : numpy.ndarray, optional
        The column means ``μ`` of ``A`` (``A.col_means()``): decompose the
        centred ``A − 1 μᵀ`` without forming it (:class:`~hpcml.operator.Centred`).
    check_finite : bool
        Refuse a matrix holding NaN or Inf (one pass over the rows; pass
        ``False`` when :func:`hpcml.io.read_matrix` has just checked it).

    Returns
    -------
    SVDResult

    Raises
    ------
    InputError
        On every rank: unknown method, empty matrix, ``k`` out of range,
        bad ``tol`` or ``ncv``, NaN or Inf (naming the first global row).
    NotConverged
        On every rank, when fewer than ``k`` triplets converged and
        ``allow_partial`` is false; it names how many and their residuals.
    """
    start = time.perf_counter()
    _check(A, k, method, tol, ncv)
    if check_finite:
        A.check_finite()
    floor = 100 * np.finfo(A.dtype).eps
    tol = max(default_tol(A.dtype) if tol is None else float(tol), floor)
    reason = "asked for"
    if method == "auto":
        method, reason = choose_method(A.shape, k, A.issparse)
        log.info("svd: method %s: %s", method, reason)
    if max_iter is None:
        max_iter = DEFAULT_MAX_ITER.get(method, 0)
    # Products in the matrix's own precision: a float32 A x is twice as fast,
    # and default_tol allows its rounding.
    op = MatrixOperator(A, A.dtype) if mean is None else Centred(A, mean, A.dtype)
    info = {"iterations": 1, "message": ""}
    if method == "gram":
        values, vectors = np.linalg.eigh(op.gram())
        basis = np.ascontiguousarray(vectors[:, ::-1][:, :k])
        basis = op.comm.bcast(basis, root=0)   # bit-identical V on every rank
    elif method == "tsqr":
        basis = None
    elif method == "lanczos":
        basis, info = lanczos(op, k, tol, max_iter, seed, ncv)
    elif method == "golub-kahan":
        basis, info = golub_kahan(op, k, tol, max_iter, seed, ncv)
    else:
        basis, info = randomized(op, k, tol, max_iter, seed, oversampling, power_iterations)
    if basis is not None and basis.shape[1] == 0:
        raise NotConverged(f"svd: {method} converged 0 of {k} triplets ({info['message']})", None)
    if "U" in info:
        # golub-kahan returns its Ritz triplets: U already orthonormal by
        # construction; one pass measures A V for the residuals.
        U, s, V = info["U"], info["s"], basis
        AV = op.matmat(V)
    else:
        U, s, V, AV = _rayleigh_ritz(op, basis, k if basis is None else min(k, basis.shape[1]))
    left, right = _residuals(op, U, s, V, AV)
    residuals = np.hypot(left, right)
    scale = s[0] if len(s) else 0.0
    converged = residuals <= tol * max(scale, np.finfo(np.float64).tiny)
    result = SVDResult(s=s, V=V, U=U if compute_u else None, residuals=residuals,
                       left_residuals=left, right_residuals=right, converged=converged,
                       method=method, reason=reason, iterations=info["iterations"],
                       matvecs=op.matvecs, tol=tol, message=info["message"],
                       seconds=time.perf_counter() - start)
    if result.n_converged < k:
        relative = ", ".join(f"{r:.1e}" for r in residuals / max(scale, np.finfo(np.float64).tiny))
        text = (f"svd: {method} converged {result.n_converged} of {k} triplets"
                + (f" ({info['message']})" if info["message"] else "")
                + f"; residuals / σ₁: {relative}; tolerance {tol:.1e}")
        if not allow_partial:
            raise NotConverged(text + " (raise --max-iter, loosen --tol or pass --allow-partial)", result)
        log.warning("%s; keeping the converged ones", text)
        _keep(result, converged)
    return result


def _keep(result, mask):
    for name in ("s", "residuals", "left_residuals", "right_residuals", "converged"):
        setattr(result, name, getattr(result, name)[mask])
    result.V = np.ascontiguousarray(result.V[:, mask])
    if result.U is not None:
        result.U = np.ascontiguousarray(result.U[:, mask])
