"""``hpcml compare``: one job on hpcml (MPI) and on Spark MLlib, side by side.

The hpcml job runs under ``mpiexec -n P`` exactly as ``hpcml run`` would (its
output and checkpoints redirected into the run directory); the Spark
equivalent runs with P cores (``local[P]`` or ``--master``) on the same input
file.  Both answers are checked against each other and a table of times is
printed, with ``compare.json`` and ``compare.png`` written to the run
directory.

Mapped workloads and the agreement each must reach:

* ``svd`` → ``RowMatrix.computeSVD`` (rows cached in the JVM): every singular
  value within ``SVD_RTOL`` × σ₁ of hpcml's.
* ``pca`` → ``computePrincipalComponentsAndExplainedVariance``: explained
  variance ratios within ``SVD_RTOL`` and every component's |cosine| with
  hpcml's at least ``1 − SVD_RTOL``.
* ``lasso`` → ``LinearRegression(elasticNetParam=1, standardization=False,
  regParam=λ/m)``: the objective ½‖Ax − b‖² + λ‖x‖₁ of Spark's solution
  within ``LASSO_RTOL`` (relative) of hpcml's.
* ``lda train`` → ``pyspark.ml.clustering.LDA`` (EM by default, online VB
  with ``--spark-lda online|both``) for the job's number of iterations: held-out
  perplexity, computed for both engines by hpcml's own document-completion
  code (:meth:`hpcml.topics.model.TopicModel.perplexity`), within
  ``PERPLEXITY_RTOL`` of hpcml's.
  The estimators differ (collapsed Gibbs sampling, MAP, variational Bayes),
  so this is a statement that the models are equally good, not equal.  EM
  runs with Spark's own default priors (``50/K + 1``, ``1.1``): the sampler's
  priors shifted into MAP form (``α + 1``, ``β + 1``) measured 12% worse
  perplexity on the demo corpus, Spark's defaults 2% (hpcml's sampler was
  within 1% of the true generating model's).  Online VB gets the job's
  ``α`` and ``β``; on the demo corpus it stays about 20% behind whatever
  the priors or iterations, which ``--spark-lda both`` reports as a
  disagreement.

Times: hpcml's load is the job's own I/O time and its compute the job's
compute plus communication time (slowest rank, from its ``--json``
summary); its start-up is the rest of the wall time (``mpiexec``, Python,
imports).  Spark's start-up is the JVM and session, its load reading the file
and caching the data in Spark, its compute the MLlib call.  For LDA the
table also gives the time to the same held-out perplexity (the worse of the
two): hpcml's training time up to the first evaluation that reached it
(evaluate often with ``eval_every`` to make this tight) against Spark's
whole run.
"""

import json
import os
import time
import tomllib

import numpy as np
import scipy.sparse as sp

from hpcml.command import command
from hpcml.errors import HpcmlError, InputError

#: Singular values (relative to the largest) and explained variance ratios.
SVD_RTOL = 1e-6
#: LASSO objective values, relative.
LASSO_RTOL = 1e-5
#: Held-out perplexity, relative to hpcml's.
PERPLEXITY_RTOL = 0.10

SUPPORTED = ("svd", "pca", "lasso", "lda train")


def register(subparsers, common):
    """Add ``hpcml compare``."""
    p = subparsers.add_parser(
        "compare", parents=[common],
        help="run a job spec on hpcml (mpiexec) and on Spark MLlib and compare answers and times",
        description="Runs JOB.toml under mpiexec with P ranks and its Spark MLlib equivalent with "
                    "P cores on the same input; checks the answers agree and reports times. "
                    f"Workloads: {', '.join(SUPPORTED)}. Run it without mpiexec.")
    p.add_argument("job", help="job spec file (svd, pca, lasso or lda train)")
    p.add_argument("--baseline", choices=["spark"], default="spark", help="the baseline engine")
    p.add_argument("--ranks", type=int, default=None,
                   help="MPI ranks and Spark cores (default: the job's resources.ranks, else 2)")
    p.add_argument("--master", default=None, help="Spark master URL (default local[RANKS])")
    p.add_argument("--run-dir", default=None,
                   help="where outputs, compare.json and compare.png go (default runs/compare/JOB)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job parameter (as for hpcml run); repeatable")
    p.add_argument("--spark-lda", choices=["em", "online", "both"], default="em",
                   help="Spark's LDA optimiser(s) for an lda job (default em)")
    p.set_defaults(handler=run_compare)


