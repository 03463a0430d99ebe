"""SLURM batch scripts for hpcml jobs: rendering, submission, status, cancel.

One generic template (``slurm/job.sbatch.in``) runs any job spec.  Its
settings come, later ones winning, from built-in defaults, the site
configuration (``$HPCML_SLURM_CONFIG`` or ``~/.config/hpcml/slurm.toml``),
the job spec's ``[resources]`` table and the command line (see :mod:`hpcml.slurm_cli`).

Safety rule: every value that reaches the script is validated.  Values on
``#SBATCH`` lines must match strict patterns (sbatch reads those lines itself
and splits them on blanks and quotes, so quoting cannot protect them); values
in the script body are additionally shell-quoted with :func:`shlex.quote`.
Log paths on ``#SBATCH`` lines are relative to the run directory, so no user
path ever appears there.

A run directory holds everything about one submission::

    job.sbatch       the rendered script
    job.toml         a copy of the job spec as submitted (the job runs it)
    settings.json    the resolved settings and arguments
    job.id           the SLURM job id, written once sbatch accepted the job
    slurm-ID.out/err the job's stdout and stderr (appended across requeues)
    events.log       started / signal / finished rc=N / requeue lines
    checkpoints/     and the job's output, unless placed elsewhere (slurm_cli)

The job itself runs in the directory it was submitted from, so relative
paths in a job spec mean there what they mean for ``hpcml run``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from hpcml.checkpoint import EXIT_CHECKPOINTED
from hpcml.errors import HpcmlError, InputError
from hpcml.launch import mpiexec_path

SCRIPT_NAME = "job.sbatch"
SPEC_NAME = "job.toml"
SETTINGS_NAME = "settings.json"
JOB_ID_NAME = "job.id"
EVENTS_NAME = "events.log"

# Patterns for values written on #SBATCH lines: no blanks, quotes, '#' or
# '%' (sbatch expands '%' in some options), nothing sbatch could split.
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}"
_PATTERNS = {
    "job_name": re.compile(rf"^{_NAME}$"),
    "partition": re.compile(rf"^{_NAME}(,{_NAME})*$"),
    "account": re.compile(rf"^{_NAME}$"),
    "qos": re.compile(rf"^{_NAME}$"),
    # gpu:2, gpu:a100:4, shard:1,gpu:1: each item NAME[:TYPE]:COUNT, COUNT >= 1
    # (SLURM would read gpu:x as one GPU of a type x that no site has).
    "gres": re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*(:[A-Za-z_][A-Za-z0-9_.-]*)?:[1-9][0-9]*"
                       r"(,[A-Za-z_][A-Za-z0-9_.-]*(:[A-Za-z_][A-Za-z0-9_.-]*)?:[1-9][0-9]*)*$"),
    # sbatch --mem: a number with an optional K/M/G/T unit (default MB).
    "mem": re.compile(r"^[0-9]{1,12}[KMGT]?$"),
    # Names of MPI plugins (pmi2, pmix, pmix_v4, cray_shasta, none).
    "mpi": re.compile(r"^[a-z][a-z0-9_]{0,31}$"),
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# SLURM's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(
    r"^(?:(?P<d>[0-9]{1,4})-(?P<dh>[0-9]{1,2})(?::(?P<dm>[0-9]{1,2})(?::(?P<ds>[0-9]{1,2}))?)?"
    r"|(?P<a>[0-9]{1,7})(?::(?P<b>[0-9]{1,2})(?::(?P<c>[0-9]{1,2}))?)?)$"
)
_JOB_ID = re.compile(r"^([0-9]+)(?:;[A-Za-z0-9_.-]+)?$")
# Signals `hpcml cancel --signal` may send to the batch shell.
SIGNALS = ("USR1", "USR2", "TERM", "INT", "HUP", "CONT", "STOP")


@dataclasses.dataclass
class BatchSettings:
    """Everything the template needs besides the job itself.

    Field names are the keys of the site configuration file and the
    command-line options of ``hpcml submit`` with ``-`` replaced by ``_``.
    """

    job_name: str = "hpcml"
    nodes: int = 1
    ntasks_per_node: int = 1
    cpus_per_task: int = 1
    mem: str | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gres: str | None = None
    requeue: bool = False
    # Seconds before the time limit at which the batch shell gets SIGUSR1
    # (0: no warning signal).
    signal_seconds: int = 120
    overcommit: bool = False
    launcher: str = "srun"
    mpi: str = "pmi2"
    # The program for launcher = "mpiexec"; None: the one beside this Python
    # (a virtual environment's pip MPICH), else the one on PATH.
    mpiexec: str | None = None
    launcher_args: list = dataclasses.field(default_factory=list)
    modules: list = dataclasses.field(default_factory=list)
    venv: str | None = None
    source: list = dataclasses.field(default_factory=list)
    env: dict = dataclasses.field(default_factory=dict)
    # The hpcml program; None means the Python that submits, ``-m hpcml``.
    command: list | None = None

    @property
    def ntasks(self):
        """Total number of ranks."""
        return self.nodes * self.ntasks_per_node

    def validate(self):
        """Check every field; raise :class:`InputError` naming the first bad one."""
        for name in ("nodes", "ntasks_per_node", "cpus_per_task"):
            _check_int(name, getattr(self, name), 1, 1_000_000)
        _check_int("signal_seconds", self.signal_seconds, 0, 65535)
        for name in ("requeue", "overcommit"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{_opt(name)}: expected true or false, got {getattr(self, name)!r}")
        for name in ("job_name", "partition", "account", "qos", "gres", "mem", "mpi"):
            value = getattr(self, name)
            if value is None and name not in ("job_name", "mpi"):
                continue
            if not isinstance(value, str) or not _PATTERNS[name].match(value):
                raise InputError(f"{_opt(name)}: {value!r} is not a valid {name.replace('_', ' ')}")
        if self.time is not None:
            limit = time_seconds(self.time)
            if limit == 0:
                raise InputError("--time: the time limit must be positive")
            if self.signal_seconds >= limit:
                raise InputError(
                    f"--signal-seconds: {self.signal_seconds} s is not shorter than the time limit {self.time}"
                )
        if self.launcher not in ("srun", "mpiexec"):
            raise InputError(f"--launcher: {self.launcher!r} is not srun or mpiexec")
        if self.mpiexec is not None:
            _check_text("mpiexec", self.mpiexec)
        for name in ("launcher_args", "modules", "source"):
            _check_text_list(name, getattr(self, name))
        if self.command is not None:
            _check_text_list("command", self.command)
            if not self.command:
                raise InputError("command: must name a program")
        if self.venv is not None:
            _check_text("venv", self.venv)
        if not isinstance(self.env, dict):
            raise InputError(f"env: expected a table of NAME = value, got {self.env!r}")
        for key, value in self.env.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise InputError(f"env: {key!r} is not a valid variable name")
            _check_text(f"env.{key}", value)
        return self


def _opt(name):
    return "--" + name.replace("_", "-")


def _check_int(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{_opt(name)}: expected an integer in [{low}, {high}], got {value!r}")


def _check_text(name, value):
    # A NUL cannot be passed through a shell; other characters are quoted.
    if not isinstance(value, str) or not value or "\0" in value:
        raise InputError(f"{name}: expected a non-empty string without NUL, got {value!r}")


def _check_text_list(name, values):
    if not isinstance(values, list):
        raise InputError(f"{name}: expected a list of strings, got {values!r}")
    for value in values:
        _check_text(name, value)


def time_seconds(text):
    """Seconds in a SLURM time limit (``M``, ``M:S``, ``H:M:S``, ``D-H[:M[:S]]``).

    Raises
    ------
    InputError
        When ``text`` is not one of those forms or a field is out of range.
    """
    m = _TIME.match(text) if isinstance(text, str) else None
    if m is None:
        raise InputError(f"--time: {text!r} is not a SLURM time (HH:MM:SS, D-HH:MM:SS, minutes)")
    g = {k: int(v) if v is not None else None for k, v in m.groupdict().items()}
    if g["d"] is not None:
        days, hours, minutes, seconds = g["d"], g["dh"], g["dm"] or 0, g["ds"] or 0
        if hours > 23:
            raise InputError(f"--time: {text!r} has more than 23 hours after the days")
    elif g["c"] is not None:
        days, hours, minutes, seconds = 0, g["a"], g["b"], g["c"]
    elif g["b"] is not None:
        days, hours, minutes, seconds = 0, 0, g["a"], g["b"]
    else:
        days, hours, minutes, seconds = 0, 0, g["a"], 0
    if (g["b"] is not None or g["d"] is not None) and (minutes > 59 or seconds > 59):
        raise InputError(f"--time: {text!r} has minutes or seconds above 59")
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


_FIELDS = {f.name: f for f in dataclasses.fields(BatchSettings)}


def merge_settings(*layers, origin_names=None):
    """Build validated :class:`BatchSettings` from mappings, later ones winning.

    Parameters
    ----------
    *layers : mapping
        Keys are :class:`BatchSettings` field names; a ``None`` value means
        "not given here" and leaves the earlier value.
    origin_names : sequence of str, optional
        Where each layer comes from, used to name unknown keys in errors.
    """
    values = {}
    for i, layer in enumerate(layers):
        origin = origin_names[i] if origin_names else f"settings layer {i}"
        for key, value in layer.items():
            if key not in _FIELDS:
                raise InputError(f"{origin}: unknown SLURM setting {key!r}")
            if value is not None:
                values[key] = value
    return BatchSettings(**values).validate()


def site_config_path():
    """The site configuration file: ``$HPCML_SLURM_CONFIG`` or ``~/.config/hpcml/slurm.toml``."""
    if os.environ.get("HPCML_SLURM_CONFIG"):
        return Path(os.environ["HPCML_SLURM_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "hpcml" / "slurm.toml"


def load_site_config(path=None):
    """Read the site configuration (a flat TOML table of settings plus ``[env]``).

    A missing default file means no site defaults; a file named explicitly
    (argument or ``$HPCML_SLURM_CONFIG``) must exist.
    """
    explicit = path is not None or bool(os.environ.get("HPCML_SLURM_CONFIG"))
    path = Path(path) if path is not None else site_config_path()
    if not path.exists():
        if explicit:
            raise InputError(f"SLURM configuration {path} does not exist")
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"SLURM configuration {path}: {exc}") from None
    for key in data:
        if key not in _FIELDS:
            raise InputError(f"SLURM configuration {path}: unknown setting {key!r}")
    return data


def default_command():
    """``python -m hpcml`` with the Python that submits (same venv on a shared filesystem)."""
    return [sys.executable, "-m", "hpcml"]


def template_path():
    """The generic template: ``slurm/job.sbatch.in`` in the source tree or installed data."""
    candidates = (
        Path(__file__).resolve().parent.parent / "slurm" / "job.sbatch.in",
        Path(sys.prefix) / "share" / "hpcml" / "slurm" / "job.sbatch.in",
    )
    for path in candidates:
        if path.is_file():
            return path
    raise HpcmlError(f"sbatch template not found (looked in {', '.join(map(str, candidates))})")


def _directives(s):
    lines = [
        f"--job-name={s.job_name}",
        f"--nodes={s.nodes}",
        f"--ntasks-per-node={s.ntasks_per_node}",
        f"--cpus-per-task={s.cpus_per_task}",
    ]
    for name in ("mem", "time", "partition", "account", "qos", "gres"):
        value = getattr(s, name)
        if value is not None:
            lines.append(f"--{name}={value}")
    lines.append("--requeue" if s.requeue else "--no-requeue")
    if s.signal_seconds:
        lines.append(f"--signal=B:USR1@{s.signal_seconds}")
    if s.overcommit:
        lines.append("--overcommit")
    return "\n".join("#SBATCH " + line for line in lines)


def _environment(s):
    q = shlex.quote
    lines = []
    if s.modules:
        lines.append("module load " + " ".join(q(m) for m in s.modules) + " || exit 1")
    for path in s.source:
        lines.append(f". {q(path)} || exit 1")
    if s.venv is not None:
        lines.append(f". {q(s.venv.rstrip('/') + '/bin/activate')} || exit 1")
    for key, value in s.env.items():
        lines.append(f"export {key}={q(value)}")
    return "\n".join(lines) if lines else ":"


def _launcher(s):
    q = shlex.quote
    if s.launcher == "srun":
        # srun of SLURM 22.05 no longer inherits --cpus-per-task from the job.
        words = ["srun", f"--mpi={s.mpi}", f"--cpus-per-task={s.cpus_per_task}"]
        if s.overcommit:
            words.append("--overcommit")
    else:
        words = [q(s.mpiexec if s.mpiexec is not None else mpiexec_path()), "-n", str(s.ntasks)]
    return " ".join(words + [q(a) for a in s.launcher_args])


def render(settings, run_dir, job_spec, run_args=(), work_dir=None, resume_args=()):
    """The batch script for ``settings`` running ``hpcml run JOB_SPEC RUN_ARGS``.

    Parameters
    ----------
    settings : BatchSettings
        Validated settings (see :func:`merge_settings`).
    run_dir : path-like
        The run directory: logs and the events log go there.
    job_spec : path-like
        The job spec the job runs.
    run_args : sequence of str
        Further arguments of ``hpcml run`` (``--set key=value`` ...).
    work_dir : path-like, optional
        Where the job runs (default: the current directory), so that the
        spec's relative paths mean what they mean for ``hpcml run`` there.
    resume_args : sequence of str
        Arguments added when SLURM restarts the job (a requeued run); empty
        for jobs that cannot resume.
    """
    settings.validate()
    run_args, resume_args = list(run_args), list(resume_args)
    _check_text_list("run arguments", run_args)
    _check_text_list("resume arguments", resume_args)
    work_dir = Path.cwd() if work_dir is None else Path(work_dir)
    for name, value in (("run directory", run_dir), ("job spec", job_spec), ("work directory", work_dir)):
        _check_text(name, str(value))
    q = shlex.quote
    command = settings.command if settings.command is not None else default_command()
    values = {
        "directives": _directives(settings),
        "run_dir": q(str(Path(run_dir).absolute())),
        "work_dir": q(str(work_dir.absolute())),
        "job_spec": q(str(Path(job_spec).absolute())),
        "requeue": "1" if settings.requeue else "0",
        "exit_checkpointed": str(int(EXIT_CHECKPOINTED)),
        "environment": _environment(settings),
        "threads": str(settings.cpus_per_task),
        "launcher": _launcher(settings),
        "command": " ".join(q(c) for c in command) + " run",
        "run_args": "".join(" " + q(a) for a in run_args),
        "resume_args": " ".join(q(a) for a in resume_args),
    }
    return fill(template_path().read_text(), values)


_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")


def fill(template, values):
    """Replace each ``{{name}}`` in ``template``; every name must be given and used."""
    used = set(_PLACEHOLDER.findall(template))
    if used != set(values):
        raise HpcmlError(
            f"template placeholders {sorted(used)} do not match the values {sorted(values)}"
        )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def prepare_run(settings, run_dir, job_spec, run_args=(), work_dir=None, resume_args=()):
    """Create ``run_dir`` with the job spec copy, settings and rendered script.

    The script runs the copy, so editing the original after submission does
    not change a queued or requeued job.  Other arguments as for
    :func:`render`.  Returns the script's path.
    """
    run_dir = Path(run_dir).absolute()
    job_spec = Path(job_spec)
    if not job_spec.is_file():
        raise InputError(f"job spec {job_spec} does not exist")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise InputError(f"run directory {run_dir} exists and is not empty")
    spec_copy = run_dir / SPEC_NAME
    script = render(settings, run_dir, spec_copy, run_args, work_dir, resume_args)
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(job_spec, spec_copy)
    record = dict(dataclasses.asdict(settings), source_spec=str(job_spec.absolute()),
                  work_dir=str(Path.cwd() if work_dir is None else Path(work_dir).absolute()),
                  run_args=list(run_args), resume_args=list(resume_args))
    (run_dir / SETTINGS_NAME).write_text(json.dumps(record, indent=2) + "\n")
    path = run_dir / SCRIPT_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(script)
    tmp.chmod(0o755)
    tmp.replace(path)
    return path


def _run(argv, cwd=None, timeout=60):
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise HpcmlError(f"{argv[0]} not found: is SLURM installed and on PATH?") from None
    except subprocess.TimeoutExpired:
        raise HpcmlError(f"{argv[0]} did not answer within {timeout} s") from None


def _first_line(text):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def submit(run_dir, script=SCRIPT_NAME, sbatch_args=(), id_name=JOB_ID_NAME):
    """Submit ``RUN_DIR/job.sbatch`` with sbatch from the run directory; return the job id.

    ``script``, ``sbatch_args`` (e.g. ``--dependency=afterok:ID``) and
    ``id_name`` (the file the id is written to) serve job arrays and pipelines.
    """
    run_dir = Path(run_dir).absolute()
    if not (run_dir / script).is_file():
        raise InputError(f"{run_dir} holds no {script}")
    proc = _run(["sbatch", "--parsable", *sbatch_args, script], cwd=run_dir)
    if proc.returncode != 0:
        raise HpcmlError(f"sbatch failed: {_first_line(proc.stderr or proc.stdout)}")
    m = _JOB_ID.match(proc.stdout.strip())
    if m is None:
        raise HpcmlError(f"sbatch answered {proc.stdout.strip()!r}, not a job id")
    job_id = m.group(1)
    (run_dir / id_name).write_text(job_id + "\n")
    return job_id


def job_id(run_dir):
    """The SLURM job id recorded in ``run_dir``."""
    path = Path(run_dir) / JOB_ID_NAME
    try:
        text = path.read_text().strip()
    except OSError:
        raise InputError(f"{run_dir} has no {JOB_ID_NAME}: not a submitted run directory") from None
    if not text.isdigit():
        raise InputError(f"{path} does not hold a job id")
    return text


def events(run_dir):
    """The lines of ``run_dir``'s events log (empty before the job starts)."""
    try:
        return (Path(run_dir) / EVENTS_NAME).read_text().splitlines()
    except FileNotFoundError:
        return []


