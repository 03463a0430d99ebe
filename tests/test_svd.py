"""hpcml.linalg under real mpiexec: the library checks (tests/mpi/check_svd.py) and the CLI."""

import json

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from conftest import RANKS, hpcml, mpi_script
from hpcml.io.hdf5 import write_matrix
from hpcml.synthetic import dense_with_spectrum

pytestmark = [pytest.mark.mpi, pytest.mark.numerics]


@pytest.mark.parametrize("ranks", RANKS)
def test_svd_pca_against_lapack_and_sklearn(ranks):
    mpi_script(ranks, "check_svd.py", timeout=240)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("svd")
    rng = np.random.default_rng(5)
    A = dense_with_spectrum(3 * 50 + 1, 20, np.geomspace(5, 0.5, 20), rng)
    write_matrix(f"{folder}/in.h5:/A", A)
    bad = A.copy()
    bad[101, 4] = np.inf
    write_matrix(f"{folder}/in.h5:/inf", bad)
    write_matrix(f"{folder}/in.h5:/empty", np.zeros((0, 4)))
    S = sp.random(3 * 40 + 1, 30, density=0.2, format="csr", rng=rng)
    write_matrix(f"{folder}/in.h5:/S", S)
    return folder, A, S.toarray()


@pytest.mark.parametrize("method", ["tsqr", "golub-kahan"])
def test_svd_command_writes_triplets(data, method):
    folder, A, _ = data
    out = folder / f"svd-{method}.h5"
    result = hpcml(3, "svd", "--input", f"{folder}/in.h5:/A", "--k", 4, "--method", method,
                   "--compute-u", "--output", out, "--json")
    assert result.returncode == 0, result
    summary = json.loads(result.stdout)
    U_ref, s_ref, Vt_ref = np.linalg.svd(A, full_matrices=False)
    assert summary["method"] == method and summary["converged"] == 4
    with h5py.File(out, "r") as handle:
        s, V, U = handle["s"][()], handle["V"][()], handle["U"][()]
        assert np.allclose(s, s_ref[:4], rtol=1e-10)
        assert U.shape == (A.shape[0], 4)
        assert np.abs(U.T @ U - np.eye(4)).max() < 1e-10
        assert np.allclose(A @ V, U * s, atol=1e-10)
        assert handle["residuals"].shape == (4,)
        assert handle.attrs["method"] == method and handle.attrs["ranks"] == 3
        assert set(json.loads(handle.attrs["timings"])) >= {"compute_s", "comm_s", "io_s"}


def test_svd_centred_and_pca_of_sparse_input(data):
    folder, _, S = data
    out = folder / "pca.h5"
    result = hpcml(2, "pca", "--input", f"{folder}/in.h5:/S", "--k", 3, "--scores", "--output", out)
    assert result.returncode == 0, result
    C = S - S.mean(axis=0)
    _, s_ref, Vt_ref = np.linalg.svd(C, full_matrices=False)
    with h5py.File(out, "r") as handle:
        assert np.allclose(handle["s"][()], s_ref[:3], rtol=1e-10)
        ratio = s_ref[:3] ** 2 / np.sum(s_ref ** 2)
        assert np.allclose(handle["explained_variance_ratio"][()], ratio, rtol=1e-10)
        scores = handle["scores"][()]
        assert np.allclose(np.abs(scores), np.abs(C @ Vt_ref[:3].T), atol=1e-10)
    result = hpcml(2, "svd", "--input", f"{folder}/in.h5:/S", "--k", 3, "--center", "--json")
    assert result.returncode == 0, result
    assert np.allclose(json.loads(result.stdout)["s"], s_ref[:3], rtol=1e-10)


@pytest.mark.parametrize("args,message", [
    (["--input", "in.h5:/A", "--k", 21], "need 1 <= k <= min(m, n) = 20"),
    (["--input", "in.h5:/A", "--k", 20, "--method", "lanczos"], "k = min(m, n) = 20 (every triplet) needs method gram"),
    (["--input", "in.h5:/inf", "--k", 2], "NaN or Inf in row 101"),
    (["--input", "in.h5:/empty", "--k", 1], "the matrix is empty"),
    (["--input", "in.h5:/A", "--k", 2, "--method", "qr"], "invalid choice: 'qr'"),
    (["--input", "in.h5:/S", "--k", 3, "--method", "golub-kahan", "--max-iter", 0, "--tol", 1e-14],
     "golub-kahan converged"),
])
def test_bad_input_exits_2_with_one_line(data, args, message):
    folder, _, _ = data
    result = hpcml(3, "svd", *args, cwd=folder, timeout=60)
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("hpcml: error:"), result


