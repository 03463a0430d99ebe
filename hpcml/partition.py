"""Which rows belong to which rank: pure block-partition functions.

Rank ``r`` of ``size`` owns the contiguous rows ``[offsets[r], offsets[r+1])``.
The first ``n % size`` ranks own one row more than the others, so counts
differ by at most one; when ``size > n`` the last ranks own no rows.
"""

import numpy as np


def _check(n, size):
    if n < 0:
        raise ValueError(f"length must be >= 0, got {n}")
    if size < 1:
        raise ValueError(f"rank count must be >= 1, got {size}")


def block_counts(n, size):
    """Rows owned by each rank.

    Parameters
    ----------
    n : int
        Global length (rows).
    size : int
        Number of ranks.

    Returns
    -------
    numpy.ndarray
        ``int64`` array of length ``size`` summing to ``n``.
    """
    _check(n, size)
    counts = np.full(size, n // size, dtype=np.int64)
    counts[: n % size] += 1
    return counts


def block_offsets(n, size):
    """First row of each rank, with ``n`` appended (length ``size + 1``)."""
    offsets = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(block_counts(n, size), out=offsets[1:])
    return offsets


def block_range(n, size, rank):
    """``(start, stop)`` of the rows owned by ``rank``."""
    _check(n, size)
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} outside 0..{size - 1}")
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def owner(i, n, size):
    """Rank that owns global row ``i``."""
    _check(n, size)
    if not 0 <= i < n:
        raise ValueError(f"row {i} outside 0..{n - 1}")
    base, extra = divmod(n, size)
    big = extra * (base + 1)
    if i < big:
        return i // (base + 1)
    return extra + (i - big) // base