def _scheduler_state(jid):
    """(source, state, exit_code, restarts) from squeue, sacct or scontrol; None if none knows."""
    proc = _run(["squeue", "-h", "-j", jid, "-o", "%T|%r"])
    if proc.returncode == 0 and proc.stdout.strip():
        state, reason = proc.stdout.strip().splitlines()[0].split("|", 1)
        return {"source": "squeue", "state": state, "reason": reason}
    # sacct needs accounting storage; -X keeps the allocation line only.
    if shutil.which("sacct"):
        proc = _run(["sacct", "-n", "-X", "-P", "-j", jid, "-o", "State,ExitCode"])
        if proc.returncode == 0 and proc.stdout.strip():
            state, code = proc.stdout.strip().splitlines()[-1].split("|", 1)
            return {"source": "sacct", "state": state.split()[0], "exit_code": code}
    proc = _run(["scontrol", "-o", "show", "job", jid])
    if proc.returncode == 0 and proc.stdout.strip():
        fields = dict(w.split("=", 1) for w in proc.stdout.split() if "=" in w)
        return {
            "source": "scontrol",
            "state": fields.get("JobState", "UNKNOWN"),
            "exit_code": fields.get("ExitCode"),
            "restarts": int(fields.get("Restarts", "0") or 0),
        }
    return None