# ---------------------------------------------------------------- the hpcml side

def run_hpcml(job, sets, ranks, run_dir):
    """Run ``hpcml run JOB --json`` under ``mpiexec -n ranks``; returns (summary, times).

    The job's output (and checkpoints, when it has any) go to ``run_dir`` so
    that a comparison neither overwrites nor resumes from the job's own files.
    """
    from hpcml.launch import mpiexec_command, run_child

    with open(job, "rb") as handle:
        raw = tomllib.load(handle)
    output = os.path.join(run_dir, "hpcml-output.h5")
    overrides = [*sets, f"output={output}"]
    if "checkpoint" in raw:
        overrides.append(f"checkpoint.dir={os.path.join(run_dir, 'hpcml-checkpoints')}")
    command = mpiexec_command(ranks, ["run", job, "--json",
                                      *[w for s in overrides for w in ("--set", s)]])
    start = time.perf_counter()
    done = run_child(command, capture=True)
    wall = time.perf_counter() - start
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise HpcmlError(f"compare: the hpcml job failed (exit {done.returncode}): {last}")
    summary = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    t = summary["timings"]
    load = t["io_s"]["max"]
    compute = t["compute_comm_s"]["max"]
    times = {"engine": f"hpcml (mpiexec -n {ranks})", "startup_s": max(wall - load - compute, 0.0),
             "load_s": load, "compute_s": compute, "total_s": wall}
    return summary, output, times


# ---------------------------------------------------------------- LDA evaluation

def pseudo_counts(topic_word, n_tokens, prior=0.0):
    """Integer word × topic counts with ``n_tokens`` in all from a topic-word matrix.

    ``prior`` is subtracted first (Spark's online ``topicsMatrix`` holds the
    variational parameters, prior included); what is left is scaled to the
    training token count and rounded, so hpcml's count-based evaluation
    code sees a model of the same size as its own.
    """
    mass = np.clip(np.asarray(topic_word, dtype=np.float64) - prior, 0.0, None)
    total = mass.sum()
    if total <= 0:
        raise HpcmlError("compare: Spark returned an empty topic-word matrix")
    return np.ascontiguousarray(np.rint(mass * (n_tokens / total)), dtype=np.int32)


def iteration_seconds(history):
    """Training seconds per iteration: the slowest rank's compute plus communication."""
    return np.max(np.asarray(history["compute_s"]) + np.asarray(history["comm_s"]), axis=1)


def seconds_to_perplexity(history, target):
    """When hpcml's held-out perplexity first reached ``target`` during training.

    Parameters
    ----------
    history : h5py.Group or dict
        The LDA output's ``history`` (``compute_s`` and ``comm_s`` per
        iteration and rank, ``perplexity`` per iteration, NaN where not
        evaluated).
    target : float

    Returns
    -------
    (int, float) or None
        The iteration and the training seconds up to it (per iteration the
        slowest rank's compute plus communication; the evaluations
        themselves are not counted), or None if it never got there.
    """
    per_iteration = iteration_seconds(history)
    hits = np.flatnonzero(np.asarray(history["perplexity"]) <= target)
    if hits.size == 0:
        return None
    return int(hits[0]) + 1, float(per_iteration[:hits[0] + 1].sum())


# ---------------------------------------------------------------- the Spark side
# Each function gets the job's parameters, defaults included, as a dict
# (hpcml.jobs.parameters): what the hpcml job itself ran with.

def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.max(np.abs(b))))


