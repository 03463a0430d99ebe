"""How hpcml starts its own MPI jobs (the demo, the tests, comparisons)."""

import os
import shutil
import signal
import subprocess
import sys

from hpcml import stop
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


def run_child(command, capture=False, grace=30):
    """Run ``command`` to its end, passing a stop signal of this process on to it.

    When SIGTERM or SIGUSR1 stops this process (:class:`hpcml.stop.Stopped`),
    the child gets SIGTERM, so that a job it runs saves its checkpoint or
    stops at once instead of running on as an orphan; it is killed if it
    has not ended after ``grace`` seconds.

    Returns
    -------
    subprocess.CompletedProcess
    """
    pipe = subprocess.PIPE if capture else None
    with subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True) as proc:
        try:
            out, err = proc.communicate()
        except stop.Stopped:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)
