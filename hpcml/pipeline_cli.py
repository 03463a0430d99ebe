"""``hpcml pipeline``: stages of job specs and sweeps in dependency order (see :mod:`hpcml.pipeline`).

::

    hpcml pipeline PIPELINE.toml [--dir DIR] [--local]     # submit every stage (or run them here)
    hpcml pipeline PIPELINE.toml --dir DIR --resume        # again, only the unfinished stages
    hpcml pipeline status DIR
"""

from __future__ import annotations

from pathlib import Path

from hpcml import pipeline
from hpcml.command import command
from hpcml.errors import InputError


def register(subparsers, common):
    """Add ``pipeline``."""
    from hpcml.slurm_cli import add_settings_arguments

    p = subparsers.add_parser(
        "pipeline", parents=[common], help="stages of job specs and sweeps, SLURM dependencies",
        description="Render every stage of PIPELINE into a directory and submit them with "
        "--dependency=afterok (or run them here in order with --local); `pipeline status DIR` "
        "draws the stages and their states.")
    p.add_argument("target", help="PIPELINE.toml, or `status`")
    p.add_argument("directory", nargs="?", help="the pipeline directory (status)")
    p.add_argument("--dir", help="pipeline directory (default: runs/NAME-pipeline-TIMESTAMP; new or "
                   "empty unless --resume)")
    # Not `resume`: the command core reads that name as a checkpoint resume.
    p.add_argument("--resume", dest="resume_stages", action="store_true",
                   help="render again and submit (or run) only the stages of --dir that did not finish")
    p.add_argument("--local", action="store_true", help="run the stages here under mpiexec, not SLURM")
    p.add_argument("--dry-run", action="store_true", help="render the stages, do not submit or run")
    add_settings_arguments(p)
    p.set_defaults(handler=run_pipeline)


@command(outputs=())
def run_pipeline(args, comm):
    """Start, resume or show a pipeline."""
    from hpcml.slurm_cli import batch_settings, cli_settings, default_job_name, default_run_dir

    if args.target == "status":
        if not args.directory:
            raise InputError("pipeline status: name the pipeline directory")
        rows = pipeline.status(args.directory)
        if not args.json:
            print(pipeline.format_status(rows), end="")
        return {"stages": rows}
    if args.directory:
        raise InputError(f"pipeline: unexpected {args.directory!r} after {args.target} (use --dir)")
    if args.resume_stages and not args.dir:
        raise InputError("pipeline --resume: name the pipeline directory with --dir")
    directory = Path(args.dir) if args.dir else default_run_dir(f"{default_job_name(args.target)}-pipeline")
    cli = cli_settings(args)
    result = pipeline.start(args.target, directory, local=args.local, resume=args.resume_stages,
                            settings_for=lambda spec: batch_settings(spec, cli, args.config),
                            dry_run=args.dry_run)
    if not args.json:
        if "status" in result:
            print(pipeline.format_status(result["status"]), end="")
        elif "jobs" in result:
            for name, ids in result["jobs"].items():
                print(f"stage {name}: job {' + report '.join(ids.values())}")
            print(f"Submitted {len(result['jobs'])} stage(s) in {result['directory']}")
        else:
            print(f"Rendered {len(result['stages'])} stage(s) in {result['directory']}")
    return result
