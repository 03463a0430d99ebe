"""Bucketed gradient allreduce equals the mean of the ranks' own gradients.

Each rank back-propagates its own batch twice: once plainly (the reference
gradients, gathered from every rank and averaged with numpy) and once with
the hooks of GradientBuckets armed.  Buckets are tiny so that the model
spreads over many of them; the last rank gets an empty batch on purpose and
contributes zeros.  Then the same with the head's first fully connected layer
factored (its weight gradient formed from every rank's factors), and the
error for more rows than the factors have room for.

Run under ``MPIR_CVAR_NUM_CLIQUES`` too: every transport is checked, and the
ones that promise a sum order (shared, hierarchical) must give exactly the
float32 fold of that order -- node sums in rank order, then over the nodes in
node order -- computed here with numpy.  The bytes each step records per kind
must be the bucket bytes of :mod:`hpcml.vision.transports`.
"""

import sys

import numpy as np
import torch

from hpcml.comm import Comm, install_abort_hook
from hpcml.vision.buckets import GradientBuckets
from hpcml.vision.models import build_model

install_abort_hook()  # a failed check on one rank ends the job instead of hanging it
comm = Comm.world()
torch.manual_seed(0)
model = build_model("vcnn2", 3, (13, 13, 13), width=0.1, dropout=0.0)
n_local = 0 if (comm.size > 1 and comm.rank == comm.size - 1) else 2 + comm.rank
gen = torch.Generator().manual_seed(100 + comm.rank)
x = torch.rand((n_local, 1, 13, 13, 13), generator=gen)
y = torch.randint(0, 3, (n_local,), generator=gen)

params = list(model.parameters())


def local_grads():
    model.zero_grad(set_to_none=True)
    if n_local:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return [np.zeros(p.shape, np.float32) if p.grad is None else p.grad.numpy().copy()
            for p in params]


def averaged_grads(buckets):
    model.zero_grad(set_to_none=True)
    buckets.start()
    if n_local:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    buckets.finish()
    return np.concatenate([p.grad.numpy().ravel() for p in params])


mine = local_grads()
flat = np.concatenate([g.ravel() for g in mine])[None, :]
every = comm.allgatherv(flat)
expected = every.mean(axis=0)
node_of = comm.allgather_obj(comm.topology.node_index)


def fold(rows):
    total = rows[0].copy()
    for row in rows[1:]:
        total += row  # float32, one addition at a time
    return total


def promised(every):
    """The documented order: fold over nodes of the fold over each node's ranks."""
    if comm.size == 1:
        return every[0]
    nodes = [fold([every[r] for r in range(comm.size) if node_of[r] == k])
             for k in range(comm.topology.nodes)]
    return fold(nodes) * np.float32(1.0 / comm.size)


ordered = promised(every)

transports = ["auto", "allreduce", "hierarchical"] + ([] if comm.spans_nodes else ["shared"])
for transport in transports:
    buckets = GradientBuckets(model, comm, bucket_bytes=2048, first_bucket_bytes=512,
                              transport=transport)
    before = dict(comm.stats.kinds)
    got = averaged_grads(buckets)
    if buckets.transport == "allreduce" or comm.size == 1:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    else:
        assert np.array_equal(got, ordered), (transport, np.abs(got - ordered).max())
    # Payload bytes of the step, per kind, against the bucket bytes.
    step = {k: v[1] - before.get(k, (0, 0))[1] for k, v in comm.stats.kinds.items()}
    step = {k: v for k, v in step.items() if v}
    bucket_bytes = 4 * sum(buckets.bucket_sizes)
    if comm.size == 1:
        want = {}
    elif buckets.transport == "allreduce":
        want = {"allreduce": bucket_bytes}
    elif buckets.transport == "shared":
        want = {"shared_sum": bucket_bytes}
    else:
        want = {}
        if comm.node.size > 1:
            want["shared_sum"] = bucket_bytes
        if comm.leaders is not None:
            want["leaders_allreduce"] = bucket_bytes
    assert step == want, (transport, step, want)
    buckets.remove()

buckets = GradientBuckets(model, comm, bucket_bytes=2048, first_bucket_bytes=512)
assert len(buckets.bucket_sizes) > 5, buckets.bucket_sizes
# A bucket is closed by the parameter that brings it to its limit (512 B for the first).
for b, (group, size) in enumerate(zip(buckets.buckets, buckets.bucket_sizes)):
    limit = 512 if b == 0 else 2048
    last = group[-1].numel()
    assert (size - last) * 4 < limit, (b, size, last)
    assert size * 4 >= limit or b == len(buckets.buckets) - 1, (b, size)
# Buckets follow the reverse registration order, each parameter exactly once.
order = [p for group in buckets.buckets for p in group]
assert [id(p) for p in order] == [id(p) for p in reversed(params)]
for _ in range(2):  # twice: the buffers are reused between steps
    got = averaged_grads(buckets)
    assert np.array_equal(got, ordered), np.abs(got - ordered).max()
buckets.remove()
# The gradients outlive the buckets' shared memory (views are replaced by copies).
after = np.concatenate([p.grad.numpy().ravel() for p in params])
assert np.array_equal(after, got)

# Factored: Linear(22, 102) has 2244 weights, more than 3 ranks' factors of 4
# rows (3 * 4 * 124); Linear(102, 3) has fewer.
fc = model.head[1]
buckets = GradientBuckets(model, comm, bucket_bytes=2048, first_bucket_bytes=512, factor_rows=4)
assert buckets.factored == ([fc] if comm.size > 1 else []), buckets.factored
bucketed = [p for group in buckets.buckets for p in group]
assert [id(p) for p in bucketed] == [id(p) for p in reversed(params) if p is not fc.weight
                                     or comm.size == 1]
is_fc = np.concatenate([np.full(p.numel(), p is fc.weight) for p in params])
for _ in range(2):
    got = averaged_grads(buckets)
    np.testing.assert_allclose(got[is_fc], expected[is_fc], rtol=1e-5, atol=1e-7)
    assert np.array_equal(got[~is_fc], ordered[~is_fc])
# Every rank holds the same bits of the factored gradient.
fc_grad = fc.weight.grad.numpy().ravel().copy()
assert np.array_equal(comm.allreduce(fc_grad.copy(), "max"), comm.allreduce(fc_grad.copy(), "min"))
# Outside start()/finish() the layer computes its own gradient, as usual.
assert np.array_equal(np.concatenate([g.ravel() for g in local_grads()]), flat[0])
if comm.size > 1:
    # More rows than the factors hold: a clear error from backward, on every rank.
    big = torch.rand((5, 1, 13, 13, 13))
    buckets.start()
    try:
        torch.nn.functional.cross_entropy(model(big), torch.zeros(5, dtype=torch.long)).backward()
        raise AssertionError("5 rows with factor_rows=4 went through")
    except ValueError as exc:
        assert "5 rows reached" in str(exc) and "factor_rows=4" in str(exc), exc
    buckets.finish()  # the others' products still need this rank's (empty) factors
fc_grad = fc.weight.grad.numpy().copy()
buckets.remove()
assert "forward" not in vars(fc)
assert np.array_equal(fc.weight.grad.numpy(), fc_grad)  # kept when the window went
if comm.rank == 0:
    print("ok", len(buckets.bucket_sizes), "buckets")
sys.exit(0)
