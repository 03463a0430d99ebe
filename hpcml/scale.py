"""A scaling model: a finished run's time per iteration predicted on N nodes.

Every hpcml output records, per iteration of the job's main loop, the
compute seconds of each rank and the payload bytes and calls of each kind
of collective (:meth:`hpcml.comm.Comm.communication_report`).  From these
and an α–β description of the network (α: seconds per message, β: seconds
per byte) this module predicts the time per iteration at N nodes of R ranks
and its split into compute and network wait, the chart of Petuum's
"LDA on 32 machines" slide.

How each part scales (P = N·R ranks; P₀ ranks in the measured run).
Every workload shards its work evenly over the ranks, so under strong
scaling (the same job split further) compute per iteration is compute·P₀/P,
and under weak scaling (``weak``: each rank keeps its share) it stays:

* stats, svd, pca shard the matrix rows; their payload is an allreduce of
  n-vectors (n columns), the same at every P;
* lasso and lp shard the rows of A: allreduces of n-vectors and scalars;
* lda train shards the documents; its payload is an allgatherv of the
  tokens' topics (a total over the ranks: the same under strong scaling,
  ·P/P₀ under weak), a bcast of the topic totals and a small allreduce;
* cnn train splits the global batch; its payload is the allreduce of the
  gradient buckets (the model's size), the same at every P.

Bytes are the payload a call reduces, gathers or broadcasts; what crosses
the wire follows from the collective's algorithm, taken as MPICH picks it
(``src/mpi/coll``, its CVAR defaults):

* allreduce: recursive doubling up to 2048 bytes
  (``MPIR_CVAR_ALLREDUCE_SHORT_MSG_SIZE``), ⌈log₂P⌉(α + nβ); above,
  reduce-scatter + allgather (Rabenseifner), 2⌈log₂P⌉α + 2(P−1)/P·nβ, or a
  ring, 2(P−1)α + 2(P−1)/P·nβ (``large="ring"``: NCCL's and Horovod's
  choice);
* bcast: binomial tree, ⌈log₂P⌉(α + nβ), below 12288 bytes or 8 ranks;
  above, scatter + ring allgather, (⌈log₂P⌉ + P − 1)α + 2(P−1)/P·nβ;
* allgatherv of n bytes in all: recursive doubling (P a power of two,
  below 512 KiB) or Bruck's (below 80 KiB), ⌈log₂P⌉α + (P−1)/P·nβ; a
  ring otherwise, (P−1)α + (P−1)/P·nβ;
* gatherv: linear, (P−1)α + (P−1)/P·nβ;
* small pickled objects and barriers: ⌈log₂P⌉α.

Across nodes, allreduce and bcast are hierarchical, as both MPICH's
SMP-aware collectives and hpcml's shared-memory sums are: the R ranks of a
node combine in shared memory (an allreduce, resp. bcast, on R ranks with
the shared-memory α and β), and only the N node leaders use the network.
Other collectives run flat over the P ranks with the network's α and β:
each step of their pattern crosses a node boundary somewhere, and the
slowest link sets its pace.  On one node everything uses shared memory.

Assumed: no overlap of communication with compute (an upper bound for
CNN training, whose bucket allreduces overlap the backward pass); compute
divides evenly; the measured rank's per-iteration compute (the slowest
rank's) is what each rank would do at P₀; the calls of one kind are costed
at their mean payload (what the record keeps).  I/O is left out.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

from hpcml.errors import InputError


@dataclasses.dataclass(frozen=True)
class Network:
    """An α–β description of a link.

    Attributes
    ----------
    name : str
    alpha : float
        Seconds per message (latency).
    beta : float
        Seconds per byte (the inverse of the bandwidth).
    source : str
        Where the figures come from.
    """

    name: str
    alpha: float
    beta: float
    source: str = ""

    def __post_init__(self):
        for what, value in (("alpha", self.alpha), ("beta", self.beta)):
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"{self.name}: {what} must be a finite number >= 0, got {value}")

    def describe(self):
        """``name (α = 1.00 µs, 1/β = 24.0 GB/s)``."""
        bandwidth = f"{1e-9 / self.beta:.3g} GB/s" if self.beta > 0 else "unlimited"
        return f"{self.name} (alpha = {self.alpha * 1e6:.3g} us, 1/beta = {bandwidth})"


#: Typical published figures for MPI point-to-point latency and large-message
#: bandwidth (OSU micro-benchmarks ``osu_latency`` / ``osu_bw`` as vendors and
#: HPC centres report them); not measured here.
NETWORKS = {
    "ib-hdr": Network("ib-hdr", 1.0e-6, 1 / 24e9,
                      "InfiniBand HDR 200 Gb/s (ConnectX-6): about 1 us MPI latency, 24 GB/s"),
    "ib-edr": Network("ib-edr", 1.2e-6, 1 / 12e9,
                      "InfiniBand EDR 100 Gb/s (ConnectX-5): about 1.2 us MPI latency, 12 GB/s"),
    "100gbe": Network("100gbe", 15e-6, 1 / 11e9,
                      "100 Gigabit Ethernet, MPI over TCP: about 15 us latency, 11 GB/s"),
}

#: Within a node: MPICH's shared-memory transport, typical figures (0.3 us,
#: 8 GB/s single-stream copy bandwidth); ``bench/network.py`` measures it.
SHARED_MEMORY = Network("shared memory", 0.3e-6, 1 / 8e9,
                        "MPI over shared memory: about 0.3 us latency, 8 GB/s per stream")

#: MPICH's switch points (its CVAR defaults).
ALLREDUCE_SHORT = 2048
#: hpcml.comm.Comm.ORDERED_GATHER_BYTES (not imported: this module needs no MPI).
ORDERED_GATHER_BYTES = 1 << 18
BCAST_SHORT, BCAST_MIN_PROCS = 12288, 8
ALLGATHER_SHORT, ALLGATHER_LONG = 81920, 524288

#: What each workload shards over the ranks, which its compute divides with.
SHARDED = {
    "stats": "the matrix rows", "svd": "the matrix rows", "pca": "the matrix rows",
    "lasso": "the rows of A", "lp": "the rows of A", "lda train": "the documents",
    "lda infer": "the documents", "cnn train": "the global batch",
}

#: Collectives whose payload is a total over the ranks (grows with P under weak scaling).
GATHERED = ("allgatherv", "gatherv")
#: Collectives that run hierarchically across nodes.
HIERARCHICAL = ("allreduce", "shared_sum", "bcast")


# ----------------------------------------------------------------- algorithm costs

def log2_ceil(p):
    """⌈log₂ p⌉, the rounds of a recursive-doubling or binomial pattern."""
    return (int(p) - 1).bit_length()


def allreduce_recursive_doubling(n, p, net):
    """⌈log₂P⌉(α + nβ): every round exchanges the whole vector."""
    return log2_ceil(p) * (net.alpha + n * net.beta)


def allreduce_ring(n, p, net):
    """2(P−1)α + 2(P−1)/P·nβ: a ring reduce-scatter, then a ring allgather."""
    return 2 * (p - 1) * net.alpha + 2 * (p - 1) / p * n * net.beta


def allreduce_rabenseifner(n, p, net):
    """2⌈log₂P⌉α + 2(P−1)/P·nβ: recursive-halving reduce-scatter, recursive-doubling allgather."""
    return 2 * log2_ceil(p) * net.alpha + 2 * (p - 1) / p * n * net.beta


def bcast_binomial(n, p, net):
    """⌈log₂P⌉(α + nβ): the whole message down a binomial tree."""
    return log2_ceil(p) * (net.alpha + n * net.beta)


def bcast_scatter_allgather(n, p, net):
    """(⌈log₂P⌉ + P − 1)α + 2(P−1)/P·nβ: a binomial scatter, then a ring allgather (van de Geijn)."""
    return (log2_ceil(p) + p - 1) * net.alpha + 2 * (p - 1) / p * n * net.beta


def allgather_recursive_doubling(n, p, net):
    """⌈log₂P⌉α + (P−1)/P·nβ for n bytes gathered in all (recursive doubling or Bruck's)."""
    return log2_ceil(p) * net.alpha + (p - 1) / p * n * net.beta


def allgather_ring(n, p, net):
    """(P−1)α + (P−1)/P·nβ for n bytes gathered in all."""
    return (p - 1) * net.alpha + (p - 1) / p * n * net.beta


def gather_linear(n, p, net):
    """(P−1)α + (P−1)/P·nβ: the root receives every other rank's part."""
    return (p - 1) * net.alpha + (p - 1) / p * n * net.beta


def alltoall_pairwise(n, p, net):
    """(P−1)α + (P−1)/P·nβ for n bytes sent in all by each rank (pairwise exchange)."""
    return (p - 1) * net.alpha + (p - 1) / p * n * net.beta


def point_to_point(n, p, net):
    """α + nβ: one message to one neighbour (LDA's ring of word blocks)."""
    return net.alpha + n * net.beta


def shared_copy(n, p, net):
    """nβ: writing n bytes into a node's shared memory (no message)."""
    return n * net.beta


def allreduce_rank_order(n, p, net):
    """hpcml's layout-independent float sum (:meth:`hpcml.comm.Comm._ordered_sum`):
    the whole arrays all-gathered while P·n is short, else an all-to-all of
    blocks, their sums by their owners, and a ring all-gather of the sums."""
    if p * n <= ORDERED_GATHER_BYTES:
        return allgather_recursive_doubling(p * n, p, net)
    return alltoall_pairwise(n, p, net) + allgather_ring(n, p, net)


def latency_only(n, p, net):
    """⌈log₂P⌉α: small control messages (pickled objects, barriers)."""
    return log2_ceil(p) * net.alpha


def flat_algorithm(kind, n, p, large="rabenseifner"):
    """The function MPICH uses for one ``kind`` call of ``n`` bytes on ``p`` ranks of one level.

    Parameters
    ----------
    kind : str
        A collective kind of :meth:`hpcml.comm.Comm.communication_report`.
    n : float
        Payload bytes (for gathers: the total).
    p : int
    large : {"rabenseifner", "ring"}
        The allreduce algorithm above 2048 bytes.

    Returns
    -------
    callable
        ``cost(n, p, net) -> seconds``.
    """
    if kind in ("allreduce", "shared_sum"):
        if n <= ALLREDUCE_SHORT:
            return allreduce_recursive_doubling
        return allreduce_ring if large == "ring" else allreduce_rabenseifner
    if kind == "bcast":
        return bcast_binomial if n < BCAST_SHORT or p < BCAST_MIN_PROCS else bcast_scatter_allgather
    if kind == "allgatherv":
        power_of_two = p & (p - 1) == 0
        if n < ALLGATHER_SHORT or (power_of_two and n < ALLGATHER_LONG):
            return allgather_recursive_doubling   # Bruck's costs the same
        return allgather_ring
    if kind == "gatherv":
        return gather_linear
    if kind == "alltoall":
        return alltoall_pairwise
    if kind in ("send", "recv"):
        return point_to_point
    return latency_only


def collective_seconds(kind, n, nodes, per_node, network, shm=SHARED_MEMORY, large="rabenseifner",
                       ordered=False):
    """Seconds of one ``kind`` call moving ``n`` payload bytes on ``nodes`` × ``per_node`` ranks.

    Parameters
    ----------
    kind : str
    n : float
    nodes, per_node : int
    network, shm : Network
        Between nodes, and inside a node.
    large : {"rabenseifner", "ring"}
    ordered : bool
        The run summed floating-point arrays in rank order (the default of
        :class:`hpcml.comm.Comm`): an ``allreduce`` then costs
        :func:`allreduce_rank_order` over all ranks, one level.

    Returns
    -------
    seconds : float
    algorithm : str
        The algorithm(s) the cost stands for.
    """
    p = nodes * per_node
    if p == 1:
        return 0.0, "none"
    if ordered and kind == "allreduce":
        return allreduce_rank_order(n, p, network if nodes > 1 else shm), "allreduce_rank_order"

    def one_level(ranks, net):
        cost = flat_algorithm(kind, n, ranks, large)
        return cost(n, ranks, net), cost.__name__

    if kind.startswith("leaders_"):
        # Counted by the node leaders only: one level, among the nodes.
        if nodes == 1:
            return 0.0, "none"
        cost = flat_algorithm(kind[len("leaders_"):], n, nodes, large)
        return cost(n, nodes, network), f"{cost.__name__} among leaders"
    if kind == "shared_factors":
        return shared_copy(n, per_node, shm), "shared_copy"
    if nodes == 1:
        return one_level(p, shm)
    if kind in HIERARCHICAL and per_node > 1:
        inside, how_inside = one_level(per_node, shm)
        across, how_across = one_level(nodes, network)
        return inside + across, f"{how_inside} in node + {how_across} across"
    return one_level(p, network)


# ----------------------------------------------------------------- the run's profile

@dataclasses.dataclass(frozen=True)
class Profile:
    """What a finished run measured per iteration.

    Attributes
    ----------
    command : str
        The job (``stats``, ``lda train``, ...).
    ranks : int
    ranks_per_node : tuple of int
    iterations : int
    compute_s, comm_s, wall_s : float
        Per iteration, the slowest rank's.
    collectives : dict
        ``kind -> (calls per iteration, payload bytes per call)``.
    ordered_sums : bool
        Floating-point allreduces were summed in rank order.
    """

    command: str
    ranks: int
    ranks_per_node: tuple
    iterations: int
    compute_s: float
    comm_s: float
    wall_s: float
    collectives: dict
    ordered_sums: bool = False

    @property
    def nodes(self):
        """Number of nodes of the run."""
        return len(self.ranks_per_node)

    @classmethod
    def from_report(cls, report, command="job"):
        """A profile from a :meth:`~hpcml.comm.Comm.communication_report` dict.

        Raises
        ------
        InputError
            When the report holds fewer than two marked iterations.
        """
        if int(report.get("iterations", 0)) < 2 or "compute_s" not in report:
            raise InputError(f"{command}: the run marked fewer than two iterations, "
                             "so it has no per-iteration figures to scale")
        # The busiest rank's figures: a gather's root counts the whole payload, the others their part.
        collectives = {}
        for kind, figures in report.get("collectives", {}).items():
            calls = figures["calls"]["max"]
            if calls > 0:
                collectives[kind] = (calls, figures["bytes"]["max"] / calls)
        return cls(command=command, ranks=int(report["ranks"]),
                   ranks_per_node=tuple(int(r) for r in report["ranks_per_node"]),
                   iterations=int(report["iterations"]), compute_s=report["compute_s"]["max"],
                   comm_s=report["comm_s"]["max"], wall_s=report["wall_s"]["max"],
                   collectives=collectives, ordered_sums=bool(report.get("ordered_sums", False)))


def _command_of(params):
    """``lda train`` from a run's parameters (``command`` and ``lda_command``)."""
    words = [params.get("command") or "job"]
    words += [v for k, v in sorted(params.items()) if k.endswith("_command") and v]
    return " ".join(map(str, words))


def read_profile(path):
    """The :class:`Profile` stored in an hpcml output file.

    Raises
    ------
    InputError
        The file is missing, not HDF5, or has no usable ``communication``
        attribute.
    """
    import h5py

    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("communication")
            params = handle.attrs.get("params")
    except OSError:
        raise InputError(f"{path}: not an HDF5 file") from None
    if raw is None:
        raise InputError(f"{path}: no 'communication' attribute; scale needs the output "
                         "of an hpcml job (run it again with this version)")
    try:
        report = json.loads(raw)
        command = _command_of(json.loads(params) if params is not None else {})
    except (TypeError, ValueError):
        raise InputError(f"{path}: the 'communication' attribute is not valid JSON") from None
    if not report:
        raise InputError(f"{path}: the 'communication' attribute is empty")
    try:
        return Profile.from_report(report, command)
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: the 'communication' attribute lacks {exc}") from None


# ----------------------------------------------------------------- prediction

def parse_nodes(text):
    """Node counts from a comma-separated list such as ``1,2,4,...,1024``.

    ``...`` continues the two counts before it up to the count after it:
    by their ratio when the count after is reached so (``1,2,...,16``:
    doubling), else by their difference (``2,4,...,10``).

    Raises
    ------
    InputError
        A term that is not a positive integer, a ``...`` without two counts
        before and one after or that cannot reach the one after, or a list
        that does not increase.
    """
    items = [t.strip() for t in str(text).split(",")]
    out = []
    for i, item in enumerate(items):
        if item in ("...", "…"):
            if len(out) < 2 or i + 1 >= len(items) or items[i + 1] in ("...", "…"):
                raise InputError(f"--nodes {text}: '...' needs two counts before it and one after")
            continue
        try:
            value = int(item)
        except ValueError:
            raise InputError(f"--nodes {text}: {item!r} is not a whole number of nodes") from None
        if value < 1:
            raise InputError(f"--nodes {text}: node counts must be >= 1, got {value}")
        if i > 0 and items[i - 1] in ("...", "…"):
            out.extend(_continue(out[-2], out[-1], value, text))
        out.append(value)
    if any(b <= a for a, b in zip(out, out[1:])):
        raise InputError(f"--nodes {text}: node counts must increase")
    return out


def _continue(a, b, end, text):
    """The counts strictly between ``b`` and ``end`` that continue ``a, b``."""
    if b > a and b % a == 0:
        ratio, x = b // a, b
        while x < end:
            x *= ratio
        if x == end:
            return [b * ratio ** k for k in range(1, round(math.log(end / b, ratio)))]
    step = b - a
    if step > 0 and end > b and (end - b) % step == 0:
        return list(range(b + step, end, step))
    raise InputError(f"--nodes {text}: '{a},{b},...' does not reach {end}")


def predict(profile, nodes, network, shm=SHARED_MEMORY, ranks_per_node=None, weak=False,
            large="rabenseifner"):
    """Predicted time per iteration at each node count.

    Parameters
    ----------
    profile : Profile
    nodes : list of int
    network, shm : Network
    ranks_per_node : int, optional
        Default: the measured run's largest count per node.
    weak : bool
        Weak scaling (each rank keeps its share: compute unchanged, gathered
        payloads grow with P) instead of strong (the same job split further).
    large : {"rabenseifner", "ring"}

    Returns
    -------
    list of dict
        Per node count: ``nodes``, ``ranks``, ``compute_s``, ``network_s``,
        ``total_s``, ``network_share``, ``speedup`` (to the first row) and
        ``algorithms`` (kind -> algorithm).
    """
    net = network_of(network)
    per_node = int(ranks_per_node or max(profile.ranks_per_node))
    if per_node < 1:
        raise InputError(f"--ranks-per-node must be >= 1, got {per_node}")
    rows = []
    for n_nodes in nodes:
        p = n_nodes * per_node
        growth = p / profile.ranks
        compute = profile.compute_s if weak else profile.compute_s / growth
        wait, algorithms = 0.0, {}
        for kind, (calls, nbytes) in sorted(profile.collectives.items()):
            payload = nbytes * growth if weak and kind in GATHERED else nbytes
            seconds, how = collective_seconds(kind, payload, n_nodes, per_node, net, shm, large,
                                              profile.ordered_sums)
            wait += calls * seconds
            algorithms[kind] = how
        total = compute + wait
        rows.append({"nodes": n_nodes, "ranks": p, "compute_s": compute, "network_s": wait,
                     "total_s": total, "network_share": wait / total if total > 0 else 0.0,
                     "algorithms": algorithms})
    for row in rows:
        row["speedup"] = rows[0]["total_s"] / row["total_s"] if row["total_s"] > 0 else float("nan")
    return rows


def network_of(spec):
    """A :class:`Network` from itself or a preset's name."""
    if isinstance(spec, Network):
        return spec
    try:
        return NETWORKS[spec]
    except KeyError:
        raise InputError(f"unknown network {spec!r}; presets: {', '.join(NETWORKS)}") from None


# ----------------------------------------------------------------- output

def format_table(profile, rows, network, weak=False):
    """The prediction as a plain-text table, with the measured run above it."""
    scaling = "weak scaling (each rank keeps its share)" if weak else "strong scaling (the same job)"
    sharded = SHARDED.get(profile.command, "its data (assumed evenly)")
    compute = ("unchanged per rank" if weak
               else f"x {profile.ranks}/P (P ranks share what {profile.ranks} did)")
    lines = [
        f"measured: {profile.command} on {profile.nodes} node(s), {profile.ranks} rank(s): "
        f"{profile.wall_s * 1e3:.4g} ms per iteration, compute {profile.compute_s * 1e3:.4g} ms, "
        f"communication {profile.comm_s * 1e3:.4g} ms ({profile.iterations} iterations)",
        "per iteration: " + (", ".join(f"{kind} {calls:.3g} x {nbytes:.6g} B"
                                       for kind, (calls, nbytes) in sorted(profile.collectives.items()))
                             or "no collectives"),
        f"model: {network_of(network).describe()}; {scaling}: {profile.command} shards {sharded} "
        f"over the ranks, so compute is {compute}",
        *(["note: measured on 1 rank, where a job skips the exchanges it makes on several "
           "(LDA's): measure on 2 or more ranks to scale them"] if profile.ranks == 1 else []),
        f"{'nodes':>6} {'ranks':>7} {'compute ms':>12} {'network ms':>12} {'total ms':>12} "
        f"{'network %':>10} {'speedup':>8}",
    ]
    for r in rows:
        lines.append(f"{r['nodes']:>6} {r['ranks']:>7} {r['compute_s'] * 1e3:>12.4g} "
                     f"{r['network_s'] * 1e3:>12.4g} {r['total_s'] * 1e3:>12.4g} "
                     f"{100 * r['network_share']:>10.1f} {r['speedup']:>8.3g}")
    last = rows[-1]["algorithms"]
    if last:
        lines.append(f"algorithms at {rows[-1]['nodes']} nodes: "
                     + "; ".join(f"{k}: {v}" for k, v in last.items()))
    return "\n".join(lines)


def write_chart(profile, rows, network, path):
    """Stacked bars of compute and network wait per node count, written atomically.

    Returns
    -------
    bool
        False (and nothing written) when matplotlib is not installed.
    """
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(r["nodes"]) for r in rows]
    compute = [r["compute_s"] for r in rows]
    wait = [r["network_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(rows) + 2), 4))
    ax.bar(labels, compute, label="compute time", color="#4c72b0")
    ax.bar(labels, wait, bottom=compute, label="network waiting time", color="#dd8452")
    ax.set_xlabel("nodes")
    ax.set_ylabel("seconds per iteration")
    ax.set_title(f"{profile.command}: {network_of(network).name}, "
                 f"{rows[0]['ranks'] // rows[0]['nodes']} rank(s) per node")
    ax.legend()
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return True