def spark_svd(sb, params, comm, hpcml_out):
    import h5py

    from hpcml.io import read_matrix

    start = time.perf_counter()
    A = read_matrix(params["input"], comm, dtype=np.float64).local
    matrix, cache_s = sb.row_matrix(A)
    load = time.perf_counter() - start
    s, _, compute = sb.svd(matrix, params["k"], compute_u=bool(params.get("compute_u", False)))
    with h5py.File(hpcml_out, "r") as f:
        ref = f["s"][...]
    err = float(np.max(np.abs(s - ref)) / ref[0])
    return [{"engine": "spark computeSVD", "load_s": load, "compute_s": compute,
             "agreement": {"max |Δσ|/σ₁": err, "tolerance": SVD_RTOL, "agree": err <= SVD_RTOL}}]


def spark_pca(sb, params, comm, hpcml_out):
    import h5py

    from hpcml.io import read_matrix

    start = time.perf_counter()
    A = read_matrix(params["input"], comm, dtype=np.float64).local
    matrix, _ = sb.row_matrix(A)
    load = time.perf_counter() - start
    components, ratio, compute = sb.pca(matrix, params["k"])
    with h5py.File(hpcml_out, "r") as f:
        ref_ratio = f["explained_variance_ratio"][...]
        ref_comp = f["components"][...]
    ratio_err = float(np.max(np.abs(ratio - ref_ratio)))
    cosines = np.abs(np.sum(components.T * ref_comp, axis=1)
                     / np.linalg.norm(components, axis=0) / np.linalg.norm(ref_comp, axis=1))
    cos_err = float(1.0 - cosines.min())
    agree = ratio_err <= SVD_RTOL and cos_err <= SVD_RTOL
    return [{"engine": "spark PCA", "load_s": load, "compute_s": compute,
             "agreement": {"max |Δ ratio|": ratio_err, "1 − min |cos|": cos_err,
                           "tolerance": SVD_RTOL, "agree": agree}}]


def spark_lasso(sb, params, comm, hpcml_out, summary):
    import h5py

    from hpcml.io import read_matrix
    from hpcml.io.hdf5 import read_rows

    start = time.perf_counter()
    A = read_matrix(params["input"], comm, dtype=np.float64).local
    A = A.toarray() if sp.issparse(A) else A
    b = read_rows(params["rhs"], comm)[0].ravel()
    read = time.perf_counter() - start
    lam = params["lam"]
    if lam is None:
        lam = params["lam_ratio"] * float(np.abs(A.T @ b).max())
    # hpcml's LASSO has no intercept, so neither has Spark's.
    x, _, load, compute = sb.lasso(A, b, lam, fit_intercept=False, max_iter=1000, tol=1e-12)
    objective = 0.5 * float(np.sum((A @ x - b) ** 2)) + lam * float(np.abs(x).sum())
    ref = float(summary["objective"])
    err = abs(objective - ref) / abs(ref)
    with h5py.File(hpcml_out, "r") as f:
        ref_x = f["x"][...].ravel()
    # The objective is flat at the minimiser, so the solutions are shown too.
    x_err = float(np.max(np.abs(x - ref_x)) / np.max(np.abs(ref_x)))
    return [{"engine": "spark LinearRegression (L1)", "load_s": read + load, "compute_s": compute,
             "agreement": {"objective": objective, "hpcml objective": ref, "relative difference": err,
                           "max |Δx|/‖x‖∞": x_err,
                           "tolerance": LASSO_RTOL, "agree": err <= LASSO_RTOL}}]


