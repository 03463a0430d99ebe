"""``hpcml submit``, ``hpcml status`` and ``hpcml cancel``: job specs as SLURM batch jobs.

``hpcml submit JOB.toml`` renders the generic batch script into a new run
directory and hands it to ``sbatch``; ``--dry-run`` renders and prints it
without submitting.  Settings come from the site configuration, the job
spec's ``[resources]`` table, then the options here.
"""

from __future__ import annotations

import argparse
import datetime
import re
from pathlib import Path

from hpcml import slurm
from hpcml.command import command
from hpcml.errors import InputError


def register(subparsers, common):
    """Add the ``submit``, ``status`` and ``cancel`` subcommands."""
    p = subparsers.add_parser(
        "submit", parents=[common], help="run a job spec as a SLURM batch job",
        description="Render the batch script for JOB into a run directory and submit it with sbatch.",
    )
    p.add_argument("job", help="job spec (TOML)")
    p.add_argument("--run-dir", help="directory for the script, logs and outputs "
                   "(default: runs/NAME-TIMESTAMP, created; must be new or empty)")
    add_settings_arguments(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="passed on to `hpcml run` (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="render and print the script, do not submit")
    p.set_defaults(handler=run_submit)

    p = subparsers.add_parser("status", parents=[common], help="state of a submitted run")
    p.add_argument("run_dir", help="run directory made by `hpcml submit`")
    p.set_defaults(handler=run_status)

    p = subparsers.add_parser("cancel", parents=[common], help="cancel a submitted run")
    p.add_argument("run_dir", help="run directory made by `hpcml submit`")
    p.add_argument("--signal", choices=slurm.SIGNALS,
                   help="send this signal to the batch script instead of cancelling "
                   "(USR1: checkpoint, and requeue when submitted with --requeue)")
    p.set_defaults(handler=run_cancel)


def add_settings_arguments(p):
    """The batch settings options (``--nodes``, ``--time``, ``--requeue`` ...), shared with sweeps."""
    p.add_argument("--job-name", help="SLURM job name (default: the job spec's file name)")
    p.add_argument("--nodes", type=int, help="number of nodes")
    p.add_argument("--ntasks-per-node", type=int, help="MPI ranks per node")
    p.add_argument("--cpus-per-task", type=int, help="cores per rank (thread pools are sized to it)")
    p.add_argument("--mem", help="memory per node, e.g. 4G")
    p.add_argument("--time", help="time limit: HH:MM:SS, D-HH:MM:SS or minutes")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--account", help="SLURM account")
    p.add_argument("--qos", help="SLURM quality of service")
    p.add_argument("--gres", help="generic resources, NAME[:TYPE]:COUNT[,...], e.g. gpu:2 or gpu:a100:4")
    p.add_argument("--launcher", choices=("srun", "mpiexec"), help="how the ranks are started")
    p.add_argument("--mpi", help="srun's --mpi plugin: pmi2, pmix, ...")
    p.add_argument("--requeue", action=argparse.BooleanOptionalAction, default=None,
                   help="after a checkpoint on the warning signal, requeue and resume")
    p.add_argument("--signal-seconds", type=int,
                   help="send SIGUSR1 this many seconds before the time limit (0: never)")
    p.add_argument("--overcommit", action=argparse.BooleanOptionalAction, default=None,
                   help="allow more ranks than cores")
    p.add_argument("--config", help="site configuration file (default: $HPCML_SLURM_CONFIG "
                   "or ~/.config/hpcml/slurm.toml)")


_CLI_SETTINGS = ("job_name", "nodes", "ntasks_per_node", "cpus_per_task", "mem", "time", "partition",
                 "account", "qos", "gres", "launcher", "mpi", "requeue", "signal_seconds", "overcommit")


def spec_settings(spec):
    """The batch settings a job spec's ``[resources]`` table asks for.

    ``ranks`` (the total) is kept for :func:`_apply_ranks`; ``memory`` and
    ``gpus`` become ``mem`` and ``gres = "gpu:N"``.
    """
    res = dict(spec.resources)
    settings = {key: res.pop(key) for key in ("ranks", "nodes", "ntasks_per_node", "cpus_per_task",
                                              "time", "partition") if key in res}
    if "memory" in res:
        settings["mem"] = res.pop("memory")
    if "gpus" in res:
        settings["gres"] = f"gpu:{res.pop('gpus')}"
    return settings


def _apply_ranks(layers, origin_names):
    """Turn a total ``ranks`` into ``ntasks_per_node`` for the chosen node count."""
    nodes = 1
    for layer in layers:
        nodes = layer.get("nodes") or nodes
    for layer, origin in zip(layers, origin_names):
        ranks = layer.pop("ranks", None)
        if ranks is None or layer.get("ntasks_per_node") is not None:
            continue
        if ranks < 1 or ranks % nodes:
            raise InputError(f"{origin}: ranks = {ranks!r} is not a positive multiple of {nodes} node(s)")
        layer["ntasks_per_node"] = ranks // nodes


def default_job_name(spec_path):
    """A SLURM job name from the spec's file name, reduced to safe characters."""
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(spec_path).stem)[:64]
    return name if name and name[0] not in ".+-" else "hpcml"