def status(run_dir):
    """What is known about the run: scheduler state and the events log.

    Returns
    -------
    dict
        ``job_id``, ``state`` (SLURM's word, or ``UNKNOWN`` when the
        scheduler has forgotten the job), ``source`` (which command said
        so), optional ``reason``/``exit_code``/``restarts``, ``requeues``
        (from the events log) and ``last_event``.
    """
    jid = job_id(run_dir)
    info = {"job_id": jid}
    info.update(_scheduler_state(jid) or {"source": "none", "state": "UNKNOWN"})
    log = events(run_dir)
    info["requeues"] = sum(1 for line in log if line.endswith(" requeue"))
    info["last_event"] = log[-1] if log else None
    return info


def cancel(run_dir, signal=None):
    """Cancel the run's job, or with ``signal`` send it to the batch shell only.

    ``signal="USR1"`` asks a running job to checkpoint (and, submitted with
    requeue, to requeue itself), as the warning before the time limit does.
    """
    jid = job_id(run_dir)
    argv = ["scancel"]
    if signal is not None:
        if signal not in SIGNALS:
            raise InputError(f"--signal: {signal!r} is not one of {', '.join(SIGNALS)}")
        argv += ["--batch", f"--signal={signal}"]
    proc = _run(argv + [jid])
    if proc.returncode != 0:
        raise HpcmlError(f"scancel failed: {_first_line(proc.stderr or proc.stdout)}")
    return {"job_id": jid, "signal": signal or "cancel"}
