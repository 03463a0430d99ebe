"""``hpcml lasso``, ``hpcml lp``, ``hpcml solve`` and the ``hpcml data lasso|lp`` generators."""

import logging

import numpy as np

from hpcml import options
from hpcml.checkpoint import Checkpointer, add_arguments
from hpcml.command import command
from hpcml.errors import ConvergenceError, InputError
from hpcml.io.hdf5 import write_output
from hpcml.io.lp import read_lp
from hpcml.io.system import read_system
from hpcml.optim import problems, synthetic
from hpcml.optim.algorithms import METHODS

log = logging.getLogger("hpcml")


def _solver_options(parser, tol):
    group = parser.add_argument_group("solver")
    group.add_argument("--method", choices=METHODS, default="AT",
                       help="first-order method (default AT, Auslender-Teboulle)")
    group.add_argument("--tol", type=float, default=tol, help=f"relative tolerance (default {tol:g})")
    group.add_argument("--max-iter", type=options.non_negative_int, default=5000, help="iteration limit (default 5000)")
    _allow_partial(group)


def _allow_partial(parser):
    parser.add_argument("--allow-partial", action="store_true",
                        help="when not solved to tolerance, write the point anyway (its status says "
                             "so) and exit 0 instead of 2")


def register(subparsers, common):
    """Add ``lasso``, ``lp``, ``solve`` and ``data lasso``/``data lp``."""
    from hpcml.cli import data_commands

    lasso = subparsers.add_parser(
        "lasso", parents=[common], help="LASSO: min ½‖Ax − b‖² + λ‖x‖₁ on a row-sharded A",
        description="Solve a LASSO problem with an accelerated first-order method.")
    lasso.add_argument("--input", required=True, help="A as FILE.h5:/DATASET (dense or CSR), .npy or .mtx")
    lasso.add_argument("--rhs", required=True, help="b as FILE.h5:/DATASET")
    weight = lasso.add_mutually_exclusive_group(required=True)
    weight.add_argument("--lam", type=float, help="λ (> 0)")
    weight.add_argument("--lam-ratio", type=float,
                        help="λ as a fraction of λ_max = ‖Aᵀb‖∞ (the smallest λ with solution 0)")
    lasso.add_argument("--mode", choices=["auto", "gram", "normal", "matvec"], default="auto",
                       help="how ½‖Ax − b‖² is evaluated (default auto: Gram matrix when A is tall)")
    _solver_options(lasso, 1e-10)
    add_arguments(lasso)
    lasso.set_defaults(handler=run_lasso)

    lp = subparsers.add_parser(
        "lp", parents=[common], help="linear programs from MPS or HDF5 (PDLP, or TFOCS's smoothed conic dual)",
        description="Solve min cᵀx s.t. A_eq x = b_eq, A_ub x ≤ b_ub, lower ≤ x ≤ upper.")
    lp.add_argument("--input", required=True,
                    help="model.mps, or model.h5 holding c, lower, upper and A_eq/b_eq and/or A_ub/b_ub")
    lp.add_argument("--mps-format", choices=["free", "fixed"], default="free")
    lp.add_argument("--relax", action="store_true",
                    help="solve the LP relaxation of a model with integer variables (the status says so)")
    lp.add_argument("--method", choices=problems.LP_METHODS, default="pdlp",
                    help="pdlp: restarted primal-dual hybrid gradient (default); scd: TFOCS's smoothed "
                         "conic dual with continuation")
    lp.add_argument("--tol", type=float, default=1e-6,
                    help="relative tolerance of the primal and dual residuals and the duality gap "
                         "(default 1e-6)")
    lp.add_argument("--max-iter", type=options.non_negative_int, default=100000,
                    help="pdlp: PDHG step limit (default 100000)")
    lp.add_argument("--no-presolve", dest="presolve", action="store_false",
                    help="pdlp: solve the LP as given (default: drop empty rows and columns, turn singleton "
                         "rows into bounds, remove fixed variables first)")
    scd = lp.add_argument_group("scd")
    scd.add_argument("--mu", type=float, default=1e-3, help="smoothing weight μ (default 1e-3)")
    scd.add_argument("--algorithm", choices=METHODS, default="AT",
                     help="first-order method of the dual solves (default AT)")
    scd.add_argument("--max-outer", type=int, default=500, help="continuation steps (default 500)")
    scd.add_argument("--inner-max", type=int, default=2000, help="dual iterations per step (default 2000)")
    _allow_partial(lp)
    lp.set_defaults(handler=run_lp)

    solve = subparsers.add_parser(
        "solve", parents=[common], help="min f(Ax + b) + h(x) from named pieces",
        description="Compose a smooth loss, the matrix operator and a prox-capable term.")
    solve.add_argument("--input", required=True, help="A as FILE.h5:/DATASET")
    solve.add_argument("--rhs", default=None, help="b (targets or ±1 labels) as FILE.h5:/DATASET")
    solve.add_argument("--smooth", choices=problems.SMOOTH, default="quadratic",
                       help="f: quadratic ½‖z − b‖², huber (threshold --tau) or logistic (labels b)")
    solve.add_argument("--tau", type=float, default=1.0, help="Huber threshold (default 1)")
    solve.add_argument("--prox", choices=problems.PROX, default="zero", help="h (default zero)")
    solve.add_argument("--weight", type=float, default=1.0,
                       help="λ of l1; radius of the balls (default 1)")
    solve.add_argument("--lower", type=float, default=-np.inf, help="box lower bound")
    solve.add_argument("--upper", type=float, default=np.inf, help="box upper bound")
    _solver_options(solve, 1e-8)
    add_arguments(solve)
    solve.set_defaults(handler=run_solve)

    data = data_commands(subparsers)
    gen = data.add_parser("lasso", parents=[common], help="a sparse regression problem",
                          description="Write A, b and x_true to --output FILE.h5 (rank 0 writes).")
    gen.add_argument("--rows", type=int, required=True)
    gen.add_argument("--cols", type=int, required=True)
    gen.add_argument("--nonzeros", type=int, default=10, help="support size of the truth")
    gen.add_argument("--noise", type=float, default=0.1)
    gen.set_defaults(handler=run_data_lasso)
    gen = data.add_parser("lp", parents=[common], help="a random sparse LP with a known optimum",
                          description="Write c, A_eq, b_eq, A_ub, b_ub, lower, x_star to --output FILE.h5 "
                          "(and --mps FILE.mps).")
    gen.add_argument("--rows", type=int, required=True, help="equality rows")
    gen.add_argument("--cols", type=int, required=True)
    gen.add_argument("--inequalities", type=int, default=0, help="≤ rows (default 0)")
    gen.add_argument("--density", type=float, default=0.01)
    gen.add_argument("--mps", default=None, help="also write the LP as a free MPS file")
    gen.set_defaults(handler=run_data_lp)