def spark_lda(sb, params, comm, hpcml_out, methods=("em",)):
    import h5py

    from hpcml.topics.corpus import load_corpus, split_heldout
    from hpcml.topics.model import TopicModel

    if params["heldout"] <= 0:
        raise InputError("compare: an LDA job needs a held-out fraction (--set heldout=0.1)")
    start = time.perf_counter()
    corpus, _ = load_corpus(params["input"], comm, params["format"], vocab_file=params["vocab"],
                            stop_words_file=params["stop_words"], min_count=params["min_count"],
                            max_doc_freq=params["max_doc_freq"])
    train, _, test = split_heldout(corpus, params["heldout"])
    # Index the vocabulary to the words present in the training documents.
    present = np.unique(train.indices)
    remap = np.full(corpus.n_words, -1, np.int64)
    remap[present] = np.arange(present.shape[0])
    counts = sp.csr_matrix((train.counts, remap[train.indices], train.indptr),
                           shape=(train.n_docs, present.shape[0]))
    read = time.perf_counter() - start
    hpcml_model = TopicModel.load(hpcml_out, comm)
    alpha, beta = hpcml_model.alpha, hpcml_model.beta
    with h5py.File(hpcml_out, "r") as f:
        history = {key: f["history"][key][...] for key in ("compute_s", "comm_s", "perplexity")}
    # Both engines' models are scored by the same evaluator, seeded alike.
    evaluate = dict(seed=params["seed"], sweeps=params["heldout_sweeps"],
                    mh_steps=params["mh_steps"])
    ref = hpcml_model.perplexity(test, **evaluate)
    topics_k, iterations = params["topics"], params["iterations"]
    rows = []
    for method in methods:
        # EM keeps Spark's default priors (see the module docstring).
        priors = dict(alpha=float(alpha.mean()), beta=beta) if method == "online" else {}
        topics, load, compute = sb.lda(counts, topics_k, method=method, max_iter=iterations,
                                       seed=params["seed"], **priors)
        full = np.zeros((corpus.n_words, topics_k))
        full[present] = topics
        nwk = pseudo_counts(full, train.n_tokens, prior=beta if method == "online" else 0.0)
        perp = TopicModel(nwk, alpha, beta, comm).perplexity(test, **evaluate)
        err = abs(perp - ref) / ref
        row = {"engine": f"spark LDA {method}", "load_s": read + load, "compute_s": compute,
               "agreement": {"perplexity": perp, "hpcml perplexity": ref,
                             "relative difference": err, "tolerance": PERPLEXITY_RTOL,
                             "agree": err <= PERPLEXITY_RTOL}}
        # Time to the same quality: when hpcml's training first reached the
        # worse of the two final perplexities (Spark's time to it is at most
        # its whole run, which is what the table shows for Spark).
        # hpcml's final model is at ``ref`` by definition, whatever its own
        # (differently seeded) last evaluation said.
        target = max(perp, ref)
        per_iteration = iteration_seconds(history)
        whole_run = (per_iteration.shape[0], float(per_iteration.sum()))
        reached = seconds_to_perplexity(history, target) or whole_run
        row["same_perplexity"] = {"target": target, "hpcml_iterations": reached[0],
                                  "hpcml_training_s": reached[1],
                                  "spark_iterations": iterations}
        rows.append(row)
    return rows


# ---------------------------------------------------------------- report

def _agreement_text(agreement):
    shown = {k: v for k, v in agreement.items() if k not in ("agree", "tolerance")}
    figures = ", ".join(f"{k} {v:.4g}" for k, v in shown.items())
    verdict = "agree" if agreement["agree"] else "DISAGREE"
    return f"{verdict} ({figures}; tolerance {agreement['tolerance']:g})"


def format_table(result):
    """The comparison table as text."""
    head = f"{'engine':<30} {'start-up':>9} {'load':>8} {'compute':>9} {'total':>8} " \
           f"{'ratio':>7} {'ratio w/o start-up':>19}  agreement"
    lines = [f"{result['job']} ({result['workload']}) at {result['ranks']} cores", head]
    for row in result["rows"]:
        ratio = row.get("ratio")
        ratio_ex = row.get("ratio_excluding_startup")
        lines.append(
            f"{row['engine']:<30} {row['startup_s']:>8.2f}s {row['load_s']:>7.2f}s "
            f"{row['compute_s']:>8.3f}s {row['total_s']:>7.2f}s "
            f"{'' if ratio is None else f'{ratio:.1f}×':>7} "
            f"{'' if ratio_ex is None else f'{ratio_ex:.1f}×':>19}  "
            f"{_agreement_text(row['agreement']) if 'agreement' in row else ''}")
    for row in result["rows"]:
        same = row.get("same_perplexity")
        if same is not None and "ratio_excluding_startup" in same:
            lines.append(
                f"to the same held-out perplexity ({same['target']:.4g}): hpcml after "
                f"{same['hpcml_iterations']} iteration(s), {same['hpcml_s']:.2f}s with its load; "
                f"{row['engine']} after {same['spark_iterations']}, {row['load_s'] + row['compute_s']:.2f}s: "
                f"{same['ratio_excluding_startup']:.1f}× without start-up")
    return "\n".join(lines)


