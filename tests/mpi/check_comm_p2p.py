"""Comm's exclusive scan and non-blocking point to point, with their accounting."""

import numpy as np

from hpcml.comm import Comm

comm = Comm.world()
r, p = comm.rank, comm.size

# exscan: rank r gets the sum of ranks 0..r-1 (zeros on rank 0), in place.
arr = np.arange(5, dtype=np.int64) + 10 * r
out = comm.exscan(arr)
assert out is arr
expect = sum(np.arange(5) + 10 * q for q in range(r)) if r else np.zeros(5)
assert np.array_equal(arr, expect), (r, arr, expect)

# A ring: every rank sends its block (size differs by rank) to the left and
# receives its right neighbour's, both in flight at once.
left, right = (r - 1) % p, (r + 1) % p
before = comm.timings()["bytes"]
mine = np.full(r + 2, r, np.float64)
into = np.empty(right + 2, np.float64)
reqs = [comm.isend(mine, left, tag=5), comm.irecv(into, right, tag=5)]
while not all(q.test() for q in reqs):
    pass
assert reqs[1].wait() is into and np.array_equal(into, np.full(right + 2, right))
assert comm.timings()["bytes"] - before == mine.nbytes + into.nbytes
kinds = comm.stats.kinds
assert kinds["send"][0] == 1 and kinds["recv"][0] == 1 and kinds["scan"][0] == 1
print("ok", r)
