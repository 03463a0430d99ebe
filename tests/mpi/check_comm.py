"""Collectives of hpcml.comm against values every rank can compute alone."""

import numpy as np

from hpcml.comm import Comm
from hpcml.errors import InputError

comm = Comm.world()
r, p = comm.rank, comm.size

x = np.full(5, r + 1.0)
assert np.array_equal(comm.allreduce(x), np.full(5, p * (p + 1) / 2))
assert comm.allreduce_scalar(r, "max") == p - 1
assert comm.allreduce_scalar(float(r), "min") == 0.0

y = comm.bcast(np.arange(7.0).reshape(7, 1) if r == 0 else None)
assert y.shape == (7, 1) and y[6, 0] == 6.0

# Uneven blocks, one rank empty: rank r holds r rows of width 3.
local = np.full((r, 3), float(r))
expected = np.concatenate([np.full((q, 3), float(q)) for q in range(p)])
assert np.array_equal(comm.allgatherv(local), expected)
gathered = comm.gatherv(local, root=p - 1)
assert (gathered is None) == (r != p - 1)
if gathered is not None:
    assert np.array_equal(gathered, expected)

request = comm.iallreduce(np.ones(4) * r)
assert np.array_equal(request.wait(), np.full(4, p * (p - 1) / 2))

# iallgatherv with lengths known to all: rank k sends k + 1 values.
lengths = np.arange(1, p + 1)
got = comm.iallgatherv(np.full(r + 1, r, np.int32), lengths).wait()
assert np.array_equal(got, np.repeat(np.arange(p), lengths).astype(np.int32))

# SharedSum: slices summed over the ranks in rank order, the same bits on every rank.
from hpcml.comm import SharedSum  # noqa: E402
assert comm.shares_node()  # the tests run on one machine
if p > 1:
    n = 1001
    shared = SharedSum(comm, n)
    vectors = np.random.default_rng(0).random((p, n)).astype(np.float32)
    for step in range(2):  # the window is reused; the second time with a scale
        scale = 1.0 if step == 0 else 1.0 / p
        shared.local[:] = vectors[r] * (step + 1)
        for lo, hi in ((0, 7), (7, 500), (500, 1001)):
            shared.sum(lo, hi, scale=scale)
        expected = vectors[0] * (step + 1)
        for k in range(1, p):
            expected = expected + vectors[k] * (step + 1)
        if step:
            expected = expected * np.float32(scale)
        assert np.array_equal(shared.local, expected), np.abs(shared.local - expected).max()
    shared.free()

# SharedArray: one zeroed array for all ranks; after a fence each rank sees
# the others' writes (every rank writes its own rows, then reads all).
from hpcml.comm import SharedArray  # noqa: E402
table = SharedArray(comm, (p, 3), np.int32)
assert table.array.shape == (p, 3) and not table.array.any()
table.fence()  # every rank has seen zeros before any writes
table.array[r] = r + 1
table.fence()
assert np.array_equal(table.array, np.repeat(np.arange(1, p + 1, dtype=np.int32)[:, None], 3, 1))
table.free()
empty = SharedArray(comm, (0,), np.uint16)  # a zero-size window is allowed
assert empty.array.size == 0
empty.free()

# agree: one rank's problem becomes the same error on every rank.
try:
    comm.agree(r != p - 1, f"bad shard on rank {r}")
except InputError as exc:
    assert str(exc) == f"bad shard on rank {p - 1}" and exc.collective
else:
    raise AssertionError("agree did not raise")
comm.agree(True, "never")

try:
    with comm.guard():
        if r == 0:
            raise InputError("rank 0 saw a problem")
except InputError as exc:
    assert str(exc) == "rank 0 saw a problem"
else:
    raise AssertionError("guard did not raise")

report = comm.timing_report()
for key in ("compute_s", "comm_s", "compute_comm_s", "io_s", "bytes", "wall_s"):
    assert report[key]["min"] <= report[key]["median"] <= report[key]["max"]
assert report["bytes"]["min"] > 0 if p > 1 else True
mine = comm.timings()
assert abs(mine["compute_comm_s"] - (mine["wall_s"] - mine["io_s"])) < 1e-6
assert abs(mine["compute_s"] + mine["comm_s"] + mine["io_s"] - mine["wall_s"]) < 1e-6 or mine["compute_s"] == 0

# Per-iteration accounting: three marked iterations of one 10-double allreduce
# and one 3-double broadcast each give exactly those payloads per iteration.
fresh = Comm.world()
fresh.allreduce(np.ones(100))  # set-up before the first mark stays out
for _ in range(3):
    fresh.allreduce(np.ones(10))
    fresh.bcast(np.ones(3))
    fresh.mark_iteration()
rep = fresh.communication_report()
assert rep["iterations"] == 3 and rep["ranks"] == p, rep
assert rep["collectives"]["allreduce"]["bytes"]["max"] == 80.0, rep
assert rep["collectives"]["allreduce"]["calls"]["min"] == 1.0, rep
assert rep["collectives"]["bcast"]["bytes"]["median"] == 24.0, rep
assert rep["bytes"]["max"] == 104.0, rep
assert Comm.world().communication_report()["iterations"] == 0
