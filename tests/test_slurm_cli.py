"""``hpcml submit --dry-run`` and the checks of ``hpcml submit``, without a cluster.

Most tests call the subcommand's handler in this process (no MPI is
started); one runs the real command to check exit status and message.
"""

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from hpcml import cli, slurm_cli
from hpcml.errors import InputError

try:
    from .slurm_helpers import run_hpcml
except ImportError:
    from slurm_helpers import run_hpcml

REPO = Path(__file__).resolve().parent.parent
STATS_DEMO = REPO / "jobs" / "stats-demo.toml"


@pytest.fixture
def submit(tmp_path, monkeypatch, capsys):
    """``hpcml submit ARGS`` in ``tmp_path``; returns (summary, stdout)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HPCML_SLURM_CONFIG", os.devnull)

    def call(*argv):
        root = cli.Parser(prog="hpcml")
        slurm_cli.register(root.add_subparsers(parser_class=cli.Parser), cli.common_options())
        args = root.parse_args(["submit", *map(str, argv)])
        summary = args.handler(args, None)
        return summary, capsys.readouterr().out

    return call


def directives(text):
    return [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")]


def launch_words(text):
    (line,) = [line for line in text.splitlines() if " run \"$JOB_SPEC\"" in line]
    return shlex.split(line.replace('"$JOB_SPEC"', "SPEC").split("${resume")[0])


def test_dry_run_renders_spec_resources_and_options(tmp_path, submit):
    summary, out = submit(STATS_DEMO, "--dry-run", "--run-dir", "r", "--requeue", "--partition", "short",
                          "--set", "power_iterations=50", "--seed", "7")
    run_dir = tmp_path / "r"
    assert summary == {"run_dir": str(run_dir), "script": str(run_dir / "job.sbatch"), "job_id": None}
    assert out == (run_dir / "job.sbatch").read_text()
    assert not (run_dir / "job.id").exists()
    # [resources] ranks = 2 and time = "00:05:00" come from the spec.
    assert directives(out)[:8] == [
        "--job-name=stats-demo", "--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1",
        "--time=00:05:00", "--partition=short", "--requeue", "--signal=B:USR1@120",
    ]
    # Output and checkpoints go into the run directory; the job runs the copy
    # of the spec from the directory it was submitted from.
    assert launch_words(out) == [
        "srun", "--mpi=pmi2", "--cpus-per-task=1", sys.executable, "-m", "hpcml", "run", "SPEC",
        "--set", "power_iterations=50", "--seed", "7", "--output", f"{run_dir}/stats.h5",
        "--set", f"checkpoint.dir={run_dir}/checkpoints",
    ]
    assert f"WORK_DIR={tmp_path}\n" in out
    assert (run_dir / "job.toml").read_text() == STATS_DEMO.read_text()
    settings = json.loads((run_dir / "settings.json").read_text())
    assert settings["partition"] == "short" and settings["resume_args"] == ["--set", "checkpoint.resume=true"]


def test_explicit_output_and_checkpoint_dir_are_kept(tmp_path, submit):
    _, out = submit(STATS_DEMO, "--dry-run", "--run-dir", "r", "--output", "mine.h5",
                    "--set", "checkpoint.dir=ck", "--nodes", "2", "--set", "resources.ranks=4",
                    "--launcher", "mpiexec", "--cpus-per-task", "2")
    assert directives(out)[1:4] == ["--nodes=2", "--ntasks-per-node=2", "--cpus-per-task=2"]
    words = launch_words(out)
    # The mpiexec beside this Python (the virtual environment's) by default.
    assert words[:3] == [str(Path(sys.executable).parent / "mpiexec"), "-n", "4"]
    assert words[-7:] == ["SPEC", "--set", "checkpoint.dir=ck", "--set", "resources.ranks=4", "--output", "mine.h5"]


def test_jobs_without_checkpoints_get_no_resume_arguments(tmp_path, submit):
    _, out = submit(REPO / "jobs" / "demo-data-matrix.toml", "--dry-run", "--run-dir", "r", "--requeue")
    assert "    resume=()\n" in out
    assert launch_words(out)[-2:] == ["--output", f"{tmp_path}/r/matrix.h5:/A"]


@pytest.mark.parametrize("args, message", [
    (["--job-name", 'x"; rm -rf ~; echo "'], "--job-name"),
    (["--time", "1:00:00; touch pwned"], "--time"),
    (["--mem", "$(touch pwned)"], "--mem"),
    (["--gres", "gpu:1 --wrap=touch"], "--gres"),
    (["--gres", "gpu:x"], "'gpu:x' is not a valid gres"),
    (["--gres", "gpu:0"], "'gpu:0' is not a valid gres"),
    (["--ntasks-per-node", "0"], "--ntasks-per-node"),
    (["--set", "no_such_parameter=1"], "unknown parameter"),
    (["--set", "resources.ranks=3", "--nodes", "2"], "multiple of 2 node"),
    (["--launcher", "ssh"], "invalid choice"),
])
def test_bad_options_are_refused_before_anything_is_written(tmp_path, submit, args, message):
    with pytest.raises(InputError, match=message) as err:
        submit(STATS_DEMO, "--run-dir", "r", *args)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()
    assert not list(tmp_path.rglob("pwned"))


def test_the_command_exits_2_with_one_line_on_a_hostile_job_name(tmp_path):
    proc = run_hpcml("submit", STATS_DEMO, "--run-dir", "r", "--job-name", 'x"; touch pwned; echo "', cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("hpcml: error: --job-name") and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "pwned").exists()


def test_site_configuration_reaches_the_script(tmp_path, submit, monkeypatch):
    conf = tmp_path / "site.toml"
    conf.write_text('account = "proj1"\nlauncher = "mpiexec"\nmodules = ["mpi/x"]\n[env]\nFOO = "a b"\n')
    monkeypatch.setenv("HPCML_SLURM_CONFIG", str(conf))
    _, out = submit(STATS_DEMO, "--dry-run", "--run-dir", "r", "--account", "proj2")
    assert "--account=proj2" in directives(out)
    assert "module load mpi/x || exit 1\nexport FOO='a b'\n" in out
    assert launch_words(out)[1:3] == ["-n", "2"]


@pytest.mark.parametrize("command", ["status", "cancel"])
def test_status_and_cancel_need_a_submitted_run_directory(tmp_path, command):
    from hpcml import slurm

    with pytest.raises(InputError, match="not a submitted run directory"):
        (slurm.status if command == "status" else slurm.cancel)(tmp_path)
    (tmp_path / "job.id").write_text("12; rm -rf ~\n")
    with pytest.raises(InputError, match="does not hold a job id"):
        (slurm.status if command == "status" else slurm.cancel)(tmp_path)


def test_cancel_sends_only_known_signals(tmp_path):
    from hpcml import slurm

    (tmp_path / "job.id").write_text("12\n")
    with pytest.raises(InputError, match="--signal"):
        slurm.cancel(tmp_path, "KILL; rm -rf ~")
