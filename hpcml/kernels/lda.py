"""Collapsed Gibbs samplers for LDA as Numba kernels.

Two training samplers share one state layout:

* :func:`mh_sweep` -- Metropolis-Hastings in the manner of LightLDA: each
  step alternates a *document proposal* (the topic of a random token of the
  same document, or a draw from alpha) and a *word proposal* (the topic of a
  random occurrence of the same word in the whole corpus, or a uniform
  topic).  Both proposals are drawn in O(1) without any table that must be
  rebuilt, so the cost per token does not grow with K.
* :func:`dense_sweep` -- the textbook O(K) collapsed Gibbs sampler, the
  reference the tests compare against.

Beside them: :mod:`hpcml.kernels.lda_gibbs` (exact Gibbs, vectorised, the
choice at small K) and :mod:`hpcml.kernels.lda_rows` (word-topic counts as
sparse hybrid rows for very large K, with the MH sweep on them).

Why MH rather than SparseLDA buckets: SparseLDA's per-token cost follows the
number of topics present in the document and the word, which grows with K;
the MH proposals cost a few random loads whatever K is, so the sampler keeps
its speed at K = 1000 (bench/lda.py measures both K side by side with
tomotopy).  The price is slower mixing per sweep than exact Gibbs, most
visible in the first sweeps at large K (more ``mh_steps`` buys it back).

Memory: 10 bytes per token on one rank (uint16 word id and topic when V and
K allow, the topic again in word order, an int32 word-order position) and 2
bytes per word-topic cell (uint16 counts while every word occurs fewer than
65,536 times, else 4).  On several ranks each rank also holds the topics of
the other ranks' tokens in word order (2 bytes per token of the corpus).

Several ranks: ``zw`` covers the *whole* corpus in one global word order
(for each word, rank 0's tokens, then rank 1's, ...) and ``nwk`` agrees
with it exactly.  Either the ranks of a node share both and take turns on
blocks of words (:func:`word_blocks`; ``mh_sweep(ranges=...)`` resamples
one block of each document), or every rank keeps its own copy, its own
changes entering at once and the other ranks' when they arrive
(:func:`own_changes`, :func:`apply_changes`, :func:`apply_rank_topics`).
So the word proposal's density is the counts themselves, and a sweep on
several ranks runs the very kernel of one rank.

State layout (compact integer types, chosen by the caller):

``doc_ptr``  int64 (D+1,)   token offsets of the documents
``words``    uint16/int32 (N,)  word id per token
``z``        uint16/int32 (N,)  topic per token
``nwk``      uint16/int32 (V, K)  word-topic counts (this rank's view)
``nk``       int64 (K,)     topic totals (this rank's view)
``wptr``     int64 (V+1,)   offsets of each word's tokens in word order
``tpos``     int32/int64 (N,)  position of each token in word order
``zw``       like z (N_all,)  the topics of all tokens in word order: the
                            word proposal reads one entry instead of chasing
                            an index into ``z`` (one cache miss instead of two)

The random number generator is a xorshift64* stream whose 64-bit state is
passed in a ``uint64`` array of length 1 and written back, so a sweep is a
pure function of its inputs and runs are reproducible.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from hpcml.kernels import JIT

_MULT = np.uint64(0x2545F4914F6CDD1D)
_S12 = np.uint64(12)
_S25 = np.uint64(25)
_S27 = np.uint64(27)
_S11 = np.uint64(11)
_S32 = np.uint64(32)
_INV53 = 1.0 / 9007199254740992.0
#: Tokens ahead whose count rows are prefetched, and the largest K whose
#: whole word-topic row (at most 8 cache lines of int32) is prefetched; for
#: larger K only the line of the token's current topic and the start of its
#: word's topic list are.
_AHEAD = 4
_ROW_K = 128


@njit(inline="always")
def _next(x):
    """Advance a xorshift64* state; return (new state, 64-bit output)."""
    x ^= x >> _S12
    x ^= x << _S25
    x ^= x >> _S27
    return x, x * _MULT


@njit(inline="always")
def _uniform(x):
    """Return (new state, float in [0, 1))."""
    x, r = _next(x)
    return x, np.float64(r >> _S11) * _INV53


@njit(inline="always")
def _randint(x, n):
    """Return (new state, integer in [0, n)) by Lemire's multiply-shift."""
    x, r = _next(x)
    return x, np.int64(((r >> _S32) * np.uint64(n)) >> _S32)


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to load the cache line holding ``arr[idx]`` (1-D, no effect on results)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]],
                                       wraparound=False, boundscheck=False)
        i32 = ir.IntType(32)
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        # read access, high temporal locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return sig, codegen


@njit(inline="always")
def _draw_ahead(x, pre, slot, n, zw, wbeg, nw, kbeta):
    """Draw the ``n`` uniforms of a later token's word draws into
    ``pre[slot]`` and prefetch the entries of ``zw`` they will pick among the
    word's ``nw`` tokens at ``wbeg`` (for the word proposal's uniform scaling)."""
    for st in range(n):
        x, u = _uniform(x)
        pre[slot, st] = u
        r = u * (nw + kbeta)
        if r < nw:
            _prefetch(zw, wbeg + np.int64(r))
    return x


@njit(inline="always")
def _alias_draw(v, prob, alias, K):
    """Draw from a Walker alias table given ``v`` uniform on [0, K)."""
    j = min(np.int64(v), K - 1)
    return j if v - j < prob[j] else np.int64(alias[j])


