"""Bag-of-words corpora in memory and in HDF5.

A :class:`Corpus` is a CSR matrix of documents x words holding counts, plus an
optional vocabulary.  On disk it is an HDF5 group with the CSR layout used
across hpcml (``indptr``, ``indices``, ``data`` and an attribute ``shape``),
plus ``token_ptr`` (running token totals, so ranks can split the documents
into ranges of equal work after reading only that small array) and
``vocab`` (UTF-8 strings).

Empty documents (no words) are kept as empty rows so that document numbers
line up with the source; samplers skip them and their topic proportions are
the prior mean.
"""

from dataclasses import dataclass

import h5py
import numpy as np

from hpcml.errors import InputError
from hpcml.io.hdf5 import atomic_file


@dataclass
class Corpus:
    """Documents as CSR counts.

    Attributes
    ----------
    indptr : ndarray of int64, shape (D+1,)
    indices : ndarray of int32, shape (nnz,)  word ids, 0-based
    counts : ndarray of int32, shape (nnz,)   positive counts
    n_words : int                             vocabulary size V
    vocab : list of str or None
    doc_offset : int                          global number of the first document
    """

    indptr: np.ndarray
    indices: np.ndarray
    counts: np.ndarray
    n_words: int
    vocab: list = None
    doc_offset: int = 0

    @property
    def n_docs(self):
        return self.indptr.shape[0] - 1

    @property
    def n_tokens(self):
        return int(self.counts.sum(dtype=np.int64))

    def tokens(self, dtype=None):
        """Expand counts into one entry per token.

        Returns
        -------
        doc_ptr : ndarray of int64, shape (D+1,)
        words : ndarray, shape (N,)  uint16 when V <= 65536, else int32
        """
        if dtype is None:
            dtype = np.uint16 if self.n_words <= 65536 else np.int32
        doc_ptr = token_ptr(self)
        words = np.repeat(self.indices, self.counts).astype(dtype, copy=False)
        return doc_ptr, words

    def slice(self, start, stop):
        """Documents ``start:stop`` as a new corpus (views where possible)."""
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        return Corpus(self.indptr[start:stop + 1] - lo, self.indices[lo:hi],
                      self.counts[lo:hi], self.n_words, self.vocab,
                      self.doc_offset + start)

    def dense(self):
        """Documents x words count matrix (tests and small corpora only)."""
        out = np.zeros((self.n_docs, self.n_words), np.int64)
        rows = np.repeat(np.arange(self.n_docs), np.diff(self.indptr))
        np.add.at(out, (rows, self.indices), self.counts)
        return out


def from_token_lists(docs, n_words, vocab=None):
    """Build a corpus from lists of word ids (one list per document)."""
    indptr = [0]
    indices, counts = [], []
    for doc in docs:
        ids, cnt = np.unique(np.asarray(doc, dtype=np.int64), return_counts=True)
        indices.append(ids)
        counts.append(cnt)
        indptr.append(indptr[-1] + ids.size)
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64))
    return Corpus(np.asarray(indptr, np.int64), cat(indices).astype(np.int32),
                  cat(counts).astype(np.int32), int(n_words), vocab)


def token_ptr(corpus):
    """Running token totals per document, int64 (D+1,)."""
    rows = np.repeat(np.arange(corpus.n_docs), np.diff(corpus.indptr))
    per_doc = np.bincount(rows, weights=corpus.counts, minlength=corpus.n_docs)
    out = np.zeros(corpus.n_docs + 1, np.int64)
    np.cumsum(per_doc.astype(np.int64), out=out[1:])
    return out