# -- helpers ----------------------------------------------------------------------


def _check_positive(**values):
    for name, value in values.items():
        if value is not None and not 0 < value < np.inf:
            raise InputError(f"--{name.replace('_', '-')} must be > 0 and finite, got {value}", collective=True)


def _checkpoint_callback(args, comm, check_every=20):
    """Save ``x`` every ``--checkpoint-every`` iterations and stop on SIGTERM/SIGUSR1.

    A signal is looked for every ``check_every`` iterations: one allreduce
    per iteration would cost more than the iteration on small problems.
    """
    checkpointer = Checkpointer.from_args(args, comm)
    saved = checkpointer.latest() if checkpointer.resume else None
    x0 = None
    if saved is not None:
        x0 = saved.replicated["x"]
        log.info("resuming from the checkpoint of iteration %d (momentum restarts)", saved.iteration)

    def callback(k, x, _objective, _Lx):
        checkpointer.step(k, lambda: {"replicated": {"x": x}}, check_every)
        return False
    return x0, callback


#: Statuses of a point that is not the answer to the tolerance asked for
#: (``infeasible`` and ``unbounded`` are answers: their certificates checked).
NOT_SOLVED = ("max_iterations", "stalled")


def _report(name, result, args, comm):
    """Log the outcome and refuse one that is not a solution (collective: every rank sees it).

    Raises
    ------
    ConvergenceError
        A non-finite point or objective; or a status in :data:`NOT_SOLVED`
        without ``--allow-partial``.
    """
    log.info("%s: %s after %d iterations, objective %.12g, primal residual %.2e, dual residual %.2e, %.3g s",
             name, result["status"], result["iterations"], result["objective"],
             result["primal_residual"], result["dual_residual"], result["seconds"])
    facts = (f"status {result['status']} after {result['iterations']} iterations, primal residual "
             f"{result['primal_residual']:.2e}, dual residual {result['dual_residual']:.2e}")
    if not (np.isfinite(result["objective"]) and np.isfinite(result["x"]).all()):
        raise ConvergenceError(f"{name}: the iterates diverged to NaN or Inf ({facts}); nothing written",
                               collective=True)
    if result["status"] in NOT_SOLVED:
        if not args.allow_partial:
            raise ConvergenceError(f"{name}: not solved to --tol {args.tol:g} ({facts}); raise the iteration "
                                   "limit, loosen --tol, or pass --allow-partial to write the point anyway",
                                   collective=True)
        log.warning("%s: not solved to tolerance (%s); written as is (--allow-partial)", name, facts)
    return {k: result[k] for k in ("status", "objective", "primal_residual", "dual_residual",
                                   "iterations", "seconds") if k in result} | {"ranks": comm.size}


