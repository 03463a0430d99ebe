"""The life of every job, in one place: declared paths, signals, exit codes.

A subcommand's handler ``run(args, comm) -> dict`` is declared with
:func:`command`: which options name its inputs, its output files and
folders, whether it keeps checkpoints, and which options may change between
a run and its ``--resume``.  :func:`run_job` then, for every subcommand:

1. checks every output path before any work: not an input of the job, not
   a directory (for a file), not a device, pipe or socket, not a symbolic
   link, in a folder that can be written; and removes the temporary files
   that a killed earlier run of the same output left behind;
2. installs the stop signals (:mod:`hpcml.stop`): a job with
   ``--checkpoint-dir`` saves at its next safe point and exits 75, any
   other stops at once with ``128 + signal``;
3. runs the handler and maps what it raises to the exit status: 2 for bad
   input or non-convergence, 75 for a checkpointed stop, ``128 + signal``
   for a stop with nothing to save, 1 for an internal error (with the
   traceback); a rank that fails alone aborts the whole job;
4. prints the timings on rank 0 and the ``--json`` summary.
"""

# Only the standard library at import time: hpcml.cli imports this module
# before the thread variables are set (hpcml.runtime).
import dataclasses
import json
import logging
import os
import sys

from hpcml import stop
from hpcml.errors import HpcmlError, InputError

log = logging.getLogger("hpcml")

#: Options that never change what a job computes.
_NOT_TRAJECTORY = ("output", "json", "log_level", "checkpoint_dir", "checkpoint_every", "resume",
                   "allow_partial", "handler")


@dataclasses.dataclass(frozen=True)
class Declaration:
    """What a subcommand reads, writes and keeps (see :func:`command`)."""

    inputs: tuple = ()
    outputs: tuple = ("output",)
    output_dirs: tuple = ()
    required: tuple = ()
    checkpoints: bool = False
    resumable: tuple = ()


def command(inputs=(), outputs=("output",), output_dirs=(), required=(), checkpoints=False,
            resumable=()):
    """Declare a handler's paths and checkpoints (a decorator).

    Parameters
    ----------
    inputs : tuple of str
        Options naming input files or folders (``FILE.h5:/DATASET`` counts
        as its file; a list option as each of its items).
    outputs : tuple of str
        Options naming output files.
    output_dirs : tuple of str
        Options naming output folders that the job fills.
    required : tuple of str
        Outputs that must be given.
    checkpoints : bool
        The job keeps checkpoints (``--checkpoint-dir``, ``--resume``).
    resumable : tuple of str
        Options that may differ between a run and its ``--resume`` (the
        iteration limit): every other option is part of the job's identity.
    """
    declaration = Declaration(tuple(inputs), tuple(outputs),
                              tuple(output_dirs) + (("checkpoint_dir",) if checkpoints else ()),
                              tuple(required), checkpoints, tuple(resumable))

    def decorate(handler):
        handler.declaration = declaration
        return handler
    return decorate


def declaration_of(args):
    """The declaration of the handler that ``args`` will run."""
    return getattr(args.handler, "declaration", Declaration())


def _values(args, names):
    """``(option, value)`` for each given value of the named options (list options flattened)."""
    for name in names:
        value = getattr(args, name, None)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item not in (None, ""):
                yield name, str(item)


def _file_of(spec):
    """The file of ``FILE.h5:/DATASET`` (or of a plain path)."""
    path, sep, name = spec.rpartition(":")
    return path if sep and path and name.startswith("/") else spec


def command_name(args):
    """``svd``, ``lda train``, ``data matrix``: the words that chose the handler."""
    return " ".join(str(v) for k, v in vars(args).items()
                    if (k == "command" or k.endswith("_command")) and v)


def _flag(name):
    return "--" + name.replace("_", "-")


def _same_file(a, b):
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def _check_writable_folder(option, path):
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{_flag(option)} {path}: cannot write in {folder}")


