"""The model-parallel LDA layout on (emulated) nodes: exact counts, recovery, resume.

Usage: check_lda_model_parallel.py NODES (the value of MPIR_CVAR_NUM_CLIQUES).

Checks, each reported by name when it fails:
* after training, the word-topic counts (gathered from the blocks the nodes
  hold) equal those recomputed from every rank's final topics, the topic
  totals equal their sum, and every block's word order holds the topics of
  its tokens;
* the topics recover a corpus drawn from a known model (matched cosine);
* a run stopped after 2 sweeps and resumed from its state continues bit for
  bit as the uninterrupted run of 4 sweeps;
* bytes per sweep as the layout's formula, and ranks without documents.
"""

import os
import sys

import numpy as np

from hpcml.comm import Comm
from hpcml.kernels import lda as kern
from hpcml.partition import block_range
from hpcml.topics.lda import LDA
from hpcml.topics.synthetic import lda_corpus

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from test_lda_train import matched_cosine  # noqa: E402

comm = Comm.world()
nodes = min(int(sys.argv[1]), comm.size)
K, N_DOCS = 4, 3 * 40 + 1  # uneven shards
corpus, phi, _ = lda_corpus(N_DOCS, 120, K, 60, alpha=0.2, beta=0.05, seed=2, length_spread=1.0)
start, stop = block_range(N_DOCS, comm.size, comm.rank)
mine = corpus.slice(start, stop)


def check(ok, what):
    if comm.allreduce_scalar(int(bool(ok)), "min") != 1:
        if comm.rank == 0:
            print(f"FAILED: {what}", flush=True)
        sys.exit(1)


def make():
    return LDA(K, alpha=0.2, beta=0.05, seed=0, layout="model")


model = make().setup(mine, comm)
check(model.layout_used == "model" and model.scheme.nodes == nodes, "layout and node count")
check(model.scheme.n_blocks == (2 * nodes if nodes > 1 else 1), "ring of 2 blocks per node")
model.fit(40)

# Counts agree with the word order: recompute from the final topics.
counts = np.zeros((model.n_words, K), np.int64)
nk = np.zeros(K, np.int64)
# Input word id of each own token: internal id = block-relative id + the block's first word.
blk_of = np.empty(model.words.shape[0], np.int64)
for u in range(model.scheme.n_blocks * model.scheme.sub):
    b = u // model.scheme.sub
    lo, hi = model.block_bounds[u], model.block_bounds[u + 1]
    for d in range(lo.shape[0]):
        blk_of[lo[d]:hi[d]] = b
internal = model.words.astype(np.int64) + model.scheme.block_words[blk_of]
kern.count_topics(model.doc_ptr, model.word_ids[internal], model.z, counts, nk)
comm.allreduce(counts)
comm.allreduce(nk)
table = model.word_topic()
check(np.array_equal(table, counts), "word-topic counts equal those of the final topics")
check(np.array_equal(model.nk, nk) and int(nk.sum()) == model.n_tokens, "topic totals")
# Every rank's tokens keep their words (each document's multiset of words).
doc_of = np.repeat(np.arange(model.doc_ptr.shape[0] - 1), np.diff(model.doc_ptr))
ptr, words = mine.tokens()
theirs = np.repeat(np.arange(ptr.shape[0] - 1), np.diff(ptr))
ours = model.word_ids[internal]
check(np.array_equal(ours[np.lexsort((ours, doc_of))], words[np.lexsort((words, theirs))]),
      "each document keeps its words")
# Each held block's word order holds its tokens' topics: the topics at
# every rank's positions, gathered to the node holding the block.
sch = model.scheme
ok = True
for b in range(sch.n_blocks):
    sel = blk_of == b
    pos = comm.allgatherv(model.gpos[sel].astype(np.int64))
    top = comm.allgatherv(model.z[sel])
    if b in sch.held():
        buf = next(x for x in sch.buffers if x.block == b)
        ok &= bool(np.array_equal(buf.zw[pos], top)) and pos.shape[0] == sch.tokens[b]
check(ok, "block word orders hold every token's topic")

# Bytes per sweep as the layout's formula: one int64 allreduce of K topic
# changes per phase (per turn on one node), and on each node leader every block's count rows and
# word order once out and once in (nothing travels on one node).
sch = model.scheme
cell, tz = sch.buffers[0].nwk.itemsize, model.z.itemsize
ring = 2 * (model.n_words * K * cell + model.n_tokens * tz) if sch.n_blocks > 1 else 0
merges = sch.sub if sch.n_blocks == 1 else sch.n_blocks
expect = merges * 8 * K + (ring if sch.leader else 0)
check(all(r["bytes"] == expect for r in model.history), "bytes per sweep as the formula")

# Recovery of the known topics (the bound of the other layouts' test), and
# the log-likelihood within 1% of one rank's (replicated layout, same sweeps).
cos = matched_cosine(phi, model.topic_word())
check(cos >= 0.9, f"topic recovery {cos:.3f} >= 0.9")
ll = model.history[-1]["ll_per_token"]
one = LDA(K, alpha=0.2, beta=0.05, seed=0).setup(corpus, Comm.self_comm()).fit(40)
ll1 = one.history[-1]["ll_per_token"]
check(abs(ll - ll1) <= 0.01 * abs(ll1), f"log-likelihood/token {ll:.4f} within 1% of {ll1:.4f}")
model.close()

# Resume: 2 sweeps, checkpoint state, a fresh model resumed, 2 more, against 4 at once.
full = make().setup(mine, comm).fit(4)
ll_full = full.log_likelihood()
state = full.checkpoint_state()
z_full = comm.allgatherv(full.z)
full.close()
first = make().setup(mine, comm).fit(2)
saved = first.checkpoint_state()
first.close()
second = make().resume(mine, comm, saved["replicated"], saved["sharded"], 2).fit(4)
check(np.array_equal(comm.allgatherv(second.z), z_full), "resumed topics bit-identical")
check(np.array_equal(second.state, state["sharded"]["rng"]), "resumed generator state")
check(second.log_likelihood() == ll_full, "resumed log-likelihood identical")
second.close()
# Empty shards: 2 documents on up to 4 ranks.
tiny, _, _ = lda_corpus(2, 30, 3, 20, seed=1)
lo, hi = block_range(2, comm.size, comm.rank)
small = LDA(3, layout="model", seed=0).setup(tiny.slice(lo, hi), comm).fit(3)
check(int(small.word_topic().sum()) == small.n_tokens == int(tiny.counts.sum()),
      "empty shards: the counts hold every token")
small.close()
if comm.rank == 0:
    print(f"ok: {comm.topology}, cosine {cos:.3f}, ll/token {ll:.4f} (one rank {ll1:.4f})",
          flush=True)
