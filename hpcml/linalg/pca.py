"""scikit-learn style ``TruncatedSVD`` and ``PCA`` on row-sharded data.

The estimators take the communicator as an argument and each rank passes
its own rows (a numpy array, a scipy sparse matrix or a
:class:`~hpcml.distmat.DistMatrix`).  PCA centres through the operator
(:class:`hpcml.operator.Centred`), so sparse input is never densified, and
reports explained variance as a share of the **total** variance
``‖A − 1μᵀ‖_F² / (m − 1)`` — not of the top ``k`` only, as Spark MLlib's
``computePrincipalComponentsAndExplainedVariance`` does.
"""

import logging

import numpy as np

from hpcml.distmat import DistMatrix
from hpcml.errors import InputError
from hpcml.linalg.svd import choose_method, svd
from hpcml.operator import Centred, MatrixOperator

log = logging.getLogger(__name__)


def choose_pca_method(shape, k, sparse):
    """The method PCA's ``auto`` runs, and why.

    Principal components need the covariance's eigenvalues only to
    ``ε·λ₁``, so squaring the condition number costs PCA nothing: for dense
    data with few columns and many more rows, one pass forming the ``n × n``
    covariance (BLAS-3) beats the many memory-bound passes of an iterative
    solver, whose convergence also slows on the flat spectra PCA often sees.
    That is scikit-learn's ``covariance_eigh`` rule and what Spark's PCA
    always does.  Otherwise the choice is :func:`hpcml.linalg.svd.choose_method`'s.

    Returns
    -------
    (str, str)
    """
    m, n = shape
    if not sparse and n <= 1000 and m >= 10 * n:
        return "gram", (f"n = {n} columns and m >= 10 n rows: one pass forms the covariance "
                        "and LAPACK's eigh gives every component")
    return choose_method(shape, k, sparse)


def _as_distmat(X, comm):
    if isinstance(X, DistMatrix):
        return X
    return DistMatrix(X, comm)


def _flip_signs(result):
    """Make the largest-magnitude entry of each right singular vector positive (deterministic)."""
    V = result.V
    signs = np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(V.shape[1])])
    signs[signs == 0] = 1.0
    result.V = V * signs
    if result.U is not None:
        result.U = result.U * signs


class _Base:
    def __init__(self, n_components, comm, method="auto", tol=None, max_iter=None, seed=0,
                 allow_partial=False):
        if comm is None:
            raise ValueError("pass the communicator explicitly (comm=...)")
        self.n_components = n_components
        self.comm = comm
        self.method = method
        self.tol = tol
        self.max_iter = max_iter
        self.seed = seed
        self.allow_partial = allow_partial

    def _decompose(self, A, mean):
        method = self.method
        if method == "auto" and mean is not None:
            method, reason = choose_pca_method(A.shape, self.n_components, A.issparse)
            log.info("pca: method %s: %s", method, reason)
        result = svd(A, self.n_components, method=method, tol=self.tol, max_iter=self.max_iter,
                     seed=self.seed, allow_partial=self.allow_partial, mean=mean, compute_u=True)
        _flip_signs(result)
        self.result_ = result
        self.components_ = np.ascontiguousarray(result.V.T)
        self.singular_values_ = result.s.copy()
        self.n_features_in_ = A.shape[1]
        return result

    def fit(self, X):
        """Fit on this rank's rows ``X`` (collective); returns ``self``."""
        self._fit(_as_distmat(X, self.comm))
        return self

    def fit_transform(self, X):
        """Fit and return this rank's rows of the transformed data (collective)."""
        result = self._fit(_as_distmat(X, self.comm))
        return self._scale(result.U * result.s)

    def _scale(self, Y):
        return Y

    def _check_fitted(self, A):
        if not hasattr(self, "components_"):
            raise InputError(f"{type(self).__name__}: call fit before transform")
        if A.shape[1] != self.n_features_in_:
            raise InputError(f"{type(self).__name__}: fitted on {self.n_features_in_} features, "
                             f"got {A.shape[1]}")


