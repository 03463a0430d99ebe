"""How hpcml starts its own MPI jobs (the demo, the tests, comparisons)."""

import os
import shutil
import sys

from hpcml.errors import InputError


def mpiexec_path():
    """The ``mpiexec`` beside this Python (a virtual environment's pip MPICH), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if not found:
        raise InputError("no mpiexec found: install an MPI (pip install mpich, or the site's MPI)")
    return found


def mpiexec_command(ranks, hpcml_args):
    """``mpiexec -n RANKS python -m hpcml ARGS...`` as an argument list."""
    if ranks < 1:
        raise InputError(f"--ranks must be >= 1, got {ranks}")
    return [mpiexec_path(), "-n", str(ranks), sys.executable, "-m", "hpcml", *hpcml_args]
