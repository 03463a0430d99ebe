"""Data-parallel LDA by collapsed Gibbs sampling over document shards.

Each rank holds a range of documents.  The word-topic counts and the
topics of every token of the corpus in one global word order (see
:mod:`hpcml.kernels.lda`) are laid out in one of three ways: the two
below, and ``layout="model"`` (word blocks travelling around a ring of
nodes; :class:`hpcml.topics.layouts.ModelParallel`), the default across
nodes once the replicated counts no longer fit a node
(:func:`resolve_layout`).

``layout="shared"`` (ranks on one node; the default there): one copy of
the counts and the word order in shared memory.  The words are dealt into
as many blocks as ranks, of equal token counts
(:func:`hpcml.kernels.lda.word_blocks`), and each document's tokens are
ordered by block; a sweep has one phase per rank, and in phase p rank r
resamples its tokens of block (r + p) mod P, so no two ranks touch the same
count row or word-order entry at once (the partition scheme of Yan et al.
2009, also tomotopy's); the model numbers the words block after block, so
no cache line holds two blocks' entries either (:meth:`LDA.word_topic`
gives the counts by input word id).  Between
phases the ranks merge their changes to the topic totals (K integers, an
allreduce), the only counts they keep apart.  Nothing else is copied or
sent, and the result does not depend on timing.

``layout="replicated"`` (ranks on several nodes): every rank keeps its own
copy ("view") of the counts and of the word order.  A sweep over the local
documents is cut into ``round(1/sync_every)`` segments; after each segment
the ranks exchange which of their tokens changed topic (AD-LDA, Newman et
al. 2009, with tokens rather than count cells on the wire):

* sparse: every rank packs its changed tokens as (global position, topic)
  in 64-bit words and the packed lists are all-gathered; chosen when they
  are smaller than the dense form;
* dense: every rank's topics in word order (2 bytes per token of the
  corpus), all-gathered;
* with ``staleness = S > 0`` the dense exchange is non-blocking and up to S
  segments' exchanges stay in flight while sampling continues (bounded
  staleness, SSP-style); all are drained at the end of a sweep, so the
  log-likelihood, hyperparameter updates and checkpoints see exact counts.

Own changes enter the local view and word order immediately, other ranks'
when their exchange completes, so the view always holds exactly the counts
of the topics in the word order: the word proposal draws from it and its
Hastings ratio reads the view, the same kernel as on one rank.

What the rank count changes: each rank draws from its own random stream
and samples only its documents against topic totals (shared layout) or
counts (replicated layout) that lag the other ranks' changes by up to one
phase or segment (plus S with staleness), so runs with different rank
counts or layouts follow different (equally valid) sampling paths and do
not produce bit-identical topics; the same seed, rank count and layout
give identical results.
"""

import time
from collections import deque

import numpy as np

from hpcml.comm import SharedArray
from hpcml.errors import InputError
from hpcml.kernels import lda as kern
from hpcml.kernels import lda_rows as rowk
from hpcml.kernels.lda_gibbs import gibbs_sweep
from hpcml.partition import block_range
from hpcml.runtime import available_memory, ranks_on_node
from hpcml.topics.layouts import ModelParallel, choose_layout
from hpcml.topics.model import TopicModel, completion_perplexity, proportions

SAMPLERS = ("auto", "gibbs", "mh", "dense")
#: ``sampler="auto"`` takes the exact Gibbs sampler up to this K, the MH
#: sampler above: Gibbs costs O(K) per token but mixes faster per sweep; on
#: bench/lda.py's corpus it is faster than MH up to K of about 150 and still
#: ahead in log-likelihood per second around 250.
GIBBS_MAX_TOPICS = 256
EXCHANGES = ("auto", "sparse", "dense")
INITS = ("random", "progressive")
LAYOUTS = ("auto", "shared", "replicated", "model")
WORD_ROWS = ("auto", "dense", "sparse")
#: Weight of the not-yet-placed tokens in the progressive start (see
#: kern.progressive_init).  On the benchmark corpus at K = 1000 (5,000
#: documents) the log-likelihood after 20 sweeps rose as it fell from 1 to
#: 0.05 (1: -2.6%, 0.3: -1.9%, 0.1: -0.9%, 0.05: +0.2% vs tomotopy); 0 and 1
#: each merged two topics of a 5-topic corpus in one seed of four, 0.05 and
#: 0.1 in none of six.
INIT_SMOOTH = 0.05


#: Upper bounds of the sampler's memory, from :meth:`LDA.memory_bytes`
#: plus the temporaries of ``setup`` and of the model file: per own token
#: (word, topic, positions, the sort that orders them), per document-topic
#: cell of the rank's documents (the int64 counts and the float32
#: proportions the model file holds) and per word-topic cell (int32 counts,
#: and the int32 copy the model file is written from).
BYTES_PER_TOKEN, BYTES_PER_DOC_TOPIC, BYTES_PER_CELL = 32, 20, 8


def choose_sampler(sampler, n_topics):
    """The sampler ``sampler`` ("auto" or a name) stands for at ``n_topics`` topics."""
    if sampler != "auto":
        return sampler
    return "gibbs" if int(n_topics) <= GIBBS_MAX_TOPICS else "mh"


