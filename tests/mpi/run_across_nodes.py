"""Every workload in one MPI job, so that the emulated-node tests pay for one
launch per node layout (tests/test_across_nodes.py).

Usage::

    run_across_nodes.py data DIR      # the inputs (1 rank)
    run_across_nodes.py jobs DIR OUT  # every job on DIR's inputs, outputs in OUT

Each job is an ``hpcml`` command line run by :func:`hpcml.cli.main` in this
process; a job that fails makes the script exit with its status, naming it.
"""

import os
import sys

from hpcml.cli import main
from hpcml.topics import model

# Fold-in runs in blocks of about 2^24 token-sweeps, each an iteration of
# "lda infer"; blocks of 200 tokens give this tiny corpus several per rank.
model._FOLD_IN_BLOCK = 30 * 200

# Sizes of the form P*k + 1 make uneven shards at 3 and 4 ranks; more
# columns than k + 10 give the randomized method a subspace to iterate on.
ROWS, COLS = 4 * 6 + 1, 16


def data(d):
    j = os.path.join
    return [
        ("matrix", ["data", "matrix", "--rows", ROWS, "--cols", COLS, "--spectrum", "geometric:10:0.01",
                    "--output", j(d, "m.h5") + ":/A"]),
        ("lasso data", ["data", "lasso", "--rows", 4 * 10 + 1, "--cols", 12, "--nonzeros", 3,
                        "--output", j(d, "lasso.h5")]),
        # An LP that the smoothed dual solves in a few dozen iterations.
        ("lp data", ["data", "lp", "--rows", 4, "--cols", 8, "--inequalities", 2, "--density", 0.5,
                     "--seed", 2, "--output", j(d, "lp.h5")]),
        ("corpus", ["data", "corpus", "synthetic", "--docs", 4 * 30 + 1, "--words", 60, "--topics", 4,
                    "--doc-length", 40, "--alpha", 0.1, "--beta", 0.05, "--output", j(d, "corpus.h5")]),
    ]


SVD_METHODS = ("lanczos", "golub-kahan", "tsqr", "gram", "randomized")
#: The LP methods: PDLP (the default) and the smoothed conic dual with two of its algorithms.
LP_METHODS = {"pdlp": ["--method", "pdlp"], "AT": ["--method", "scd", "--algorithm", "AT"],
              "N83": ["--method", "scd", "--algorithm", "N83"]}
LDA = ["--topics", 4, "--iterations", 30, "--heldout", 0.1, "--eval-every", 30]
# The replicated layout whatever the node layout, dense exchanges (their
# bytes are known in advance), two per sweep.
DENSE = ["--topics", 4, "--layout", "replicated", "--exchange", "dense", "--sync-every", 0.5,
         "--ll-every", 0]


def jobs(d, out):
    j = os.path.join
    m, lasso, corpus = j(d, "m.h5") + ":/A", j(d, "lasso.h5"), j(d, "corpus.h5")
    listed = [("stats", ["stats", "--input", m, "--power-iterations", 30, "--tol", 0,
                         "--output", j(out, "stats.h5")])]
    for method in SVD_METHODS:
        listed.append((f"svd-{method}", ["svd", "--input", m, "--k", 3, "--method", method, "--compute-u",
                                         "--output", j(out, f"svd-{method}.h5")]))
    listed += [
        ("pca", ["pca", "--input", m, "--k", 3, "--method", "lanczos", "--scores",
                 "--output", j(out, "pca.h5")]),
        ("pca-auto", ["pca", "--input", m, "--k", 3, "--output", j(out, "pca-auto.h5")]),
    ]
    for mode in ("matvec", "auto"):
        listed.append((f"lasso-{mode}", ["lasso", "--input", lasso + ":/A", "--rhs", lasso + ":/b",
                                          "--lam-ratio", 0.1, "--mode", mode, "--tol", 1e-9,
                                          "--output", j(out, f"lasso-{mode}.h5")]))
    for method, options in LP_METHODS.items():
        listed.append((f"lp-{method}", ["lp", "--input", j(d, "lp.h5"), *options,
                                        "--output", j(out, f"lp-{method}.h5")]))
    listed += [
        ("lda", ["lda", "train", "--input", corpus, *LDA, "--output", j(out, "lda.h5")]),
        ("lda-dense", ["lda", "train", "--input", corpus, *DENSE, "--iterations", 8,
                       "--output", j(out, "lda-dense.h5")]),
        ("lda-infer", ["lda", "infer", "--model", j(out, "lda-dense.h5"), "--input", corpus,
                       "--output", j(out, "lda-infer.h5")]),
        # Stopped after 12 iterations (its limit), resumed to 30: equals "stats" above.
        ("stats-stopped", ["stats", "--input", m, "--power-iterations", 12, "--tol", 0,
                           "--checkpoint-dir", j(out, "ckpt-stats"), "--checkpoint-every", 12]),
        ("stats-resumed", ["stats", "--input", m, "--power-iterations", 30, "--tol", 0,
                           "--checkpoint-dir", j(out, "ckpt-stats"), "--resume",
                           "--output", j(out, "stats-resumed.h5")]),
        # Stopped after 3 sweeps, resumed to 8: equals "lda-dense".
        ("lda-stopped", ["lda", "train", "--input", corpus, *DENSE, "--iterations", 3,
                         "--checkpoint-dir", j(out, "ckpt-lda"), "--checkpoint-every", 3]),
        ("lda-resumed", ["lda", "train", "--input", corpus, *DENSE, "--iterations", 8,
                         "--checkpoint-dir", j(out, "ckpt-lda"), "--resume",
                         "--output", j(out, "lda-resumed.h5")]),
    ]
    return listed


if __name__ == "__main__":
    stage, folder = sys.argv[1], sys.argv[2]
    listed = data(folder) if stage == "data" else jobs(folder, sys.argv[3])
    only = set(sys.argv[4:])
    for name, argv in listed:
        if only and name not in only:
            continue
        status = main([*map(str, argv), "--log-level", "warning"])
        if status:
            sys.stderr.write(f"run_across_nodes: job {name} exited {status}\n")
            sys.exit(status)
