"""A trained topic model with its counts fixed: fold-in, perplexity, top words, model files.

A model file (written by :meth:`TopicModel.save`, through
:func:`hpcml.io.hdf5.write_output`, so atomically and with provenance)
holds ``word_topic`` (V x K counts, int32), ``topic_totals``, ``alpha``,
``beta`` and, when known, ``vocab`` (UTF-8); a trained model adds
``history/*`` (per iteration; timings per iteration and rank) and the
row-sharded ``doc_topics`` and ``doc_ids`` of its training documents.

Fold-in (Gibbs sampling of new documents' topics against the fixed
counts) is :func:`hpcml.kernels.lda.fold_in`; this module is where it is
called, for topic proportions (:meth:`TopicModel.transform`) and for
held-out perplexity by document completion (:func:`completion_perplexity`,
also behind :meth:`hpcml.topics.lda.LDA.perplexity`).
"""

import logging
import math

import numpy as np

from hpcml.errors import InputError
from hpcml.io.hdf5 import write_output
from hpcml.kernels import lda as kern

log = logging.getLogger("hpcml")


#: Tokens × sweeps of one fold-in call (about a second of sampling).
_FOLD_IN_BLOCK = 1 << 24


def _document_blocks(doc_ptr, tokens):
    """``(first, end)`` document ranges of about ``tokens`` tokens each (at least one document)."""
    n_docs = doc_ptr.shape[0] - 1
    lo = 0
    while lo < n_docs:
        hi = int(np.searchsorted(doc_ptr, doc_ptr[lo] + max(tokens, 1), side="right")) - 1
        hi = min(max(hi, lo + 1), n_docs)
        yield lo, hi
        lo = hi


def completion_split(doc_ptr, words):
    """Split each document's tokens for document completion.

    Alternate tokens (in the stored order, which groups equal words) go to the
    observed and the held part, so each half sees about half of every word.
    Returns ``(obs_ptr, obs_words, held_ptr, held_words)``.
    """
    n_docs = doc_ptr.shape[0] - 1
    pos = np.arange(words.shape[0]) - np.repeat(doc_ptr[:-1], np.diff(doc_ptr))
    held = (pos % 2) == 1
    doc_of = np.repeat(np.arange(n_docs), np.diff(doc_ptr))

    def ptr(mask):
        out = np.zeros(n_docs + 1, np.int64)
        np.cumsum(np.bincount(doc_of[mask], minlength=n_docs), out=out[1:])
        return out
    return ptr(~held), words[~held], ptr(held), words[held]


def completion_perplexity(doc_ptr, words, nwk, nk, alpha, beta, state, comm, *, sweeps=20,
                          mh_steps=2):
    """Held-out perplexity by document completion over all ranks (collective).

    Each rank's documents (``doc_ptr``, ``words``) have their alternate
    tokens folded in with the counts ``nwk``, ``nk`` fixed and the others
    scored; ``state`` (advanced in place) drives the fold-in.  Returns
    ``exp(-log-likelihood / held tokens)``, NaN without held tokens.
    """
    obs_ptr, obs_w, held_ptr, held_w = completion_split(doc_ptr, words)
    ndk = kern.fold_in(obs_ptr, obs_w, nwk, nk, alpha, beta, state, sweeps=sweeps,
                       mh_steps=mh_steps)
    ll = kern.heldout_log_likelihood(held_ptr, held_w, ndk, alpha, nwk, nk, beta)
    buf = np.array([ll, float(held_w.shape[0])])
    comm.allreduce(buf)
    return math.exp(-buf[0] / buf[1]) if buf[1] > 0 else float("nan")


def proportions(ndk, alpha):
    """Topic proportions, float32 (D, K), from document-topic counts (D, K).

    The posterior mean: empty documents get the prior mean alpha / sum(alpha).
    """
    return ((ndk + alpha) / (ndk.sum(1, keepdims=True) + alpha.sum())).astype(np.float32)


def top_words(word_topic, n, vocab=None):
    """The ``n`` most frequent words of every topic of V x K counts (ids, or words of ``vocab``)."""
    order = np.argsort(-word_topic.T.astype(np.int64), axis=1, kind="stable")[:, :n]
    if not vocab:
        return order.tolist()
    return [[vocab[i] for i in row] for row in order]


