import numpy as np
import pytest
import scipy.sparse as sp

from hpcml.kernels.normal import normal_product

pytestmark = pytest.mark.numerics


def reference_normal_product(rows, V):
    """Plain-Python AᵀAV over a list of (columns, values) rows."""
    n, k = V.shape
    out = [[0.0] * k for _ in range(n)]
    for cols, vals in rows:
        t = [sum(a * V[j, c] for j, a in zip(cols, vals)) for c in range(k)]
        for j, a in zip(cols, vals):
            for c in range(k):
                out[j][c] += a * t[c]
    return np.array(out)


def as_rows(A):
    if sp.issparse(A):
        csr = A.tocsr()
        return [(csr.indices[csr.indptr[i]:csr.indptr[i + 1]], csr.data[csr.indptr[i]:csr.indptr[i + 1]])
                for i in range(csr.shape[0])]
    return [(range(A.shape[1]), A[i]) for i in range(A.shape[0])]


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-4)])
@pytest.mark.parametrize("k", [None, 1, 3])
def test_normal_product_matches_reference(sparse, dtype, tol, k):
    rng = np.random.default_rng(3)
    A = sp.random(23, 11, density=0.4, format="csr", rng=rng) if sparse else rng.standard_normal((23, 11))
    A = A.astype(dtype)
    V = rng.standard_normal((11, k or 1))
    got = normal_product(A, V[:, 0] if k is None else V)
    want = reference_normal_product(as_rows(A), V.astype(dtype).astype(np.float64))
    assert got.dtype == dtype
    assert np.allclose(got.reshape(want.shape), want, rtol=tol, atol=tol * np.abs(want).max())


def test_normal_product_of_empty_block():
    assert np.array_equal(normal_product(np.zeros((0, 4)), np.ones(4)), np.zeros(4))


def test_normal_product_rejects_bad_input():
    with pytest.raises(TypeError):
        normal_product(np.ones((3, 2), dtype=np.int64), np.ones(2))
    with pytest.raises(ValueError):
        normal_product(np.ones((3, 2)), np.ones(3))
