"""The command core under real mpiexec: stop signals for every long-running subcommand,
output paths that would harm an input or the file system, and checkpoints that know their job."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import hpcml, needs_spark
from hpcml.io.hdf5 import write_matrix
from hpcml.launch import mpiexec_command
from hpcml.synthetic import dense_with_spectrum

pytestmark = pytest.mark.mpi

try:
    import torch  # noqa: F401 (the cnn extra)
    CNN = True
except ImportError:
    CNN = False


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A matrix with clustered singular values (slow to resolve), a LASSO pair, an LP, a corpus."""
    folder = tmp_path_factory.mktemp("core")
    rng = np.random.default_rng(3)
    A = dense_with_spectrum(1201, 120, np.linspace(1, 0.999, 120), rng)
    write_matrix(f"{folder}/m.h5:/A", A)
    with h5py.File(folder / "m.h5", "a") as handle:
        handle["b"] = rng.standard_normal(A.shape[0])
    for args in (["data", "lp", "--rows", 150, "--cols", 1500, "--density", 0.02,
                  "--output", folder / "lp.h5"],
                 ["data", "corpus", "synthetic", "--docs", 400, "--words", 300, "--topics", 5,
                  "--doc-length", 60, "--seed", 2, "--output", folder / "corpus.h5"],
                 ["data", "shapes", "--train", 10, "--test", 2, "--output", folder / "shapes"],
                 ["lda", "train", "--input", folder / "corpus.h5", "--topics", 5, "--iterations", 3,
                  "--output", folder / "lda.h5"]):
        assert hpcml(1, *args).returncode == 0
    if CNN:
        assert hpcml(2, "data", "voxelize", folder / "shapes", "--grid", 14, "--object-size", 12,
                     "--orientations", 1, "--output", folder / "vox.h5").returncode == 0
    return folder


def _descendants(pid):
    """Processes below ``pid`` (from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _handles_sigterm(pid):
    """True once the process catches SIGTERM: hpcml's job core has installed its handler."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
        if argv[1:3] != [b"-m", b"hpcml"]:   # a rank, not mpiexec or its proxy
            return False
        with open(f"/proc/{pid}/status") as handle:
            caught = next(int(line.split()[1], 16) for line in handle if line.startswith("SigCgt"))
    except (OSError, StopIteration):
        return False
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def stop_mid_run(argv, ranks, signum=signal.SIGTERM, settle=1.5, cwd=None):
    """Launch ``hpcml ARGV`` (under mpiexec when ``ranks``), signal it once every rank runs its job.

    Returns ``(returncode, stderr, seconds from the signal to the exit)``.
    """
    command = mpiexec_command(ranks, argv) if ranks else [sys.executable, "-m", "hpcml", *argv]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=cwd,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            ready = [p for p in [proc.pid, *_descendants(proc.pid)] if _handles_sigterm(p)]
            if len(ready) >= max(ranks, 1):
                break
            time.sleep(0.02)
        time.sleep(settle)   # well inside the work
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        sent = time.time()
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, err, time.time() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


