"""An output is never visible under its final name before it is complete.

The last rank's block write fails after the first ranks wrote theirs: every
rank must get the error, no file may appear under the final name and the
temporary file must be gone.
"""

import os
import sys

import numpy as np

import hpcml.io.hdf5 as hdf5
from hpcml.comm import Comm
from hpcml.errors import InputError

folder = sys.argv[1]
comm = Comm.world()
final = os.path.join(folder, f"never{comm.size}.h5")
original = hdf5._write_block


def observed_write(tmp, path, sharded, before):
    assert not os.path.exists(final), "final name visible before completion"
    assert os.path.exists(tmp)
    if comm.rank == comm.size - 1:
        raise InputError("disk full (simulated)")
    original(tmp, path, sharded, before)


hdf5._write_block = observed_write
try:
    hdf5.write_output(final, comm, small={"x": 1.0}, sharded={"U": np.ones((comm.rank + 1, 2))})
except InputError as exc:
    assert "disk full" in str(exc)
else:
    raise AssertionError("write_output did not fail")
comm.barrier()
assert not os.path.exists(final)
assert not [f for f in os.listdir(folder) if f.startswith(".never")], os.listdir(folder)

hdf5._write_block = original
hdf5.write_output(final, comm, small={"x": 1.0}, sharded={"U": np.ones((comm.rank + 1, 2))})
assert os.path.exists(final)
