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

How a bucket is reduced is the job of a transport
(:mod:`hpcml.vision.transports`, the reducer's communication hook): when
every rank runs on one node the buckets live in a shared-memory window and
are summed there (:class:`hpcml.comm.SharedSum`): each rank reads and
writes a bucket once instead of about five times for MPI's allreduce
through its bounce buffers.  Across nodes they are summed in shared memory
inside each node, reduced among the node leaders and shared back
(hierarchical, as in Horovod), in a documented order that makes 1 node x P
ranks and P nodes x 1 rank give the same bits.  The division by the number
of ranks is folded into the sum.

The large fully connected layers can skip the buckets altogether
(``factor_rows``): their weight gradient is a sum of outer products of each
sample's input and output gradient, so the ranks exchange these factors, a
few hundred KiB a step, and each computes a share of the averaged weight
gradient's rows from all of them, into shared memory.  The idea is Petuum's
sufficient-factor broadcasting, here without the broadcast of the full
product.  For V-CNN I (50 of its 63 MB of gradients in two fully connected
layers) it takes about 5% of the CPU time off a 2-rank step.  Across nodes
the leaders allgather their nodes' factors (every rank's factors, instead
of allreducing the weight gradient), and each node forms the product.

The communication thread waits by testing its request and sleeping in between
(:func:`hpcml.comm.wait_sleeping`), never by spinning inside MPI.  The main
thread likewise sleeps on an event in :meth:`GradientBuckets.finish`.  The
thread is the only one in MPI between :meth:`~GradientBuckets.start` and
:meth:`~GradientBuckets.finish`, so MPI's ``serialized`` thread level suffices
(mpi4py asks for ``multiple``).

