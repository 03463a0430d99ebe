"""Corpora for topic models: any input format, each rank's share, held-out split.

A corpus path is recognised by name unless a format is given:
``FILE.h5[:/GROUP]`` (HDF5 CSR corpus, group ``corpus`` by default; each
rank reads only its documents), ``docword.NAME.txt[.gz]`` (UCI bag of
words, with its ``vocab.NAME.txt``), anything else plain text (one
document per line).  Each rank takes a contiguous range of documents
holding about the same number of tokens.
"""

import os

import numpy as np

from hpcml.errors import InputError
from hpcml.io.corpus import Corpus, read_hdf5, read_hdf5_info, token_ptr, write_hdf5
from hpcml.io.uci import ENGLISH_STOP_WORDS, read_stop_words, read_text, read_uci, write_uci

FORMATS = ("auto", "hdf5", "uci", "text")


def corpus_format(path, fmt="auto"):
    """The format of a corpus path: 'hdf5', 'uci' or 'text' (``fmt`` unless 'auto')."""
    if fmt != "auto":
        return fmt
    base = os.path.basename(path.split(":")[0])
    if base.endswith((".h5", ".hdf5")):
        return "hdf5"
    if base.startswith("docword."):
        return "uci"
    return "text"


def _split_spec(path):
    file, _, group = path.partition(":")
    return file, group.strip("/") or "corpus"


def token_cuts(token_ptr, size):
    """Document boundaries giving each of ``size`` ranks about equal tokens."""
    n_docs = token_ptr.shape[0] - 1
    cuts = np.searchsorted(token_ptr, np.linspace(0, token_ptr[-1], size + 1), side="left")
    cuts[0], cuts[-1] = 0, n_docs
    return np.maximum.accumulate(np.minimum(cuts, n_docs))


def read_corpus(path, fmt="auto", *, vocab_file=None, stop_words_file=None, min_count=1,
                max_doc_freq=1.0, vocab=None):
    """Read a whole corpus (any rank may; the files are opened read-only).

    Parameters
    ----------
    path : str
        ``FILE.h5[:/GROUP]``, ``docword.NAME.txt[.gz]`` or a text file.
    fmt : {"auto", "hdf5", "uci", "text"}
        The format; "auto" goes by the name.
    vocab_file : str, optional
        UCI: the ``vocab.NAME.txt`` beside the docword file.
    stop_words_file : str, optional
        Text: stop words, one per line (default: a built-in English list).
    min_count : int
        Text: drop words seen fewer times.
    max_doc_freq : float
        Text: drop words in more than this fraction of documents.
    vocab : list of str, optional
        Text: number the words by this vocabulary (a trained model's),
        dropping the others, instead of building one.

    Returns
    -------
    hpcml.io.corpus.Corpus
    """
    fmt = corpus_format(path, fmt)
    if fmt == "uci":
        return read_uci(path, vocab_file)
    if fmt == "text":
        stop = read_stop_words(stop_words_file) if stop_words_file else ENGLISH_STOP_WORDS
        return read_text(path, stop_words=stop, min_count=min_count, max_doc_freq=max_doc_freq,
                         vocab=vocab)
    file, group = _split_spec(path)
    n_docs, _, _, _ = read_hdf5_info(file, group)
    return read_hdf5(file, group, 0, n_docs)