@njit(inline="always")
def _doc_draw(r, L, z, t0, k_over_asum, prob, alias, K):
    """Draw from the document proposal ``q(k) ~ n_dk + alpha_k`` given ``r``
    uniform on [0, L + sum(alpha)): the topic of one of the document's ``L``
    tokens (``z[t0:t0 + L]``), or past them a draw from alpha's alias table."""
    tok = np.int64(z[t0 + min(np.int64(r), max(L - 1, 0))])
    pri = _alias_draw(max(r - L, 0.0) * k_over_asum, prob, alias, K)
    return tok if r < L else pri


@njit(inline="always")
def _word_draw(r, nw, zw, wbeg, inv_beta, K):
    """Draw from the word proposal ``q(k) ~ n_wk + beta`` given ``r`` uniform
    on [0, nw + K·beta): the topic of one of the word's ``nw`` occurrences
    (``zw[wbeg:wbeg + nw]``), or past them a topic uniformly (the beta part)."""
    # Both candidates are computed and one selected: a branch here would
    # be mispredicted often, which costs more than the extra load.
    occ = np.int64(zw[wbeg + min(np.int64(r), max(nw - 1, 0))])
    uni = min(np.int64(max(r - nw, 0.0) * inv_beta), K - 1)
    return occ if r < nw else uni


@njit(inline="always")
def _accept(x, num, den, s, ps, t, pt):
    """Metropolis-Hastings test of ratio num/den: move to (t, pt) or stay at (s, ps).

    Always draws the uniform and selects without a branch.  The outcome is
    close to a coin flip, so a branch would be mispredicted about half the
    time; skipping the draw when num >= den (or the whole test when t == s,
    where the ratio is 1) cost a third of the sweep time in mispredictions.
    """
    x, u = _uniform(x)
    acc = u * den < num
    return x, t if acc else s, pt if acc else ps


def seed_state(seed, stream=0):
    """Return a generator state for ``seed`` and a stream id (e.g. the rank).

    SplitMix64 mixing makes nearby seeds and streams independent.
    """
    mask = (1 << 64) - 1
    v = (int(seed) * 0x9E3779B97F4A7C15 + (int(stream) + 1) * 0xBF58476D1CE4E5B9) & mask
    for _ in range(2):
        v = (v ^ (v >> 30)) * 0xBF58476D1CE4E5B9 & mask
        v = (v ^ (v >> 27)) * 0x94D049BB133111EB & mask
        v ^= v >> 31
    return np.array([v or 0x9E3779B97F4A7C15], dtype=np.uint64)


def alias_table(weights):
    """Walker alias table for a positive weight vector (Vose's method).

    Returns ``(prob, alias)``: draw j uniformly, keep j with probability
    ``prob[j]``, else take ``alias[j]``.
    """
    w = np.asarray(weights, dtype=np.float64)
    n = w.shape[0]
    p = w * (n / w.sum())
    prob = np.ones(n)
    alias = np.arange(n, dtype=np.int32)
    small = [i for i in range(n) if p[i] < 1.0]
    large = [i for i in range(n) if p[i] >= 1.0]
    while small and large:
        s = small.pop()
        g = large[-1]
        prob[s] = p[s]
        alias[s] = g
        p[g] -= 1.0 - p[s]
        if p[g] < 1.0:
            large.pop()
            small.append(g)
    return prob, alias


@njit(inline="always")
def _cursor_next(d, i, lo, hi, d1):
    """The token after token ``i`` of document ``d`` in a sweep that samples
    ``lo[d]:hi[d]`` of each document up to ``d1`` (``d == d1`` past the end)."""
    i += 1
    while d < d1 and i >= hi[d]:
        d += 1
        if d < d1:
            i = lo[d]
    return d, i


