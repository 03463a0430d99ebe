"""Prox-capable functions ``h`` with value, prox and conjugate.

``prox(v, t)`` returns ``(u, value)`` with ``u = argmin h(u) + ‖u − v‖²/(2t)``
and ``value = h(u)``: the *local* part of it for separable functions (the
caller sums it over the ranks of a sharded vector), the whole value for
the ℓ2 ones (they reduce through their own ``comm`` when sharded).

Most constraint sets of conic problems are boxes, so one class covers the
zero function, the non-negative orthant, a box, the ℓ∞ ball and the
shifted orthant of LP duals: :class:`LinearBox`, ``<c, x> + ι_[l, u](x)``.
Its conjugate, the (shifted) support function of the box, covers the
weighted ℓ1 norm (:class:`BoxSupport`).  Every function knows its conjugate
so that :func:`prox_pair_test` can check the Moreau identity.
"""

import numpy as np

from hpcml.errors import InputError


def _vec(value):
    return np.asarray(value, dtype=np.float64)


class Prox:
    """Base class of prox-capable functions."""

    #: True when the value is a sum of per-entry terms (a local partial).
    separable = True

    def value(self, x):
        """``h(x)`` (local partial when separable); ``inf`` outside the domain."""
        raise NotImplementedError

    def prox(self, v, t):
        raise NotImplementedError

    def conjugate(self):
        raise NotImplementedError


class LinearBox(Prox):
    """``h(x) = <c, x> + ι(l ≤ x ≤ u)``; entries may be arrays (this rank's block) or scalars.

    Its prox is ``clip(v − t c, l, u)``.
    """

    def __init__(self, c=0.0, lower=-np.inf, upper=np.inf):
        self.c, self.lower, self.upper = _vec(c), _vec(lower), _vec(upper)
        if np.any(self.lower > self.upper):
            raise InputError("a lower bound exceeds its upper bound")
        self._linear = bool(np.any(self.c != 0))
        self._bounded = bool(np.any(np.isfinite(self.lower)) or np.any(np.isfinite(self.upper)))

    def value(self, x):
        if self._bounded and (np.any(x < self.lower) or np.any(x > self.upper)):
            return np.inf
        return float(np.sum(self.c * x)) if self._linear else 0.0

    def prox(self, v, t):
        u = np.clip(v - t * self.c if self._linear else v, self.lower, self.upper)
        return u, (float(np.sum(self.c * u)) if self._linear else 0.0)

    def conjugate(self):
        return BoxSupport(self.lower, self.upper, shift=self.c)


class BoxSupport(Prox):
    """``h(z) = Σ max(l (z − c), u (z − c))``, the support function of ``[l, u]`` shifted by ``c``.

    With ``l = −w, u = w, c = 0`` it is the weighted ℓ1 norm ``Σ w|z|``.
    """

    def __init__(self, lower, upper, shift=0.0):
        self.lower, self.upper, self.shift = _vec(lower), _vec(upper), _vec(shift)
        if np.any(self.lower > self.upper):
            raise InputError("a lower bound exceeds its upper bound")

    def value(self, z):
        d = z - self.shift
        with np.errstate(invalid="ignore"):
            terms = np.where(d > 0, self.upper * d, np.where(d < 0, self.lower * d, 0.0))
        return float(np.sum(terms))

    def prox(self, v, t):
        d = v - self.shift
        # The kink at 0 has subgradient [l, u]: stay there while d/t is inside it.
        step = np.clip(d, t * self.lower, t * self.upper)
        u = d - step + self.shift
        return u, self.value(u)

    def conjugate(self):
        return LinearBox(self.shift, self.lower, self.upper)


class L2Ball(Prox):
    """``ι(‖x − c‖₂ ≤ r)``, optionally ``+ <s, x>`` (the tilt of SCD duals); sharded when ``comm`` is given."""

    separable = False

    def __init__(self, radius, comm=None, center=0.0):
        if not radius >= 0:
            raise InputError(f"ball radius must be >= 0, got {radius}")
        self.radius, self.comm, self.center = float(radius), comm, _vec(center)

    def _norm(self, d):
        sq = float(d @ d)
        if self.comm is not None:
            sq = self.comm.allreduce_scalar(sq)
        return np.sqrt(sq)

    def value(self, x):
        return 0.0 if self._norm(x - self.center) <= self.radius * (1 + 1e-12) else np.inf

    def prox(self, v, t):
        d = v - self.center
        norm = self._norm(d)
        if norm > self.radius:
            d = d * (self.radius / norm)
        return d + self.center, 0.0

    def conjugate(self):
        return L2Norm(self.radius, self.comm, shift=self.center)