def sparse_word_rows(word_rows, sampler, n_tokens, n_words, n_topics):
    """Whether the counts are :class:`~hpcml.kernels.lda_rows.HybridRows` for
    these options and sizes (``n_tokens`` of the whole corpus): asked for, or
    "auto" with the MH sampler and the rows' bound under half the dense
    table's bytes."""
    if word_rows != "auto":
        return word_rows == "sparse"
    return (choose_sampler(sampler, n_topics) == "mh"
            and 2 * rowk.bytes_bound(n_tokens, n_words) < n_words * n_topics * 2)


def refuse_if_too_big(comm, local_tokens, local_docs, n_words, n_topics, layout="auto", *,
                      sampler="auto", word_rows="auto"):
    """Refuse, before allocating, a model whose state would not fit this node's memory (collective).

    Parameters
    ----------
    comm : hpcml.comm.Comm
    local_tokens, local_docs : int
        This rank's tokens and documents.
    n_words, n_topics : int
        ``V`` and ``K``: every rank holds or maps the ``V × K`` counts, or
        in the model-parallel layout 1.5/nodes of them
        (:func:`hpcml.topics.layouts.node_bytes`).
    layout, sampler, word_rows : str
        As :class:`LDA` takes them ("auto" layout resolves as
        :func:`resolve_layout`): sparse rows (:func:`sparse_word_rows`) count
        :func:`hpcml.kernels.lda_rows.bytes_bound` instead of ``V × K`` cells.

    Raises
    ------
    InputError
        Naming the estimate, the memory available and the options that change it.
    """
    available = available_memory()
    rank = local_tokens * BYTES_PER_TOKEN + local_docs * n_topics * BYTES_PER_DOC_TOPIC
    n_all = comm.allreduce_scalar(local_tokens, "sum")
    if resolve_layout(layout, comm, choose_sampler(sampler, n_topics), local_tokens,
                      n_words, n_topics) == "model":
        # Model-parallel blocks are dense rows, 1.5/nodes of the table per node.
        counts = n_words * n_topics * BYTES_PER_CELL * 1.5 / comm.topology.nodes
    elif sparse_word_rows(word_rows, sampler, n_all, n_words, n_topics):
        counts = rowk.bytes_bound(n_all, n_words)
    else:
        counts = n_words * n_topics * BYTES_PER_CELL
    need = comm.allreduce_scalar(rank, "max") * ranks_on_node() + int(counts)
    if available is not None:
        comm.agree(need <= available,
                   f"LDA would need about {need / 1e9:.1f} GB on this node ({BYTES_PER_TOKEN} B per "
                   f"token and {BYTES_PER_DOC_TOPIC} B per document and topic on each of its "
                   f"{ranks_on_node()} rank(s), {counts / 1e9:.1f} GB of word-topic counts of "
                   f"{n_words} x {n_topics}) and {available / 1e9:.1f} GB are available: use fewer "
                   "--topics, a smaller vocabulary (--min-count) or corpus, or more nodes")


def resolve_layout(layout, comm, sampler, local_tokens, n_words, n_topics):
    """The layout that ``layout`` stands for on ``comm`` (collective).

    ``"auto"``: shared on one node, replicated across nodes while the
    replicated counts fit each node's available memory, model-parallel
    beyond (:func:`hpcml.topics.layouts.choose_layout`).
    """
    if layout != "auto":
        return layout
    n_tokens = comm.allreduce_scalar(int(local_tokens))
    node_tokens = comm.allreduce_scalar(int(local_tokens) * ranks_on_node(), "max")
    return choose_layout(layout, comm, sampler, n_words=n_words, n_topics=n_topics,
                         n_tokens=n_tokens, node_tokens=node_tokens,
                         available=available_memory())


def count_dtype(max_count):
    """Smallest unsigned count type that holds ``max_count`` (uint16 or int32)."""
    return np.uint16 if max_count < 2**16 else np.int32


def _block_order(doc_ptr, words, block, n_blocks):
    """Reorder each document's tokens by the block of their word (stably) and
    return ``(words, bounds)``: block b of document d is tokens
    ``bounds[b, d]:bounds[b + 1, d]``, ``bounds`` of shape (n_blocks + 1, D).
    With one block the order is the stored one."""
    n_docs = doc_ptr.shape[0] - 1
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), np.diff(doc_ptr))
    key = doc_of * n_blocks + block[words]
    if n_blocks > 1:
        words = words[np.argsort(key, kind="stable")]
    bounds = np.empty((n_blocks + 1, n_docs), np.int64)
    bounds[0] = doc_ptr[:-1]
    per = np.bincount(key, minlength=n_docs * n_blocks).reshape(n_docs, n_blocks)
    np.cumsum(per, axis=1, out=bounds[1:].T)
    bounds[1:] += doc_ptr[:-1]
    return words, bounds


