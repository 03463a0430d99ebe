"""The UCI bag-of-words format and plain-text corpora.

UCI (``docword.NAME.txt[.gz]`` and ``vocab.NAME.txt``, as published at
archive.ics.uci.edu "Bag of Words"): three header lines D, W, NNZ, then NNZ
lines ``docID wordID count``, all 1-based.  What the reader accepts beyond
the letter of the format, and what it rejects:

* gzip is detected from the file's magic bytes, not its name;
* blank lines (including trailing ones) and CRLF endings are ignored;
* entries need not be sorted; a repeated (doc, word) pair is summed;
* zero counts are dropped; negative counts, ids outside 1..D / 1..W, a line
  without exactly three integers, and a body whose number of entries differs
  from NNZ are errors naming the file and line (:class:`InputError`);
* documents that have no entry are kept as empty documents, so that
  document numbers stay those of the file.

Plain text: one document per line, tokenised into runs of letters and
digits (apostrophes inside words kept), lower-cased, stop words removed,
then words are pruned by minimum total count and maximum document
frequency.
"""

import gzip
import re

import numpy as np
from numba import njit

from hpcml.errors import InputError
from hpcml.io.corpus import Corpus, from_token_lists
from hpcml.io.hdf5 import atomic_file
from hpcml.kernels import JIT
from hpcml.runtime import available_memory

_BAD_FIELD, _FIELD_COUNT, _NEGATIVE, _DOC_RANGE, _WORD_RANGE, _TOO_MANY = range(1, 7)


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: corrupt gzip data ({exc})") from None
    return raw


def _read_text(path):
    """A text file (gzip allowed) as ``str``, refusing bytes that are not UTF-8.

    Decoding with replacement would split words at the bad bytes ("café"
    in Latin-1 became "caf"): a silently different corpus.
    """
    raw = _read_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(f"{path}: not UTF-8 text at line {line} (byte {exc.start}); convert it "
                         "first, e.g. iconv -f latin1 -t utf-8") from None


@njit(**JIT)
def _parse_body(buf, pos, line, n_docs, n_words, docs, words, counts):
    """Parse ``doc word count`` lines from ``buf[pos:]``.

    Returns (entries, error code, line of the error or last line, field).
    """
    n = buf.shape[0]
    cap = docs.shape[0]
    m = 0
    vals = np.zeros(3, np.int64)
    while pos < n:
        nf = 0
        while pos < n and buf[pos] != 10:
            c = buf[pos]
            if c == 32 or c == 9 or c == 13:
                pos += 1
                continue
            neg = False
            if c == 45:
                neg = True
                pos += 1
            start = pos
            v = 0
            while pos < n and 48 <= buf[pos] <= 57:
                v = v * 10 + (buf[pos] - 48)
                pos += 1
            if pos == start or (pos < n and buf[pos] != 32 and buf[pos] != 9
                                and buf[pos] != 13 and buf[pos] != 10):
                return m, _BAD_FIELD, line, nf
            if nf < 3:
                vals[nf] = -v if neg else v
            nf += 1
        if nf != 0:
            if nf != 3:
                return m, _FIELD_COUNT, line, nf
            if vals[2] < 0:
                return m, _NEGATIVE, line, 2
            if vals[0] < 1 or vals[0] > n_docs:
                return m, _DOC_RANGE, line, 0
            if vals[1] < 1 or vals[1] > n_words:
                return m, _WORD_RANGE, line, 1
            if m == cap:
                return m, _TOO_MANY, line, 0
            docs[m] = vals[0] - 1
            words[m] = vals[1] - 1
            counts[m] = vals[2]
            m += 1
        pos += 1
        line += 1
    return m, 0, line - 1, 0


def _header(raw, path):
    """Parse the three header lines; return (values, byte offset of the body)."""
    values = []
    pos = 0
    for lineno in (1, 2, 3):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end
        text = raw[pos:end].strip()
        name = ("D (documents)", "W (words)", "NNZ (entries)")[lineno - 1]
        if not text.isdigit():
            got = text[:40].decode("utf-8", "replace") if text else "end of file" if end == len(raw) else "a blank line"
            raise InputError(f"{path}:{lineno}: expected header {name} as a non-negative integer, got '{got}'")
        values.append(int(text))
        pos = end + 1
    return values, pos


