"""LDA kernels against plain-Python references and the exact posterior."""

import itertools

import numpy as np
import pytest

from hpcml.kernels import lda as K
from hpcml.kernels.lda_gibbs import gibbs_sweep
import lda_reference as ref
from hpcml.topics.synthetic import lda_corpus


def _state(corpus, n_topics, seed, zdtype=np.uint16, cdtype=np.int32):
    doc_ptr, words = corpus.tokens()
    z = np.random.default_rng(seed).integers(0, n_topics, words.size).astype(zdtype)
    nwk = np.zeros((corpus.n_words, n_topics), cdtype)
    nk = np.zeros(n_topics, np.int64)
    K.count_topics(doc_ptr, words, z, nwk, nk)
    return doc_ptr, words, z, nwk, nk


def _second_rank(corpus, n_first, n_topics, seed, zdtype=np.uint16):
    """Split a corpus after ``n_first`` documents into two "ranks" with random
    topics; return the second rank's tokens and topics with the global word
    order, the topics of both in it, and the counts of both."""
    doc_ptr, words = corpus.tokens()
    z = np.random.default_rng(seed).integers(0, n_topics, words.size).astype(zdtype)
    cut = int(doc_ptr[n_first])
    parts = [(doc_ptr[:n_first + 1], words[:cut], z[:cut]),
             (doc_ptr[n_first:] - cut, words[cut:], z[cut:])]
    V = corpus.n_words
    wptr, starts = K.global_word_order([np.bincount(w, minlength=V) for _, w, _ in parts])
    zw = np.zeros(words.size, zdtype)
    nwk = np.zeros((V, n_topics), np.int32)
    nk = np.zeros(n_topics, np.int64)
    for r, (_, w, zr) in enumerate(parts):
        lw, tp = K.word_index(w, V)
        K.apply_rank_topics(K.word_order(zr, tp), starts, r, zw, nwk, nk, replace=False)
    ptr1, w1, z1 = parts[1]
    lw, tp = K.word_index(w1, V)
    gpos = K.global_positions(w1, tp, lw, starts[1])
    return ptr1, w1, z1.copy(), nwk, nk, wptr, starts, gpos, zw


@pytest.mark.parametrize("n_first, part", [(0, False), (4, False), (4, True)])
def test_mh_sweep_matches_reference(n_first, part):
    # n_first = 4: the sweep runs on the second of two ranks, whose word
    # proposal reads the whole corpus's word order.  part: only the tokens
    # of one block of words (2 to 10) are resampled, as in a phase of the
    # shared layout; that skips whole documents and parts at both ends of
    # others.
    corpus, _, _ = lda_corpus(9, 15, 3, 12, seed=4, length_spread=1.0)
    n_topics = 5
    doc_ptr, words, z, nwk, nk, wptr, _, tpos, zw = _second_rank(corpus, n_first, n_topics, 1)
    alpha = np.array([0.3, 0.1, 0.5, 0.2, 0.05])
    ranges = None
    if part:
        lo = np.array([doc_ptr[d] + int((words[doc_ptr[d]:doc_ptr[d + 1]] < 2).sum())
                       for d in range(doc_ptr.size - 1)], np.int64)
        hi = np.array([doc_ptr[d] + int((words[doc_ptr[d]:doc_ptr[d + 1]] < 11).sum())
                       for d in range(doc_ptr.size - 1)], np.int64)
        for d in range(lo.size):  # words sorted within each document
            assert np.all(np.diff(words[doc_ptr[d]:doc_ptr[d + 1]].astype(int)) >= 0)
        assert 0 < (hi - lo).sum() < words.size and np.any(hi == lo)
        ranges = (lo, hi)
    copies = [a.copy() for a in (z, nwk, nk, zw)]
    z_start = z.copy()
    state = K.seed_state(7)
    st_ref = state.copy()
    for _ in range(3):
        K.mh_sweep(doc_ptr, words, z, nwk, nk, alpha, 0.05, state, wptr=wptr, tpos=tpos,
                   zw=zw, mh_steps=2, ranges=ranges)
    rz, rnwk, rnk, rzw = copies
    prob, alias = K.alias_table(alpha)
    for _ in range(3):
        ref.mh_sweep(doc_ptr, words, rz, rnwk, rnk, alpha, prob, alias, 0.05, 2, wptr, tpos,
                     rzw, st_ref, ranges)
    if part:  # the other tokens keep their topics
        outside = np.ones(z.size, bool)
        for d in range(lo.size):
            outside[lo[d]:hi[d]] = False
        np.testing.assert_array_equal(z[outside], z_start[outside])
        assert np.any(z[~outside] != z_start[~outside])
    np.testing.assert_array_equal(z, rz)
    np.testing.assert_array_equal(nwk, rnwk)
    np.testing.assert_array_equal(nk, rnk)
    np.testing.assert_array_equal(zw, rzw)
    np.testing.assert_array_equal(zw[tpos], z)
    assert state[0] == st_ref[0]
    # The counts stay those of the word order.
    cnwk = np.zeros_like(nwk)
    np.add.at(cnwk, (np.repeat(np.arange(corpus.n_words), np.diff(wptr)), zw), 1)
    np.testing.assert_array_equal(nwk, cnwk)


