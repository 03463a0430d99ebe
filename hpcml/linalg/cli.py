"""``hpcml svd`` and ``hpcml pca``: read a row-sharded matrix, decompose, write the triplets.

The output file holds ``s``, ``V`` (``n × k``), ``U`` (``m × k``, written
rank by rank, with ``--compute-u``), the per-triplet ``residuals``, and
for PCA ``mean``, ``explained_variance`` and ``explained_variance_ratio``;
its attributes carry the method, the convergence facts and the
compute/communication/I/O timings (:func:`hpcml.io.hdf5.write_output`).
"""

import logging

import numpy as np

from hpcml.command import command
from hpcml.errors import InputError
from hpcml.io import read_matrix
from hpcml.io.hdf5 import write_output
from hpcml.linalg.pca import PCA
from hpcml.linalg.svd import METHODS, svd

log = logging.getLogger("hpcml")


def _common(parser):
    parser.add_argument("--input", required=True, help="FILE.h5:/DATASET (dense or CSR group), FILE.npy or FILE.mtx")
    parser.add_argument("--k", type=int, required=True, help="number of singular triplets / components")
    parser.add_argument("--method", default="auto", choices=METHODS, help="algorithm (default auto: picked "
                        "by shape, k and sparsity, and logged)")
    parser.add_argument("--tol", type=float, default=None,
                        help="residual tolerance relative to σ₁ (default 1e-10, 1e-5 for float32 input)")
    parser.add_argument("--max-iter", type=int, default=None, help="restarts or power iterations")
    parser.add_argument("--allow-partial", action="store_true",
                        help="on non-convergence keep the converged triplets instead of failing")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None,
                        help="compute in this precision (default: the stored one)")


def register(subparsers, common):
    """Add ``hpcml svd`` and ``hpcml pca``."""
    parser = subparsers.add_parser(
        "svd", parents=[common], help="top-k singular triplets of a row-sharded matrix",
        description="Top-k singular values and vectors of a dense or CSR matrix read by row blocks.")
    _common(parser)
    parser.add_argument("--center", action="store_true",
                        help="decompose A − 1μᵀ (column means removed inside the operator)")
    parser.add_argument("--compute-u", action="store_true", help="also write U (m × k, row-sharded)")
    parser.set_defaults(handler=run_svd)

    parser = subparsers.add_parser(
        "pca", parents=[common], help="principal components of a row-sharded matrix",
        description="PCA: centred SVD, explained variance over the total variance, optional whitening.")
    _common(parser)
    parser.add_argument("--whiten", action="store_true", help="scale the scores to unit variance")
    parser.add_argument("--scores", action="store_true", help="also write the scores (m × k, row-sharded)")
    parser.set_defaults(handler=run_pca)


def _read(args, comm):
    if args.max_iter is not None and args.max_iter < 0:
        raise InputError(f"{args.command}: --max-iter must be >= 0, got {args.max_iter}", collective=True)
    return read_matrix(args.input, comm, dtype=args.dtype)


def _facts(result):
    return {"method": result.method, "reason": result.reason, "iterations": int(result.iterations),
            "matvecs": int(result.matvecs), "tol": float(result.tol), "converged": result.n_converged}


@command(inputs=("input",))
def run_svd(args, comm):
    """``hpcml svd``: returns the summary printed with ``--json``."""
    A = _read(args, comm)
    mean = A.col_means() if args.center else None
    result = svd(A, args.k, method=args.method, tol=args.tol, max_iter=args.max_iter,
                 compute_u=args.compute_u, seed=args.seed, allow_partial=args.allow_partial, mean=mean,
                 check_finite=False)   # read_matrix has checked
    log.info("svd: %s on %d x %d: σ = %s (%d products, max residual / σ₁ %.1e, %.2f s)", result.method,
             *A.shape, np.array2string(result.s[:6], precision=6), result.matvecs,
             result.residuals.max() / result.s[0] if len(result.s) else 0.0, result.seconds)
    if args.output:
        small = {"s": result.s, "V": result.V, "residuals": result.residuals}
        if mean is not None:
            small["mean"] = mean
        write_output(args.output, comm, small=small,
                     sharded={"U": result.U} if result.U is not None else None,
                     attrs=_facts(result), params=vars(args))
    return {"input": args.input, "shape": list(A.shape), "output": args.output, **result.summary()}


@command(inputs=("input",))
def run_pca(args, comm):
    """``hpcml pca``: returns the summary printed with ``--json``."""
    A = _read(args, comm)
    pca = PCA(args.k, comm, whiten=args.whiten, method=args.method, tol=args.tol,
              max_iter=args.max_iter, seed=args.seed, allow_partial=args.allow_partial)
    if args.scores:
        scores = pca.fit_transform(A)
    else:
        scores = None
        pca.fit(A)
    result = pca.result_
    log.info("pca: %s on %d x %d: explained variance ratio %s (total %.4f)", result.method, *A.shape,
             np.array2string(pca.explained_variance_ratio_[:6], precision=4),
             float(pca.explained_variance_ratio_.sum()))
    if args.output:
        write_output(args.output, comm,
                     small={"s": result.s, "V": result.V, "components": pca.components_,
                            "mean": pca.mean_, "explained_variance": pca.explained_variance_,
                            "explained_variance_ratio": pca.explained_variance_ratio_,
                            "residuals": result.residuals},
                     sharded={"scores": scores} if scores is not None else None,
                     attrs=_facts(result), params=vars(args))
    return {"input": args.input, "shape": list(A.shape), "output": args.output,
            "explained_variance_ratio": pca.explained_variance_ratio_.tolist(), **result.summary()}
