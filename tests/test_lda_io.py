"""Corpus formats: UCI docword/vocab, plain text, HDF5 CSR, synthetic LDA."""

import gzip

import numpy as np
import pytest

from hpcml.errors import InputError
from hpcml.io.corpus import read_hdf5, read_hdf5_info, token_ptr, write_hdf5
from hpcml.io.uci import read_text, read_uci, read_vocab, tokenize, write_uci
from hpcml.topics.synthetic import lda_corpus

QUIRKY = "3\r\n5\r\n5\r\n1 2 3\r\n1 5 1\n\n3 1 2\n1 2 4\n3 4 0\n\n\n"


def test_uci_quirky_gzip_matches_plain(tmp_path):
    plain = tmp_path / "docword.q.txt"
    plain.write_text(QUIRKY)
    gz = tmp_path / "docword.q.txt.gz"
    gz.write_bytes(gzip.compress(QUIRKY.encode()))
    vocab = tmp_path / "vocab.q.txt"
    vocab.write_text("alpha\nbeta\ngamma\ndelta\nepsilon\n\n\n")
    a = read_uci(str(plain), str(vocab))
    b = read_uci(str(gz), str(vocab))
    expected = np.zeros((3, 5), int)
    expected[0, 1] = 3 + 4  # repeated pair summed
    expected[0, 4] = 1
    expected[2, 0] = 2      # zero count of (3, 4) dropped; document 2 kept empty
    for c in (a, b):
        np.testing.assert_array_equal(c.dense(), expected)
        assert c.vocab == ["alpha", "beta", "gamma", "delta", "epsilon"]
        assert c.n_docs == 3 and c.n_tokens == 10


@pytest.mark.parametrize("body, line, words", [
    ("2\n3\n2\n1 1 1\n1 4 1\n", 5, "word id out of range"),
    ("2\n3\n2\n1 1 1\n3 1 1\n", 5, "document id out of range"),
    ("2\n3\n2\n1 1 -2\n1 2 1\n", 4, "negative count"),
    ("2\n3\n2\n1 1 1\n", 4, "NNZ = 2"),
    ("2\n3\n1\n1 1 1\n\n2 2 2\n", 6, "more entries than"),
    ("2\n3\n2\n1 1 1\n1 x 1\n", 5, "not an integer"),
    ("2\n3\n2\n1 1\n1 2 1\n", 4, "expected 3 fields"),
    ("2\nthree\n2\n", 2, "W (words)"),
])
def test_uci_errors_name_the_line(tmp_path, body, line, words):
    path = tmp_path / "docword.bad.txt"
    path.write_text(body)
    with pytest.raises(InputError) as err:
        read_uci(str(path))
    assert f"{path}:{line}:" in str(err.value) and words in str(err.value)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_vocab_length_must_match(tmp_path):
    (tmp_path / "v.txt").write_text("a\nb\n")
    with pytest.raises(InputError, match="W = 3"):
        read_vocab(str(tmp_path / "v.txt"), 3)


def test_uci_round_trip_and_hdf5_ranges(tmp_path):
    corpus, _, _ = lda_corpus(31, 40, 3, 25, seed=3, length_spread=1.0)
    write_uci(str(tmp_path / "docword.s.txt.gz"), corpus, str(tmp_path / "vocab.s.txt"))
    back = read_uci(str(tmp_path / "docword.s.txt.gz"), str(tmp_path / "vocab.s.txt"))
    np.testing.assert_array_equal(back.dense(), corpus.dense())
    assert back.vocab == corpus.vocab
    write_hdf5(str(tmp_path / "c.h5"), corpus)
    n_docs, n_words, tptr, vocab = read_hdf5_info(str(tmp_path / "c.h5"))
    assert (n_docs, n_words, vocab) == (31, 40, corpus.vocab)
    np.testing.assert_array_equal(tptr, token_ptr(corpus))
    parts = [read_hdf5(str(tmp_path / "c.h5"), start=a, stop=b)
             for a, b in ((0, 10), (10, 10), (10, 31))]
    np.testing.assert_array_equal(np.vstack([p.dense() for p in parts]), corpus.dense())
    assert [p.doc_offset for p in parts] == [0, 10, 10]


def test_hdf5_rejects_bad_word_id(tmp_path):
    corpus, _, _ = lda_corpus(5, 10, 2, 8, seed=1)
    corpus.indices[-1] = 10
    write_hdf5(str(tmp_path / "c.h5"), corpus)
    with pytest.raises(InputError, match="document 4: word id 10 out of range"):
        read_hdf5(str(tmp_path / "c.h5"))


def test_tokens_expand_counts():
    corpus, _, _ = lda_corpus(7, 12, 2, 9, seed=2, length_spread=1.0)
    doc_ptr, words = corpus.tokens()
    dense = corpus.dense()
    for d in range(7):
        np.testing.assert_array_equal(np.bincount(words[doc_ptr[d]:doc_ptr[d + 1]], minlength=12),
                                      dense[d])


def test_text_corpus_tokenise_stop_prune(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("The Cat sat on the mat.\n\ncat's toys, the CAT!\ndog dog cat mat\n")
    assert tokenize("The Cat's mat_2 ") == ["cat's", "mat", "2"]
    c = read_text(str(path), min_count=2)
    # cat: 3 docs, mat: 2, dog: 2; sat/toys/cat's occur once and are pruned.
    assert c.vocab == ["cat", "dog", "mat"]
    np.testing.assert_array_equal(c.dense(), [[1, 0, 1], [0, 0, 0], [1, 0, 0], [1, 2, 1]])
    c = read_text(str(path), max_doc_freq=0.5)  # cat is in 3 of 4 documents
    assert "cat" not in c.vocab and "dog" in c.vocab


def test_synthetic_counts_follow_the_model():
    corpus, phi, theta = lda_corpus(400, 30, 3, 200, alpha=0.5, beta=0.5, seed=5)
    assert corpus.n_tokens == 400 * 200
    # Expected word frequencies are theta @ phi; compare the corpus totals.
    expected = (theta @ phi).sum(0) * 200
    observed = corpus.dense().sum(0)
    assert np.abs(observed - expected).max() < 5 * np.sqrt(expected.max())