@pytest.mark.parametrize("n_first", [0, 15])
def test_progressive_init_matches_reference_and_beats_random(n_first):
    # n_first = 15: the second rank starts from the first one's placed tokens.
    corpus, _, _ = lda_corpus(40, 30, 3, 25, seed=12, length_spread=1.0)
    n_topics, beta = 6, 0.05
    doc_ptr, words, _, nwk, nk, wptr, starts, tpos, zw = _second_rank(corpus, n_first,
                                                                       n_topics, 2)
    # Remove the second rank's random topics: it has not placed any yet.
    lo, hi = starts[1], starts[2]
    mine = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]).astype(np.int64)
    word_of = np.repeat(np.arange(corpus.n_words), np.diff(wptr))
    np.subtract.at(nwk, (word_of[mine], zw[mine]), 1)
    nk[:] = nwk.sum(0)
    others = nwk.copy()
    alpha = np.array([0.3, 0.1, 0.5, 0.2, 0.05, 0.1])
    state = K.seed_state(5)
    st_ref = state.copy()
    rnwk, rnk, rzw = nwk.copy(), nk.copy(), zw.copy()
    z, zw = K.progressive_init(doc_ptr, words, nwk, nk, alpha, beta, state, wptr=wptr,
                               tpos=tpos, zw=zw, mh_steps=2, smooth=0.3)
    prob, alias = K.alias_table(alpha)
    rz, rzw = ref.progressive_init(doc_ptr, words, rnwk, rnk, alpha, prob, alias, beta, 2,
                                   wptr, tpos, rzw, st_ref, 0.3)
    np.testing.assert_array_equal(z, rz)
    np.testing.assert_array_equal(zw, rzw)
    np.testing.assert_array_equal(nwk, rnwk)
    assert state[0] == st_ref[0]
    # The counts returned are those of z plus the earlier ones.
    cnwk, cnk = np.zeros_like(nwk), np.zeros(n_topics, np.int64)
    K.count_topics(doc_ptr, words, z, cnwk, cnk)
    np.testing.assert_array_equal(nwk, cnwk + others)
    np.testing.assert_array_equal(nk, cnk + others.sum(0))
    np.testing.assert_array_equal(zw[tpos], z)
    if n_first:
        return

    def ll(zz):
        return ref.joint_log_likelihood(doc_ptr, words, zz, alpha, beta, corpus.n_words)
    rand = [ll(np.random.default_rng(s).integers(0, n_topics, words.size)) for s in range(5)]
    # Sequential draws give a far likelier start than uniform topics.
    assert ll(z) > max(rand) + 0.05 * abs(max(rand))
    with pytest.raises(ValueError, match="zero"):
        K.progressive_init(doc_ptr, words, nwk, nk, alpha, beta, state, wptr=wptr, tpos=tpos)


