"""Starting ``hpcml`` with its SLURM subcommands from the tests, and
watching the jobs of a test cluster (``slurm_cluster``, ``slurm_nodes``)."""

import os
import subprocess
import sys
import time

import pytest

#: Job states after which a job no longer runs.
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def unavailable(what, reason):
    """Skip, or fail where CI requires SLURM (``HPCML_REQUIRE_SLURM``)."""
    if os.environ.get("HPCML_REQUIRE_SLURM"):
        pytest.fail(f"{what} required (HPCML_REQUIRE_SLURM) but unavailable: {reason}")
    pytest.skip(f"{what} unavailable: {reason}")


def job_fields(cluster, jid):
    """``scontrol show job`` as a dict (the cluster keeps finished jobs for MinJobAge)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", str(jid)], env=cluster.env(),
                         capture_output=True, text=True, timeout=30).stdout
    return dict(w.split("=", 1) for w in out.split() if "=" in w)


def wait_job(cluster, jid, timeout=90, until=TERMINAL):
    """Poll until the job's state is in ``until``; return its fields (cancel and fail after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        fields = job_fields(cluster, jid)
        if fields.get("JobState") in until:
            return fields
        if time.monotonic() > deadline:
            subprocess.run(["scancel", str(jid)], env=cluster.env(), timeout=30)
            pytest.fail(f"job {jid} not in {sorted(until)} after {timeout} s: {fields.get('JobState')} "
                        f"| slurmctld: {cluster.log_tail('slurmctld')} | slurmd: {cluster.log_tail('slurmd')}")
        time.sleep(0.2)


def hpcml_command():
    """How to start ``hpcml``."""
    return [sys.executable, "-m", "hpcml"]


def run_hpcml(*args, cwd, env=None, timeout=60):
    """``hpcml ARGS`` in ``cwd``; no site SLURM configuration of this machine leaks in."""
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("HPCML_SLURM_CONFIG", os.devnull)
    return subprocess.run([*hpcml_command(), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
