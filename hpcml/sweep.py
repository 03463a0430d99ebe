"""Hyper-parameter sweeps: one job spec, many points, one SLURM job array.

A sweep directory holds::

    sweep.json         the source spec, the swept keys, every point's values
    source.toml        a copy of the source spec
    points/N/          point N's run directory (as `hpcml submit` makes it:
                       job.toml with the point's values and its output and
                       checkpoints inside, job.sbatch, events.log, logs)
    array.sbatch       the job array: task N runs points/N/job.sbatch
    report.sbatch      the report job, run when every task has ended
    job.id report.id   their SLURM job ids
    results.csv results.json   one row per point: values, state, metric
    metric-KEY.png     the metric against each swept key (matplotlib)
    best.toml          the source spec with the best point's values
    best.EXT           a link to the best point's output

Array task N runs point N's own batch script, so preemption is handled per
point exactly as for ``hpcml submit``: SIGUSR1 before the time limit, a
checkpoint, exit 75, ``scontrol requeue`` of that task alone, and a resume
from its own checkpoints.  Locally (:func:`run_local`) points run
``max_parallel`` at a time and a stopped point resumes on the next call.

Keys are parameters (``lr``) or ``section.key`` (``resources.ranks``).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
import shlex
import signal
from pathlib import Path

import numpy as np

from hpcml import runs, slurm, stop
from hpcml.checkpoint import EXIT_CHECKPOINTED
from hpcml.errors import HpcmlError, InputError

SWEEP_FILE = "sweep.json"
POINTS = "points"
ARRAY_SCRIPT = "array.sbatch"
REPORT_SCRIPT = "report.sbatch"
REPORT_ID = "report.id"

#: Default metric of a workload and whether larger is better.
DEFAULT_METRICS = {"cnn train": "val_accuracy", "lda train": "perplexity", "lasso": "objective",
                   "lp": "objective", "solve": "objective"}
_LARGER_IS_BETTER = ("accuracy", "log_likelihood", "ll_per_token")


# ------------------------------------------------------------------ points
def _value(text):
    from hpcml.jobs import _coerce_override

    return _coerce_override(text.strip())


def parse_grid(item):
    """``KEY=V1,V2,...`` -> ``(KEY, [values])`` (values read as TOML, else strings)."""
    key, sep, values = item.partition("=")
    words = [v for v in values.split(",")]
    if not sep or not key.strip() or not all(w.strip() for w in words):
        raise InputError(f"--grid {item!r}: expected KEY=V1,V2,... with no empty value")
    return key.strip(), [_value(w) for w in words]


@dataclasses.dataclass(frozen=True)
class Range:
    """A random-search range: ``low`` to ``high``, uniform or log-uniform."""

    key: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def draw(self, rng):
        if self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            return int(round(value)) if self.integer else float(value)
        if self.integer:
            return int(rng.integers(self.low, self.high + 1))
        return float(rng.uniform(self.low, self.high))


def parse_range(item):
    """``KEY=LOW:HIGH[:log]`` -> :class:`Range` (integers when both ends are)."""
    key, sep, text = item.partition("=")
    parts = text.split(":")
    where = f"--range {item!r}"
    if not sep or not key.strip() or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise InputError(f"{where}: expected KEY=LOW:HIGH or KEY=LOW:HIGH:log")
    ends = [_value(p) for p in parts[:2]]
    if not all(isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(e) for e in ends):
        raise InputError(f"{where}: LOW and HIGH must be finite numbers")
    low, high = ends
    log = len(parts) == 3
    if not low < high:
        raise InputError(f"{where}: LOW must be below HIGH")
    if log and low <= 0:
        raise InputError(f"{where}: a log range needs LOW > 0")
    return Range(key.strip(), low, high, log, all(isinstance(e, int) for e in ends))


def grid_points(grid):
    """Every combination of ``[(key, values), ...]``, the last key varying fastest."""
    keys = [k for k, _ in grid]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in grid))]


def random_points(ranges, count, seed):
    """``count`` points drawn from ``ranges`` with numpy's generator seeded by ``seed``."""
    if count < 1:
        raise InputError(f"--random must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    return [{r.key: r.draw(rng) for r in ranges} for _ in range(count)]


def points_from(grid=(), ranges=(), count=None, seed=0):
    """The points of a sweep: a grid, random draws, or the grid crossed with draws.

    Raises
    ------
    InputError
        No key, a key given twice, or ranges without ``count`` (and back).
    """
    keys = [k for k, _ in grid] + [r.key for r in ranges]
    if not keys:
        raise InputError("a sweep needs --grid KEY=V1,V2,... or --random N with --range KEY=LOW:HIGH")
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise InputError(f"sweep key {twice[0]!r} given twice")
    if bool(ranges) != (count is not None):
        raise InputError("--random N and --range KEY=LOW:HIGH go together")
    points = grid_points(grid) if grid else [{}]
    if ranges:
        draws = random_points(ranges, count, seed)
        points = [{**p, **d} for p in points for d in draws]
    return points


# ------------------------------------------------------------------ the sweep
def _record(directory):
    path = Path(directory) / SWEEP_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{directory}: not a sweep directory (no {SWEEP_FILE})") from None


def point_dir(directory, index):
    return Path(directory).absolute() / POINTS / str(index)


def create(spec_path, directory, points, work_dir=None, settings=None, metric=None, goal=None):
    """Render one run directory per point under ``directory`` (new or empty).

    Every point's spec is checked as ``hpcml run`` will check it before
    anything is written, so an unknown key or a bad value is one line.

    Parameters
    ----------
    spec_path : path-like
        The source job spec.
    directory : path-like
    points : list of dict
        Key to value, one dict per point (:func:`points_from`).
    work_dir : path-like, optional
        Where the jobs run (default: the current directory).
    settings : hpcml.slurm.BatchSettings, optional
        For the batch scripts.
    metric, goal : str, optional
        What :func:`report` compares, when not told otherwise.

    Returns
    -------
    dict
        The sweep's record (also ``directory/sweep.json``).
    """
    directory = Path(directory).absolute()
    work_dir = Path(work_dir or Path.cwd()).absolute()
    if directory.exists() and any(directory.iterdir()):
        raise InputError(f"sweep directory {directory} exists and is not empty")
    source = runs.read_spec(spec_path)
    workload = " ".join(source["workload"].split())
    specs = []
    for values in points:
        raw = json.loads(json.dumps(source))
        for key, value in values.items():
            runs.set_value(raw, key, value)
        specs.append(raw)
    directory.mkdir(parents=True, exist_ok=True)
    check = directory / ".check.toml"
    try:
        for raw, values in zip(specs, points):
            try:
                runs.write_spec(raw, check)
            except InputError as exc:
                shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
                raise InputError(f"sweep point {shown}: {str(exc).replace(str(check) + ': ', '')}") from None
    finally:
        check.unlink(missing_ok=True)
    (directory / "source.toml").write_text(Path(spec_path).read_text())
    placed = [runs.prepare(raw, point_dir(directory, i), work_dir, settings) for i, raw in enumerate(specs)]
    record = {"spec": str(Path(spec_path).absolute()), "workload": workload,
              "keys": list(points[0]), "work_dir": str(work_dir),
              "output": runs.output_of(source), "metric": metric, "goal": goal,
              "points": [{"index": i, "values": v, "output": p["output"]}
                         for i, (v, p) in enumerate(zip(points, placed))]}
    (directory / SWEEP_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def best_output_path(directory, source_output):
    """Where the link to the best point's output goes: ``DIR/best.EXT[:/DATASET]``."""
    from hpcml.command import _file_of

    path = _file_of(source_output)
    dataset = source_output[len(path):]
    return str(Path(directory).absolute() / ("best" + Path(path).suffix)) + dataset


# ------------------------------------------------------------------ SLURM
def render_array(directory, settings, count, max_parallel=None):
    """The job array's script: task N ``exec``s ``points/N/job.sbatch``.

    The point's script then owns the batch shell (same process), so SLURM's
    warning signal and requeue reach it as they reach a single job.
    """
    throttle = f"%{max_parallel}" if max_parallel else ""
    q = shlex.quote
    return "\n".join([
        "#!/bin/bash",
        "# hpcml sweep: one array task per point; task N runs points/N/job.sbatch.",
        slurm._directives(settings),
        f"#SBATCH --array=0-{count - 1}{throttle}",
        f"#SBATCH --output={POINTS}/%a/slurm-%A_%a.out",
        f"#SBATCH --error={POINTS}/%a/slurm-%A_%a.err",
        "#SBATCH --open-mode=append",
        f'exec /bin/bash {q(str(Path(directory).absolute() / POINTS))}/"$SLURM_ARRAY_TASK_ID"/job.sbatch',
        "",
    ])


def render_report(directory, settings, work_dir):
    """A one-task job that runs ``hpcml sweep report DIR`` once the array has ended."""
    s = settings
    q = shlex.quote
    directives = [f"--job-name={s.job_name}-report", "--nodes=1", "--ntasks=1",
                  "--output=report-%j.out", "--error=report-%j.err"]
    directives += [f"--{n}={getattr(s, n)}" for n in ("time", "partition", "account", "qos")
                   if getattr(s, n) is not None]
    command = s.command if s.command is not None else slurm.default_command()
    return "\n".join(["#!/bin/bash", "# hpcml sweep: collect the metrics, name the best point.",
                      *("#SBATCH " + d for d in directives),
                      f"cd -- {q(str(Path(work_dir).absolute()))} || exit 1",
                      slurm._environment(s),
                      " ".join(q(c) for c in command) + f" sweep report {q(str(Path(directory).absolute()))}",
                      ""])


def write_scripts(directory, settings, max_parallel=None):
    """Write ``array.sbatch`` and ``report.sbatch`` for a created sweep."""
    directory = Path(directory).absolute()
    record = _record(directory)
    for name, text in ((ARRAY_SCRIPT, render_array(directory, settings, len(record["points"]), max_parallel)),
                       (REPORT_SCRIPT, render_report(directory, settings, record["work_dir"]))):
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)


def submit(directory, dependency=None):
    """Submit the array and, after it (``afterany``), the report job.

    Parameters
    ----------
    dependency : list of str, optional
        Job ids the array waits for (``afterok``): a sweep stage of a pipeline.

    Returns
    -------
    dict
        ``job_id`` (the array) and ``report_id``.
    """
    after = ["--kill-on-invalid-dep=yes", f"--dependency=afterok:{':'.join(dependency)}"] if dependency else []
    array_id = slurm.submit(directory, script=ARRAY_SCRIPT, sbatch_args=after)
    # afterany: a point that diverged or failed does not stop the report; it
    # names the best point among those that finished, and fails if none did.
    report_id = slurm.submit(directory, script=REPORT_SCRIPT, id_name=REPORT_ID,
                             sbatch_args=["--kill-on-invalid-dep=yes", f"--dependency=afterany:{array_id}"])
    return {"job_id": array_id, "report_id": report_id}


def _task_ids(text):
    """Array task ids of ``ArrayTaskId`` (``3``, ``0-3%2``, ``1,4-5``)."""
    out = []
    for part in text.split("%")[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            out.extend(range(int(low), int(high or low) + 1))
    return out


def scheduler_states(job_id):
    """Array task id -> SLURM state word, from ``scontrol show job`` (empty if forgotten)."""
    proc = slurm._run(["scontrol", "-o", "show", "job", str(job_id)])
    states = {}
    if proc.returncode != 0:
        return states
    for line in proc.stdout.splitlines():
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        for task in _task_ids(fields.get("ArrayTaskId", "")):
            states[task] = fields.get("JobState", "UNKNOWN")
    return states


# ------------------------------------------------------------------ start
class SweepStopped(HpcmlError):
    """A local sweep stopped by a signal: its running points saved what they could (exit 75)."""

    exit_code = EXIT_CHECKPOINTED
    prefix = "hpcml: "


def start(spec_path, directory, points, settings, local=False, max_parallel=None, dry_run=False,
          work_dir=None, metric=None, goal=None):
    """Create a sweep and run it here (then report) or submit it as a job array.

    ``metric`` and ``goal`` are the report's (:func:`report`); a local sweep
    of a workload without a default metric is not reported unless given one.

    Returns
    -------
    dict
        ``directory``, ``points`` and, as the case may be, ``job_id`` and
        ``report_id`` (submitted), ``codes`` and ``report`` (local).
    """
    if max_parallel is not None and max_parallel < 1:
        raise InputError(f"--max-parallel must be >= 1, got {max_parallel}")
    record = create(spec_path, directory, points, work_dir, settings, metric, goal)
    directory = Path(directory).absolute()
    write_scripts(directory, settings, max_parallel)
    result = {"directory": str(directory), "points": len(record["points"]), "local": local}
    if dry_run:
        return result
    if not local:
        return {**result, **submit(directory)}
    return {**result, **_run_and_report(directory, max_parallel or 1, metric, goal)}


def resume_local(directory, max_parallel=1, metric=None, goal=None):
    """Run here the points of a sweep that did not finish (stopped ones resume), then report."""
    _record(directory)
    return {"directory": str(Path(directory).absolute()), "local": True,
            **_run_and_report(directory, max_parallel, metric, goal)}


def _run_and_report(directory, max_parallel, metric, goal):
    try:
        codes = run_local(directory, max_parallel)
    except stop.Stopped as exc:
        saved = sum(runs.state(point_dir(directory, p["index"]))[0] == "stopped"
                    for p in _record(directory)["points"])
        name = signal.Signals(exc.exit_code - 128).name
        raise SweepStopped(f"sweep stopped by {name}; {saved} point(s) saved a checkpoint: continue with "
                           f"`hpcml sweep {directory} --resume --local`") from None
    record = _record(directory)
    if not (metric or record.get("metric")) and record["workload"] not in DEFAULT_METRICS:
        return {"codes": codes, "report": None}
    return {"codes": codes, "report": report(directory, metric, goal)}


# ------------------------------------------------------------------ local
def run_local(directory, max_parallel=1):
    """Run the points that have not finished, ``max_parallel`` at a time, then report.

    A point stopped by a signal (exit 75, checkpoint saved) resumes from
    its checkpoint on the next call; finished points are kept.

    Returns
    -------
    dict
        Point index to exit status for the points run now.
    """
    record = _record(directory)
    todo = [point_dir(directory, p["index"]) for p in record["points"]
            if runs.state(point_dir(directory, p["index"]))[0] != "done"]
    codes = runs.run_local(todo, max_parallel)
    return {int(Path(d).name): rc for d, rc in codes.items()}


# ------------------------------------------------------------------ status
def status(directory):
    """Every point's values and state.

    Returns
    -------
    list of dict
        ``index``, ``values``, ``state`` (see :func:`hpcml.runs.state`),
        ``rc``, ``restarts`` and, for a submitted sweep whose array SLURM
        still knows, ``slurm`` (its state word for the task).
    """
    directory = Path(directory).absolute()
    record = _record(directory)
    known = {}
    if (directory / slurm.JOB_ID_NAME).exists():
        known = scheduler_states(slurm.job_id(directory))
    rows = []
    for point in record["points"]:
        run_dir = point_dir(directory, point["index"])
        word, rc = runs.state(run_dir)
        restarts = max((int(r) for r, _ in runs.events(run_dir) if r.isdigit()), default=0)
        row = {"index": point["index"], "values": point["values"], "state": word, "rc": rc,
               "restarts": restarts}
        if point["index"] in known:
            row["slurm"] = known[point["index"]]
            if word == "pending" and known[point["index"]] not in ("PENDING", "RUNNING", "CONFIGURING"):
                row["state"] = known[point["index"]].lower()
        rows.append(row)
    return rows


# ------------------------------------------------------------------ report
def larger_is_better(metric):
    """Accuracies and likelihoods are maximised; perplexities, objectives and losses minimised."""
    return metric.endswith(_LARGER_IS_BETTER)


def _metric_of(point_run, metric, output):
    found = runs.summary(point_run)
    value = (found or {}).get(metric)
    if value is None and output:
        import h5py

        from hpcml.command import _file_of

        try:
            with h5py.File(_file_of(output), "r") as handle:
                value = handle.attrs.get(metric)
        except OSError:
            value = None
    if isinstance(value, (np.generic,)):
        value = value.item()
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def report(directory, metric=None, goal=None):
    """Collect every point's metric, write the tables and plots, name the best point.

    Parameters
    ----------
    metric : str, optional
        A key of the job's ``--json`` summary (or a root attribute of its
        output file); default by workload (:data:`DEFAULT_METRICS`).
    goal : {"max", "min"}, optional
        Default: max for accuracies and likelihoods, min otherwise.

    Returns
    -------
    dict
        ``metric``, ``goal``, ``rows``, ``best`` (the best row), ``best_spec``,
        ``best_output``, ``plots`` and ``note`` (why there is no plot).

    Raises
    ------
    InputError
        No point reported the metric (exit 2).
    """
    directory = Path(directory).absolute()
    record = _record(directory)
    metric = metric or record.get("metric") or DEFAULT_METRICS.get(record["workload"])
    goal = goal or record.get("goal")
    if metric is None:
        raise InputError(f"{record['workload']}: no default metric; name one with --metric")
    goal = goal or ("max" if larger_is_better(metric) else "min")
    if goal not in ("max", "min"):
        raise InputError(f"--goal must be max or min, got {goal!r}")
    for stale in ("results.json", "best.toml"):
        (directory / stale).unlink(missing_ok=True)
    rows = []
    for point, info in zip(record["points"], status(directory)):
        value = _metric_of(point_dir(directory, point["index"]), metric, point["output"])
        if value is not None and not math.isfinite(value):
            value = None
        rows.append({"index": point["index"], **point["values"], "state": info["state"],
                     "restarts": info["restarts"], metric: value, "output": point["output"]})
    scored = [r for r in rows if r[metric] is not None and r["state"] == "done"]
    _write_tables(directory, rows, metric)
    if not scored:
        raise InputError(f"{directory}: no point reported {metric!r} "
                         f"(states: {', '.join(sorted({r['state'] for r in rows}))})")
    sign = 1 if goal == "max" else -1
    best = max(scored, key=lambda r: (sign * r[metric], -r["index"]))
    best_spec = runs.read_spec(record["spec"])
    for key in record["keys"]:
        runs.set_value(best_spec, key, best[key])
    _write_atomic(directory / "best.toml", runs.dumps_spec(best_spec))
    best_output = None
    if record["output"] and best["output"]:
        best_output = best_output_path(directory, record["output"])
        _link(best["output"], best_output)
    plots, note = _plot(directory, rows, record["keys"], metric)
    result = {"metric": metric, "goal": goal, "rows": rows, "best": best,
              "best_spec": str(directory / "best.toml"), "best_output": best_output,
              "plots": plots, "note": note}
    # Written last and whole: its presence says the report is done (report_done).
    _write_atomic(directory / "results.json", json.dumps(result, indent=2, default=str) + "\n")
    return result


def _write_atomic(path, text):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _write_tables(directory, rows, metric):
    with open(directory / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _link(output, link):
    """``link`` -> the best point's output file (relative, replaced atomically)."""
    from hpcml.command import _file_of

    target, link = Path(_file_of(output)), Path(_file_of(link))
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), tmp)
    os.replace(tmp, link)


def _plot(directory, rows, keys, metric):
    try:
        import matplotlib
    except ImportError:
        return [], "matplotlib is not installed (pip install hpcml[plot]): no plot drawn"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    for key in keys:
        pairs = [(r[key], r[metric]) for r in rows
                 if r[metric] is not None and isinstance(r[key], (int, float))]
        if not pairs:
            continue
        x, y = zip(*sorted(pairs))
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(x, y, "o-")
        if min(x) > 0 and max(x) / min(x) >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        path = directory / f"metric-{key.replace('.', '-')}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
        plots.append(str(path))
    return plots, None if plots else "no numeric swept key to plot against"


def _values_text(values):
    return " ".join(f"{k}={v}" for k, v in values.items())


def format_status(rows):
    """One line per point: index, values, state, exit status, restarts, SLURM's word."""
    lines = []
    for r in rows:
        extra = "".join([f" rc={r['rc']}" if r["rc"] not in (None, 0) else "",
                         f" restarts={r['restarts']}" if r["restarts"] else "",
                         f" (slurm {r['slurm']})" if r.get("slurm") else ""])
        lines.append(f"point {r['index']:>3}  {_values_text(r['values']):<30} {r['state']}{extra}")
    counts = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return "\n".join(lines) + "\n"


def format_report(result):
    """The table of points and the best one, as printed by ``hpcml sweep report``."""
    metric, best = result["metric"], result["best"]
    keys = [k for k in best if k not in ("index", "state", "restarts", metric, "output")]
    lines = []
    for r in result["rows"]:
        value = "-" if r[metric] is None else f"{r[metric]:.6g}"
        mark = "  <- best" if r["index"] == best["index"] else ""
        lines.append(f"point {r['index']:>3}  {_values_text({k: r[k] for k in keys}):<30} "
                     f"{r['state']:<8} {metric} {value}{mark}")
    lines.append(f"best ({result['goal']} {metric}): point {best['index']}, "
                 f"{_values_text({k: best[k] for k in keys})}; spec {result['best_spec']}")
    if result["best_output"]:
        lines.append(f"best output: {result['best_output']}")
    lines += [f"plot: {p}" for p in result["plots"]] + ([f"note: {result['note']}"] if result["note"] else [])
    return "\n".join(lines) + "\n"


def format_started(result):
    """What ``hpcml sweep`` did, in a line or the report."""
    if result.get("report"):
        return format_report(result["report"])
    if "codes" in result:
        return (f"Ran {len(result['codes'])} point(s) in {result['directory']}: "
                f"{sum(rc == 0 for rc in result['codes'].values())} finished; "
                f"`hpcml sweep report DIR --metric M` compares them\n")
    if "job_id" in result:
        return (f"Submitted job array {result['job_id']} ({result['points']} points) and report job "
                f"{result['report_id']} in {result['directory']}\n")
    return f"Rendered {result['points']} points in {result['directory']}\n"


def report_done(directory):
    """Whether the sweep's report has named a best point."""
    return (Path(directory) / "results.json").exists() and (Path(directory) / "best.toml").exists()


