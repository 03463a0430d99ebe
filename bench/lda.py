"""LDA throughput and convergence: hpcml (1 and 2 ranks) vs tomotopy, side by side.

Draws one corpus shaped like a slice of NYTimes (20,000 documents, V = 20,000,
200 tokens per document, Zipf-like word frequencies) from a known LDA model,
then for each K trains every contender for the same number of iterations,
interleaved, and prints ratios taken in this run:

* tokens/s of hpcml over tomotopy (1 core; and 2 ranks vs 2 workers),
* joint log-likelihood per token after equal iterations (the same formula,
  computed from each contender's topic assignments),
* 2-rank speed-up, compute vs communication seconds per iteration, bytes
  exchanged, and peak memory per rank.

Usage::

    python bench/lda.py                      # full size, K = 100 and 1000
    python bench/lda.py --scale 0.1 --iterations 20 --topics 100
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hpcml.io.corpus import read_hdf5, write_hdf5  # noqa: E402
from hpcml.kernels import lda as kern  # noqa: E402
from hpcml.topics.synthetic import lda_corpus  # noqa: E402

ALPHA, BETA = 0.1, 0.01


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def joint_ll_per_token(doc_ptr, words, z, n_topics, n_words):
    """The joint log p(w, z) per token, the same formula for every contender."""
    alpha = np.full(n_topics, ALPHA)
    nwk = np.zeros((n_words, n_topics), np.int32)
    nk = np.zeros(n_topics, np.int64)
    kern.count_topics(doc_ptr, words, z, nwk, nk)
    ll = (kern.doc_log_likelihood(doc_ptr, z, alpha) + kern.word_log_likelihood(nwk, BETA)
          + kern.topic_log_normaliser(nk, BETA, n_words))
    return ll / words.shape[0]


def run_hpcml_worker(args):
    """Body of one hpcml run (1 rank in-process, or each rank under mpiexec)."""
    from hpcml.comm import Comm
    from hpcml.topics.lda import LDA
    comm = Comm.world() if args.worker_mpi else Comm.self_comm()
    from hpcml.io.corpus import read_hdf5_info
    n_docs, _, tptr, _ = read_hdf5_info(args.corpus)
    # Equal-token document ranges.
    cuts = np.searchsorted(tptr, np.linspace(0, tptr[-1], comm.size + 1))
    cuts[0], cuts[-1] = 0, n_docs
    corpus = read_hdf5(args.corpus, start=int(cuts[comm.rank]), stop=int(cuts[comm.rank + 1]))
    model = LDA(args.k, alpha=ALPHA, beta=BETA, mh_steps=args.mh_steps,
                sync_every=args.sync_every, seed=1).setup(corpus, comm)
    curve = []
    elapsed = 0.0
    for it in range(1, args.iterations + 1):
        comm.barrier()
        tic = time.perf_counter()
        rec = model.sweep()
        elapsed += time.perf_counter() - tic
        if it % args.eval_every == 0 or it == args.iterations:
            curve.append((it, elapsed, model.log_likelihood() / model.n_tokens))
        curve_rec = {"compute_s": rec["compute_s"], "comm_s": rec["comm_s"],
                     "bytes": rec["bytes"]}
        model.history.append(curve_rec)
    per_rank = comm.allgatherv(np.array([[h["compute_s"], h["comm_s"], h["bytes"]]
                                          for h in model.history]).reshape(1, -1, 3))
    mem = comm.allgatherv(np.array([[peak_rss_mb(), model.memory_bytes()["total"] / 2**20]]))
    if comm.rank == 0:
        return {"tokens_per_s": model.n_tokens * args.iterations / elapsed, "curve": curve,
                "per_rank": per_rank.tolist(), "mem": mem.tolist(),
                "bytes_per_token": model.memory_bytes()["bytes_per_token"],
                "bytes_per_cell": model.memory_bytes()["bytes_per_cell"]}
    return None


def run_hpcml(path, k, ranks, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--corpus", path,
           "--k", str(k), "--iterations", str(args.iterations),
           "--eval-every", str(args.eval_every), "--mh-steps", str(args.mh_steps),
           "--sync-every", str(args.sync_every)]
    if ranks > 1:
        cmd = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n", str(ranks)] + \
            cmd + ["--worker-mpi"]
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", PYTHONPATH=ROOT)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_tomotopy(doc_ptr, words, n_words, k, workers, args):
    import tomotopy as tp
    model = tp.LDAModel(k=k, alpha=ALPHA, eta=BETA, seed=1)
    names = [str(i) for i in range(n_words)]
    for d in range(doc_ptr.shape[0] - 1):
        ws = words[doc_ptr[d]:doc_ptr[d + 1]]
        if ws.size:
            model.add_doc([names[w] for w in ws])
    model.train(0, workers=workers)
    vocab_id = np.array([int(v) for v in model.used_vocabs], np.int64)
    scheme = tp.ParallelScheme.PARTITION if workers > 1 else tp.ParallelScheme.NONE
    curve = []
    elapsed = 0.0
    done = 0
    while done < args.iterations:
        step = min(args.eval_every, args.iterations - done)
        tic = time.perf_counter()
        model.train(step, workers=workers, parallel=scheme)
        elapsed += time.perf_counter() - tic
        done += step
        ptr = np.zeros(len(model.docs) + 1, np.int64)
        zs, ws = [], []
        for i, doc in enumerate(model.docs):
            zs.append(np.asarray(doc.topics, np.int64))
            ws.append(vocab_id[np.asarray(doc.words, np.int64)])
            ptr[i + 1] = ptr[i] + len(doc.words)
        z = np.concatenate(zs).astype(np.int32)
        w = np.concatenate(ws).astype(np.int32)
        curve.append((done, elapsed, joint_ll_per_token(ptr, w, z, k, n_words)))
    return {"tokens_per_s": words.shape[0] * args.iterations / elapsed, "curve": curve}


def summarise(k, results, n_tokens):
    h1, h2 = results.get("hpcml-1"), results.get("hpcml-2")
    t1, t2 = results.get("tomotopy-1"), results.get("tomotopy-2")
    print(f"\n=== K = {k}, {n_tokens / 1e6:.2f} M tokens ===")
    for name, r in results.items():
        c = r["curve"][-1]
        print(f"{name:>12}: {r['tokens_per_s'] / 1e6:7.2f} M tokens/s   "
              f"ll/token after {c[0]} it = {c[2]:.4f}   ({c[1]:.1f} s)")
    if h1 and t1:
        print(f"ratio hpcml-1 / tomotopy-1 tokens/s: {h1['tokens_per_s'] / t1['tokens_per_s']:.2f}x")
        d = (h1["curve"][-1][2] - t1["curve"][-1][2]) / abs(t1["curve"][-1][2]) * 100
        print(f"ll/token hpcml-1 vs tomotopy-1 at equal iterations: {d:+.2f}% "
              "(positive = hpcml higher)")
    if h2 and t2:
        print(f"ratio hpcml-2 / tomotopy-2 tokens/s: {h2['tokens_per_s'] / t2['tokens_per_s']:.2f}x")
    if h1 and h2:
        print(f"hpcml 2-rank speed-up over 1 rank: {h2['tokens_per_s'] / h1['tokens_per_s']:.2f}x")
        pr = np.array(h2["per_rank"])  # ranks x iterations x (compute, comm, bytes)
        comp, comm = pr[:, :, 0].mean(axis=0), pr[:, :, 1].mean(axis=0)
        print("hpcml-2 per iteration (mean over ranks): compute s / comm s / MB exchanged per rank")
        for it in range(pr.shape[1]):
            if it < 3 or it == pr.shape[1] - 1 or (it + 1) % 10 == 0:
                print(f"  it {it + 1:3d}: {comp[it]:7.3f} / {comm[it]:7.3f} / "
                      f"{pr[:, it, 2].mean() / 2**20:8.2f}")
        frac = comm.sum() / (comp.sum() + comm.sum())
        print(f"hpcml-2 communication share of iteration time: {100 * frac:.1f}%")
    for name in ("hpcml-1", "hpcml-2"):
        r = results.get(name)
        if r:
            mems = ", ".join(f"rank {i}: peak RSS {m[0]:.0f} MB (sampler state {m[1]:.0f} MB)"
                             for i, m in enumerate(r["mem"]))
            print(f"{name} memory: {mems}; {r['bytes_per_token']} B/token, "
                  f"{r['bytes_per_cell']} B/word-topic cell")
    print("log-likelihood per token vs time (s):")
    for name, r in results.items():
        print(f"  {name:>12}: " + "  ".join(f"{t:.1f}s:{ll:.3f}" for _, t, ll in r["curve"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of the 20,000 documents (V stays 20,000)")
    ap.add_argument("--topics", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--mh-steps", type=int, default=2)
    ap.add_argument("--sync-every", type=float, default=0.5)
    ap.add_argument("--contenders", nargs="+",
                    default=["hpcml-1", "tomotopy-1", "hpcml-2", "tomotopy-2"])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-mpi", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        out = run_hpcml_worker(args)
        if out is not None:
            print(json.dumps(out))
        return
    n_docs = max(10, int(20000 * args.scale))
    corpus, _, _ = lda_corpus(n_docs, 20000, 100, 200, alpha=ALPHA, beta=BETA, seed=0, zipf=1.0)
    doc_ptr, words = corpus.tokens()
    print(f"corpus: {n_docs} documents, V = 20000, {words.shape[0]} tokens; "
          f"{args.iterations} iterations each; all ratios from this run")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "corpus.h5")
        write_hdf5(path, corpus)
        for k in args.topics:
            results = {}
            for name in args.contenders:
                tool, n = name.split("-")
                if tool == "hpcml":
                    results[name] = run_hpcml(path, k, int(n), args)
                else:
                    results[name] = run_tomotopy(doc_ptr, words, 20000, k, int(n), args)
            summarise(k, results, words.shape[0])


if __name__ == "__main__":
    main()
