"""Exact collapsed Gibbs sampling for LDA at small K, vectorised.

:func:`gibbs_sweep` draws every token from its full conditional

    p(k) ~ (n_dk + alpha_k) (n_wk + beta) / (n_k + V beta)

as the textbook sampler does (:func:`hpcml.kernels.lda.dense_sweep`), so it
mixes per sweep as any exact sampler (tomotopy's among them), but at a
fraction of the cost per token:

* the document factor ``c_k = (n_dk + alpha_k) / (n_k + V beta)`` is kept
  for the current document and changes in two entries per token, so the
  weights of a token are one multiply-add per topic,
  ``q_k = c_k (n_wk + beta)``, a loop that LLVM vectorises (no division);
* the weights are summed in blocks of :data:`BLOCK` topics, and the draw
  walks the block sums first and then one block, about K/B + B/2 steps
  instead of K/2;
* the count row of the token ``AHEAD`` places on is prefetched.

The cost per token is O(K) with a small constant, which beats the O(1)
Metropolis-Hastings sampler (:func:`hpcml.kernels.lda.mh_sweep`) up to a
few hundred topics, and mixes faster at every K (bench/lda.py measures
both).  It takes the same state as ``mh_sweep``, including the word order
``zw`` (kept up to date) and the block ``ranges`` of the shared layout, so
the layouts run either sampler.

The random stream is the xorshift64* of :mod:`hpcml.kernels.lda`, one
uniform per token.
"""

import numpy as np
from numba import njit

from hpcml.kernels import JIT
from hpcml.kernels.lda import _check_state, _cursor_next, _prefetch, _uniform

#: Topics per block of the two-level draw.
BLOCK = 8
#: Tokens ahead whose count row is prefetched.
AHEAD = 4


@njit(**JIT)
def _gibbs_kernel(doc_ptr, lo, hi, words, z, nwk, nk, tpos, zw, alpha, beta, vbeta,
                  d0, d1, ndk, c, q, bsum, state):
    K = nk.shape[0]
    nb = (K + BLOCK - 1) // BLOCK
    fbeta = np.float32(beta)
    flat = nwk.reshape(-1)
    x = state[0]
    da, ia = _cursor_next(d0, lo[d0] - 1, lo, hi, d1) if d0 < d1 else (d1, 0)
    for _ in range(AHEAD):
        if da < d1:
            da, ia = _cursor_next(da, ia, lo, hi, d1)
    for d in range(d0, d1):
        if hi[d] == lo[d]:
            continue
        t0 = doc_ptr[d]
        t1 = doc_ptr[d + 1]
        for i in range(t0, t1):
            ndk[z[i]] += 1
        for k in range(K):
            c[k] = np.float32(ndk[k] + alpha[k]) / np.float32(nk[k] + vbeta)
        for i in range(lo[d], hi[d]):
            if da < d1:
                wa = np.int64(words[ia])
                for off in range(0, K, 32):
                    _prefetch(flat, wa * K + off)
                da, ia = _cursor_next(da, ia, lo, hi, d1)
            w = np.int64(words[i])
            s = np.int64(z[i])
            ndk[s] -= 1
            nwk[w, s] -= 1
            nk[s] -= 1
            c[s] = np.float32(ndk[s] + alpha[s]) / np.float32(nk[s] + vbeta)
            row = nwk[w]
            for k in range(K):
                q[k] = c[k] * (np.float32(row[k]) + fbeta)
            # q is padded with zeros to whole blocks: fixed-length block sums
            # vectorise.
            total = np.float32(0.0)
            for b in range(nb):
                acc = np.float32(0.0)
                for j in range(BLOCK):
                    acc += q[b * BLOCK + j]
                bsum[b] = acc
                total += acc
            x, u = _uniform(x)
            v = np.float32(u) * total
            # The block, then the topic in it, by counting the running sums
            # not above v: no branch to mispredict.
            b = 0
            run = np.float32(0.0)
            below = np.float32(0.0)
            for j in range(nb - 1):
                run += bsum[j]
                up = run <= v
                b += up
                below = run if up else below
            v -= below
            base = b * BLOCK
            t = base
            run = np.float32(0.0)
            for j in range(BLOCK - 1):
                run += q[base + j]
                t += run <= v
            t = min(t, K - 1)
            z[i] = t
            zw[tpos[i]] = t
            ndk[t] += 1
            nwk[w, t] += 1
            nk[t] += 1
            c[t] = np.float32(ndk[t] + alpha[t]) / np.float32(nk[t] + vbeta)
        for i in range(t0, t1):
            ndk[z[i]] = 0
    state[0] = x


def gibbs_sweep(doc_ptr, words, z, nwk, nk, alpha, beta, state, *, tpos, zw, d0=0, d1=None,
                scratch=None, ranges=None):
    """Resample the topics of documents ``d0:d1`` by exact collapsed Gibbs.

    Same arguments as :func:`hpcml.kernels.lda.mh_sweep` (``wptr`` and
    ``mh_steps`` are not needed): ``z``, ``nwk``, ``nk`` and the word order
    ``zw`` (at positions ``tpos``) are updated in place; ``ranges`` limits
    the tokens resampled in each document (the shared layout's blocks).
    """
    d1 = doc_ptr.shape[0] - 1 if d1 is None else d1
    _check_state(doc_ptr, words, z, nwk, nk, alpha, state, d0, d1)
    if tpos.shape[0] != words.shape[0] or zw.dtype != z.dtype:
        raise ValueError("tpos/zw do not match the corpus")
    if ranges is None:
        lo, hi = doc_ptr[:-1], doc_ptr[1:]
    else:
        lo, hi = ranges
        if (lo.dtype != np.int64 or hi.dtype != np.int64 or lo.shape != doc_ptr[1:].shape
                or hi.shape != lo.shape):
            raise TypeError("ranges must be two int64 arrays with one entry per document")
        if np.any(lo < doc_ptr[:-1]) or np.any(hi > doc_ptr[1:]) or np.any(lo > hi):
            raise ValueError("ranges must lie inside their documents")
    K = nk.shape[0]
    ndk = np.zeros(K, np.int32) if scratch is None else scratch
    nb = (K + BLOCK - 1) // BLOCK
    _gibbs_kernel(doc_ptr, lo, hi, words, z, nwk, nk, tpos, zw, alpha, float(beta),
                  float(beta) * nwk.shape[0], int(d0), int(d1), ndk, np.empty(K, np.float32), np.zeros(nb * BLOCK, np.float32),
                  np.empty(nb, np.float32), state)
