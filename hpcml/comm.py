"""The communicator layer: the only place where algorithm code meets mpi4py.

Every algorithm takes a :class:`Comm` as an argument; only the command line
picks ``MPI.COMM_WORLD`` (:meth:`Comm.world`).  Data move through buffer
collectives on numpy arrays; small control objects through the lowercase
pickle-based calls.  Every call is timed and its bytes counted, so a run can
report per rank how its wall time split into compute, communication and I/O,
the accounting Petuum's authors used to show network waiting time overtaking
compute.
"""

import contextlib
import os
import sys
import time
import traceback
import warnings

import numpy as np
from mpi4py import MPI

from hpcml.errors import HpcmlError, InputError

_OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "prod": MPI.PROD}


def _op(name):
    try:
        return _OPS[name]
    except KeyError:
        raise ValueError(f"unknown reduction {name!r}; expected one of {sorted(_OPS)}") from None


def _contiguous(arr, what):
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{what} needs a numpy array, got {type(arr).__name__}")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{what} needs a C-contiguous array")
    return arr


class Timings:
    """Seconds and bytes accumulated by one rank since the communicator was made.

    Compute time is what is left of the wall time after communication and
    I/O, so the three always add up to the elapsed time.
    """

    def __init__(self):
        self.start = time.perf_counter()
        self.comm_s = 0.0
        self.io_s = 0.0
        # Inside an I/O block every second counts as I/O, the collectives
        # that the writing or reading needs included: counted once, the
        # three parts add up to the wall time.
        self.io_depth = 0
        self.bytes = 0
        self.calls = 0
        self.phases = {}
        #: Calls and payload bytes per collective kind ("allreduce", ...).
        self.kinds = {}
        #: Iteration marks (:meth:`Comm.mark_iteration`): their count, and
        #: the figures at the first and the latest mark.
        self.iterations = 0
        self.first_mark = self.last_mark = None

    def count(self, kind, nbytes):
        """Add one call of collective ``kind`` moving ``nbytes`` of payload."""
        self.bytes += int(nbytes)
        self.calls += 1
        calls, total = self.kinds.get(kind, (0, 0))
        self.kinds[kind] = (calls + 1, total + int(nbytes))

    def mark(self):
        """Record the end of one iteration of the job's main loop."""
        figures = self.snapshot()
        figures["kinds"] = dict(self.kinds)
        self.iterations += 1
        if self.first_mark is None:
            self.first_mark = figures
        self.last_mark = figures

    def per_iteration(self):
        """Mean figures per iteration between the first and the latest mark,
        so that set-up and output stay out; ``None`` before two marks."""
        if self.iterations < 2:
            return None
        a, b, n = self.first_mark, self.last_mark, self.iterations - 1
        out = {k: (b[k] - a[k]) / n for k in ("wall_s", "compute_s", "comm_s", "io_s", "bytes", "calls")}
        out["kinds"] = {
            kind: {"calls": (calls - a["kinds"].get(kind, (0, 0))[0]) / n,
                   "bytes": (total - a["kinds"].get(kind, (0, 0))[1]) / n}
            for kind, (calls, total) in sorted(b["kinds"].items())
            if calls > a["kinds"].get(kind, (0, 0))[0]}
        return out

    def snapshot(self):
        """This rank's figures as a plain dict."""
        wall = time.perf_counter() - self.start
        return {
            "wall_s": wall,
            "compute_s": max(wall - self.comm_s - self.io_s, 0.0),
            "comm_s": self.comm_s,
            # Per rank, for the slowest rank's time outside I/O: the sum of the
            # compute and comm maxima overstates it when they come from different ranks.
            "compute_comm_s": max(wall - self.io_s, 0.0),
            "io_s": self.io_s,
            "bytes": self.bytes,
            "calls": self.calls,
        }