def check_paths(args):
    """Refuse output paths that would harm an input or a file system object (one process).

    Raises
    ------
    InputError
        Naming the option and the path, before any work is done.
    """
    declaration = declaration_of(args)
    if getattr(args, "resume", False) and not getattr(args, "checkpoint_dir", None):
        raise InputError("--resume needs --checkpoint-dir (where to find the checkpoint)")
    for name in declaration.required:
        if not getattr(args, name, None):
            raise InputError(f"{command_name(args)}: {_flag(name)} is required")
    inputs = [(name, _file_of(value)) for name, value in _values(args, declaration.inputs)]
    written = []
    for name, value in _values(args, declaration.outputs + declaration.output_dirs):
        is_dir = name in declaration.output_dirs
        path = value if is_dir else _file_of(value)
        if not is_dir and os.path.islink(path):
            raise InputError(f"{_flag(name)} {path} is a symbolic link; name the file itself")
        if os.path.exists(path):
            if is_dir and not os.path.isdir(path):
                raise InputError(f"{_flag(name)} {path} exists and is not a folder")
            if not is_dir and os.path.isdir(path):
                raise InputError(f"{_flag(name)} {path} is a folder; name a file in it")
            if not is_dir and not os.path.isfile(path):
                raise InputError(f"{_flag(name)} {path} is not a regular file (a device, pipe or socket)")
        for source, given in inputs:
            if _same_file(path, given):
                raise InputError(f"{_flag(name)} {path} is the input {_flag(source)} {given}; "
                                 "hpcml never overwrites its input")
        for other, earlier in written:
            if not is_dir and _same_file(path, earlier):
                raise InputError(f"{_flag(name)} and {_flag(other)} both name {path}")
        _check_writable_folder(name, path)
        written.append((name, path))
        if not is_dir:
            from hpcml.io.hdf5 import remove_dead_temporaries

            folder, base = os.path.split(os.path.abspath(path))
            remove_dead_temporaries(folder, f".{base}.tmp-")


def _input_identity(spec):
    """Path, size, modification time, and an HDF5 dataset's shape and dtype."""
    path = _file_of(spec)
    fact = {"path": os.path.realpath(path)}
    try:
        info = os.stat(path)
    except OSError:
        return fact
    fact.update(size=info.st_size, mtime_ns=info.st_mtime_ns)
    if path != spec:
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                obj = handle[spec[len(path) + 1:]]
                if isinstance(obj, h5py.Dataset):
                    fact.update(shape=list(obj.shape), dtype=obj.dtype.str)
                elif "shape" in obj.attrs:
                    fact.update(shape=[int(n) for n in obj.attrs["shape"]])
        except (OSError, KeyError, ValueError):
            pass  # the job's own reading says what is wrong with it
    return fact


def job_identity(args):
    """What a checkpoint must share with a job to be resumed by it.

    Returns
    -------
    dict
        ``inputs``: each input option's identity; ``params``: every other
        option that changes the trajectory (not the output options, not the
        declared resumable ones).
    """
    declaration = declaration_of(args)
    inputs = {}
    for name, value in _values(args, declaration.inputs):
        inputs.setdefault(name, []).append(_input_identity(value))
    skip = set(_NOT_TRAJECTORY) | set(declaration.inputs) | set(declaration.resumable)
    params = {k: v for k, v in vars(args).items() if k not in skip and not callable(v)}
    return {"inputs": inputs, "params": json.loads(json.dumps(params, default=str))}


def _stop_reason(args, declaration):
    if declaration.checkpoints:
        return "no --checkpoint-dir was given, so nothing was saved"
    return f"{command_name(args)} keeps no checkpoint; no output was written"


def _format_timings(report, size):
    def cell(key, scale=1.0):
        figures = report[key]
        return "/".join(f"{figures[q] * scale:.3g}" for q in ("min", "median", "max"))
    return (f"timings over {size} rank(s), min/median/max: compute {cell('compute_s')} s, "
            f"communication {cell('comm_s')} s, I/O {cell('io_s')} s, "
            f"moved {cell('bytes', 1e-6)} MB")


def run_job(args, comm):
    """Run the handler of ``args`` on every rank; returns the exit status."""
    from hpcml.comm import abort

    declaration = declaration_of(args)
    at_safe_points = declaration.checkpoints and bool(getattr(args, "checkpoint_dir", None))
    stop.install(at_safe_points, _stop_reason(args, declaration))
    try:
        with comm.guard():
            if comm.rank == 0:
                check_paths(args)
        summary = args.handler(args, comm) or {}
        report = comm.timing_report()
    except (HpcmlError, stop.Stopped) as exc:
        if not exc.collective and not comm.failed_together():
            abort(exc.exit_code, f"{exc.prefix}{exc} (rank {comm.rank})")
        if comm.rank == 0:
            print(f"{exc.prefix}{exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        abort(130, f"hpcml: interrupted (rank {comm.rank})")
    finally:
        stop.install(at_safe_points=True)   # past the job, a late signal only notes
    if comm.rank == 0:
        log.info(_format_timings(report, comm.size))
        if args.json:
            print(json.dumps({**summary, "timings": report}, default=str), flush=True)
    return 0
