"""Word-topic counts whose memory follows the non-zeros, for very large K.

A dense ``V x K`` table costs ``V·K`` cells whatever the corpus; at
V = 100,000 and K = 10,000 that is 10⁹ cells, although a word that occurs
``f`` times has at most ``min(f, K)`` non-zero topics.  :class:`HybridRows`
keeps, as LightLDA does:

* a **dense row** for each frequent word (one cell per topic, read and
  written in place), and
* for every other word an **open-addressing hash row** whose capacity is
  fixed once from the word's frequency: ``min(f, K)`` entries can never be
  exceeded, so a table sized for them at a load of at most 2/3 never grows
  or rehashes.  Probing is linear from a Fibonacci hash of the topic;
  deletion shifts the following entries back (no tombstones), so a row
  never clogs however often its topics change.

A word gets the dense row when its hash row would not be smaller.  Memory is
then about ``sum_w cap_w (key + count bytes)`` plus the dense rows of the
few frequent words: a few bytes per token of the corpus instead of V·K
cells (:meth:`HybridRows.nbytes`).

:func:`mh_sweep_rows` is :func:`hpcml.kernels.lda.mh_sweep` on these rows:
the same random stream and arithmetic, so both give identical topics from
one state (the tests check it).  The word proposal still reads the topics in
word order (``zw``), which needs no table; the fold-in's cumulative rows
(:func:`hpcml.kernels.lda.sparse_rows`' format) come from the non-zeros by
:meth:`HybridRows.cumulative_rows`, without a dense table.

State arrays of :class:`HybridRows` (passed to the kernels as one tuple):

``off``    int64 (V,)   start of each word's row in its pool
``bits``   int8 (V,)    log2 of the hash capacity; 0 marks a dense row
``dense``  counts (n_dense·K,)  the dense rows, one after another
``keys``   uint16/int32 (slots,)  topic + 1 of each hash slot (0: empty)
``vals``   counts (slots,)  the count of each hash slot
"""

import math

import numpy as np
from numba import njit

from hpcml.kernels import JIT
from hpcml.kernels.lda import (_AHEAD, _accept, _check_state, _check_word_order, _cursor_next,
                               _digamma, _doc_draw, _draw_ahead, _prefetch, _uniform, _word_draw,
                               alias_table, topic_dtype)

_FIB = np.uint64(0x9E3779B97F4A7C15)
#: Hash rows are sized for their most possible entries at this load at most.
MAX_LOAD = 2.0 / 3.0


@njit(inline="always")
def _home(k, b):
    """Home slot of topic ``k`` in a table of 2**b slots (Fibonacci hashing)."""
    return np.int64((np.uint64(k + 1) * _FIB) >> np.uint64(64 - b))


@njit(inline="always")
def _get(rows, w, k):
    """The count of word ``w`` in topic ``k``."""
    off, bits, dense, keys, vals, K = rows
    o = off[w]
    b = bits[w]
    if b == 0:
        return np.int64(dense[o + k])
    mask = (np.int64(1) << b) - 1
    j = _home(k, b)
    key = k + 1
    while True:
        kk = np.int64(keys[o + j])
        if kk == key:
            return np.int64(vals[o + j])
        if kk == 0:
            return np.int64(0)
        j = (j + 1) & mask


@njit(inline="always")
def _inc(rows, w, k):
    """Add one to the count of word ``w`` in topic ``k``."""
    off, bits, dense, keys, vals, K = rows
    o = off[w]
    b = bits[w]
    if b == 0:
        dense[o + k] += 1
        return
    mask = (np.int64(1) << b) - 1
    j = _home(k, b)
    key = k + 1
    while True:
        kk = np.int64(keys[o + j])
        if kk == key:
            vals[o + j] += 1
            return
        if kk == 0:
            keys[o + j] = key
            vals[o + j] = 1
            return
        j = (j + 1) & mask