@njit(**JIT)
def _mh_kernel(doc_ptr, lo, hi, words, z, nwk, nk, wptr, tpos, zw,
               alpha, a_prob, a_alias, alpha_sum, beta, vbeta, mh_steps,
               d0, d1, ndk, state):
    K = nk.shape[0]
    kbeta = K * beta
    inv_beta = 1.0 / beta
    k_over_asum = K / alpha_sum
    flat = nwk.reshape(-1)
    x = state[0]
    # The loads of a token's proposals depend on each other, so the CPU
    # cannot overlap their cache misses.  The uniforms of each token's word
    # proposals are therefore drawn _AHEAD tokens early, which tells where in
    # zw they will read; those lines (and the token's count row) are
    # prefetched while earlier tokens are sampled.  A second cursor (da, ia)
    # walks the sampled tokens _AHEAD places ahead; the c-th sampled token's
    # uniforms sit in row c % slots of pre.
    slots = _AHEAD + 1
    pre = np.empty((slots, mh_steps))
    da, ia = _cursor_next(d0, lo[d0] - 1, lo, hi, d1) if d0 < d1 else (d1, 0)
    ca = 0
    while da < d1 and ca < _AHEAD:
        for st in range(mh_steps):
            x, u = _uniform(x)
            pre[ca % slots, st] = u
        da, ia = _cursor_next(da, ia, lo, hi, d1)
        ca += 1
    c = 0
    for d in range(d0, d1):
        if hi[d] == lo[d]:
            continue
        t0 = doc_ptr[d]
        t1 = doc_ptr[d + 1]
        L = t1 - t0
        for i in range(t0, t1):
            ndk[z[i]] += 1
        for i in range(lo[d], hi[d]):
            if da < d1:
                wa = np.int64(words[ia])
                ba = wptr[wa]
                x = _draw_ahead(x, pre, ca % slots, mh_steps, zw, ba, wptr[wa + 1] - ba, kbeta)
                _prefetch(zw, tpos[ia])
                if K <= _ROW_K:
                    for off in range(0, K, 16):
                        _prefetch(flat, wa * K + off)
                else:
                    _prefetch(flat, wa * K + np.int64(z[ia]))
                da, ia = _cursor_next(da, ia, lo, hi, d1)
                ca += 1
            w = words[i]
            s0 = np.int64(z[i])
            ndk[s0] -= 1
            nwk[w, s0] -= 1
            nk[s0] -= 1
            s = s0
            ps = (ndk[s] + alpha[s]) * (nwk[w, s] + beta) / (nk[s] + vbeta)
            wbeg = wptr[w]
            nw = wptr[w + 1] - wbeg
            pw = tpos[i]
            slot = c % slots
            c += 1
            # Both proposals are drawn from the current state (this token's
            # entries in z and zw follow s), so the Hastings ratio uses the
            # counts without this token: q_s(t)/q_t(s) = (n_t + a)/(n_s + a).
            for step in range(mh_steps):
                # Document proposal q(k) ~ n_dk (with this token) + alpha_k.
                # One uniform picks the mixture component and the index.
                x, u = _uniform(x)
                r = u * (L + alpha_sum)
                t = _doc_draw(r, L, z, t0, k_over_asum, a_prob, a_alias, K)
                pt = (ndk[t] + alpha[t]) * (nwk[w, t] + beta) / (nk[t] + vbeta)
                x, s, ps = _accept(x, pt * (ndk[s] + alpha[s]), ps * (ndk[t] + alpha[t]),
                                   s, ps, t, pt)
                z[i] = s
                zw[pw] = s
                # Word proposal q(k) ~ n_wk (with this token) + beta.
                t = _word_draw(pre[slot, step] * (nw + kbeta), nw, zw, wbeg, inv_beta, K)
                pt = (ndk[t] + alpha[t]) * (nwk[w, t] + beta) / (nk[t] + vbeta)
                x, s, ps = _accept(x, pt * (nwk[w, s] + beta), ps * (nwk[w, t] + beta),
                                   s, ps, t, pt)
                z[i] = s
                zw[pw] = s
            ndk[s] += 1
            nwk[w, s] += 1
            nk[s] += 1
        for i in range(t0, t1):
            ndk[z[i]] = 0
    state[0] = x


@njit(**JIT)
def _init_kernel(doc_ptr, words, z, nwk, nk, wptr, tpos, zw, alpha, a_prob, a_alias,
                 alpha_sum, beta, vbeta, mh_steps, smooth, n_after, ndk, state):
    K = nk.shape[0]
    kbeta = K * beta
    inv_beta = 1.0 / beta
    k_over_asum = K / alpha_sum
    n_left = n_after + words.shape[0]
    flat = nwk.reshape(-1)
    x = state[0]
    # As in _mh_kernel, the uniforms of each token's word draws are drawn
    # _AHEAD tokens early and the lines they will read prefetched: how many
    # of a word's tokens are placed before a token is known in advance.
    n_pre = 1 + mh_steps
    slots = _AHEAD + 1
    pre = np.empty((slots, n_pre))
    N = words.shape[0]
    for j in range(min(_AHEAD, N)):
        for st in range(n_pre):
            x, u = _uniform(x)
            pre[j % slots, st] = u
    for d in range(doc_ptr.shape[0] - 1):
        t0 = doc_ptr[d]
        t1 = doc_ptr[d + 1]
        for i in range(t0, t1):
            ia = i + _AHEAD
            if ia < N:
                wa = np.int64(words[ia])
                ba = wptr[wa]
                x = _draw_ahead(x, pre, ia % slots, n_pre, zw, ba, tpos[ia] - ba, kbeta)
                if K <= _ROW_K:
                    for off in range(0, K, 16):
                        _prefetch(flat, wa * K + off)
            w = words[i]
            # Tokens of w sit in word order in corpus order (earlier ranks'
            # first), so the ones already placed are exactly zw[wbeg:pw];
            # likewise z[t0:i].
            wbeg = wptr[w]
            pw = tpos[i]
            nw = pw - wbeg
            L = i - t0
            # Tokens not yet placed count as spread evenly over the topics.
            bd = smooth * (t1 - i) / K
            bw = smooth * (wptr[w + 1] - pw) / K
            bk = smooth * (n_left - i) / K
            s = _word_draw(pre[i % slots, 0] * (nw + kbeta), nw, zw, wbeg, inv_beta, K)
            ps = (ndk[s] + bd + alpha[s]) * (nwk[w, s] + bw + beta) / (nk[s] + bk + vbeta)
            for step in range(mh_steps):
                x, u = _uniform(x)
                r = u * (L + alpha_sum)
                t = _doc_draw(r, L, z, t0, k_over_asum, a_prob, a_alias, K)
                pt = (ndk[t] + bd + alpha[t]) * (nwk[w, t] + bw + beta) / (nk[t] + bk + vbeta)
                x, s, ps = _accept(x, pt * (ndk[s] + alpha[s]), ps * (ndk[t] + alpha[t]),
                                   s, ps, t, pt)
                t = _word_draw(pre[i % slots, 1 + step] * (nw + kbeta), nw, zw, wbeg, inv_beta,
                               K)
                pt = (ndk[t] + bd + alpha[t]) * (nwk[w, t] + bw + beta) / (nk[t] + bk + vbeta)
                x, s, ps = _accept(x, pt * (nwk[w, s] + beta), ps * (nwk[w, t] + beta),
                                   s, ps, t, pt)
            z[i] = s
            zw[pw] = s
            ndk[s] += 1
            nwk[w, s] += 1
            nk[s] += 1
        for i in range(t0, t1):
            ndk[z[i]] = 0
    state[0] = x