def _write(args, comm, result, extra_small=None, sharded=None):
    if not args.output:
        return
    history = result.get("history", {})
    small = {"x": result["x"], **(extra_small or {})}
    for key, values in history.items():
        small[f"history/{key}"] = np.asarray(values, dtype=np.float64)
    attrs = {k: result[k] for k in ("status", "objective", "primal_residual", "dual_residual",
                                    "iterations", "seconds", "gap") if k in result}
    write_output(args.output, comm, small=small, sharded=sharded, attrs=attrs, params=vars(args))


# -- handlers ------------------------------------------------------------------------


@command(inputs=("input", "rhs"), checkpoints=True, resumable=("max_iter",))
def run_lasso(args, comm):
    """Read A and b, solve the LASSO, write x and the history."""
    _check_positive(lam=args.lam, lam_ratio=args.lam_ratio, tol=args.tol)
    A, b = read_system(args.input, args.rhs, comm)
    lam = args.lam
    if lam is None:
        lam = args.lam_ratio * problems.lasso_lambda_max(A, b)
    x0, callback = _checkpoint_callback(args, comm)
    result = problems.lasso(A, b, lam, method=args.method, tol=args.tol, max_iter=args.max_iter,
                            mode=args.mode, x0=x0, callback=callback)
    summary = _report("lasso", result, args, comm)
    summary.update(lam=lam, gap=result["gap"], nonzeros=int(np.count_nonzero(result["x"])),
                   mode=result["mode"], method=args.method)
    _write(args, comm, result)
    if args.output:
        summary["output"] = args.output
    return summary