@njit(inline="always")
def _dec(rows, w, k):
    """Take one from the count of word ``w`` in topic ``k`` (it must be > 0);
    an entry that reaches zero is removed by shifting back the entries after
    it whose probe sequence passes through its slot."""
    off, bits, dense, keys, vals, K = rows
    o = off[w]
    b = bits[w]
    if b == 0:
        dense[o + k] -= 1
        return
    mask = (np.int64(1) << b) - 1
    j = _home(k, b)
    key = k + 1
    while np.int64(keys[o + j]) != key:
        j = (j + 1) & mask
    vals[o + j] -= 1
    if vals[o + j] != 0:
        return
    hole = j
    n = j
    while True:
        n = (n + 1) & mask
        kk = np.int64(keys[o + n])
        if kk == 0:
            break
        h = _home(kk - 1, b)
        # The entry at n may move to the hole unless its home lies
        # cyclically in (hole, n]: then the hole is not on its probe path.
        stays = (hole < h <= n) if hole <= n else (h > hole or h <= n)
        if not stays:
            keys[o + hole] = keys[o + n]
            vals[o + hole] = vals[o + n]
            hole = n
    keys[o + hole] = 0
    vals[o + hole] = 0


class HybridRows:
    """Word-topic counts with dense rows for frequent words and hash rows for the rest.

    Parameters
    ----------
    word_freq : array of int, shape (V,)
        How often each word occurs in the corpus the rows count (all ranks'
        tokens when the rows are a view of the whole corpus).
    n_topics : int
        K.
    count_dtype : dtype
        Count cell type (uint16 when no word occurs 65,536 times, else int32).
    alloc : callable, optional
        ``alloc(shape, dtype)`` returns a zeroed array for the pools (the
        shared layout passes shared memory); default ``numpy.zeros``.
    """

    def __init__(self, word_freq, n_topics, count_dtype=np.int32, alloc=None):
        freq = np.asarray(word_freq, np.int64)
        K = int(n_topics)
        V = freq.shape[0]
        key_dtype = np.uint16 if K < 2**16 - 1 else np.int32
        cdt = np.dtype(count_dtype)
        need = np.maximum(np.minimum(freq, K), 1)
        bits = np.maximum(np.ceil(np.log2(need / MAX_LOAD)), 1).astype(np.int64)
        slot_bytes = np.dtype(key_dtype).itemsize + cdt.itemsize
        is_dense = (np.left_shift(1, bits) * slot_bytes >= K * cdt.itemsize) & (freq > 0)
        bits[is_dense] = 0
        caps = np.where(is_dense, 0, np.left_shift(1, bits))
        off = np.zeros(V, np.int64)
        np.cumsum(caps[:-1], out=off[1:])
        dense_rank = np.cumsum(is_dense) - 1
        off[is_dense] = dense_rank[is_dense] * K
        self.n_words, self.n_topics = V, K
        self.off = off
        self.bits = bits.astype(np.int8)
        alloc = alloc or np.zeros
        self.dense = alloc((int(is_dense.sum()) * K,), cdt)
        self.keys = alloc((int(caps.sum()),), key_dtype)
        self.vals = alloc((int(caps.sum()),), cdt)

    @property
    def dtype(self):
        return self.vals.dtype

    @property
    def itemsize(self):
        return self.vals.itemsize

    @property
    def n_dense(self):
        """Words with a dense row."""
        return self.dense.shape[0] // max(self.n_topics, 1)

    @property
    def nbytes(self):
        """Bytes of the count storage (rows and their index)."""
        return int(self.off.nbytes + self.bits.nbytes + self.dense.nbytes + self.keys.nbytes
                   + self.vals.nbytes)

    def state(self):
        """The arrays as the kernels take them."""
        return (self.off, self.bits, self.dense, self.keys, self.vals, self.n_topics)

    def get(self, w, k):
        """The count of word ``w`` in topic ``k``."""
        return int(_get_one(self.state(), int(w), int(k)))

    def to_dense(self, words=None):
        """The counts as a dense int32 array (rows ``words``, default all)."""
        words = np.arange(self.n_words) if words is None else np.asarray(words, np.int64)
        out = np.zeros((words.shape[0], self.n_topics), np.int32)
        _to_dense_kernel(self.state(), words, out)
        return out

    def nonzeros(self):
        """CSR of the non-zero counts: ``(ptr, topic, count)`` with each
        word's topics in increasing order."""
        nnz = np.zeros(self.n_words, np.int64)
        _row_nnz_kernel(self.state(), nnz)
        ptr = np.zeros(self.n_words + 1, np.int64)
        np.cumsum(nnz, out=ptr[1:])
        topic = np.empty(int(ptr[-1]), np.int32)
        count = np.empty(int(ptr[-1]), np.int64)
        _nonzeros_kernel(self.state(), ptr, topic, count)
        return ptr, topic, count

    def cumulative_rows(self):
        """The fold-in's word rows (:func:`hpcml.kernels.lda.sparse_rows`'
        ``(ptr, topic, cum)``: running sums of each word's counts) straight
        from the non-zeros."""
        ptr, topic, count = self.nonzeros()
        run = np.cumsum(count).astype(np.float64)
        base = np.concatenate([[0.0], run])[ptr[:-1]]
        return ptr, topic, run - np.repeat(base, np.diff(ptr))

    def beta_numerator(self, beta, words=None):
        """sum over the rows ``words`` (default all) of psi(n_wk + beta) - psi(beta)."""
        words = np.arange(self.n_words) if words is None else np.asarray(words, np.int64)
        return float(_beta_num_kernel(self.state(), words, float(beta)))

    def word_log_likelihood(self, beta, words=None):
        """sum over the rows ``words`` (default all) of log Gamma(n_wk + beta) - log Gamma(beta)."""
        words = np.arange(self.n_words) if words is None else np.asarray(words, np.int64)
        return float(_word_ll_kernel(self.state(), words, float(beta)))


