"""The topic-model library without the CLI: fit, save, load, transform; and that
the ``hpcml lda`` commands give what the library gives."""

import json
import os
import sys

import h5py
import numpy as np
import pytest

from conftest import mpirun
from hpcml.comm import Comm
from hpcml.errors import InputError
from hpcml.topics.corpus import load_corpus, split_heldout, write_corpus
from hpcml.topics.lda import LDA
from hpcml.topics.model import TopicModel
from hpcml.topics.synthetic import lda_corpus
from test_lda_train import matched_cosine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The options of `hpcml lda train` below and the same hyperparameters here
# (the command's defaults: two segments per sweep, two proposal pairs).
HYPER = dict(alpha=0.2, beta=0.05, seed=7, sync_every=0.5, mh_steps=2)
ITERATIONS, HELDOUT, SWEEPS = 25, 0.2, 12


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model fitted in-process on a file's training documents, and saved."""
    folder = tmp_path_factory.mktemp("lda-api")
    corpus, phi, _ = lda_corpus(241, 150, 4, 60, alpha=0.2, beta=0.05, seed=3,
                                length_spread=1.0)
    write_corpus(str(folder / "corpus.h5"), corpus)
    comm = Comm.self_comm()
    local, n_docs = load_corpus(str(folder / "corpus.h5"), comm)
    train, train_ids, held = split_heldout(local, HELDOUT)
    model = LDA(4, **HYPER).setup(train, comm).fit(ITERATIONS)
    model.save(str(folder / "model.h5"), doc_ids=train_ids)
    write_corpus(str(folder / "held.h5"), held)
    return folder, phi, model, held, train_ids, n_docs


def test_fit_save_load_transform(trained):
    folder, phi, model, held, train_ids, n_docs = trained
    assert n_docs == 241 and held.n_docs > 0 and held.n_docs + train_ids.shape[0] == 241
    assert matched_cosine(phi, model.topic_word()) >= 0.9
    loaded = TopicModel.load(str(folder / "model.h5"), Comm.self_comm())
    np.testing.assert_array_equal(loaded.word_topic, model.word_topic())
    np.testing.assert_array_equal(loaded.alpha, model.alpha)
    assert loaded.beta == model.beta and loaded.vocab == model.vocab == held.vocab
    assert loaded.top_words(5) == model.top_words(5)
    theta = loaded.transform(held, sweeps=SWEEPS, seed=5)
    assert theta.shape == (held.n_docs, 4) and theta.dtype == np.float32
    np.testing.assert_allclose(theta.sum(1), 1, rtol=1e-5)
    # The fitted estimator folds in exactly as the model read back from its file.
    np.testing.assert_array_equal(model.transform(held, sweeps=SWEEPS, seed=5), theta)
    with h5py.File(folder / "model.h5") as f:
        np.testing.assert_array_equal(f["doc_ids"][...], train_ids)
        np.testing.assert_array_equal(f["doc_topics"][...], model.doc_topics())
        assert f["history/log_likelihood"].shape == (ITERATIONS,)
        assert json.loads(f.attrs["params"])["iterations"] == ITERATIONS


def test_perplexity_of_the_loaded_model_is_the_trained_one(trained):
    folder, _, model, held, _, _ = trained
    loaded = TopicModel.load(str(folder / "model.h5"), Comm.self_comm())
    # Training evaluates with a seed of its iteration; with that seed (and one
    # rank, so the words keep their numbers) the loaded model scores alike.
    seed = model.seed + 104729 * (model.iteration + 1)
    ppl = loaded.perplexity(held, sweeps=10, seed=seed)
    assert ppl == model.perplexity(held, sweeps=10)
    assert 1 < ppl < 150


def test_model_file_and_vocabulary_errors(trained, tmp_path):
    folder, _, _, held, _, _ = trained
    (tmp_path / "not-a-model.h5").write_bytes(b"")
    with pytest.raises(InputError, match="not an LDA model file"):
        TopicModel.load(str(tmp_path / "not-a-model.h5"), Comm.self_comm())
    small = TopicModel(np.ones((3, 2)), 0.1, 0.01, Comm.self_comm())
    with pytest.raises(InputError, match="150 words, the model 3"):
        small.transform(held)


def _hpcml(ranks, *args):
    out = mpirun(ranks, [sys.executable, "-m", "hpcml", *map(str, args)], timeout=180, cwd=ROOT)
    assert out.returncode == 0, out
    return out


@pytest.mark.mpi
def test_infer_command_writes_what_transform_gives(trained):
    folder, _, _, held, _, _ = trained
    _hpcml(1, "lda", "infer", "--model", folder / "model.h5", "--input", folder / "held.h5",
           "--sweeps", SWEEPS, "--seed", 5, "--output", folder / "theta.h5")
    loaded = TopicModel.load(str(folder / "model.h5"), Comm.self_comm())
    with h5py.File(folder / "theta.h5") as f:
        np.testing.assert_array_equal(f["doc_topics"][...],
                                      loaded.transform(held, sweeps=SWEEPS, seed=5))
        np.testing.assert_array_equal(f["doc_ids"][...], np.arange(held.n_docs))


@pytest.mark.mpi
def test_train_command_fits_what_the_library_fits(trained):
    folder, _, model, _, train_ids, _ = trained
    _hpcml(1, "lda", "train", "--input", folder / "corpus.h5", "--topics", 4,
           "--alpha", HYPER["alpha"], "--beta", HYPER["beta"], "--seed", HYPER["seed"],
           "--iterations", ITERATIONS, "--heldout", HELDOUT, "--output", folder / "cli.h5")
    with h5py.File(folder / "cli.h5") as f:
        np.testing.assert_array_equal(f["word_topic"][...], model.word_topic())
        np.testing.assert_array_equal(f["doc_topics"][...], model.doc_topics())
        np.testing.assert_array_equal(f["doc_ids"][...], train_ids)
        np.testing.assert_array_equal(f["history/log_likelihood"][...],
                                      [r["log_likelihood"] for r in model.history])


def test_transform_in_blocks_draws_what_one_call_draws(trained, monkeypatch):
    """Fold-in goes a block of documents at a time (so that a stop signal acts within
    seconds); the generator runs on across blocks, so the draws are those of one call."""
    from hpcml.kernels import lda as kern
    from hpcml.topics import model as model_module
    from hpcml.topics.model import proportions

    folder, _, _, held, _, _ = trained
    loaded = TopicModel.load(str(folder / "model.h5"), Comm.self_comm())
    doc_ptr, words = held.tokens()
    whole = kern.fold_in(doc_ptr, words, loaded.word_topic, loaded.topic_totals, loaded.alpha,
                         loaded.beta, kern.seed_state(5, 0), sweeps=SWEEPS)
    monkeypatch.setattr(model_module, "_FOLD_IN_BLOCK", 50 * SWEEPS)   # about one document a block
    np.testing.assert_array_equal(loaded.transform(held, sweeps=SWEEPS, seed=5),
                                  proportions(whole, loaded.alpha))