class LDA:
    """Latent Dirichlet allocation trained by distributed collapsed Gibbs sampling.

    Parameters
    ----------
    n_topics : int
        K >= 2.
    alpha : float or array of shape (K,)
        Document-topic prior; an array gives an asymmetric prior.
    beta : float
        Symmetric topic-word prior.
    sampler : {"auto", "gibbs", "mh", "dense"}
        "gibbs": exact collapsed Gibbs, O(K) per token, vectorised
        (:func:`hpcml.kernels.lda_gibbs.gibbs_sweep`); "mh": Metropolis-Hastings
        with O(1) proposals per token; "dense": the textbook exact O(K)
        sampler (reference); "auto": "gibbs" up to :data:`GIBBS_MAX_TOPICS`
        topics, else "mh".  :attr:`sampler` holds the one chosen.
    mh_steps : int
        Proposal pairs (document, word) per token for ``"mh"``.
    sync_every : float in (0, 1]
        Fraction of a sweep between count exchanges.
    staleness : int
        Exchanges that may remain in flight (non-blocking dense all-gather).
    exchange : {"auto", "sparse", "dense"}
        How changed topics travel; "auto" picks the smaller per exchange.
    optimize_every : int
        Every this many iterations update alpha (asymmetric) and beta by
        Minka's fixed point; 0 keeps them fixed.
    seed : int
        Seed; rank r uses stream r.
    init : {"random", "progressive"}
        Initial topics: uniformly at random, or drawn token by token from the
        conditional given the tokens before (rank after rank; see
        :func:`hpcml.kernels.lda.progressive_init`).  At large K the MH
        sampler needs many sweeps to leave a random start; a progressive start
        costs about one sweep and saves most of them.
    layout : {"auto", "shared", "replicated", "model"}
        How several ranks hold the counts (module docstring): "auto" shares
        them when all ranks run on one node and the sampler is not "dense";
        across nodes it replicates them while they fit each node's memory,
        else it cuts them into word blocks that travel around the nodes
        ("model", :class:`hpcml.topics.layouts.ModelParallel`; "mh" sampler).
        ``sync_every``, ``staleness`` and ``exchange`` apply to "replicated".
    word_rows : {"auto", "dense", "sparse"}
        How the word-topic counts are held: V x K cells, or
        :class:`hpcml.kernels.lda_rows.HybridRows` (dense rows for frequent
        words, hash rows for the rest; memory follows the non-zeros; "mh"
        sampler only); "auto": :func:`sparse_word_rows`.

    Examples
    --------
    As tomotopy's ``add_doc`` then ``train``: every rank passes its documents
    (:func:`hpcml.topics.corpus.load_corpus`), then sweeps run::

        local, _ = load_corpus("corpus.h5", comm)
        model = LDA(20, seed=1).setup(local, comm).fit(100)
        model.save("lda.h5")
        theta = TopicModel.load("lda.h5", comm).transform(new_docs)
    """

    def __init__(self, n_topics, *, alpha=0.1, beta=0.01, sampler="auto", mh_steps=2,
                 sync_every=1.0, staleness=0, exchange="auto", optimize_every=0, seed=0,
                 init="random", layout="auto", word_rows="auto"):
        if int(n_topics) < 2:
            raise InputError(f"number of topics must be >= 2, got {n_topics}")
        if sampler not in SAMPLERS:
            raise InputError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        if exchange not in EXCHANGES:
            raise InputError(f"exchange must be one of {EXCHANGES}, got {exchange!r}")
        if init not in INITS:
            raise InputError(f"init must be one of {INITS}, got {init!r}")
        if layout not in LAYOUTS:
            raise InputError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        # The model-parallel layout samples by MH only: "auto" means MH there.
        sampler = "mh" if layout == "model" and sampler == "auto" else choose_sampler(sampler, n_topics)
        if word_rows not in WORD_ROWS:
            raise InputError(f"word rows must be one of {WORD_ROWS}, got {word_rows!r}")
        if word_rows == "sparse" and sampler != "mh":
            raise InputError("sparse word rows need the 'mh' sampler")
        if layout == "shared" and sampler == "dense":
            raise InputError("layout 'shared' needs the 'gibbs' or 'mh' sampler")
        if layout == "model" and sampler != "mh":
            raise InputError("layout 'model' needs the 'mh' sampler")
        if layout == "model" and word_rows == "sparse":
            raise InputError("layout 'model' moves dense word blocks (word rows 'dense' or 'auto')")
        if layout == "model" and init != "random":
            raise InputError("layout 'model' starts from random topics (init 'random')")
        if not 0.0 < float(sync_every) <= 1.0:
            raise InputError(f"sync-every must be in (0, 1], got {sync_every}")
        if int(staleness) < 0 or int(mh_steps) < 1:
            raise InputError("staleness must be >= 0 and mh-steps >= 1")
        a = np.broadcast_to(np.asarray(alpha, np.float64), (int(n_topics),)).copy()
        if np.any(a <= 0) or not float(beta) > 0:
            raise InputError("alpha and beta must be positive")
        self.n_topics = int(n_topics)
        self.alpha = a
        self.beta = float(beta)
        self.sampler = sampler
        self.mh_steps = int(mh_steps)
        self.sync_every = float(sync_every)
        self.staleness = int(staleness)
        self.exchange = exchange
        self.optimize_every = int(optimize_every)
        self.seed = int(seed)
        self.init = init
        self.layout = layout
        self.word_rows = word_rows

    # ------------------------------------------------------------------ setup
    def setup(self, corpus, comm, z=None, rng_state=None):
        """Load this rank's documents and build the counts (collective).

        ``z`` and ``rng_state`` restore a checkpointed state; otherwise
        topics start from :attr:`init` drawn from the rank's stream.
        """
        self.comm = comm
        K, V = self.n_topics, corpus.n_words
        n_local = int(corpus.counts.sum())
        refuse_if_too_big(comm, n_local, corpus.n_docs, V, K, self.layout, sampler=self.sampler,
                          word_rows=self.word_rows)
        self.n_words = V
        self.vocab = corpus.vocab
        self.doc_offset = corpus.doc_offset
        #: The layout strategy (None: the shared or replicated layout of this class).
        self.scheme = None
        self.layout_used = resolve_layout(self.layout, comm, self.sampler, n_local, V, K)
        #: Whether the word-topic counts are sparse rows (HybridRows); the
        #: model-parallel layout's travelling blocks are dense.
        self.sparse_rows = self.layout_used != "model" and sparse_word_rows(
            self.word_rows, self.sampler, comm.allreduce_scalar(n_local, "sum"), V, K)
        if self.layout_used == "model":
            self.scheme = ModelParallel(self)
            tic = time.perf_counter()
            self.scheme.setup(corpus, comm, z, rng_state)
            self.init_s = time.perf_counter() - tic
            self.scratch = np.zeros(K, np.int32)
            self.segments = None
            self.iteration = 0
            self.history = []
            self._compile()
            return self
        doc_ptr, words = corpus.tokens()
        n_local = words.shape[0]
        freq = np.bincount(words, minlength=V).astype(np.int64)
        rank_freq = comm.allgatherv(freq[None, :])
        comm.agree(rank_freq.sum() > 0,
                   "LDA: the corpus has no tokens to train on (it is empty, or every word was "
                   "removed as a stop word or by --min-count/--max-doc-freq)")
        # Word blocks (the phases of the shared layout).  The words are
        # numbered internally block after block, so that no cache line holds
        # count rows or word-order entries of two blocks: ranks sampling
        # different blocks on cores without a common cache would otherwise
        # pass those lines back and forth at every update (at 2 ranks here,
        # half the speed).  Tokens are ordered by block within each document
        # whatever the layout, so a checkpoint (same rank count) resumes in
        # either.  One block keeps the input numbering.
        block = kern.word_blocks(rank_freq.sum(axis=0), comm.size)
        #: Input word id of each internal word id.
        self.word_ids = np.argsort(block, kind="stable")
        #: Internal word id of each input word id.
        self.internal_ids = np.empty(V, words.dtype)
        self.internal_ids[self.word_ids] = np.arange(V, dtype=words.dtype)
        rank_freq = np.ascontiguousarray(rank_freq[:, self.word_ids])
        gfreq = rank_freq.sum(axis=0)
        self.doc_ptr = doc_ptr
        self.words, self.block_bounds = _block_order(
            doc_ptr, self.internal_ids[words], block[self.word_ids], comm.size)
        self.rank_tokens = rank_freq.sum(axis=1)
        self.n_tokens = int(self.rank_tokens.sum())
        comm.agree(self.n_tokens < kern.MAX_POSITIONS and K <= kern.MAX_TOPICS,
                   f"LDA supports up to {kern.MAX_POSITIONS} tokens and {kern.MAX_TOPICS} topics")
        if z is not None:
            ok = z.shape == (n_local,) and (n_local == 0 or int(z.max()) < K)
            comm.agree(ok, "checkpointed topics do not match the corpus or K")
        self.shared = comm.size > 1 and self.layout != "replicated" and self.sampler != "dense"
        if self.shared:
            on_node = comm.shares_node()
            comm.agree(on_node or self.layout == "auto",
                       "layout 'shared' needs every rank on one node; use 'replicated'")
            self.shared = on_node
        self.layout_used = "shared" if self.shared else "replicated"
        self.state = kern.seed_state(self.seed, comm.rank) if rng_state is None \
            else np.asarray(rng_state, np.uint64).reshape(1).copy()
        # The global word order: this rank's tokens sit at self.gpos in it.
        local_wptr, tpos = kern.word_index(self.words, V)
        self.wptr, self.starts = kern.global_word_order(rank_freq)
        self.gpos = kern.global_positions(self.words, tpos, local_wptr, self.starts[comm.rank])
        self._windows = []
        alloc = self._shared_zeros if self.shared else np.zeros
        self.zw = alloc((self.n_tokens,), kern.topic_dtype(K))
        cdt = count_dtype(int(gfreq.max()) if V else 0)
        self.nwk = rowk.HybridRows(gfreq, K, cdt, alloc) if self.sparse_rows \
            else alloc((V, K), cdt)
        self.nk = np.zeros(K, np.int64)
        tic = time.perf_counter()
        if z is None and self.init == "progressive":
            self._progressive()
        else:
            if z is None:
                z = np.random.default_rng([self.seed, comm.rank]).integers(0, K, n_local)
            self.z = z.astype(self.zw.dtype)
            everyone = comm.iallgatherv(kern.word_order(self.z, tpos), self.rank_tokens).wait()
            if not self.shared or comm.rank == 0:
                for r, (lo, hi) in enumerate(self._rank_slices()):
                    self._apply_rank_topics(everyone[lo:hi], r, replace=False)
            if self.shared:
                self._fence()
                self.nk[:] = comm.bcast(self.nk, root=0)
        #: Seconds spent drawing the initial topics (part of training time).
        self.init_s = time.perf_counter() - tic
        self.scratch = np.zeros(K, np.int32)
        self.nk_merged = self.nk.copy()
        # Segments (replicated layout): equal token ranges of the local
        # documents; every rank has the same number, so the exchanges line up.
        n_seg = max(1, int(round(1.0 / self.sync_every)))
        cuts = np.searchsorted(self.doc_ptr, np.linspace(0, n_local, n_seg + 1), side="left")
        cuts[0], cuts[-1] = 0, self.doc_ptr.shape[0] - 1
        self.segments = np.maximum.accumulate(cuts)
        # This rank's topics in word order as the other ranks last saw them.
        replicated = comm.size > 1 and not self.shared
        self.sent = kern.rank_topics(self.zw, self.starts, comm.rank) if replicated else None
        self.pending = deque()
        self.iteration = 0
        self.history = []
        self._compile()
        return self

    def _shared_zeros(self, shape, dtype):
        """A zeroed array in shared memory, freed by :meth:`close`."""
        self._windows.append(SharedArray(self.comm, shape, dtype))
        return self._windows[-1].array

    def _apply_rank_topics(self, topics, rank, *, replace):
        """Rank ``rank``'s topics in word order into ``zw`` and the counts."""
        if self.sparse_rows:
            rowk.apply_rank_topics_rows(topics, self.starts, rank, self.zw, self.nwk, self.nk,
                                        replace=replace)
        else:
            kern.apply_rank_topics(topics, self.starts, rank, self.zw, self.nwk, self.nk,
                                   replace=replace)

    def _apply_changes(self, packed):
        """Another rank's changed tokens into ``zw`` and the counts."""
        apply = rowk.apply_changes_rows if self.sparse_rows else kern.apply_changes
        apply(packed, self.wptr, self.zw, self.nwk, self.nk)

    def _dense_counts(self, words=None):
        """Word-topic counts as a V x K array in internal word order (rows
        ``words`` if given); a dense copy when the rows are sparse; collective
        in the model-parallel layout, which assembles them on every rank."""
        if self.scheme is not None:
            counts = self.scheme.word_topic_internal()
            return counts if words is None else counts[words]
        if self.sparse_rows:
            return self.nwk.to_dense(words)
        return self.nwk if words is None else self.nwk[words]

    def close(self):
        """Release the shared memory of the shared layout (collective; the
        counts must not be used after).  Nothing to do otherwise."""
        if self.scheme is not None:
            self.scheme.close()
            return
        for w in self._windows:
            w.free()
        self._windows = []
        self.nwk = self.zw = None

    def _fence(self):
        """Every rank waits for the others' writes to the shared arrays."""
        for w in self._windows:
            w.sync()
        self.comm.barrier()
        for w in self._windows:
            w.sync()

    def _rank_slices(self):
        """Where each rank's tokens lie in an all-gathered per-token array."""
        ends = np.cumsum(self.rank_tokens)
        return list(zip((ends - self.rank_tokens).tolist(), ends.tolist()))

    def _progressive(self):
        """Progressive initial topics, rank after rank: each rank draws its
        tokens against the counts and word order of the ranks before it
        (shared, or passed on by a broadcast), so all ranks grow the same
        topics instead of numbering theirs independently.  Costs one
        initialisation pass of the whole corpus in wall time, whatever the
        rank count."""
        comm = self.comm
        for r in range(comm.size):
            if comm.rank == r:
                init = rowk.progressive_init_rows if self.sparse_rows else kern.progressive_init
                out = init(self.doc_ptr, self.words, self.nwk, self.nk, self.alpha, self.beta,
                           self.state, wptr=self.wptr, tpos=self.gpos, zw=self.zw,
                           n_after=int(self.rank_tokens[r + 1:].sum()), smooth=INIT_SMOOTH)
                self.z = out if self.sparse_rows else out[0]
            if self.shared:
                self._fence()
                self.nk[:] = comm.bcast(self.nk, root=r)
            elif comm.size > 1:
                mine = kern.rank_topics(self.zw, self.starts, r) if comm.rank == r else None
                theirs = comm.bcast(mine, root=r)
                if comm.rank != r:
                    self._apply_rank_topics(theirs, r, replace=False)

    def _compile(self):
        """Compile (or load from Numba's cache) the sweep kernels on empty
        ranges, so that the first iteration's time and throughput are not
        inflated by compilation."""
        if self.scheme is not None:
            self.scheme.compile()
            return
        self._sample(0, 0)
        if self.sent is not None:
            self._apply_changes(np.zeros(0, np.int64))

    def memory_bytes(self):
        """Bytes held by this rank's sampler state, by kind.

        ``bytes_per_token`` counts this rank's tokens (word, topic, position
        in the word order, and in the replicated layout the topics last
        sent); ``bytes_per_corpus_token`` the topics of all tokens in word
        order; ``total`` everything this rank holds or maps, of which
        ``shared`` (the counts and the word order in the shared layout) is
        one copy for all ranks of the node.
        """
        if self.scheme is not None:
            return self.scheme.memory_bytes()
        per_token = (self.words.itemsize + self.z.itemsize + self.gpos.itemsize
                     + (self.sent.itemsize if self.sent is not None else 0))
        total = (self.words.nbytes + self.z.nbytes + self.zw.nbytes + self.gpos.nbytes
                 + self.nwk.nbytes + self.doc_ptr.nbytes + self.wptr.nbytes + self.starts.nbytes)
        total += 0 if self.sent is None else self.sent.nbytes
        total += sum(p[1].nbytes for p in self.pending)
        total += self.block_bounds.nbytes
        shared = self.zw.nbytes + self.nwk.nbytes if self.shared else 0
        return {"bytes_per_token": per_token, "bytes_per_corpus_token": self.zw.itemsize,
                "bytes_per_cell": self.nwk.itemsize, "total": int(total), "shared": int(shared)}

    # --------------------------------------------------------------- sampling
    def _sample(self, d0, d1, ranges=None):
        if self.sampler == "mh":
            sweep = rowk.mh_sweep_rows if self.sparse_rows else kern.mh_sweep
            sweep(self.doc_ptr, self.words, self.z, self.nwk, self.nk, self.alpha,
                          self.beta, self.state, wptr=self.wptr, tpos=self.gpos, zw=self.zw,
                          mh_steps=self.mh_steps, d0=d0, d1=d1, scratch=self.scratch,
                          ranges=ranges)
        elif self.sampler == "gibbs":
            gibbs_sweep(self.doc_ptr, self.words, self.z, self.nwk, self.nk, self.alpha,
                        self.beta, self.state, tpos=self.gpos, zw=self.zw, d0=d0, d1=d1,
                        scratch=self.scratch, ranges=ranges)
        else:
            t0, t1 = self.doc_ptr[d0], self.doc_ptr[d1]
            kern.dense_sweep(self.doc_ptr, self.words, self.z, self.nwk, self.nk, self.alpha,
                             self.beta, self.state, d0=d0, d1=d1, scratch=self.scratch)
            # The dense sampler works on z alone; the word order follows.
            self.zw[self.gpos[t0:t1]] = self.z[t0:t1]

    def _merge_totals(self):
        """End of a phase of the shared layout: add up the ranks' changes to
        the topic totals; the collective also orders the phases."""
        for w in self._windows:
            w.sync()
        change = self.nk - self.nk_merged
        self.comm.allreduce(change)
        self.nk_merged += change
        self.nk[:] = self.nk_merged
        for w in self._windows:
            w.sync()

    def _exchange(self):
        """Send the topic changes since the last exchange to the other ranks."""
        comm = self.comm
        # Changes are found by comparing with the topics last sent, in word
        # order, so they travel (and are applied) in increasing position.
        changed = kern.own_changes(self.zw, self.starts, comm.rank, self.sent)
        mode = "dense" if self.staleness > 0 else self.exchange
        if mode != "dense":
            sizes = comm.iallgatherv(np.array([changed.size], np.int64),
                                     np.ones(comm.size, np.int64)).wait()
            if mode == "auto":
                mode = "sparse" if sizes.sum() * 8 < self.zw.nbytes else "dense"
        if mode == "sparse":
            gathered = comm.iallgatherv(changed, sizes).wait()
            ends = np.cumsum(sizes)
            for r in range(comm.size):
                if r != comm.rank:
                    self._apply_changes(gathered[ends[r] - sizes[r]:ends[r]])
            return mode
        mine = self.sent.copy()
        self.pending.append((comm.iallgatherv(mine, self.rank_tokens), mine))
        while len(self.pending) > self.staleness:
            self._complete_oldest()
        return mode

    def _complete_oldest(self):
        req, _ = self.pending.popleft()
        everyone = req.wait()
        for r, (lo, hi) in enumerate(self._rank_slices()):
            if r != self.comm.rank:
                self._apply_rank_topics(everyone[lo:hi], r, replace=True)

    def sweep(self):
        """One pass over the local documents with its exchanges (collective).

        Returns a dict with this rank's compute and communication seconds,
        bytes sent/received and the exchange modes used.
        """
        comm = self.comm
        before = comm.timings()
        tic = time.perf_counter()
        modes = []
        if self.scheme is not None:
            modes = self.scheme.sweep()
        elif self.shared:
            n_docs = self.doc_ptr.shape[0] - 1
            for phase in range(comm.size):
                b = (comm.rank + phase) % comm.size
                self._sample(0, n_docs, (self.block_bounds[b], self.block_bounds[b + 1]))
                self._merge_totals()
                modes.append("shared")
        else:
            for j in range(len(self.segments) - 1):
                d0, d1 = int(self.segments[j]), int(self.segments[j + 1])
                self._sample(d0, d1)
                if comm.size > 1:
                    modes.append(self._exchange())
        while self.pending:
            self._complete_oldest()
        after = comm.timings()
        self.iteration += 1
        comm_s = after["comm_s"] - before["comm_s"]
        # Everything outside MPI calls (sampling, packing and applying the
        # other ranks' changes) is compute.
        return {"compute_s": max(time.perf_counter() - tic - comm_s, 0.0), "comm_s": comm_s,
                "bytes": after["bytes"] - before["bytes"], "modes": modes}

    def fit(self, iterations, *, heldout=None, eval_every=0, heldout_sweeps=20, ll_every=1,
            log=None, checkpoint=None):
        """Run sweeps up to ``iterations`` in total (collective).

        Parameters
        ----------
        iterations : int
            Total sweeps (a resumed model continues from ``self.iteration``).
        heldout : Corpus, optional
            This rank's held-out documents; perplexity every ``eval_every``.
        ll_every : int
            Joint log-likelihood every this many iterations (0: never).
        log : callable, optional
            Called with each iteration's record (a dict).
        checkpoint : callable, optional
            Called after each iteration with the model; returns True to stop
            early (a checkpoint was requested by a signal).
        """
        while self.iteration < iterations:
            tic = time.perf_counter()
            rec = self.sweep()
            rec["iteration"] = self.iteration
            rec["sweep_s"] = time.perf_counter() - tic
            rec["tokens_per_s"] = self.n_tokens / rec["sweep_s"] if rec["sweep_s"] > 0 else 0.0
            if self.optimize_every and self.iteration % self.optimize_every == 0:
                self.optimize_hyperparameters()
            if ll_every and (self.iteration % ll_every == 0 or self.iteration == iterations):
                rec["log_likelihood"] = self.log_likelihood()
                rec["ll_per_token"] = rec["log_likelihood"] / max(self.n_tokens, 1)
            if heldout is not None and eval_every and (
                    self.iteration % eval_every == 0 or self.iteration == iterations):
                rec["perplexity"] = self.perplexity(heldout, heldout_sweeps)
            self.history.append(rec)
            if log is not None:
                log(rec)
            if checkpoint is not None and checkpoint(self):
                break
        return self

    # ------------------------------------------------------------- evaluation
    def log_likelihood(self):
        """Joint log p(w, z) of the whole corpus (collective)."""
        part = np.array([kern.doc_log_likelihood(self.doc_ptr, self.z, self.alpha),
                         self._row_sum(lambda rows: kern.word_log_likelihood(rows, self.beta),
                                       lambda words: self.nwk.word_log_likelihood(self.beta, words))])
        self.comm.allreduce(part)
        return float(part.sum() + kern.topic_log_normaliser(self.nk, self.beta, self.n_words))

    def optimize_hyperparameters(self, rounds=5):
        """Minka's fixed-point updates of alpha (asymmetric) and beta (collective)."""
        comm = self.comm
        for _ in range(rounds):
            num, den = kern.alpha_statistics(self.doc_ptr, self.z, self.alpha)
            buf = np.append(num, den)
            comm.allreduce(buf)
            if buf[-1] > 0:
                self.alpha = np.maximum(self.alpha * buf[:-1] / buf[-1], 1e-6)
        V = self.n_words
        for _ in range(rounds):
            num = np.array([self._row_sum(lambda rows: kern.beta_numerator(rows, self.beta),
                                          lambda words: self.nwk.beta_numerator(self.beta, words))])
            comm.allreduce(num)
            vb = V * self.beta
            den = V * sum(kern.digamma(float(n) + vb) - kern.digamma(vb) for n in self.nk)
            if den > 0 and num[0] > 0:
                self.beta = max(self.beta * float(num[0]) / den, 1e-6)

    def _row_sum(self, dense_fn, sparse_fn):
        """Sum over this rank's share of the count rows (each row on one
        rank) of ``dense_fn(rows)``, or of ``sparse_fn(word ids)`` when the
        rows are sparse; add it over the ranks."""
        if self.scheme is not None:
            return self.scheme.row_sum(dense_fn)
        w0, w1 = block_range(self.n_words, self.comm.size, self.comm.rank)
        return sparse_fn(np.arange(w0, w1)) if self.sparse_rows else dense_fn(self.nwk[w0:w1])

    def perplexity(self, heldout, sweeps=20):
        """Held-out perplexity by document completion (collective).

        ``heldout`` is this rank's held-out corpus; each document's alternate
        tokens are folded in with the counts fixed and the others scored.
        """
        doc_ptr, words = heldout.tokens()
        state = kern.seed_state(self.seed + 104729 * (self.iteration + 1), self.comm.rank)
        return completion_perplexity(doc_ptr, self.internal_ids[words], self._dense_counts(),
                                     self.nk,
                                     self.alpha, self.beta, state, self.comm, sweeps=sweeps,
                                     mh_steps=self.mh_steps)

    # ---------------------------------------------------------------- results
    def doc_topics(self):
        """Topic proportions of the local documents, float32 (D_local, K).

        Empty documents get the prior mean alpha / sum(alpha).
        """
        n_docs = self.doc_ptr.shape[0] - 1
        K = self.n_topics
        doc_of = np.repeat(np.arange(n_docs), np.diff(self.doc_ptr))
        ndk = np.bincount(doc_of * K + self.z, minlength=n_docs * K).reshape(n_docs, K)
        return proportions(ndk, self.alpha)

    def word_topic(self):
        """Word-topic counts (V, K) by input word id (a copy; collective in the
        model-parallel layout)."""
        return self._dense_counts(self.internal_ids)

    def topic_word(self):
        """Posterior mean topic-word distributions phi, float64 (K, V)."""
        return ((self.word_topic().T + self.beta)
                / (self.nk[:, None] + self.beta * self.n_words))

    def topic_model(self):
        """The trained topics with their counts fixed (a copy), for new documents."""
        return TopicModel(self.word_topic(), self.alpha, self.beta, self.comm, vocab=self.vocab)

    def top_words(self, n=10, vocab=None):
        """The ``n`` most probable words of every topic (words of ``vocab``, by
        default the training corpus's, else ids)."""
        return self.topic_model().top_words(n, vocab)

    def transform(self, corpus, *, sweeps=30, seed=None):
        """Topic proportions of new documents (this rank's), float32 (D, K).

        Folded in with the trained counts fixed, ``mh_steps`` proposal pairs
        per token; rank r draws from stream r of ``seed`` (default the
        model's).  See :meth:`hpcml.topics.model.TopicModel.transform`.
        """
        return self.topic_model().transform(corpus, sweeps=sweeps, mh_steps=self.mh_steps,
                                            seed=self.seed if seed is None else seed)

    def save(self, path, *, doc_ids=None, params=None):
        """Write the model file (collective): the counts, priors, history and
        the training documents' topic proportions; read it back with
        :meth:`hpcml.topics.model.TopicModel.load`.

        Parameters
        ----------
        path : str
        doc_ids : ndarray of int, optional
            Global numbers of this rank's training documents (default the
            contiguous range from the corpus's ``doc_offset``).
        params : dict, optional
            Provenance (default: the hyperparameters and iterations).
        """
        h = self.history
        own = np.array([[r["compute_s"], r["comm_s"], r["bytes"]] for r in h]).reshape(1, -1, 3)
        per_rank = self.comm.allgatherv(own)  # ranks x iterations x 3
        history = {"log_likelihood": _series(h, "log_likelihood"),
                   "perplexity": _series(h, "perplexity"),
                   "tokens_per_s": _series(h, "tokens_per_s"),
                   "compute_s": per_rank[:, :, 0].T, "comm_s": per_rank[:, :, 1].T,
                   "bytes": per_rank[:, :, 2].T.astype(np.int64)}
        if doc_ids is None:
            doc_ids = np.arange(self.doc_ptr.shape[0] - 1) + self.doc_offset
        if params is None:
            params = {"n_topics": self.n_topics, "sampler": self.sampler,
                      "mh_steps": self.mh_steps, "sync_every": self.sync_every,
                      "staleness": self.staleness, "exchange": self.exchange,
                      "optimize_every": self.optimize_every, "seed": self.seed,
                      "init": self.init, "layout": self.layout, "word_rows": self.word_rows,
                      "iterations": self.iteration}
        self.topic_model().save(path, history=history, doc_topics=self.doc_topics(),
                                doc_ids=doc_ids, params=params)

    # ------------------------------------------------------------ checkpoints
    def checkpoint_state(self):
        """What continues this chain: ``{"replicated": {...}, "sharded": {...}}``
        arrays (equal on every rank, and this rank's); see :meth:`resume`."""
        h = self.history
        own = np.array([[r["compute_s"], r["comm_s"], r["bytes"]] for r in h]).reshape(-1, 3)
        return {"replicated": {"alpha": self.alpha, "beta": np.array(self.beta),
                               "log_likelihood": _series(h, "log_likelihood"),
                               "perplexity": _series(h, "perplexity"),
                               "tokens_per_s": _series(h, "tokens_per_s")},
                "sharded": {"z": self.z, "rng": self.state, "timing": own}}

    def resume(self, corpus, comm, replicated, sharded, iteration):
        """Set up from a :meth:`checkpoint_state` saved after ``iteration`` sweeps, with
        the same corpus shards and rank count (collective); :meth:`fit` then
        continues exactly as the uninterrupted chain would."""
        self.alpha = replicated["alpha"]
        self.beta = float(replicated["beta"])
        self.setup(corpus, comm, z=sharded["z"], rng_state=sharded["rng"])
        self.iteration = iteration
        own = sharded["timing"]
        self.history = []
        for i in range(own.shape[0]):
            rec = {"iteration": i + 1, "compute_s": own[i, 0], "comm_s": own[i, 1],
                   "bytes": own[i, 2], "tokens_per_s": replicated["tokens_per_s"][i], "modes": []}
            for key in ("log_likelihood", "perplexity"):
                if not np.isnan(replicated[key][i]):
                    rec[key] = float(replicated[key][i])
            self.history.append(rec)
        return self


def _series(history, key):
    return np.array([r.get(key, np.nan) for r in history], dtype=np.float64)
