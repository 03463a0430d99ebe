"""Pipelines: job specs and sweeps run in dependency order, on SLURM or here.

A pipeline file names its stages; each is a job spec (inline, or ``job =
"FILE.toml"`` relative to the pipeline file, inline keys winning) or, with a
``[stages.NAME.sweep]`` table, a sweep of one (:mod:`hpcml.sweep`)::

    description = "..."

    [stages.shapes]
    workload = "data shapes"
    params = { output = "shapes", train = 6, test = 3 }

    [stages.train]
    after = ["shapes"]
    job = "cnn-train.toml"
    params = { data = "${shapes.output}" }
    [stages.train.sweep]
    grid = { lr = [0.003, 0.03] }                # and/or random = N, seed = S,
    max_parallel = 2                             # range = { lr = "1e-4:1e-1:log" }
    metric = "val_accuracy"                      # optional, with goal = "max"|"min"

References (in any string of ``params`` or ``checkpoint``):

- ``${NAME.output}``: the output of stage NAME, written in its directory;
  for a sweep stage, the best point's output (a link the sweep's report
  makes, ``NAME/best.EXT``);
- ``${NAME.dir}``: stage NAME's directory;
- ``$$``: a literal ``$``.

A stage may refer only to stages it comes after (directly or not), so that
what it reads exists when it starts.  All paths are known when the pipeline
is rendered, so on SLURM every stage is submitted at once, each with
``--dependency=afterok:`` on the jobs of its ``after`` stages (a sweep's
last job is its report) and ``--kill-on-invalid-dep=yes``: a failed stage
cancels its dependants.  ``--resume`` renders again, from the pipeline file
as it is now, only the stages that did not finish, and submits (or runs)
them.  Locally the stages run one after another in dependency order; a
failed stage's dependants are skipped and the others still run.

A pipeline directory holds ``pipeline.json`` (the plan), ``pipeline.toml``
(the file as rendered), ``specs/NAME.toml`` (each stage's spec with its
references resolved) and one directory per stage; earlier tries of a
re-rendered stage move to ``.attempts/``.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

from hpcml import runs, slurm, stop, sweep
from hpcml.errors import HpcmlError, InputError

PLAN_FILE = "pipeline.json"
TOP_LEVEL = {"description", "stages"}
STAGE_KEYS = {"job", "workload", "description", "params", "checkpoint", "resources", "after", "sweep"}
SWEEP_KEYS = {"grid", "random", "seed", "range", "max_parallel", "metric", "goal"}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}")
_ATTRIBUTES = ("output", "dir")


class PipelineFailed(HpcmlError):
    """A stage of a local pipeline failed (exit 1); the message names it and what it stopped."""


class Stage:
    """A parsed stage: ``name``, ``raw`` spec tables, ``after``, ``sweep`` table or ``None``."""

    def __init__(self, name, raw, after, sweep_table):
        self.name = name
        self.raw = raw
        self.after = after
        self.sweep = sweep_table


# ------------------------------------------------------------------ parsing
def load(path):
    """Read and check a pipeline file; return ``(description, stages in dependency order)``.

    Raises
    ------
    InputError
        One line: unreadable TOML, an unknown key, an ``after`` naming an
        unknown stage, a cycle, a bad sweep table.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no such pipeline file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None
    unknown = sorted(set(raw) - TOP_LEVEL)
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(TOP_LEVEL))})")
    table = raw.get("stages")
    if not isinstance(table, dict) or not table:
        raise InputError(f"{path}: no [stages.NAME] tables")
    stages = {}
    for name, body in table.items():
        where = f"{path}: stages.{name}"
        if not _NAME.match(name):
            raise InputError(f"{where}: a stage name is letters, digits, '_' and '-'")
        if not isinstance(body, dict):
            raise InputError(f"{where} must be a table")
        bad = sorted(set(body) - STAGE_KEYS)
        if bad:
            raise InputError(f"{where}: unknown key {bad[0]!r} (allowed: {', '.join(sorted(STAGE_KEYS))})")
        stages[name] = _stage(path, name, body)
    for stage in stages.values():
        for other in stage.after:
            if other not in stages:
                raise InputError(f"{path}: stages.{stage.name}: after names unknown stage {other!r}")
    return raw.get("description", ""), _order(path, stages)


