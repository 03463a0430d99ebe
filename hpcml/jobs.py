"""Job specs: TOML files that name a workload, its parameters and resources.

A spec maps onto exactly the options of the workload's subcommand, so the
command line and the job file are validated by the same parser::

    workload = "svd"            # the subcommand, e.g. "svd" or "lda train"
    description = "..."         # optional
    [params]                    # option names, dashes written as underscores
    input = "runs/demo/A.h5:/A"
    k = 5
    [checkpoint]                # optional: --checkpoint-dir/--checkpoint-every/--resume
    dir = "runs/demo/ckpt"
    every = 10
    [resources]                 # hints for launchers and `hpcml submit`
    ranks = 2

Relative paths in a spec are relative to the directory the job runs in.
"""

import argparse
import tomllib

from hpcml import options
from hpcml.errors import InputError

TOP_LEVEL = {"workload", "description", "params", "checkpoint", "resources"}
CHECKPOINT_KEYS = {"dir": "checkpoint_dir", "every": "checkpoint_every", "resume": "resume"}
RESOURCE_TYPES = {"ranks": int, "nodes": int, "ntasks_per_node": int, "cpus_per_task": int,
                  "time": str, "memory": str, "gpus": int, "partition": str}


class JobSpec:
    """A parsed job spec: ``workload`` (list of words), ``params``, ``resources``, ``path``."""

    def __init__(self, workload, params, resources, path, description=""):
        self.workload = workload
        self.params = params
        self.resources = resources
        self.path = path
        self.description = description


def _coerce_override(text):
    """Parse the value of ``--set key=value`` as TOML, else keep it as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load(path, overrides=()):
    """Read and check a job spec.

    Parameters
    ----------
    path : str
    overrides : iterable of str
        ``key=value`` items; ``key`` is a parameter name or
        ``section.key`` (``checkpoint.every=5``, ``resources.ranks=3``).

    Raises
    ------
    InputError
        Unreadable TOML, unknown top-level keys or sections of the wrong type.
    """
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: no such job spec") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the job spec ({exc.strerror})") from None
    unknown = sorted(set(raw) - TOP_LEVEL)
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(TOP_LEVEL))})")
    workload = raw.get("workload")
    if not isinstance(workload, str) or not workload.split():
        raise InputError(f"{path}: 'workload' must name a subcommand, e.g. workload = \"svd\"")
    for section in ("params", "checkpoint", "resources"):
        if not isinstance(raw.get(section, {}), dict):
            raise InputError(f"{path}: [{section}] must be a table")
    params = dict(raw.get("params", {}))
    checkpoint = dict(raw.get("checkpoint", {}))
    resources = dict(raw.get("resources", {}))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set {item!r}: expected KEY=VALUE")
        section, _, name = key.rpartition(".")
        target = {"": params, "params": params, "checkpoint": checkpoint,
                  "resources": resources}.get(section)
        if target is None:
            raise InputError(f"--set {item!r}: unknown section {section!r}")
        target[name] = _coerce_override(value)
    for key, value in checkpoint.items():
        if key not in CHECKPOINT_KEYS:
            raise InputError(f"{path}: unknown key {key!r} in [checkpoint] "
                             f"(allowed: {', '.join(sorted(CHECKPOINT_KEYS))})")
        params[CHECKPOINT_KEYS[key]] = value
    for key, value in resources.items():
        kind = RESOURCE_TYPES.get(key)
        if kind is None:
            raise InputError(f"{path}: unknown key {key!r} in [resources] "
                             f"(allowed: {', '.join(sorted(RESOURCE_TYPES))})")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InputError(f"{path}: [resources] {key} must be {kind.__name__}, got {value!r}")
        if kind is int and value < 1:
            raise InputError(f"{path}: [resources] {key} must be >= 1, got {value}")
    return JobSpec(workload.split(), params, resources, path, raw.get("description", ""))


def _actions(parser):
    return {a.dest: a for a in parser._actions
            if a.dest != "help" and not isinstance(a, argparse._SubParsersAction)}


def to_argv(spec, parser):
    """Turn ``spec.params`` into the argument list of ``parser`` (its subcommand).

    Every key must be one of the parser's options and every value of the
    option's type; booleans only for flags.
    """
    actions = _actions(parser)
    argv = []
    for key, value in spec.params.items():
        if key not in actions:
            raise InputError(f"{spec.path}: unknown parameter {key!r} for "
                             f"'{' '.join(spec.workload)}' (known: {', '.join(sorted(actions))})")
        argv.extend(_option_words(spec.path, key, value, actions[key]))
    return argv


def _option_words(path, key, value, action):
    flag = action.option_strings[0] if action.option_strings else None
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise InputError(f"{path}: parameter {key!r} must be true or false, got {value!r}")
        return [flag] if value != action.default else []
    if isinstance(action, argparse.BooleanOptionalAction):  # --x / --no-x
        if not isinstance(value, bool):
            raise InputError(f"{path}: parameter {key!r} must be true or false, got {value!r}")
        return [action.option_strings[0 if value else 1]]
    if isinstance(value, bool):
        raise InputError(f"{path}: parameter {key!r} takes a value, not {value!r}")
    if isinstance(value, dict):
        raise InputError(f"{path}: parameter {key!r} must not be a table")
    if isinstance(value, list) and action.nargs not in ("+", "*"):
        raise InputError(f"{path}: parameter {key!r} takes one value, not a list {value!r}")
    values = value if isinstance(value, list) else [value]
    integer = action.type in options.INTEGER
    if integer or action.type in options.REAL:
        for item in values:
            if isinstance(item, str) or (integer and isinstance(item, float)):
                kind = "an integer" if integer else "a number"
                raise InputError(f"{path}: parameter {key!r} must be {kind}, got {item!r}")
    words = [str(item) for item in values]
    return [flag, *words] if flag else words


def resolve(spec, root_parser):
    """Find the subparser of ``spec.workload`` under the ``hpcml`` parser."""
    parser = root_parser
    for word in spec.workload:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            known = sorted(sub.choices) if sub else []
            raise InputError(f"{spec.path}: unknown workload {' '.join(spec.workload)!r}"
                             + (f" (known: {', '.join(known)})" if known else ""))
        parser = sub.choices[word]
    return parser



def parameters(spec, root_parser):
    """Every parameter of the job's subcommand, defaults included, as a dict.

    The spec is checked by the subcommand's own parser (as ``hpcml run``
    does), so a value here is what the job itself sees.
    """
    argv = [*spec.workload, *to_argv(spec, resolve(spec, root_parser))]
    return {k: v for k, v in vars(root_parser.parse_args(argv)).items() if k != "handler"}
