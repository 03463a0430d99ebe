"""Smooth functions ``f`` with value and gradient.

Each function acts elementwise on a vector ``z`` (usually ``A x + b``,
sharded by rows) and returns the *local* sum of its terms and the gradient
of the local block; :meth:`Smooth.value_grad` sums the value over the
ranks of the vector's :class:`~hpcml.space.Space`.  Keeping the sum
local lets the algorithms batch it with their other scalars into one
allreduce per iteration.
"""

import numpy as np

from hpcml.errors import InputError


class Smooth:
    """Base class: ``local(z) -> (local_value, gradient)``."""

    #: Lipschitz constant of the gradient when known (``None``: unknown).
    lipschitz = None

    def local(self, z):
        raise NotImplementedError

    def value_grad(self, z, space):
        """Value over the whole vector (collective when ``space`` is sharded) and gradient."""
        value, grad = self.local(z)
        return space.sum(value), grad


class Quadratic(Smooth):
    """``½‖z − b‖²`` with ``b`` given as this rank's block (or 0)."""

    lipschitz = 1.0

    def __init__(self, b=None):
        self.b = None if b is None else np.asarray(b, dtype=np.float64)

    def local(self, z):
        r = z if self.b is None else z - self.b
        return 0.5 * float(r @ r), r


class Linear(Smooth):
    """``<c, z>``: constant gradient ``c`` (this rank's block)."""

    lipschitz = 0.0

    def __init__(self, c):
        self.c = np.asarray(c, dtype=np.float64)

    def local(self, z):
        return float(self.c @ z), self.c


class Huber(Smooth):
    """``Σ huber_τ(z − b)``: quadratic ``r²/(2τ)`` for ``|r| ≤ τ``, linear ``|r| − τ/2`` beyond."""

    def __init__(self, tau=1.0, b=None):
        if not tau > 0:
            raise InputError(f"Huber threshold must be > 0, got {tau}")
        self.tau = float(tau)
        self.b = None if b is None else np.asarray(b, dtype=np.float64)
        self.lipschitz = 1.0 / self.tau

    def local(self, z):
        r = z if self.b is None else z - self.b
        a = np.abs(r)
        inside = a <= self.tau
        value = np.where(inside, r * r / (2 * self.tau), a - self.tau / 2).sum()
        return float(value), np.where(inside, r / self.tau, np.sign(r))


class Logistic(Smooth):
    """``Σ log(1 + exp(−y_i z_i))`` for labels ``y`` in {−1, +1} (this rank's block)."""

    lipschitz = 0.25

    def __init__(self, y):
        y = np.asarray(y, dtype=np.float64)
        if y.size and not np.all(np.abs(y) == 1):
            raise InputError("logistic loss needs labels in {-1, +1}")
        self.y = y

    def local(self, z):
        margin = self.y * z
        value = np.logaddexp(0.0, -margin).sum()
        # d/dz log(1+exp(-y z)) = -y σ(-y z), written stably with expit.
        sig = 0.5 * (1.0 + np.tanh(-0.5 * margin))
        return float(value), -self.y * sig


class GramQuadratic(Smooth):
    """``½ xᵀ G x − cᵀ x + k`` on a replicated ``x``: ``½‖A x − b‖²`` through ``G = AᵀA``.

    When the matrix has many more rows than columns, ``G`` (one pass and one
    allreduce of ``n²`` numbers) makes every later iteration free of the
    matrix and of communication.
    """

    def __init__(self, G, c, constant):
        self.G, self.c, self.constant = G, c, float(constant)

    def local(self, x):
        Gx = self.G @ x
        return 0.5 * float(x @ Gx) - float(self.c @ x) + self.constant, Gx - self.c


class NormalQuadratic(Smooth):
    """``½‖A x − b‖²`` = ``½ xᵀAᵀA x − cᵀx + k`` on a replicated ``x``.

    Parameters
    ----------
    normal : hpcml.operator.Normal
        ``AᵀA``: the fused one-pass product, one allreduce per iteration.
    c, constant
        ``Aᵀb`` and ``½‖b‖²``.
    """

    def __init__(self, normal, c, constant):
        self.normal, self.c, self.constant = normal, c, float(constant)

    def local(self, x):
        AtAx = self.normal.matvec(x)
        return 0.5 * float(x @ AtAx) - float(self.c @ x) + self.constant, AtAx - self.c


class ConjugateSmoothed(Smooth):
    """``F(z) = sup_x <z, x> − h(x) − μ/2 ‖x − x₀‖²``, the smooth dual piece of SCD.

    Its gradient is the maximiser ``x(z) = prox_{h/μ}(x₀ + z/μ)`` and is
    ``1/μ``-Lipschitz.  ``h`` must be separable (its value a sum of local terms).
    """

    def __init__(self, h, mu, x0):
        if not mu > 0:
            raise InputError(f"smoothing parameter mu must be > 0, got {mu}")
        self.h, self.mu, self.x0 = h, float(mu), x0
        self.lipschitz = 1.0 / self.mu

    def local(self, z):
        x, hx = self.h.prox(self.x0 + z / self.mu, 1.0 / self.mu)
        d = x - self.x0
        return float(z @ x) - hx - 0.5 * self.mu * float(d @ d), x
