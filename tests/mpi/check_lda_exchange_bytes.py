"""LDA's sparse exchange moves what its formula says, sweep by sweep.

Replicated layout, one exchange per sweep (sync_every 1): the P change
counts (8P bytes, all-gathered), then every rank's changed tokens packed in
8 bytes each.  A token has changed when its topic differs from the one the
other ranks last saw, i.e. from its topic at the start of the sweep, which
this script counts itself.

Usage: check_lda_exchange_bytes.py CORPUS.h5
"""

import sys

import numpy as np

from hpcml.comm import Comm
from hpcml.topics.corpus import load_corpus
from hpcml.topics.lda import LDA

comm = Comm.world()
local, _ = load_corpus(sys.argv[1], comm)
model = LDA(4, layout="replicated", exchange="sparse", sync_every=1.0, seed=3).setup(local, comm)
for sweep in range(4):
    before_z = model.z.copy()
    before = comm.stats.kinds.get("allgatherv", (0, 0))
    model.sweep()
    after = comm.stats.kinds["allgatherv"]
    changed = comm.allreduce(np.array([np.count_nonzero(model.z != before_z)], np.int64))[0]
    want = 8 * comm.size + 8 * int(changed)
    assert changed > 0 and (after[0] - before[0], after[1] - before[1]) == (2, want), \
        (sweep, after, before, changed, want)
model.close()