:meth:`GradientBuckets.finish` hands over whatever backward did not (parameters
that received no gradient contribute zeros, so a rank with an empty batch still
takes part), waits for every unit (bucket or factored layer) and points each
``param.grad`` at its average (on a GPU, copies it there).
"""

from __future__ import annotations

import functools
import queue
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

from hpcml.comm import SharedArray
from hpcml.vision.transports import make_transport, resolve_transport, wait_request

FIRST_BUCKET_BYTES = 1 << 20


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
    """Run the units of a step (bucket sums, factored products) one at a time, in
    submission order, off the main thread."""

    def __init__(self):
        super().__init__(name="hpcml-gradient-allreduce", daemon=True)
        self.jobs = queue.SimpleQueue()
        self.error = None

    def run(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            work, done = job
            try:
                if self.error is None:  # after a failure, only release the waiters
                    work()
            except BaseException as exc:  # re-raised on the main thread by finish()
                self.error = exc
            done.set()


class _FactoredLinear(torch.autograd.Function):
    """``F.linear`` whose backward hands the layer's input and output gradient
    to ``publish`` instead of forming the weight gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, publish):
        ctx.save_for_backward(x, weight)
        ctx.publish = publish
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = grad_out @ weight if ctx.needs_input_grad[0] else None
        rows = grad_out.reshape(-1, grad_out.shape[-1])
        grad_bias = rows.sum(0) if ctx.needs_input_grad[2] else None
        ctx.publish(x.detach().reshape(-1, x.shape[-1]), rows)
        return grad_x, None, grad_bias, None


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
    factor_rows : int
        The most rows (samples) a rank feeds any ``nn.Linear`` layer in one
        step; 0 (default) turns factored gradients off.  When positive, the
        transport shares memory within nodes (not ``allreduce``) and the
        model is on the CPU, every ``nn.Linear`` whose weight has more
        elements than the factors of a step
        (``in * out > size * factor_rows * (in + out)``) is factored (see
        Notes); a step that feeds one more rows raises ``ValueError``.
    transport : str
        The gradient transport (:mod:`hpcml.vision.transports`): ``auto``
        (default: ``shared`` on one node, ``hierarchical`` across nodes),
        ``shared``, ``allreduce`` or ``hierarchical``.

    Notes
    -----
    Call :meth:`start` before each backward pass and :meth:`finish` after it,
    and :meth:`remove` when done (it also stops the communication thread).
    With several ranks, construction and :meth:`remove` are collective (the
    shared-memory windows are made and released together).

    On the CPU, :meth:`finish` makes each ``param.grad`` a view of its slot in
    the bucket that holds the average (PyTorch DDP's
    ``gradient_as_bucket_view``), which saves a pass over every gradient; the
    next backward must then start from ``param.grad = None``
    (``zero_grad(set_to_none=True)``, PyTorch's default), as the hooks copy
    each fresh gradient into the bucket.  :meth:`remove` replaces the views by
    copies.  With ``comm.size == 1`` there is nothing to average: no hooks, no
    buckets, no thread; :meth:`finish` only gives a zero gradient to the
    parameters that received none.

    A factored layer's weight gradient is never formed on one rank: it is
    ``sum over samples of g x^T``, so between :meth:`start` and
    :meth:`finish` the layer's backward publishes its input ``x`` and output
    gradient ``g`` (its sufficient factors, as in Petuum's sufficient-factor
    broadcasting) to shared memory, and each rank multiplies the factors of
    all ranks for 1/size-th of the weight's rows, straight into one shared
    copy of the averaged gradient (one per node; across nodes the leaders
    first allgather their nodes' factors).  The rows are cut in ``size``
    parts whatever the layout, rank ``r`` of a node of ``s`` ranks forming
    parts ``r, r + s, ...``, and the samples are concatenated in rank order:
    every layout multiplies the same matrices.  For a 4096 x 2048 layer and 16 samples per
    rank that replaces forming, copying and summing 32 MiB per rank by writing
    16 MiB, in the same number of flops.  The bias takes the bucket path.
    Outside :meth:`start`/:meth:`finish`, and under ``torch.no_grad``, the
    layers compute as usual.
    """

    def __init__(self, model, comm, bucket_bytes=4 << 20, average=True,
                 first_bucket_bytes=FIRST_BUCKET_BYTES, factor_rows=0, transport="auto"):
        if bucket_bytes <= 0 or first_bucket_bytes <= 0:
            raise ValueError(f"bucket sizes must be positive, got {bucket_bytes} and "
                             f"{first_bucket_bytes}")
        if factor_rows < 0:
            raise ValueError(f"factor_rows must be >= 0, got {factor_rows}")
        if comm.size > 1 and comm.thread_level not in ("serialized", "multiple"):
            raise RuntimeError(f"gradient buckets communicate from a second thread, which MPI "
                               f"thread level {comm.thread_level!r} forbids; initialise MPI "
                               f"with at least 'serialized' (mpi4py's default is 'multiple')")
        self.comm = comm
        params = [p for p in model.parameters() if p.requires_grad][::-1]
        self._params = params
        self._scale = 1.0 / comm.size if average else 1.0
        self._active = False
        self._handles, self._reducer, self._transport = [], None, None
        self._windows = ()
        #: The transport's name (``None`` on one rank).
        self.transport = resolve_transport(transport, comm) if comm.size > 1 else None
        shared = comm.size > 1 and self.transport != "allreduce"
        #: The factored ``nn.Linear`` layers, in launch order.
        self.factored = []
        if shared and factor_rows and all(p.device.type == "cpu" for p in params):
            by_weight = {m.weight: m for m in model.modules()
                         if isinstance(m, torch.nn.Linear) and m.weight.requires_grad
                         and m.in_features * m.out_features
                         > comm.size * factor_rows * (m.in_features + m.out_features)}
            self.factored = [by_weight[p] for p in params if p in by_weight]
        #: Buckets of the other parameters, in launch order.
        self.buckets = []
        self._units = self._plan_units(params, bucket_bytes, first_bucket_bytes)
        if comm.size == 1:
            return
        # All buckets side by side in one vector, where the transport wants it.
        total = sum(p.numel() for group in self.buckets for p in group)
        self._transport = make_transport(self.transport, comm, total)
        whole, result = self._transport.local, self._transport.result
        whole[:] = 0.0
        self._slot = {}
        self._buffers, self._results, self._starts = [], [], []
        start = 0
        for b, group in enumerate(self.buckets):
            offsets = np.cumsum([0] + [p.numel() for p in group])
            self._buffers.append(whole[start:start + int(offsets[-1])])
            self._results.append(result[start:start + int(offsets[-1])])
            self._starts.append(start)
            for p, lo, hi in zip(group, offsets[:-1], offsets[1:]):
                self._slot[p] = (b, int(lo), int(hi))
            start += int(offsets[-1])
        self._work = [functools.partial(self._reduce, b) if kind == "bucket"
                      else functools.partial(self._product, b) for kind, b in self._units]
        if self.factored:
            self._setup_factors(factor_rows)
        self._handles = [p.register_post_accumulate_grad_hook(self._on_grad)
                         for p in self._slot]
        self._reducer = _Reducer()
        self._reducer.start()

    def _plan_units(self, params, bucket_bytes, first_bucket_bytes):
        """The step's units in launch order: buckets of consecutive parameters and,
        where a factored weight comes, its product."""
        units, run, factored = [], [], {layer.weight: k for k, layer in enumerate(self.factored)}

        def close_run():
            first = first_bucket_bytes if not self.buckets else bucket_bytes
            for group in plan_buckets([p.numel() * 4 for p in run], bucket_bytes, first):
                self.buckets.append([run[i] for i in group])
                units.append(("bucket", len(self.buckets) - 1))
            run.clear()

        for p in params:
            if p in factored:
                close_run()
                units.append(("product", factored[p]))
            else:
                run.append(p)
        close_run()
        self._unit_index = {unit: u for u, unit in enumerate(units)}
        return units

    def _setup_factors(self, factor_rows):
        """Shared memory, per node, for every rank's factors and the averaged weight gradients.

        Rank ``r``'s factors of layer ``k`` are row ``position[r]`` of the
        node's ``(size, width_k)`` window, nodes one after another (so that a
        leader sends its node's rows in one piece), the row count in the last
        column (float32 holds it exactly).
        """
        comm, layers = self.comm, self.factored
        node = comm.node
        self._factor_rows = factor_rows
        where = comm.allgather_obj((comm.topology.node_index, node.rank))
        first = np.concatenate([[0], np.cumsum(comm.topology.ranks_per_node)])
        self._position = [int(first[k] + r) for k, r in where]
        me = self._position[comm.rank]
        self._node_rows = (int(first[comm.topology.node_index]),
                           int(first[comm.topology.node_index + 1]))
        self._blocks = [SharedArray(node, (comm.size, factor_rows * (m.in_features + m.out_features)
                                           + 1), np.float32) for m in layers]
        self._averaged = SharedArray(node, (sum(m.weight.numel() for m in layers),), np.float32)
        self._windows = (*self._blocks, self._averaged)
        # Per layer: this rank's (x, g) blocks, every position's, and the averaged gradient.
        self._x, self._g, self._grad = [], [], []
        wo = 0
        for m, block in zip(layers, self._blocks):
            rows = torch.from_numpy(block.array)
            self._x.append([b[:factor_rows * m.in_features].view(factor_rows, m.in_features)
                            for b in rows])
            self._g.append([b[factor_rows * m.in_features:-1].view(factor_rows, m.out_features)
                            for b in rows])
            n = m.weight.numel()
            self._grad.append(torch.from_numpy(self._averaged.array[wo:wo + n])
                              .view_as(m.weight))
            wo += n
        self._me = me
        for k, m in enumerate(layers):
            m.forward = functools.partial(self._factored_forward, k, m)

    @property
    def bucket_sizes(self):
        """Number of float32 elements per bucket, in launch order."""
        return [sum(p.numel() for p in group) for group in self.buckets]

    def start(self):
        """Arm the hooks for one backward pass."""
        self._pending = [len(self.buckets[i]) if kind == "bucket" else 1
                         for kind, i in self._units]
        self._seen = set()
        self._done = [threading.Event() for _ in self._units]
        self._next = 0
        self._active = True

    def _on_grad(self, p):
        if not self._active or p in self._seen:
            return
        b, lo, hi = self._slot[p]
        self._buffers[b][lo:hi] = p.grad.detach().reshape(-1).to("cpu", torch.float32).numpy()
        self._arrived(p, ("bucket", b))

    def _arrived(self, key, unit):
        self._seen.add(key)
        self._pending[self._unit_index[unit]] -= 1
        while self._next < len(self._units) and self._pending[self._next] == 0:
            self._reducer.jobs.put((self._work[self._next], self._done[self._next]))
            self._next += 1

    # -- the bucket path ----------------------------------------------------------

    def _reduce(self, b):
        lo = self._starts[b]
        self._transport.reduce(lo, lo + self._buffers[b].shape[0], self._scale)

    # -- the factored path --------------------------------------------------------

    def _factored_forward(self, k, layer, x):
        if not (self._active and torch.is_grad_enabled()):
            return F.linear(x, layer.weight, layer.bias)
        return _FactoredLinear.apply(x, layer.weight, layer.bias,
                                     functools.partial(self._publish, k))

    def _publish(self, k, x, g):
        """Backward of factored layer ``k``: store this rank's factors."""
        key = ("factors", k)
        if not self._active or key in self._seen:
            raise RuntimeError(f"factored layer {self.factored[k]} ran backward twice in one "
                               f"step or outside start()/finish()")
        n = x.shape[0]
        if n > self._factor_rows:
            raise ValueError(f"{n} rows reached factored layer {self.factored[k]}, more than "
                             f"factor_rows={self._factor_rows}")
        self._x[k][self._me][:n] = x
        self._g[k][self._me][:n] = g
        self._blocks[k].array[self._me, -1] = n
        layer = self.factored[k]
        self.comm.stats.count("shared_factors", 4 * n * (layer.in_features + layer.out_features))
        self._arrived(key, ("product", k))

    def _product(self, k):
        """This rank's rows of layer ``k``'s averaged weight gradient, from every rank's factors."""
        comm, block = self.comm, self._blocks[k]
        self._transport.node_barrier(*self._windows)  # the node's factors are written
        if comm.spans_nodes:
            if comm.leaders is not None:
                lo, hi = self._node_rows
                width = block.array.shape[1]
                counts = np.asarray(comm.topology.ranks_per_node, np.int64) * width
                every = wait_request(comm.leaders.iallgatherv(block.array[lo:hi].reshape(-1), counts))
                block.array[:] = every.reshape(block.array.shape)
                comm.stats.count("leaders_allgatherv", every.nbytes)
            self._transport.node_barrier(*self._windows)  # every node's factors are here
        order = [self._position[r] for r in range(comm.size)]
        rows = block.array[:, -1].astype(np.int64)
        x = torch.cat([self._x[k][p][:rows[p]] for p in order])
        g = torch.cat([self._g[k][p][:rows[p]] for p in order])
        if self._scale != 1.0:
            g *= self._scale
        cuts = np.linspace(0, g.shape[1], comm.size + 1).astype(np.int64)
        for part in range(comm.node.rank, comm.size, comm.node.size):
            a, b = int(cuts[part]), int(cuts[part + 1])
            torch.mm(g[:, a:b].t(), x, out=self._grad[k][a:b])
        self._transport.node_barrier(*self._windows)  # every part is written

    def finish(self):
        """Launch the rest, wait for every unit in order and store averaged gradients."""
        if not self._active:
            raise RuntimeError("finish() called without start()")
        if self._reducer is None:  # one rank
            self._active = False
            for p in self._params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            return
        # What backward did not reach this step contributes zeros.
        for b, group in enumerate(self.buckets):
            for p in group:
                if p not in self._seen:
                    _, lo, hi = self._slot[p]
                    self._buffers[b][lo:hi] = 0.0
                    self._arrived(p, ("bucket", b))
        for k in range(len(self.factored)):
            if ("factors", k) not in self._seen:
                self._blocks[k].array[self._me, -1] = 0
                self._arrived(("factors", k), ("product", k))
        self._active = False
        for u, (kind, i) in enumerate(self._units):
            t0 = time.perf_counter()
            self._done[u].wait()
            # Time the main thread spends here is communication that backward did not hide.
            self.comm.stats.comm_s += time.perf_counter() - t0
            if self._reducer.error is not None:
                raise self._reducer.error
            if kind == "product":
                weight = self.factored[i].weight
                weight.grad = self._grad[i]
                continue
            buf = self._results[i]
            for p in self.buckets[i]:
                _, lo, hi = self._slot[p]
                average = torch.from_numpy(buf[lo:hi]).view_as(p)
                p.grad = average if p.device.type == "cpu" else average.to(p.device)

    def remove(self):
        """Detach the hooks from the model and stop the communication thread."""
        for h in self._handles:
            h.remove()
        self._handles = []
        for layer in self.factored:
            layer.__dict__.pop("forward", None)
        if self._reducer is not None:
            if self._transport is not None:  # the shared windows go: keep the gradients
                for p in self._params:
                    if p.grad is not None and p.device.type == "cpu":
                        p.grad = p.grad.clone()
            self._reducer.jobs.put(None)
            # After an error in the middle of a step a unit may wait forever for a peer
            # that is gone; the daemon thread (and the shared windows, whose release is
            # collective) is then left behind rather than joined.
            if not self._active and all(d.is_set() for d in getattr(self, "_done", [])):
                self._reducer.join()
                for window in self._windows:
                    window.free()
                self._transport.free()
            self._transport = None
            self._reducer = None
