"""Synthetic matrices with known answers, for demos, tests and benchmarks.

``hpcml data matrix`` writes a dense matrix with a prescribed spectrum
(``A = U diag(s) Vᵀ`` from random orthogonal factors, so its singular
values are known exactly) or a random sparse CSR matrix.
"""

import numpy as np
import scipy.sparse as sp

from hpcml.command import command
from hpcml.errors import InputError
from hpcml.runtime import refuse_beyond_memory


def parse_spectrum(text, count):
    """Singular values described by ``geometric:HI:LO``, ``linear:HI:LO`` or ``flat``.

    Returns
    -------
    numpy.ndarray
        ``count`` values in descending order.
    """
    kind, *bounds = text.split(":")
    if kind == "flat" and not bounds:
        return np.ones(count)
    try:
        hi, lo = (float(b) for b in bounds)
    except ValueError:
        raise InputError(f"--spectrum {text!r}: expected geometric:HI:LO, linear:HI:LO or flat") from None
    if not hi >= lo > 0:
        raise InputError(f"--spectrum {text!r}: need HI >= LO > 0")
    if kind == "geometric":
        return np.geomspace(hi, lo, count)
    if kind == "linear":
        return np.linspace(hi, lo, count)
    raise InputError(f"--spectrum {text!r}: unknown kind {kind!r}")


def orthonormal_columns(rows, cols, rng):
    """A ``rows × cols`` matrix with orthonormal columns (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q * np.sign(np.diag(r))


def dense_with_spectrum(m, n, s, rng, dtype=np.float64):
    """``U diag(s) Vᵀ`` with random orthonormal ``U`` (m × r) and ``V`` (n × r), ``r = len(s)``."""
    r = len(s)
    U = orthonormal_columns(m, r, rng)
    V = orthonormal_columns(n, r, rng)
    return np.ascontiguousarray((U * s) @ V.T, dtype=dtype)


def sparse_random(m, n, density, rng, dtype=np.float64):
    """A CSR matrix with about ``density·m·n`` standard normal non-zeros."""
    return sp.random(m, n, density=density, format="csr", dtype=dtype, rng=rng,
                     data_rvs=rng.standard_normal)


def register(subparsers, common):
    """Add ``hpcml data matrix``."""
    from hpcml.cli import data_commands

    parser = data_commands(subparsers).add_parser(
        "matrix", parents=[common], help="a dense matrix with a known spectrum, or a sparse one",
        description="Write a synthetic matrix to --output FILE.h5:/DATASET (rank 0 writes).")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--cols", type=int, required=True)
    parser.add_argument("--spectrum", default="geometric:1:1e-3",
                        help="singular values of a dense matrix: geometric:HI:LO, linear:HI:LO or flat")
    parser.add_argument("--density", type=float, default=None,
                        help="write a sparse CSR matrix with this fraction of non-zeros instead")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.set_defaults(handler=run)


@command(required=("output",))
def run(args, comm):
    """Generate on rank 0, write atomically, and let every rank return the same summary."""
    from hpcml.io.hdf5 import atomic_file, parse_spec, write_matrix

    if args.rows < 1 or args.cols < 1:
        raise InputError(f"data matrix: --rows and --cols must be >= 1, got {args.rows}x{args.cols}",
                         collective=True)
    if args.density is not None and not 0 < args.density <= 1:
        raise InputError(f"data matrix: --density must be in (0, 1], got {args.density}", collective=True)
    path, name = parse_spec(args.output)
    summary = {"output": args.output, "shape": [args.rows, args.cols], "dtype": args.dtype}
    with comm.guard():
        if comm.rank == 0:
            rng = np.random.default_rng(args.seed)
            # The dense matrix with its two orthogonal factors; a sparse one's
            # non-zeros as value, index and the generator's temporaries.
            cells = args.rows * args.cols if args.density is None else args.density * args.rows * args.cols
            refuse_beyond_memory(int(cells * (24 if args.density is None else 32)),
                                 f"data matrix {args.rows} x {args.cols}", "fewer --rows or --cols", ranks=1)
            if args.density is None:
                s = parse_spectrum(args.spectrum, min(args.rows, args.cols))
                A = dense_with_spectrum(args.rows, args.cols, s, rng, args.dtype)
            else:
                A = sparse_random(args.rows, args.cols, args.density, rng, args.dtype)
                summary["nnz"] = int(A.nnz)
            with comm.io(), atomic_file(path) as tmp:
                write_matrix(f"{tmp}:{name}", A, mode="w")
                if args.density is None:
                    import h5py
                    with h5py.File(tmp, "a") as handle:
                        handle[name].attrs["singular_values"] = s
    return comm.bcast_obj(summary)
