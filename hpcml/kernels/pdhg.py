"""The vector updates and local products of one PDHG step (:mod:`hpcml.optim.pdlp`), each fused into one pass.

``primal_step`` is ``clip(x − τ(c − Kᵀy), l, u)`` and ``dual_step`` is
``y + σ(q − 2Kx' + Kx)`` with the inequality rows clipped at 0 (it also
returns ``‖y' − y‖²``); ``movement`` gives the two scalars of the step-size
rule and ``average`` updates a running weighted mean.  In numpy each is
four to six passes over its vectors with as many temporaries; fused, one
read of each input and one write.  ``csr_matvec`` is the local sparse
product without scipy's per-call checks, which cost more than the product
itself on the small blocks PDLP iterates on thousands of times.  The
``*_reference`` functions are the plain numpy forms the tests compare with.
"""

import numpy as np
from numba import njit

from hpcml.kernels import JIT


# No fastmath: x is replicated, and every rank must compute the same bits.
@njit(**dict(JIT, fastmath=False))
def _primal_step(x, KTy, c, lower, upper, tau, out):
    for j in range(x.shape[0]):
        v = x[j] - tau * (c[j] - KTy[j])
        if v < lower[j]:
            v = lower[j]
        elif v > upper[j]:
            v = upper[j]
        out[j] = v


@njit(**JIT)
def _dual_step(y, q, Kx_new, Kx, is_eq, sigma, out):
    moved = 0.0
    for i in range(y.shape[0]):
        v = y[i] + sigma * (q[i] - 2.0 * Kx_new[i] + Kx[i])
        if not is_eq[i] and v < 0.0:
            v = 0.0
        out[i] = v
        d = v - y[i]
        moved += d * d
    return moved


@njit(**dict(JIT, fastmath=False))
def _movement(x_new, x, KTy_new, KTy):
    squared, interaction = 0.0, 0.0
    for j in range(x.shape[0]):
        d = x_new[j] - x[j]
        squared += d * d
        interaction += d * (KTy_new[j] - KTy[j])
    return squared, interaction


@njit(**JIT)
def _average(mean, value, weight):
    for i in range(mean.shape[0]):
        mean[i] += weight * (value[i] - mean[i])


@njit(**JIT)
def _csr_matvec(indptr, indices, data, x, out):
    for i in range(out.shape[0]):
        # Slices first: loops over a slice from 0 vectorise better.
        lo, hi = indptr[i], indptr[i + 1]
        columns, values = indices[lo:hi], data[lo:hi]
        total = 0.0
        for k in range(hi - lo):
            total += values[k] * x[columns[k]]
        out[i] = total


def _vectors(*arrays):
    first = arrays[0].shape
    for a in arrays:
        if a.dtype != np.float64 or a.shape != first or not a.flags.c_contiguous:
            raise ValueError("PDHG vectors must be contiguous float64 arrays of one length")


def primal_step(x, KTy, c, lower, upper, tau):
    """``clip(x − τ(c − Kᵀy), lower, upper)`` as a new array."""
    _vectors(x, KTy, c, lower, upper)
    out = np.empty_like(x)
    _primal_step(x, KTy, c, lower, upper, float(tau), out)
    return out


def dual_step(y, q, Kx_new, Kx, is_eq, sigma):
    """``(y', ‖y' − y‖²)``: ``y' = y + σ(q − 2Kx' + Kx)``, rows not in ``is_eq`` clipped at 0 (local)."""
    _vectors(y, q, Kx_new, Kx)
    if is_eq.dtype != np.bool_ or is_eq.shape != y.shape:
        raise ValueError("is_eq must be a boolean array like y")
    out = np.empty_like(y)
    moved = _dual_step(y, q, Kx_new, Kx, is_eq, float(sigma), out)
    return out, float(moved)


def movement(x_new, x, KTy_new, KTy):
    """``(‖x' − x‖², (x' − x)ᵀ(Kᵀy' − Kᵀy))``, summed in order (the same on every rank)."""
    _vectors(x_new, x, KTy_new, KTy)
    return _movement(x_new, x, KTy_new, KTy)


def average(mean, value, weight):
    """``mean += weight · (value − mean)`` in place."""
    _vectors(mean, value)
    _average(mean, value, float(weight))


def csr_matvec(K, x):
    """``K x`` for a float64 CSR matrix ``K`` (int32 or int64 indices) and a float64 vector ``x``."""
    if K.dtype != np.float64 or x.dtype != np.float64 or x.shape != (K.shape[1],):
        raise ValueError("csr_matvec needs a float64 CSR matrix and a float64 vector of its column count")
    out = np.empty(K.shape[0])
    _csr_matvec(K.indptr, K.indices, K.data, x, out)
    return out


def movement_reference(x_new, x, KTy_new, KTy):
    d = x_new - x
    return float(d @ d), float(d @ (KTy_new - KTy))


def primal_step_reference(x, KTy, c, lower, upper, tau):
    return np.clip(x - tau * (c - KTy), lower, upper)


def dual_step_reference(y, q, Kx_new, Kx, is_eq, sigma):
    out = y + sigma * (q - 2 * Kx_new + Kx)
    out = np.where(is_eq, out, np.maximum(out, 0.0))
    return out, float((out - y) @ (out - y))
