"""Bucketed gradient allreduce equals the mean of the ranks' own gradients.

Each rank back-propagates its own batch twice: once plainly (the reference
gradients, gathered from every rank and averaged with numpy) and once with
the hooks of GradientBuckets armed.  Buckets are tiny so that the model
spreads over many of them; the last rank gets an empty batch on purpose and
contributes zeros.
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


mine = local_grads()
flat = np.concatenate([g.ravel() for g in mine])[None, :]
every = comm.allgatherv(flat)
expected = every.mean(axis=0)

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
    model.zero_grad(set_to_none=True)
    buckets.start()
    if n_local:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    buckets.finish()
    got = np.concatenate([p.grad.numpy().ravel() for p in params])
    if comm.size <= 2:
        # (a + b) / 2 and a / 1 are exact in float32 whatever the order.
        assert np.array_equal(got, expected), np.abs(got - expected).max()
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
buckets.remove()
# The gradients outlive the buckets' shared memory (views are replaced by copies).
after = np.concatenate([p.grad.numpy().ravel() for p in params])
assert np.array_equal(after, got)
if comm.rank == 0:
    print("ok", len(buckets.bucket_sizes), "buckets")
sys.exit(0)