def progressive_init(doc_ptr, words, nwk, nk, alpha, beta, state, *, wptr, tpos, zw=None,
                     n_after=0, mh_steps=1, smooth=0.1, scratch=None):
    """Draw initial topics token by token from the conditional given the
    tokens placed before (sequential, "online" initialisation).

    Each token starts from a word proposal over the earlier occurrences of
    its word and takes ``mh_steps`` (document, word) Metropolis-Hastings
    pairs against the counts of the tokens placed so far, so the cost per
    token does not grow with K.  The tokens not yet placed count as spread
    evenly over the topics, weighted by ``smooth`` (1 is their expected count
    under a uniformly random start): without that weight the first documents
    seed topics that later tokens pile into, which can merge true topics; with
    a full weight the start is nearly as flat as a random one.  Any start is a
    valid start: the stationary distribution of the later sweeps is unchanged.

    Parameters
    ----------
    nwk, nk : arrays
        Counts the conditional uses; these tokens are added in place.  Zero
        on entry, or the counts of the tokens that earlier ranks placed.
    wptr, tpos : arrays
        Word order (see :func:`word_index`): on several ranks the global one,
        in which every word's tokens of earlier ranks come first.
    zw : ndarray, optional
        Topics in that word order, with the earlier ranks' tokens filled in;
        these tokens' entries are written.  Allocated when not given (one rank).
    n_after : int
        Tokens that later ranks will place (they count as not yet placed).

    Returns ``(z, zw)``: the topics in corpus and in word order.
    """
    K = nk.shape[0]
    z = np.zeros(words.shape[0], topic_dtype(K))
    _check_state(doc_ptr, words, z, nwk, nk, alpha, state, 0, doc_ptr.shape[0] - 1)
    zw = np.zeros_like(z) if zw is None else zw
    _check_word_order(nwk, words, z, wptr, tpos, zw)
    if int(nk.sum()) + words.shape[0] + int(n_after) != zw.shape[0]:
        raise ValueError("the counts must hold exactly the earlier ranks' tokens "
                         "(zero on one rank)")
    a_prob, a_alias = alias_table(alpha)
    ndk = np.zeros(K, np.int32) if scratch is None else scratch
    _init_kernel(doc_ptr, words, z, nwk, nk, wptr, tpos, zw, alpha, a_prob, a_alias,
                 float(alpha.sum()), float(beta), float(beta) * nwk.shape[0], int(mh_steps),
                 float(smooth), int(n_after), ndk, state)
    return z, zw


def topic_dtype(n_topics):
    """Smallest type that holds topic numbers below ``n_topics``."""
    return np.uint16 if n_topics <= 2**16 else np.int32


@njit(**JIT)
def _dense_kernel(doc_ptr, words, z, nwk, nk, alpha, beta, vbeta, d0, d1, ndk, cdf, state):
    K = nk.shape[0]
    x = state[0]
    for d in range(d0, d1):
        t0 = doc_ptr[d]
        t1 = doc_ptr[d + 1]
        for i in range(t0, t1):
            ndk[z[i]] += 1
        for i in range(t0, t1):
            w = words[i]
            s = z[i]
            ndk[s] -= 1
            nwk[w, s] -= 1
            nk[s] -= 1
            acc = 0.0
            for k in range(K):
                acc += (ndk[k] + alpha[k]) * (nwk[w, k] + beta) / (nk[k] + vbeta)
                cdf[k] = acc
            x, u = _uniform(x)
            u *= acc
            t = 0
            while t < K - 1 and cdf[t] <= u:
                t += 1
            z[i] = t
            ndk[t] += 1
            nwk[w, t] += 1
            nk[t] += 1
        for i in range(t0, t1):
            ndk[z[i]] = 0
    state[0] = x


def _check_state(doc_ptr, words, z, nwk, nk, alpha, state, d0, d1):
    if doc_ptr.dtype != np.int64 or doc_ptr.ndim != 1:
        raise TypeError("doc_ptr must be a 1-D int64 array")
    if words.shape != z.shape or words.ndim != 1:
        raise ValueError("words and z must be 1-D arrays of one length")
    if words.dtype.kind not in "iu" or z.dtype.kind not in "iu":
        raise TypeError("words and z must be integer arrays")
    if int(doc_ptr[-1]) != words.shape[0]:
        raise ValueError("doc_ptr[-1] must equal the number of tokens")
    if nwk.ndim != 2 or nwk.dtype.kind not in "iu" or not nwk.flags.c_contiguous:
        raise TypeError("nwk must be a C-contiguous 2-D integer array")
    if nk.dtype != np.int64 or nk.shape != (nwk.shape[1],):
        raise TypeError("nk must be int64 of length K")
    if alpha.dtype != np.float64 or alpha.shape != nk.shape:
        raise TypeError("alpha must be float64 of length K")
    if state.dtype != np.uint64 or state.shape != (1,):
        raise TypeError("state must be a uint64 array of length 1")
    if not 0 <= d0 <= d1 <= doc_ptr.shape[0] - 1:
        raise ValueError("document range out of bounds")


def _check_word_order(nwk, words, z, wptr, tpos, zw):
    if wptr.shape[0] != nwk.shape[0] + 1 or tpos.shape[0] != words.shape[0]:
        raise ValueError("wptr/tpos do not match the corpus")
    if zw.dtype != z.dtype or zw.shape[0] != int(wptr[-1]):
        raise ValueError("zw must hold one topic per token of the word order")


