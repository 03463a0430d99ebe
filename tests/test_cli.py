import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from conftest import MPI_SCRIPTS, RANKS, hpcml, launch, mpirun
from hpcml.io.hdf5 import write_matrix

pytestmark = [pytest.mark.mpi, pytest.mark.numerics]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    A = rng.standard_normal((3 * 40 + 1, 12))
    write_matrix(f"{folder}/in.h5:/A", A)
    bad = A.copy()
    bad[77, 3] = np.nan
    write_matrix(f"{folder}/in.h5:/nan", bad)
    with h5py.File(folder / "in.h5", "a") as handle:
        handle["vector"] = np.ones(5)
    return folder, A


def test_help_lists_subcommands():
    result = launch([sys.executable, "-m", "hpcml", "--help"])
    assert result.returncode == 0
    for name in ("info", "run", "demo", "data", "stats"):
        assert name in result.stdout


def test_info_reports_mpi_library_and_ranks():
    result = hpcml(2, "info", "--json")
    assert result.returncode == 0, result
    facts = json.loads(result.stdout)
    assert facts["ranks"] == 2 and "MPICH" in facts["mpi_library"]
    assert facts["thread_variables"]["OPENBLAS_NUM_THREADS"] == "1"


@pytest.mark.parametrize("ranks", RANKS)
def test_stats_equal_numpy(ranks, data):
    folder, A = data
    out = folder / f"stats{ranks}.h5"
    result = hpcml(ranks, "stats", "--input", f"{folder}/in.h5:/A", "--output", out, "--json")
    assert result.returncode == 0, result
    summary = json.loads(result.stdout)
    sigma = np.linalg.svd(A, compute_uv=False)[0]
    assert abs(summary["spectral_norm"] - sigma) <= 1e-8 * sigma
    with h5py.File(out, "r") as handle:
        # Any summation order of m terms errs by at most m·ε·Σ|a|, so the means
        # by ≤ m·ε·mean|a|; the norms sum positive terms, ≤ m·ε relative.
        m, eps = A.shape[0], np.finfo(float).eps
        assert np.all(np.abs(handle["col_means"][()] - A.mean(axis=0)) <= m * eps * np.abs(A).mean(axis=0))
        assert np.allclose(handle["col_norms"][()], np.linalg.norm(A, axis=0), rtol=m * eps, atol=0)
        assert handle.attrs["ranks"] == ranks
        assert set(json.loads(handle.attrs["timings"])) >= {"compute_s", "comm_s", "io_s", "bytes"}


@pytest.mark.parametrize("spec,message", [
    ("missing.h5:/A", "missing.h5: no such file"),
    ("in.h5:/B", "in.h5: no dataset /B"),
    ("in.h5:/vector", "must be a 2-D matrix, has shape (5,)"),
    ("in.h5:/nan", "NaN or Inf in row 77"),
    ("in.h5", "expected FILE.h5:/DATASET"),
])
def test_bad_input_exits_2_with_one_line(data, spec, message):
    folder, _ = data
    result = hpcml(3, "stats", "--input", spec, cwd=folder, timeout=60)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("hpcml: error:"), result


def test_usage_error_exits_2():
    result = hpcml(2, "stats", "--power-iterations", "many")
    assert result.returncode == 2
    assert result.stderr.count("invalid int value") == 1  # rank 0 only


def test_rank_failing_alone_ends_the_job_quickly():
    result = mpirun(2, [sys.executable, os.path.join(MPI_SCRIPTS, "check_abort.py")], timeout=30)
    assert result.returncode != 0
    assert result.seconds < 10, result.seconds
    assert "rank 1 fails alone" in result.stderr


def test_run_job_spec_with_overrides(data, tmp_path):
    folder, A = data
    spec = tmp_path / "job.toml"
    spec.write_text(f'workload = "stats"\n[params]\ninput = "{folder}/in.h5:/A"\n'
                    f'power_iterations = 3\ntol = 0.0\n[resources]\nranks = 2\n')
    result = hpcml(2, "run", spec, "--set", "power_iterations=5", "--json")
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["power_iterations"] == 5


