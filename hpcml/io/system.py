"""A row-sharded matrix with the matching rows of its right-hand side (LASSO, composite problems)."""

from hpcml.errors import InputError
from hpcml.io import read_matrix
from hpcml.io.hdf5 import read_rows


def read_system(matrix, rhs, comm):
    """Read this rank's rows of ``A`` and, when ``rhs`` is given, the same rows of ``b``.

    Parameters
    ----------
    matrix : str
        ``A`` as ``FILE.h5:/DATASET`` (dense or CSR), ``.npy`` or ``.mtx``.
    rhs : str or None
        ``b`` as ``FILE.h5:/DATASET``, a vector with one entry per row of ``A``.
    comm : hpcml.comm.Comm

    Returns
    -------
    A : hpcml.distmat.DistMatrix
    b : numpy.ndarray or None
        This rank's block of ``b``.
    """
    A = read_matrix(matrix, comm, name="A")
    if A.shape[0] == 0 or A.shape[1] == 0:
        raise InputError(f"{matrix} is empty (shape {A.shape})", collective=True)
    if rhs is None:
        return A, None
    b, length = read_rows(rhs, comm)
    comm.agree(b.ndim == 1 and length == A.shape[0],
               f"{rhs} must be a vector of length {A.shape[0]} (the rows of A), "
               f"has shape {(length, *b.shape[1:])}")
    return A, b
