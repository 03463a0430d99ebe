"""``hpcml stats``: column statistics and the spectral norm of a row-sharded matrix.

The smallest complete job of the toolkit: sharded read, column means and
norms (one allreduce each, CSR kept sparse), and ``‖A‖₂`` by power
iteration on ``AᵀA`` through the fused one-pass product — an iterative loop
with checkpoints and a stop on SIGTERM/SIGUSR1.
"""

import logging

import numpy as np

from hpcml.checkpoint import Checkpointer, add_arguments
from hpcml.command import command
from hpcml.errors import InputError
from hpcml.io import read_matrix
from hpcml.io.hdf5 import write_output
from hpcml.operator import MatrixOperator, Normal, power_iteration
from hpcml.progress import Progress
from hpcml.space import Space

log = logging.getLogger("hpcml")


def spectral_norm(A, checkpointer, max_iter=200, tol=1e-10, seed=0):
    """Largest singular value of ``A`` by power iteration on ``AᵀA``.

    Every rank draws the same start vector from ``seed`` and all later
    vectors come out of an allreduce, so the ranks hold identical iterates
    and take the same stopping decision without further messages.

    Parameters
    ----------
    A : hpcml.distmat.DistMatrix
    checkpointer : hpcml.checkpoint.Checkpointer
        Saves ``v`` every ``checkpointer.every`` iterations and when a stop
        signal arrives; its newest checkpoint is resumed by the caller.
    max_iter : int
    tol : float
        Stop when the estimate of ``σ²`` changes by at most ``tol`` relative
        (0: run all ``max_iter`` iterations).
    seed : int

    Returns
    -------
    dict
        ``sigma``, ``iterations``, ``converged`` and the ``history`` of estimates.
    """
    n = A.shape[1]
    v = np.random.default_rng(seed).standard_normal(n)
    v /= np.linalg.norm(v)
    history, start = [], 0
    saved = checkpointer.latest() if checkpointer.resume else None
    if saved is not None:
        v, history, start = saved.replicated["v"], list(saved.replicated["history"]), saved.iteration
        log.info("resuming power iteration after iteration %d", start)
    progress = Progress(max_iter, A.comm, "power iteration")
    converged = tol > 0 and len(history) >= 2 and abs(history[-1] - history[-2]) <= tol * history[-1]
    steps = power_iteration(Normal(MatrixOperator(A)).matvec, v, Space(A.comm, sharded=False))
    for it in range(start + 1, max_iter + 1):
        if converged:
            break
        lam, growth, v = next(steps)
        converged = growth == 0.0 or (tol > 0 and bool(history) and abs(lam - history[-1]) <= tol * lam)
        history.append(lam)
        progress.update(it, sigma=float(np.sqrt(lam)))
        checkpointer.step(it, lambda: {"replicated": {"v": v, "history": np.array(history)}})
    return {"sigma": float(np.sqrt(max(history[-1], 0.0))) if history else 0.0,
            "iterations": len(history), "converged": bool(converged), "history": history}


def register(subparsers, common):
    """Add ``hpcml stats``."""
    parser = subparsers.add_parser(
        "stats", parents=[common], help="column means and norms and the spectral norm of a matrix",
        description="Column statistics and ‖A‖₂ of a row-sharded matrix.")
    parser.add_argument("--input", required=True, help="FILE.h5:/DATASET, FILE.npy or FILE.mtx")
    parser.add_argument("--power-iterations", type=int, default=100, metavar="N",
                        help="maximum power iterations for ‖A‖₂ (0: skip)")
    parser.add_argument("--tol", type=float, default=1e-10, help="relative tolerance of σ² (0: run all iterations)")
    add_arguments(parser)
    parser.set_defaults(handler=run)


@command(inputs=("input",), checkpoints=True, resumable=("power_iterations",))
def run(args, comm):
    """Read, compute, write; returns the summary printed with ``--json``."""
    if args.power_iterations < 0 or args.tol < 0:
        raise InputError("stats: --power-iterations and --tol must be >= 0", collective=True)
    A = read_matrix(args.input, comm)
    if A.shape[0] == 0 or A.shape[1] == 0:
        raise InputError(f"stats: {args.input} is empty (shape {A.shape})", collective=True)
    means, norms = A.col_means(), A.col_norms()
    checkpointer = Checkpointer.from_args(args, comm)
    power = {"sigma": float("nan"), "iterations": 0, "converged": False, "history": []}
    if args.power_iterations:
        power = spectral_norm(A, checkpointer, args.power_iterations, args.tol, args.seed)
    frobenius = float(np.sqrt(np.sum(norms ** 2)))
    summary = {"input": args.input, "shape": list(A.shape), "frobenius_norm": frobenius,
               "spectral_norm": power["sigma"], "power_iterations": power["iterations"],
               "converged": power["converged"]}
    log.info("%s: %d x %d, ‖A‖_F = %.6g, ‖A‖_2 = %.6g (%d power iterations%s)", args.input,
             *A.shape, frobenius, power["sigma"], power["iterations"],
             "" if power["converged"] else ", not converged")
    if args.output:
        write_output(args.output, comm,
                     small={"col_means": means, "col_norms": norms,
                            "spectral_norm": power["sigma"], "frobenius_norm": frobenius,
                            "power_history": np.array(power["history"])},
                     params=vars(args))
        summary["output"] = args.output
    return summary
