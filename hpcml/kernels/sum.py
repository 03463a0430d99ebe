"""Sum of equally long float32 vectors, scaled and written back, in one pass.

Summing one slice of P ranks' vectors held in shared memory with numpy takes
an add per vector, a scaling pass and a copy per destination, each over the
whole slice.  Here the slice goes through an L1-sized scratch block: every
vector is read once and every destination written once, the least memory
traffic a sum can have.
"""

import numpy as np
from numba import njit

from hpcml.kernels import JIT

_BLOCK = 2048  # float32 elements: 8 KiB of scratch, well inside L1


# No fastmath: each element is summed in rank order, so the result has the
# bits of numpy's ((v0 + v1) + v2) ...
@njit(**dict(JIT, fastmath=False))
def _sum_scaled(sources, lo, hi, scale, destinations):
    acc = np.empty(_BLOCK, np.float32)
    for start in range(lo, hi, _BLOCK):
        n = min(_BLOCK, hi - start)
        # Slices first: loops over a slice from 0 vectorise, loops over
        # ``v[start + i]`` do not.
        first, second = sources[0][start:start + n], sources[1][start:start + n]
        for i in range(n):
            acc[i] = first[i] + second[i]
        for k in range(2, len(sources)):
            src = sources[k][start:start + n]
            for i in range(n):
                acc[i] += src[i]
        if scale != 1.0:
            for i in range(n):
                acc[i] *= scale
        for k in range(len(destinations)):
            dst = destinations[k][start:start + n]
            for i in range(n):
                dst[i] = acc[i]


def sum_scaled(sources, lo, hi, scale=1.0, destinations=None):
    """Write ``scale * sum(v[lo:hi] for v in sources)`` into ``d[lo:hi]`` for every destination.

    Parameters
    ----------
    sources : sequence of ndarray
        At least two contiguous float32 vectors of one length, summed in
        this order.
    lo, hi : int
        The slice.
    scale : float
        Applied in float32 after the sum.
    destinations : sequence of ndarray, optional
        Vectors like the sources that receive the result; default the sources
        themselves.  A source may be a destination: each element is read from
        every source before any destination is written.
    """
    sources = tuple(sources)
    destinations = sources if destinations is None else tuple(destinations)
    if len(sources) < 2 or not destinations:
        raise ValueError("sum_scaled needs at least two sources and one destination")
    n = sources[0].shape[0]
    for v in sources + destinations:
        if v.dtype != np.float32 or v.ndim != 1 or v.shape[0] != n or not v.flags.c_contiguous:
            raise ValueError("sum_scaled takes contiguous float32 vectors of one length")
    if not 0 <= lo <= hi <= n:
        raise ValueError(f"slice [{lo}, {hi}) outside vectors of length {n}")
    _sum_scaled(sources, int(lo), int(hi), np.float32(scale), destinations)
