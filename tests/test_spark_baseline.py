"""The Spark baseline really runs Spark (local[2]) and agrees with LAPACK and scikit-learn."""

import numpy as np
import pytest
import scipy.sparse as sp

from conftest import needs_spark
from hpcml.baselines import spark as baseline
from hpcml.synthetic import dense_with_spectrum

pytestmark = needs_spark


@pytest.fixture(scope="module")
def session():
    with baseline.SparkBaseline(cores=2, driver_memory="1g") as spark:
        yield spark


def test_startup_is_timed(session):
    assert session.startup_s > 0 and session.master == "local[2]"


@pytest.mark.parametrize("sparse", [False, True])
def test_svd_matches_lapack(session, sparse):
    rng = np.random.default_rng(0)
    A = dense_with_spectrum(300, 20, np.geomspace(10, 1, 20), rng)
    A = sp.csr_matrix(np.where(np.abs(A) > 0.05, A, 0.0)) if sparse else A
    matrix, load_s = session.row_matrix(A)
    s, V, seconds = session.svd(matrix, 4)
    exact = np.linalg.svd(A.toarray() if sparse else A, compute_uv=False)[:4]
    assert np.allclose(s, exact, rtol=1e-8) and V.shape == (20, 4)
    assert load_s > 0 and seconds > 0


def test_pca_matches_covariance_eigenvectors(session):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((200, 6)) @ np.diag([5, 4, 3, 2, 1, 0.5]) + 3.0
    matrix, _ = session.row_matrix(A)
    components, ratio, _ = session.pca(matrix, 2)
    C = np.cov(A, rowvar=False)
    w, U = np.linalg.eigh(C)
    assert np.allclose(np.abs(components.T @ U[:, ::-1][:, :2]), np.eye(2), atol=1e-8)
    assert np.allclose(ratio, w[::-1][:2] / w.sum(), rtol=1e-8)


def test_lasso_matches_scikit_learn_objective(session):
    rng = np.random.default_rng(2)
    A = rng.standard_normal((400, 12))
    truth = np.zeros(12)
    truth[:3] = [2.0, -1.5, 1.0]
    b = A @ truth + 0.1 * rng.standard_normal(400)
    lam = 20.0
    x, intercept, _, _ = session.lasso(A, b, lam, max_iter=500, tol=1e-10)

    def objective(z):
        return 0.5 * np.sum((A @ z - b) ** 2) + lam * np.abs(z).sum()

    from sklearn.linear_model import Lasso
    reference = Lasso(alpha=lam / len(b), fit_intercept=False, tol=1e-12, max_iter=100000).fit(A, b)
    assert intercept == 0.0
    assert objective(x) <= objective(reference.coef_) * (1 + 1e-6)
    assert set(np.flatnonzero(np.abs(x) > 1e-6)) == set(np.flatnonzero(reference.coef_))
