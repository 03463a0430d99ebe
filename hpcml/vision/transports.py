"""Gradient transports: how the ranks' bucket vectors become their average.

A transport is the communication hook of
:class:`~hpcml.vision.buckets.GradientBuckets`, in the manner of PyTorch
DDP's ``register_comm_hook``: the reducer owns the buckets, their order and
the overlap with backward; the transport owns the memory the hooks write
into (:attr:`Transport.local`), the memory the average is read from
(:attr:`Transport.result`) and one collective, :meth:`Transport.reduce`,
called on the communication thread for each bucket in bucket order.

``shared``
    Every rank on one node: the vectors live in a shared-memory window and
    are summed there (:class:`hpcml.comm.SharedSum`).
``allreduce``
    MPI's allreduce over all ranks (no shared memory; the flat baseline).
``hierarchical``
    Ranks on several nodes, as Horovod's hierarchical allreduce: the ranks
    of a node sum in shared memory; the node leaders (``comm.leaders``)
    reduce the node sums among themselves, each leader summing one N-th of
    the bucket over the N nodes (an all-to-all, the sum, an allgather: the
    bytes of a ring allreduce); the leader leaves the average in a window
    of its node, where the node's ranks read it.

Sum order (what is promised)
----------------------------
Float32 addition is not associative, so the order is part of the result.
Every element of an averaged bucket is, bit for bit::

    scale * fold(node_sum(0), node_sum(1), ..., node_sum(N-1))
    node_sum(k) = fold(v[r] for the ranks r of node k, in rank order)

where ``fold(a, b, c, ...) = ((a + b) + c) + ...`` in float32, nodes are
numbered by their lowest rank (:class:`hpcml.comm.Topology`) and ``v[r]`` is
rank ``r``'s gradient.  One node (``shared``) is the case N = 1 and P nodes
of one rank the case of one rank per node: both are the plain fold over the
ranks in rank order, so **1 node x P ranks and P nodes x 1 rank give the
same bits**, as do repeated runs on one layout.  Layouts that group the
ranks differently (2 x 2 against 1 x 4) add the same numbers in another
association, ((v0 + v2) + (v1 + v3)) against (((v0 + v1) + v2) + v3) for
MPICH's round-robin cliques, and agree to float32 rounding only.  The
``allreduce`` transport leaves the order to MPI.
"""

from __future__ import annotations

import numpy as np

from hpcml.comm import SharedArray, SharedSum, wait_sleeping

#: Transport names accepted by :func:`make_transport` (``auto`` picks one).
TRANSPORTS = ("auto", "shared", "allreduce", "hierarchical")


def wait_request(request):
    """Wait for a :class:`hpcml.comm.Request` without spinning; its result."""
    wait_sleeping(request.test)
    return request.wait()


class Transport:
    """Base of the transports: one float32 vector per rank, reduced slice by slice.

    Parameters
    ----------
    comm : hpcml.comm.Comm
        More than one rank.
    n : int
        Length of the vector (all buckets side by side).

    Attributes
    ----------
    local : ndarray of float32
        This rank's vector; the hooks write gradients here.
    result : ndarray of float32
        Where :meth:`reduce` leaves the average (``local`` itself, or a
        window shared by the node's ranks).
    shares_memory : bool
        The node's ranks can meet in shared memory (:meth:`node_barrier`),
        as factored gradients need.
    """

    name = ""
    shares_memory = True

    def __init__(self, comm, n):
        self.comm = comm
        self.n = int(n)

    def reduce(self, lo, hi, scale):
        """Replace ``result[lo:hi]`` by ``scale`` times the sum over the ranks of
        their ``local[lo:hi]`` (collective; called for the same slices in the same
        order on every rank)."""
        raise NotImplementedError

    def node_barrier(self, *windows):
        """Wait, sleeping, for the ranks of this node; afterwards each sees the
        others' writes to ``windows`` (:class:`hpcml.comm.SharedArray`)."""
        raise NotImplementedError

    def free(self):
        """Release shared memory (collective)."""


class SharedTransport(Transport):
    """All ranks on one node: sum in a shared-memory window."""

    name = "shared"

    def __init__(self, comm, n):
        super().__init__(comm, n)
        self._sum = SharedSum(comm, n)
        self.local = self.result = self._sum.local

    def reduce(self, lo, hi, scale):
        self._sum.sum(lo, hi, scale=scale)

    def node_barrier(self, *windows):
        self._sum.barrier(*windows)

    def free(self):
        self._sum.free()


