"""Sharded HDF5 reads equal a full read; write_output assembles sharded blocks; .npy and .mtx too.

Argument: a directory holding A.h5 (dense /A and CSR /S), A.npy and A.mtx
written by the test from the same matrices.
"""

import os
import sys

import h5py
import numpy as np
import scipy.sparse as sp

from hpcml.comm import Comm
from hpcml.io import read_matrix
from hpcml.io.hdf5 import read_replicated, read_rows, write_output

folder = sys.argv[1]
comm = Comm.world()
with h5py.File(os.path.join(folder, "A.h5"), "r") as handle:
    dense = handle["/A"][()]
    g = handle["/S"]
    sparse = sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]), shape=tuple(g.attrs["shape"]))

for spec, full in ((f"{folder}/A.h5:/A", dense), (f"{folder}/A.h5:/S", sparse.toarray()),
                   (f"{folder}/A.npy", dense), (f"{folder}/A.mtx", sparse.toarray())):
    A = read_matrix(spec, comm)
    lo, hi = A.row_offset, A.row_offset + A.local_rows
    local = A.local.toarray() if A.issparse else A.local
    assert np.array_equal(local, full[lo:hi]), spec
    assert A.shape == full.shape
    single = read_matrix(spec, comm, dtype=np.float32)
    assert single.dtype == np.float32

b, length = read_rows(f"{folder}/A.h5:/b", comm)
assert length == dense.shape[0]
A = read_matrix(f"{folder}/A.h5:/A", comm)
assert np.array_equal(b, np.arange(length, dtype=float)[A.row_offset:A.row_offset + A.local_rows])
assert np.array_equal(read_replicated(f"{folder}/A.h5:/b", comm), np.arange(length, dtype=float))

out = os.path.join(folder, f"out{comm.size}.h5")
write_output(out, comm, small={"s": np.array([3.0, 2.0])}, sharded={"U": A.local * 2, "ids": np.arange(A.local_rows) + A.row_offset},
             params={"k": 2, "method": "test"}, attrs={"extra": "yes"})
if comm.rank == 0:
    with h5py.File(out, "r") as handle:
        assert np.array_equal(handle["U"][()], dense * 2)
        assert np.array_equal(handle["ids"][()], np.arange(dense.shape[0]))
        assert np.array_equal(handle["s"][()], [3.0, 2.0])
        assert handle.attrs["ranks"] == comm.size and handle.attrs["extra"] == "yes"
        assert '"k": 2' in handle.attrs["params"] and "comm_s" in handle.attrs["timings"]
    assert not [f for f in os.listdir(folder) if ".tmp-" in f]
