"""Where a vector lives: replicated on every rank or sharded by rows.

Sums over a vector are taken as *partials*: a sharded vector contributes its
local sum on every rank, a replicated one only on rank 0, so that one SUM
allreduce of a batch of partials gives every rank the same exact totals.
"""

import numpy as np


class Space:
    """A vector space of a distributed problem.

    Parameters
    ----------
    comm : hpcml.comm.Comm
    sharded : bool
        True when each rank holds only its block of the vector.
    """

    def __init__(self, comm, sharded):
        self.comm = comm
        self.sharded = bool(sharded)
        self.weight = 1.0 if self.sharded or comm.rank == 0 else 0.0

    def __repr__(self):
        return f"Space({'sharded' if self.sharded else 'replicated'})"

    def __eq__(self, other):
        return isinstance(other, Space) and other.sharded == self.sharded and other.comm is self.comm

    def partial(self, local_sum):
        """This rank's share of a sum over the vector."""
        # Not 0 · value: an infinite value held on every rank must sum to
        # infinity, not to NaN.
        return float(local_sum) if self.weight else 0.0

    def total(self, *partials):
        """Sum partials over the ranks (one allreduce for the whole batch)."""
        buf = np.array(partials, dtype=np.float64)
        return self.comm.allreduce(buf) if self.comm.size > 1 else buf

    def sum(self, local_sum):
        """A sum over the whole vector from this rank's ``local_sum`` (collective when sharded)."""
        return float(self.total(self.partial(local_sum))[0])

    def dot(self, a, b):
        """``<a, b>`` over the whole vector (collective when sharded)."""
        if not self.sharded:
            return float(np.dot(a, b))
        return self.sum(np.dot(a, b))

    def norm(self, a):
        """Euclidean norm over the whole vector (collective when sharded)."""
        return float(np.sqrt(self.dot(a, a)))