def default_run_dir(name):
    """``runs/NAME-YYYYmmdd-HHMMSS`` under the current directory, made unique."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{name}-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def _overridden(overrides, *keys):
    return any(item.partition("=")[0] in keys for item in overrides)


def _output_in(run_dir, output):
    """``output`` moved into ``run_dir``: same file name, same ``:/DATASET`` if any."""
    path, sep, dataset = output.rpartition(":")
    if not (sep and path and dataset.startswith("/")):
        path, dataset = output, ""
    return str(run_dir / Path(path).name) + (f":{dataset}" if dataset else "")


def job_arguments(args, spec, options, run_dir):
    """Arguments of ``hpcml run`` in the job, and the ones added when it resumes.

    The user's ``--set`` items and common options are passed on.  Unless
    given explicitly, the job's output file and checkpoint directory go into
    the run directory: each submission keeps its own, and a requeued run
    resumes from its own checkpoints only.
    """
    from hpcml.cli import common_options

    words = []
    for item in args.overrides:
        words += ["--set", item]
    defaults = common_options().parse_args([])
    for key in ("output", "seed", "log_level"):
        value = getattr(args, key)
        if value != getattr(defaults, key):
            words += [f"--{key.replace('_', '-')}", str(value)]
    if args.output is None and isinstance(spec.params.get("output"), str):
        words += ["--output", _output_in(run_dir, spec.params["output"])]
    resume = []
    if "checkpoint_dir" in options and "resume" in options:
        if not _overridden(args.overrides, "checkpoint.dir", "checkpoint_dir"):
            words += ["--set", f"checkpoint.dir={run_dir / 'checkpoints'}"]
        resume = ["--set", "checkpoint.resume=true"]
    return words, resume


def cli_settings(args):
    """The batch settings given on the command line (``None``: not given)."""
    return {name: getattr(args, name) for name in _CLI_SETTINGS}


def batch_settings(spec, cli=None, config=None):
    """Settings from the site configuration, the spec's ``[resources]``, then ``cli``.

    Parameters
    ----------
    spec : hpcml.jobs.JobSpec
    cli : dict, optional
        :func:`cli_settings` of the command line.
    config : path-like, optional
        The site configuration file (default: :func:`hpcml.slurm.site_config_path`).
    """
    site = slurm.load_site_config(config)
    cli = dict(cli or {})
    layers = [site, spec_settings(spec), cli]
    origins = ["SLURM configuration", f"{spec.path} [resources]", "command line"]
    _apply_ranks(layers, origins)
    if not any(layer.get("job_name") for layer in layers):
        cli["job_name"] = default_job_name(spec.path)
    return slurm.merge_settings(*layers, origin_names=origins)


@command(inputs=("job",), outputs=(), output_dirs=("run_dir",))
def run_submit(args, comm):
    """Render (and unless ``--dry-run``, submit) the batch script for ``args.job``."""
    from hpcml import jobs
    from hpcml.cli import build_parser

    # The spec is checked here as `hpcml run` will check it, so a bad spec
    # fails now rather than after waiting in the queue.
    spec = jobs.load(args.job, args.overrides)
    parser = jobs.resolve(spec, build_parser())
    jobs.to_argv(spec, parser)
    options = {action.dest for action in parser._actions}

    settings = batch_settings(spec, cli_settings(args), args.config)
    run_dir = (Path(args.run_dir) if args.run_dir else default_run_dir(settings.job_name)).absolute()
    run_args, resume_args = job_arguments(args, spec, options, run_dir)
    script = slurm.prepare_run(settings, run_dir, args.job, run_args, Path.cwd(), resume_args)
    summary = {"run_dir": str(run_dir), "script": str(script), "job_id": None}
    if args.dry_run:
        if not args.json:
            print(script.read_text(), end="")
        return summary
    summary["job_id"] = slurm.submit(run_dir)
    if not args.json:
        print(f"Submitted batch job {summary['job_id']} in {summary['run_dir']}")
    return summary


@command(inputs=("run_dir",), outputs=())
def run_status(args, comm):
    """Report the state of a submitted run."""
    info = slurm.status(args.run_dir)
    if not args.json:
        extra = "".join(f" {k}={info[k]}" for k in ("reason", "exit_code", "restarts") if info.get(k) is not None)
        print(f"job {info['job_id']}: {info['state']} ({info['source']}){extra}")
        if info["last_event"]:
            print(f"last event: {info['last_event']}")
    return info


@command(inputs=("run_dir",), outputs=())
def run_cancel(args, comm):
    """Cancel a submitted run, or signal its batch script."""
    info = slurm.cancel(args.run_dir, args.signal)
    if not args.json:
        what = f"sent SIG{args.signal} to" if args.signal else "cancelled"
        print(f"{what} job {info['job_id']}")
    return info
