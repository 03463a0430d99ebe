"""Comm.allreduce's floating-point sums do not depend on the node layout.

Every rank's array is known to every rank (drawn from the rank's seed), so
each rank computes the rank-order sum itself and compares bits; the script
prints a digest of all results, which the test compares between layouts.
Sizes cover the gathered path (short arrays), the all-to-all path (long
ones), arrays shorter than the rank count and empty arrays.

Usage: check_ordered_sum.py
"""

import hashlib

import numpy as np

from hpcml.comm import Comm

comm = Comm.world()
r, p = comm.rank, comm.size


def contribution(rank, n, dtype):
    rng = np.random.default_rng([rank, n])
    # Magnitudes over 16 decades: every change of order shows in the bits.
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
    return x.astype(dtype)


digest = hashlib.sha256()
for n in (0, 1, 2, 5, 1000, Comm.ORDERED_GATHER_BYTES // 8 + 7, 70001):
    for dtype in (np.float64, np.float32):
        got = comm.allreduce(contribution(r, n, dtype))
        want = contribution(0, n, dtype)
        for q in range(1, p):
            want = want + contribution(q, n, dtype)
        assert got.dtype == dtype and got.tobytes() == want.tobytes(), (n, dtype, np.abs(got - want).max())
        digest.update(got.tobytes())
# A 2-D array and a scalar go the same way.
m = comm.allreduce(contribution(r, 12, np.float64).reshape(3, 4))
assert m.shape == (3, 4)
digest.update(m.tobytes())
s = comm.allreduce_scalar(float(contribution(r, 1, np.float64)[0]))
digest.update(np.float64(s).tobytes())
# Integers and max/min are exact in any order: MPI's own reduction.
assert comm.allreduce(np.array([r], np.int64))[0] == p * (p - 1) // 2
assert comm.allreduce(np.array([float(r)]), "max")[0] == p - 1
if r == 0:
    print("digest", digest.hexdigest())
