"""Distributed linear operators: the one family the SVD methods, PCA and the conic solvers stand on.

As pylops-mpi's ``MPILinearOperator``: an operator maps vectors of its
``in_space`` to vectors of its ``out_space`` (each replicated on every
rank or sharded by rows, :class:`~hpcml.space.Space`) with ``matvec``, and
back with its adjoint ``rmatvec``; ``.H`` is the adjoint as an operator in
its own right.  The row-sharded matrix (:class:`MatrixOperator`) maps a
replicated ``x`` to a sharded ``A x`` with no communication, and a sharded
``y`` to a replicated ``Aᵀ y`` with one allreduce: the only implementation
of "local product + allreduce" in hpcml.  Operators compose by centring,
scaling, stacking, taking the adjoint and forming ``AᵀA``;
:func:`adjoint_test` checks ``<L x, y> = <x, Lᵀ y>`` for any of them.

The centred operator ``A − 1μᵀ`` (PCA) folds the shift into every product
instead of forming it, which would densify a sparse ``A``, at no extra
communication:

* ``(A − 1μᵀ) X = A X − 1 (μᵀ X)`` — local rows, no message;
* ``(A − 1μᵀ)ᵀ Y = Aᵀ Y − μ (1ᵀ Y)`` — the column sums of ``Y`` ride in
  the same allreduce as ``Aᵀ Y``;
* ``(A − 1μᵀ)ᵀ (A − 1μᵀ) V = AᵀA V − m μ (μᵀ V)`` since ``Aᵀ1 = m μ`` —
  the fused one-pass product plus a rank-one term computed locally.
"""

import numpy as np
import scipy.sparse as sp

from hpcml.errors import InputError
from hpcml.kernels.normal import normal_product
from hpcml.space import Space


def _cols(X):
    return 1 if X.ndim == 1 else X.shape[1]


class Operator:
    """Base class: ``matvec`` maps ``in_space → out_space``, ``rmatvec`` back.

    Attributes
    ----------
    shape : tuple of int
        Global ``(output length, input length)``.
    in_space, out_space : hpcml.space.Space
    local_in, local_out : int
        Lengths of this rank's blocks of the input and output vectors.
    in_offset, out_offset : int
        Global index of the first entry of those blocks.
    """

    def matvec(self, x):
        raise NotImplementedError

    def rmatvec(self, y):
        raise NotImplementedError

    @property
    def comm(self):
        return self.in_space.comm

    @property
    def H(self):
        """The adjoint as an operator (all operators here are real: the transpose)."""
        return Adjoint(self)

    def norm_estimate(self, iterations=30, seed=0):
        """An estimate of ‖L‖₂ by power iteration on ``LᵀL`` (collective; same on every rank)."""
        x = self.random_in(np.random.default_rng(seed))
        norm = self.in_space.norm(x)
        if norm == 0:
            return 0.0
        steps = power_iteration(lambda v: self.rmatvec(self.matvec(v)), x / norm, self.in_space)
        growth = 0.0
        for _, (_, growth, _) in zip(range(iterations), steps):
            pass
        return float(np.sqrt(growth))

    def random_in(self, rng):
        """A standard normal input vector, this rank's block.

        Every rank draws the whole vector and keeps its block, so the result
        does not depend on the number of ranks.
        """
        full = rng.standard_normal(self.shape[1])
        return full[self.in_offset:self.in_offset + self.local_in] if self.in_space.sharded else full

    def random_out(self, rng):
        """A standard normal output vector, this rank's block."""
        full = rng.standard_normal(self.shape[0])
        return full[self.out_offset:self.out_offset + self.local_out] if self.out_space.sharded else full