def test_exchanged_changes_keep_views_exact():
    # Two ranks' views; the second resamples, and the first applies its
    # changes sparsely or densely: both must equal a recount.
    corpus, _, _ = lda_corpus(12, 20, 3, 15, seed=6, length_spread=1.0)
    n_topics = 4
    doc_ptr, words, z, nwk, nk, wptr, starts, gpos, zw = _second_rank(corpus, 5, n_topics, 3)
    view0 = [nwk.copy(), nk.copy(), zw.copy()]
    view1 = [nwk.copy(), nk.copy(), zw.copy()]
    snap = z.copy()
    sent = K.rank_topics(view1[2], starts, 1)
    K.mh_sweep(doc_ptr, words, z, *view1[:2], np.full(n_topics, 0.2), 0.1, K.seed_state(1),
               wptr=wptr, tpos=gpos, zw=view1[2])
    changed = K.own_changes(view1[2], starts, 1, sent)
    assert 0 < changed.size == int((z != snap).sum())
    assert np.all(np.diff(changed) > 0)
    np.testing.assert_array_equal(sent, K.rank_topics(view1[2], starts, 1))
    assert K.own_changes(view1[2], starts, 1, sent).size == 0
    sparse = [a.copy() for a in view0]
    K.apply_changes(changed, wptr, sparse[2], sparse[0], sparse[1])
    dense = [a.copy() for a in view0]
    K.apply_rank_topics(sent, starts, 1, dense[2], dense[0], dense[1], replace=True)
    for got in (sparse, dense):
        for a, b in zip(got, view1):
            np.testing.assert_array_equal(a, b)
    # The word order holds the second rank's topics where global_positions says.
    np.testing.assert_array_equal(view1[2][gpos], z)
    assert np.array_equal(K.global_word_order([[2, 0, 1], [1, 3, 0]])[1],
                          [[0, 3, 6], [2, 3, 7], [3, 6, 7]])


def test_dense_sweep_matches_reference():
    corpus, _, _ = lda_corpus(8, 12, 3, 10, seed=5, length_spread=1.0)
    doc_ptr, words, z, nwk, nk = _state(corpus, 4, 3, np.int32, np.int64)
    alpha = np.array([0.3, 0.1, 0.5, 0.2])
    rz, rnwk, rnk = z.copy(), nwk.copy(), nk.copy()
    state = K.seed_state(9)
    st_ref = state.copy()
    for _ in range(2):
        K.dense_sweep(doc_ptr, words, z, nwk, nk, alpha, 0.1, state)
        ref.dense_sweep(doc_ptr, words, rz, rnwk, rnk, alpha, 0.1, st_ref)
    np.testing.assert_array_equal(z, rz)
    np.testing.assert_array_equal(nwk, rnwk)
    assert state[0] == st_ref[0]


@pytest.mark.parametrize("n_topics, part", [(5, False), (21, False), (21, True)])
def test_gibbs_sweep_matches_reference(n_topics, part):
    # 21 topics: three blocks, the last one partly padding.  part: one block
    # of words per document, as in a phase of the shared layout.
    corpus, _, _ = lda_corpus(9, 15, 3, 12, seed=4, length_spread=1.0)
    doc_ptr, words, z, nwk, nk = _state(corpus, n_topics, 3)
    alpha = np.random.default_rng(0).uniform(0.05, 0.5, n_topics)
    ranges = None
    if part:
        ranges = (doc_ptr[:-1] + 1, np.maximum(doc_ptr[1:] - 2, doc_ptr[:-1] + 1))
        ranges = (np.minimum(ranges[0], doc_ptr[1:]), np.minimum(ranges[1], doc_ptr[1:]))
    rz, rnwk, rnk = z.copy(), nwk.copy(), nk.copy()
    wptr, tpos = K.word_index(words, corpus.n_words)
    zw = K.word_order(z, tpos)
    state = K.seed_state(9)
    st_ref = state.copy()
    for _ in range(3):
        gibbs_sweep(doc_ptr, words, z, nwk, nk, alpha, 0.05, state, tpos=tpos, zw=zw,
                    ranges=ranges)
        ref.gibbs_sweep(doc_ptr, words, rz, rnwk, rnk, alpha, 0.05, st_ref, ranges=ranges)
    np.testing.assert_array_equal(z, rz)
    np.testing.assert_array_equal(nwk, rnwk)
    np.testing.assert_array_equal(nk, rnk)
    np.testing.assert_array_equal(zw[tpos], z)  # the word order follows
    assert state[0] == st_ref[0]
    if part:  # tokens outside the ranges keep their topics
        z0 = np.random.default_rng(3).integers(0, n_topics, words.size)
        inside = np.zeros(words.size, bool)
        for d in range(doc_ptr.size - 1):
            inside[ranges[0][d]:ranges[1][d]] = True
        assert 0 < inside.sum() < words.size
        np.testing.assert_array_equal(z[~inside], z0[~inside])
    else:
        assert np.any(z != np.random.default_rng(3).integers(0, n_topics, words.size))


def test_log_likelihood_matches_formula():
    corpus, _, _ = lda_corpus(6, 10, 3, 9, seed=6, length_spread=1.0)
    doc_ptr, words, z, nwk, nk = _state(corpus, 4, 4)
    alpha = np.array([0.3, 0.1, 0.5, 0.2])
    ll = (K.doc_log_likelihood(doc_ptr, z, alpha) + K.word_log_likelihood(nwk, 0.2)
          + K.topic_log_normaliser(nk, 0.2, corpus.n_words))
    expected = ref.joint_log_likelihood(doc_ptr, words, z, alpha, 0.2, corpus.n_words)
    assert ll == pytest.approx(expected, rel=1e-12)