def write_chart(result, path):
    """A stacked bar chart (start-up, load, compute) per engine, written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [r["engine"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(rows)))
    left = np.zeros(len(rows))
    for key, label in (("startup_s", "start-up"), ("load_s", "load"), ("compute_s", "compute")):
        values = np.array([r[key] for r in rows])
        ax.barh(names, values, left=left, label=label)
        left += values
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title(f"{result['job']} at {result['ranks']} cores")
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def _write_json(result, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle, indent=2, default=float)
    os.replace(tmp, path)


@command(inputs=("job",), outputs=(), output_dirs=("run_dir",))
def run_compare(args, comm):
    """Run both engines, print the table, write compare.json and compare.png."""
    from hpcml import jobs
    from hpcml.baselines.spark import SparkBaseline, check_available
    from hpcml.cli import build_parser

    if comm.size > 1:
        raise InputError("compare: run it without mpiexec (it launches its own)", collective=True)
    spec = jobs.load(args.job, args.set)
    workload = " ".join(spec.workload)
    if workload not in SUPPORTED:
        raise InputError(f"compare: workload {workload!r} has no Spark equivalent "
                         f"(supported: {', '.join(SUPPORTED)})")
    check_available()
    ranks = args.ranks if args.ranks is not None else int(spec.resources.get("ranks", 2))
    if ranks < 1:
        raise InputError(f"compare: --ranks must be >= 1, got {ranks}")
    name = os.path.splitext(os.path.basename(args.job))[0]
    run_dir = args.run_dir or os.path.join("runs", "compare", name)
    os.makedirs(run_dir, exist_ok=True)
    params = jobs.parameters(spec, build_parser())

    summary, output, hpcml_times = run_hpcml(args.job, args.set, ranks, run_dir)
    memory = str(spec.resources.get("memory", "4g")).lower().rstrip("b")
    with SparkBaseline(cores=ranks, master=args.master, driver_memory=memory) as sb:
        if workload == "svd":
            rows = spark_svd(sb, params, comm, output)
        elif workload == "pca":
            rows = spark_pca(sb, params, comm, output)
        elif workload == "lasso":
            rows = spark_lasso(sb, params, comm, output, summary)
        else:
            methods = ("em", "online") if args.spark_lda == "both" else (args.spark_lda,)
            rows = spark_lda(sb, params, comm, output, methods)
        startup = sb.startup_s
    base = hpcml_times["total_s"]
    base_ex = hpcml_times["load_s"] + hpcml_times["compute_s"]
    for row in rows:
        row["startup_s"] = startup
        row["total_s"] = startup + row["load_s"] + row["compute_s"]
        row["ratio"] = row["total_s"] / base
        row["ratio_excluding_startup"] = (row["load_s"] + row["compute_s"]) / base_ex
        same = row.get("same_perplexity")
        if same is not None:
            same["hpcml_s"] = hpcml_times["load_s"] + same["hpcml_training_s"]
            same["ratio_excluding_startup"] = (row["load_s"] + row["compute_s"]) / same["hpcml_s"]
    result = {"job": args.job, "workload": workload, "ranks": ranks,
              "master": args.master or f"local[{ranks}]", "rows": [hpcml_times, *rows],
              "tolerances": {"svd": SVD_RTOL, "lasso": LASSO_RTOL, "perplexity": PERPLEXITY_RTOL},
              "agree": all(r["agreement"]["agree"] for r in rows)}
    _write_json(result, os.path.join(run_dir, "compare.json"))
    write_chart(result, os.path.join(run_dir, "compare.png"))
    if comm.rank == 0 and not args.json:
        print(format_table(result), flush=True)
        print(f"written: {os.path.join(run_dir, 'compare.json')}, "
              f"{os.path.join(run_dir, 'compare.png')}", flush=True)
    if not result["agree"]:
        raise HpcmlError("compare: the engines' answers disagree beyond the stated tolerances")
    return result
