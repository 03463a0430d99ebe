"""Gradient averaging on flat buckets, launched from backward hooks (the Horovod/DDP design).

Parameters are grouped, in the reverse of their registration order (roughly the
order in which backward produces their gradients), into buckets: a bucket is
closed as soon as it holds ``bucket_bytes`` or more, and the first one as soon
as it holds ``first_bucket_bytes`` (1 MiB by default, as in PyTorch's DDP), so
that the last layers' gradients -- the first ones backward produces -- go out
early.  A post-accumulate-grad hook copies each gradient into its slot of the
bucket's flat, contiguous host buffer; when the last gradient of a bucket has
arrived the bucket is handed to a communication thread, which allreduces it
while backward goes on computing the gradients of earlier layers.  Buckets are
reduced strictly in bucket order (a bucket that fills early waits for its
predecessors), because every rank must start its collectives in the same order.

When every rank runs on one node the buckets live in a shared-memory window
and are summed there (:class:`hpcml.comm.SharedSum`): each rank reads and
writes a bucket once instead of about five times for MPI's allreduce
through its bounce buffers.  Across nodes they are allreduced by MPI.  The
division by the number of ranks is folded into the sum.

The communication thread waits by testing its request and sleeping in between
(backing off from 20 µs to 0.5 ms), never by spinning inside MPI: on a machine
with as many busy ranks as cores a spinning wait takes the core from the
backward pass of its own rank or of a peer, whereas a handful of tests is all
that MPICH needs to move even a multi-megabyte shared-memory allreduce along.
The main thread likewise sleeps on an event in :meth:`GradientBuckets.finish`.
The thread is the only one in MPI between :meth:`~GradientBuckets.start` and
:meth:`~GradientBuckets.finish`, so MPI's ``serialized`` thread level suffices
(mpi4py asks for ``multiple``).

:meth:`GradientBuckets.finish` hands over whatever backward did not (parameters
that received no gradient contribute zeros, so a rank with an empty batch still
takes part), waits for every bucket and points each ``param.grad`` at its
average (on a GPU, copies it there).
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import torch

from hpcml.comm import SharedSum

FIRST_BUCKET_BYTES = 1 << 20
_POLL_MIN_S, _POLL_MAX_S = 20e-6, 5e-4


def plan_buckets(sizes, bucket_bytes, first_bucket_bytes=FIRST_BUCKET_BYTES):
    """Split parameter sizes (bytes, in launch order) into consecutive buckets.

    Returns
    -------
    list of list of int
        Indices into ``sizes``; a bucket ends with the first parameter that
        brings it to its limit (``first_bucket_bytes`` for the first bucket,
        ``bucket_bytes`` for the others).
    """
    buckets, current, size = [], [], 0
    for i, nbytes in enumerate(sizes):
        current.append(i)
        size += nbytes
        if size >= (bucket_bytes if buckets else min(first_bucket_bytes, bucket_bytes)):
            buckets.append(current)
            current, size = [], 0
    if current:
        buckets.append(current)
    return buckets


class _Reducer(threading.Thread):
    """Sum buckets over the ranks, one at a time in submission order, off the main thread."""

    def __init__(self, comm, shared, scale):
        super().__init__(name="hpcml-gradient-allreduce", daemon=True)
        self.comm = comm
        self.shared = shared
        self.scale = scale
        self.jobs = queue.SimpleQueue()
        self.error = None

    def run(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            buf, lo, done = job
            try:
                if self.error is None and self.shared is not None:
                    self.shared.sum(lo, lo + buf.shape[0], scale=self.scale)
                elif self.error is None:  # after a failure, only release the waiters
                    request = self.comm.iallreduce(buf, op="sum")
                    pause = _POLL_MIN_S
                    while not request.test():
                        time.sleep(pause)
                        pause = min(2 * pause, _POLL_MAX_S)
                    request.wait()
                    if self.scale != 1.0:
                        buf *= self.scale
            except BaseException as exc:  # re-raised on the main thread by finish()
                self.error = exc
            done.set()


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
    first_bucket_bytes : int
        Size at which the first bucket is closed.

    Notes
    -----
    Call :meth:`start` before each backward pass and :meth:`finish` after it,
    and :meth:`remove` when done (it also stops the communication thread).
    With several ranks, construction and :meth:`remove` are collective (the
    shared-memory window is made and released together).

    On the CPU, :meth:`finish` makes each ``param.grad`` a view of its slot in
    the bucket that holds the average (PyTorch DDP's
    ``gradient_as_bucket_view``), which saves a pass over every gradient; the
    next backward must then start from ``param.grad = None``
    (``zero_grad(set_to_none=True)``, PyTorch's default), as the hooks copy
    each fresh gradient into the bucket.  :meth:`remove` replaces the views by
    copies.  With ``comm.size == 1`` there is nothing to average: no hooks, no
    buckets, no thread; :meth:`finish` only gives a zero gradient to the
    parameters that received none.
    """

    def __init__(self, model, comm, bucket_bytes=4 << 20, average=True,
                 first_bucket_bytes=FIRST_BUCKET_BYTES):
        if bucket_bytes <= 0 or first_bucket_bytes <= 0:
            raise ValueError(f"bucket sizes must be positive, got {bucket_bytes} and "
                             f"{first_bucket_bytes}")
        if comm.size > 1 and comm.thread_level not in ("serialized", "multiple"):
            raise RuntimeError(f"gradient buckets communicate from a second thread, which MPI "
                               f"thread level {comm.thread_level!r} forbids; initialise MPI "
                               f"with at least 'serialized' (mpi4py's default is 'multiple')")
        self.comm = comm
        params = [p for p in model.parameters() if p.requires_grad][::-1]
        self._params = params
        self.buckets = [[params[i] for i in group] for group in
                        plan_buckets([p.numel() * 4 for p in params], bucket_bytes,
                                     first_bucket_bytes)]
        self._active = False
        self._handles, self._reducer, self._shared = [], None, None
        if comm.size == 1:
            return
        # All buckets side by side in one vector: in shared memory when the
        # ranks share a node.
        total = sum(p.numel() for p in params)
        self._shared = SharedSum(comm, total) if comm.shares_node() else None
        whole = self._shared.local if self._shared is not None else np.zeros(total, np.float32)
        whole[:] = 0.0
        self._slot = {}
        self._buffers = []
        self._starts = []
        start = 0
        for b, group in enumerate(self.buckets):
            offsets = np.cumsum([0] + [p.numel() for p in group])
            self._buffers.append(whole[start:start + int(offsets[-1])])
            self._starts.append(start)
            start += int(offsets[-1])
            for p, lo, hi in zip(group, offsets[:-1], offsets[1:]):
                self._slot[p] = (b, int(lo), int(hi))
        self._handles = [p.register_post_accumulate_grad_hook(self._on_grad) for p in params]
        self._reducer = _Reducer(comm, self._shared, 1.0 / comm.size if average else 1.0)
        self._reducer.start()

    @property
    def bucket_sizes(self):
        """Number of float32 elements per bucket, in launch order."""
        return [sum(p.numel() for p in group) for group in self.buckets]

    def start(self):
        """Arm the hooks for one backward pass."""
        self._pending = [len(g) for g in self.buckets]
        self._seen = set()
        self._done = [threading.Event() for _ in self.buckets]
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
            self._reducer.jobs.put((self._buffers[self._next], self._starts[self._next],
                                    self._done[self._next]))
            self._next += 1

    def finish(self):
        """Launch the rest, wait for every bucket in order and store averaged gradients."""
        if not self._active:
            raise RuntimeError("finish() called without start()")
        self._active = False
        if self._reducer is None:  # one rank
            for p in self._params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            return
        for b, group in enumerate(self.buckets):
            for p in group:
                if p not in self._seen:  # no gradient this step: contribute zeros
                    _, lo, hi = self._slot[p]
                    self._buffers[b][lo:hi] = 0.0
                    self._seen.add(p)
                    self._pending[b] -= 1
        self._launch_ready()
        for b, group in enumerate(self.buckets):
            t0 = time.perf_counter()
            self._done[b].wait()
            # Time the main thread spends here is communication that backward did not hide.
            self.comm.stats.comm_s += time.perf_counter() - t0
            if self._reducer.error is not None:
                raise self._reducer.error
            buf = self._buffers[b]
            for p in group:
                _, lo, hi = self._slot[p]
                average = torch.from_numpy(buf[lo:hi]).view_as(p)
                p.grad = average if p.device.type == "cpu" else average.to(p.device)

    def remove(self):
        """Detach the hooks from the model and stop the communication thread."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._reducer is not None:
            if self._shared is not None:  # the shared window goes: keep the gradients
                for p in self._params:
                    if p.grad is not None and p.device.type == "cpu":
                        p.grad = p.grad.clone()
            self._reducer.jobs.put(None)
            # After an error in the middle of a step a bucket may wait forever for a peer
            # that is gone; the daemon thread (and the shared window, whose release is
            # collective) is then left behind rather than joined.
            if not self._active and all(d.is_set() for d in getattr(self, "_done", [])):
                self._reducer.join()
                if self._shared is not None:
                    self._shared.free()
            self._shared = None
            self._reducer = None