class TopicModel:
    """LDA topics with fixed counts: what infers, scores and describes new documents.

    Parameters
    ----------
    word_topic : array of int, shape (V, K)
        Word-topic counts (by input word id).
    alpha : float or array of shape (K,)
        Document-topic prior.
    beta : float
        Topic-word prior.
    comm : hpcml.comm.Comm
        Rank r draws from stream r of a seed; perplexity sums over ranks.
    vocab : list of str, optional
        The words, by id.
    """

    def __init__(self, word_topic, alpha, beta, comm, *, vocab=None):
        self.word_topic = np.ascontiguousarray(word_topic, dtype=np.int32)
        self.topic_totals = self.word_topic.sum(axis=0, dtype=np.int64)
        self.alpha = np.ascontiguousarray(np.broadcast_to(
            np.asarray(alpha, np.float64), self.topic_totals.shape))
        self.beta = float(beta)
        self.comm = comm
        self.vocab = vocab

    @property
    def n_words(self):
        return self.word_topic.shape[0]

    @property
    def n_topics(self):
        return self.word_topic.shape[1]

    @classmethod
    def load(cls, path, comm):
        """Read a model file (rank 0 reads, every rank gets the model; collective)."""
        import h5py
        parts = None
        with comm.io(), comm.guard():
            if comm.rank == 0:
                try:
                    with h5py.File(path, "r") as f:
                        parts = {"word_topic": f["word_topic"][...],
                                 "alpha": f["alpha"][...], "beta": float(f["beta"][()]),
                                 "vocab": [v.decode("utf-8") for v in f["vocab"][...]]
                                 if "vocab" in f else None}
                except (OSError, KeyError) as exc:
                    raise InputError(f"{path}: not an LDA model file ({exc})") from None
        parts = comm.bcast_obj(parts)
        return cls(parts["word_topic"], parts["alpha"], parts["beta"], comm, vocab=parts["vocab"])

    def save(self, path, *, history=None, doc_topics=None, doc_ids=None, params=None):
        """Write the model file atomically, with provenance (collective).

        Parameters
        ----------
        history : dict of str to array, optional
            Training history, stored as ``history/KEY``.
        doc_topics, doc_ids : ndarray, optional
            This rank's rows of the training documents' topic proportions
            and their global numbers (row-sharded datasets).
        params : dict, optional
            The parameters that made the model (provenance).
        """
        small = {"word_topic": self.word_topic, "topic_totals": self.topic_totals,
                 "alpha": self.alpha, "beta": np.array(self.beta)}
        small.update({f"history/{key}": value for key, value in (history or {}).items()})
        if self.vocab is not None:
            small["vocab"] = np.array([w.encode("utf-8") for w in self.vocab])
        sharded = {}
        if doc_topics is not None:
            sharded = {"doc_topics": doc_topics, "doc_ids": np.asarray(doc_ids, np.int64)}
        write_output(path, self.comm, small=small, sharded=sharded,
                     attrs={"n_topics": self.n_topics, "n_words": self.n_words,
                            "n_tokens": int(self.topic_totals.sum())},
                     params=params)

    def _check_words(self, corpus):
        """The documents' vocabulary is the model's, and some of their words are known (collective)."""
        self.comm.agree(corpus.n_words == self.n_words,
                        f"the documents have {corpus.n_words} words, the model {self.n_words}")
        lengths = np.diff(corpus.indptr)   # entries per document: 0 when no word is known
        counts = self.comm.allreduce(np.array([corpus.n_docs, int(np.sum(lengths == 0))], np.int64))
        self.comm.agree(counts[1] < counts[0] or counts[0] == 0,
                        f"none of the {counts[0]} documents has a word of the model's vocabulary")
        if counts[1]:
            log.warning("%d of %d documents have no word of the model: nothing to fold in or "
                        "score, their topic proportions are the prior's", counts[1], counts[0])

    def transform(self, corpus, *, sweeps=30, mh_steps=2, seed=0):
        """Topic proportions of new documents, folded in with the counts fixed.

        Each rank passes its own documents; collective only for the check
        that their vocabulary is the model's.

        Parameters
        ----------
        corpus : hpcml.io.corpus.Corpus
        sweeps : int
            Gibbs sweeps over each document.
        mh_steps : int
            Metropolis-Hastings proposal pairs per token.
        seed : int
            Rank r draws from stream r of this seed.

        Returns
        -------
        ndarray of float32, shape (D, K)
        """
        self._check_words(corpus)
        doc_ptr, words = corpus.tokens()
        state = kern.seed_state(seed, self.comm.rank)
        rows = kern.sparse_rows(self.word_topic)
        parts = [np.zeros((0, self.n_topics), np.int32)]
        # The kernel samples one document after another from one generator, so
        # folding in a block of documents at a time gives the same draws and
        # returns to Python often enough for a stop signal to act within seconds.
        for lo, hi in _document_blocks(doc_ptr, _FOLD_IN_BLOCK // max(sweeps, 1)):
            parts.append(kern.fold_in(doc_ptr[lo:hi + 1] - doc_ptr[lo], words[doc_ptr[lo]:doc_ptr[hi]],
                                      self.word_topic, self.topic_totals, self.alpha, self.beta, state,
                                      sweeps=sweeps, mh_steps=mh_steps, rows=rows))
            self.comm.mark_iteration()   # one block of documents (no messages)
        return proportions(np.concatenate(parts), self.alpha)

    def perplexity(self, heldout, *, sweeps=20, mh_steps=2, seed=0):
        """Held-out perplexity of every rank's ``heldout`` documents (collective).

        Document completion (:func:`completion_perplexity`), the same
        computation as :meth:`hpcml.topics.lda.LDA.perplexity` during training.
        """
        self._check_words(heldout)
        doc_ptr, words = heldout.tokens()
        return completion_perplexity(doc_ptr, words, self.word_topic, self.topic_totals,
                                     self.alpha, self.beta, kern.seed_state(seed, self.comm.rank),
                                     self.comm, sweeps=sweeps, mh_steps=mh_steps)

    def top_words(self, n=10, vocab=None):
        """The ``n`` most probable words of every topic (words of ``vocab``, by
        default the model's own, else ids)."""
        return top_words(self.word_topic, n, self.vocab if vocab is None else vocab)