@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize("shape,k", [((30, 50), 3), ((30, 50), 20), ((2, 50), 1)])
def test_default_method_on_wide_matrices(tmp_path, ranks, shape, k):
    """auto never picks TSQR for m < n (it factors tall matrices); 2 x 50 at 3 ranks leaves a rank empty."""
    A = np.random.default_rng(sum(shape) + k).standard_normal(shape)
    write_matrix(f"{tmp_path}/w.h5:/W", A)
    result = hpcml(ranks, "svd", "--input", f"{tmp_path}/w.h5:/W", "--k", k, "--json")
    assert result.returncode == 0, result
    summary = json.loads(result.stdout)
    s_ref = np.linalg.svd(A, compute_uv=False)[:k]
    assert summary["method"] != "tsqr" and summary["converged"] == k
    # Each method stops at residual ≤ 1e-10·σ₁, so σ is within that of the truth.
    assert np.max(np.abs(np.array(summary["s"]) - s_ref)) <= 1e-10 * s_ref[0]


@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize("method", ["auto", "lanczos", "golub-kahan"])
def test_whitening_a_component_without_variance_is_refused(tmp_path, ranks, method):
    """Two constant columns: the centred data has rank 2, a third whitened score would be 0/0."""
    X = np.random.default_rng(2).standard_normal((41, 4))
    X[:, 2], X[:, 3] = 3.0, -1.0
    write_matrix(f"{tmp_path}/x.h5:/X", X)
    args = ["pca", "--input", f"{tmp_path}/x.h5:/X", "--whiten", "--scores", "--method", method]
    result = hpcml(ranks, *args, "--k", 3, "--output", tmp_path / "bad.h5")
    assert result.returncode == 2 and "component 3 has no variance" in result.stderr, result
    assert not (tmp_path / "bad.h5").exists()
    result = hpcml(ranks, *args, "--k", 2, "--output", tmp_path / "ok.h5")
    assert result.returncode == 0, result
    with h5py.File(tmp_path / "ok.h5") as handle:
        np.testing.assert_allclose(handle["scores"][()].std(axis=0, ddof=1), 1.0, rtol=1e-8)


@pytest.mark.parametrize("ranks", RANKS)
@pytest.mark.parametrize("shape,k", [((1, 40), 1), ((40, 1), 1), ((30, 50), 30), ((61, 20), 20)])
def test_every_triplet_of_one_row_one_column_and_k_equal_min(tmp_path, ranks, shape, k):
    """k = min(m, n) takes TSQR (tall) or the Gram matrix (wide); one row at 3 ranks leaves two empty."""
    A = np.random.default_rng(sum(shape)).standard_normal(shape)
    write_matrix(f"{tmp_path}/a.h5:/A", A)
    result = hpcml(ranks, "svd", "--input", f"{tmp_path}/a.h5:/A", "--k", k, "--json")
    assert result.returncode == 0, result
    summary = json.loads(result.stdout)
    s_ref = np.linalg.svd(A, compute_uv=False)
    assert summary["method"] == ("tsqr" if shape[0] >= shape[1] else "gram")
    # Both stop at residual ≤ 1e-10·σ₁ (gram squares the condition number: these are well conditioned).
    assert np.max(np.abs(np.array(summary["s"]) - s_ref[:k])) <= 1e-10 * s_ref[0]


@pytest.mark.parametrize("ranks", RANKS)
def test_rank_deficient_matrix_by_the_default_method(tmp_path, ranks):
    """Rank 3 of 20 columns: the zero singular values come out at the rounding floor."""
    rng = np.random.default_rng(11)
    A = rng.standard_normal((61, 3)) @ rng.standard_normal((3, 20))
    write_matrix(f"{tmp_path}/d.h5:/A", A)
    result = hpcml(ranks, "svd", "--input", f"{tmp_path}/d.h5:/A", "--k", 5, "--json")
    assert result.returncode == 0, result
    s = np.array(json.loads(result.stdout)["s"])
    s_ref = np.linalg.svd(A, compute_uv=False)[:5]
    # Backward stable (TSQR): |σ̂ − σ| ≤ c·ε·σ₁ by Weyl, c = n as in check_svd.py.
    assert np.max(np.abs(s - s_ref)) <= A.shape[1] * np.finfo(float).eps * s_ref[0]