def read_vocab(path, expected=None):
    """Read ``vocab.NAME.txt`` (one word per line; trailing blank lines ignored)."""
    lines = _read_text(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for i, word in enumerate(lines):
        if not word.strip():
            raise InputError(f"{path}:{i + 1}: blank line inside the vocabulary")
    vocab = [w.strip() for w in lines]
    if expected is not None and len(vocab) != expected:
        raise InputError(f"{path}:{len(vocab)}: vocabulary has {len(vocab)} words "
                         f"but the docword header says W = {expected}")
    return vocab


def _check_header_sizes(path, n_docs, n_words, nnz, body_bytes):
    """Refuse header sizes that the file cannot hold or memory cannot: before allocating by them."""
    # An entry "d w c" takes at least 6 bytes with its newline (5 for a last line without).
    # A small excess is left to the parser, whose message names the line.
    most = (body_bytes + 1) // 6
    if nnz > max(most, 10**6):
        raise InputError(f"{path}:3: header NNZ = {nnz}, but the {body_bytes} bytes after the header "
                         f"hold at most {most} entries")
    if n_docs * max(n_words, 1) >= 2**62:
        raise InputError(f"{path}:1: header D x W = {n_docs} x {n_words} is too large to index")
    available = available_memory()
    if available is not None and 8 * (n_docs + 1) > available:
        raise InputError(f"{path}:1: header D = {n_docs} documents need {8 * (n_docs + 1) / 1e9:.1f} GB "
                         f"of offsets, and {available / 1e9:.1f} GB are available")


def read_uci(docword, vocab=None):
    """Read a UCI bag-of-words corpus.

    Parameters
    ----------
    docword : str
        Path of ``docword.NAME.txt`` or ``docword.NAME.txt.gz``.
    vocab : str, optional
        Path of ``vocab.NAME.txt``; its length must equal W.

    Returns
    -------
    Corpus

    Raises
    ------
    InputError
        With ``path:line:`` and the reason, for any malformed input.
    """
    raw = _read_bytes(docword)
    (n_docs, n_words, nnz), body = _header(raw, docword)
    _check_header_sizes(docword, n_docs, n_words, nnz, len(raw) - body)
    buf = np.frombuffer(raw, dtype=np.uint8)
    docs = np.empty(nnz, np.int64)
    words = np.empty(nnz, np.int32)
    counts = np.empty(nnz, np.int64)
    m, code, line, field = _parse_body(buf, body, 4, n_docs, n_words, docs, words, counts)
    where = f"{docword}:{line}"
    if code == _BAD_FIELD:
        raise InputError(f"{where}: field {field + 1} is not an integer")
    if code == _FIELD_COUNT:
        raise InputError(f"{where}: expected 3 fields 'docID wordID count', got {field}")
    if code == _NEGATIVE:
        raise InputError(f"{where}: negative count")
    if code == _DOC_RANGE:
        raise InputError(f"{where}: document id out of range 1..{n_docs} (header D)")
    if code == _WORD_RANGE:
        raise InputError(f"{where}: word id out of range 1..{n_words} (header W)")
    if code == _TOO_MANY:
        raise InputError(f"{where}: more entries than the header's NNZ = {nnz}")
    if m != nnz:
        raise InputError(f"{where}: file ends after {m} entries but the header's NNZ = {nnz}")
    voc = read_vocab(vocab, n_words) if vocab is not None else None
    return _to_corpus(docs, words, counts, n_docs, n_words, voc)


def _to_corpus(docs, words, counts, n_docs, n_words, vocab):
    keep = counts > 0
    docs, words, counts = docs[keep], words[keep], counts[keep]
    key = docs * n_words + words
    order = np.argsort(key, kind="stable")
    key, counts = key[order], counts[order]
    uniq, first = np.unique(key, return_index=True)
    summed = np.add.reduceat(counts, first) if counts.size else counts
    if summed.size and summed.max() > np.iinfo(np.int32).max:
        raise InputError("a (document, word) count exceeds 2^31 - 1")
    doc_of = uniq // n_words if n_words else uniq
    indptr = np.zeros(n_docs + 1, np.int64)
    np.cumsum(np.bincount(doc_of, minlength=n_docs), out=indptr[1:])
    return Corpus(indptr, (uniq % n_words).astype(np.int32) if n_words else uniq.astype(np.int32),
                  summed.astype(np.int32), n_words, vocab)


def write_uci(docword, corpus, vocab=None):
    """Write ``corpus`` in UCI format (gzip when ``docword`` ends in .gz).

    Written under a temporary name and renamed when complete.
    """
    rows = np.repeat(np.arange(corpus.n_docs), np.diff(corpus.indptr)) + 1
    body = np.column_stack([rows, corpus.indices.astype(np.int64) + 1,
                            corpus.counts.astype(np.int64)])
    head = f"{corpus.n_docs}\n{corpus.n_words}\n{corpus.counts.size}\n"
    _atomic_write(docword, head.encode() + _format_rows(body))
    if vocab is not None:
        if corpus.vocab is None:
            raise InputError("the corpus has no vocabulary to write")
        _atomic_write(vocab, ("\n".join(corpus.vocab) + "\n").encode())


def _format_rows(body):
    if body.shape[0] == 0:
        return b""
    lines = "\n".join(" ".join(map(str, r)) for r in body.tolist())
    return (lines + "\n").encode()


def _atomic_write(path, data):
    with atomic_file(path) as tmp:
        with (gzip.open(tmp, "wb") if path.endswith(".gz") else open(tmp, "wb")) as f:
            f.write(data)


# A short English stop list (function words); pass your own with stop_words=.
ENGLISH_STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been
before being below between both but by can could did do does doing down during
each few for from further had has have having he her here hers herself him
himself his how i if in into is it its itself just me more most my myself no nor
not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these
they this those through to too under until up very was we were what when where
which while who whom why will with would you your yours yourself yourselves
s t don didn doesn isn wasn weren won wouldn shouldn couldn also may might must
shall one two said
""".split())

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text, stop_words=ENGLISH_STOP_WORDS):
    """Lower-case ``text`` and split it into words, dropping stop words."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in stop_words]


def read_text(path, *, stop_words=ENGLISH_STOP_WORDS, min_count=1, max_doc_freq=1.0,
              vocab=None):
    """Read a plain-text corpus (one document per line).

    Parameters
    ----------
    path : str
        UTF-8 text, gzip allowed; each line is one document (blank lines are
        empty documents, kept).
    stop_words : set of str
        Words removed after lower-casing.
    min_count : int
        Drop words whose total count is below this.
    max_doc_freq : float
        Drop words occurring in more than this fraction of the documents.
    vocab : list of str, optional
        A fixed vocabulary (e.g. a trained model's): words outside it are
        dropped and no pruning is done.

    Returns
    -------
    Corpus
        Vocabulary ordered by decreasing count, ties alphabetically (so the
        result does not depend on hash seeds).
    """
    if min_count < 1 or not 0.0 < max_doc_freq <= 1.0:
        raise InputError("min_count must be >= 1 and max_doc_freq in (0, 1]")
    text = _read_text(path)
    docs = [tokenize(line, stop_words) for line in text.split("\n")]
    if docs and not docs[-1] and text.endswith("\n"):
        docs.pop()
    if vocab is not None:
        index = {t: i for i, t in enumerate(vocab)}
        return from_token_lists([[index[t] for t in doc if t in index] for doc in docs],
                                len(vocab), list(vocab))
    total, dfreq = {}, {}
    for doc in docs:
        for t in doc:
            total[t] = total.get(t, 0) + 1
        for t in set(doc):
            dfreq[t] = dfreq.get(t, 0) + 1
    limit = max_doc_freq * len(docs)
    vocab = sorted((t for t in total if total[t] >= min_count and dfreq[t] <= limit),
                   key=lambda t: (-total[t], t))
    index = {t: i for i, t in enumerate(vocab)}
    ids = [[index[t] for t in doc if t in index] for doc in docs]
    return from_token_lists(ids, len(vocab), vocab)


def read_stop_words(path):
    """Read a stop-word file: words separated by whitespace, '#' starts a comment."""
    text = _read_text(path)
    return frozenset(w.lower() for line in text.splitlines()
                     for w in line.split("#", 1)[0].split())