@pytest.mark.parametrize("body,message", [
    ('workload = "stats"\n[params]\nbogus = 1\n', "unknown parameter 'bogus'"),
    ('workload = "stats"\n[params]\ninput = "x.h5:/A"\npower_iterations = "5"\n', "must be an integer"),
    ('workload = "stats"\n[params]\ninput = "x.h5:/A"\npower_iterations = [5]\n', "takes one value, not a list"),
    ('workload = "stats"\n[params]\ninput = "x.h5:/A"\ntol = "0"\n', "must be a number"),
    ('workload = "stats"\n[resources]\nranks = 0\n', "ranks must be >= 1"),
    ('workload = "nosuch"\n', "unknown workload 'nosuch'"),
    ('workload = "stats"\nextra = 1\n', "unknown key 'extra'"),
    ('workload = "stats"\n[resources]\nranks = "two"\n', "ranks must be int"),
    ('workload = [\n', "invalid TOML"),
])
def test_bad_job_specs(tmp_path, body, message):
    spec = tmp_path / "job.toml"
    spec.write_text(body)
    result = hpcml(2, "run", spec)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("hpcml: error") == 1, result


def test_checkpoint_resume_equals_uninterrupted(data, tmp_path):
    folder, _ = data
    common = ["stats", "--input", f"{folder}/in.h5:/A", "--tol", "0", "--json"]
    whole = hpcml(2, *common, "--power-iterations", 12)
    part = hpcml(2, *common, "--power-iterations", 7, "--checkpoint-dir", tmp_path, "--checkpoint-every", 3)
    assert sorted(n.rsplit("-", 1)[0] for n in os.listdir(tmp_path)) == ["ckpt-00000003", "ckpt-00000006"]
    rest = hpcml(2, *common, "--power-iterations", 12, "--checkpoint-dir", tmp_path, "--resume")
    for result in (whole, part, rest):
        assert result.returncode == 0, result
    assert "resuming power iteration after iteration 6" in rest.stderr
    assert json.loads(rest.stdout)["spectral_norm"] == json.loads(whole.stdout)["spectral_norm"]


def test_resume_with_other_rank_count_is_refused(data, tmp_path):
    folder, _ = data
    args = ["stats", "--input", f"{folder}/in.h5:/A", "--power-iterations", 4, "--tol", "0",
            "--checkpoint-dir", tmp_path, "--checkpoint-every", 2]
    assert hpcml(2, *args).returncode == 0
    result = hpcml(3, *args, "--resume")
    assert result.returncode == 2 and "ranks was 2, is 3" in result.stderr, result


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signal_checkpoints_and_exits_75(tmp_path, signum):
    write_matrix(f"{tmp_path}/big.h5:/A", np.random.default_rng(1).standard_normal((4001, 50)))
    from hpcml.launch import mpiexec_command
    command = mpiexec_command(2, ["stats", "--input", f"{tmp_path}/big.h5:/A", "--tol", "0",
                                  "--power-iterations", "10000000", "--checkpoint-dir", f"{tmp_path}/ck",
                                  "--checkpoint-every", "100"])
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 60
        while not list((tmp_path / "ck").glob("ckpt-*")) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 75, err
    assert "checkpoint of iteration" in err
    saved = sorted(os.listdir(tmp_path / "ck"))
    # The stop saves the iteration it stopped at; at a multiple of 100 that is
    # the checkpoint just written, not a second copy of it.
    last = int(saved[-1].split("-")[1])
    assert last >= 100 and saved[-1] in err and f"checkpoint of iteration {last} " in err, (saved, err)
    assert os.path.exists(tmp_path / "ck" / saved[-1] / "manifest.json")


@pytest.mark.parametrize("extra", [[], ["--density", "0.2"]])
def test_data_matrix_writes_dense_with_known_spectrum_or_csr(tmp_path, extra):
    out = tmp_path / "m.h5"
    result = hpcml(2, "data", "matrix", "--rows", 31, "--cols", 7, "--spectrum", "geometric:5:0.5",
                   "--output", f"{out}:/A", *extra)
    assert result.returncode == 0, result
    with h5py.File(out, "r") as handle:
        if extra:
            assert handle["A"].attrs["shape"].tolist() == [31, 7] and len(handle["A/data"]) > 0
        else:
            s = np.linalg.svd(handle["A"][()], compute_uv=False)
            assert np.allclose(s, handle["A"].attrs["singular_values"], rtol=1e-12)
            assert np.allclose(s, np.geomspace(5, 0.5, 7), rtol=1e-12)


