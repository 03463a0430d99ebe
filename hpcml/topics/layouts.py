"""How the ranks of an LDA job hold the word-topic counts: layout strategies.

An :class:`hpcml.topics.lda.LDA` delegates to a layout (as tomotopy's
``ParallelScheme``) everything that depends on where the counts live: the
set-up of the counts from the topics, a sweep with its communication, the
rows of the counts a rank contributes to the log-likelihood and to beta's
update, the whole table when a model file or held-out score needs it, and
the memory it holds.  The shared and replicated layouts of one node are
still :class:`~hpcml.topics.lda.LDA`'s own code; :class:`ModelParallel`
is the layout for models larger than one node.

:func:`node_bytes` gives each layout's memory per node, which
:func:`choose_layout` compares with the memory available.
"""

import numpy as np

from hpcml.comm import SharedArray
from hpcml.kernels import lda as kern
from hpcml.partition import block_range

#: Document chunks per sampled block: between chunks a node leader lets MPI
#: move the block in flight, which a long kernel call alone would not.
_CHUNKS = 8
#: Bytes per own token the model-parallel layout keeps besides the blocks:
#: word id and topic (2 + 2 B, or 4 + 4), the position in the block's word
#: order (4 or 8 B) and the setup's sort (8 B).
_OWN_BYTES = 24
#: Message tags of the ring (count rows, word order).
_TAG = 7301


def node_bytes(layout, *, n_words, n_topics, n_tokens, node_tokens, ranks, nodes, cell=2):
    """Bytes of sampler state on one node in ``layout`` (a planning formula).

    Parameters
    ----------
    layout : {"shared", "replicated", "model"}
    n_words, n_topics : int
        V and K.
    n_tokens : int
        Tokens of the whole corpus (N).
    node_tokens : int
        Tokens of this node's ranks.
    ranks, nodes : int
        Ranks on this node, nodes in the job.
    cell : int
        Bytes per count (2 while every word occurs fewer than 65,536 times).

    Notes
    -----
    replicated: every rank its V·K counts and the topics of all N tokens in
    word order, ``ranks · (V·K·cell + 2·N) + 16·node_tokens``; shared: one
    such copy per node; model: three blocks of 1/(2·nodes) of the counts and
    of the word order (the one sampled, the one leaving, the one arriving),
    ``1.5 · (V·K·cell + 2·N) / nodes + 24·node_tokens``.
    """
    model = n_words * n_topics * cell + 2 * n_tokens
    if layout == "replicated":
        return ranks * model + 16 * node_tokens
    if layout == "shared":
        return model + 16 * node_tokens
    share = 1.5 / nodes if nodes > 1 else 1.0
    return int(share * model) + _OWN_BYTES * node_tokens


def choose_layout(requested, comm, sampler, *, n_words, n_topics, n_tokens, node_tokens,
                  available):
    """The layout ``"auto"`` stands for, or ``requested`` itself.

    One node: shared (gibbs or mh sampler) or replicated.  Several nodes:
    replicated while it fits the node's ``available`` bytes (``None``:
    unknown, assume it fits), else model-parallel (mh sampler); every rank
    must pass the same figures (take the maximum over ranks of
    ``node_tokens``).
    """
    if requested != "auto":
        return requested
    if sampler == "dense":
        return "replicated"
    if not comm.spans_nodes:
        return "shared" if comm.size > 1 else "replicated"
    if sampler != "mh":
        return "replicated"
    ranks = max(comm.topology.ranks_per_node)
    need = node_bytes("replicated", n_words=n_words, n_topics=n_topics, n_tokens=n_tokens,
                      node_tokens=node_tokens, ranks=ranks, nodes=comm.topology.nodes)
    return "replicated" if available is None or need <= available else "model"


class _Block:
    """One buffer of a node: a block's count rows and its topics in word order,
    in memory shared by the node's ranks."""

    def __init__(self, node, rows, tokens, n_topics, count_dtype, topic_dtype):
        self.windows = [SharedArray(node, (max(rows, 1), n_topics), count_dtype),
                        SharedArray(node, (max(tokens, 1),), topic_dtype)]
        self.nwk, self.zw = (w.array for w in self.windows)
        #: The block held (-1: none).
        self.block = -1