def _stage(path, name, body):
    where = f"{path}: stages.{name}"
    raw = {}
    if "job" in body:
        if not isinstance(body["job"], str):
            raise InputError(f"{where}: job must be the path of a job spec")
        job = path.parent / body["job"]
        try:
            raw = runs.read_spec(job)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
    for key in ("workload", "description"):
        if key in body:
            raw[key] = body[key]
    for section in runs.SPEC_SECTIONS:
        if section in body:
            if not isinstance(body[section], dict):
                raise InputError(f"{where}: {section} must be a table")
            raw[section] = {**raw.get(section, {}), **body[section]}
    if "workload" not in raw:
        raise InputError(f"{where}: needs workload = \"...\" or job = \"FILE.toml\"")
    after = body.get("after", [])
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise InputError(f"{where}: after must be a list of stage names")
    table = body.get("sweep")
    if table is not None:
        if not isinstance(table, dict):
            raise InputError(f"{where}: sweep must be a table")
        bad = sorted(set(table) - SWEEP_KEYS)
        if bad:
            raise InputError(f"{where}.sweep: unknown key {bad[0]!r} (allowed: {', '.join(sorted(SWEEP_KEYS))})")
        _sweep_points(where, table)
    return Stage(name, raw, list(after), table)


def _sweep_points(where, table):
    """The points of a stage's sweep table (checked)."""
    grid = table.get("grid", {})
    ranges = table.get("range", {})
    if not isinstance(grid, dict) or not isinstance(ranges, dict):
        raise InputError(f"{where}.sweep: grid and range are tables of KEY = ...")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise InputError(f"{where}.sweep: grid.{key} must be a non-empty list of values")
    count, seed = table.get("random"), table.get("seed", 0)
    for name, value in (("random", count), ("seed", seed), ("max_parallel", table.get("max_parallel"))):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise InputError(f"{where}.sweep: {name} must be a non-negative integer")
    try:
        parsed = [sweep.parse_range(f"{key}={value}") for key, value in ranges.items()]
        return sweep.points_from(list(grid.items()), parsed, count, seed)
    except InputError as exc:
        raise InputError(f"{where}.sweep: {exc}") from None


def _order(path, stages):
    """The stages in dependency order (file order among equals); a cycle is an error."""
    done, order, visiting = set(), [], []

    def visit(name):
        if name in done:
            return
        if name in visiting:
            cycle = visiting[visiting.index(name):] + [name]
            raise InputError(f"{path}: cycle in after: {' -> '.join(cycle)}")
        visiting.append(name)
        for other in stages[name].after:
            visit(other)
        visiting.pop()
        done.add(name)
        order.append(stages[name])

    for name in stages:
        visit(name)
    return order


def _ancestors(stages):
    """Stage name to every stage it comes after, directly or not (``stages`` in dependency order)."""
    out = {}
    for stage in stages:
        out[stage.name] = set(stage.after).union(*(out[a] for a in stage.after))
    return out


def _substitute(value, where, known, allowed):
    if isinstance(value, list):
        return [_substitute(v, where, known, allowed) for v in value]
    if not isinstance(value, str):
        return value

    def replace(m):
        if m.group(0) == "$$":
            return "$"
        name, _, attribute = m.group(1).partition(".")
        if name not in known:
            raise InputError(f"{where}: ${{{m.group(1)}}} names unknown stage {name!r}")
        if name not in allowed:
            raise InputError(f"{where}: ${{{m.group(1)}}} refers to stage {name!r}, which this stage "
                             f"does not come after (add it to after)")
        if attribute not in _ATTRIBUTES:
            raise InputError(f"{where}: ${{{m.group(1)}}}: a reference is ${{STAGE.output}} or ${{STAGE.dir}}")
        found = known[name][attribute]
        if found is None:
            raise InputError(f"{where}: ${{{m.group(1)}}}: stage {name!r} writes no output")
        return found

    return _REFERENCE.sub(replace, value)