@pytest.mark.parametrize("argv,message", [
    (["lasso", "--input", "a.h5:/A", "--rhs", "a.h5:/b", "--lam", "nan"], "argument --lam: invalid float value: 'nan'"),
    (["solve", "--input", "a.h5:/A", "--prox", "box", "--lower", "nan"], "argument --lower: invalid float value: 'nan'"),
    (["cnn", "train", "--data", "d.h5", "--model", "voxnet", "--lr", "nan", "--output", "m.h5"], "argument --lr"),
    (["cnn", "train", "--data", "d.h5", "--model", "voxnet", "--lr", "inf", "--output", "m.h5"], "argument --lr"),
    (["cnn", "fuse", "a.h5", "b.h5", "--step", "2"], "argument --step: invalid grid step"),
    (["cnn", "fuse", "a.h5", "b.h5", "--step", "0.3"], "argument --step: invalid grid step"),
])
def test_meaningless_numbers_are_refused_in_one_line(tmp_path, argv, message):
    result = launch([sys.executable, "-m", "hpcml", *argv], cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result
    assert result.stderr.count("\n") == 1, result


def test_job_spec_that_is_not_utf8(tmp_path):
    spec = tmp_path / "job.toml"
    spec.write_bytes(b'workload = "svd"\n# caf\xe9\n')
    result = hpcml(2, "run", spec)
    assert result.returncode == 2 and "not UTF-8 text" in result.stderr, result
    assert result.stderr.count("hpcml: error") == 1, result


def test_damaged_hdf5_dataset_is_not_called_missing(tmp_path):
    import h5py

    write_matrix(f"{tmp_path}/a.h5:/A", np.ones((40, 4)))
    with h5py.File(tmp_path / "a.h5") as handle:
        header = h5py.h5o.get_info(handle["A"].id).addr
    with open(tmp_path / "a.h5", "r+b") as raw:   # overwrite the dataset's object header
        raw.seek(header)
        raw.write(b"\xff" * 16)
    result = hpcml(2, "stats", "--input", f"{tmp_path}/a.h5:/A")
    assert result.returncode == 2 and "cannot be read, the file is damaged" in result.stderr, result
    result = hpcml(2, "stats", "--input", f"{tmp_path}/a.h5:/B")
    assert result.returncode == 2 and "no dataset /B" in result.stderr, result


def test_sizes_beyond_memory_are_refused_before_allocating(tmp_path):
    import h5py

    # Datasets of 8 TB that take no disk: HDF5 allocates chunks only when written.
    with h5py.File(tmp_path / "huge.h5", "w") as handle:
        handle.create_dataset("A", shape=(10**7, 10**5), dtype="f8", chunks=(1000, 1000))
        handle.create_dataset("train/x", shape=(10**7, 12, 64, 64, 64), dtype="u1", chunks=(1, 1, 64, 64, 64))
        handle.create_dataset("train/y", shape=(10**7,), dtype="i8", chunks=(10**6,))
        handle.create_dataset("test/x", shape=(1, 12, 64, 64, 64), dtype="u1")
        handle["test/y"] = np.zeros(1, np.int64)
        handle["classes"] = np.array([b"a"])
        handle.attrs["kind"] = "voxels"
    for argv, message in (
            (["stats", "--input", f"{tmp_path}/huge.h5:/A"], "rows 0..5000000 needs 4000.0 GB on each of 2 ranks"),
            (["data", "matrix", "--rows", 10**7, "--cols", 10**5, "--output", f"{tmp_path}/m.h5:/A"],
             "data matrix 10000000 x 100000 needs 24000.0 GB"),
            # A rank reads its block of each batch, never the split: a batch can be too large.
            (["cnn", "train", "--data", tmp_path / "huge.h5", "--model", "voxnet", "--batch", 10**8,
              "--output", tmp_path / "m.h5"], "a rank's block of a global batch of 100000000 samples")):
        if argv[0] == "cnn" and importlib.util.find_spec("torch") is None:
            continue   # the cnn extra is not installed
        result = hpcml(2, *argv)
        assert result.returncode == 2 and message in result.stderr and "GB available" in result.stderr, result
        assert result.stderr.count("hpcml: error") == 1 and result.seconds < 60, result
