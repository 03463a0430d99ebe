"""LDA layouts: the model-parallel layout on emulated nodes, and the choice of layout."""

import json
import os
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from conftest import hpcml, mpi_script
from hpcml.comm import Topology
from hpcml.errors import InputError
from hpcml.topics.layouts import choose_layout, node_bytes, ring_blocks
from hpcml.topics.lda import LDA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.mpi
@pytest.mark.parametrize("ranks,nodes", [(1, 1), (2, 2), (3, 2), (4, 2)])
def test_model_parallel_counts_quality_resume(ranks, nodes):
    """Exact counts against the final topics, recovery and log-likelihood as
    one rank's, bit-identical resume: 1 node, 2 x 1, 2 + 1 and 2 x 2 ranks."""
    env = {**os.environ, "MPIR_CVAR_NUM_CLIQUES": str(nodes)}
    mpi_script(ranks, "check_lda_model_parallel.py", nodes, env=env, timeout=180)


def _comm(nodes, per_node):
    topo = Topology(0, (per_node,) * nodes)
    return SimpleNamespace(size=nodes * per_node, topology=topo, spans_nodes=nodes > 1)


def test_auto_layout_turns_model_parallel_where_replicas_no_longer_fit():
    figures = dict(n_words=100_000, n_topics=10_000, n_tokens=10**8, node_tokens=10**7)
    replicated = node_bytes("replicated", ranks=4, nodes=8, **figures)
    # 4 ranks x (2e9 B of counts + 2e8 B of word order) + own tokens.
    assert replicated == 4 * (2 * 10**9 + 2 * 10**8) + 16 * 10**7
    model = node_bytes("model", ranks=4, nodes=8, **figures)
    assert model == int(1.5 / 8 * (2 * 10**9 + 2 * 10**8)) + 24 * 10**7
    comm = _comm(8, 4)
    assert choose_layout("auto", comm, "mh", available=replicated, **figures) == "replicated"
    assert choose_layout("auto", comm, "mh", available=replicated - 1, **figures) == "model"
    assert choose_layout("auto", comm, "dense", available=1, **figures) == "replicated"
    assert choose_layout("auto", comm, "gibbs", available=1, **figures) == "replicated"
    assert choose_layout("auto", _comm(1, 4), "gibbs", available=1, **figures) == "shared"
    assert choose_layout("auto", _comm(1, 4), "mh", available=1, **figures) == "shared"
    assert choose_layout("model", _comm(1, 1), "mh", available=None, **figures) == "model"


def test_model_layout_needs_mh_and_random_start():
    with pytest.raises(InputError, match="'mh'"):
        LDA(3, sampler="dense", layout="model")
    with pytest.raises(InputError, match="random"):
        LDA(3, init="progressive", layout="model")


def test_ring_blocks_balance_tokens_and_rows():
    rng = np.random.default_rng(0)
    freq = np.concatenate([rng.zipf(1.3, 997) % 5000, np.zeros(300, np.int64)])  # unused words
    for n in (2, 4, 7):
        block = ring_blocks(freq, n)
        rows = np.bincount(block, minlength=n)
        tokens = np.bincount(block, weights=freq, minlength=n)
        assert rows.max() == -(-freq.shape[0] // n)  # no block above its share of words
        # Within the largest word's count of the mean (greedy's bound).
        assert tokens.max() - tokens.mean() <= freq.max()
    assert not ring_blocks(freq, 1).any()


@pytest.mark.mpi
def test_cli_model_layout_across_nodes_resumes_bit_identical(tmp_path):
    """lda train --layout model on 2 emulated nodes x 1 rank: the model file's
    counts add up, and a run checkpointed after 3 sweeps and resumed writes
    the file of the uninterrupted run."""
    env = {**os.environ, "MPIR_CVAR_NUM_CLIQUES": "2", "PYTHONPATH": ROOT}
    out = hpcml(1, "data", "corpus", "synthetic", "--docs", 121, "--words", 150, "--topics", 4,
                "--doc-length", 60, "--alpha", 0.2, "--beta", 0.05, "--seed", 3,
                "--output", tmp_path / "c.h5", cwd=ROOT, env=env)
    assert out.returncode == 0, out

    def train(name, *extra):
        out = hpcml(2, "lda", "train", "--input", tmp_path / "c.h5", "--topics", 4, "--alpha",
                    0.2, "--beta", 0.05, "--seed", 7, "--layout", "model", "--output",
                    tmp_path / name, "--json", *extra, cwd=ROOT, env=env, timeout=180)
        assert out.returncode == 0, out
        return json.loads(out.stdout.strip().splitlines()[-1])

    summary = train("full.h5", "--iterations", 6)
    assert summary["layout"] == "model" and summary["ranks"] == 2
    ck = tmp_path / "ck"
    train("part.h5", "--iterations", 3, "--checkpoint-dir", ck, "--checkpoint-every", 3)
    train("resumed.h5", "--iterations", 6, "--checkpoint-dir", ck, "--resume")
    with h5py.File(tmp_path / "full.h5") as a, h5py.File(tmp_path / "resumed.h5") as b:
        nwk = a["word_topic"][...]
        assert nwk.sum() == a["topic_totals"][...].sum() == a.attrs["n_tokens"]
        for key in ("word_topic", "doc_topics", "history/log_likelihood"):
            np.testing.assert_array_equal(a[key][...], b[key][...])


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [1, 3])
def test_hdf5_corpus_each_rank_reads_its_documents(ranks, tmp_path):
    """Rank 0 alone reads the document offsets; a corrupt file fails on every rank."""
    mpi_script(ranks, "check_corpus_load.py", tmp_path)
