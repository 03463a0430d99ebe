"""Run directories of generated jobs: the spec, its outputs, its events, its state.

Sweeps (:mod:`hpcml.sweep`) and pipelines (:mod:`hpcml.pipeline`) make many
job specs from one.  Each becomes a run directory exactly like the one of
``hpcml submit`` (:func:`hpcml.slurm.prepare_run`): ``job.toml``,
``job.sbatch``, ``settings.json`` and, once it runs, ``events.log``.  The
job's output file and checkpoints are written into its spec, inside the run
directory, so the spec alone says everything and runs the same under SLURM
(through the batch script) and here (:func:`run_local`, which writes the
same ``events.log`` lines the batch script does).

The state of a run is read from its events log (:func:`state`), and what
it computed from the ``--json`` summary it printed last (:func:`summary`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import signal
import subprocess
import time
import tomllib
from pathlib import Path

from hpcml import slurm, stop
from hpcml.checkpoint import EXIT_CHECKPOINTED
from hpcml.errors import InputError

#: Where a local run's stdout and stderr go (SLURM's are ``slurm-*.out|err``).
STDOUT_NAME = "stdout.log"
STDERR_NAME = "stderr.log"
SPEC_SECTIONS = ("params", "checkpoint", "resources")


# ------------------------------------------------------------------ specs
def read_spec(path):
    """A job spec as its raw TOML tables (checked by :func:`hpcml.jobs.load` first)."""
    from hpcml import jobs

    jobs.load(path)
    with open(path, "rb") as handle:
        raw = tomllib.load(handle)
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}


def set_value(raw, key, value):
    """Set ``key`` (a parameter, or ``section.key``) of a raw spec to ``value``."""
    section, _, name = key.rpartition(".")
    section = section or "params"
    if section not in SPEC_SECTIONS or not name:
        raise InputError(f"{key!r}: not a parameter or one of "
                         f"{', '.join(s + '.KEY' for s in SPEC_SECTIONS)}")
    raw.setdefault(section, {})[name] = value


def get_value(raw, key):
    """The value of ``key`` in a raw spec (``None`` when unset)."""
    section, _, name = key.rpartition(".")
    return raw.get(section or "params", {}).get(name)


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            raise InputError("a job spec cannot hold NaN")
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        # A JSON string is a TOML basic string (same escapes).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise InputError(f"cannot write {value!r} into a job spec")


def dumps_spec(raw):
    """TOML text of a raw spec: top-level keys, then one table per section."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in raw.items() if not isinstance(value, dict)]
    for section, table in raw.items():
        if isinstance(table, dict) and table:
            lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write_spec(raw, path):
    """Write a raw spec to ``path`` and check it as ``hpcml run`` will.

    Raises
    ------
    InputError
        Naming the spec and the first bad key or value.
    """
    from hpcml import jobs
    from hpcml.cli import build_parser

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps_spec(raw))
    spec = jobs.load(path)
    parser = jobs.resolve(spec, build_parser())
    jobs.to_argv(spec, parser)
    return spec, {action.dest for action in parser._actions}


def output_of(raw):
    """The spec's output (``None`` when it writes none)."""
    value = raw.get("params", {}).get("output")
    return value if isinstance(value, str) and value else None


def place_in(raw, run_dir, options):
    """Move the spec's output and checkpoints into ``run_dir`` (in place).

    The output keeps its file name (and ``:/DATASET``); a job that keeps
    checkpoints gets ``run_dir/checkpoints``, so that each run resumes from
    its own checkpoints only.  ``options`` are the subcommand's option names.
    """
    from hpcml.slurm_cli import _output_in

    run_dir = Path(run_dir).absolute()
    if output_of(raw):
        set_value(raw, "output", _output_in(run_dir, output_of(raw)))
    if "checkpoint_dir" in options and "resume" in options:
        raw.setdefault("checkpoint", {})["dir"] = str(run_dir / "checkpoints")
        raw["checkpoint"].pop("resume", None)
        raw.get("params", {}).pop("checkpoint_dir", None)
        return True
    return False


def ranks(spec):
    """The number of ranks a spec asks for (``[resources]``; 1 by default)."""
    res = spec.resources
    if "ranks" in res:
        return res["ranks"]
    return res.get("nodes", 1) * res.get("ntasks_per_node", 1)


def prepare(raw, run_dir, work_dir, settings=None):
    """Make ``run_dir`` for a raw spec: its outputs placed inside, script rendered.

    Parameters
    ----------
    raw : dict
        The spec's tables (changed: see :func:`place_in`).
    run_dir : path-like
        New or empty.
    work_dir : path-like
        Where the job runs: relative paths of the spec mean what they mean there.
    settings : hpcml.slurm.BatchSettings, optional
        For the batch script; default settings when not given (a local run
        does not read the script, but it is there to submit later).

    Returns
    -------
    dict
        ``run_dir``, ``ranks``, ``output`` and ``resume_args``, also kept in
        the run directory's ``settings.json``.
    """
    run_dir = Path(run_dir).absolute()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise InputError(f"run directory {run_dir} exists and is not empty")
    staged = run_dir.parent / f".{run_dir.name}.toml"
    _, options = write_spec(raw, staged)
    checkpoints = place_in(raw, run_dir, options)
    spec, _ = write_spec(raw, staged)
    if settings is None:
        settings = slurm.merge_settings({"job_name": "hpcml"})
    resume_args = ["--set", "checkpoint.resume=true"] if checkpoints else []
    try:
        slurm.prepare_run(settings, run_dir, staged, ["--json"], work_dir, resume_args)
    finally:
        staged.unlink()
    return {"run_dir": str(run_dir), "ranks": ranks(spec), "output": output_of(raw),
            "resume_args": resume_args}


