"""load_corpus of an HDF5 corpus: rank 0 deals the ranges, each rank reads its own rows.

Usage: check_corpus_load.py FOLDER
"""

import sys

import h5py
import numpy as np

from hpcml.comm import Comm
from hpcml.errors import InputError
from hpcml.io.corpus import write_hdf5
from hpcml.topics.corpus import load_corpus, token_cuts
from hpcml.topics.synthetic import lda_corpus

comm = Comm.world()
folder = sys.argv[1]
whole, _, _ = lda_corpus(3 * 7 + 1, 30, 3, 20, seed=1, length_spread=1.0)
good, bad = f"{folder}/good.h5", f"{folder}/bad.h5"
if comm.rank == 0:
    write_hdf5(good, whole)
    write_hdf5(bad, whole)
    with h5py.File(bad, "a") as f:
        del f["corpus/indptr"]
        f["corpus/indptr"] = np.arange(5)
comm.barrier()

local, n_docs = load_corpus(good, comm)
ptr, _ = whole.tokens()
cuts = token_cuts(ptr, comm.size)
assert n_docs == whole.n_docs
assert local.doc_offset == cuts[comm.rank] and local.n_docs == cuts[comm.rank + 1] - cuts[comm.rank]
mine = whole.slice(int(cuts[comm.rank]), int(cuts[comm.rank + 1]))
assert np.array_equal(local.tokens()[1], mine.tokens()[1])

try:
    load_corpus(bad, comm)
except InputError as exc:
    assert "indptr does not match" in str(exc), exc
else:
    raise AssertionError("a corrupt corpus was read")
print("ok", comm.rank)
