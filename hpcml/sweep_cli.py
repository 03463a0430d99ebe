"""``hpcml sweep``: hyper-parameter sweeps of one job spec (see :mod:`hpcml.sweep`).

::

    hpcml sweep JOB.toml --grid lr=0.01,0.1 --grid width=0.5,1 [--max-parallel M] [--local]
    hpcml sweep JOB.toml --random 8 --seed 3 --range lr=1e-4:1e-1:log
    hpcml sweep DIR --resume --local        # run the points that did not finish
    hpcml sweep status DIR
    hpcml sweep report DIR [--metric M] [--goal max|min]
"""

from __future__ import annotations

from pathlib import Path

from hpcml import sweep
from hpcml.command import command
from hpcml.errors import InputError

ACTIONS = ("status", "report")


def register(subparsers, common):
    """Add ``sweep``."""
    from hpcml.slurm_cli import add_settings_arguments

    p = subparsers.add_parser(
        "sweep", parents=[common], help="hyper-parameter sweep as a SLURM job array (or locally)",
        description="Render one run directory per point of JOB and submit them as one SLURM job "
        "array (or run them here with --local); `sweep status DIR` and `sweep report DIR` follow it.")
    p.add_argument("target", help="JOB.toml, or `status` or `report`, or with --resume a sweep directory")
    p.add_argument("directory", nargs="?", help="the sweep directory (status, report)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values of a parameter (or section.key); repeatable: every combination")
    p.add_argument("--random", type=int, metavar="N", help="N random points (with --range; --seed)")
    p.add_argument("--range", dest="ranges", action="append", default=[], metavar="KEY=LOW:HIGH[:log]",
                   help="range of a parameter for --random, uniform or log-uniform; repeatable")
    p.add_argument("--dir", help="sweep directory (default: runs/NAME-sweep-TIMESTAMP; new or empty)")
    p.add_argument("--max-parallel", type=int, help="points running at once (SLURM: --array=0-N%%M; "
                   "local: default 1)")
    p.add_argument("--local", action="store_true", help="run the points here under mpiexec, not SLURM")
    # Not `resume`: the command core reads that name as a checkpoint resume.
    p.add_argument("--resume", dest="resume_points", action="store_true",
                   help="with --local: run the points of sweep directory TARGET that did not finish")
    p.add_argument("--dry-run", action="store_true", help="render the sweep, do not submit or run")
    p.add_argument("--metric", help="the summary key compared by the report (default by workload: "
                   "val_accuracy, perplexity, objective)")
    p.add_argument("--goal", choices=("max", "min"), help="best is the largest or smallest "
                   "(default: max for accuracies, min otherwise)")
    add_settings_arguments(p)
    p.set_defaults(handler=run_sweep)


def _points(args):
    grid = [sweep.parse_grid(item) for item in args.grid]
    ranges = [sweep.parse_range(item) for item in args.ranges]
    return sweep.points_from(grid, ranges, args.random, args.seed)


@command(outputs=())
def run_sweep(args, comm):
    """Start, resume, show or report a sweep."""
    from hpcml import jobs
    from hpcml.slurm_cli import batch_settings, cli_settings, default_run_dir

    if args.target in ACTIONS:
        if not args.directory:
            raise InputError(f"sweep {args.target}: name the sweep directory")
        if args.target == "status":
            rows = sweep.status(args.directory)
            if not args.json:
                print(sweep.format_status(rows), end="")
            return {"points": rows}
        result = sweep.report(args.directory, args.metric, args.goal)
        if not args.json:
            print(sweep.format_report(result), end="")
        return result
    if args.directory:
        raise InputError(f"sweep: unexpected {args.directory!r} after {args.target}")
    if args.resume_points:
        if not args.local:
            raise InputError("sweep --resume runs the unfinished points here: add --local "
                             "(under SLURM, requeued points resume by themselves)")
        result = sweep.resume_local(args.target, args.max_parallel or 1, args.metric, args.goal)
    else:
        spec = jobs.load(args.target)
        settings = batch_settings(spec, cli_settings(args), args.config)
        directory = Path(args.dir) if args.dir else default_run_dir(f"{settings.job_name}-sweep")
        result = sweep.start(args.target, directory, _points(args), settings, local=args.local,
                             max_parallel=args.max_parallel, dry_run=args.dry_run,
                             metric=args.metric, goal=args.goal)
    if not args.json:
        print(sweep.format_started(result), end="")
    return result