def _exact_posterior(doc_ptr, words, alpha, beta, V, n_topics):
    states = list(itertools.product(range(n_topics), repeat=len(words)))
    lls = np.array([ref.joint_log_likelihood(doc_ptr, words, np.array(s), alpha, beta, V)
                    for s in states])
    p = np.exp(lls - lls.max())
    return states, p / p.sum()


@pytest.mark.parametrize("sampler", ["mh", "dense", "gibbs"])
def test_sampler_stationary_distribution_is_the_posterior(sampler):
    # Two documents, five tokens, two topics: 32 states, posterior by enumeration.
    doc_ptr = np.array([0, 3, 5], np.int64)
    words = np.array([0, 0, 1, 1, 2], np.uint16)
    alpha, beta, V, n_topics = np.array([0.4, 0.9]), 0.3, 3, 2
    states, post = _exact_posterior(doc_ptr, words, alpha, beta, V, n_topics)
    z = np.zeros(5, np.uint16)
    nwk = np.zeros((V, n_topics), np.int32)
    nk = np.zeros(n_topics, np.int64)
    K.count_topics(doc_ptr, words, z, nwk, nk)
    wptr, tpos = K.word_index(words, V)
    zw = K.word_order(z, tpos)
    state = K.seed_state(11)
    index = {s: i for i, s in enumerate(states)}
    hits = np.zeros(len(states))
    sweeps = 30000
    for _ in range(sweeps):
        if sampler == "mh":
            K.mh_sweep(doc_ptr, words, z, nwk, nk, alpha, beta, state, wptr=wptr, tpos=tpos,
                       zw=zw, mh_steps=1)
        elif sampler == "gibbs":
            gibbs_sweep(doc_ptr, words, z, nwk, nk, alpha, beta, state, tpos=tpos, zw=zw)
        else:
            K.dense_sweep(doc_ptr, words, z, nwk, nk, alpha, beta, state)
        hits[index[tuple(int(v) for v in z)]] += 1
    tv = 0.5 * np.abs(hits / sweeps - post).sum()
    assert tv < 0.03, tv


def test_fold_in_recovers_document_topics():
    corpus, phi, theta = lda_corpus(60, 200, 4, 300, alpha=0.2, beta=0.05, seed=8)
    # A model that knows the true topics: counts proportional to phi.
    nwk = np.ascontiguousarray(np.rint(phi.T * 5000).astype(np.int32))
    nk = nwk.sum(0).astype(np.int64)
    doc_ptr, words = corpus.tokens()
    ndk = K.fold_in(doc_ptr, words, nwk, nk, np.full(4, 0.2), 0.05, K.seed_state(3), sweeps=15)
    est = (ndk + 0.2) / (ndk.sum(1, keepdims=True) + 0.8)
    assert np.abs(est - theta).mean() < 0.03


def test_wrappers_reject_bad_types():
    doc_ptr = np.array([0, 2], np.int64)
    words = np.array([0, 1], np.uint16)
    z = np.zeros(2, np.uint16)
    nwk = np.zeros((2, 2), np.int32)
    with pytest.raises(TypeError, match="nk"):
        K.dense_sweep(doc_ptr, words, z, nwk, np.zeros(2, np.int32), np.ones(2), 0.1,
                      K.seed_state(0))
    with pytest.raises(TypeError, match="state"):
        K.dense_sweep(doc_ptr, words, z, nwk, np.zeros(2, np.int64), np.ones(2), 0.1,
                      np.zeros(1, np.int64))


def test_seed_state_streams_differ():
    assert K.seed_state(1, 0)[0] != K.seed_state(1, 1)[0] != K.seed_state(2, 0)[0]
    assert K.seed_state(1, 0)[0] == K.seed_state(1, 0)[0]
    prob, alias = K.alias_table(np.array([1.0, 2.0, 3.0, 4.0]))
    mass = np.array([(prob[j] if i == j else 0) + (1 - prob[j]) * (alias[j] == i)
                     for i in range(4) for j in range(4)]).reshape(4, 4).sum(1) / 4
    np.testing.assert_allclose(mass, [0.1, 0.2, 0.3, 0.4])
