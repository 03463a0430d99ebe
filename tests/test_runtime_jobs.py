import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from hpcml import jobs
from hpcml.errors import InputError
from hpcml.runtime import MALLOC_VARIABLES, limit_threads


def test_threads_limited_when_ranks_share_a_node():
    env = {"MPI_LOCALNRANKS": "2", "OPENBLAS_NUM_THREADS": "4"}
    changed = limit_threads(env)
    assert env["OPENBLAS_NUM_THREADS"] == "4"          # the user's choice stays
    assert env["OMP_NUM_THREADS"] == env["NUMBA_NUM_THREADS"] == "1"
    assert "OPENBLAS_NUM_THREADS" not in changed


def test_threads_follow_cpus_per_task_and_explicit_setting():
    env = {"SLURM_NTASKS_ON_NODE": "4", "SLURM_CPUS_PER_TASK": "8"}
    limit_threads(env)
    assert env["OMP_NUM_THREADS"] == "8"
    env = {"HPCML_THREADS": "3"}
    limit_threads(env)
    assert env["NUMBA_NUM_THREADS"] == "3"
    env = {}
    assert limit_threads(env) == {} and env == {}      # one rank alone keeps every core


def test_job_spec_sections_and_overrides(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('workload = "lda train"\n[params]\nk = 5\n[checkpoint]\ndir = "ck"\n'
                    '[resources]\nranks = 2\n')
    spec = jobs.load(path, ["k=7", "checkpoint.every=3", "resources.ranks=4", "name=abc"])
    assert spec.workload == ["lda", "train"]
    assert spec.params == {"k": 7, "checkpoint_dir": "ck", "checkpoint_every": 3, "name": "abc"}
    assert spec.resources == {"ranks": 4}


def test_job_spec_switches_both_ways(tmp_path):
    from hpcml.cli import build_parser

    path = tmp_path / "job.toml"
    path.write_text('workload = "cnn train"\n[params]\nfactored_gradients = false\n')
    root = build_parser()
    train = jobs.resolve(jobs.load(path), root)
    assert jobs.to_argv(jobs.load(path), train) == ["--no-factored-gradients"]
    assert jobs.to_argv(jobs.load(path, ["factored_gradients=true"]), train) == \
        ["--factored-gradients"]
    with pytest.raises(InputError, match="must be true or false"):
        jobs.to_argv(jobs.load(path, ["factored_gradients=1"]), train)


@pytest.mark.parametrize("override,message", [("k", "expected KEY=VALUE"),
                                              ("bogus.k=1", "unknown section"),
                                              ("checkpoint.often=1", "unknown key 'often'")])
def test_bad_overrides(tmp_path, override, message):
    path = tmp_path / "job.toml"
    path.write_text('workload = "stats"\n')
    with pytest.raises(InputError, match=message):
        jobs.load(path, [override])


SHIPPED = sorted(p.name for p in (Path(__file__).parent.parent / "jobs").glob("*.toml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_job_spec_is_valid(name):
    """Each file in jobs/ is a step list naming existing specs, a pipeline, or a spec its subcommand accepts."""
    import tomllib

    from hpcml.cli import build_parser

    path = Path(__file__).parent.parent / "jobs" / name
    with open(path, "rb") as handle:
        table = tomllib.load(handle)
    if "stages" in table:  # a pipeline: its stages' specs are checked as it loads
        from hpcml import pipeline

        assert pipeline.load(path)[1]
        return
    steps = table.get("steps")
    if steps is not None:
        assert steps and all((path.parent / step).is_file() for step in steps)
        return
    spec = jobs.load(str(path))
    root = build_parser()
    parsed = root.parse_args([*spec.workload, *jobs.to_argv(spec, jobs.resolve(spec, root))])
    assert parsed.command == spec.workload[0]


_FAULTS = """
import resource, sys
import numpy as np
from hpcml.runtime import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
np.ones(64 << 18, np.float32)  # a first 64 MiB block, freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    np.ones(64 << 18, np.float32)  # allocated, every page touched, freed
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_keep_freed_memory_ends_the_page_faults_of_a_reused_block():
    def run(mode, **env):
        # Only the malloc settings each case asks for, whatever this shell has.
        base = {k: v for k, v in os.environ.items() if k not in MALLOC_VARIABLES}
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True,
                             text=True, check=True, env={**base, **env}).stdout.split()
        return out[0], int(out[1])

    # At least a fault per 2 MiB (numpy asks for transparent huge pages) per block.
    huge_pages = 5 * (64 >> 1)
    applied, fresh = run("default")
    assert applied == "None" and fresh >= huge_pages  # each block came fresh from the kernel
    applied, kept = run("keep")
    assert applied == "True" and kept < fresh / 10
    # The user's own malloc settings win.
    applied, faults = run("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == "False" and faults >= huge_pages
