"""Plain-Python references of the LDA kernels (same random stream, no Numba)."""

import math

import numpy as np

MASK = (1 << 64) - 1


class Stream:
    """xorshift64* on Python integers, bit-identical to the kernels' generator."""

    def __init__(self, state):
        self.x = int(state[0])

    def next(self):
        x = self.x
        x ^= x >> 12
        x = (x ^ (x << 25)) & MASK
        x ^= x >> 27
        self.x = x
        return (x * 0x2545F4914F6CDD1D) & MASK

    def uniform(self):
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)


def accept(rng, num, den):
    return rng.uniform() * den < num


def alias_draw(v, prob, alias, K):
    j = min(int(v), K - 1)
    return j if v - j < prob[j] else int(alias[j])


def mh_sweep(doc_ptr, words, z, nwk, nk, alpha, prob, alias, beta, steps, wptr, tpos, zw,
             state, ranges=None):
    rng = Stream(state)
    K = len(nk)
    V = nwk.shape[0]
    asum = float(alpha.sum())
    lo, hi = (doc_ptr[:-1], doc_ptr[1:]) if ranges is None else ranges
    # The tokens resampled, in order: lo[d]:hi[d] of each document.
    seq = [i for d in range(len(doc_ptr) - 1) for i in range(lo[d], hi[d])]
    # Word-proposal uniforms are drawn AHEAD tokens early in that order (the
    # kernel uses them to prefetch); the stream order must be the same.
    ahead = 4
    pre = {}
    for c in range(min(ahead, len(seq))):
        pre[seq[c]] = [rng.uniform() for _ in range(steps)]
    c = 0
    for d in range(len(doc_ptr) - 1):
        if hi[d] == lo[d]:
            continue
        t0, t1 = doc_ptr[d], doc_ptr[d + 1]
        L = t1 - t0
        ndk = np.bincount(z[t0:t1], minlength=K)
        for i in range(lo[d], hi[d]):
            if c + ahead < len(seq):
                pre[seq[c + ahead]] = [rng.uniform() for _ in range(steps)]
            c += 1
            w, s0 = words[i], int(z[i])
            ndk[s0] -= 1
            nwk[w, s0] -= 1
            nk[s0] -= 1

            def pi(k):
                return (ndk[k] + alpha[k]) * (nwk[w, k] + beta) / (nk[k] + V * beta)
            s, ps = s0, pi(s0)
            nw = wptr[w + 1] - wptr[w]
            for step in range(steps):
                r = rng.uniform() * (L + asum)
                t = int(z[t0 + int(r)]) if r < L else alias_draw((r - L) * (K / asum), prob, alias, K)
                pt = pi(t)
                if accept(rng, pt * (ndk[s] + alpha[s]), ps * (ndk[t] + alpha[t])):
                    s, ps = t, pt
                z[i] = zw[tpos[i]] = s
                r = pre[i][step] * (nw + K * beta)
                t = int(zw[wptr[w] + int(r)]) if r < nw else min(int((r - nw) * (1.0 / beta)), K - 1)
                pt = pi(t)
                if accept(rng, pt * (nwk[w, s] + beta), ps * (nwk[w, t] + beta)):
                    s, ps = t, pt
                z[i] = zw[tpos[i]] = s
            z[i] = s
            zw[tpos[i]] = s
            ndk[s] += 1
            nwk[w, s] += 1
            nk[s] += 1
    state[0] = rng.x


def dense_sweep(doc_ptr, words, z, nwk, nk, alpha, beta, state):
    rng = Stream(state)
    K, V = len(nk), nwk.shape[0]
    for d in range(len(doc_ptr) - 1):
        t0, t1 = doc_ptr[d], doc_ptr[d + 1]
        ndk = np.bincount(z[t0:t1], minlength=K)
        for i in range(t0, t1):
            w, s = words[i], z[i]
            ndk[s] -= 1
            nwk[w, s] -= 1
            nk[s] -= 1
            p = [(ndk[k] + alpha[k]) * (nwk[w, k] + beta) / (nk[k] + V * beta) for k in range(K)]
            cdf = np.cumsum(p)
            u = rng.uniform() * cdf[-1]
            t = 0
            while t < K - 1 and cdf[t] <= u:
                t += 1
            z[i] = t
            ndk[t] += 1
            nwk[w, t] += 1
            nk[t] += 1
    state[0] = rng.x


def joint_log_likelihood(doc_ptr, words, z, alpha, beta, V):
    """log p(w, z | alpha, beta) straight from the Dirichlet-multinomial formula."""
    K = len(alpha)
    nwk = np.zeros((V, K))
    np.add.at(nwk, (words, z), 1)
    nk = nwk.sum(0)
    ll = sum(math.lgamma(V * beta) - math.lgamma(nk[k] + V * beta)
             + sum(math.lgamma(nwk[v, k] + beta) - math.lgamma(beta) for v in range(V))
             for k in range(K))
    for d in range(len(doc_ptr) - 1):
        ndk = np.bincount(z[doc_ptr[d]:doc_ptr[d + 1]], minlength=K)
        if ndk.sum() == 0:
            continue
        ll += math.lgamma(alpha.sum()) - math.lgamma(ndk.sum() + alpha.sum())
        ll += sum(math.lgamma(ndk[k] + alpha[k]) - math.lgamma(alpha[k]) for k in range(K))
    return ll