LONG = {
    # Clustered singular values and a tolerance at the floor keep each method iterating.
    "svd": lambda d, o: ["svd", "--input", f"{d}/m.h5:/A", "--k", 30, "--method", "randomized",
                         "--max-iter", 10**7, "--tol", 1e-300, "--output", o],
    "pca": lambda d, o: ["pca", "--input", f"{d}/m.h5:/A", "--k", 30, "--method", "randomized",
                         "--max-iter", 10**7, "--tol", 1e-300, "--output", o],
    "stats": lambda d, o: ["stats", "--input", f"{d}/m.h5:/A", "--tol", 0,
                           "--power-iterations", 10**8, "--output", o],
    "lasso": lambda d, o: ["lasso", "--input", f"{d}/m.h5:/A", "--rhs", f"{d}/m.h5:/b", "--lam", 1e-9,
                           "--tol", 1e-300, "--max-iter", 10**8, "--output", o],
    "solve": lambda d, o: ["solve", "--input", f"{d}/m.h5:/A", "--rhs", f"{d}/m.h5:/b",
                           "--smooth", "huber", "--tol", 1e-300, "--max-iter", 10**8, "--output", o],
    "lp": lambda d, o: ["lp", "--input", f"{d}/lp.h5", "--tol", 1e-300, "--max-iter", 10**9,
                        "--output", o],
    "lda train": lambda d, o: ["lda", "train", "--input", f"{d}/corpus.h5", "--topics", 5,
                               "--iterations", 10**7, "--output", o],
    "lda infer": lambda d, o: ["lda", "infer", "--model", f"{d}/lda.h5", "--input", f"{d}/corpus.h5",
                               "--sweeps", 10**6, "--output", o],
    "data matrix": lambda d, o: ["data", "matrix", "--rows", 30000, "--cols", 1500,
                                 "--output", f"{o}:/A"],
    "data voxelize": lambda d, o: ["data", "voxelize", f"{d}/shapes", "--grid", 32, "--object-size", 28,
                                   "--orientations", 36, "--output", o],
    "data render": lambda d, o: ["data", "render", f"{d}/shapes", "--size", 64, "--orientations", 48,
                                 "--output", o],
}
if CNN:
    LONG["cnn train"] = lambda d, o: ["cnn", "train", "--data", f"{d}/vox.h5", "--model", "voxnet",
                                      "--width", 0.25, "--epochs", 10**6, "--batch", 4, "--output", o]


@pytest.mark.parametrize("name", sorted(LONG))
def test_sigterm_without_checkpoint_stops_at_once(data, tmp_path, name):
    out = tmp_path / "out.h5"
    code, err, seconds = stop_mid_run([str(a) for a in LONG[name](data, out)], 2)
    assert code == 128 + signal.SIGTERM, err
    assert seconds < 10, seconds
    assert err.count("hpcml: stopped by SIGTERM") == 1, err
    assert not os.listdir(tmp_path), "an output or a temporary file was left"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
@pytest.mark.parametrize("name", ["stats", "lasso", "solve", "lda train"] + ["cnn train"] * CNN)
def test_stop_with_checkpoint_dir_saves_and_exits_75(data, tmp_path, name, signum):
    out = tmp_path / "out.h5"
    argv = [str(a) for a in LONG[name](data, out)] + ["--checkpoint-dir", str(tmp_path / "ck")]
    code, err, seconds = stop_mid_run(argv, 2, signum)
    assert code == 75 and seconds < 10, (code, seconds, err)
    saved = os.listdir(tmp_path / "ck")
    assert len(saved) == 1 and saved[0].startswith("ckpt-") and saved[0] in err, (saved, err)
    assert not out.exists()


@needs_spark
def test_compare_passes_the_stop_on_to_its_hpcml_job(data, tmp_path):
    job = tmp_path / "slow-svd.toml"
    job.write_text(f'workload = "svd"\n[params]\ninput = "{data}/m.h5:/A"\nk = 30\n'
                   'method = "randomized"\nmax_iter = 10000000\ntol = 1e-300\n')
    code, err, seconds = stop_mid_run(["compare", str(job), "--ranks", "2", "--run-dir", str(tmp_path / "run")],
                                      0, settle=4.0)
    assert code == 128 + signal.SIGTERM and seconds < 10, (code, seconds, err)
    assert "hpcml: stopped by SIGTERM" in err
    time.sleep(1)
    orphans = [p for p in os.listdir("/proc") if p.isdigit() and _reads(p, str(job))]
    assert not orphans, "the hpcml job of the comparison runs on"


def _reads(pid, text):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return text.encode() in handle.read()
    except OSError:
        return False


def test_demo_passes_the_stop_on(tmp_path):
    """``hpcml demo`` forwards the signal to the step it runs and exits with its status."""
    from conftest import HERE

    root = os.path.dirname(HERE)
    code, err, seconds = stop_mid_run(["demo", "--ranks", "2", "--jobs", os.path.join(root, "jobs", "demo.toml")],
                                      0, settle=3.0, cwd=tmp_path)
    assert code in (75, 128 + signal.SIGTERM) and seconds < 15, (code, seconds, err)