def resolve(stages, directory):
    """Each stage's spec with its references replaced, and its directory and output.

    Returns
    -------
    dict
        Stage name to ``{"raw", "dir", "output"}``.
    """
    directory = Path(directory).absolute()
    ancestors = _ancestors(stages)
    known, out = {}, {}
    for stage in stages:
        raw = json.loads(json.dumps(stage.raw))
        for section in ("params", "checkpoint"):
            for key, value in raw.get(section, {}).items():
                raw[section][key] = _substitute(value, f"stages.{stage.name}.{section}.{key}", known,
                                                ancestors[stage.name])
        stage_dir = directory / stage.name
        output = runs.output_of(raw)
        if output is not None:
            from hpcml.slurm_cli import _output_in

            output = (sweep.best_output_path(stage_dir, output) if stage.sweep is not None
                      else _output_in(stage_dir, output))
        known[stage.name] = {"dir": str(stage_dir), "output": output}
        out[stage.name] = {"raw": raw, "dir": stage_dir, "output": output}
    return out


# ------------------------------------------------------------------ rendering
def _plan(directory):
    path = Path(directory) / PLAN_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{directory}: not a pipeline directory (no {PLAN_FILE})") from None


def _save_plan(directory, plan):
    path = Path(directory) / PLAN_FILE
    tmp = path.with_name(PLAN_FILE + ".tmp")
    tmp.write_text(json.dumps(plan, indent=2) + "\n")
    tmp.replace(path)


def stage_done(kind, stage_dir):
    """A job stage ended with exit 0; a sweep stage's report named its best point."""
    if not Path(stage_dir).exists():
        return False
    if kind == "sweep":
        return sweep.report_done(stage_dir)
    return runs.state(stage_dir)[0] == "done"


def _render(stage, resolved, directory, work_dir, settings_for):
    """Make the stage's directory (a run directory or a sweep directory)."""
    spec_path = Path(directory) / "specs" / f"{stage.name}.toml"
    try:
        spec, _ = runs.write_spec(resolved["raw"], spec_path)
        settings = settings_for(spec)
        if stage.sweep is None:
            runs.prepare(json.loads(json.dumps(resolved["raw"])), resolved["dir"], work_dir, settings)
        else:
            points = _sweep_points(f"stages.{stage.name}", stage.sweep)
            sweep.create(spec_path, resolved["dir"], points, work_dir, settings,
                         stage.sweep.get("metric"), stage.sweep.get("goal"))
            sweep.write_scripts(resolved["dir"], settings, stage.sweep.get("max_parallel"))
    except InputError as exc:
        raise InputError(f"stages.{stage.name}: {exc}") from None


def _default_settings(spec):
    from hpcml.slurm_cli import batch_settings

    return batch_settings(spec)


def prepare(pipeline_file, directory, work_dir=None, settings_for=None, resume=False, local=False):
    """Render the pipeline's stages into ``directory`` (all, or with ``resume`` the unfinished).

    Parameters
    ----------
    settings_for : callable, optional
        ``settings_for(spec) -> BatchSettings`` (default: the site
        configuration and the spec's ``[resources]``).

    Returns
    -------
    dict
        The plan (also ``directory/pipeline.json``): ``stages`` in
        dependency order with ``name``, ``kind``, ``after``, ``dir``,
        ``output`` and ``render`` (rendered now).
    """
    directory = Path(directory).absolute()
    work_dir = str(Path(work_dir or Path.cwd()).absolute())
    settings_for = settings_for or _default_settings
    description, stages = load(pipeline_file)
    if resume:
        old = _plan(directory)
        work_dir = old["work_dir"]
        _refuse_if_queued(old)
    elif directory.exists() and any(directory.iterdir()):
        raise InputError(f"pipeline directory {directory} exists and is not empty")
    resolved = resolve(stages, directory)
    entries = []
    for stage in stages:
        kind = "sweep" if stage.sweep is not None else "job"
        stage_dir = resolved[stage.name]["dir"]
        render = not (resume and stage_done(kind, stage_dir))
        entries.append({"name": stage.name, "kind": kind, "after": stage.after, "dir": str(stage_dir),
                        "output": resolved[stage.name]["output"], "render": render})
    directory.mkdir(parents=True, exist_ok=True)
    for stage, entry in zip(stages, entries):
        if not entry["render"]:
            continue
        _move_aside(directory, Path(entry["dir"]))
        _render(stage, resolved[stage.name], directory, work_dir, settings_for)
    shutil.copyfile(pipeline_file, directory / "pipeline.toml")
    plan = {"pipeline": str(Path(pipeline_file).absolute()), "description": description,
            "work_dir": work_dir, "mode": "local" if local else "slurm", "stages": entries}
    _save_plan(directory, plan)
    return plan