def mh_sweep(doc_ptr, words, z, nwk, nk, alpha, beta, state, *, wptr, tpos, zw,
             mh_steps=2, d0=0, d1=None, scratch=None, ranges=None, n_words=None):
    """Resample the topics of documents ``d0:d1`` by Metropolis-Hastings.

    Parameters
    ----------
    doc_ptr, words, z, nwk, nk : arrays
        Corpus and counts as described in the module docstring; ``z``,
        ``nwk`` and ``nk`` are updated in place.
    alpha : ndarray of float64, shape (K,)
        Document-topic prior (asymmetric allowed).
    beta : float
        Symmetric topic-word prior.
    state : ndarray of uint64, shape (1,)
        Generator state, advanced in place.
    wptr, tpos, zw : arrays
        Word order of the corpus (see :func:`word_index`), these tokens'
        positions in it, and the topics in that order (``zw[tpos] == z``),
        updated in place.  On several ranks, the whole corpus's.
    mh_steps : int
        Number of (document, word) proposal pairs per token.
    d0, d1 : int
        Document range to sweep (default all).
    scratch : ndarray of int32, shape (K,), optional
        Zeroed work array reused across calls.
    ranges : (lo, hi) of int64 arrays of shape (D,), optional
        Resample only tokens ``lo[d]:hi[d]`` of each document ``d`` (the
        proposals still see the whole document); default all of them.
    n_words : int, optional
        V, when ``nwk``, ``wptr`` and ``zw`` hold one block of the words only
        (ids in ``words`` then count from the block's first word); default
        ``nwk.shape[0]``.
    """
    d1 = doc_ptr.shape[0] - 1 if d1 is None else d1
    n_words = nwk.shape[0] if n_words is None else int(n_words)
    _check_state(doc_ptr, words, z, nwk, nk, alpha, state, d0, d1)
    _check_word_order(nwk, words, z, wptr, tpos, zw)
    if ranges is None:
        lo, hi = doc_ptr[:-1], doc_ptr[1:]
    else:
        lo, hi = ranges
        n_docs = doc_ptr.shape[0] - 1
        if (lo.dtype != np.int64 or hi.dtype != np.int64 or lo.shape != (n_docs,)
                or hi.shape != (n_docs,)):
            raise TypeError("ranges must be two int64 arrays with one entry per document")
        if np.any(lo < doc_ptr[:-1]) or np.any(hi > doc_ptr[1:]) or np.any(lo > hi):
            raise ValueError("ranges must lie inside their documents")
    K = nk.shape[0]
    a_prob, a_alias = alias_table(alpha)
    ndk = np.zeros(K, np.int32) if scratch is None else scratch
    _mh_kernel(doc_ptr, lo, hi, words, z, nwk, nk, wptr, tpos, zw, alpha, a_prob, a_alias,
               float(alpha.sum()), float(beta), float(beta) * n_words, int(mh_steps),
               int(d0), int(d1), ndk, state)


def dense_sweep(doc_ptr, words, z, nwk, nk, alpha, beta, state, *, d0=0, d1=None,
                scratch=None):
    """Resample documents ``d0:d1`` by the exact O(K) collapsed Gibbs rule.

    Same arguments as :func:`mh_sweep` (without the word order).
    """
    d1 = doc_ptr.shape[0] - 1 if d1 is None else d1
    _check_state(doc_ptr, words, z, nwk, nk, alpha, state, d0, d1)
    K = nk.shape[0]
    ndk = np.zeros(K, np.int32) if scratch is None else scratch
    _dense_kernel(doc_ptr, words, z, nwk, nk, alpha, float(beta), float(beta) * nwk.shape[0],
                  int(d0), int(d1), ndk, np.empty(K), state)


@njit(**JIT)
def _word_index_kernel(words, V, wptr, tpos):
    for i in range(words.shape[0]):
        wptr[words[i] + 1] += 1
    for v in range(V):
        wptr[v + 1] += wptr[v]
    fill = wptr[:-1].copy()
    for i in range(words.shape[0]):
        w = words[i]
        tpos[i] = fill[w]
        fill[w] += 1


def word_index(words, V):
    """Return ``(wptr, tpos)``: word-order offsets and each token's position.

    Tokens of word ``w`` occupy positions ``wptr[w]:wptr[w+1]`` in word order,
    in corpus order; token ``i`` sits at ``tpos[i]``.
    """
    if words.ndim != 1 or words.dtype.kind not in "iu":
        raise TypeError("words must be a 1-D integer array")
    wptr = np.zeros(V + 1, np.int64)
    tpos = np.empty(words.shape[0], np.int32 if words.shape[0] < 2**31 else np.int64)
    _word_index_kernel(words, V, wptr, tpos)
    return wptr, tpos


def word_order(z, tpos):
    """Return the topics ``z`` arranged in word order (``zw[tpos] = z``)."""
    zw = np.empty_like(z)
    zw[tpos] = z
    return zw


@njit(**JIT)
def _count_kernel(doc_ptr, words, z, nwk, nk):
    for i in range(words.shape[0]):
        nwk[words[i], z[i]] += 1
        nk[z[i]] += 1


def count_topics(doc_ptr, words, z, nwk, nk):
    """Add the word-topic counts and topic totals of an assignment ``z``."""
    if nk.dtype != np.int64 or nwk.shape[1] != nk.shape[0]:
        raise TypeError("nk must be int64 of length K")
    _count_kernel(doc_ptr, words, z, nwk, nk)


