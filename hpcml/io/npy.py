"""Small or memory-mapped inputs: ``.npy`` (each rank maps only its rows) and MatrixMarket."""

import os

import numpy as np
import scipy.io
import scipy.sparse as sp

from hpcml.distmat import DistMatrix
from hpcml.errors import InputError
from hpcml.io.hdf5 import _float_dtype
from hpcml.partition import block_range


def _finish(local, comm, name, path):
    A = DistMatrix(local, comm)
    A.check_finite(f"{name} {path}")
    return A


def read_npy(path, comm, dtype=None, name="matrix"):
    """This rank's rows of a 2-D ``.npy`` array, read through a memory map."""
    local = None
    with comm.guard(), comm.io():
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file")
        try:
            full = np.load(path, mmap_mode="r")
        except ValueError as exc:
            raise InputError(f"{path}: not a readable .npy file ({exc})") from None
        if full.ndim != 2:
            raise InputError(f"{path} must hold a 2-D matrix, has shape {full.shape}")
        start, stop = block_range(full.shape[0], comm.size, comm.rank)
        local = np.array(full[start:stop], dtype=_float_dtype(full.dtype, dtype, path))
    return _finish(local, comm, name, path)


def read_mtx(path, comm, dtype=None, name="matrix"):
    """This rank's rows of a MatrixMarket file (every rank parses it: small inputs only)."""
    local = None
    with comm.guard(), comm.io():
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file")
        try:
            full = scipy.io.mmread(path)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a readable MatrixMarket file ({exc})") from None
        start, stop = block_range(full.shape[0], comm.size, comm.rank)
        kind = _float_dtype(full.dtype, dtype, path)
        local = sp.csr_matrix(full)[start:stop].astype(kind) if sp.issparse(full) \
            else np.ascontiguousarray(full[start:stop], dtype=kind)
    return _finish(local, comm, name, path)