def _refuse_if_queued(plan):
    """A stage whose job SLURM still holds must end (or be cancelled) before it is rendered again."""
    for entry in plan["stages"]:
        if stage_done(entry["kind"], entry["dir"]):
            continue
        for key in ("job_id", "report_id"):
            if plan["mode"] == "slurm" and entry.get(key):
                known = slurm._scheduler_state(entry[key])
                if known and known["state"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING",
                                                "REQUEUED", "SUSPENDED"):
                    raise InputError(f"stage {entry['name']} is still {known['state'].lower()} "
                                     f"(job {entry[key]}): wait for it or cancel it before --resume")


def _move_aside(directory, stage_dir):
    """An earlier try of a stage goes to ``.attempts/NAME.K`` (kept for its logs)."""
    if not stage_dir.exists():
        return
    attempts = directory / ".attempts"
    attempts.mkdir(exist_ok=True)
    k = 1
    while (attempts / f"{stage_dir.name}.{k}").exists():
        k += 1
    stage_dir.rename(attempts / f"{stage_dir.name}.{k}")


# ------------------------------------------------------------------ running
def submit(directory):
    """Submit the stages rendered by :func:`prepare`, each after its ``after`` stages' jobs.

    Returns
    -------
    dict
        Stage name to its job ids (``job_id``, and ``report_id`` for a sweep).
    """
    directory = Path(directory).absolute()
    plan = _plan(directory)
    final, ids = {}, {}
    for entry in plan["stages"]:
        if not entry["render"]:
            continue
        deps = [final[a] for a in entry["after"] if a in final]
        dep_args = ["--kill-on-invalid-dep=yes", f"--dependency=afterok:{':'.join(deps)}"] if deps else []
        if entry["kind"] == "sweep":
            got = sweep.submit(entry["dir"], dependency=deps)
            final[entry["name"]] = got["report_id"]
        else:
            got = {"job_id": slurm.submit(entry["dir"], sbatch_args=dep_args)}
            final[entry["name"]] = got["job_id"]
        ids[entry["name"]] = got
        entry.update(got)
    _save_plan(directory, plan)
    return ids


def run_local(directory):
    """Run the rendered stages here in dependency order.

    A failed stage's dependants are skipped; the other stages still run.

    Raises
    ------
    PipelineFailed
        Naming the failed stages and the skipped ones, after every stage
        that could run has run.
    """
    directory = Path(directory).absolute()
    plan = _plan(directory)
    failed, skipped = {}, []
    for entry in plan["stages"]:
        if not entry["render"]:
            continue
        blocked = [a for a in entry["after"] if a in failed or a in skipped]
        if blocked:
            skipped.append(entry["name"])
            continue
        try:
            if entry["kind"] == "sweep":
                table = _stage_table(plan, entry["name"])
                sweep.run_local(entry["dir"], table.get("max_parallel") or 1)
                sweep.report(entry["dir"])
            else:
                rc = runs.run_local([entry["dir"]])[str(entry["dir"])]
                if rc:
                    failed[entry["name"]] = f"exit {rc}"
        except stop.Stopped:
            raise
        except HpcmlError as exc:
            failed[entry["name"]] = str(exc)
    if failed:
        what = "; ".join(f"{name}: {why}" for name, why in failed.items())
        rest = f"; not run: {', '.join(skipped)}" if skipped else ""
        raise PipelineFailed(f"stage(s) failed: {what}{rest} (fix, then `hpcml pipeline "
                             f"{plan['pipeline']} --resume {directory} --local`)")
    return {"stages": [e["name"] for e in plan["stages"] if e["render"]]}


def _stage_table(plan, name):
    _, stages = load(plan["pipeline"])
    return next(s.sweep for s in stages if s.name == name)