@njit(**JIT)
def _get_one(rows, w, k):
    return _get(rows, w, k)


@njit(**JIT)
def _to_dense_kernel(rows, words, out):
    off, bits, dense, keys, vals, K = rows
    for i in range(words.shape[0]):
        w = words[i]
        o = off[w]
        if bits[w] == 0:
            for k in range(K):
                out[i, k] = dense[o + k]
        else:
            for j in range(o, o + (np.int64(1) << bits[w])):
                if keys[j] != 0:
                    out[i, np.int64(keys[j]) - 1] = vals[j]


@njit(**JIT)
def _row_nnz_kernel(rows, nnz):
    off, bits, dense, keys, vals, K = rows
    for w in range(nnz.shape[0]):
        o = off[w]
        c = 0
        if bits[w] == 0:
            for k in range(K):
                c += dense[o + k] != 0
        else:
            for j in range(o, o + (np.int64(1) << bits[w])):
                c += keys[j] != 0
        nnz[w] = c


@njit(**JIT)
def _nonzeros_kernel(rows, ptr, topic, count):
    off, bits, dense, keys, vals, K = rows
    for w in range(ptr.shape[0] - 1):
        o = off[w]
        p = ptr[w]
        if bits[w] == 0:
            for k in range(K):
                if dense[o + k] != 0:
                    topic[p] = k
                    count[p] = dense[o + k]
                    p += 1
        else:
            for j in range(o, o + (np.int64(1) << bits[w])):
                if keys[j] != 0:
                    topic[p] = np.int64(keys[j]) - 1
                    count[p] = vals[j]
                    p += 1
            # Hash order to topic order (rows are short).
            seg = np.argsort(topic[ptr[w]:p])
            topic[ptr[w]:p] = topic[ptr[w]:p][seg]
            count[ptr[w]:p] = count[ptr[w]:p][seg]


