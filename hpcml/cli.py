"""The ``hpcml`` command: one subcommand per workload, plus info, run, demo and data.

Each workload module registers its own subcommands (``register(subparsers,
common)``) and handles them with ``run(args, comm) -> dict``, declared with
:func:`hpcml.command.command`.  This module owns the process-wide set-up:
threads per rank, logging on rank 0 and the MPI communicator; the life of
the job (paths, stop signals, exit codes) is :func:`hpcml.command.run_job`.
"""

import argparse
import importlib
import logging
import os
import sys

from hpcml import __version__, options, stop
from hpcml.command import command
from hpcml.errors import HpcmlError, InputError
from hpcml.runtime import launcher_rank, limit_threads

#: Modules that add subcommands, in the order ``hpcml --help`` lists them.
COMMAND_MODULES = (
    "hpcml.synthetic",
    "hpcml.stats",
    "hpcml.linalg.cli",
    "hpcml.optim.cli",
    "hpcml.topics.cli",
    "hpcml.vision.cli",
    "hpcml.slurm_cli",
    "hpcml.sweep_cli",
    "hpcml.pipeline_cli",
    "hpcml.compare",
    "hpcml.scale_cli",
)

log = logging.getLogger("hpcml")


class Parser(argparse.ArgumentParser):
    """An argument parser that raises :class:`InputError` and prints on rank 0 only.

    Every ``type=float`` option refuses NaN (``invalid float value: 'nan'``).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("type", float, options.number)

    def error(self, message):
        raise InputError(f"{self.prog}: {message}")

    def _print_message(self, message, file=None):
        if launcher_rank() == 0:
            super()._print_message(message, file)


def common_options():
    """The options every job subcommand accepts."""
    common = Parser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument("--output", default=None, help="output file (HDF5)")
    group.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    group.add_argument("--json", action="store_true", help="print a JSON summary on stdout (rank 0)")
    group.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                       help="logging level; debug logs every rank")
    return common


def data_commands(subparsers):
    """The sub-subcommands of ``hpcml data`` (generators and converters register here)."""
    data = subparsers.choices["data"]
    return next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))


def build_parser():
    """The full ``hpcml`` parser with every registered subcommand."""
    root = Parser(prog="hpcml", description="Large machine-learning jobs the HPC way: "
                  "run subcommands under mpiexec or srun.")
    root.add_argument("--version", action="version", version=f"hpcml {__version__}")
    subparsers = root.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    common = common_options()

    info = subparsers.add_parser("info", help="versions, MPI library, ranks, BLAS and threads",
                                 parents=[common])
    info.set_defaults(handler=_info)

    run = subparsers.add_parser("run", help="run a job spec (TOML) from jobs/", parents=[common])
    run.add_argument("job", help="job spec file")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a parameter (k=5, checkpoint.every=10); repeatable")
    run.set_defaults(handler=None)

    demo = subparsers.add_parser("demo", help="run the demo of every workload (launches mpiexec)")
    demo.add_argument("--ranks", type=int, default=2, help="ranks per job (default 2)")
    demo.add_argument("--jobs", default="jobs/demo.toml", help="list of demo steps (default jobs/demo.toml)")
    demo.set_defaults(handler=None)

    data = subparsers.add_parser("data", help="generate or convert input data")
    data.add_subparsers(dest="data_command", metavar="KIND", parser_class=Parser).required = True

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers, common)
    return root


def _expand_job(root, args):
    """Turn ``hpcml run JOB.toml`` into the argument list of the job's subcommand."""
    from hpcml import jobs

    spec = jobs.load(args.job, args.set)
    parser = jobs.resolve(spec, root)
    argv = [*spec.workload, *jobs.to_argv(spec, parser)]
    defaults = common_options().parse_args([])
    for key in vars(defaults):
        value = getattr(args, key)
        if value != getattr(defaults, key):
            argv += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return root.parse_args(argv)


def _setup_logging(level, rank):
    level = getattr(logging, level.upper())
    handler = logging.StreamHandler(sys.stderr)
    prefix = f"[rank {rank}] " if level == logging.DEBUG else ""
    handler.setFormatter(logging.Formatter(f"{prefix}%(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    # Rank 0 speaks for the job; other ranks only when debugging.
    log.setLevel(level if rank == 0 or level == logging.DEBUG else logging.ERROR)


@command(outputs=())
def _info(args, comm):
    """Versions and the runtime set-up, printed by rank 0."""
    import h5py
    import mpi4py
    import numba
    import numpy
    import scipy
    from mpi4py import MPI
    from threadpoolctl import threadpool_info

    blas = [f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
            for p in threadpool_info() if p.get("user_api") == "blas"]
    facts = {
        "hpcml": __version__,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__, "scipy": scipy.__version__, "numba": numba.__version__,
        "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version, "mpi4py": mpi4py.__version__,
        "mpi_library": MPI.Get_library_version().strip().splitlines()[0],
        "mpi_standard": "%d.%d" % MPI.Get_version(),
        "ranks": comm.size,
        "nodes": str(comm.topology),
        "processor": MPI.Get_processor_name(),
        "blas": "; ".join(blas) or "unknown",
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "numba_threading_layer": numba.config.THREADING_LAYER,
        "thread_variables": {k: os.environ[k] for k in sorted(os.environ) if k.endswith("_NUM_THREADS")},
    }
    if comm.rank == 0 and not args.json:
        width = max(map(len, facts))
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return facts


def _demo(args):
    """Run each demo step under ``mpiexec -n RANKS hpcml run STEP``."""
    import tomllib

    from hpcml.launch import mpiexec_command, run_child

    try:
        with open(args.jobs, "rb") as handle:
            steps = tomllib.load(handle).get("steps", [])
    except FileNotFoundError:
        raise InputError(f"{args.jobs}: no such file (run the demo from the repository root)") from None
    if not steps:
        raise InputError(f"{args.jobs}: no steps listed")
    base = os.path.dirname(args.jobs)
    for step in steps:
        command = mpiexec_command(args.ranks, ["run", os.path.join(base, step)])
        print(f"\n$ {' '.join(command)}", flush=True)
        code = run_child(command).returncode
        if code:
            print(f"hpcml: error: demo step {step} failed with exit code {code}", file=sys.stderr)
            return code
    print(f"\ndemo finished: {len(steps)} step(s) at {args.ranks} ranks", flush=True)
    return 0


def main(argv=None):
    """Entry point of the ``hpcml`` command; returns the exit status."""
    limit_threads()
    try:
        root = build_parser()
        args = root.parse_args(argv)
        if args.command == "demo":
            stop.install(at_safe_points=False, why="the demo step running was stopped too")
            return _demo(args)
        if args.command == "run":
            args = _expand_job(root, args)
    except (HpcmlError, stop.Stopped) as exc:
        if launcher_rank() == 0:
            print(f"{exc.prefix}{exc}", file=sys.stderr)
        return exc.exit_code
    return _run_job(args)


def _run_job(args):
    from hpcml.command import run_job
    from hpcml.comm import Comm, install_abort_hook

    comm = Comm.world()
    _setup_logging(args.log_level, comm.rank)
    install_abort_hook()
    return run_job(args, comm)


if __name__ == "__main__":
    sys.exit(main())
