"""Shared test helpers: run real ``mpiexec`` jobs under a timeout.

A deadlock must fail the test, never hang the suite: every launch has a
timeout, and on expiry the whole process group is killed.
"""

import os
import signal
import subprocess
import sys

import pytest

from hpcml.launch import mpiexec_path

HERE = os.path.dirname(os.path.abspath(__file__))
MPI_SCRIPTS = os.path.join(HERE, "mpi")
RANKS = (1, 2, 3)


def _spark_missing():
    from hpcml.baselines.spark import check_available
    from hpcml.errors import InputError

    try:
        check_available()
    except InputError as exc:
        return str(exc)
    return None


#: Why Spark cannot run here (Java or pyspark missing), or ``None``.
SPARK_MISSING = _spark_missing()
needs_spark = pytest.mark.skipif(SPARK_MISSING is not None, reason=SPARK_MISSING or "")


class Finished:
    """What a launched job left: ``returncode``, ``stdout``, ``stderr``, ``seconds``."""

    def __init__(self, returncode, stdout, stderr, seconds):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds

    def __repr__(self):
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def launch(argv, timeout=120, cwd=None, env=None):
    """Run ``argv`` in its own process group; kill the group on timeout (test fails)."""
    import time

    full_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout}s (deadlock?): {' '.join(argv)}\n{out}\n{err}")
    return Finished(proc.returncode, out, err, time.perf_counter() - start)


def mpirun(ranks, argv, timeout=120, cwd=None, env=None):
    """``mpiexec -n RANKS argv...`` under a timeout."""
    return launch([mpiexec_path(), "-n", str(ranks), *argv], timeout, cwd, env)


def hpcml(ranks, *args, timeout=120, cwd=None, env=None):
    """``mpiexec -n RANKS python -m hpcml ARGS...`` under a timeout."""
    return mpirun(ranks, [sys.executable, "-m", "hpcml", *map(str, args)], timeout, cwd, env)


def mpi_script(ranks, name, *args, timeout=120, cwd=None, env=None):
    """Run ``tests/mpi/NAME`` under mpiexec; it exits non-zero when a check fails."""
    result = mpirun(ranks, [sys.executable, os.path.join(MPI_SCRIPTS, name), *map(str, args)],
                    timeout, cwd, env)
    assert result.returncode == 0, result
    return result