def load_corpus(path, comm, fmt="auto", **options):
    """This rank's documents and the global document count (collective).

    Rank r gets the r-th of ``comm.size`` contiguous document ranges of
    about equal token counts (:func:`token_cuts`).  An HDF5 corpus is read
    range by range (rank 0 alone reads the per-document token offsets to
    deal the ranges); UCI and text files are read whole by every rank
    (convert them once with ``hpcml data corpus convert``).

    Parameters
    ----------
    path, fmt :
        As for :func:`read_corpus`.
    comm : hpcml.comm.Comm
    **options :
        The other keywords of :func:`read_corpus`.

    Returns
    -------
    (hpcml.io.corpus.Corpus, int)
        The local documents (``doc_offset`` their global number) and the
        number of documents in the corpus.
    """
    with comm.guard():
        kind = corpus_format(path, fmt)
    if kind == "hdf5":
        file, group = _split_spec(path)
        # Rank 0 alone reads the per-document token offsets (8 bytes per
        # document of the corpus) and deals the ranges; each rank then reads
        # only its own documents' rows.
        with comm.io():
            cuts = None
            with comm.guard():
                if comm.rank == 0:
                    n_docs, _, tptr, _ = read_hdf5_info(file, group)
                    cuts = np.append(token_cuts(tptr, comm.size), n_docs)
                    del tptr
            cuts = comm.bcast(cuts)
            n_docs = int(cuts[-1])
            with comm.guard():
                local = read_hdf5(file, group, int(cuts[comm.rank]), int(cuts[comm.rank + 1]))
        return local, n_docs
    with comm.io(), comm.guard():
        whole = read_corpus(path, fmt, **options)
        cuts = token_cuts(token_ptr(whole), comm.size)
        local = whole.slice(int(cuts[comm.rank]), int(cuts[comm.rank + 1]))
        n_docs = whole.n_docs
    return local, n_docs


def take_docs(corpus, keep):
    """The documents of ``corpus`` where ``keep`` is true, and their global ids."""
    ids = np.arange(corpus.n_docs) + corpus.doc_offset
    lengths = np.diff(corpus.indptr)
    entry_keep = np.repeat(keep, lengths)
    indptr = np.zeros(int(keep.sum()) + 1, np.int64)
    np.cumsum(lengths[keep], out=indptr[1:])
    sub = Corpus(indptr, corpus.indices[entry_keep], corpus.counts[entry_keep],
                 corpus.n_words, corpus.vocab, 0)
    return sub, ids[keep]


def heldout_mask(doc_ids, fraction):
    """Documents held out for perplexity: a hash of the global document id,
    so the split does not depend on the rank count."""
    if fraction <= 0:
        return np.zeros(doc_ids.shape[0], bool)
    h = (doc_ids.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(1 << 32)
    return h < np.uint64(int(fraction * (1 << 32)))


def split_heldout(corpus, fraction):
    """Split this rank's documents into training and held-out ones.

    Returns
    -------
    train : Corpus
    train_ids : ndarray of int
        Global numbers of the training documents.
    heldout : Corpus or None
        None when ``fraction`` is 0.
    """
    held = heldout_mask(np.arange(corpus.n_docs) + corpus.doc_offset, fraction)
    train, train_ids = take_docs(corpus, ~held)
    heldout = take_docs(corpus, held)[0] if fraction > 0 else None
    return train, train_ids, heldout


def _uci_vocab_path(docword, given):
    if given:
        return given
    folder, base = os.path.split(docword)
    base = base[:-3] if base.endswith(".gz") else base
    return os.path.join(folder, base.replace("docword.", "vocab.", 1))


def write_corpus(path, corpus, *, vocab_output=None, extra=None):
    """Write a whole corpus as HDF5 (``FILE.h5[:/GROUP]``) or UCI (``docword.NAME.txt[.gz]``).

    ``vocab_output`` names a UCI vocabulary file (default ``vocab.NAME.txt``
    beside the docword file); ``extra`` maps HDF5 dataset paths to arrays
    stored beside the corpus (HDF5 only).
    """
    fmt = corpus_format(path)
    if fmt == "hdf5":
        file, group = _split_spec(path)
        write_hdf5(file, corpus, group, extra=extra)
    elif fmt == "uci":
        write_uci(path, corpus, _uci_vocab_path(path, vocab_output) if corpus.vocab else None)
    else:
        raise InputError(f"{path}: output must be FILE.h5[:/GROUP] or docword.NAME.txt[.gz]")