@njit(**JIT)
def _doc_ll_kernel(doc_ptr, z, alpha, alpha_sum, ndk):
    total = 0.0
    lg_asum = math.lgamma(alpha_sum)
    for d in range(doc_ptr.shape[0] - 1):
        t0 = doc_ptr[d]
        t1 = doc_ptr[d + 1]
        if t1 == t0:
            continue
        for i in range(t0, t1):
            ndk[z[i]] += 1
        total += lg_asum - math.lgamma(t1 - t0 + alpha_sum)
        for i in range(t0, t1):
            k = z[i]
            if ndk[k] > 0:
                total += math.lgamma(ndk[k] + alpha[k]) - math.lgamma(alpha[k])
                ndk[k] = 0
    return total


def doc_log_likelihood(doc_ptr, z, alpha):
    """Return sum over documents of log p(z_d | alpha) (Dirichlet-multinomial)."""
    if alpha.dtype != np.float64:
        raise TypeError("alpha must be float64")
    return float(_doc_ll_kernel(doc_ptr, z, alpha, float(alpha.sum()),
                                np.zeros(alpha.shape[0], np.int64)))


@njit(**JIT)
def _word_ll_kernel(nwk, beta):
    total = 0.0
    lg_b = math.lgamma(beta)
    for w in range(nwk.shape[0]):
        for k in range(nwk.shape[1]):
            c = nwk[w, k]
            if c > 0:
                total += math.lgamma(c + beta) - lg_b
    return total


def word_log_likelihood(nwk_rows, beta):
    """Return sum over the given word rows of log Gamma(n_wk+beta)-log Gamma(beta)."""
    return float(_word_ll_kernel(nwk_rows, float(beta)))


def topic_log_normaliser(nk, beta, V):
    """Return sum_k [log Gamma(V beta) - log Gamma(n_k + V beta)]."""
    vb = float(beta) * V
    return float(sum(math.lgamma(vb) - math.lgamma(float(c) + vb) for c in nk))


@njit(**JIT)
def _foldin_kernel(doc_ptr, words, z, nwk, nk, alpha, a_prob, a_alias, alpha_sum,
                   beta, vbeta, wrow_ptr, wrow_topic, wrow_cum, mh_steps, ndk_all,
                   sweeps, state):
    K = nk.shape[0]
    kbeta = K * beta
    inv_beta = 1.0 / beta
    k_over_asum = K / alpha_sum
    x = state[0]
    for d in range(doc_ptr.shape[0] - 1):
        t0 = doc_ptr[d]
        t1 = doc_ptr[d + 1]
        L = t1 - t0
        ndk = ndk_all[d]
        for i in range(t0, t1):
            x, k = _randint(x, K)
            z[i] = k
            ndk[k] += 1
        for _ in range(sweeps):
            for i in range(t0, t1):
                w = words[i]
                s0 = np.int64(z[i])
                ndk[s0] -= 1
                s = s0
                ps = (ndk[s] + alpha[s]) * (nwk[w, s] + beta) / (nk[s] + vbeta)
                rb = wrow_ptr[w]
                re = wrow_ptr[w + 1]
                nw = wrow_cum[re - 1] if re > rb else 0
                for _s in range(mh_steps):
                    x, u = _uniform(x)
                    t = _doc_draw(u * (L + alpha_sum), L, z, t0, k_over_asum, a_prob, a_alias, K)
                    pt = (ndk[t] + alpha[t]) * (nwk[w, t] + beta) / (nk[t] + vbeta)
                    x, s, ps = _accept(x, pt * (ndk[s] + alpha[s]), ps * (ndk[t] + alpha[t]),
                                       s, ps, t, pt)
                    z[i] = s
                    # Word proposal from the fixed model: q(k) ~ n_wk + beta,
                    # the count part by binary search in the word's nonzeros.
                    x, u = _uniform(x)
                    r = u * (nw + kbeta)
                    if r < nw:
                        lo = rb
                        hi = re - 1
                        while lo < hi:
                            mid = (lo + hi) // 2
                            if wrow_cum[mid] > r:
                                hi = mid
                            else:
                                lo = mid + 1
                        t = np.int64(wrow_topic[lo])
                    else:
                        t = min(np.int64((r - nw) * inv_beta), K - 1)
                    pt = (ndk[t] + alpha[t]) * (nwk[w, t] + beta) / (nk[t] + vbeta)
                    x, s, ps = _accept(x, pt * (nwk[w, s] + beta), ps * (nwk[w, t] + beta),
                                       s, ps, t, pt)
                z[i] = s
                ndk[s] += 1
    state[0] = x


@njit(**JIT)
def _sparse_rows_kernel(nwk, ptr, topic, cum):
    pos = 0
    for w in range(nwk.shape[0]):
        acc = 0
        for k in range(nwk.shape[1]):
            c = nwk[w, k]
            if c > 0:
                acc += c
                topic[pos] = k
                cum[pos] = acc
                pos += 1
        ptr[w + 1] = pos


def sparse_rows(nwk):
    """CSR of the nonzero word-topic counts with running sums per word."""
    nnz = int(np.count_nonzero(nwk))
    ptr = np.zeros(nwk.shape[0] + 1, np.int64)
    topic = np.empty(nnz, np.int32)
    cum = np.empty(nnz, np.float64)
    _sparse_rows_kernel(nwk, ptr, topic, cum)
    return ptr, topic, cum


