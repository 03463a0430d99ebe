"""hpcml.linalg.svd, PCA and TruncatedSVD against LAPACK and scikit-learn, on 1, 2 or 3 ranks.

Every case splits the rows unevenly and, with more than one rank, leaves the
last rank without rows.  Exits non-zero (an AssertionError) when a check fails.
"""

import hashlib
import sys

import mpmath
import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA as SkPCA
from sklearn.decomposition import TruncatedSVD as SkTruncatedSVD

from hpcml.comm import Comm, install_abort_hook
from hpcml.distmat import DistMatrix
from hpcml.errors import InputError
from hpcml.linalg import PCA, NotConverged, TruncatedSVD, choose_method, svd
from hpcml.linalg.pca import choose_pca_method
from hpcml.synthetic import dense_with_spectrum

install_abort_hook()   # a failed check on one rank ends the job at once
comm = Comm.world()
p, rank = comm.size, comm.rank
rng = np.random.default_rng(7)
EXACT = ("gram", "lanczos", "golub-kahan", "tsqr", "randomized")


def shard(G):
    """Uneven rows per rank; the last rank gets none when there are several."""
    m = G.shape[0]
    owners = max(p - 1, 1)
    cuts = np.linspace(0, m, owners + 1).astype(int)
    cuts = np.concatenate([cuts, np.full(p - owners, m)]).astype(int)
    cuts[1:owners] += np.arange(1, owners) % 2   # uneven, not equal blocks
    local = G[cuts[rank]:cuts[rank + 1]]
    return DistMatrix(local.tocsr() if sp.issparse(local) else local, comm)


def whole(local):
    return comm.allgatherv(np.ascontiguousarray(local))


def orthonormality(X):
    return np.abs(X.T @ X - np.eye(X.shape[1])).max()


def check_triplets(G, A, k, method, rel_tol, orth_tol=1e-10, **options):
    dense = (G.toarray() if sp.issparse(G) else G).astype(np.float64)
    U_ref, s_ref, Vt_ref = np.linalg.svd(dense, full_matrices=False)
    r = svd(A, k, method=method, compute_u=True, **options)
    where = f"{method} k={k} {A!r}"
    assert r.s.shape == (k,) and r.V.shape == (A.shape[1], k), where
    assert np.all(np.diff(r.s) <= 0), (where, r.s)
    assert np.max(np.abs(r.s - s_ref[:k]) / s_ref[:k]) <= rel_tol, (where, r.s - s_ref[:k])
    U = whole(r.U)
    assert U.shape == (A.shape[0], k)
    assert orthonormality(U) <= orth_tol and orthonormality(r.V) <= orth_tol, where
    # Singular vectors agree up to sign where the spectrum is well separated.
    assert np.abs(np.abs(np.sum(r.V * Vt_ref[:k].T, axis=0)) - 1).max() <= 100 * rel_tol, where
    assert np.abs(np.abs(np.sum(U * U_ref[:, :k], axis=0)) - 1).max() <= 100 * rel_tol, where
    # The residuals reported are the true ones.
    true = np.hypot(np.linalg.norm(dense @ r.V - U * r.s, axis=0), np.linalg.norm(dense.T @ U - r.V * r.s, axis=0))
    # (float32 products round at ~1e-7·σ₁, so the measured residuals do too.)
    floor = 1e-15 if A.dtype == np.float64 else 1e-5
    assert np.allclose(r.residuals, true, rtol=1e-3, atol=floor * s_ref[0]), where
    assert r.residuals.max() <= r.tol * s_ref[0] and r.n_converged == k, where
    assert r.matvecs > 0 and r.iterations >= 1
    # V is bit-identical on every rank.
    digests = comm.allgather_obj(hashlib.sha1(r.V.tobytes() + r.s.tobytes()).hexdigest())
    assert len(set(digests)) == 1, (where, digests)
    return r, s_ref


# -- well conditioned, dense and CSR, float64 and float32 -----------------------------------
n = 40
G = dense_with_spectrum(60 * p + 1, n, np.geomspace(10, 1, n), rng)
A = shard(G)
for method in EXACT:
    for k in (1, 5, n - 1):
        check_triplets(G, A, k, method, 1e-10)

S = sp.random(50 * p + 1, 30, density=0.3, format="csr", rng=rng, data_rvs=rng.standard_normal)
A_sparse = shard(S)
for method in EXACT:
    for k in (1, 4):
        check_triplets(S, A_sparse, k, method, 1e-10)

G32 = G.astype(np.float32)
for method in EXACT:
    check_triplets(G32, shard(G32), 3, method, 1e-5, orth_tol=1e-10)