class L2Norm(Prox):
    """``r ‖x‖₂ + <s, x>``; its prox shrinks the whole (possibly sharded) vector."""

    separable = False

    def __init__(self, weight, comm=None, shift=0.0):
        if not weight >= 0:
            raise InputError(f"norm weight must be >= 0, got {weight}")
        self.weight, self.comm, self.shift = float(weight), comm, _vec(shift)

    def _sums(self, x):
        buf = np.array([float(x @ x), float(np.sum(self.shift * x))])
        return self.comm.allreduce(buf) if self.comm is not None else buf

    def value(self, x):
        sq, lin = self._sums(x)
        return self.weight * np.sqrt(sq) + lin

    def prox(self, v, t):
        d = v - t * self.shift
        norm = np.sqrt(self._sums(d)[0])
        scale = max(0.0, 1.0 - t * self.weight / norm) if norm > 0 else 0.0
        u = d * scale
        return u, self.value(u)

    def conjugate(self):
        return L2Ball(self.weight, self.comm, center=self.shift)


# -- the named functions of the solver's vocabulary --------------------------------


def zero():
    """``h = 0`` (unconstrained smooth minimisation)."""
    return LinearBox()


def l1(weights=1.0):
    """Weighted ℓ1 norm ``Σ w_i |x_i|`` (weights ≥ 0)."""
    w = _vec(weights)
    if np.any(w < 0):
        raise InputError("l1 weights must be >= 0")
    return BoxSupport(-w, w)


def nonneg():
    """Indicator of the non-negative orthant."""
    return LinearBox(lower=0.0)


def box(lower, upper):
    """Indicator of ``[lower, upper]`` (entries may be ±inf)."""
    return LinearBox(lower=lower, upper=upper)


def linf_ball(radius):
    """Indicator of ``‖x‖∞ ≤ radius``."""
    return LinearBox(lower=-radius, upper=radius)


def l2_ball(radius, comm=None):
    """Indicator of ``‖x‖₂ ≤ radius`` (pass ``comm`` for a sharded vector)."""
    return L2Ball(radius, comm)


def shifted_nonneg(b):
    """``<b, y> + ι(y ≥ 0)``: the dual prox of the inequality rows of an LP."""
    return LinearBox(c=b, lower=0.0)


def prox_pair_test(h, v, t=1.0, space=None, rtol=1e-9):
    """Check a prox and its conjugate against each other (Moreau and Fenchel–Young).

    With ``p = prox_{t h}(v)`` and ``q = prox_{h*/t}(v/t)``:
    ``v = p + t q`` (Moreau) and ``h(p) + h*(q) = <p, q>`` (equality in
    Fenchel–Young, since ``q ∈ ∂h(p)``).  Collective when ``space`` is sharded.

    Returns
    -------
    dict
        ``moreau`` and ``fenchel`` relative errors (both ≤ ``rtol`` when ``ok``).
    """
    hc = h.conjugate()
    p, _ = h.prox(v, t)
    q, _ = hc.prox(v / t, 1.0 / t)
    space = space or _serial_space()
    diff = v - (p + t * q)
    scale = max(space.norm(v), 1.0)
    moreau = space.norm(diff) / scale

    def full(fn, x):
        val = fn.value(x)
        return space.sum(val) if fn.separable else float(val)
    gap = full(h, p) + full(hc, q) - space.dot(p, q)
    fenchel = abs(gap) / max(1.0, abs(space.dot(p, q)), space.norm(p) * space.norm(q))
    return {"moreau": moreau, "fenchel": fenchel, "ok": bool(moreau <= rtol and fenchel <= rtol)}


def _serial_space():
    from hpcml.comm import Comm
    from hpcml.space import Space
    return Space(Comm.self_comm(), sharded=False)


class Tilted(Prox):
    """``h(x) + <a, x>``: ``prox(v, t) = prox_h(v − t a, t)``; the conjugate is ``h*`` translated by ``a``."""

    def __init__(self, h, a):
        self.h, self.a = h, _vec(a)
        self.separable = h.separable

    def _tilt(self, x):
        value = float(np.sum(self.a * x))
        if not self.separable and getattr(self.h, "comm", None) is not None:
            value = self.h.comm.allreduce_scalar(value)
        return value

    def value(self, x):
        return self.h.value(x) + self._tilt(x)

    def prox(self, v, t):
        u, _ = self.h.prox(v - t * self.a, t)
        return u, self.value(u)

    def conjugate(self):
        return Translated(self.h.conjugate(), self.a)


class Translated(Prox):
    """``h(x − a)``: ``prox(v, t) = a + prox_h(v − a, t)``; the conjugate is ``h*`` tilted by ``a``."""

    def __init__(self, h, a):
        self.h, self.a = h, _vec(a)
        self.separable = h.separable

    def value(self, x):
        return self.h.value(x - self.a)

    def prox(self, v, t):
        u, _ = self.h.prox(v - self.a, t)
        return u + self.a, self.value(u + self.a)

    def conjugate(self):
        return Tilted(self.h.conjugate(), self.a)