@njit(**JIT)
def _word_ll_kernel(rows, words, beta):
    off, bits, dense, keys, vals, K = rows
    lg_b = math.lgamma(beta)
    total = 0.0
    for i in range(words.shape[0]):
        w = words[i]
        o = off[w]
        if bits[w] == 0:
            for k in range(K):
                if dense[o + k] > 0:
                    total += math.lgamma(dense[o + k] + beta) - lg_b
        else:
            for j in range(o, o + (np.int64(1) << bits[w])):
                if keys[j] != 0:
                    total += math.lgamma(vals[j] + beta) - lg_b
    return total


@njit(**JIT)
def _beta_num_kernel(rows, words, beta):
    off, bits, dense, keys, vals, K = rows
    db = _digamma(beta)
    total = 0.0
    for i in range(words.shape[0]):
        w = words[i]
        o = off[w]
        if bits[w] == 0:
            for k in range(K):
                if dense[o + k] > 0:
                    total += _digamma(dense[o + k] + beta) - db
        else:
            for j in range(o, o + (np.int64(1) << bits[w])):
                if keys[j] != 0:
                    total += _digamma(vals[j] + beta) - db
    return total


def bytes_bound(n_tokens, n_words):
    """Most bytes :class:`HybridRows` takes for ``n_tokens`` tokens of
    ``n_words`` words, whatever K: a hash row has fewer than
    3 min(f, K) slots of at most 8 bytes (a dense row is chosen only when
    smaller), plus 9 bytes of index per word."""
    return 24 * int(n_tokens) + 9 * int(n_words)


@njit(**JIT)
def _count_kernel(words, z, rows, nk):
    for i in range(words.shape[0]):
        _inc(rows, np.int64(words[i]), np.int64(z[i]))
        nk[z[i]] += 1


def count_topics_rows(words, z, rows, nk):
    """Add the counts of tokens ``words`` with topics ``z`` to ``rows`` and ``nk``."""
    if words.shape != z.shape or nk.dtype != np.int64 or nk.shape != (rows.n_topics,):
        raise TypeError("words/z must match and nk be int64 of length K")
    _count_kernel(words, z, rows.state(), nk)


@njit(**JIT)
def _place_kernel(topics, lo, hi, zw, rows, nk, replace):
    q = 0
    for w in range(lo.shape[0]):
        for p in range(lo[w], hi[w]):
            t = np.int64(topics[q])
            q += 1
            if replace:
                old = np.int64(zw[p])
                if old == t:
                    continue
                _dec(rows, w, old)
                nk[old] -= 1
            _inc(rows, w, t)
            nk[t] += 1
            zw[p] = t


def apply_rank_topics_rows(topics, starts, rank, zw, rows, nk, *, replace):
    """:func:`hpcml.kernels.lda.apply_rank_topics` on hybrid rows."""
    if topics.shape[0] != int((starts[rank + 1] - starts[rank]).sum()):
        raise ValueError("topics do not match the rank's tokens")
    _place_kernel(topics, starts[rank], starts[rank + 1], zw, rows.state(), nk, bool(replace))


@njit(**JIT)
def _apply_changes_kernel(packed, wptr, zw, rows, nk, topic_bits):
    mask = (np.int64(1) << topic_bits) - 1
    w = 0
    for j in range(packed.shape[0]):
        p = packed[j] >> topic_bits
        t = packed[j] & mask
        if p < wptr[w]:
            w = np.searchsorted(wptr, p, side="right") - 1
        while wptr[w + 1] <= p:
            w += 1
        old = np.int64(zw[p])
        _dec(rows, w, old)
        nk[old] -= 1
        _inc(rows, w, t)
        nk[t] += 1
        zw[p] = t


def apply_changes_rows(packed, wptr, zw, rows, nk):
    """:func:`hpcml.kernels.lda.apply_changes` on hybrid rows."""
    from hpcml.kernels.lda import _TOPIC_BITS
    _apply_changes_kernel(packed, wptr, zw, rows.state(), nk, _TOPIC_BITS)