class Request:
    """A non-blocking collective or message in flight; :meth:`wait` must be called.

    The wait is timed as communication: time spent waiting is exactly the
    network time that overlap failed to hide.
    """

    def __init__(self, comm, request, result):
        self._comm = comm
        self._request = request
        self._result = result
        self._done = False

    def wait(self):
        """Block until the collective completes and return its result array."""
        if not self._done:
            t0 = time.perf_counter()
            self._request.Wait()
            self._comm.stats.comm_s += time.perf_counter() - t0
            self._done = True
        return self._result

    def test(self):
        """True when the collective has completed (never blocks)."""
        if not self._done and self._request.Test():
            self._done = True
        return self._done

    def __del__(self):
        if not self._done:
            warnings.warn("a non-blocking collective was never waited", ResourceWarning, stacklevel=1)


_PAUSE_MIN_S, _PAUSE_MAX_S = 20e-6, 5e-4


def wait_sleeping(done):
    """Call ``done()`` (say an MPI request's ``Test``) until it returns True,
    sleeping in between, from 20 µs doubling to 0.5 ms.

    Never spins: on a machine with as many busy ranks as cores a spinning
    wait takes the core from the computation of its own rank or of a peer,
    whereas a handful of tests is all MPICH needs to move even a
    multi-megabyte shared-memory collective along.
    """
    pause = _PAUSE_MIN_S
    while not done():
        time.sleep(pause)
        pause = min(2 * pause, _PAUSE_MAX_S)


def _node_comm(comm, who):
    """The shared-memory communicator of ``comm``'s ranks, which must all run
    on one node (:meth:`Comm.shares_node`); collective."""
    node = comm.mpi.Split_type(MPI.COMM_TYPE_SHARED)
    if node.Get_size() != comm.size:
        node.Free()
        raise ValueError(f"{who} needs every rank on one node (Comm.shares_node)")
    return node


class SharedArray:
    """One array in a shared-memory window: every rank of ``comm`` (all on
    one node) reads and writes the same memory.

    The array starts zeroed.  Writes of one rank are visible to another once
    both have passed :meth:`fence` (or any collective between two
    :meth:`sync` calls on each side).

    Parameters
    ----------
    comm : Comm
        All of its ranks share a node.
    shape : tuple of int
    dtype : numpy dtype
    """

    def __init__(self, comm, shape, dtype):
        self._comm = comm
        self._node = _node_comm(comm, "SharedArray")
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        # Rank 0 holds the memory (one contiguous block); the others map it.
        mine = max(nbytes, 1) if self._node.Get_rank() == 0 else 0
        self._win = MPI.Win.Allocate_shared(mine, dtype.itemsize, comm=self._node)
        buf, _ = self._win.Shared_query(0)
        #: The shared array.
        self.array = np.ndarray(shape, dtype, buffer=buf)
        self._win.Lock_all()
        if self._node.Get_rank() == 0:
            self.array.fill(0)
        self.fence()

    def sync(self):
        """Order this rank's loads and stores on the window (MPI_Win_sync)."""
        self._win.Sync()

    def fence(self):
        """Wait for every rank; afterwards each sees the others' writes (collective)."""
        self._win.Sync()
        self._comm.barrier()
        self._win.Sync()

    def free(self):
        """Release the window (collective); :attr:`array` must not be used after."""
        self._win.Unlock_all()
        self.array = None
        self._win.Free()
        self._node.Free()


