"""LDA layouts side by side: the model-parallel layout on emulated nodes.

Draws one corpus from a known LDA model (HDF5; every rank reads only its
documents), then runs, interleaved and ``--repeats`` times (medians):

* ``1 rank``: one process (the baseline); every row samples by MH, the
  model layout's sampler;
* ``2 nodes x 1, model``: two ranks on two emulated nodes
  (``MPIR_CVAR_NUM_CLIQUES=2``), word blocks travelling around the ring;
* ``2 nodes x 1, replicated``: the same ranks, each holding every count;

and prints tokens/s, the speed-up over one rank, log-likelihood per token
after equal sweeps, compute and communication seconds and bytes per sweep.

Then a memory table (``--memory``, a model-heavy shape: V x K large, few
tokens): the model-parallel layout at 1, 2 and 4 ranks, one rank per
emulated node (and 4 ranks as 2 x 2), with each rank's peak RSS, its
proportional set size (shared pages divided among the ranks mapping them)
and the growth of both over the process before the sampler was set up.

Usage::

    python bench/lda_layouts.py                       # speed and memory
    python bench/lda_layouts.py --docs 4000 --topics 100 --iterations 10 --repeats 3
    python bench/lda_layouts.py --no-speed --memory-words 50000 --memory-topics 1000

Timings on a shared 2-core machine move with the other jobs on it; the
ratios are taken in one run, interleaved.
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

ALPHA, BETA = 0.1, 0.01


def rss_mb():
    """(peak RSS, current proportional set size) of this process in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    pss = float("nan")
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak, pss


def worker(args):
    from hpcml.comm import Comm
    from hpcml.topics.corpus import load_corpus
    from hpcml.topics.lda import LDA

    comm = Comm.world()
    corpus, _ = load_corpus(args.corpus, comm)
    before = rss_mb()
    # One sampler for every row (the model layout's), so the rows compare layouts only.
    model = LDA(args.topics, alpha=ALPHA, beta=BETA, seed=1, layout=args.layout, sampler="mh")
    model.setup(corpus, comm)
    comm.barrier()
    tic = time.perf_counter()
    model.fit(args.iterations, ll_every=0)
    comm.barrier()
    elapsed = time.perf_counter() - tic
    after = rss_mb()  # before any gathering of the whole table
    ll = model.log_likelihood() / model.n_tokens
    h = model.history[1:] or model.history  # the first sweep may page the buffers in
    own = np.array([[np.mean([r["compute_s"] for r in h]), np.mean([r["comm_s"] for r in h]),
                     np.mean([r["bytes"] for r in h]), before[0], after[0], before[1], after[1]]])
    per_rank = comm.allgatherv(own)
    mem = model.memory_bytes()
    layout = model.layout_used
    model.close()
    if comm.rank == 0:
        print(json.dumps({"tokens_per_s": model.n_tokens * args.iterations / elapsed,
                          "ll_per_token": ll, "layout": layout, "per_rank": per_rank.tolist(),
                          "shared_mb": mem["shared"] / 2**20, "n_tokens": model.n_tokens,
                          "topology": str(comm.topology)}))


def run(path, ranks, nodes, layout, topics, iterations):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--corpus", path,
           "--layout", layout, "--topics", str(topics), "--iterations", str(iterations)]
    if ranks > 1:
        cmd = [os.path.join(os.path.dirname(sys.executable), "mpiexec"), "-n", str(ranks)] + cmd
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", PYTHONPATH=ROOT,
               MPIR_CVAR_NUM_CLIQUES=str(nodes))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_corpus(folder, name, docs, words, topics, length, seed):
    from hpcml.io.corpus import write_hdf5
    from hpcml.topics.synthetic import lda_corpus

    corpus, _, _ = lda_corpus(docs, words, topics, length, alpha=ALPHA, beta=0.05, seed=seed,
                              length_spread=0.5, zipf=1.0)
    path = os.path.join(folder, name)
    write_hdf5(path, corpus)
    return path


def speed(args, folder):
    path = make_corpus(folder, "speed.h5", args.docs, args.words, args.true_topics, args.length, 3)
    configs = [("1 rank", 1, 1, "replicated"), ("2 nodes x 1, model", 2, 2, "model"),
               ("2 nodes x 1, replicated", 2, 2, "replicated")]
    results = {name: [] for name, *_ in configs}
    for _ in range(args.repeats):
        for name, ranks, nodes, layout in configs:
            results[name].append(run(path, ranks, nodes, layout, args.topics, args.iterations))
    base = np.median([r["tokens_per_s"] for r in results["1 rank"]])
    n_tok = results["1 rank"][0]["n_tokens"]
    print(f"\nSpeed: {n_tok} tokens, V = {args.words}, K = {args.topics}, {args.iterations} "
          f"sweeps, medians of {args.repeats} (shared machine)")
    print(f"{'run':26s} {'tokens/s':>10s} {'vs 1 rank':>9s} {'ll/token':>9s} "
          f"{'compute s':>9s} {'comm s':>7s} {'MB/sweep':>8s}")
    for name, *_ in configs:
        rs = results[name]
        tps = np.median([r["tokens_per_s"] for r in rs])
        pr = np.array([r["per_rank"] for r in rs])  # repeats x ranks x 7
        print(f"{name:26s} {tps:10.0f} {tps / base:8.2f}x {np.median([r['ll_per_token'] for r in rs]):9.4f} "
              f"{np.median(pr[:, :, 0].max(axis=1)):9.3f} {np.median(pr[:, :, 1].max(axis=1)):7.3f} "
              f"{np.median(pr[:, :, 2].max(axis=1)) / 2**20:8.2f}")


def memory(args, folder):
    path = make_corpus(folder, "memory.h5", args.memory_docs, args.memory_words, 20, 50, 5)
    configs = [(1, 1), (2, 2), (4, 4), (4, 2)]
    cells = args.memory_words * args.memory_topics
    print(f"\nMemory, model-parallel layout: V = {args.memory_words}, K = {args.memory_topics} "
          f"({cells * 2 / 2**20:.0f} MB of uint16 counts), {args.memory_docs} documents")
    print(f"{'ranks':>5s} {'nodes':>5s} {'shared/node MB':>14s} {'peak RSS MB':>11s} "
          f"{'RSS growth':>10s} {'PSS growth':>10s} {'tokens/s':>9s}   (per rank: max over ranks)")
    for ranks, nodes in configs:
        r = run(path, ranks, nodes, "model", args.memory_topics, args.memory_iterations)
        pr = np.array(r["per_rank"])
        print(f"{ranks:5d} {nodes:5d} {r['shared_mb']:14.1f} {pr[:, 4].max():11.1f} "
              f"{(pr[:, 4] - pr[:, 3]).max():10.1f} {(pr[:, 6] - pr[:, 5]).max():10.1f} "
              f"{r['tokens_per_s']:9.0f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--layout", default="model", help=argparse.SUPPRESS)
    p.add_argument("--docs", type=int, default=4000)
    p.add_argument("--words", type=int, default=5000)
    p.add_argument("--true-topics", type=int, default=50)
    p.add_argument("--length", type=int, default=150)
    p.add_argument("--topics", type=int, default=100)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-speed", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-docs", type=int, default=2000)
    p.add_argument("--memory-words", type=int, default=40000)
    p.add_argument("--memory-topics", type=int, default=2000)
    p.add_argument("--memory-iterations", type=int, default=3)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_speed:
            speed(args, folder)
        if not args.no_memory:
            memory(args, folder)


if __name__ == "__main__":
    main()