# -- σ from 1 down to 1e-8 (then a tail at 1e-9..1e-10): the small values ------------------
# The reference is the exact spectrum of the rounded matrix, from a 50-digit
# eigensolve of HᵀH (the prescribed spectrum is off by the rounding of H).
#
# What a method can attain here, and so the bound: golub-kahan and tsqr are
# backward stable, i.e. they return the exact singular values of H + δH with
# ‖δH‖ ≤ c(m, n)·ε·‖H‖, so by Weyl |σ̂ᵢ − σᵢ| ≤ c·ε·σ₁ for every i.  lanczos
# works on HᵀH, whose own rounding floor is ε·σ₁²/σ (σ = 1e-8 would be lost
# completely, as gram shows below), but its σ̂ come from the Rayleigh–Ritz step
# on H itself: the error is the rounding of H V (again ≤ c·ε·σ₁) plus σ·θ²/2
# for a basis θ off the true subspace.  The rounding of each product Hᵀ(H v)
# that tilts the basis is its part outside the top 9 directions, which Hᵀ
# shrinks by σ₁₀: ≈ ε·σ₁·σ₁₀, over the gap σ₉² − σ₁₀² that is θ ≈ 2e-9 and
# σ₉·θ²/2 is negligible.  We take c = n, the usual linear
# growth of Householder and Lanczos rounding errors; independent of how the
# BLAS kernels order their sums (any order meets it), and LAPACK's own error
# on this matrix is of the same kind (measured 0.03–0.05 ε·σ₁ at σ ≤ 1e-4,
# over kernels and seeds).  The convergence tolerance 1e-10·σ adds to it.
spectrum = np.concatenate([np.geomspace(1, 1e-8, 9), np.geomspace(1e-9, 1e-10, 11)])
H = dense_with_spectrum(50 * p + 1, 20, spectrum, rng)
A_hard = shard(H)
mpmath.mp.dps = 50
exact = mpmath.matrix(H.tolist())
exact = np.sort([float(mpmath.sqrt(e)) for e in mpmath.eigsy(exact.T * exact, eigvals_only=True)])[::-1][:9]
bound = 1e-10 * exact + H.shape[1] * np.finfo(float).eps * exact[0]
assert np.all(np.abs(np.linalg.svd(H, compute_uv=False)[:9] - exact) <= bound)
for method in ("golub-kahan", "tsqr", "lanczos"):
    r = svd(A_hard, 9, method=method, compute_u=True)
    err = np.abs(r.s - exact)
    assert np.all(err <= bound), (method, err / exact)
    # Orthonormal to working precision (Householder QR inside TSQR: O(n ε)).
    assert orthonormality(whole(r.U)) <= 1e-10 and orthonormality(r.V) <= 1e-10, method
# gram squares the condition number: σ = 1e-8 is below its √ε floor.
try:
    svd(A_hard, 9, method="gram")
except NotConverged as exc:
    assert "gram converged" in str(exc)
else:
    raise AssertionError("gram resolved σ = 1e-8 through AᵀA")

# -- centring folded into the operator --------------------------------------------------------
mu = G.mean(axis=0)
C = G - mu
r = svd(A, 4, method="golub-kahan", mean=A.col_means(), compute_u=True)
s_c = np.linalg.svd(C, compute_uv=False)
assert np.max(np.abs(r.s - s_c[:4]) / s_c[:4]) <= 1e-10
assert orthonormality(whole(r.U)) <= 1e-10

# -- auto ---------------------------------------------------------------------------------------
assert choose_method((10**6, 200), 100, False)[0] == "tsqr"
assert choose_method((10**6, 10**5), 20, True)[0] == "lanczos"
assert choose_method((10**6, 40), 3, False)[0] == "tsqr"
assert choose_method((10**6, 40), 3, True)[0] == "lanczos"
assert choose_method((10**6, 200), 3, False)[0] == "lanczos"
assert choose_method((20000, 2000), 1000, False)[0] == "randomized"
r = svd(A, 2)
assert r.method in EXACT and r.reason

# -- errors: the same InputError on every rank -----------------------------------------------
for bad in (dict(k=0), dict(k=n + 1), dict(k=n, method="lanczos"), dict(k=2, method="qr"), dict(k=2, tol=-1.0)):
    options = {"method": "auto", **bad}
    try:
        svd(A, options.pop("k"), **options)
    except InputError as exc:
        assert exc.collective and "svd:" in str(exc), exc
    else:
        raise AssertionError(f"no error for {bad}")
bad = G.copy()
bad[37, 2] = np.nan
try:
    svd(shard(bad), 2)
except InputError as exc:
    assert "NaN or Inf in row 37" in str(exc), exc
else:
    raise AssertionError("NaN accepted")
try:
    svd(A, 5, method="golub-kahan", ncv=5)
except InputError as exc:
    assert "ncv = 5 must exceed k = 5" in str(exc), exc
