"""Linear programs as the LP solver takes them, from MPS or from an HDF5 group."""

import os
from typing import NamedTuple

import h5py
import numpy as np

from hpcml.distmat import DistMatrix
from hpcml.errors import InputError
from hpcml.io import read_matrix
from hpcml.io.hdf5 import parse_spec, read_replicated, read_rows
from hpcml.io.mps import read_mps


class LPInput(NamedTuple):
    """An LP read for :func:`hpcml.optim.problems.lp`: ``minimise cᵀx`` over row-sharded constraints.

    ``A_eq``/``A_ub`` are :class:`~hpcml.distmat.DistMatrix` (``None`` when
    the model has no such rows), ``b_eq``/``b_ub`` this rank's blocks of
    their right-hand sides, ``bounds`` the replicated ``(lower, upper)``.
    The model's own objective is ``sense · (cᵀx + offset)``; ``model`` is the
    parsed :class:`~hpcml.io.mps.LinearProgram` (``None`` for HDF5, whose
    ``sense`` is 1 and ``offset`` 0).
    """

    c: np.ndarray
    A_eq: object
    b_eq: object
    A_ub: object
    b_ub: object
    bounds: tuple
    sense: float
    offset: float
    model: object


def read_lp(path, comm, mps_format="free", relax=False):
    """Read an LP from ``model.mps`` (every rank parses) or an HDF5 group, row-sharding its matrices.

    Parameters
    ----------
    path : str
        ``model.mps``, or ``FILE.h5`` / ``FILE.h5:/GROUP`` holding ``c`` and
        ``A_eq``/``b_eq`` and/or ``A_ub``/``b_ub``, optionally ``lower``
        (default 0) and ``upper`` (default +inf), which may hold ±inf (a
        free variable: ``lower = -inf``).
    comm : hpcml.comm.Comm
    mps_format : {"free", "fixed"}
    relax : bool
        Read an MPS model with integer variables as its LP relaxation
        (``model.n_integer`` counts them) instead of refusing it.

    Returns
    -------
    LPInput
    """
    if path.lower().endswith(".mps"):
        return _read_mps(path, comm, mps_format, relax)
    file, group = (path, "/") if ":" not in path else parse_spec(path)
    base = group.rstrip("/")
    present = None
    with comm.guard():
        if not os.path.exists(file):
            raise InputError(f"{file}: no such file")
        with h5py.File(file, "r") as handle:
            present = {k for k in ("A_eq", "A_ub", "lower", "upper") if f"{base}/{k}" in handle}
    c = read_replicated(f"{file}:{base}/c", comm)
    pieces = []
    for kind in ("eq", "ub"):
        if f"A_{kind}" in present:
            A = read_matrix(f"{file}:{base}/A_{kind}", comm, name=f"A_{kind}")
            b, length = read_rows(f"{file}:{base}/b_{kind}", comm)
            comm.agree(length == A.shape[0], f"b_{kind} has {length} entries, A_{kind} {A.shape[0]} rows")
            pieces += [A, b]
        else:
            pieces += [None, None]
    n = c.shape[0]
    bounds = {"lower": np.zeros(n), "upper": np.full(n, np.inf)}
    for key in ("lower", "upper"):   # the same order on every rank: each read is collective
        if key in present:
            bounds[key] = read_replicated(f"{file}:{base}/{key}", comm, allow_inf=True)
            comm.agree(bounds[key].shape == (n,),
                       f"{file}:{base}/{key} has shape {bounds[key].shape}; c has {n} entries")
    lower, upper = bounds["lower"], bounds["upper"]
    bad = np.flatnonzero((lower > upper) | (lower == np.inf) | (upper == -np.inf))
    j = bad[0] if bad.size else 0
    comm.agree(not bad.size, f"{path}: variable {j} has bounds [{lower[j]}, {upper[j]}]: "
               "need lower <= upper, lower < inf and upper > -inf")
    return LPInput(c, *pieces, (lower, upper), 1.0, 0.0, None)


def _read_mps(path, comm, mps_format, relax):
    model = None
    with comm.guard(), comm.io():
        model = read_mps(path, mps_format, relax)
    A_eq, b_eq, A_ub, b_ub = model.standard_rows()
    pieces = []
    for A, b in ((A_eq, b_eq), (A_ub, b_ub)):
        if A.shape[0]:
            D = DistMatrix.from_global(A, comm)
            pieces += [D, b[D.row_offset:D.row_offset + D.local_rows]]
        else:
            pieces += [None, None]
    return LPInput(model.c, *pieces, (model.lower, model.upper), model.sense, model.offset, model)
