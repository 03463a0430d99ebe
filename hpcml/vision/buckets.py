"""Gradient averaging on flat buckets, launched from backward hooks (the Horovod/DDP design).

Parameters are grouped, in the reverse of their registration order (roughly the
order in which backward produces their gradients), into buckets of at most
``bucket_bytes`` (a parameter larger than that gets a bucket of its own).  A
post-accumulate-grad hook copies each gradient into its slot of the bucket's
flat, contiguous host buffer; when the last gradient of a bucket has arrived the
bucket is handed to ``comm.iallreduce`` while backward goes on computing the
gradients of earlier layers.  Buckets are launched strictly in bucket order
(a bucket that fills early waits for its predecessors), because every rank must
start its non-blocking collectives in the same order.

:meth:`GradientBuckets.finish` launches whatever backward did not (parameters
that received no gradient contribute zeros, so a rank with an empty batch still
takes part), waits for every bucket in order and writes the averages back into
``param.grad``.
"""

from __future__ import annotations

import numpy as np
import torch


class GradientBuckets:
    """Average the gradients of ``model`` over the ranks of ``comm`` during backward.

    Parameters
    ----------
    model : torch.nn.Module
    comm : hpcml.comm.Comm
    bucket_bytes : int
        Target bucket size in bytes (gradients are reduced in float32).
    average : bool
        Divide the sums by ``comm.size``.

    Notes
    -----
    Call :meth:`start` before each backward pass and :meth:`finish` after it.
    With ``comm.size == 1`` nothing is communicated but the same code runs.
    """

    def __init__(self, model, comm, bucket_bytes=4 << 20, average=True):
        if bucket_bytes <= 0:
            raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
        self.comm = comm
        self.average = average
        params = [p for p in model.parameters() if p.requires_grad]
        self.buckets = []  # list of (params, offsets, host buffer)
        current, size = [], 0
        for p in reversed(params):
            nbytes = p.numel() * 4
            if current and size + nbytes > bucket_bytes:
                self.buckets.append(current)
                current, size = [], 0
            current.append(p)
            size += nbytes
        if current:
            self.buckets.append(current)
        self._slot = {}
        self._buffers = []
        for b, group in enumerate(self.buckets):
            offsets = np.cumsum([0] + [p.numel() for p in group])
            buf = np.zeros(int(offsets[-1]), dtype=np.float32)
            self._buffers.append(buf)
            for p, lo, hi in zip(group, offsets[:-1], offsets[1:]):
                self._slot[p] = (b, int(lo), int(hi))
        self._handles = [p.register_post_accumulate_grad_hook(self._on_grad) for p in params]
        self._active = False

    @property
    def bucket_sizes(self):
        """Number of float32 elements per bucket, in launch order."""
        return [len(b) for b in self._buffers]

    def start(self):
        """Arm the hooks for one backward pass."""
        self._pending = [len(g) for g in self.buckets]
        self._seen = set()
        self._requests = [None] * len(self.buckets)
        self._next = 0
        self._active = True

    def _on_grad(self, p):
        if not self._active or p in self._seen:
            return
        b, lo, hi = self._slot[p]
        self._buffers[b][lo:hi] = p.grad.detach().reshape(-1).to("cpu", torch.float32).numpy()
        self._seen.add(p)
        self._pending[b] -= 1
        self._launch_ready()

    def _launch_ready(self):
        while self._next < len(self.buckets) and self._pending[self._next] == 0:
            self._requests[self._next] = self.comm.iallreduce(self._buffers[self._next], op="sum")
            self._next += 1
        # MPICH moves a non-blocking collective forward only inside MPI calls; testing the
        # buckets in flight from every hook keeps them moving while backward computes.
        for request in self._requests[:self._next]:
            if not request.test():
                break

    def finish(self):
        """Launch the rest, wait for every bucket in order and store averaged gradients."""
        if not self._active:
            raise RuntimeError("finish() called without start()")
        for b, group in enumerate(self.buckets):
            for p in group:
                if p not in self._seen:  # no gradient this step: contribute zeros
                    _, lo, hi = self._slot[p]
                    self._buffers[b][lo:hi] = 0.0
                    self._seen.add(p)
                    self._pending[b] -= 1
        self._launch_ready()
        scale = 1.0 / self.comm.size if self.average else 1.0
        for b, group in enumerate(self.buckets):
            buf = self._requests[b].wait()
            if scale != 1.0:
                buf *= np.float32(scale)
            for p in group:
                _, lo, hi = self._slot[p]
                flat = torch.from_numpy(buf[lo:hi]).view_as(p)
                if p.grad is None:
                    p.grad = flat.to(p.device, p.dtype).clone()
                else:
                    p.grad.copy_(flat)
        self._active = False

    def remove(self):
        """Detach the hooks from the model."""
        for h in self._handles:
            h.remove()
