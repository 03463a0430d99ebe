"""Run under mpiexec by test_lda_train.py: train on a synthetic corpus, print JSON."""

import json
import sys

import numpy as np

from hpcml.comm import Comm
from hpcml.kernels import lda as kern
from hpcml.partition import block_range
from hpcml.topics.lda import LDA
from hpcml.topics.synthetic import lda_corpus
from test_lda_train import matched_cosine


def main():
    comm = Comm.world()
    n_docs, iters, sync_every, staleness = (int(sys.argv[1]), int(sys.argv[2]),
                                            float(sys.argv[3]), int(sys.argv[4]))
    init = sys.argv[5] if len(sys.argv) > 5 else "random"
    exchange = sys.argv[6] if len(sys.argv) > 6 else "auto"
    layout = sys.argv[7] if len(sys.argv) > 7 else "auto"
    sampler = sys.argv[8] if len(sys.argv) > 8 else "auto"
    word_rows = sys.argv[9] if len(sys.argv) > 9 else "auto"
    corpus, phi, _ = lda_corpus(n_docs, 120, 4, 60, alpha=0.2, beta=0.05, seed=2,
                                length_spread=1.0)
    start, stop = block_range(n_docs, comm.size, comm.rank)
    model = LDA(4, alpha=0.2, beta=0.05, sync_every=sync_every, staleness=staleness, seed=0,
                init=init, exchange=exchange, layout=layout, sampler=sampler,
                word_rows=word_rows)
    model.setup(corpus.slice(start, stop), comm)
    model.fit(iters)
    # The view every rank holds must equal the counts of all ranks' topics.
    local = np.zeros((model.n_words, 4), np.int64)
    nk = np.zeros(4, np.int64)
    kern.count_topics(model.doc_ptr, model.words, model.z, local, nk)
    comm.allreduce(local)
    # ... and every rank's word order must hold every token's topic.
    everyone = comm.allgatherv(model.z)
    order = np.argsort(comm.allgatherv(model.gpos), kind="stable")
    comm.allreduce(nk)
    exact = bool(np.array_equal(local[model.internal_ids], model.word_topic()) and np.array_equal(everyone[order], model.zw)
                 and np.array_equal(nk, model.nk))
    # Internal word ids (block after block) map back to the input's: each
    # document keeps its words, and the topics by input id match the truth.
    mine = np.repeat(np.arange(model.doc_ptr.shape[0] - 1), np.diff(model.doc_ptr))
    ids = np.lexsort((model.word_ids[model.words], mine))
    _, words = corpus.slice(start, stop).tokens()
    exact &= bool(np.array_equal(model.word_ids[model.words][ids],
                                 words[np.lexsort((words, mine))]))
    exact = comm.allreduce_scalar(int(exact), "min") == 1
    theta = comm.allgatherv(model.doc_topics())
    if comm.rank == 0:
        print(json.dumps({"ll_per_token": model.history[-1]["ll_per_token"],
                          "exact_counts": exact, "nwk": model.word_topic().tolist(),
                          "cosine": matched_cosine(phi, model.topic_word()),
                          "theta_rows": int(theta.shape[0]),
                          "modes": sorted({m for r in model.history for m in r["modes"]}),
                          "bytes": model.history[-1]["bytes"], "shared": model.shared,
                          "sampler": model.sampler, "sparse_rows": model.sparse_rows}))
    model.close()


if __name__ == "__main__":
    main()