class MatrixOperator(Operator):
    """A :class:`~hpcml.distmat.DistMatrix` ``A``: replicated ``x`` → sharded ``A x``.

    Parameters
    ----------
    A : hpcml.distmat.DistMatrix
    dtype : numpy dtype
        Precision of ``A x``: float64 (the solvers, whose tolerances need
        it) or ``A.dtype`` (the SVD methods: a float32 product is twice as
        fast, and their float32 tolerance allows its rounding).  ``Aᵀ y``
        is always summed in float64, ``AᵀA v`` in ``A.dtype`` (the fused
        kernel reads the block as it is stored).

    Attributes
    ----------
    matvecs : int
        Products with ``A`` or ``Aᵀ`` so far, one per column of the block
        (a fused ``AᵀA v`` counts as two): the figure iterative methods
        are compared by.
    """

    def __init__(self, A, dtype=np.float64):
        self.A = A
        self.dtype = np.dtype(dtype)
        self.shape = A.shape
        self.in_space = Space(A.comm, sharded=False)
        self.out_space = Space(A.comm, sharded=True)
        self.local_in, self.local_out = A.shape[1], A.local_rows
        self.in_offset, self.out_offset = 0, A.row_offset
        self.matvecs = 0

    def __repr__(self):
        return f"{type(self).__name__}({self.A!r})"

    @property
    def local_rows(self):
        return self.A.local_rows

    @property
    def issparse(self):
        return self.A.issparse

    def _check_rows(self, X, name):
        if X.shape[0] != self.shape[1]:
            raise ValueError(f"{name} has {X.shape[0]} rows, the matrix has {self.shape[1]} columns")

    def matmat(self, X):
        """``A X`` (this rank's rows, float64) for a replicated ``X`` of shape ``(n,)`` or ``(n, k)``."""
        self._check_rows(X, "X")
        self.matvecs += _cols(X)
        return np.asarray(self.A.local @ X.astype(self.dtype, copy=False), dtype=np.float64)

    def rmatvec_partial(self, Y):
        """This rank's term of ``Aᵀ Y`` (sum over the ranks to finish), float64."""
        if Y.shape[0] != self.local_rows:
            raise ValueError(f"Y has {Y.shape[0]} rows, this rank holds {self.local_rows}")
        self.matvecs += _cols(Y)
        return np.ascontiguousarray(self.A.local.T @ np.asarray(Y, dtype=np.float64), dtype=np.float64)

    def rmatmat(self, Y):
        """``Aᵀ Y`` (replicated, one allreduce) for this rank's rows ``Y`` of shape ``(m_r,)`` or ``(m_r, k)``."""
        return self.comm.allreduce(self.rmatvec_partial(Y))

    def matvec(self, x):
        return self.matmat(x)

    def rmatvec(self, y):
        return self.rmatmat(y)

    def normal(self, V):
        """``AᵀA V`` (replicated, float64) with one allreduce.

        A vector goes through the fused one-pass kernel (the product is
        memory-bound); a dense block of several columns through two GEMMs,
        which are compute-bound and faster than any single pass in Numba.
        """
        self._check_rows(V, "V")
        self.matvecs += 2 * _cols(V)
        local = self.A.local
        if V.ndim == 2 and V.shape[1] > 1 and not self.issparse:
            Vc = V.astype(local.dtype, copy=False)
            part = np.ascontiguousarray(local.T @ (local @ Vc))
        else:
            part = normal_product(local, V)
        return self.comm.allreduce(part).astype(np.float64, copy=False)

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
        return g

    def local_dense(self):
        """This rank's rows as a dense float64 array (tall-skinny methods only).

        Counted as ``n`` products: it is ``A I``, one pass over the rows.
        """
        self.matvecs += self.shape[1]
        local = self.A.local
        block = local.toarray() if sp.issparse(local) else local
        return np.array(block, dtype=np.float64)

    def frobenius_sq(self):
        """``‖A‖_F²``, collective; sparse input stays sparse."""
        local = self.A.local
        values = local.data if sp.issparse(local) else local
        return self.comm.allreduce_scalar(float(np.sum(values.astype(np.float64) ** 2)))


