"""Corpora drawn from a known LDA model, for tests, demos and benchmarks."""

import numpy as np

from hpcml.io.corpus import Corpus


def lda_corpus(n_docs, n_words, n_topics, doc_length, *, alpha=0.1, beta=0.01,
               seed=0, length_spread=0.0, zipf=0.0):
    """Draw a corpus from LDA with known topics.

    Parameters
    ----------
    n_docs, n_words, n_topics : int
        D, V and the true K.
    doc_length : int
        Mean tokens per document.
    alpha, beta : float
        Symmetric Dirichlet parameters of document-topic and topic-word
        distributions.
    seed : int
        Everything drawn from ``numpy.random.default_rng(seed)``.
    zipf : float
        When > 0, topics are drawn from a Dirichlet whose base measure falls
        as rank**-zipf (total concentration V * beta), so word frequencies
        follow a Zipf-like law as in real text; 0 gives Dirichlet(beta).
    length_spread : float
        Document lengths are Poisson(doc_length) when > 0 (scaled by this
        factor around the mean), else all equal to ``doc_length``.

    Returns
    -------
    corpus : Corpus
        Vocabulary ``w0, w1, ...``.
    phi : ndarray (K, V)
        The true topic-word distributions.
    theta : ndarray (D, K)
        The true document-topic proportions.
    """
    if n_topics < 1 or n_words < 1 or n_docs < 0 or doc_length < 0:
        raise ValueError("sizes must be positive")
    rng = np.random.default_rng(seed)
    if zipf > 0:
        base = np.arange(1, n_words + 1, dtype=np.float64) ** -zipf
        conc = np.maximum(base * (n_words * beta / base.sum()), 1e-3 * beta)
    else:
        conc = np.full(n_words, beta)
    phi = rng.dirichlet(conc, size=n_topics)
    theta = rng.dirichlet(np.full(n_topics, alpha), size=n_docs)
    if length_spread > 0:
        lengths = np.maximum(0, np.rint(doc_length + length_spread * (
            rng.poisson(doc_length, n_docs) - doc_length))).astype(np.int64)
    else:
        lengths = np.full(n_docs, doc_length, np.int64)
    # Topic counts per document, then words per (document, topic) block:
    # drawing by topic keeps this vectorised over the whole corpus.
    topic_counts = np.stack([rng.multinomial(n, p) for n, p in zip(lengths, theta)]) \
        if n_docs else np.zeros((0, n_topics), np.int64)
    doc_of = np.repeat(np.arange(n_docs), lengths)
    topic_of = np.concatenate([np.repeat(np.arange(n_topics), c) for c in topic_counts]) \
        if n_docs else np.zeros(0, np.int64)
    word_of = np.empty(doc_of.size, np.int64)
    cdf = np.cumsum(phi, axis=1)
    for k in range(n_topics):
        idx = np.nonzero(topic_of == k)[0]
        word_of[idx] = np.minimum(np.searchsorted(cdf[k], rng.random(idx.size) * cdf[k, -1],
                                                  side="right"), n_words - 1)
    key = doc_of * n_words + word_of
    uniq, counts = np.unique(key, return_counts=True)
    indptr = np.zeros(n_docs + 1, np.int64)
    np.cumsum(np.bincount(uniq // n_words, minlength=n_docs), out=indptr[1:])
    corpus = Corpus(indptr, (uniq % n_words).astype(np.int32), counts.astype(np.int32),
                    n_words, [f"w{i}" for i in range(n_words)])
    return corpus, phi, theta