@njit(**JIT)
def _mh_rows_kernel(doc_ptr, lo, hi, words, z, rows, nk, wptr, tpos, zw,
                    alpha, a_prob, a_alias, alpha_sum, beta, vbeta, mh_steps,
                    d0, d1, ndk, state):
    # The loop of hpcml.kernels.lda._mh_kernel with the counts read and
    # written through the hybrid rows; the random draws are the same.
    off, bits, dense, keys, vals, _K = rows
    K = nk.shape[0]
    kbeta = K * beta
    inv_beta = 1.0 / beta
    k_over_asum = K / alpha_sum
    x = state[0]
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
                if bits[wa] == 0:
                    _prefetch(dense, off[wa] + np.int64(z[ia]))
                else:
                    _prefetch(keys, off[wa])
                    _prefetch(vals, off[wa])
                da, ia = _cursor_next(da, ia, lo, hi, d1)
                ca += 1
            w = np.int64(words[i])
            s0 = np.int64(z[i])
            ndk[s0] -= 1
            _dec(rows, w, s0)
            nk[s0] -= 1
            s = s0
            ns = _get(rows, w, s)
            ps = (ndk[s] + alpha[s]) * (ns + beta) / (nk[s] + vbeta)
            wbeg = wptr[w]
            nw = wptr[w + 1] - wbeg
            pw = tpos[i]
            slot = c % slots
            c += 1
            for step in range(mh_steps):
                x, u = _uniform(x)
                r = u * (L + alpha_sum)
                t = _doc_draw(r, L, z, t0, k_over_asum, a_prob, a_alias, K)
                nt = _get(rows, w, t)
                pt = (ndk[t] + alpha[t]) * (nt + beta) / (nk[t] + vbeta)
                x, s, ps = _accept(x, pt * (ndk[s] + alpha[s]), ps * (ndk[t] + alpha[t]),
                                   s, ps, t, pt)
                ns = nt if s == t else ns
                z[i] = s
                zw[pw] = s
                t = _word_draw(pre[slot, step] * (nw + kbeta), nw, zw, wbeg, inv_beta, K)
                nt = _get(rows, w, t)
                pt = (ndk[t] + alpha[t]) * (nt + beta) / (nk[t] + vbeta)
                x, s, ps = _accept(x, pt * (ns + beta), ps * (nt + beta), s, ps, t, pt)
                ns = nt if s == t else ns
                z[i] = s
                zw[pw] = s
            ndk[s] += 1
            _inc(rows, w, s)
            nk[s] += 1
        for i in range(t0, t1):
            ndk[z[i]] = 0
    state[0] = x


def mh_sweep_rows(doc_ptr, words, z, rows, nk, alpha, beta, state, *, wptr, tpos, zw,
                  mh_steps=2, d0=0, d1=None, scratch=None, ranges=None):
    """:func:`hpcml.kernels.lda.mh_sweep` with the counts in :class:`HybridRows`.

    Same arguments, ``rows`` in place of ``nwk``; the same random stream,
    so from equal states both sample the same topics.
    """
    d1 = doc_ptr.shape[0] - 1 if d1 is None else d1
    K = nk.shape[0]
    if rows.n_topics != K:
        raise ValueError("rows and nk disagree on K")
    # The dense sweep's checks, with empty stand-ins of the rows' shape.
    _check_state(doc_ptr, words, z, np.zeros((0, K), np.int32), nk, alpha, state, d0, d1)
    _check_word_order(np.zeros((rows.n_words, 0), np.int32), words, z, wptr, tpos, zw)
    lo, hi = (doc_ptr[:-1], doc_ptr[1:]) if ranges is None else ranges
    a_prob, a_alias = alias_table(alpha)
    ndk = np.zeros(K, np.int32) if scratch is None else scratch
    _mh_rows_kernel(doc_ptr, lo, hi, words, z, rows.state(), nk, wptr, tpos, zw, alpha, a_prob,
                    a_alias, float(alpha.sum()), float(beta), float(beta) * rows.n_words,
                    int(mh_steps), int(d0), int(d1), ndk, state)