class SharedSum:
    """One float32 vector per rank in a shared-memory window, summed over the
    ranks in place.

    Every rank writes its vector where the others can read it; to sum a
    slice, each rank adds up one P-th of it over all ranks (in rank order, so
    every rank gets the same bits) and writes the sum into every rank's
    vector, in one pass (:func:`hpcml.kernels.sum.sum_scaled`).  Each rank
    thus reads and writes the slice once, against about five passes through
    shared-memory bounce buffers for a message-passing allreduce (60 MB on
    two ranks here: MPICH 30 ms).  Only
    for ranks on one node: :meth:`Comm.shares_node`.  Waits test and sleep,
    never spin, so a caller on a second thread leaves the core to compute.

    Parameters
    ----------
    comm : Comm
        All of its ranks share a node.
    n : int
        Length of each rank's vector (:attr:`local`).
    """

    def __init__(self, comm, n):
        self._comm = comm
        self._node = _node_comm(comm, "SharedSum")
        self._win = MPI.Win.Allocate_shared(max(int(n), 1) * 4, 4, comm=self._node)
        self._views = tuple(np.frombuffer(self._win.Shared_query(r)[0], np.float32, int(n))
                            for r in range(comm.size))
        #: This rank's vector (writable; shared with the other ranks).
        self.local = self._views[self._node.Get_rank()]
        self._sync = comm.mpi.Dup()
        from hpcml.kernels.sum import sum_scaled  # numba: only for users of this class

        self._sum_scaled = sum_scaled
        self._win.Lock_all()

    def barrier(self, *others):
        """Wait for every rank (sleeping, :func:`wait_sleeping`); afterwards each
        sees the others' writes to this window and to the :class:`SharedArray`
        ``others`` (collective)."""
        syncs = (self._win.Sync,) + tuple(a.sync for a in others)
        for sync in syncs:
            sync()
        wait_sleeping(self._sync.Ibarrier().Test)
        for sync in syncs:
            sync()

    def sum(self, lo, hi, scale=1.0):
        """Replace ``local[lo:hi]`` on every rank by its sum over the ranks,
        times ``scale`` (collective: every rank calls it for the same slices
        in the same order)."""
        comm = self._comm
        with comm._timed("shared_sum", 4 * (hi - lo)):
            self.barrier()  # every rank's slice is written
            cuts = np.linspace(lo, hi, comm.size + 1).astype(np.int64)
            a, b = int(cuts[comm.rank]), int(cuts[comm.rank + 1])
            self._sum_scaled(self._views, a, b, scale)
            self.barrier()  # every part of the sum is written

    def free(self):
        """Release the window (collective)."""
        self._win.Unlock_all()
        self._views = self.local = None
        self._win.Free()
        self._sync.Free()
        self._node.Free()


class Topology:
    """Where the ranks of a communicator run: how many nodes, how many ranks on each.

    Parameters
    ----------
    node_index : int
        This rank's node, numbered in the order of each node's lowest rank.
    ranks_per_node : tuple of int
        The number of ranks on each node, in node order.
    """

    def __init__(self, node_index, ranks_per_node):
        self.node_index = int(node_index)
        self.ranks_per_node = tuple(int(r) for r in ranks_per_node)

    @property
    def nodes(self):
        """Number of nodes."""
        return len(self.ranks_per_node)

    def __str__(self):
        counts = set(self.ranks_per_node)
        if len(counts) == 1:
            return f"{self.nodes} node(s) x {counts.pop()} rank(s)"
        return f"{self.nodes} nodes x {'+'.join(map(str, self.ranks_per_node))} ranks"

    def __repr__(self):
        return f"Topology(node_index={self.node_index}, ranks_per_node={self.ranks_per_node})"


