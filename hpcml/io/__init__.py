"""Readers and writers: HDF5 (sharded reads, atomic writes), .npy and MatrixMarket."""

from hpcml.errors import InputError


def read_matrix(spec, comm, dtype=None, name="matrix"):
    """Read this rank's rows of a matrix from HDF5 (``file.h5:/ds``), ``.npy`` or ``.mtx``.

    Returns
    -------
    hpcml.distmat.DistMatrix
    """
    path = str(spec)
    if path.endswith(".npy"):
        from hpcml.io.npy import read_npy
        return read_npy(path, comm, dtype, name)
    if path.endswith(".mtx") or path.endswith(".mtx.gz"):
        from hpcml.io.npy import read_mtx
        return read_mtx(path, comm, dtype, name)
    if ":" not in path:
        raise InputError(f"{path!r}: expected FILE.h5:/DATASET, FILE.npy or FILE.mtx")
    from hpcml.io.hdf5 import read_matrix as read_hdf5
    return read_hdf5(path, comm, dtype, name)
