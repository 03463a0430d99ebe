"""Hybrid word-topic rows (dense for frequent words, hash rows for the rest)."""

import numpy as np
import pytest

from hpcml.kernels import lda as K
from hpcml.kernels.lda_rows import (HybridRows, apply_changes_rows, apply_rank_topics_rows,
                                    count_topics_rows, mh_sweep_rows, progressive_init_rows)
from hpcml.topics.synthetic import lda_corpus


def _corpus(n_topics, seed=4):
    # Zipf-like frequencies: a few words get dense rows, most hash rows.
    corpus, _, _ = lda_corpus(30, 300, 4, 40, seed=seed, length_spread=1.0, zipf=1.0)
    doc_ptr, words = corpus.tokens()
    z = np.random.default_rng(seed).integers(0, n_topics, words.size).astype(np.uint16)
    return corpus, doc_ptr, words, z


def test_rows_agree_with_dense_counts_through_random_updates():
    n_topics = 200
    corpus, doc_ptr, words, z = _corpus(n_topics)
    freq = np.bincount(words, minlength=corpus.n_words)
    rows = HybridRows(freq, n_topics, np.uint16)
    assert 0 < rows.n_dense < int((freq > 0).sum())  # both kinds present
    nk = np.zeros(n_topics, np.int64)
    count_topics_rows(words, z, rows, nk)
    nwk = np.zeros((corpus.n_words, n_topics), np.int32)
    nk_dense = np.zeros(n_topics, np.int64)
    K.count_topics(doc_ptr, words, z, nwk, nk_dense)
    np.testing.assert_array_equal(rows.to_dense(), nwk)
    np.testing.assert_array_equal(nk, nk_dense)
    # Many moves of tokens between topics (removals shift hash entries back):
    # every count, the non-zeros and the log-likelihood still agree.
    wptr, tpos = K.word_index(words, corpus.n_words)
    zw = K.word_order(z, tpos)
    starts = np.stack([wptr[:-1], wptr[1:]])
    dense_zw = zw.copy()
    rng = np.random.default_rng(1)
    for _ in range(20):
        new = rng.integers(0, n_topics, words.size).astype(np.uint16)
        if _ % 2:
            new[rng.random(words.size) < 0.8] = 3  # rows shrink to few topics
        apply_rank_topics_rows(new, starts, 0, zw, rows, nk, replace=True)
        K.apply_rank_topics(new, starts, 0, dense_zw, nwk, nk_dense, replace=True)
        np.testing.assert_array_equal(rows.to_dense(), nwk)
    np.testing.assert_array_equal(nk, nk_dense)
    for w in rng.integers(0, corpus.n_words, 50):
        for k in rng.integers(0, n_topics, 5):
            assert rows.get(w, k) == nwk[w, k]
    ptr, topic, count = rows.nonzeros()
    rptr, rtopic, rcum = K.sparse_rows(nwk)
    np.testing.assert_array_equal(ptr, rptr)
    np.testing.assert_array_equal(topic, rtopic)
    for got, want in zip(rows.cumulative_rows(), (rptr, rtopic, rcum)):
        np.testing.assert_array_equal(got, want)
    assert rows.word_log_likelihood(0.05) == pytest.approx(K.word_log_likelihood(nwk, 0.05),
                                                          rel=1e-12)
    # Memory follows the non-zeros: far below V x K cells.
    assert rows.nbytes < 0.5 * corpus.n_words * n_topics * 2


@pytest.mark.parametrize("n_topics", [6, 300])
def test_mh_on_rows_samples_what_mh_on_dense_counts_samples(n_topics):
    corpus, doc_ptr, words, z = _corpus(n_topics, seed=5)
    V = corpus.n_words
    wptr, tpos = K.word_index(words, V)
    alpha = np.random.default_rng(2).uniform(0.05, 0.5, n_topics)
    nwk = np.zeros((V, n_topics), np.int32)
    nk = np.zeros(n_topics, np.int64)
    K.count_topics(doc_ptr, words, z, nwk, nk)
    rows = HybridRows(np.bincount(words, minlength=V), n_topics, np.int32)
    rnk = np.zeros(n_topics, np.int64)
    count_topics_rows(words, z, rows, rnk)
    zw = K.word_order(z, tpos)
    rz, rzw = z.copy(), zw.copy()
    state = K.seed_state(3)
    rstate = state.copy()
    for _ in range(3):
        K.mh_sweep(doc_ptr, words, z, nwk, nk, alpha, 0.05, state, wptr=wptr, tpos=tpos, zw=zw)
        mh_sweep_rows(doc_ptr, words, rz, rows, rnk, alpha, 0.05, rstate, wptr=wptr, tpos=tpos,
                      zw=rzw)
    np.testing.assert_array_equal(rz, z)
    np.testing.assert_array_equal(rzw, zw)
    np.testing.assert_array_equal(rows.to_dense(), nwk)
    np.testing.assert_array_equal(rnk, nk)
    assert rstate[0] == state[0]


def test_changes_from_another_rank_apply_to_rows():
    n_topics = 50
    corpus, doc_ptr, words, z = _corpus(n_topics, seed=6)
    V = corpus.n_words
    wptr, tpos = K.word_index(words, V)
    zw = K.word_order(z, tpos)
    rows = HybridRows(np.bincount(words, minlength=V), n_topics, np.uint16)
    nk = np.zeros(n_topics, np.int64)
    count_topics_rows(words, z, rows, nk)
    new = zw.copy()
    pick = np.random.default_rng(0).random(new.size) < 0.3
    new[pick] = (new[pick] + 7) % n_topics
    changed = np.nonzero(new != zw)[0]
    packed = (changed.astype(np.int64) << 24) | new[changed].astype(np.int64)
    apply_changes_rows(packed, wptr, zw, rows, nk)
    np.testing.assert_array_equal(zw, new)
    nwk = np.zeros((V, n_topics), np.int32)
    K.count_topics(doc_ptr, words, new[tpos], nwk, np.zeros(n_topics, np.int64))
    np.testing.assert_array_equal(rows.to_dense(), nwk)
    np.testing.assert_array_equal(nk, nwk.sum(0))


def test_progressive_start_on_rows_draws_what_the_dense_one_draws():
    n_topics = 40
    corpus, doc_ptr, words, _ = _corpus(n_topics, seed=7)
    V = corpus.n_words
    wptr, tpos = K.word_index(words, V)
    alpha = np.full(n_topics, 0.1)
    nwk = np.zeros((V, n_topics), np.int32)
    nk = np.zeros(n_topics, np.int64)
    state = K.seed_state(4)
    rstate = state.copy()
    z, zw = K.progressive_init(doc_ptr, words, nwk, nk, alpha, 0.05, state, wptr=wptr,
                               tpos=tpos, mh_steps=2, smooth=0.1)
    rows = HybridRows(np.bincount(words, minlength=V), n_topics, np.uint16)
    rnk = np.zeros(n_topics, np.int64)
    rzw = np.zeros_like(zw)
    rz = progressive_init_rows(doc_ptr, words, rows, rnk, alpha, 0.05, rstate, wptr=wptr,
                               tpos=tpos, zw=rzw, mh_steps=2, smooth=0.1)
    np.testing.assert_array_equal(rz, z)
    np.testing.assert_array_equal(rzw, zw)
    np.testing.assert_array_equal(rows.to_dense(), nwk)
    assert rstate[0] == state[0] and np.array_equal(rnk, nk)
    assert rows.beta_numerator(0.05) == pytest.approx(K.beta_numerator(nwk, 0.05), rel=1e-12)