class TruncatedSVD(_Base):
    """Top singular triplets of uncentred data (LSA), like ``sklearn.decomposition.TruncatedSVD``.

    Parameters
    ----------
    n_components : int
    comm : hpcml.comm.Comm
    method, tol, max_iter, seed, allow_partial
        Passed to :func:`hpcml.linalg.svd`.

    Attributes
    ----------
    components_ : numpy.ndarray
        ``(k, n)`` right singular vectors as rows.
    singular_values_, explained_variance_, explained_variance_ratio_ : numpy.ndarray
        The variance of each transformed column, and its share of the sum
        of the column variances of ``X``.
    result_ : hpcml.linalg.svd.SVDResult
    """

    def _fit(self, A):
        result = self._decompose(A, None)
        m = A.shape[0]
        # Variance of the columns of X V without forming X V: its column sums are (Σ rows)·V.
        col_sums = A.col_means() * m
        explained = result.s ** 2 / m - (col_sums @ result.V / m) ** 2
        total = (MatrixOperator(A).frobenius_sq() - float(col_sums @ col_sums) / m) / m
        self.explained_variance_ = explained
        self.explained_variance_ratio_ = explained / total if total > 0 else np.zeros_like(explained)
        return result

    def transform(self, X):
        """This rank's rows of ``X V`` (no communication)."""
        A = _as_distmat(X, self.comm)
        self._check_fitted(A)
        return MatrixOperator(A, A.dtype).matmat(self.components_.T)


class PCA(_Base):
    """Principal components of row-sharded data, like ``sklearn.decomposition.PCA``.

    Parameters
    ----------
    n_components : int
    comm : hpcml.comm.Comm
    whiten : bool
        Scale the transformed columns to unit variance.
    method, tol, max_iter, seed, allow_partial
        Passed to :func:`hpcml.linalg.svd`; ``method="auto"`` is chosen by
        :func:`choose_pca_method`.

    Attributes
    ----------
    mean_ : numpy.ndarray
    components_ : numpy.ndarray
        ``(k, n)`` principal axes.
    explained_variance_ : numpy.ndarray
        ``σᵢ² / (m − 1)``.
    explained_variance_ratio_ : numpy.ndarray
        Share of the total variance ``‖A − 1μᵀ‖_F² / (m − 1)``.
    singular_values_ : numpy.ndarray
    noise_variance_ : float
        Mean of the variance left outside the components (probabilistic PCA).
    result_ : hpcml.linalg.svd.SVDResult
    """

    def __init__(self, n_components, comm, whiten=False, **options):
        super().__init__(n_components, comm, **options)
        self.whiten = whiten

    def _fit(self, A):
        m, n = A.shape
        if m < 2:
            raise InputError(f"PCA needs at least 2 rows, got {m}", collective=True)
        self.mean_ = A.col_means()
        result = self._decompose(A, self.mean_)
        total = Centred(A, self.mean_).frobenius_sq() / (m - 1)
        self.explained_variance_ = result.s ** 2 / (m - 1)
        self.explained_variance_ratio_ = self.explained_variance_ / total if total > 0 else \
            np.zeros_like(self.explained_variance_)
        rest = min(m, n) - len(result.s)
        self.noise_variance_ = max(total - self.explained_variance_.sum(), 0.0) / rest if rest else 0.0
        if self.whiten:
            # Whitening divides by each component's standard deviation; below
            # the rank tolerance that is rounding noise: numpy's matrix_rank
            # max(m, n)·ε·σ₁ for methods on A, its square root for those that
            # work on AᵀA (their floor for σ is √ε·σ₁).
            floor = max(m, n) * np.finfo(np.float64).eps
            if result.method in ("gram", "lanczos"):
                floor = np.sqrt(floor)
            rank = int(np.sum(result.s > floor * max(result.s[0], 0.0)))
            if rank < len(result.s):
                raise InputError(f"PCA --whiten: component {rank + 1} has no variance (the centred data "
                                 f"has rank {rank}); ask for at most {rank} components", collective=True)
        return result

    def _scale(self, Y):
        if self.whiten:
            return Y / np.sqrt(self.explained_variance_)
        return Y

    def transform(self, X):
        """This rank's rows of ``(X − μ) V`` (whitened if asked); no communication, sparse stays sparse."""
        A = _as_distmat(X, self.comm)
        self._check_fitted(A)
        return self._scale(Centred(A, self.mean_, A.dtype).matmat(self.components_.T))