class Centred(MatrixOperator):
    """``A − 1 μᵀ`` for a :class:`~hpcml.distmat.DistMatrix` ``A`` and its column means ``μ``.

    Every product is :class:`MatrixOperator`'s with the shift folded in
    (module docstring): the centred matrix is never formed.

    Parameters
    ----------
    A : hpcml.distmat.DistMatrix
    mean : numpy.ndarray, optional
        ``A.col_means()`` when the caller has it already (computing it is
        collective).  It must be the column means: ``AᵀA`` and ``‖A‖_F``
        of the centred matrix use ``Aᵀ1 = m μ``.
    dtype : numpy dtype
        As for :class:`MatrixOperator`.
    """

    def __init__(self, A, mean=None, dtype=np.float64):
        super().__init__(A, dtype)
        self.mean = np.asarray(A.col_means() if mean is None else mean, dtype=np.float64)

    def matmat(self, X):
        return super().matmat(X) - self.mean @ X

    def rmatvec_partial(self, Y):
        Y = np.asarray(Y, dtype=np.float64)
        return super().rmatvec_partial(Y) - np.multiply.outer(self.mean, Y.sum(axis=0))

    def rmatmat(self, Y):
        Y = np.asarray(Y, dtype=np.float64)
        Y2 = Y[:, None] if Y.ndim == 1 else Y
        n = self.shape[1]
        # One message: the column sums of Y travel as an extra row.
        buf = np.vstack([MatrixOperator.rmatvec_partial(self, Y2), Y2.sum(axis=0, keepdims=True)])
        buf = self.comm.allreduce(np.ascontiguousarray(buf))
        out = buf[:n] - np.outer(self.mean, buf[n])
        return out[:, 0] if Y.ndim == 1 else out

    def normal(self, V):
        return super().normal(V) - self.shape[0] * np.multiply.outer(self.mean, self.mean @ V)

    def gram(self):
        g = super().gram()
        g -= self.shape[0] * np.outer(self.mean, self.mean)
        return g

    def local_dense(self):
        block = super().local_dense()
        block -= self.mean
        return block

    def frobenius_sq(self):
        total = super().frobenius_sq() - self.shape[0] * float(self.mean @ self.mean)
        return max(total, 0.0)


class Normal(Operator):
    """``LᵀL`` of a :class:`MatrixOperator` (or :class:`Centred`) ``L`` on replicated vectors.

    One pass over the rows through the fused kernel and one allreduce
    (:meth:`MatrixOperator.normal`); self-adjoint.
    """

    def __init__(self, op):
        self.op = op
        n = op.shape[1]
        self.shape = (n, n)
        self.in_space = self.out_space = op.in_space
        self.local_in = self.local_out = n
        self.in_offset = self.out_offset = 0

    def __repr__(self):
        return f"Normal({self.op!r})"

    def matvec(self, x):
        return self.op.normal(x)

    rmatvec = matvec


class Identity(Operator):
    """The identity on a space of global length ``n`` (``local`` entries on this rank)."""

    def __init__(self, space, n, local=None, offset=0):
        self.in_space = self.out_space = space
        self.shape = (n, n)
        self.local_in = self.local_out = n if local is None else local
        self.in_offset = self.out_offset = offset

    def matvec(self, x):
        return x

    rmatvec = matvec


class Scaled(Operator):
    """``α L``."""

    def __init__(self, op, alpha):
        self.op, self.alpha = op, float(alpha)
        for key in ("shape", "in_space", "out_space", "local_in", "local_out", "in_offset", "out_offset"):
            setattr(self, key, getattr(op, key))

    def __repr__(self):
        return f"Scaled({self.op!r}, {self.alpha})"

    def matvec(self, x):
        return self.alpha * self.op.matvec(x)

    def rmatvec(self, y):
        return self.alpha * self.op.rmatvec(y)

    def random_in(self, rng):
        return self.op.random_in(rng)

    def random_out(self, rng):
        return self.op.random_out(rng)