# ------------------------------------------------------------------ state
def events(run_dir):
    """``(restart, word)`` of every line of the events log."""
    out = []
    for line in slurm.events(run_dir):
        parts = line.split(" ", 3)
        if len(parts) == 4 and parts[2].startswith("restart="):
            out.append((parts[2][len("restart="):], parts[3]))
    return out


def state(run_dir):
    """What the events log says of a run.

    Returns
    -------
    tuple
        ``(state, rc)``: ``pending`` (never started), ``running``,
        ``done`` (rc 0), ``requeued`` (checkpointed and requeued by SLURM),
        ``stopped`` (checkpointed, to be resumed: rc 75) or ``failed``;
        ``rc`` is the last exit status or ``None``.
    """
    rc, word = None, "pending"
    for _, event in events(run_dir):
        if event == "started":
            word = "running"
        elif event.startswith("finished rc="):
            rc = int(event.split("=", 1)[1])
            word = "done" if rc == 0 else "stopped" if rc == EXIT_CHECKPOINTED else "failed"
        elif event == "requeue" and word == "stopped":
            word = "requeued"
        elif event == "requeue refused":
            word = "failed"
    return word, rc


def summary(run_dir):
    """The last JSON summary the job printed (``--json``), or ``None``.

    Looked for in the SLURM logs and the local run's stdout, newest last.
    """
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("slurm-*.out"), key=lambda p: p.stat().st_mtime)
    files += [run_dir / STDOUT_NAME] if (run_dir / STDOUT_NAME).exists() else []
    found = None
    for path in files:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(value, dict):
                    found = value
    return found


# ------------------------------------------------------------------ local runs
def _event(run_dir, restart, text):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(Path(run_dir) / slurm.EVENTS_NAME, "a") as handle:
        handle.write(f"{stamp} job=local restart={restart} {text}\n")


class LocalRun:
    """One prepared run directory run here under ``mpiexec`` (started by :meth:`start`)."""

    def __init__(self, run_dir):
        from hpcml.launch import mpiexec_command

        self.run_dir = Path(run_dir).absolute()
        record = json.loads((self.run_dir / slurm.SETTINGS_NAME).read_text())
        from hpcml import jobs

        spec = jobs.load(self.run_dir / slurm.SPEC_NAME)
        self.restart = sum(1 for _, e in events(self.run_dir) if e == "started")
        resume = record["resume_args"] if self.restart else []
        self.command = mpiexec_command(ranks(spec), ["run", str(self.run_dir / slurm.SPEC_NAME),
                                                     *record["run_args"], *resume])
        self.work_dir = record["work_dir"]
        self.proc = None

    def start(self):
        out = open(self.run_dir / STDOUT_NAME, "a")
        err = open(self.run_dir / STDERR_NAME, "a")
        _event(self.run_dir, self.restart, "started")
        try:
            # The parent's MPI singleton must not leak its PMI settings into mpiexec.
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_"))}
            self.proc = subprocess.Popen(self.command, cwd=self.work_dir, stdout=out, stderr=err,
                                         env=env)
        finally:
            out.close()
            err.close()
        return self

    def poll(self):
        """The exit status once ended (recorded in the events log), else ``None``."""
        rc = self.proc.poll()
        if rc is not None and not getattr(self, "_recorded", False):
            self._recorded = True
            _event(self.run_dir, self.restart, f"finished rc={rc}")
        return rc

    def signal(self):
        """Ask the job to checkpoint and stop (SIGTERM), as SLURM does before a preemption."""
        if self.proc.poll() is None:
            _event(self.run_dir, self.restart, "signal TERM")
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        """Wait for the job's end; kill it after ``timeout`` seconds."""
        try:
            self.proc.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.poll()


def run_local(run_dirs, parallel=1, grace=60):
    """Run prepared run directories here, ``parallel`` at a time, in the order given.

    A stop signal to this process (:class:`hpcml.stop.Stopped`) is passed on
    to the running jobs as SIGTERM: those that keep checkpoints save and
    exit 75 (``stopped``), and a later call resumes them.

    Parameters
    ----------
    run_dirs : list of path-like
    parallel : int
    grace : float
        Seconds the stopped jobs get to save before they are killed.

    Returns
    -------
    dict
        Run directory to exit status.
    """
    if parallel < 1:
        raise InputError(f"--max-parallel must be >= 1, got {parallel}")
    waiting = [Path(d) for d in run_dirs]
    running, codes = [], {}
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                running.append(LocalRun(waiting.pop(0)).start())
            for job in list(running):
                rc = job.poll()
                if rc is not None:
                    running.remove(job)
                    codes[str(job.run_dir)] = rc
            time.sleep(0.1)
    except stop.Stopped:
        # All at once, each with the same grace period (SLURM's KillWait).
        for job in running:
            job.signal()
        deadline = time.monotonic() + grace
        for job in running:
            codes[str(job.run_dir)] = job.wait(deadline - time.monotonic())
        raise
    return codes

