"""Linear operators with adjoints between replicated and sharded spaces.

The row-sharded matrix maps a replicated ``x`` to a sharded ``A x`` with no
communication, and its adjoint a sharded ``y`` to a replicated ``Aᵀ y``
with one allreduce.  Operators compose by scaling, stacking and taking the
adjoint; :func:`adjoint_test` checks ``<A x, y> = <x, Aᵀ y>`` for any of them.
"""

import numpy as np

from hpcml.errors import InputError
from hpcml.optim.space import Space


class LinOp:
    """Base class: ``forward`` maps ``in_space → out_space``, ``adjoint`` back.

    Attributes
    ----------
    shape : tuple of int
        Global ``(output length, input length)``.
    in_space, out_space : Space
    local_out, local_in : int
        Lengths of this rank's blocks of the output and input vectors.
    """

    def forward(self, x):
        raise NotImplementedError

    def adjoint(self, y):
        raise NotImplementedError

    def norm_estimate(self, iterations=30, seed=0):
        """An estimate of ‖L‖₂ by power iteration on ``LᵀL`` (collective; same on every rank)."""
        x = self.random_in(np.random.default_rng(seed))
        norm = self.in_space.norm(x)
        if norm == 0:
            return 0.0
        x /= norm
        sigma = 0.0
        for _ in range(iterations):
            w = self.adjoint(self.forward(x))
            norm = self.in_space.norm(w)
            if norm == 0:
                return 0.0
            sigma, x = np.sqrt(norm), w / norm
        return float(sigma)

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

    @property
    def T(self):
        return Adjoint(self)


class MatrixOp(LinOp):
    """A :class:`~hpcml.distmat.DistMatrix` as an operator: replicated ``x`` → sharded ``A x``."""

    def __init__(self, A):
        self.A = A
        self.shape = A.shape
        self.in_space = Space(A.comm, sharded=False)
        self.out_space = Space(A.comm, sharded=True)
        self.local_in, self.local_out = A.shape[1], A.local_rows
        self.in_offset, self.out_offset = 0, A.row_offset
        # scipy turns a CSR transpose into a new CSC object on every product;
        # keeping the transpose as CSR once costs memory but not time.
        self._local_T = A.local.T.tocsr() if A.issparse else A.local.T

    def forward(self, x):
        return np.asarray(self.A.local @ x, dtype=np.float64)

    def adjoint_partial(self, y):
        """This rank's term of ``Aᵀ y`` (sum over ranks to finish)."""
        return np.ascontiguousarray(self._local_T @ y, dtype=np.float64)

    def adjoint(self, y):
        return self.in_space.comm.allreduce(self.adjoint_partial(y))


class NormalOp(LinOp):
    """``AᵀA`` on replicated vectors through the fused one-pass kernel (one allreduce)."""

    def __init__(self, A):
        self.A = A
        n = A.shape[1]
        self.shape = (n, n)
        self.in_space = self.out_space = Space(A.comm, sharded=False)
        self.local_in = self.local_out = n
        self.in_offset = self.out_offset = 0

    def forward(self, x):
        return self.A.normal_matvec(np.ascontiguousarray(x, dtype=self.A.dtype)).astype(np.float64)

    adjoint = forward


class Identity(LinOp):
    """The identity on a space of global length ``n`` (``local`` entries on this rank)."""

    def __init__(self, space, n, local=None, offset=0):
        self.in_space = self.out_space = space
        self.shape = (n, n)
        self.local_in = self.local_out = n if local is None else local
        self.in_offset = self.out_offset = offset

    def forward(self, x):
        return x

    adjoint = forward


class Scaled(LinOp):
    """``α L``."""

    def __init__(self, op, alpha):
        self.op, self.alpha = op, float(alpha)
        for key in ("shape", "in_space", "out_space", "local_in", "local_out", "in_offset", "out_offset"):
            setattr(self, key, getattr(op, key))

    def forward(self, x):
        return self.alpha * self.op.forward(x)

    def adjoint(self, y):
        return self.alpha * self.op.adjoint(y)

    def random_in(self, rng):
        return self.op.random_in(rng)

    def random_out(self, rng):
        return self.op.random_out(rng)


class Adjoint(LinOp):
    """``Lᵀ`` as an operator in its own right (sharded → replicated for a matrix)."""

    def __init__(self, op):
        self.op = op
        self.shape = (op.shape[1], op.shape[0])
        self.in_space, self.out_space = op.out_space, op.in_space
        self.local_in, self.local_out = op.local_out, op.local_in
        self.in_offset, self.out_offset = op.out_offset, op.in_offset

    def forward(self, x):
        return self.op.adjoint(x)

    def adjoint(self, y):
        return self.op.forward(y)

    def random_in(self, rng):
        return self.op.random_out(rng)

    def random_out(self, rng):
        return self.op.random_in(rng)

    @property
    def T(self):
        return self.op


class Stacked(LinOp):
    """Matrices stacked by rows, ``[A₁; A₂; ...]``: replicated ``x`` → sharded output.

    This rank's output block is the concatenation of its blocks of each
    ``Aᵢ x``; the adjoint sums the local terms and reduces them in one
    allreduce.
    """

    def __init__(self, ops):
        if not ops:
            raise InputError("Stacked needs at least one operator")
        widths = {op.shape[1] for op in ops}
        if len(widths) != 1:
            raise InputError(f"stacked operators disagree on the input length: {sorted(widths)}")
        self.ops = list(ops)
        comm = ops[0].in_space.comm
        self.in_space = Space(comm, sharded=False)
        self.out_space = Space(comm, sharded=True)
        self.shape = (sum(op.shape[0] for op in ops), widths.pop())
        self.local_in = self.shape[1]
        self.local_out = sum(op.local_out for op in ops)
        self.in_offset = self.out_offset = 0
        self.splits = np.cumsum([op.local_out for op in ops])[:-1]

    def forward(self, x):
        return np.concatenate([op.forward(x) for op in self.ops])

    def adjoint(self, y):
        parts = np.split(y, self.splits)
        total = sum(op.adjoint_partial(part) for op, part in zip(self.ops, parts))
        return self.in_space.comm.allreduce(np.ascontiguousarray(total, dtype=np.float64))

    def random_out(self, rng):
        # The output block is not contiguous in the global vector: one block per operator.
        return np.concatenate([op.random_out(rng) for op in self.ops])


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
        Lx, Lty = op.forward(x), op.adjoint(y)
        lhs, rhs = op.out_space.dot(Lx, y), op.in_space.dot(x, Lty)
        scale = max(op.out_space.norm(Lx) * op.out_space.norm(y),
                    op.in_space.norm(x) * op.in_space.norm(Lty), np.finfo(float).tiny)
        worst = max(worst, abs(lhs - rhs) / scale)
    return worst