def fold_in(doc_ptr, words, nwk, nk, alpha, beta, state, *, sweeps=20, mh_steps=2,
            rows=None):
    """Infer topic counts of new documents with the model counts held fixed.

    Parameters
    ----------
    doc_ptr, words : arrays
        The new documents (word ids must be < V).
    nwk, nk : arrays
        Trained word-topic counts and totals; not modified.
    alpha, beta, state :
        Priors and generator state (advanced in place).
    sweeps : int
        Gibbs sweeps over each document.
    rows : tuple, optional
        Precomputed :func:`sparse_rows` of ``nwk`` (reused across calls).

    Returns
    -------
    ndk : ndarray of int32, shape (D, K)
        Document-topic counts of the final sample.
    """
    K = nk.shape[0]
    _check_state(doc_ptr, words, np.zeros_like(words), nwk, nk, alpha, state,
                 0, doc_ptr.shape[0] - 1)
    ptr, topic, cum = sparse_rows(nwk) if rows is None else rows
    z = np.empty(words.shape[0], np.int32)
    ndk = np.zeros((doc_ptr.shape[0] - 1, K), np.int32)
    a_prob, a_alias = alias_table(alpha)
    _foldin_kernel(doc_ptr, words, z, nwk, nk, alpha, a_prob, a_alias,
                   float(alpha.sum()), float(beta), float(beta) * nwk.shape[0],
                   ptr, topic, cum, int(mh_steps), ndk, int(sweeps), state)
    return ndk


@njit(**JIT)
def _blocks_kernel(order, freq, load, block):
    for w in order:
        b = np.argmin(load)
        block[w] = b
        load[b] += freq[w]


def word_blocks(word_freq, n_blocks):
    """Assign each word to one of ``n_blocks`` blocks of about equal token
    count: words in decreasing frequency, each to the lightest block so far.

    So every block gets a like share of frequent words (whose count rows
    stay in cache) and of rare ones (which miss), and blocks cost about the
    same to sample whatever order the vocabulary is numbered in.  Returns an
    int32 array of block ids, one per word.
    """
    freq = np.asarray(word_freq, np.int64)
    block = np.zeros(freq.shape[0], np.int32)
    if n_blocks > 1:
        _blocks_kernel(np.argsort(-freq, kind="stable"), freq, np.zeros(n_blocks, np.int64),
                       block)
    return block


def global_word_order(rank_freq):
    """The word order of a corpus spread over ranks.

    Parameters
    ----------
    rank_freq : ndarray of int, shape (P, V)
        How often each word occurs on each rank.

    Returns
    -------
    wptr : ndarray of int64, shape (V+1,)
        Offsets of each word's tokens (all ranks) in the global word order.
    starts : ndarray of int64, shape (P+1, V)
        ``starts[r, w]``: where rank r's tokens of word w begin; they end at
        ``starts[r+1, w]`` (rank order inside each word).
    """
    freq = np.asarray(rank_freq, np.int64)
    P, V = freq.shape
    wptr = np.zeros(V + 1, np.int64)
    np.cumsum(freq.sum(axis=0), out=wptr[1:])
    starts = np.empty((P + 1, V), np.int64)
    starts[0] = wptr[:-1]
    np.cumsum(freq, axis=0, out=starts[1:])
    starts[1:] += wptr[:-1]
    return wptr, starts


def global_positions(words, tpos, local_wptr, start):
    """Positions of a rank's tokens in the global word order, given their
    positions ``tpos`` in the rank's own word order and ``start`` = the
    rank's row of :func:`global_word_order`'s ``starts``."""
    w = words.astype(np.int64)
    pos = start[w] + (tpos - local_wptr[w])
    return pos.astype(np.int32 if int(start[-1]) + 1 < 2**31 else np.int64)


#: A changed token travels as one int64: (global position << 24) | new topic.
_TOPIC_BITS = 24
MAX_TOPICS = 1 << _TOPIC_BITS
MAX_POSITIONS = 1 << (63 - _TOPIC_BITS)


@njit(**JIT)
def _own_changes_kernel(zw, lo, hi, sent, out):
    q = 0
    m = 0
    for w in range(lo.shape[0]):
        for p in range(lo[w], hi[w]):
            t = zw[p]
            # Written every time, kept when changed: no branch to mispredict.
            out[m] = (np.int64(p) << _TOPIC_BITS) | np.int64(t)
            m += t != sent[q]
            sent[q] = t
            q += 1
    return m


def own_changes(zw, starts, rank, sent):
    """Rank ``rank``'s tokens whose topic in ``zw`` differs from ``sent`` (its
    topics as last sent, in the order of :func:`rank_topics`), packed as
    ``(global position << 24) | topic`` in int64 words, in increasing
    position.  ``sent`` is brought up to date in place."""
    if sent.shape[0] != int((starts[rank + 1] - starts[rank]).sum()):
        raise ValueError("sent does not match the rank's tokens")
    out = np.empty(sent.shape[0], np.int64)
    return out[:_own_changes_kernel(zw, starts[rank], starts[rank + 1], sent, out)]


@njit(**JIT)
def _apply_changes_kernel(packed, wptr, zw, nwk, nk):
    mask = (np.int64(1) << _TOPIC_BITS) - 1
    w = 0
    for j in range(packed.shape[0]):
        p = packed[j] >> _TOPIC_BITS
        t = packed[j] & mask
        # Positions increase, so the word only moves forward.
        if p < wptr[w]:
            w = np.searchsorted(wptr, p, side="right") - 1
        while wptr[w + 1] <= p:
            w += 1
        old = np.int64(zw[p])
        nwk[w, old] -= 1
        nk[old] -= 1
        nwk[w, t] += 1
        nk[t] += 1
        zw[p] = t


def apply_changes(packed, wptr, zw, nwk, nk):
    """Move another rank's changed tokens (as :func:`own_changes` packs them)
    to their new topics in ``zw`` and in the counts."""
    _apply_changes_kernel(packed, wptr, zw, nwk, nk)