def progressive_init(doc_ptr, words, nwk, nk, alpha, prob, alias, beta, steps, wptr, tpos,
                     zw, state, smooth, n_after=0):
    """Sequential initialisation: each token from MH against the tokens placed before
    (plus the unplaced ones, ``n_after`` of later ranks included, spread evenly,
    weighted by ``smooth``); ``zw`` is the word order, earlier ranks' part filled."""
    rng = Stream(state)
    K, V, N = len(nk), nwk.shape[0], len(words) + n_after
    asum = float(alpha.sum())
    z = np.zeros(len(words), np.int64)
    # The word draws' uniforms come AHEAD tokens early, as in mh_sweep.
    ahead, n = 4, len(words)
    pre = {j: [rng.uniform() for _ in range(1 + steps)] for j in range(min(ahead, n))}

    def word_draw(w, nw, u):
        r = u * (nw + K * beta)
        return int(zw[wptr[w] + int(r)]) if r < nw else min(int((r - nw) * (1.0 / beta)), K - 1)

    for d in range(len(doc_ptr) - 1):
        t0, t1 = doc_ptr[d], doc_ptr[d + 1]
        ndk = np.zeros(K, np.int64)
        for i in range(t0, t1):
            if i + ahead < n:
                pre[i + ahead] = [rng.uniform() for _ in range(1 + steps)]
            w = words[i]
            nw, L = tpos[i] - wptr[w], i - t0
            bd = smooth * (t1 - i) / K
            bw = smooth * (wptr[w + 1] - tpos[i]) / K
            bk = smooth * (N - i) / K

            def pi(k):
                return ((ndk[k] + bd + alpha[k]) * (nwk[w, k] + bw + beta)
                        / (nk[k] + bk + V * beta))
            s = word_draw(w, nw, pre[i][0])
            ps = pi(s)
            for step in range(steps):
                r = rng.uniform() * (L + asum)
                t = int(z[t0 + int(r)]) if r < L else alias_draw((r - L) * (K / asum), prob, alias, K)
                pt = pi(t)
                if accept(rng, pt * (ndk[s] + alpha[s]), ps * (ndk[t] + alpha[t])):
                    s, ps = t, pt
                t = word_draw(w, nw, pre[i][1 + step])
                pt = pi(t)
                if accept(rng, pt * (nwk[w, s] + beta), ps * (nwk[w, t] + beta)):
                    s, ps = t, pt
            z[i] = zw[tpos[i]] = s
            ndk[s] += 1
            nwk[w, s] += 1
            nk[s] += 1
    state[0] = rng.x
    return z, zw


def gibbs_sweep(doc_ptr, words, z, nwk, nk, alpha, beta, state, block=8, ranges=None):
    """Exact Gibbs as hpcml.kernels.lda_gibbs draws it: float32 weights
    c_k (n_wk + beta) with c_k = (n_dk + alpha_k) / (n_k + V beta), summed in
    blocks of ``block`` topics; the uniform picks the block, then the topic."""
    f = np.float32
    rng = Stream(state)
    K, V = len(nk), nwk.shape[0]
    lo, hi = (doc_ptr[:-1], doc_ptr[1:]) if ranges is None else ranges
    nb = (K + block - 1) // block
    for d in range(len(doc_ptr) - 1):
        t0, t1 = doc_ptr[d], doc_ptr[d + 1]
        ndk = np.bincount(z[t0:t1], minlength=K)
        for i in range(lo[d], hi[d]):
            w, s = words[i], int(z[i])
            ndk[s] -= 1
            nwk[w, s] -= 1
            nk[s] -= 1
            c = [f(ndk[k] + alpha[k]) / f(nk[k] + V * beta) for k in range(K)]
            q = [c[k] * (f(nwk[w, k]) + f(beta)) for k in range(K)] + [f(0)] * (nb * block - K)
            bsum = [f(0)] * nb
            for b in range(nb):
                for j in range(block):
                    bsum[b] = f(bsum[b] + q[b * block + j])
            total = f(0)
            for b in range(nb):
                total = f(total + bsum[b])
            v = f(rng.uniform()) * total
            # The block: the running block sums not above v; then in it.
            run, below, b = f(0), f(0), 0
            for j in range(nb - 1):
                run = f(run + bsum[j])
                if run <= v:
                    b, below = b + 1, run
            v = f(v - below)
            t, run = b * block, f(0)
            for j in range(block - 1):
                run = f(run + q[b * block + j])
                t += run <= v
            t = min(t, K - 1)
            z[i] = t
            ndk[t] += 1
            nwk[w, t] += 1
            nk[t] += 1
    state[0] = rng.x
