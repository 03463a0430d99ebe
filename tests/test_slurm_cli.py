"""``hpcml submit --dry-run`` and the checks of ``hpcml submit``, without a cluster."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STATS_DEMO = REPO / "jobs" / "stats-demo.toml"


def hpcml_command():
    """How to start ``hpcml`` with the SLURM subcommands registered."""
    from hpcml import cli

    if "hpcml.slurm_cli" in cli.COMMAND_MODULES:
        return [sys.executable, "-m", "hpcml"]
    # Until hpcml.cli lists the SLURM module, register it for this process.
    return [sys.executable, "-c", "import sys; from hpcml import cli; "
            "cli.COMMAND_MODULES += ('hpcml.slurm_cli',); sys.exit(cli.main())"]


def run_hpcml(*args, cwd, env=None, timeout=60):
    full_env = dict(os.environ if env is None else env)
    # No site configuration of the machine running the tests leaks in.
    full_env.setdefault("HPCML_SLURM_CONFIG", os.devnull)
    return subprocess.run([*hpcml_command(), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def directives(text):
    return [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")]


def launch_words(text):
    (line,) = [line for line in text.splitlines() if " run \"$JOB_SPEC\"" in line]
    return shlex.split(line.replace('"$JOB_SPEC"', "SPEC").split("${resume")[0])


def test_dry_run_renders_spec_resources_and_options(tmp_path):
    proc = run_hpcml("submit", STATS_DEMO, "--dry-run", "--run-dir", "r", "--requeue", "--partition", "short",
                     "--set", "power_iterations=50", "--seed", "7", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = tmp_path / "r"
    assert proc.stdout == (run_dir / "job.sbatch").read_text()
    assert not (run_dir / "job.id").exists()
    # [resources] ranks = 2 and time = "00:05:00" come from the spec.
    assert directives(proc.stdout)[:8] == [
        "--job-name=stats-demo", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1",
        "--time=00:05:00", "--partition=short", "--requeue", "--signal=B:USR1@120",
    ]
    # Output and checkpoints go into the run directory; the job runs the copy
    # of the spec from the directory it was submitted from.
    assert launch_words(proc.stdout) == [
        "srun", "--mpi=pmi2", "--cpus-per-task=1", sys.executable, "-m", "hpcml", "run", "SPEC",
        "--set", "power_iterations=50", "--seed", "7", "--output", f"{run_dir}/stats.h5",
        "--set", f"checkpoint.dir={run_dir}/checkpoints",
    ]
    assert f"WORK_DIR={tmp_path}\n" in proc.stdout
    assert (run_dir / "job.toml").read_text() == STATS_DEMO.read_text()
    settings = json.loads((run_dir / "settings.json").read_text())
    assert settings["partition"] == "short" and settings["resume_args"] == ["--set", "checkpoint.resume=true"]


def test_explicit_output_and_checkpoint_dir_are_kept(tmp_path):
    proc = run_hpcml("submit", STATS_DEMO, "--dry-run", "--run-dir", "r", "--output", "mine.h5",
                     "--set", "checkpoint.dir=ck", "--nodes", "2", "--set", "resources.ranks=4",
                     "--launcher", "mpiexec", "--cpus-per-task", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert directives(proc.stdout)[1:4] == ["--nodes=2", "--ntasks-per-node=2", "--cpus-per-task=2"]
    words = launch_words(proc.stdout)
    # The mpiexec beside this Python (the virtual environment's) by default.
    assert words[:3] == [str(Path(sys.executable).parent / "mpiexec"), "-n", "4"]
    assert words[-7:] == ["SPEC", "--set", "checkpoint.dir=ck", "--set", "resources.ranks=4", "--output", "mine.h5"]


def test_jobs_without_checkpoints_get_no_resume_arguments(tmp_path):
    proc = run_hpcml("submit", REPO / "jobs" / "demo-data-matrix.toml", "--dry-run", "--run-dir", "r",
                     "--requeue", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "    resume=()\n" in proc.stdout
    assert launch_words(proc.stdout)[-2:] == ["--output", f"{tmp_path}/r/matrix.h5:/A"]


@pytest.mark.parametrize("args, message", [
    (["--job-name", 'x"; rm -rf ~; echo "'], "--job-name"),
    (["--time", "1:00:00; touch pwned"], "--time"),
    (["--mem", "$(touch pwned)"], "--mem"),
    (["--gres", "gpu:1 --wrap=touch"], "--gres"),
    (["--ntasks-per-node", "0"], "--ntasks-per-node"),
    (["--set", "no_such_parameter=1"], "unknown parameter"),
])
def test_bad_options_fail_with_one_line_before_anything_is_written(tmp_path, args, message):
    proc = run_hpcml("submit", STATS_DEMO, "--run-dir", "r", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "r").exists()
    assert not list(tmp_path.rglob("pwned"))


def test_site_configuration_reaches_the_script(tmp_path):
    conf = tmp_path / "site.toml"
    conf.write_text('account = "proj1"\nlauncher = "mpiexec"\nmodules = ["mpi/x"]\n[env]\nFOO = "a b"\n')
    env = dict(os.environ, HPCML_SLURM_CONFIG=str(conf))
    proc = run_hpcml("submit", STATS_DEMO, "--dry-run", "--run-dir", "r", "--account", "proj2",
                     cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "--account=proj2" in directives(proc.stdout)
    assert "module load mpi/x || exit 1\nexport FOO='a b'\n" in proc.stdout
    assert launch_words(proc.stdout)[1:3] == ["-n", "2"]