# -- output paths ------------------------------------------------------------------


def _digest(path):
    with open(path, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("argv", [
    ["stats", "--input", "{d}/m.h5:/A", "--output", "{d}/m.h5"],
    ["svd", "--input", "{d}/m.h5:/A", "--k", 2, "--output", "{d}/m.h5"],
    ["lasso", "--input", "{d}/m.h5:/A", "--rhs", "{d}/m.h5:/b", "--lam", 1, "--output", "{d}/m.h5"],
    ["lp", "--input", "{d}/lp.h5", "--output", "{d}/lp.h5"],
    ["lda", "train", "--input", "{d}/corpus.h5", "--topics", 3, "--output", "{d}/corpus.h5"],
    ["stats", "--input", "{d}/m.h5:/A", "--output", "{d}/./sub/../m.h5"],
])
def test_output_naming_an_input_is_refused_and_the_input_kept(data, argv):
    (data / "sub").mkdir(exist_ok=True)
    inputs = {name: _digest(data / name) for name in ("m.h5", "lp.h5", "corpus.h5")}
    result = hpcml(2, *[str(a).format(d=data) for a in argv])
    assert result.returncode == 2, result
    assert "hpcml never overwrites its input" in result.stderr and result.stderr.count("error") == 1
    assert {name: _digest(data / name) for name in inputs} == inputs


def test_output_through_a_hard_link_to_the_input_is_refused(data, tmp_path):
    os.link(data / "m.h5", tmp_path / "alias.h5")
    result = hpcml(1, "stats", "--input", f"{data}/m.h5:/A", "--output", tmp_path / "alias.h5")
    assert result.returncode == 2 and "never overwrites its input" in result.stderr, result


def test_outputs_that_are_not_plain_files_are_refused(data, tmp_path):
    target = tmp_path / "target.h5"
    target.write_bytes(b"keep")
    os.symlink(target, tmp_path / "link.h5")
    os.mkfifo(tmp_path / "pipe.h5")
    (tmp_path / "folder.h5").mkdir()
    for name, message in (("link.h5", "is a symbolic link"), ("pipe.h5", "not a regular file"),
                          ("folder.h5", "is a folder"), ("/dev/null", "not a regular file"),
                          ("target.h5/x.h5", "cannot write in")):
        result = hpcml(2, "stats", "--input", f"{data}/m.h5:/A", "--power-iterations", 1,
                       "--output", tmp_path / name)
        assert result.returncode == 2 and message in result.stderr, (name, result)
        assert result.stderr.count("hpcml: error") == 1, result
    assert target.read_bytes() == b"keep" and os.path.islink(tmp_path / "link.h5")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_a_killed_writers_temporary_file_is_removed(data, tmp_path):
    out = tmp_path / "stats.h5"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".stats.h5.tmp-{dead.pid}"
    stale.write_bytes(b"x" * 1000)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    alive = tmp_path / f".stats.h5.tmp-{os.getpid()}"
    alive.write_bytes(b"y")
    os.utime(alive, (time.time() - 3600, time.time() - 3600))
    result = hpcml(2, "stats", "--input", f"{data}/m.h5:/A", "--power-iterations", 1, "--output", out)
    assert result.returncode == 0, result
    assert not stale.exists() and alive.exists() and out.exists()


def test_resume_without_checkpoint_dir_is_refused(data):
    result = hpcml(1, "stats", "--input", f"{data}/m.h5:/A", "--resume")
    assert result.returncode == 2 and "--resume needs --checkpoint-dir" in result.stderr, result


# -- checkpoints that know their job -------------------------------------------------------


def _stats(data, ck, iterations, *extra, tol=0):
    return hpcml(2, "stats", "--input", f"{data}/m.h5:/A", "--tol", tol, "--json",
                 "--power-iterations", iterations, "--checkpoint-dir", ck, "--checkpoint-every", 2, *extra)


def test_a_new_run_leaves_an_older_runs_checkpoints_alone(data, tmp_path):
    ck = tmp_path / "ck"
    assert _stats(data, ck, 8).returncode == 0
    old = sorted(os.listdir(ck))
    assert [n.split("-")[1] for n in old] == ["00000006", "00000008"]
    # A fresh run in the same folder, with fewer iterations: its own checkpoints
    # survive its pruning, and the older run's stay as they were.
    assert _stats(data, ck, 4).returncode == 0
    mine = sorted(set(os.listdir(ck)) - set(old))
    assert [n.split("-")[1] for n in mine] == ["00000002", "00000004"]
    assert set(old) <= set(os.listdir(ck))
    # --resume continues the newest run (iteration 4), not the older run's 8.
    result = _stats(data, ck, 6, "--resume")
    assert result.returncode == 0 and "after iteration 4" in result.stderr, result
    assert set(old) <= set(os.listdir(ck))


@pytest.mark.parametrize("change,field", [
    ({"extra": ["--seed", 5]}, "params seed was 0, is 5"),
    ({"tol": 1e-3}, "params tol was 0.0, is 0.001"),
])
def test_resuming_another_jobs_checkpoint_is_refused(data, tmp_path, change, field):
    ck = tmp_path / "ck"
    assert _stats(data, ck, 4).returncode == 0
    result = _stats(data, ck, 6, "--resume", *change.get("extra", []), tol=change.get("tol", 0))
    assert result.returncode == 2, result
    assert "belongs to another job" in result.stderr and field in result.stderr, result
    assert result.stderr.count("hpcml: error") == 1


def test_resuming_with_a_changed_input_is_refused(data, tmp_path):
    ck = tmp_path / "ck"
    path = tmp_path / "own.h5"
    write_matrix(f"{path}:/A", np.random.default_rng(1).standard_normal((31, 5)))
    args = ["stats", "--input", f"{path}:/A", "--tol", 0, "--power-iterations", 4,
            "--checkpoint-dir", ck, "--checkpoint-every", 2]
    assert hpcml(2, *args).returncode == 0
    write_matrix(f"{path}:/A", np.random.default_rng(1).standard_normal((32, 5)), mode="w")
    result = hpcml(2, *args, "--resume")
    assert result.returncode == 2 and "inputs input" in result.stderr and "shape" in result.stderr, result


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(data, tmp_path):
    ck = tmp_path / "ck"
    whole = _stats(data, tmp_path / "other", 8)
    assert _stats(data, ck, 6).returncode == 0
    newest = sorted(os.listdir(ck))[-1]
    with open(ck / newest / "rank-00001.h5", "r+b") as handle:   # truncated by a crash
        handle.truncate(100)
    result = _stats(data, ck, 8, "--resume")
    assert result.returncode == 0, result
    assert "is damaged" in result.stderr and "after iteration 4" in result.stderr, result
    assert json.loads(result.stdout)["spectral_norm"] == json.loads(whole.stdout)["spectral_norm"]
    with open(ck / sorted(os.listdir(ck))[-1] / "manifest.json", "w") as handle:
        handle.write("{not json")
    result = _stats(data, ck, 10, "--resume")
    assert result.returncode == 0 and "unreadable manifest" in result.stderr, result


# -- timers ----------------------------------------------------------------------------


def test_collectives_inside_io_count_once_and_the_parts_add_up():
    from hpcml.comm import Comm

    comm = Comm.self_comm()
    with comm.io():
        comm.allreduce(np.zeros(4))
        time.sleep(0.05)
        with comm.io():   # nested blocks are one block
            time.sleep(0.05)
    comm.allreduce(np.zeros(4))
    t = comm.timings()
    assert t["io_s"] >= 0.1 and t["comm_s"] < 0.01 and t["bytes"] == 64
    assert t["compute_s"] + t["comm_s"] + t["io_s"] == pytest.approx(t["wall_s"], abs=1e-9)