class ModelParallel:
    """Model-parallel layout: word blocks that travel around a ring of nodes.

    The vocabulary is cut into ``B = 2·nodes`` blocks of about equal token
    counts (one block on one node).  A sweep has B phases; in phase p node n
    samples block ``(2n + p) mod B`` with all its ranks, which share the
    block's count rows and its tokens' topics in word order (the word
    proposal's table) as in the shared layout: each block is cut into as
    many sub-blocks as the largest node has ranks, and in sub-phase q the
    node's j-th rank samples sub-block ``(j + q) mod S`` of its documents,
    so no two ranks touch one count row at once (a node barrier between
    sub-phases).  After every phase the ranks add up their changes to the
    topic totals (K integers, a non-blocking allreduce over all ranks,
    completed one phase later and drained at the end of the sweep): B
    allreduces a sweep, however many ranks share a node (on one node, one
    per turn).

    The ring is double-buffered: while node n samples block c it sends the
    block it finished in the phase before (c − 1) to node n − 1, which
    samples it next phase, and receives block c + 1 from node n + 1, which
    finished it in the phase before.  With twice as many blocks as nodes
    the block a node needs next is always idle during the current phase, so
    its transfer overlaps the sampling; the node leaders exchange them
    (point-to-point on :attr:`hpcml.comm.Comm.leaders`) and test the
    transfers between document chunks.  On one node there is one block and
    nothing travels (the shared layout with one more level of blocks).

    Each rank then holds its own tokens (word, topic, position in its
    block's word order) and maps its node's three block buffers: 1.5/nodes
    of the counts and of the word order per node, shared by the node's
    ranks.  No array of the corpus's size exists anywhere; set-up needs only
    per-word figures (V integers: their frequencies, the ranks before this
    one's share of each word by an exclusive scan).

    Every phase is determined by the topics alone (not by timing or by
    which node holds which copy), so a run resumed from a checkpoint
    continues bit for bit.
    """

    name = "model"

    def __init__(self, lda):
        self.lda = lda

    # ----------------------------------------------------------------- setup
    def setup(self, corpus, comm, z, rng_state):
        """Build the blocks from the topics (``z``, else drawn; collective);
        sets the token arrays of :attr:`lda`."""
        lda = self.lda
        K, V = lda.n_topics, corpus.n_words
        topo = comm.topology
        self.comm = comm
        self.nodes = topo.nodes
        self.node_index = topo.node_index
        self.node = comm.node
        self.n_blocks = 2 * self.nodes if self.nodes > 1 else 1
        self.sub = max(topo.ranks_per_node)
        doc_ptr, words = corpus.tokens()
        freq = np.bincount(words, minlength=V).astype(np.int64)
        gfreq = comm.allreduce(freq.copy())
        comm.agree(gfreq.sum() > 0,
                   "LDA: the corpus has no tokens to train on (it is empty, or every word was "
                   "removed as a stop word or by --min-count/--max-doc-freq)")
        before = comm.exscan(freq.copy())
        n_units = self.n_blocks * self.sub
        ring = ring_blocks(gfreq, self.n_blocks)
        unit = np.empty(V, np.int32)
        for b in range(self.n_blocks):  # sub-blocks of equal tokens inside each block
            words_b = np.flatnonzero(ring == b)
            unit[words_b] = b * self.sub + kern.word_blocks(gfreq[words_b], self.sub)
        lda.word_ids = np.argsort(unit, kind="stable")
        lda.internal_ids = np.empty(V, words.dtype)
        lda.internal_ids[lda.word_ids] = np.arange(V, dtype=words.dtype)
        gfreq, before = gfreq[lda.word_ids], before[lda.word_ids]
        lda.wptr = np.zeros(V + 1, np.int64)
        np.cumsum(gfreq, out=lda.wptr[1:])
        lda.n_tokens = int(lda.wptr[-1])
        comm.agree(lda.n_tokens < kern.MAX_POSITIONS and K <= kern.MAX_TOPICS,
                   f"LDA supports up to {kern.MAX_POSITIONS} tokens and {kern.MAX_TOPICS} topics")
        unit_words = np.zeros(n_units + 1, np.int64)
        np.cumsum(np.bincount(unit, minlength=n_units), out=unit_words[1:])
        #: First internal word id of each ring block (and V at the end).
        self.block_words = unit_words[::self.sub].copy()
        lda.doc_ptr = doc_ptr
        # The shared layout's order of each document's tokens, by sub-block.
        iw, lda.block_bounds = _lda()._block_order(doc_ptr, lda.internal_ids[words],
                                                   unit[lda.word_ids], n_units)
        local_wptr, tpos = kern.word_index(iw, V)
        gpos = kern.global_positions(iw, tpos, local_wptr, lda.wptr[:-1] + before)
        del tpos, local_wptr
        # Ids and positions count from the start of each token's block, so
        # that the kernel runs on one block's rows and word order.
        blk = np.searchsorted(self.block_words, iw, side="right") - 1
        first = self.block_words[blk]
        lda.words = (iw - first).astype(iw.dtype)
        lda.gpos = (gpos - lda.wptr[first]).astype(gpos.dtype)
        del iw, gpos, first
        self.rows = np.diff(self.block_words)
        self.tokens = np.diff(lda.wptr[self.block_words])
        lda.rank_tokens = None
        n_local = lda.words.shape[0]
        if z is not None:
            ok = z.shape == (n_local,) and (n_local == 0 or int(z.max()) < K)
            comm.agree(ok, "checkpointed topics do not match the corpus or K")
        else:
            z = np.random.default_rng([lda.seed, comm.rank]).integers(0, K, n_local)
        lda.z = z.astype(kern.topic_dtype(K))
        lda.state = kern.seed_state(lda.seed, comm.rank) if rng_state is None \
            else np.asarray(rng_state, np.uint64).reshape(1).copy()
        cdt = _lda().count_dtype(int(gfreq.max()) if V else 0)
        n_buf = 3 if self.nodes > 1 else 1
        self.buffers = [_Block(self.node, int(self.rows.max()), int(self.tokens.max()), K, cdt,
                               lda.z.dtype) for _ in range(n_buf)]
        self._fill(blk)
        lda.nk = np.bincount(lda.z, minlength=K).astype(np.int64)
        comm.allreduce(lda.nk)
        lda.nk_merged = lda.nk.copy()
        lda.nwk = lda.zw = None
        lda.sent, lda.pending, lda.shared = None, (), False
        self.node_rank = self.node.rank
        self.leader = self.node_rank == 0
        self._fence()
        cuts = np.linspace(0, doc_ptr.shape[0] - 1, _CHUNKS + 1).astype(np.int64)
        self.chunks = np.unique(cuts)

    def _fill(self, blk):
        """Place every rank's topics into the blocks the nodes hold at the
        start of a sweep: node n holds blocks 2n (to sample) and 2n − 1 (to
        pass on); gathered block by block at the holding node's leader."""
        comm, lda = self.comm, self.lda
        leaders = comm.allgather_obj(comm.rank if self.node.rank == 0 else -1)
        #: World rank of each node's leader (node order = order of lowest rank).
        self.leader_of = leader_of = [r for r in leaders if r >= 0]
        order = np.argsort(blk, kind="stable")
        ends = np.searchsorted(blk[order], np.arange(self.n_blocks + 1))
        for b in range(self.n_blocks):
            holder = (b + 1) // 2 % self.nodes
            mine = order[ends[b]:ends[b + 1]]
            pos = comm.gatherv(lda.gpos[mine].astype(np.int64), root=leader_of[holder])
            top = comm.gatherv(lda.z[mine], root=leader_of[holder])
            if comm.rank == leader_of[holder]:
                buf = self.buffers[self._slot_of(b)]
                nwk, zw = buf.nwk, buf.zw
                zw[pos] = top
                wp = lda.wptr[self.block_words[b]:self.block_words[b + 1] + 1]
                word = np.searchsorted(wp - wp[0], pos, side="right") - 1
                kern.count_topics(np.array([0, pos.shape[0]], np.int64), word, top, nwk,
                                  np.zeros(lda.n_topics, np.int64))
        for b in self.held():
            self.buffers[self._slot_of(b)].block = b
        self.sample_slot, self.send_slot = 0, 1 if len(self.buffers) > 1 else None

    def _slot_of(self, block):
        """Buffer of a block at the start of a sweep: 0 the one sampled first."""
        return 0 if block == self._first() else 1

    def _first(self):
        return (2 * self.node_index) % self.n_blocks

    def held(self):
        """The blocks this node holds between sweeps (the first it samples, then
        the one it passes on)."""
        first = self._first()
        return [first] if self.n_blocks == 1 else [first, (first - 1) % self.n_blocks]

    # -------------------------------------------------------------- sampling
    def _fence(self):
        for buf in self.buffers:
            for w in buf.windows:
                w.sync()
        self.node.barrier()
        for buf in self.buffers:
            for w in buf.windows:
                w.sync()

    def _merge_totals(self, pending):
        """End of a phase: post this rank's changes to the topic totals since
        the last post (a non-blocking allreduce of K integers), then
        complete the previous phase's, so that no rank waits for the
        slowest one at every phase: the totals lag the other ranks by one
        phase more, at points fixed by the schedule (not by timing).
        Returns the new pending merge."""
        lda = self.lda
        own = lda.nk - self.posted
        request = self.comm.iallreduce(own.copy())
        self.posted[:] = lda.nk
        if pending is not None:
            self._complete(pending)
        return request, own

    def _complete(self, pending):
        """Add the other ranks' part of a posted merge to the totals."""
        request, own = pending
        others = request.wait() - own
        self.lda.nk += others
        self.posted += others

    def _transfers(self, phase_block):
        """Post the ring's two transfers of a phase on the leaders: the block
        finished before to node n − 1, the next one from node n + 1."""
        if self.n_blocks == 1:
            return []
        out = self.buffers[self.send_slot]
        gone = out.block
        into = self.buffers[3 - self.sample_slot - self.send_slot]
        nxt = (phase_block + 1) % self.n_blocks
        into.block = nxt  # on every rank of the node: all of them sample it next
        if not self.leader:
            return []
        # Through the job's communicator (world ranks of the neighbours'
        # leaders), so that the ring's bytes and waits count in its figures.
        comm = self.comm
        left = self.leader_of[(self.node_index - 1) % self.nodes]
        right = self.leader_of[(self.node_index + 1) % self.nodes]
        r, t = int(self.rows[gone]), int(self.tokens[gone])
        r2, t2 = int(self.rows[nxt]), int(self.tokens[nxt])
        return [comm.isend(out.nwk[:r], left, tag=_TAG), comm.isend(out.zw[:t], left, tag=_TAG + 1),
                comm.irecv(into.nwk[:r2], right, tag=_TAG),
                comm.irecv(into.zw[:t2], right, tag=_TAG + 1)]

    def _sample_unit(self, buf, unit, requests):
        lda = self.lda
        b = buf.block
        w0, w1 = int(self.block_words[b]), int(self.block_words[b + 1])
        wptr = lda.wptr[w0:w1 + 1] - lda.wptr[w0]
        ranges = (lda.block_bounds[unit], lda.block_bounds[unit + 1])
        for d0, d1 in zip(self.chunks[:-1], self.chunks[1:]):
            kern.mh_sweep(lda.doc_ptr, lda.words, lda.z, buf.nwk[:w1 - w0], lda.nk, lda.alpha,
                          lda.beta, lda.state, wptr=wptr, tpos=lda.gpos,
                          zw=buf.zw[:int(wptr[-1])], mh_steps=lda.mh_steps, d0=int(d0),
                          d1=int(d1), scratch=lda.scratch, ranges=ranges, n_words=lda.n_words)
            for req in requests:
                req.test()

    def sweep(self):
        """One sweep: every rank samples all its tokens, block by block (collective)."""
        self.posted = self.lda.nk.copy()
        pending = None
        for phase in range(self.n_blocks):
            buf = self.buffers[self.sample_slot]
            requests = self._transfers(buf.block)
            for q in range(self.sub):
                unit = buf.block * self.sub + (self.node_rank + q) % self.sub
                self._sample_unit(buf, unit, requests)
                # On one node a phase is the whole sweep: merge every turn.
                if self.n_blocks == 1 or q == self.sub - 1:
                    pending = self._merge_totals(pending)
                if q < self.sub - 1:
                    self._fence()  # the node's ranks leave their sub-blocks together
            for req in requests:
                req.wait()
            if self.n_blocks > 1:
                self.buffers[self.send_slot].block = -1  # passed on
            self._fence()  # the block received is complete for every rank of the node
            if self.n_blocks > 1:
                arrived = 3 - self.sample_slot - self.send_slot
                self.sample_slot, self.send_slot = arrived, self.sample_slot
        self._complete(pending)  # the totals are exact between sweeps
        self.lda.nk_merged[:] = self.lda.nk
        # The blocks a node holds now are those of the start of the sweep.
        return ["model"] * self.n_blocks

    def compile(self):
        """Compile the sampler on an empty range (see LDA._compile)."""
        lda = self.lda
        buf = self.buffers[self.sample_slot]
        b = buf.block
        w0, w1 = int(self.block_words[b]), int(self.block_words[b + 1])
        wptr = lda.wptr[w0:w1 + 1] - lda.wptr[w0]
        kern.mh_sweep(lda.doc_ptr, lda.words, lda.z, buf.nwk[:w1 - w0], lda.nk, lda.alpha,
                      lda.beta, lda.state, wptr=wptr, tpos=lda.gpos,
                      zw=buf.zw[:int(wptr[-1])], mh_steps=lda.mh_steps, d0=0, d1=0,
                      scratch=lda.scratch, n_words=lda.n_words)

    # ------------------------------------------------------------ the counts
    def row_sum(self, fn):
        """Sum of ``fn(rows)`` over all count rows, each counted once: the
        node's ranks split the rows of the blocks it holds; add the result
        over all ranks (between sweeps only)."""
        total = 0.0
        for b in self.held():
            buf = next(x for x in self.buffers if x.block == b)
            lo, hi = block_range(int(self.rows[b]), self.node.size, self.node_rank)
            total += fn(buf.nwk[lo:hi])
        return total

    def word_topic_internal(self):
        """The whole V × K count table in internal word order, on every rank
        (collective; between sweeps).  Only for the model file and held-out
        scores, which need every word's counts."""
        K = self.lda.n_topics
        held = self.held()[::-1]  # block 2n − 1, then 2n: node order gives the block order
        dtype = self.buffers[0].nwk.dtype
        if self.leader:
            parts = [next(x for x in self.buffers if x.block == b).nwk[:int(self.rows[b])]
                     for b in held]
            mine = np.concatenate(parts) if parts else np.zeros((0, K), dtype)
        else:
            mine = np.zeros((0, K), dtype)
        table = self.comm.allgatherv(mine)
        if self.n_blocks > 1:  # node 0 sent block B − 1 first
            table = np.roll(table, -int(self.rows[self.n_blocks - 1]), axis=0)
        return table

    def memory_bytes(self):
        """This rank's own-token bytes and its node's shared block buffers."""
        lda = self.lda
        own = lda.words.nbytes + lda.z.nbytes + lda.gpos.nbytes + lda.block_bounds.nbytes
        own += lda.doc_ptr.nbytes + lda.wptr.nbytes
        shared = sum(buf.nwk.nbytes + buf.zw.nbytes for buf in self.buffers)
        per_token = lda.words.itemsize + lda.z.itemsize + lda.gpos.itemsize
        return {"bytes_per_token": per_token, "bytes_per_corpus_token": 0,
                "bytes_per_cell": self.buffers[0].nwk.itemsize, "total": int(own + shared),
                "shared": int(shared)}

    def close(self):
        """Release the shared buffers (collective)."""
        for buf in self.buffers:
            for w in buf.windows:
                w.free()
        self.buffers = []


def ring_blocks(word_freq, n_blocks):
    """Assign each word to one of ``n_blocks`` ring blocks: about equal token
    counts (so that phases take about the same time), and at most
    ``ceil(V / n_blocks)`` words each (so that the count rows, which decide
    the buffers' size, are balanced too; unused words would otherwise all
    land in one block).

    Words in decreasing frequency, each to the block with the fewest tokens
    among those below ``ceil(V / n_blocks)`` words.  Returns int32 block ids.
    """
    freq = np.asarray(word_freq, np.int64)
    V = freq.shape[0]
    block = np.zeros(V, np.int32)
    if n_blocks == 1:
        return block
    cap = -(-V // n_blocks)
    load = np.zeros(n_blocks, np.float64)
    rows = np.zeros(n_blocks, np.int64)
    full = np.inf
    for w in np.argsort(-freq, kind="stable").tolist():
        b = int(np.argmin(load))
        block[w] = b
        load[b] += freq[w]
        rows[b] += 1
        if rows[b] == cap:
            load[b] = full
    return block


def _lda():
    """:mod:`hpcml.topics.lda`, which imports this module (its block order
    and count type serve both)."""
    from hpcml.topics import lda

    return lda