def write_hdf5(path, corpus, group="corpus", extra=None):
    """Write a whole corpus to ``path:/group`` under a temporary name, then rename.

    ``extra`` maps dataset paths (e.g. ``truth/phi``) to arrays stored beside it.
    """
    with atomic_file(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, value in (extra or {}).items():
                f.create_dataset(key, data=np.asarray(value))
            g = f.create_group(group)
            g.attrs["shape"] = np.array([corpus.n_docs, corpus.n_words], np.int64)
            g.attrs["format"] = "csr"
            g.create_dataset("indptr", data=corpus.indptr.astype(np.int64))
            g.create_dataset("indices", data=corpus.indices.astype(np.int32))
            g.create_dataset("data", data=corpus.counts.astype(np.int32))
            g.create_dataset("token_ptr", data=token_ptr(corpus))
            if corpus.vocab is not None:
                g.create_dataset("vocab", data=np.array(corpus.vocab, dtype=object),
                                 dtype=h5py.string_dtype("utf-8"))


def _open_group(path, group):
    try:
        f = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as exc:
        raise InputError(f"{path}: cannot open as HDF5 ({exc.__class__.__name__})") from None
    if group not in f or not isinstance(f[group], h5py.Group):
        f.close()
        raise InputError(f"{path}: no corpus group '/{group}'")
    g = f[group]
    for name in ("indptr", "indices", "data"):
        if name not in g:
            f.close()
            raise InputError(f"{path}:/{group}: missing dataset '{name}'")
    return f, g


def read_hdf5_info(path, group="corpus"):
    """Return ``(n_docs, n_words, token_ptr, vocab)`` of an HDF5 corpus.

    ``token_ptr`` is small (D+1 integers) and lets each rank choose its
    document range before reading any words.
    """
    f, g = _open_group(path, group)
    with f:
        shape = g.attrs.get("shape")
        if shape is None or len(shape) != 2:
            raise InputError(f"{path}:/{group}: attribute 'shape' must be (docs, words)")
        n_docs, n_words = int(shape[0]), int(shape[1])
        indptr = g["indptr"][...]
        if indptr.shape != (n_docs + 1,) or np.any(np.diff(indptr) < 0):
            raise InputError(f"{path}:/{group}: indptr does not match shape {tuple(shape)}")
        if "token_ptr" in g:
            tptr = g["token_ptr"][...].astype(np.int64)
        else:
            data = g["data"][...].astype(np.int64)
            tptr = np.concatenate([[0], np.cumsum(data)])[indptr]
        vocab = None
        if "vocab" in g:
            vocab = [v.decode() if isinstance(v, bytes) else str(v) for v in g["vocab"][...]]
            if len(vocab) != n_words:
                raise InputError(f"{path}:/{group}: vocab has {len(vocab)} words, shape says {n_words}")
    return n_docs, n_words, tptr, vocab


def read_hdf5(path, group="corpus", start=0, stop=None):
    """Read documents ``start:stop`` of an HDF5 corpus (only those rows).

    Word ids are checked against the vocabulary size and counts must be
    non-negative (zeros are dropped); an error names the global document.
    """
    f, g = _open_group(path, group)
    with f:
        n_docs, n_words = (int(v) for v in g.attrs["shape"])
        stop = n_docs if stop is None else stop
        indptr = g["indptr"][start:stop + 1].astype(np.int64)
        lo, hi = int(indptr[0]), int(indptr[-1])
        indices = g["indices"][lo:hi].astype(np.int32)
        counts = g["data"][lo:hi]
        vocab = None
        if "vocab" in g:
            vocab = [v.decode() if isinstance(v, bytes) else str(v) for v in g["vocab"][...]]
    indptr -= lo
    bad = np.nonzero((indices < 0) | (indices >= n_words) | (counts < 0))[0]
    if bad.size:
        doc = int(np.searchsorted(indptr, bad[0], side="right")) - 1 + start
        what = "negative count" if counts[bad[0]] < 0 else f"word id {indices[bad[0]]} out of range [0, {n_words})"
        raise InputError(f"{path}:/{group}: document {doc}: {what}")
    if np.any(counts == 0):
        keep = counts != 0
        rows = np.repeat(np.arange(stop - start), np.diff(indptr))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=stop - start))])
        indices, counts = indices[keep], counts[keep]
    return Corpus(indptr, indices, counts.astype(np.int32), n_words, vocab, start)