class Comm:
    """A timed wrapper around an mpi4py communicator.

    Besides the collectives it knows the ranks' placement on nodes, found
    once when it is made (MPI's shared-memory split; MPICH's
    ``MPIR_CVAR_NUM_CLIQUES`` emulates several nodes on one machine):
    :attr:`topology`, :attr:`node` (the ranks of this rank's node, as a
    :class:`Comm`; ``self`` on one node) and :attr:`leaders` (the lowest rank
    of each node; ``None`` on the other ranks).

    Parameters
    ----------
    mpi_comm : mpi4py.MPI.Comm
        The communicator to wrap.  Algorithms receive the wrapper, never the
        raw communicator.
    deterministic : bool
        Sum floating-point arrays in rank order (:meth:`allreduce`), the
        same bits whatever the node layout (default).  ``False`` leaves the
        order to MPI: MPICH reduces inside each node first when ranks span
        nodes, so 4 ranks as 2 nodes x 2 then round differently from 4 ranks
        on one node.
    """

    def __init__(self, mpi_comm, _one_node=False, deterministic=True):
        self.mpi = mpi_comm
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        #: Floating-point sums (:meth:`allreduce`) add the ranks' arrays in
        #: rank order, so that their bits depend on the rank count alone,
        #: never on the node layout or the MPI library's choice of algorithm.
        self.deterministic = bool(deterministic)
        self.stats = Timings()
        # A private duplicate on which only failing ranks meet, so that an
        # error agreement can never match a collective of the algorithm.
        self._errors = mpi_comm.Dup()
        # The topology is built here, once, by every rank together: built
        # lazily, a first use on some ranks only would hang the others.
        self.topology, self.node, self.leaders = self._build_topology(_one_node)

    @classmethod
    def world(cls):
        """All processes of the job; only the command line should call this."""
        return cls(MPI.COMM_WORLD)

    @classmethod
    def self_comm(cls):
        """A communicator of this process alone (serial use, tests)."""
        return cls(MPI.COMM_SELF)

    def __repr__(self):
        return f"Comm(rank={self.rank}, size={self.size})"

    @property
    def thread_level(self):
        """The MPI thread support granted to this process: ``"single"``, ``"funneled"``,
        ``"serialized"`` or ``"multiple"`` (a second thread may communicate from
        ``"serialized"`` on, provided no two threads are in MPI at once)."""
        return {MPI.THREAD_SINGLE: "single", MPI.THREAD_FUNNELED: "funneled",
                MPI.THREAD_SERIALIZED: "serialized",
                MPI.THREAD_MULTIPLE: "multiple"}[MPI.Query_thread()]

    def _build_topology(self, one_node):
        """The node communicator, the leaders' communicator and the
        :class:`Topology` (collective)."""
        if self.size == 1:
            return Topology(0, (1,)), self, self
        if not one_node:
            node_mpi = self.mpi.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
            one_node = node_mpi.Get_size() == self.size
            if one_node:
                node_mpi.Free()
        if one_node:
            # The one leader needs no communication: a communicator of itself.
            leaders = (Comm(MPI.COMM_SELF, _one_node=True, deterministic=self.deterministic)
                       if self.rank == 0 else None)
            return Topology(0, (self.size,)), self, leaders
        leader = node_mpi.Get_rank() == 0
        leaders_mpi = self.mpi.Split(0 if leader else MPI.UNDEFINED, self.rank)
        # Nodes are numbered in the order of their lowest world rank.
        index = node_mpi.bcast(leaders_mpi.Get_rank() if leader else None, root=0)
        node_of_rank = self.mpi.allgather(index)
        per_node = tuple(int(c) for c in np.bincount(node_of_rank))
        node = Comm(node_mpi, _one_node=True, deterministic=self.deterministic)
        leaders = Comm(leaders_mpi, _one_node=True, deterministic=self.deterministic) if leader else None
        if leader:
            # Each leader is alone on its node: its own topology says so.
            leaders.topology = Topology(leaders.rank, (1,) * leaders.size)
            leaders.node = leaders.leaders = None
        return Topology(index, per_node), node, leaders

    @property
    def spans_nodes(self):
        """True when the ranks run on more than one node."""
        return self.topology.nodes > 1

    def shares_node(self):
        """True when every rank of this communicator runs on one node, so that
        they can share memory."""
        return not self.spans_nodes

    @contextlib.contextmanager
    def _timed(self, kind, nbytes):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if not self.stats.io_depth:
                self.stats.comm_s += time.perf_counter() - t0
            self.stats.count(kind, nbytes)

    # -- buffer collectives ---------------------------------------------------

    def allreduce(self, arr, op="sum"):
        """Reduce ``arr`` over all ranks, in place, and return it.

        With :attr:`deterministic` (the default) a floating-point sum adds
        the ranks' arrays in rank order, ``((a₀ + a₁) + a₂) + …``, every
        element, on every rank: the result depends on the number of ranks
        but not on how they are placed on nodes (:meth:`_ordered_sum`).
        Integer sums, ``max`` and ``min`` are exact in any order and go to
        MPI as they are.
        """
        _contiguous(arr, "allreduce")
        with self._timed("allreduce", arr.nbytes):
            if self.size > 1:
                if self.deterministic and op == "sum" and arr.dtype.kind in "fc":
                    self._ordered_sum(arr.reshape(-1))
                else:
                    self.mpi.Allreduce(MPI.IN_PLACE, arr, op=_op(op))
        return arr

    #: Up to this many bytes gathered per rank (its array times the rank
    #: count), :meth:`_ordered_sum` gathers every rank's array whole: one
    #: collective, the latency of an allreduce for the short vectors of the
    #: iterative methods.
    ORDERED_GATHER_BYTES = 1 << 18

    def _ordered_sum(self, flat):
        """Replace the 1-D ``flat`` by its sum over the ranks, added in rank order.

        MPI leaves the order of a reduction to the library, and MPICH picks
        it by node layout: across nodes it sums inside each node first
        (``(a₀ + a₂) + (a₁ + a₃)`` on 2 nodes x 2, ``(a₀ + a₁) + (a₂ + a₃)``
        on one node), so floating-point results differ in the last bits.
        Here each element is summed by one rank from all ranks' values in
        rank order and the sums are shared: short arrays are gathered whole
        on every rank; longer ones are split into one block per rank, each
        rank receives every rank's part of its block (all-to-all), sums it
        and the blocks are all-gathered back, which moves ``2(P-1)/P`` of
        the array per rank, as a ring allreduce does.
        """
        P, n = self.size, flat.size
        if P * flat.nbytes <= self.ORDERED_GATHER_BYTES:
            parts = np.empty((P, n), flat.dtype)
            self.mpi.Allgather(flat, parts)
            mine = flat
        else:
            cuts = np.linspace(0, n, P + 1).astype(np.int64)
            counts, displs = np.diff(cuts), cuts[:-1]
            width = int(counts[self.rank])
            parts = np.empty((P, width), flat.dtype)
            self.mpi.Alltoallv([flat, (counts, displs)],
                               [parts, (np.full(P, width), np.arange(P) * width)])
            mine = np.empty(width, flat.dtype)
        np.copyto(mine, parts[0])
        for part in parts[1:]:
            mine += part
        if mine is not flat:
            self.mpi.Allgatherv(mine, [flat, (counts, displs)])

    def iallreduce(self, arr, op="sum"):
        """Start an in-place allreduce of ``arr``; returns a :class:`Request`.

        The order of a floating-point sum is MPI's (not :attr:`deterministic`):
        its users (gradient buckets) overlap it with computation.
        """
        _contiguous(arr, "iallreduce")
        with self._timed("allreduce", arr.nbytes):
            request = self.mpi.Iallreduce(MPI.IN_PLACE, arr, op=_op(op))
        return Request(self, request, arr)

    def allreduce_scalar(self, value, op="sum"):
        """Reduce one number over all ranks; returns a Python scalar."""
        kind = np.float64 if isinstance(value, (float, np.floating)) else np.int64
        buf = np.array([value], dtype=kind)
        return self.allreduce(buf, op)[0].item()

    def bcast(self, arr, root=0):
        """Broadcast an array from ``root``; other ranks may pass ``None``."""
        if self.rank == root:
            arr = np.ascontiguousarray(arr)
            meta = (arr.shape, arr.dtype.str)
        else:
            meta = None
        shape, dtype = self.bcast_obj(meta, root)
        if self.rank != root:
            arr = np.empty(shape, dtype=dtype)
        with self._timed("bcast", arr.nbytes):
            if self.size > 1:
                self.mpi.Bcast(arr, root=root)
        return arr

    def _vector_layout(self, local, what):
        local = np.ascontiguousarray(local)
        shapes = self.allgather_obj((local.shape, local.dtype.str))
        tails = {(s[1:], d) for s, d in shapes}
        if len(tails) != 1:
            raise ValueError(f"{what}: ranks disagree on trailing shape or dtype: {sorted(tails)}")
        tail, dtype = tails.pop()
        rows = np.array([s[0] for s, _ in shapes], dtype=np.int64)
        width = int(np.prod(tail, dtype=np.int64))
        counts = rows * width
        displs = np.zeros_like(counts)
        np.cumsum(counts[:-1], out=displs[1:])
        return local, (int(rows.sum()), *tail), np.dtype(dtype), counts, displs

    def allgatherv(self, local):
        """Concatenate every rank's array along axis 0, on every rank."""
        local, shape, dtype, counts, displs = self._vector_layout(local, "allgatherv")
        out = np.empty(shape, dtype=dtype)
        with self._timed("allgatherv", out.nbytes):
            self.mpi.Allgatherv(local, [out, (counts, displs)])
        return out

    def iallgatherv(self, local, counts):
        """Start concatenating every rank's 1-D array when every rank already
        knows their lengths ``counts`` (one per rank, in rank order); returns a
        :class:`Request` whose result is the concatenation."""
        local = np.ascontiguousarray(local)
        counts = np.asarray(counts, dtype=np.int64)
        if local.ndim != 1 or counts.shape != (self.size,) or local.shape[0] != counts[self.rank]:
            raise ValueError("iallgatherv: a 1-D array whose length is counts[rank]")
        displs = np.zeros_like(counts)
        np.cumsum(counts[:-1], out=displs[1:])
        out = np.empty(int(counts.sum()), dtype=local.dtype)
        with self._timed("allgatherv", out.nbytes):
            request = self.mpi.Iallgatherv(local, [out, (counts, displs)])
        return Request(self, request, out)

    def ialltoall(self, send):
        """Start sending row ``r`` of ``send`` (shape ``(size, ...)``) to rank
        ``r``; returns a :class:`Request` whose result holds, in row ``r``,
        what rank ``r`` sent this rank (the building block of a reduce-scatter
        whose sum order the caller chooses)."""
        _contiguous(send, "ialltoall")
        if send.ndim < 1 or send.shape[0] != self.size:
            raise ValueError(f"ialltoall: one row per rank ({self.size}), got shape {send.shape}")
        out = np.empty_like(send)
        with self._timed("alltoall", send.nbytes):
            request = self.mpi.Ialltoall(send, out)
        return Request(self, request, out)

    def gatherv(self, local, root=0):
        """Concatenate every rank's array along axis 0 on ``root`` (``None`` elsewhere)."""
        local, shape, dtype, counts, displs = self._vector_layout(local, "gatherv")
        out = np.empty(shape, dtype=dtype) if self.rank == root else None
        with self._timed("gatherv", local.nbytes if self.rank != root else np.prod(shape) * dtype.itemsize):
            self.mpi.Gatherv(local, [out, (counts, displs)] if self.rank == root else None, root=root)
        return out

    def exscan(self, arr):
        """Exclusive prefix sum over the ranks, in place: rank r gets the sum of
        ranks 0..r-1's arrays (zeros on rank 0); returns ``arr``."""
        _contiguous(arr, "exscan")
        with self._timed("scan", arr.nbytes):
            out = np.zeros_like(arr)
            if self.size > 1:
                self.mpi.Exscan(arr, out, op=MPI.SUM)
            arr[...] = out
        return arr

    # -- point to point (rings of node leaders and the like) -----------------

    def isend(self, arr, dest, tag=0):
        """Start sending ``arr`` to rank ``dest``; returns a :class:`Request`
        (``arr`` must not change until it completes)."""
        _contiguous(arr, "isend")
        with self._timed("send", arr.nbytes):
            request = self.mpi.Isend(arr, dest=dest, tag=tag)
        return Request(self, request, arr)

    def irecv(self, arr, source, tag=0):
        """Start receiving into ``arr`` (exactly its size) from rank ``source``;
        returns a :class:`Request` whose result is ``arr``."""
        _contiguous(arr, "irecv")
        with self._timed("recv", arr.nbytes):
            request = self.mpi.Irecv(arr, source=source, tag=tag)
        return Request(self, request, arr)

    # -- small control objects ------------------------------------------------

    def bcast_obj(self, obj, root=0):
        """Broadcast a small picklable object from ``root``."""
        with self._timed("object", 0):
            return self.mpi.bcast(obj, root=root) if self.size > 1 else obj

    def allgather_obj(self, obj):
        """List of every rank's small picklable object, on every rank."""
        with self._timed("object", 0):
            return self.mpi.allgather(obj) if self.size > 1 else [obj]

    def barrier(self):
        """Wait for every rank."""
        with self._timed("barrier", 0):
            self.mpi.Barrier()

    # -- agreement --------------------------------------------------------------

    def agree(self, ok, message=""):
        """Turn a problem seen on some ranks into the same error on every rank.

        Parameters
        ----------
        ok : bool
            This rank's verdict.
        message : str
            What went wrong here (used only when ``ok`` is false).

        Raises
        ------
        InputError
            On every rank, with the message of the lowest failing rank, when
            any rank passed ``ok=False``.  A MIN reduction (not a SUM of
            flags) finds that rank in one collective on the success path.
        """
        failing = np.array([self.size if ok else self.rank], dtype=np.int64)
        first = int(self.allreduce(failing, "min")[0])
        if first == self.size:
            return
        message = self.bcast_obj(message if self.rank == first else None, root=first)
        raise InputError(message, collective=True)

    @contextlib.contextmanager
    def guard(self):
        """Run a block whose :class:`InputError` becomes every rank's error.

        Use it around local work that may fail on some ranks only (reading a
        shard, validating it) before the next collective.
        """
        try:
            yield
        except InputError as exc:
            if exc.collective:
                raise
            self.agree(False, str(exc))
        self.agree(True)

    def failed_together(self, grace=2.0):
        """True if every rank reached this call within ``grace`` seconds.

        Called by a rank that raised an error outside :meth:`agree`.  When
        every rank failed the same way (a bad option seen by all), the job
        can end cleanly with one message; when this rank failed alone the
        others are busy elsewhere, the call returns ``False`` and the caller
        aborts the job.
        """
        if self.size == 1:
            return True
        flag = np.ones(1, dtype=np.int64)
        request = self._errors.Iallreduce(MPI.IN_PLACE, flag, op=MPI.SUM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if request.Test():
                return True
            time.sleep(0.005)
        return False

    # -- accounting ---------------------------------------------------------------

    @contextlib.contextmanager
    def io(self):
        """Count the time spent in the block as I/O (collectives inside it included, once)."""
        t0 = time.perf_counter()
        self.stats.io_depth += 1
        try:
            yield
        finally:
            self.stats.io_depth -= 1
            if not self.stats.io_depth:
                self.stats.io_s += time.perf_counter() - t0

    def timings(self):
        """This rank's compute / communication / I/O seconds and bytes moved."""
        return self.stats.snapshot()

    def mark_iteration(self):
        """Note that one iteration of the job's main loop ended (local, cheap).

        The figures between the first and the last mark, per iteration, go
        into every output (:meth:`communication_report`): what the scaling
        model (``hpcml scale``) starts from.
        """
        self.stats.mark()

    def communication_report(self):
        """Per-iteration seconds and payload bytes of this job, min/median/max
        over ranks, with the collectives by kind and the node layout
        (collective).  ``iterations`` is 0 when the job marked fewer than two.

        Bytes are payload: the size of the array each call reduces, gathers or
        broadcasts, as the caller sees it.  What the wire carries follows from
        the collective's algorithm (a ring allreduce moves 2(P-1)/P of it).
        """
        mine = self.stats.per_iteration()
        everyone = self.allgather_obj(mine)
        report = {"iterations": self.stats.iterations, "ranks": self.size,
                  "ranks_per_node": list(self.topology.ranks_per_node),
                  "ordered_sums": self.deterministic}
        if any(r is None for r in everyone):
            return {**report, "iterations": 0}

        def spread(values):
            values = np.asarray(values, dtype=np.float64)
            return {"min": float(values.min()), "median": float(np.median(values)),
                    "max": float(values.max())}

        for key in ("wall_s", "compute_s", "comm_s", "io_s", "bytes", "calls"):
            report[key] = spread([r[key] for r in everyone])
        kinds = sorted({k for r in everyone for k in r["kinds"]})
        report["collectives"] = {
            k: {f: spread([r["kinds"].get(k, {f: 0.0})[f] for r in everyone]) for f in ("calls", "bytes")}
            for k in kinds}
        return report

    def timing_report(self):
        """Min, median and max over ranks of each timing figure (collective).

        Returns
        -------
        dict
            ``{figure: {"min", "median", "max"}}`` for ``wall_s``,
            ``compute_s``, ``comm_s``, ``compute_comm_s`` (their sum),
            ``io_s``, ``bytes`` and ``calls``.
        """
        mine = self.timings()
        keys = sorted(mine)
        table = np.array(self.allgather_obj([mine[k] for k in keys]), dtype=np.float64)
        return {
            k: {"min": float(table[:, j].min()), "median": float(np.median(table[:, j])),
                "max": float(table[:, j].max())}
            for j, k in enumerate(keys)
        }


def _unlink_shared_segments():
    """Unlink the MPI library's shared-memory files that this process maps.

    MPICH keeps each node's shared memory (its transport, shared windows)
    in ``/dev/shm/mpich_shm_*`` files and removes them in ``MPI_Finalize``;
    ``MPI_Abort`` does not, so every aborted job would leave megabytes
    behind.  Unlinking the names frees nothing that a rank still uses: the
    memory goes when the last rank of the node unmaps it, as the job ends.
    """
    try:
        with open("/proc/self/maps") as handle:
            paths = {line.split(None, 5)[5].strip() for line in handle
                     if "/dev/shm/mpich_shm_" in line and not line.rstrip().endswith("(deleted)")}
    except OSError:  # no /proc: not Linux
        return
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def abort(code, message=None):
    """End the whole MPI job now with exit status ``code``.

    Used when one rank fails alone: the others may be waiting in a
    collective and would otherwise hang until the time limit.
    """
    if message:
        sys.stderr.write(message.rstrip("\n") + "\n")
        sys.stderr.flush()
    _unlink_shared_segments()
    MPI.COMM_WORLD.Abort(code)
    os._exit(code)   # MPICH may return from MPI_Abort before its launcher ends the process


def install_abort_hook():
    """Make an uncaught exception on any rank abort the whole job.

    The same policy as ``python -m mpi4py``: the traceback is printed by the
    failing rank, then ``MPI_Abort`` ends every rank with a non-zero status.
    """
    def hook(kind, value, tb):
        rank = MPI.COMM_WORLD.Get_rank()
        text = "".join(traceback.format_exception(kind, value, tb))
        code = value.exit_code if isinstance(value, HpcmlError) else 1
        abort(code, f"[rank {rank}] {text}")

    sys.excepthook = hook
