"""LDA kernels against plain-Python references and the exact posterior."""

import itertools

import numpy as np
import pytest

from hpcml.kernels import lda as K
import lda_reference as ref
from hpcml.topics.synthetic import lda_corpus


def _state(corpus, n_topics, seed, zdtype=np.uint16, cdtype=np.int32):
    doc_ptr, words = corpus.tokens()
    z = np.random.default_rng(seed).integers(0, n_topics, words.size).astype(zdtype)
    nwk = np.zeros((corpus.n_words, n_topics), cdtype)
    nk = np.zeros(n_topics, np.int64)
    K.count_topics(doc_ptr, words, z, nwk, nk)
    return doc_ptr, words, z, nwk, nk


@pytest.mark.parametrize("separate", [False, True])
def test_mh_sweep_matches_reference(separate):
    corpus, _, _ = lda_corpus(9, 15, 3, 12, seed=4, length_spread=1.0)
    n_topics = 5
    doc_ptr, words, z, nwk, nk = _state(corpus, n_topics, 1)
    alpha = np.array([0.3, 0.1, 0.5, 0.2, 0.05])
    wptr, tpos = K.word_index(words, corpus.n_words)
    zw = K.word_order(z, tpos)
    # With a separate local count, nwk also holds "other ranks'" counts.
    nloc = nwk.copy() if separate else None
    if separate:
        nwk += np.random.default_rng(2).integers(0, 3, nwk.shape).astype(nwk.dtype)
        nk[:] = nwk.sum(0)
    copies = [a.copy() for a in (z, nwk, nk, zw)] + [None if nloc is None else nloc.copy()]
    state = K.seed_state(7)
    st_ref = state.copy()
    for _ in range(3):
        K.mh_sweep(doc_ptr, words, z, nwk, nk, alpha, 0.05, state, wptr=wptr, tpos=tpos,
                   zw=zw, nloc=nloc, mh_steps=2)
    rz, rnwk, rnk, rzw, rloc = copies
    prob, alias = K.alias_table(alpha)
    for _ in range(3):
        ref.mh_sweep(doc_ptr, words, rz, rnwk, rnk, rnwk if rloc is None else rloc, alpha,
                     prob, alias, 0.05, 2, wptr, tpos, rzw, st_ref)
    np.testing.assert_array_equal(z, rz)
    np.testing.assert_array_equal(nwk, rnwk)
    np.testing.assert_array_equal(nk, rnk)
    np.testing.assert_array_equal(zw[tpos], z)
    assert state[0] == st_ref[0]
    if separate:
        np.testing.assert_array_equal(nloc, rloc)


@pytest.mark.parametrize("separate", [False, True])
def test_progressive_init_matches_reference_and_beats_random(separate):
    corpus, _, _ = lda_corpus(40, 30, 3, 25, seed=12, length_spread=1.0)
    n_topics, beta = 6, 0.05
    doc_ptr, words = corpus.tokens()
    alpha = np.array([0.3, 0.1, 0.5, 0.2, 0.05, 0.1])
    wptr, tpos = K.word_index(words, corpus.n_words)
    nwk = np.zeros((corpus.n_words, n_topics), np.int32)
    # With a separate local count, nwk starts with "earlier ranks'" counts.
    others = np.random.default_rng(2).integers(0, 3, nwk.shape).astype(np.int32) \
        if separate else np.zeros_like(nwk)
    nwk += others
    nk = nwk.sum(0).astype(np.int64)
    nloc = np.zeros_like(nwk) if separate else None
    state = K.seed_state(5)
    st_ref = state.copy()
    rnwk, rnk = nwk.copy(), nk.copy()
    rloc = rnwk if nloc is None else nloc.copy()
    z, zw = K.progressive_init(doc_ptr, words, nwk, nk, alpha, beta, state, wptr=wptr,
                               tpos=tpos, nloc=nloc, mh_steps=2, smooth=0.3)
    prob, alias = K.alias_table(alpha)
    rz, rzw = ref.progressive_init(doc_ptr, words, rnwk, rnk, alpha, prob, alias, beta, 2,
                                   wptr, tpos, st_ref, 0.3, rloc)
    np.testing.assert_array_equal(z, rz)
    np.testing.assert_array_equal(zw, rzw)
    np.testing.assert_array_equal(nwk, rnwk)
    assert state[0] == st_ref[0]
    # The counts returned are those of z (plus the earlier ones).
    cnwk, cnk = np.zeros_like(nwk), np.zeros(n_topics, np.int64)
    K.count_topics(doc_ptr, words, z, cnwk, cnk)
    np.testing.assert_array_equal(nwk, cnwk + others)
    np.testing.assert_array_equal(nk, cnk + others.sum(0))
    if separate:
        np.testing.assert_array_equal(nloc, cnwk)
        np.testing.assert_array_equal(rloc, cnwk)
        return

    def ll(zz):
        return ref.joint_log_likelihood(doc_ptr, words, zz, alpha, beta, corpus.n_words)
    rand = [ll(np.random.default_rng(s).integers(0, n_topics, words.size)) for s in range(5)]
    # Sequential draws give a far likelier start than uniform topics.
    assert ll(z) > max(rand) + 0.05 * abs(max(rand))
    with pytest.raises(ValueError, match="zero"):
        K.progressive_init(doc_ptr, words, nwk, nk, alpha, beta, state, wptr=wptr, tpos=tpos)


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


@pytest.mark.parametrize("sampler", ["mh", "dense"])
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
