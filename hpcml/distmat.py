"""The row-sharded matrix: the one distributed matrix type of hpcml.

Each rank holds a contiguous block of rows (dense numpy or scipy CSR); the
matrix never moves, vectors do.  This is the data container (block, shape,
communicator, column statistics, checks, gathering); products with it are
those of the operator that wraps it, :class:`hpcml.operator.MatrixOperator`.
"""

import numpy as np
import scipy.sparse as sp

from hpcml.errors import InputError
from hpcml.partition import block_range

FLOAT_TYPES = (np.float32, np.float64)


class DistMatrix:
    """A matrix whose rows are split across the ranks of a communicator.

    Parameters
    ----------
    local : numpy.ndarray or scipy.sparse matrix
        This rank's rows, shape ``(local_rows, n)``, float32 or float64.
        Sparse blocks are stored as CSR.  May have zero rows.
    comm : hpcml.comm.Comm
        The communicator; construction is collective (one small allgather
        of the block shapes, which also gives every rank its row offset).

    Attributes
    ----------
    shape : tuple of int
        Global ``(m, n)``.
    row_offset : int
        Global index of this rank's first row.
    """

    def __init__(self, local, comm):
        self.comm = comm
        if sp.issparse(local):
            local = sp.csr_matrix(local)
            local.sum_duplicates()
        else:
            local = np.ascontiguousarray(local)
        ok = local.ndim == 2 and local.dtype in FLOAT_TYPES
        layouts = comm.allgather_obj((local.shape[-1] if local.ndim == 2 else -1,
                                      local.dtype.str, local.shape[0], ok))
        comm.agree(all(lay[3] for lay in layouts),
                   "local blocks must be 2-D float32 or float64 arrays")
        comm.agree(len({(lay[0], lay[1]) for lay in layouts}) == 1,
                   "ranks disagree on the column count or dtype of the matrix: "
                   + ", ".join(f"rank {r}: {lay[0]} columns {np.dtype(lay[1])}"
                               for r, lay in enumerate(layouts)))
        rows = [lay[2] for lay in layouts]
        self.local = local
        self.shape = (int(sum(rows)), int(local.shape[1]))
        self.row_offset = int(sum(rows[: comm.rank]))
        self.row_counts = np.array(rows, dtype=np.int64)

    @classmethod
    def from_global(cls, A, comm):
        """Keep this rank's block rows of a matrix every rank holds in full."""
        start, stop = block_range(A.shape[0], comm.size, comm.rank)
        local = A[start:stop]
        return cls(local.tocsr() if sp.issparse(local) else local, comm)

    def __repr__(self):
        kind = "csr" if self.issparse else "dense"
        return f"DistMatrix(shape={self.shape}, {kind}, {self.dtype}, rank {self.comm.rank}/{self.comm.size})"

    @property
    def dtype(self):
        return self.local.dtype

    @property
    def issparse(self):
        return sp.issparse(self.local)

    @property
    def local_rows(self):
        return self.local.shape[0]

    @property
    def nnz(self):
        """Global number of stored entries (collective)."""
        mine = self.local.nnz if self.issparse else self.local.size
        return int(self.comm.allreduce_scalar(int(mine)))

    def astype(self, dtype):
        """The same matrix with its local block converted to ``dtype`` (collective)."""
        return DistMatrix(self.local.astype(dtype), self.comm)

    # -- column statistics --------------------------------------------------------

    def _column_sums(self, power):
        if self.issparse:
            weights = self.local.data.astype(np.float64) ** power
            sums = np.bincount(self.local.indices, weights=weights, minlength=self.shape[1])
        else:
            sums = np.sum(self.local.astype(np.float64, copy=False) ** power, axis=0)
        return self.comm.allreduce(np.ascontiguousarray(sums, dtype=np.float64))

    def col_means(self):
        """Mean of each column (float64, replicated); CSR stays sparse."""
        m = self.shape[0]
        if m == 0:
            raise InputError("column means of a matrix with no rows", collective=True)
        return self._column_sums(1) / m

    def col_norms(self):
        """Euclidean norm of each column (float64, replicated); CSR stays sparse."""
        return np.sqrt(self._column_sums(2))

    # -- row scaling -----------------------------------------------------------

    def row_norms(self):
        """Euclidean norm of each of this rank's rows (no communication)."""
        local = self.local
        if self.issparse:
            return np.sqrt(np.asarray(local.multiply(local).sum(axis=1)).ravel())
        return np.linalg.norm(local, axis=1)

    def scale_rows(self, scale):
        """The float64 matrix ``diag(scale) A`` for this rank's ``scale`` (collective); CSR stays sparse."""
        local = self.local
        if self.issparse:
            return DistMatrix(sp.csr_matrix(sp.diags(scale) @ local), self.comm)
        return DistMatrix((local * scale[:, None]).astype(np.float64), self.comm)

    # -- checks and gathering -----------------------------------------------------

    def check_finite(self, name="matrix"):
        """Raise :class:`InputError` on every rank if any entry is NaN or Inf.

        The message names the first offending global row.
        """
        values = self.local.data if self.issparse else self.local
        bad = -1
        if values.size and not np.isfinite(values).all():
            if self.issparse:
                row_of = np.repeat(np.arange(self.local_rows), np.diff(self.local.indptr))
                bad = int(row_of[~np.isfinite(values)][0])
            else:
                bad = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
        first = self.comm.allreduce_scalar(
            self.row_offset + bad if bad >= 0 else self.shape[0], "min")
        if first < self.shape[0]:
            raise InputError(f"{name} has a NaN or Inf in row {first} (0-based)", collective=True)

    def gather(self, root=0):
        """The full dense matrix on ``root`` (``None`` elsewhere); small matrices only."""
        dense = self.local.toarray() if self.issparse else self.local
        return self.comm.gatherv(np.ascontiguousarray(dense), root=root)
