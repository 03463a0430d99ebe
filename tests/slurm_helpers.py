"""Starting ``hpcml`` with its SLURM subcommands from the tests."""

import os
import subprocess
import sys


def hpcml_command():
    """How to start ``hpcml``."""
    return [sys.executable, "-m", "hpcml"]


def run_hpcml(*args, cwd, env=None, timeout=60):
    """``hpcml ARGS`` in ``cwd``; no site SLURM configuration of this machine leaks in."""
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("HPCML_SLURM_CONFIG", os.devnull)
    return subprocess.run([*hpcml_command(), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