class Adjoint(Operator):
    """``Lᵀ`` as an operator in its own right (sharded → replicated for a matrix)."""

    def __init__(self, op):
        self.op = op
        self.shape = (op.shape[1], op.shape[0])
        self.in_space, self.out_space = op.out_space, op.in_space
        self.local_in, self.local_out = op.local_out, op.local_in
        self.in_offset, self.out_offset = op.out_offset, op.in_offset

    def __repr__(self):
        return f"{self.op!r}.H"

    def matvec(self, x):
        return self.op.rmatvec(x)

    def rmatvec(self, y):
        return self.op.matvec(y)

    def random_in(self, rng):
        return self.op.random_out(rng)

    def random_out(self, rng):
        return self.op.random_in(rng)

    @property
    def H(self):
        return self.op


class Stacked(Operator):
    """Matrices stacked by rows, ``[A₁; A₂; ...]``: replicated ``x`` → sharded output.

    This rank's output block is the concatenation of its blocks of each
    ``Aᵢ x``; the adjoint sums the local terms
    (:meth:`MatrixOperator.rmatvec_partial`) and reduces them in one
    allreduce.
    """

    def __init__(self, ops):
        if not ops:
            raise InputError("Stacked needs at least one operator")
        widths = {op.shape[1] for op in ops}
        if len(widths) != 1:
            raise InputError(f"stacked operators disagree on the input length: {sorted(widths)}")
        self.ops = list(ops)
        comm = ops[0].comm
        self.in_space = Space(comm, sharded=False)
        self.out_space = Space(comm, sharded=True)
        self.shape = (sum(op.shape[0] for op in ops), widths.pop())
        self.local_in = self.shape[1]
        self.local_out = sum(op.local_out for op in ops)
        self.in_offset = self.out_offset = 0
        self.splits = np.cumsum([op.local_out for op in ops])[:-1]

    def __repr__(self):
        return f"Stacked({self.ops!r})"

    def matvec(self, x):
        return np.concatenate([op.matvec(x) for op in self.ops])

    def rmatvec(self, y):
        parts = np.split(y, self.splits)
        total = sum(op.rmatvec_partial(part) for op, part in zip(self.ops, parts))
        return self.comm.allreduce(np.ascontiguousarray(total, dtype=np.float64))

    def random_out(self, rng):
        # The output block is not contiguous in the global vector: one block per operator.
        return np.concatenate([op.random_out(rng) for op in self.ops])


def power_iteration(apply, x, space):
    """Power iteration on a symmetric positive semi-definite operator (a generator, collective).

    Parameters
    ----------
    apply : callable
        ``v ↦ M v``, e.g. :class:`Normal`'s ``matvec`` for ``AᵀA``.
    x : numpy.ndarray
        Unit start vector (this rank's block when ``space`` is sharded).
    space : hpcml.space.Space

    Yields
    ------
    (float, float, numpy.ndarray)
        After each product: the Rayleigh quotient ``xᵀMx`` of the vector
        before it, the growth ``‖M x‖`` (both tend to the largest
        eigenvalue; the growth from above for the first), and the next unit
        vector.  After ``M x = 0`` it yields ``(0, 0, x)`` once and ends.
    """
    while True:
        w = apply(x)
        rayleigh, growth = space.dot(x, w), space.norm(w)
        if growth == 0.0:
            yield 0.0, 0.0, x
            return
        x = w / growth
        yield rayleigh, growth, x


def adjoint_test(op, seed=0, trials=3):
    """The dot-product test ``<L x, y> = <x, Lᵀ y>`` on random vectors (collective).

    Returns
    -------
    float
        The largest relative mismatch over ``trials`` random pairs; near
        machine precision for a correct adjoint.
    """
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(trials):
        x = op.random_in(rng)
        y = op.random_out(rng)
        Lx, Lty = op.matvec(x), op.rmatvec(y)
        lhs, rhs = op.out_space.dot(Lx, y), op.in_space.dot(x, Lty)
        scale = max(op.out_space.norm(Lx) * op.out_space.norm(y),
                    op.in_space.norm(x) * op.in_space.norm(Lty), np.finfo(float).tiny)
        worst = max(worst, abs(lhs - rhs) / scale)
    return worst