@command(inputs=("input",))
def run_lp(args, comm):
    """Read an LP, solve it (PDLP, or the smoothed conic dual), report an honest status.

    The output holds ``x``, the reduced costs ``reduced_costs`` and the
    row multipliers, all in HiGHS's convention (scipy ``linprog``'s
    ``marginals``): the sensitivity of the optimal objective, in the
    model's own sense, to a right-hand side or a bound.  An HDF5 model gets
    ``marginals/eq`` and ``marginals/ub`` (one per row of ``A_eq`` and
    ``A_ub``, written rank by rank), an MPS model ``marginals/rows`` (one
    per constraint row of the file, in its order): the fields of
    :func:`hpcml.optim.problems.solve_lp`.
    """
    _check_positive(mu=args.mu, tol=args.tol, max_outer=args.max_outer, inner_max=args.inner_max)
    problem = read_lp(args.input, comm, args.mps_format, args.relax)
    result = problems.solve_lp(problem, comm, method=args.method, tol=args.tol, max_iter=args.max_iter,
                               mu=args.mu, algorithm=args.algorithm, max_outer=args.max_outer,
                               inner_max=args.inner_max, presolve=args.presolve)
    if "presolve" in result:
        pre = result["presolve"]
        log.info("lp: presolve removed %d row(s) and %d column(s) in %d round(s)",
                 pre["rows_removed"], pre["columns_removed"], pre["rounds"])
    summary = _report("lp", result, args, comm)
    integer = problem.model.n_integer if problem.model is not None else 0
    if integer:
        # The status names what was solved, which is not the model in the file.
        result["status"] = summary["status"] = f"{result['status']}, LP relaxation of {integer} integer variable(s)"
        log.warning("lp: %s", result["status"])
    summary.update(gap=result["gap"], outer=result["outer"], method=args.method)
    if args.method == "scd":
        summary.update(mu=args.mu, algorithm=args.algorithm)
    else:
        summary.update(restarts=result["restarts"])
        if "presolve" in result:
            summary.update(presolve_rows_removed=result["presolve"]["rows_removed"],
                           presolve_columns_removed=result["presolve"]["columns_removed"])
    small = {"reduced_costs": result["reduced_costs"]}
    if "marginals_rows" in result:
        small["marginals/rows"] = result["marginals_rows"]
    sharded = {f"marginals/{kind}": result[f"marginals_{kind}"] for kind in ("eq", "ub")
               if f"marginals_{kind}" in result}
    _write(args, comm, result, small, sharded)
    if args.output:
        summary["output"] = args.output
    return summary


@command(inputs=("input", "rhs"), checkpoints=True, resumable=("max_iter",))
def run_solve(args, comm):
    """Compose f, the matrix operator and h from their names and minimise."""
    _check_positive(tol=args.tol, tau=args.tau)
    if args.smooth in ("quadratic", "logistic") and args.rhs is None:
        raise InputError(f"solve: --smooth {args.smooth} needs --rhs", collective=True)
    A, b = read_system(args.input, args.rhs, comm)
    if args.smooth == "logistic":
        comm.agree(bool(np.all(np.abs(b) == 1)), f"{args.rhs}: logistic labels must be -1 or +1")
    x0, callback = _checkpoint_callback(args, comm)
    result = problems.composite(A, b, args.smooth, args.tau, args.prox, args.weight, args.lower,
                                args.upper, method=args.method, tol=args.tol, max_iter=args.max_iter,
                                x0=x0, callback=callback)
    summary = _report("solve", result, args, comm)
    summary.update(smooth=args.smooth, prox=args.prox, method=args.method)
    _write(args, comm, result)
    if args.output:
        summary["output"] = args.output
    return summary


def _on_rank_zero(args, comm, write):
    """Run ``write()`` on rank 0 alone and give its value to every rank."""
    if args.rows < 1 or args.cols < 1:
        raise InputError(f"--rows and --cols must be >= 1, got {args.rows}x{args.cols}", collective=True)
    value = None
    with comm.guard():
        if comm.rank == 0:
            with comm.io():
                value = write()
    return comm.bcast_obj(value)


@command(outputs=("output",), required=("output",))
def run_data_lasso(args, comm):
    """Write ``/A``, ``/b`` and ``/x_true`` of a synthetic sparse regression."""
    _on_rank_zero(args, comm, lambda: synthetic.write_lasso_problem(
        args.output, args.rows, args.cols, args.nonzeros, args.noise, args.seed))
    return {"output": args.output, "shape": [args.rows, args.cols], "nonzeros": args.nonzeros}


@command(outputs=("output", "mps"), required=("output",))
def run_data_lp(args, comm):
    """Write a random LP with a known optimum (``x_star``, ``objective`` attribute)."""
    if not 0 < args.density <= 1:
        raise InputError(f"--density must be in (0, 1], got {args.density}", collective=True)
    objective = _on_rank_zero(args, comm, lambda: synthetic.write_random_lp(
        args.output, args.rows, args.cols, args.inequalities, args.density, args.seed, args.mps))
    return {"output": args.output, "shape": [args.rows + args.inequalities, args.cols],
            "objective": objective, "mps": args.mps}