@njit(**JIT)
def _init_rows_kernel(doc_ptr, words, z, rows, nk, wptr, tpos, zw, alpha, a_prob, a_alias,
                      alpha_sum, beta, vbeta, mh_steps, smooth, n_after, ndk, state):
    # hpcml.kernels.lda._init_kernel on hybrid rows (same draws).
    K = nk.shape[0]
    kbeta = K * beta
    inv_beta = 1.0 / beta
    k_over_asum = K / alpha_sum
    n_left = n_after + words.shape[0]
    x = state[0]
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
            w = np.int64(words[i])
            wbeg = wptr[w]
            pw = tpos[i]
            nw = pw - wbeg
            L = i - t0
            bd = smooth * (t1 - i) / K
            bw = smooth * (wptr[w + 1] - pw) / K
            bk = smooth * (n_left - i) / K
            s = _word_draw(pre[i % slots, 0] * (nw + kbeta), nw, zw, wbeg, inv_beta, K)
            ns = _get(rows, w, s)
            ps = (ndk[s] + bd + alpha[s]) * (ns + bw + beta) / (nk[s] + bk + vbeta)
            for step in range(mh_steps):
                x, u = _uniform(x)
                r = u * (L + alpha_sum)
                t = _doc_draw(r, L, z, t0, k_over_asum, a_prob, a_alias, K)
                nt = _get(rows, w, t)
                pt = (ndk[t] + bd + alpha[t]) * (nt + bw + beta) / (nk[t] + bk + vbeta)
                x, s, ps = _accept(x, pt * (ndk[s] + alpha[s]), ps * (ndk[t] + alpha[t]),
                                   s, ps, t, pt)
                ns = nt if s == t else ns
                t = _word_draw(pre[i % slots, 1 + step] * (nw + kbeta), nw, zw, wbeg, inv_beta,
                               K)
                nt = _get(rows, w, t)
                pt = (ndk[t] + bd + alpha[t]) * (nt + bw + beta) / (nk[t] + bk + vbeta)
                x, s, ps = _accept(x, pt * (ns + beta), ps * (nt + beta), s, ps, t, pt)
                ns = nt if s == t else ns
            z[i] = s
            zw[pw] = s
            ndk[s] += 1
            _inc(rows, w, s)
            nk[s] += 1
        for i in range(t0, t1):
            ndk[z[i]] = 0
    state[0] = x


def progressive_init_rows(doc_ptr, words, rows, nk, alpha, beta, state, *, wptr, tpos, zw,
                          n_after=0, mh_steps=1, smooth=0.1, scratch=None):
    """:func:`hpcml.kernels.lda.progressive_init` with the counts in
    :class:`HybridRows` (the same draws); returns the topics ``z``."""
    K = nk.shape[0]
    z = np.zeros(words.shape[0], topic_dtype(K))
    _check_state(doc_ptr, words, z, np.zeros((0, K), np.int32), nk, alpha, state, 0,
                 doc_ptr.shape[0] - 1)
    _check_word_order(np.zeros((rows.n_words, 0), np.int32), words, z, wptr, tpos, zw)
    if int(nk.sum()) + words.shape[0] + int(n_after) != zw.shape[0]:
        raise ValueError("the counts must hold exactly the earlier ranks' tokens "
                         "(zero on one rank)")
    a_prob, a_alias = alias_table(alpha)
    ndk = np.zeros(K, np.int32) if scratch is None else scratch
    _init_rows_kernel(doc_ptr, words, z, rows.state(), nk, wptr, tpos, zw, alpha, a_prob,
                      a_alias, float(alpha.sum()), float(beta), float(beta) * rows.n_words,
                      int(mh_steps), float(smooth), int(n_after), ndk, state)
    return z