class AllreduceTransport(Transport):
    """MPI's allreduce over all ranks, in place."""

    name = "allreduce"
    shares_memory = False

    def __init__(self, comm, n):
        super().__init__(comm, n)
        self.local = self.result = np.zeros(self.n, np.float32)

    def reduce(self, lo, hi, scale):
        buf = self.local[lo:hi]
        wait_request(self.comm.iallreduce(buf, op="sum"))
        if scale != 1.0:
            buf *= scale


class HierarchicalTransport(Transport):
    """Sum in shared memory per node, reduce among node leaders, share back.

    The payload counted on ``comm`` per bucket of ``m`` elements: kind
    ``shared_sum``, ``4 m`` bytes, on the ranks of nodes with more than one
    rank; kind ``leaders_allreduce``, ``4 m`` bytes, on the node leaders.
    """

    name = "hierarchical"

    def __init__(self, comm, n):
        super().__init__(comm, n)
        from hpcml.kernels.sum import sum_scaled

        self._sum_scaled = sum_scaled
        self._node, self._leaders = comm.node, comm.leaders
        self._nodes = comm.topology.nodes
        many = self._node.size > 1
        self._sum = SharedSum(self._node, n) if many else None
        self.local = self._sum.local if many else np.zeros(self.n, np.float32)
        # The leader writes the average once per node; its ranks read it there.
        self._result = SharedArray(self._node, (self.n,), np.float32) if many else None
        self.result = self._result.array if many else self.local

    def reduce(self, lo, hi, scale):
        m = hi - lo
        stats = self.comm.stats
        if self._sum is not None:
            self._sum.sum(lo, hi)  # the node's sum, in rank order, on every rank of the node
            if self._node is not self.comm:  # else the sum counted itself on comm
                stats.count("shared_sum", 4 * m)
        if self._leaders is not None:
            self._leaders_sum(lo, hi, scale)
            stats.count("leaders_allreduce", 4 * m)
        if self._sum is not None:
            self._sum.barrier(self._result)  # the leader's average is written

    def _leaders_sum(self, lo, hi, scale):
        """The leaders' sum of their node sums, in node order: leader ``j`` sums
        the ``j``-th of ``N`` equal pieces (the last padded with zeros)."""
        leaders, nodes, m = self._leaders, self._nodes, hi - lo
        if nodes == 1:  # chosen by name on one node: the node's sum is the sum
            np.multiply(self.local[lo:hi], np.float32(scale), out=self.result[lo:hi])
            return
        piece = -(-m // nodes)
        send = np.empty((nodes, piece), np.float32)
        send.reshape(-1)[:m] = self.local[lo:hi]
        send.reshape(-1)[m:] = 0.0
        parts = wait_request(leaders.ialltoall(send))  # row k: node k's sum of my piece
        mine = np.empty(piece, np.float32)
        self._sum_scaled(list(parts), 0, piece, scale, (mine,))
        whole = wait_request(leaders.iallgatherv(mine, np.full(nodes, piece, np.int64)))
        self.result[lo:hi] = whole[:m]

    def node_barrier(self, *windows):
        if self._sum is not None:
            self._sum.barrier(*windows)

    def free(self):
        if self._sum is not None:
            self._sum.free()
            self._result.free()


def resolve_transport(name, comm):
    """The concrete transport that ``name`` means for ``comm``: ``auto`` is
    ``shared`` when the ranks share a node and ``hierarchical`` when they span
    nodes; ``shared`` across nodes is refused (``ValueError``)."""
    if name not in TRANSPORTS:
        raise ValueError(f"unknown gradient transport {name!r}; expected one of {TRANSPORTS}")
    if name == "auto":
        name = "hierarchical" if comm.spans_nodes else "shared"
    if name == "shared" and comm.spans_nodes:
        raise ValueError(f"the shared gradient transport needs every rank on one node, "
                         f"not {comm.topology}")
    return name


def make_transport(name, comm, n):
    """The transport ``name`` (:func:`resolve_transport`) for ``comm`` (more than
    one rank) and vectors of ``n`` elements (collective)."""
    return {"shared": SharedTransport, "allreduce": AllreduceTransport,
            "hierarchical": HierarchicalTransport}[resolve_transport(name, comm)](comm, n)
