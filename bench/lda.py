"""LDA throughput and convergence: hpcml (1 and 2 ranks) vs tomotopy, side by side.

For each K draws a corpus from a known LDA model with K true topics (by
default shaped like a slice of NYTimes: 20,000 documents, V = 20,000, 200
tokens per document, Zipf-like word frequencies; ``--docs``, ``--words``,
``--doc-length``), then trains every contender for the same number of
iterations with the same priors, interleaved, and prints ratios taken in
this run:

* tokens/s of hpcml over tomotopy (1 core; and 2 ranks vs 2 workers), and
  the sampler hpcml's ``--sampler`` (default auto) chose at that K,
* topic recovery: mean cosine of the true topics to the estimated ones
  after Hungarian matching, the same formula for every contender,
* joint log-likelihood per token after equal iterations (the same formula,
  computed from each contender's topic assignments),
* held-out perplexity by document completion (10% more documents drawn
  from the same model; one evaluator, hpcml.topics.model.TopicModel.perplexity,
  fed each contender's word-topic counts),
* 2-rank speed-up, compute vs communication seconds per iteration, bytes
  exchanged, and peak memory per rank (``--layout``: the ranks share the
  counts, or each holds a copy and they exchange changes),
* with ``spark-online``/``spark-em`` among the contenders (pyspark
  installed): Spark ML LDA in local[2] on a smaller corpus (``--spark-scale``)
  for several ``maxIter``, against hpcml at 2 ranks on that corpus: the time
  each needs to reach Spark's best held-out perplexity.

tokens/s counts the sweeps, as tomotopy's figure does (its ``train(0)``
initialisation is not timed); hpcml's figure with its initialisation
(``--init``) is printed beside it, and the time axes of the curves include
it.  The joint log-likelihood of a sample is not a convergence score by
itself: a state can sit above the posterior's typical level (progressive
initialisation does at first), so read it with the perplexity.

With ``--large K V`` it also trains hpcml alone (one rank) with K topics
on a corpus of V words (``--large-docs`` documents of ``--doc-length``
tokens, 200 true topics) and prints its tokens/s, peak RSS and the bytes of
its word-topic counts against the dense V x K table.

Usage::

    python bench/lda.py                      # full size, K = 100 and 1000
    python bench/lda.py --docs 4000 --words 5000 --doc-length 250 --topics 20 50 100 1000 \
        --iterations 50 --repeats 3 --contenders hpcml-1 tomotopy-1
    python bench/lda.py --topics --large 10000 100000 --large-docs 20000 --iterations 10
    python bench/lda.py --scale 0.1 --iterations 20 --topics 100
    python bench/lda.py --iterations 20 --topics 100 --repeats 3   # medians of 3 runs
    python bench/lda.py --topics 100 --contenders hpcml-2 spark-online spark-em
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
from hpcml.topics.corpus import load_corpus  # noqa: E402
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


def perplexity(nwk, held):
    """Held-out perplexity of word-topic counts, the same evaluator for all (one process)."""
    from hpcml.comm import Comm
    from hpcml.topics.model import TopicModel
    model = TopicModel(nwk, ALPHA, BETA, Comm.self_comm())
    return model.perplexity(held, seed=7, sweeps=20, mh_steps=2)


def matched_cosine(phi_true, phi_est):
    """Mean cosine of the true topics to the estimated ones after Hungarian
    matching (min(K_true, K) pairs)."""
    from scipy.optimize import linear_sum_assignment
    a = phi_true / np.linalg.norm(phi_true, axis=1, keepdims=True)
    b = phi_est / np.linalg.norm(phi_est, axis=1, keepdims=True)
    cos = a @ b.T
    rows, cols = linear_sum_assignment(-cos)
    return float(cos[rows, cols].mean())


def topics_of(nwk):
    """Posterior mean topic-word distributions (K, V) of V x K counts."""
    return (nwk.T + BETA) / (nwk.sum(axis=0)[:, None] + BETA * nwk.shape[0])


def run_hpcml_worker(args):
    """Body of one hpcml run (1 rank in-process, or each rank under mpiexec)."""
    from hpcml.comm import Comm
    from hpcml.topics.lda import LDA
    comm = Comm.world() if args.worker_mpi else Comm.self_comm()
    corpus, _ = load_corpus(args.corpus, comm)  # each rank its share of the tokens
    evaluate = args.eval_every > 0
    held = read_hdf5(args.heldout) if comm.rank == 0 and evaluate else None
    model = LDA(args.k, alpha=ALPHA, beta=BETA, mh_steps=args.mh_steps,
                sync_every=args.sync_every, seed=1, init=args.init, layout=args.layout,
                sampler=args.sampler, word_rows=args.word_rows)
    model.setup(corpus, comm)
    # Initialisation is training time: the slowest rank's.
    init_s = comm.allreduce_scalar(model.init_s, "max")
    elapsed = init_s
    curve = []
    for it in range(1, args.iterations + 1):
        comm.barrier()
        tic = time.perf_counter()
        model.fit(it, ll_every=0)  # one more sweep, timed alone
        elapsed += time.perf_counter() - tic
        if not evaluate:
            continue
        if it % args.eval_every == 0 or it == args.iterations:
            ll = model.log_likelihood() / model.n_tokens
            ppl = perplexity(model.word_topic(), held) if comm.rank == 0 else 0.0
            curve.append((it, elapsed, ll, ppl))
    if not evaluate:
        curve.append((args.iterations, elapsed, model.log_likelihood() / model.n_tokens,
                      float("nan")))
    cosine = float("nan")
    if evaluate and comm.rank == 0:
        cosine = matched_cosine(np.load(args.phi), topics_of(model.word_topic()))
    per_rank = comm.allgatherv(np.array([[h["compute_s"], h["comm_s"], h["bytes"]]
                                          for h in model.history]).reshape(1, -1, 3))
    state = model.memory_bytes()
    mem = comm.allgatherv(np.array([[peak_rss_mb(), state["total"] / 2**20,
                                     state["shared"] / 2**20]]))
    shared = model.shared
    counts_bytes = int(model.nwk.nbytes)
    model.close()
    if comm.rank == 0:
        return {"tokens_per_s": model.n_tokens * args.iterations / (elapsed - init_s),
                "shared": shared,
                "tokens_per_s_with_init": model.n_tokens * args.iterations / elapsed,
                "curve": curve,
                "per_rank": per_rank.tolist(), "mem": mem.tolist(),
                "bytes_per_token": state["bytes_per_token"],
                "bytes_per_cell": state["bytes_per_cell"], "init_s": init_s,
                "sampler": model.sampler, "sparse_rows": model.sparse_rows, "cosine": cosine,
                "counts_bytes": counts_bytes, "n_tokens": model.n_tokens}
    return None


def initial_topics(init, sampler, k):
    """hpcml's --init: "auto" starts the exact Gibbs sampler from random
    topics (as tomotopy) and MH from the progressive start it needs at large K."""
    from hpcml.topics.lda import choose_sampler
    if init != "auto":
        return init
    return "random" if choose_sampler(sampler, k) == "gibbs" else "progressive"


def run_hpcml(path, k, ranks, args, eval_every=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--corpus", path,
           "--heldout", path.replace(".h5", "-held.h5"), "--phi", path.replace(".h5", "-phi.npy"),
           "--k", str(k), "--iterations", str(args.iterations),
           "--eval-every", str(args.eval_every if eval_every is None else eval_every),
           "--mh-steps", str(args.mh_steps),
           "--sync-every", str(args.sync_every), "--init", initial_topics(args.init, args.sampler, k),
           "--layout", args.layout,
           "--sampler", args.sampler, "--word-rows", args.word_rows]
    if ranks > 1:
        cmd = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n", str(ranks)] + \
            cmd + ["--worker-mpi"]
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", PYTHONPATH=ROOT)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_tomotopy(doc_ptr, words, n_words, k, workers, args, held, phi):
    import tomotopy as tp
    model = tp.LDAModel(k=k, alpha=ALPHA, eta=BETA, seed=1)
    # tomotopy re-estimates alpha every 10 iterations by default; hpcml's
    # side keeps the priors fixed, so tomotopy does too: the same model.
    model.optim_interval = 0
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
        nwk = np.zeros((n_words, k), np.int32)
        kern.count_topics(ptr, w, z, nwk, np.zeros(k, np.int64))
        curve.append((done, elapsed, joint_ll_per_token(ptr, w, z, k, n_words),
                      perplexity(nwk, held)))
    return {"tokens_per_s": words.shape[0] * args.iterations / elapsed, "curve": curve,
            "cosine": matched_cosine(phi, topics_of(nwk))}


def median_run(runs):
    """The run with the median tokens/s (the lower middle one of an even
    count), with every run's tokens/s attached."""
    ordered = sorted(runs, key=lambda r: r["tokens_per_s"])
    return dict(ordered[(len(ordered) - 1) // 2], all_tokens_per_s=[r["tokens_per_s"] for r in runs])


def summarise(k, results, n_tokens):
    h1, h2 = results.get("hpcml-1"), results.get("hpcml-2")
    t1, t2 = results.get("tomotopy-1"), results.get("tomotopy-2")
    print(f"\n=== K = {k}, {n_tokens / 1e6:.2f} M tokens ===")
    for name, r in results.items():
        c = r["curve"][-1]
        init = (f" ({r['tokens_per_s_with_init'] / 1e6:.2f} with init; sampler {r['sampler']}"
                f"{', sparse rows' if r['sparse_rows'] else ''})"
                if "tokens_per_s_with_init" in r else "")
        print(f"{name:>12}: {r['tokens_per_s'] / 1e6:7.2f} M tokens/s{init}   "
              f"ll/token after {c[0]} it = {c[2]:.4f}   held-out perplexity {c[3]:.1f}   "
              f"recovery {r['cosine']:.4f}   ({c[1]:.1f} s)")
        if len(r["all_tokens_per_s"]) > 1:
            print(" " * 14 + "tokens/s of each run: " + ", ".join(
                f"{v / 1e6:.2f} M" for v in r["all_tokens_per_s"]))
    if h1 and t1:
        print(f"ratio hpcml-1 / tomotopy-1 tokens/s: {h1['tokens_per_s'] / t1['tokens_per_s']:.2f}x "
              f"({h1['tokens_per_s_with_init'] / t1['tokens_per_s']:.2f}x counting hpcml's "
              "initialisation; tomotopy's is not timed)")
        d = (h1["curve"][-1][2] - t1["curve"][-1][2]) / abs(t1["curve"][-1][2]) * 100
        print(f"ll/token hpcml-1 vs tomotopy-1 at equal iterations: {d:+.2f}% "
              "(positive = hpcml higher)")
        p = h1["curve"][-1][3] / t1["curve"][-1][3]
        print(f"held-out perplexity hpcml-1 / tomotopy-1 at equal iterations: {p:.4f} "
              "(below 1 = hpcml better)")
        print(f"topic recovery hpcml-1 / tomotopy-1 at equal iterations: "
              f"{h1['cosine'] / t1['cosine']:.4f} (above 1 = hpcml better)")
    if t1 and t2:
        print(f"tomotopy 2 workers / 1 worker tokens/s: "
              f"{t2['tokens_per_s'] / t1['tokens_per_s']:.2f}x (what this machine allows)")
    if h2 and t2:
        print(f"ratio hpcml-2 / tomotopy-2 tokens/s: {h2['tokens_per_s'] / t2['tokens_per_s']:.2f}x")
    if h1 and h2:
        print(f"hpcml 2-rank speed-up over 1 rank: {h2['tokens_per_s'] / h1['tokens_per_s']:.2f}x "
              f"({h2['tokens_per_s_with_init'] / h1['tokens_per_s_with_init']:.2f}x with "
              "initialisation); "
              f"ll/token 2 vs 1 rank: {(h2['curve'][-1][2] / h1['curve'][-1][2] - 1) * -100:+.2f}%")
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
            mems = ", ".join(f"rank {i}: peak RSS {m[0]:.0f} MB (sampler state {m[1]:.0f} MB"
                             + (f", {m[2]:.0f} MB of it shared by the ranks)" if r["shared"]
                                else ")")
                             for i, m in enumerate(r["mem"]))
            print(f"{name} memory: {mems}; {r['bytes_per_token']} B/token, "
                  f"{r['bytes_per_cell']} B/word-topic cell")
    print("log-likelihood per token / held-out perplexity vs time (s):")
    for name, r in results.items():
        print(f"  {name:>12}: " + "  ".join(f"{t:.1f}s:{ll:.3f}/{p:.0f}"
                                           for _, t, ll, p in r["curve"]))


def draw(n_docs, n_words=20000, n_topics=100, doc_length=200):
    """Training and held-out corpora from one LDA model (Zipf-like word
    frequencies, as NYTimes's), and its true topics (K, V)."""
    n_held = max(2, n_docs // 10)
    corpus, phi, _ = lda_corpus(n_docs + n_held, n_words, n_topics, doc_length, alpha=ALPHA,
                                beta=BETA, seed=0, zipf=1.0)
    return corpus.slice(0, n_docs), corpus.slice(n_docs, n_docs + n_held), phi


def large_section(k, n_words, args, tmp):
    """hpcml alone at one rank on a large model: tokens/s and memory."""
    train, held, phi = draw(args.large_docs, n_words, 200, args.doc_length)
    del phi, held
    path = os.path.join(tmp, "large.h5")
    write_hdf5(path, train)
    print(f"\n=== large model: K = {k}, V = {n_words} ({k * n_words / 1e9:.2f}e9 dense "
          f"parameters), {train.n_tokens / 1e6:.2f} M tokens, hpcml-1 alone ===", flush=True)
    r = run_hpcml(path, k, 1, args, eval_every=0)
    dense = n_words * k * r["bytes_per_cell"]
    print(f"hpcml-1: {r['tokens_per_s'] / 1e6:.2f} M tokens/s "
          f"({r['tokens_per_s_with_init'] / 1e6:.2f} with init) over {args.iterations} "
          f"iterations, sampler {r['sampler']}{', sparse rows' if r['sparse_rows'] else ''}; "
          f"ll/token {r['curve'][-1][2]:.4f}")
    print(f"hpcml-1 memory: peak RSS {r['mem'][0][0]:.0f} MB; word-topic counts "
          f"{r['counts_bytes'] / 2**20:.0f} MB against {dense / 2**20:.0f} MB for the dense "
          f"table; sampler state {r['mem'][0][1]:.0f} MB")


def spark_section(k, methods, args, tmp):
    """Spark ML LDA for several maxIter vs hpcml at 2 ranks: time to Spark's best
    held-out perplexity."""
    import scipy.sparse as sp

    from hpcml.baselines.spark import SparkBaseline
    from hpcml.compare import pseudo_counts
    n_docs = max(10, int(20000 * args.spark_scale))
    train, held, _ = draw(n_docs)
    path = os.path.join(tmp, f"spark-{k}.h5")
    write_hdf5(path, train)
    write_hdf5(path.replace(".h5", "-held.h5"), held)
    print(f"\n=== Spark ML LDA (local[2]) vs hpcml 2 ranks, K = {k}: {n_docs} documents "
          f"({train.n_tokens} tokens; --spark-scale {args.spark_scale}), "
          f"{held.n_docs} held out ===")
    h2 = run_hpcml(path, k, 2, args, eval_every=1)
    present = np.unique(train.indices)
    remap = np.full(train.n_words, -1, np.int64)
    remap[present] = np.arange(present.shape[0])
    counts = sp.csr_matrix((train.counts, remap[train.indices], train.indptr),
                           shape=(train.n_docs, present.shape[0]))
    rows = []
    with SparkBaseline(cores=2) as sb:
        for method in methods:
            # A first fit warms the JVM's code paths; it is not timed.
            sb.lda(counts, k, method=method, max_iter=1, alpha=ALPHA, beta=BETA, seed=1)
            for it in args.spark_iterations:
                topics, _, fit_s = sb.lda(counts, k, method=method, max_iter=it, alpha=ALPHA,
                                          beta=BETA, seed=1)
                full = np.zeros((train.n_words, k))
                full[present] = topics
                nwk = pseudo_counts(full, train.n_tokens, prior=BETA if method == "online" else 0)
                rows.append((method, it, fit_s, perplexity(nwk, held)))
                print(f"  spark {method:>6} maxIter {it:3d}: fit {fit_s:7.1f} s   "
                      f"held-out perplexity {rows[-1][3]:.0f}", flush=True)
    print("  hpcml-2 perplexity by iteration: " + "  ".join(
        f"{i}:{t:.2f}s/{p:.0f}" for i, t, _, p in h2["curve"]))
    for method in methods:
        best = min((r for r in rows if r[0] == method), key=lambda r: r[3])
        hit = next((c for c in h2["curve"] if c[3] <= best[3]), None)
        if hit is None:
            print(f"  spark {method}: best perplexity {best[3]:.0f} in {best[2]:.1f} s; "
                  f"hpcml-2 does not reach it in {args.iterations} iterations")
        else:
            print(f"  spark {method}: best perplexity {best[3]:.0f} in {best[2]:.1f} s (fit, "
                  f"JVM start and data load excluded); hpcml-2 reaches {hit[3]:.0f} in "
                  f"{hit[1]:.2f} s (iteration {hit[0]}): {best[2] / hit[1]:.0f}x faster")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of the --docs documents (V stays --words)")
    ap.add_argument("--docs", type=int, default=20000, help="documents at --scale 1")
    ap.add_argument("--words", type=int, default=20000, help="vocabulary V")
    ap.add_argument("--doc-length", type=int, default=200, help="tokens per document")
    ap.add_argument("--topics", type=int, nargs="*", default=[100, 1000],
                    help="each K (the corpus is drawn with K true topics)")
    ap.add_argument("--true-topics", type=int, default=0,
                    help="topics of the model the corpus is drawn from (0: each K)")
    ap.add_argument("--sampler", default="auto", help="hpcml's --sampler")
    ap.add_argument("--word-rows", default="auto", help="hpcml's word-topic rows")
    ap.add_argument("--large", type=int, nargs=2, metavar=("K", "V"),
                    help="also train hpcml alone with K topics on a corpus of V words")
    ap.add_argument("--large-docs", type=int, default=20000,
                    help="documents of the --large corpus")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1,
                    help="runs of each contender, taking turns; the median run is reported")
    ap.add_argument("--mh-steps", type=int, default=2)
    ap.add_argument("--sync-every", type=float, default=0.5)
    ap.add_argument("--init", default="auto",
                    help="hpcml's initial topics: random, progressive, or auto (random for "
                         "the Gibbs sampler, progressive for MH)")
    ap.add_argument("--layout", default="auto", choices=["auto", "shared", "replicated"],
                    help="how hpcml's ranks hold the counts")
    ap.add_argument("--contenders", nargs="+",
                    default=["hpcml-1", "tomotopy-1", "hpcml-2", "tomotopy-2"],
                    help="hpcml-N, tomotopy-N, spark-online, spark-em")
    ap.add_argument("--spark-scale", type=float, default=0.05,
                    help="corpus fraction for the Spark comparison (Spark is slow)")
    ap.add_argument("--spark-iterations", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-mpi", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--heldout", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--phi", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        out = run_hpcml_worker(args)
        if out is not None:
            print(json.dumps(out))
        return
    n_docs = max(10, int(args.docs * args.scale))
    spark = [c.split("-")[1] for c in args.contenders if c.startswith("spark-")]
    print(f"corpus: {n_docs} documents, V = {args.words}, {args.doc_length} tokens per "
          f"document, drawn with {args.true_topics or 'K'} true topics; {args.iterations} "
          "iterations each; "
          f"hpcml --init {args.init} --layout {args.layout} --sampler {args.sampler}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
          "all ratios from this run", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.topics:
            corpus, held, phi = draw(n_docs, args.words, args.true_topics or k, args.doc_length)
            doc_ptr, words = corpus.tokens()
            path = os.path.join(tmp, f"corpus-{k}.h5")
            write_hdf5(path, corpus)
            write_hdf5(path.replace(".h5", "-held.h5"), held)
            np.save(path.replace(".h5", "-phi.npy"), phi)
            runs = {}
            # Contenders take turns, --repeats times, so that a slow spell of
            # the machine hits them alike; each is represented by its median run.
            for _ in range(args.repeats):
                for name in args.contenders:
                    tool, n = name.split("-")
                    if tool == "hpcml":
                        runs.setdefault(name, []).append(run_hpcml(path, k, int(n), args))
                    elif tool == "tomotopy":
                        runs.setdefault(name, []).append(
                            run_tomotopy(doc_ptr, words, args.words, k, int(n), args, held, phi))
            if runs:
                summarise(k, {name: median_run(rs) for name, rs in runs.items()},
                          words.shape[0])
            if spark:
                spark_section(k, spark, args, tmp)
        if args.large:
            large_section(*args.large, args, tmp)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