@njit(**JIT)
def _own_topics_kernel(zw, lo, hi, out):
    q = 0
    for w in range(lo.shape[0]):
        for p in range(lo[w], hi[w]):
            out[q] = zw[p]
            q += 1


def rank_topics(zw, starts, rank):
    """The topics of rank ``rank``'s tokens, in the global word order
    (contiguous; its ranges of ``zw`` one after another)."""
    out = np.empty(int((starts[rank + 1] - starts[rank]).sum()), zw.dtype)
    _own_topics_kernel(zw, starts[rank], starts[rank + 1], out)
    return out


@njit(**JIT)
def _place_kernel(topics, lo, hi, zw, nwk, nk, replace):
    q = 0
    for w in range(lo.shape[0]):
        for p in range(lo[w], hi[w]):
            t = np.int64(topics[q])
            q += 1
            if replace:
                # Unchanged tokens are moved too (a net no-op): cheaper than
                # a branch that is mispredicted for about half of them.
                old = np.int64(zw[p])
                nwk[w, old] -= 1
                nk[old] -= 1
            nwk[w, t] += 1
            nk[t] += 1
            zw[p] = t


def apply_rank_topics(topics, starts, rank, zw, nwk, nk, *, replace):
    """Write rank ``rank``'s topics (as :func:`rank_topics` gives them) into
    ``zw`` and the counts: ``replace`` moves the tokens from their topics in
    ``zw``; otherwise they are new and only added."""
    if topics.shape[0] != int((starts[rank + 1] - starts[rank]).sum()):
        raise ValueError("topics do not match the rank's tokens")
    _place_kernel(topics, starts[rank], starts[rank + 1], zw, nwk, nk, bool(replace))


@njit(**JIT)
def _heldout_kernel(doc_ptr, words, ndk, alpha, alpha_sum, nwk, nk, beta, vbeta):
    K = nk.shape[0]
    inv = np.empty(K)
    for k in range(K):
        inv[k] = 1.0 / (nk[k] + vbeta)
    total = 0.0
    for d in range(doc_ptr.shape[0] - 1):
        n_obs = 0
        for k in range(K):
            n_obs += ndk[d, k]
        norm = 1.0 / (n_obs + alpha_sum)
        for i in range(doc_ptr[d], doc_ptr[d + 1]):
            w = words[i]
            p = 0.0
            for k in range(K):
                p += (ndk[d, k] + alpha[k]) * (nwk[w, k] + beta) * inv[k]
            total += math.log(p * norm)
    return total


def heldout_log_likelihood(doc_ptr, words, ndk, alpha, nwk, nk, beta):
    """Sum of log p(w | theta_d, phi) over held-out tokens (document completion).

    ``ndk`` are the fold-in counts of each document's observed half; theta and
    phi are the posterior means given the counts.
    """
    if ndk.shape != (doc_ptr.shape[0] - 1, nk.shape[0]):
        raise ValueError("ndk must be (documents, K)")
    return float(_heldout_kernel(doc_ptr, words, ndk, alpha, float(alpha.sum()), nwk, nk,
                                 float(beta), float(beta) * nwk.shape[0]))


@njit(**JIT)
def _digamma(x):
    r = 0.0
    while x < 6.0:
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return r + math.log(x) - 0.5 / x - f * (1.0 / 12 - f * (1.0 / 120 - f * (
        1.0 / 252 - f * (1.0 / 240 - f / 132))))


@njit(**JIT)
def _alpha_stats_kernel(doc_ptr, z, alpha, ndk, num):
    alpha_sum = 0.0
    for k in range(alpha.shape[0]):
        alpha_sum += alpha[k]
    den = 0.0
    for d in range(doc_ptr.shape[0] - 1):
        t0 = doc_ptr[d]
        t1 = doc_ptr[d + 1]
        if t1 == t0:
            continue
        for i in range(t0, t1):
            ndk[z[i]] += 1
        for i in range(t0, t1):
            k = z[i]
            if ndk[k] > 0:
                num[k] += _digamma(ndk[k] + alpha[k]) - _digamma(alpha[k])
                ndk[k] = 0
        den += _digamma(t1 - t0 + alpha_sum) - _digamma(alpha_sum)
    return den


def alpha_statistics(doc_ptr, z, alpha):
    """Minka's fixed-point sums for alpha over local documents.

    Returns ``(num, den)`` with ``num[k] = sum_d psi(n_dk+a_k) - psi(a_k)`` and
    ``den = sum_d psi(n_d+sum a) - psi(sum a)``; the update is
    ``a_k <- a_k * num_k / den`` once both are summed over ranks.
    """
    num = np.zeros(alpha.shape[0])
    den = _alpha_stats_kernel(doc_ptr, z, alpha, np.zeros(alpha.shape[0], np.int64), num)
    return num, float(den)


@njit(**JIT)
def _beta_stats_kernel(nwk_rows, beta):
    num = 0.0
    db = _digamma(beta)
    for w in range(nwk_rows.shape[0]):
        for k in range(nwk_rows.shape[1]):
            c = nwk_rows[w, k]
            if c > 0:
                num += _digamma(c + beta) - db
    return num


def beta_numerator(nwk_rows, beta):
    """Sum over the given rows of psi(n_wk + beta) - psi(beta)."""
    return float(_beta_stats_kernel(nwk_rows, float(beta)))


def digamma(x):
    """Digamma function (exposed for tests of the fixed-point updates)."""
    return float(_digamma(float(x)))
