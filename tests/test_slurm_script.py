"""The rendered batch script, run under plain bash with stand-ins for SLURM.

``BASH_ENV`` makes bash define ``module`` and ``scontrol`` functions that
record their arguments; the launcher and the hpcml command are small
programs that record theirs.  So these tests see exactly which words reach
each program, and that hostile values never run as code.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hpcml import slurm
from hpcml.errors import InputError

# Each payload would create a file named "pwned" (or remove the canary in
# $HOME) if any part of it ever ran as shell code.
PAYLOADS = [
    'x"; rm -rf ~; echo "',
    'x"; touch pwned; echo "',
    "x'; touch pwned; echo '",
    "$(touch pwned)",
    "`touch pwned`",
    "a\ntouch pwned\n",
    "${IFS}touch${IFS}pwned",
    "-n; touch pwned #",
]

RECORDER = r"""
import json, os, sys
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
"""

# The stand-in for `hpcml`: records its arguments and environment, then
# either exits with STEP_RC or waits for SIGUSR1/SIGTERM and exits 75 as a
# checkpointing hpcml run does.
STEP = r"""
import json, os, signal, sys, time
rec = {"argv": sys.argv[1:], "cwd": os.getcwd(),
       "env": {k: os.environ.get(k) for k in ("X", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}}
with open(os.environ["RECORD"], "a") as f:
    f.write(json.dumps(["step", rec]) + "\n")
if os.environ.get("STEP_WAIT"):
    got = []
    signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    open(os.environ["STEP_WAIT"], "w").close()
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        time.sleep(0.02)
    sys.exit(75 if got else 1)
sys.exit(int(os.environ.get("STEP_RC", "0")))
"""


class Sandbox:
    """A temporary HOME, stand-in programs and a record of what ran."""

    def __init__(self, tmp_path, hostile=""):
        self.root = tmp_path
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.canary = self.home / "canary"
        self.canary.write_text("alive")
        self.record = tmp_path / "record.jsonl"
        # Directories named after the payload hold every path the script
        # sees, so paths carry the payload too ('/' cannot be in a name).
        self.hostile_dir = tmp_path / ("d" + hostile.replace("/", "_"))
        self.hostile_dir.mkdir()
        recorder = tmp_path / "recorder.py"
        recorder.write_text(RECORDER)
        self.step = tmp_path / "step.py"
        self.step.write_text(STEP)
        rec = f'"{sys.executable}" "{recorder}"'
        self.bash_env = tmp_path / "bash_env.sh"
        self.bash_env.write_text(
            f'module() {{ {rec} module "$@"; }}\nscontrol() {{ {rec} scontrol "$@"; }}\n'
        )
        self.mpiexec = self.hostile_dir / "mpiexec"
        self.mpiexec.write_text(f'#!/bin/sh\n{rec} mpiexec "$@"\nshift $((2 + ${{STUB_EXTRA:-0}}))\nexec "$@"\n')
        self.mpiexec.chmod(0o755)
        self.venv = self.hostile_dir / "venv"
        (self.venv / "bin").mkdir(parents=True)
        (self.venv / "bin" / "activate").write_text(f"{rec} activate\n")
        self.sourced = self.hostile_dir / "site.sh"
        self.sourced.write_text(f"{rec} sourced\n")
        self.spec = tmp_path / "job.toml"
        self.spec.write_text('workload = "demo"\n')

    def settings(self, **overrides):
        values = dict(
            job_name="demo",
            launcher="mpiexec",
            mpiexec=str(self.mpiexec),
            command=[sys.executable, str(self.step)],
        )
        values.update(overrides)
        return slurm.merge_settings(values)

    def env(self, **extra):
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "BASH_ENV": str(self.bash_env),
            "RECORD": str(self.record),
        }
        env.update(extra)
        return env

    def records(self):
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def step_record(self):
        steps = [r[1] for r in self.records() if r[0] == "step"]
        assert len(steps) == 1, self.records()
        return steps[0]

    def untouched(self):
        """True when no payload ran: canary alive, no file named pwned anywhere."""
        return self.canary.read_text() == "alive" and not list(self.root.rglob("pwned"))


def run_script(script, env, timeout=60):
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_values_reach_programs_verbatim_and_never_run(tmp_path, payload):
    box = Sandbox(tmp_path, payload)
    run_dir = box.hostile_dir / "run"
    settings = box.settings(
        modules=["gcc/12", payload],
        source=[str(box.sourced)],
        venv=str(box.venv),
        env={"X": payload},
        launcher_args=[payload],
    )
    work_dir = box.hostile_dir / "work"
    work_dir.mkdir()
    script = slurm.prepare_run(settings, run_dir, box.spec, ["--set", f"name={payload}"], work_dir,
                               ["--set", f"resume={payload}"])
    # The stand-in mpiexec drops "-n 1" and the one launcher argument.
    proc = run_script(script, box.env(STUB_EXTRA="1", SLURM_RESTART_COUNT="1"), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert box.untouched()
    records = box.records()
    assert ["module", "load", "gcc/12", payload] in records
    assert ["sourced"] in records and ["activate"] in records
    assert ["mpiexec", "-n", "1", payload, sys.executable, str(box.step), "run",
            str(run_dir / "job.toml"), "--set", f"name={payload}", "--set", f"resume={payload}"] in records
    step = box.step_record()
    assert step["argv"] == ["run", str(run_dir / "job.toml"), "--set", f"name={payload}",
                            "--set", f"resume={payload}"]
    assert step["env"]["X"] == payload
    assert step["cwd"] == str(work_dir)
    assert slurm.events(run_dir)[-1].endswith("finished rc=0")
    assert (run_dir / "job.toml").read_text() == box.spec.read_text()


@pytest.mark.parametrize(
    "name, value",
    [
        ("job_name", 'x"; rm -rf ~; echo "'),
        ("job_name", "two words"),
        ("job_name", "a\n#SBATCH --wrap=id"),
        ("partition", "debug --wrap=id"),
        ("account", "acc#1"),
        ("qos", "normal;id"),
        ("gres", "gpu:2 --wrap=id"),
        ("mem", "4 GB"),
        ("mem", "4GB"),
        ("time", "1:00:00 --wrap=id"),
        ("time", "1:2:3:4"),
        ("time", "00:61:00"),
        ("time", "1-24:00:00"),
        ("mpi", "pmi2 --wrap=id"),
        ("launcher", "bash"),
        ("nodes", 0),
        ("ntasks_per_node", "2"),
        ("cpus_per_task", True),
        ("signal_seconds", 70000),
        ("requeue", "yes"),
        ("env", {"A B": "x"}),
        ("env", {"A": "nul\0byte"}),
        ("modules", "gcc"),
    ],
)
def test_invalid_values_are_refused_before_anything_is_written(tmp_path, name, value):
    run_dir = tmp_path / "run"
    spec = tmp_path / "job.toml"
    spec.write_text('workload = "demo"\n')
    with pytest.raises(InputError) as err:
        slurm.prepare_run(slurm.merge_settings({name: value}), run_dir, spec)
    assert "\n" not in str(err.value)
    assert not run_dir.exists()


def test_signal_must_come_before_the_time_limit():
    with pytest.raises(InputError, match="signal-seconds"):
        slurm.merge_settings({"time": "00:02:00", "signal_seconds": 120})
    assert slurm.merge_settings({"time": "00:02:01", "signal_seconds": 120}).signal_seconds == 120


@pytest.mark.parametrize(
    "text, seconds",
    [("30", 30 * 60), ("5:30", 5 * 60 + 30), ("01:02:03", 3600 + 2 * 60 + 3),
     ("2-0", 2 * 86400), ("1-02", 86400 + 2 * 3600), ("1-02:03", 86400 + 2 * 3600 + 3 * 60),
     ("1-02:03:04", 86400 + 2 * 3600 + 3 * 60 + 4), ("100:00:00", 100 * 3600)],
)
def test_time_limits_in_every_slurm_form(text, seconds):
    assert slurm.time_seconds(text) == seconds


def test_directives_carry_each_setting(tmp_path):
    box = Sandbox(tmp_path)
    settings = box.settings(
        nodes=2, ntasks_per_node=3, cpus_per_task=4, mem="8G", time="1-00:00:00",
        partition="gpu,cpu", account="proj-1", qos="high", gres="gpu:a100:2",
        requeue=True, signal_seconds=300, overcommit=True,
    )
    text = slurm.render(settings, tmp_path / "run", box.spec)
    directives = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")]
    assert directives == [
        "--job-name=demo", "--nodes=2", "--ntasks-per-node=3", "--cpus-per-task=4",
        "--mem=8G", "--time=1-00:00:00", "--partition=gpu,cpu", "--account=proj-1",
        "--qos=high", "--gres=gpu:a100:2", "--requeue", "--signal=B:USR1@300", "--overcommit",
        "--output=slurm-%j.out", "--error=slurm-%j.err", "--open-mode=append",
    ]
    # mpiexec starts every rank of every node.
    assert f"{box.mpiexec} -n 6 " in text or f"'{box.mpiexec}' -n 6 " in text


def test_srun_launcher_line(tmp_path):
    box = Sandbox(tmp_path)
    text = slurm.render(box.settings(launcher="srun", mpi="pmix", cpus_per_task=3), tmp_path / "run", box.spec)
    (line,) = [line for line in text.splitlines() if "srun" in line and "&" in line]
    # No --overcommit unless asked and no task count: the step inherits the
    # allocation's tasks.
    assert line.split() == ["srun", "--mpi=pmix", "--cpus-per-task=3", sys.executable, str(box.step),
                            "run", '"$JOB_SPEC"', '${resume[@]+"${resume[@]}"}', "&"]


def test_thread_variables_follow_cpus_per_task(tmp_path):
    box = Sandbox(tmp_path)
    script = slurm.prepare_run(box.settings(cpus_per_task=3), tmp_path / "run", box.spec)
    proc = run_script(script, box.env())
    assert proc.returncode == 0, proc.stderr
    env = box.step_record()["env"]
    assert {k: v for k, v in env.items() if k != "X"} == {
        "OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "NUMBA_NUM_THREADS": "3",
    }


@pytest.mark.parametrize("rc", [0, 3, 75])
def test_exit_status_passes_through_without_requeue(tmp_path, rc):
    box = Sandbox(tmp_path)
    script = slurm.prepare_run(box.settings(requeue=False), tmp_path / "run", box.spec)
    proc = run_script(script, box.env(STEP_RC=str(rc), SLURM_JOB_ID="42"))
    assert proc.returncode == rc
    assert not [r for r in box.records() if r[0] == "scontrol"]
    assert slurm.events(tmp_path / "run")[-1].endswith(f"finished rc={rc}")


def _signal_when_ready(box, script, env, sig):
    ready = box.root / "ready"
    proc = subprocess.Popen(["bash", str(script)], env=dict(env, STEP_WAIT=str(ready)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_warning_signal_is_forwarded_and_checkpointed_job_requeues_itself(tmp_path):
    box = Sandbox(tmp_path)
    script = slurm.prepare_run(box.settings(requeue=True), tmp_path / "run", box.spec)
    rc, err = _signal_when_ready(box, script, box.env(SLURM_JOB_ID="42"), signal.SIGUSR1)
    assert rc == 0, err
    assert ["scontrol", "requeue", "42"] in box.records()
    words = [line.split(" ", 3)[3] for line in slurm.events(tmp_path / "run")]
    assert words == ["started", "signal USR1", "finished rc=75", "requeue"]


def test_terminated_job_checkpoints_but_is_not_requeued(tmp_path):
    # SIGTERM is scancel or the time limit: the user's or the scheduler's
    # decision, which a requeue must not undo.
    box = Sandbox(tmp_path)
    script = slurm.prepare_run(box.settings(requeue=True), tmp_path / "run", box.spec)
    rc, err = _signal_when_ready(box, script, box.env(SLURM_JOB_ID="42"), signal.SIGTERM)
    assert rc == 75, err
    assert not [r for r in box.records() if r[0] == "scontrol"]
    words = [line.split(" ", 3)[3] for line in slurm.events(tmp_path / "run")]
    assert words == ["started", "signal TERM", "finished rc=75"]


def test_checkpointed_job_without_requeue_exits_with_the_checkpoint_code(tmp_path):
    box = Sandbox(tmp_path)
    script = slurm.prepare_run(box.settings(requeue=False), tmp_path / "run", box.spec)
    rc, err = _signal_when_ready(box, script, box.env(SLURM_JOB_ID="42"), signal.SIGUSR1)
    assert rc == 75, err
    assert not [r for r in box.records() if r[0] == "scontrol"]


RESUME = ["--set", "checkpoint.resume=true"]


@pytest.mark.parametrize("restarts, resume_args, expected",
                         [(None, RESUME, []), ("0", RESUME, []), ("1", RESUME, RESUME), ("3", RESUME, RESUME),
                          ("1", [], [])])
def test_requeued_run_resumes(tmp_path, restarts, resume_args, expected):
    box = Sandbox(tmp_path)
    script = slurm.prepare_run(box.settings(requeue=True), tmp_path / "run", box.spec, ["--set", "k=1"],
                               resume_args=resume_args)
    env = box.env() if restarts is None else box.env(SLURM_RESTART_COUNT=restarts)
    proc = run_script(script, env)
    assert proc.returncode == 0, proc.stderr
    assert box.step_record()["argv"] == ["run", str(tmp_path / "run" / "job.toml"), "--set", "k=1"] + expected


def test_run_directory_must_be_new_or_empty(tmp_path):
    box = Sandbox(tmp_path)
    run_dir = tmp_path / "run"
    slurm.prepare_run(box.settings(), run_dir, box.spec)
    with pytest.raises(InputError, match="not empty"):
        slurm.prepare_run(box.settings(), run_dir, box.spec)
    with pytest.raises(InputError, match="does not exist"):
        slurm.prepare_run(box.settings(), tmp_path / "other", tmp_path / "missing.toml")


def test_site_configuration_file_and_precedence(tmp_path, monkeypatch):
    conf = tmp_path / "site.toml"
    conf.write_text('partition = "big"\nqos = "low"\nmodules = ["mpi/4"]\n[env]\nFOO = "bar"\n')
    monkeypatch.setenv("HPCML_SLURM_CONFIG", str(conf))
    site = slurm.load_site_config()
    s = slurm.merge_settings(site, {"qos": "high"}, {"qos": None, "nodes": 2})
    assert (s.partition, s.qos, s.nodes, s.modules, s.env) == ("big", "high", 2, ["mpi/4"], {"FOO": "bar"})
    conf.write_text('partitions = "big"\n')
    with pytest.raises(InputError, match="unknown setting 'partitions'"):
        slurm.load_site_config()
    monkeypatch.setenv("HPCML_SLURM_CONFIG", str(tmp_path / "none.toml"))
    with pytest.raises(InputError, match="does not exist"):
        slurm.load_site_config()


def test_default_site_configuration_lives_in_home(tmp_path, monkeypatch):
    monkeypatch.delenv("HPCML_SLURM_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert slurm.load_site_config() == {}
    path = tmp_path / ".config" / "hpcml" / "slurm.toml"
    path.parent.mkdir(parents=True)
    path.write_text("account = \"proj\"\n")
    assert slurm.site_config_path() == path
    assert slurm.load_site_config() == {"account": "proj"}