# ------------------------------------------------------------------ status
def _job_stage_state(entry, slurm_mode):
    word, rc = runs.state(entry["dir"])
    info = {"state": word, "rc": rc}
    if slurm_mode and word in ("pending", "running") and entry.get("job_id"):
        known = slurm._scheduler_state(entry["job_id"])
        if known:
            info["slurm"] = known["state"] + (f" ({known['reason']})" if known.get("reason") not in
                                              (None, "None") else "")
            if known["state"] in ("CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                info["state"] = known["state"].lower()
    return info


def _sweep_stage_state(entry, slurm_mode):
    if sweep.report_done(entry["dir"]):
        best = json.loads((Path(entry["dir"]) / "results.json").read_text())["best"]
        return {"state": "done", "best": {k: v for k, v in best.items()
                                          if k not in ("state", "restarts", "output")}}
    points = sweep.status(entry["dir"]) if Path(entry["dir"], sweep.SWEEP_FILE).exists() else []
    words = [p["state"] for p in points]
    info = {"state": "pending", "points": f"{words.count('done')}/{len(words)} done"}
    if any(w not in ("pending",) for w in words):
        info["state"] = "running"
    if slurm_mode and entry.get("report_id"):
        known = slurm._scheduler_state(entry["report_id"])
        if known and known["state"] not in ("PENDING", "RUNNING"):
            info["state"] = "failed" if known["state"] == "COMPLETED" else known["state"].lower()
    elif not slurm_mode and words and all(w in ("done", "failed") for w in words):
        info["state"] = "failed"
    return info


def status(directory):
    """Every stage's state, in dependency order.

    Returns
    -------
    list of dict
        ``name``, ``kind``, ``after``, ``state`` (done, running, pending,
        failed, stopped, cancelled, or blocked: waiting on a stage that
        failed) and what else is known (``rc``, ``slurm``, ``points``, ``best``).
    """
    plan = _plan(directory)
    slurm_mode = plan["mode"] == "slurm"
    rows, states = [], {}
    for entry in plan["stages"]:
        info = (_sweep_stage_state if entry["kind"] == "sweep" else _job_stage_state)(entry, slurm_mode)
        if info["state"] == "pending" and any(states[a] in ("failed", "cancelled", "blocked", "timeout")
                                              for a in entry["after"]):
            info["state"] = "blocked"
        states[entry["name"]] = info["state"]
        rows.append({"name": entry["name"], "kind": entry["kind"], "after": entry["after"], **info})
    return rows


_MARKS = {"done": "[x]", "running": "[>]", "pending": "[ ]", "blocked": "[-]", "cancelled": "[-]",
          "stopped": "[~]", "requeued": "[~]"}


def format_status(rows):
    """The stage graph as text: one line per stage, indented by its depth, with its state."""
    depth = {}
    lines = []
    for r in rows:
        depth[r["name"]] = 1 + max((depth[a] for a in r["after"]), default=-1)
        detail = "".join([f" rc={r['rc']}" if r.get("rc") not in (None, 0) else "",
                          f" {r['points']}" if r.get("points") else "",
                          f" best {sweep._values_text(r['best'])}" if r.get("best") else "",
                          f" [{r['slurm']}]" if r.get("slurm") else ""])
        after = f"  <- {', '.join(r['after'])}" if r["after"] else ""
        label = "  " * depth[r["name"]] + r["name"] + (" (sweep)" if r["kind"] == "sweep" else "")
        lines.append(f"{_MARKS.get(r['state'], '[!]')} {label:<28} {r['state']}{detail}{after}")
    done = sum(r["state"] == "done" for r in rows)
    lines.append(f"{done} of {len(rows)} stage(s) done")
    return "\n".join(lines) + "\n"


def start(pipeline_file, directory, local=False, resume=False, settings_for=None, work_dir=None,
          dry_run=False):
    """Render (or with ``resume`` re-render the unfinished) stages, then submit or run them."""
    plan = prepare(pipeline_file, directory, work_dir, settings_for, resume, local)
    result = {"directory": str(Path(directory).absolute()),
              "stages": [e["name"] for e in plan["stages"] if e["render"]], "local": local}
    if dry_run:
        return result
    if local:
        run_local(directory)
        return {**result, "status": status(directory)}
    return {**result, "jobs": submit(directory)}