else:
    raise AssertionError("ncv <= k accepted")
empty = DistMatrix(np.zeros((0, 3)), comm)
try:
    svd(empty, 1)
except InputError as exc:
    assert "empty" in str(exc)
else:
    raise AssertionError("empty matrix accepted")

# Non-convergence: everything on every rank, then --allow-partial keeps the converged ones.
slow = dense_with_spectrum(70 * p + 1, 60, np.linspace(1, 0.9, 60), rng)
A_slow = shard(slow)
try:
    svd(A_slow, 6, method="golub-kahan", max_iter=0, ncv=8)
except NotConverged as exc:
    assert exc.collective and "converged" in str(exc) and "of 6 triplets" in str(exc), exc
    assert exc.exit_code == 2
else:
    raise AssertionError("expected NotConverged")
r = svd(A_slow, 6, method="golub-kahan", max_iter=3, ncv=12, allow_partial=True)
assert len(r.s) == r.n_converged < 6 and np.all(r.converged)

# -- estimators against scikit-learn ----------------------------------------------------------
X = rng.standard_normal((40 * p + 3, 12)) @ rng.standard_normal((12, 12)) + 5.0
X_local = X[shard(X).row_offset:][:shard(X).local_rows]
for whiten in (False, True):
    ours = PCA(4, comm, whiten=whiten, method="golub-kahan")
    Y = whole(ours.fit_transform(X_local))
    ref = SkPCA(4, whiten=whiten, svd_solver="full").fit(X)
    Y_ref = ref.transform(X)
    signs = np.sign(np.sum(ours.components_ * ref.components_, axis=1))
    assert np.allclose(ours.components_ * signs[:, None], ref.components_, atol=1e-10)
    assert np.allclose(Y * signs, Y_ref, atol=1e-9)
    assert np.allclose(whole(ours.transform(X_local)) * signs, Y_ref, atol=1e-9)
    assert np.allclose(ours.explained_variance_, ref.explained_variance_, rtol=1e-10)
    assert np.allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-10)
    assert np.allclose(ours.singular_values_, ref.singular_values_, rtol=1e-10)
    assert np.allclose(ours.mean_, ref.mean_, rtol=1e-12)
    assert np.isclose(ours.noise_variance_, ref.noise_variance_, rtol=1e-8)
    assert ours.explained_variance_ratio_.sum() < 1   # over the total variance, not the top k

# auto on tall dense data takes the covariance route; the answer is the same.
assert choose_pca_method((130 * p + 1, 12), 4, False)[0] == "gram"
assert choose_pca_method((130 * p + 1, 12), 4, True)[0] == "lanczos"
assert choose_pca_method((10**6, 2000), 4, False)[0] == choose_method((10**6, 2000), 4, False)[0]
X2 = rng.standard_normal((130 * p + 1, 12)) @ rng.standard_normal((12, 12)) - 3.0
ours = PCA(4, comm).fit(X2[shard(X2).row_offset:][:shard(X2).local_rows])
ref = SkPCA(4, svd_solver="full").fit(X2)
assert np.allclose(np.abs(np.sum(ours.components_ * ref.components_, axis=1)), 1, atol=1e-9)
assert np.allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-10)

# Sparse input: PCA centres through the operator, the block stays CSR.
Xs = sp.random(40 * p + 3, 25, density=0.2, format="csr", rng=rng)
A_xs = shard(Xs)
pca = PCA(3, comm, method="lanczos").fit(A_xs)
assert A_xs.issparse
ref = SkPCA(3, svd_solver="full").fit(Xs.toarray())
assert np.allclose(pca.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-9)
assert np.allclose(np.abs(np.sum(pca.components_ * ref.components_, axis=1)), 1, atol=1e-9)

tsvd = TruncatedSVD(3, comm, method="lanczos")
Z = whole(tsvd.fit_transform(A_xs))
ref = SkTruncatedSVD(3, algorithm="arpack", random_state=0).fit(Xs)
signs = np.sign(np.sum(tsvd.components_ * ref.components_, axis=1))
assert np.allclose(tsvd.singular_values_, ref.singular_values_, rtol=1e-10)
assert np.allclose(tsvd.components_ * signs[:, None], ref.components_, atol=1e-9)
assert np.allclose(Z * signs, ref.transform(Xs), atol=1e-9)
assert np.allclose(tsvd.explained_variance_, ref.explained_variance_, rtol=1e-8)
assert np.allclose(tsvd.explained_variance_ratio_, ref.explained_variance_ratio_, rtol=1e-8)

# Lock-step: every rank took part in the same number of collectives.
calls = comm.allgather_obj(comm.stats.calls)
assert len(set(calls)) == 1, calls
print(f"ok {p}", file=sys.stderr)
