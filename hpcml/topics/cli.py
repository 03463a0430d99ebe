"""``hpcml lda train|infer|topics`` and ``hpcml data corpus convert|synthetic``.

The options and, per subcommand, the calls into the library: corpora from
:mod:`hpcml.topics.corpus` (``--input`` recognised by name unless
``--format`` says), training by :class:`hpcml.topics.lda.LDA`, inference and
top words by :class:`hpcml.topics.model.TopicModel`.
"""

import logging
import time

import numpy as np

from hpcml.checkpoint import Checkpointer, add_arguments
from hpcml import options
from hpcml.command import command
from hpcml.errors import InputError
from hpcml.io.hdf5 import write_output
from hpcml.topics.corpus import FORMATS, load_corpus, read_corpus, split_heldout, write_corpus
from hpcml.topics.lda import (EXCHANGES, INITS, LAYOUTS, LDA, SAMPLERS, WORD_ROWS,
                              refuse_if_too_big)
from hpcml.topics.model import TopicModel

log = logging.getLogger("hpcml")


def _read_options(args):
    """The corpus options (``--format`` ... ``--max-doc-freq``) as library keywords."""
    return {"fmt": args.format, "vocab_file": args.vocab, "stop_words_file": args.stop_words,
            "min_count": args.min_count, "max_doc_freq": args.max_doc_freq}


# ---------------------------------------------------------------- register
def _corpus_options(parser):
    g = parser.add_argument_group("corpus")
    g.add_argument("--input", required=True,
                   help="FILE.h5[:/GROUP], docword.NAME.txt[.gz] or a text file (one document per line)")
    g.add_argument("--format", choices=FORMATS, default="auto", help="input format (default: by name)")
    g.add_argument("--vocab", default=None, help="vocab.NAME.txt of a UCI corpus")
    g.add_argument("--stop-words", default=None, metavar="FILE",
                   help="text input: stop words (default: a built-in English list)")
    g.add_argument("--min-count", type=int, default=1, help="text input: drop rarer words")
    g.add_argument("--max-doc-freq", type=float, default=1.0,
                   help="text input: drop words in more than this fraction of documents")


def register(subparsers, common):
    """Add ``hpcml lda train|infer|topics`` and ``hpcml data corpus``."""
    lda = subparsers.add_parser("lda", help="topic models (LDA) by distributed Gibbs sampling")
    sub = lda.add_subparsers(dest="lda_command", metavar="ACTION")
    sub.required = True

    train = sub.add_parser("train", parents=[common], help="train an LDA model",
                           description="Train LDA by collapsed Gibbs sampling over document shards.")
    _corpus_options(train)
    g = train.add_argument_group("model")
    g.add_argument("--topics", "-k", type=int, required=True, help="number of topics K (>= 2)")
    g.add_argument("--iterations", type=int, default=100, help="Gibbs sweeps (default 100)")
    g.add_argument("--alpha", default="0.1",
                   help="document-topic prior: one value (symmetric) or K comma-separated values")
    g.add_argument("--beta", type=float, default=0.01, help="topic-word prior (default 0.01)")
    g.add_argument("--optimize-every", type=int, default=0, metavar="N",
                   help="update alpha (asymmetric) and beta every N iterations (0: fixed)")
    g.add_argument("--sampler", choices=SAMPLERS, default="auto",
                   help="gibbs: exact, O(K) per token, vectorised; mh: O(1) Metropolis-Hastings "
                        "per token; dense: exact O(K) reference; auto (default): gibbs up to "
                        "K = 256, else mh")
    g.add_argument("--mh-steps", type=int, default=2, help="proposal pairs per token (mh)")
    g.add_argument("--word-rows", choices=WORD_ROWS, default="auto",
                   help="word-topic counts: dense V x K, or sparse rows (hash rows for rare "
                        "words, memory follows the non-zeros; mh only); auto: sparse for mh "
                        "when they take under half the dense table")
    g.add_argument("--init", choices=INITS, default="random",
                   help="initial topics: random, or progressive (each token drawn given the "
                        "tokens before it; costs about a sweep, saves many at large K)")
    g = train.add_argument_group("distribution")
    g.add_argument("--layout", choices=LAYOUTS, default="auto",
                   help="shared: ranks on one node share one copy of the counts and take "
                        "turns on blocks of words; replicated: each rank its own copy, "
                        "changes exchanged (the options below); model: word blocks of the "
                        "counts travel around a ring of nodes, each node's ranks sharing one; "
                        "auto: shared on one node, replicated across nodes while it fits "
                        "each node's memory, else model")
    g.add_argument("--sync-every", type=float, default=0.5, metavar="FRACTION",
                   help="fraction of a sweep between exchanges of changed topics (default 0.5)")
    g.add_argument("--staleness", type=int, default=0, metavar="S",
                   help="exchanges left in flight while sampling (non-blocking dense; default 0)")
    g.add_argument("--exchange", choices=EXCHANGES, default="auto",
                   help="sparse, dense, or auto (the smaller, per exchange)")
    g = train.add_argument_group("evaluation")
    g.add_argument("--heldout", type=float, default=0.0, metavar="FRACTION",
                   help="hold out this fraction of documents for perplexity")
    g.add_argument("--eval-every", type=int, default=10, metavar="N",
                   help="held-out perplexity every N iterations")
    g.add_argument("--heldout-sweeps", type=int, default=20, help="fold-in sweeps for perplexity")
    g.add_argument("--ll-every", type=int, default=1, metavar="N",
                   help="training log-likelihood every N iterations (0: only at the end)")
    g.add_argument("--top-words", type=options.count, default=10, help="words printed per topic")
    add_arguments(train)
    train.set_defaults(handler=run_train)

    infer = sub.add_parser("infer", parents=[common], help="topic proportions of new documents",
                           description="Fold new documents into a trained model (counts fixed).")
    _corpus_options(infer)
    infer.add_argument("--model", required=True, help="model file written by 'lda train'")
    infer.add_argument("--sweeps", type=int, default=30, help="fold-in sweeps per document")
    infer.add_argument("--mh-steps", type=int, default=2, help="proposal pairs per token")
    infer.set_defaults(handler=run_infer)

    topics = sub.add_parser("topics", parents=[common], help="print the top words of a model")
    topics.add_argument("--model", required=True, help="model file written by 'lda train'")
    topics.add_argument("--top-words", type=options.count, default=10)
    topics.set_defaults(handler=run_topics)

    from hpcml.cli import data_commands
    corpus = data_commands(subparsers).add_parser(
        "corpus", help="convert bag-of-words corpora or draw one from an LDA model")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION")
    csub.required = True
    conv = csub.add_parser("convert", parents=[common], help="convert between corpus formats",
                           description="Read a UCI, text or HDF5 corpus and write it as HDF5 "
                           "(FILE.h5[:/GROUP]) or UCI (docword.NAME.txt[.gz] + vocab).")
    _corpus_options(conv)
    conv.add_argument("--vocab-output", default=None,
                      help="UCI output: vocabulary file (default: vocab.NAME.txt beside it)")
    conv.set_defaults(handler=run_convert)
    syn = csub.add_parser("synthetic", parents=[common], help="a corpus drawn from a known LDA model",
                          description="Draw documents from LDA with random topics; the true "
                          "topics are stored in the output (HDF5: /truth/phi, /truth/theta).")
    syn.add_argument("--docs", type=int, required=True)
    syn.add_argument("--words", type=int, required=True, help="vocabulary size V")
    syn.add_argument("--topics", type=int, required=True, help="true number of topics")
    syn.add_argument("--doc-length", type=int, default=100, help="tokens per document (mean)")
    syn.add_argument("--length-spread", type=float, default=0.0,
                     help="> 0: Poisson document lengths scaled by this factor")
    syn.add_argument("--alpha", type=float, default=0.1)
    syn.add_argument("--beta", type=float, default=0.01)
    syn.add_argument("--zipf", type=float, default=0.0, help="Zipf exponent of word frequencies")
    syn.set_defaults(handler=run_synthetic)


# ------------------------------------------------------------------- train
def _parse_alpha(text, k):
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise InputError(f"--alpha {text!r}: expected a number or {k} comma-separated numbers",
                         collective=True) from None
    if len(values) not in (1, k) or min(values) <= 0:
        raise InputError(f"--alpha: give one positive value or {k} (one per topic)", collective=True)
    return np.array(values if len(values) == k else values * k)


def _check_train_args(args):
    if args.topics < 2:
        raise InputError(f"lda train: --topics must be >= 2, got {args.topics}", collective=True)
    if args.iterations < 1 or args.eval_every < 1 or args.heldout_sweeps < 1 or args.ll_every < 0:
        raise InputError("lda train: --iterations, --eval-every, --heldout-sweeps must be >= 1",
                         collective=True)
    if not 0.0 <= args.heldout < 1.0:
        raise InputError("lda train: --heldout must be in [0, 1)", collective=True)


@command(inputs=("input", "vocab", "stop_words"), checkpoints=True,
         resumable=("iterations", "top_words", "ll_every", "eval_every", "heldout_sweeps"))
def run_train(args, comm):
    """Train, print the top words, write the model; returns the summary."""
    _check_train_args(args)
    local, n_docs = load_corpus(args.input, comm, **_read_options(args))
    # Before anything of size K (the priors) is built.
    refuse_if_too_big(comm, int(local.counts.sum()), local.n_docs, local.n_words, args.topics,
                      args.layout, sampler=args.sampler, word_rows=args.word_rows)
    alpha = _parse_alpha(args.alpha, args.topics)
    train_docs, train_ids, heldout = split_heldout(local, args.heldout)
    try:
        model = LDA(args.topics, alpha=alpha, beta=args.beta, sampler=args.sampler,
                    mh_steps=args.mh_steps, sync_every=args.sync_every, staleness=args.staleness,
                    exchange=args.exchange, optimize_every=args.optimize_every, seed=args.seed,
                    init=args.init, layout=args.layout, word_rows=args.word_rows)
    except InputError as exc:
        raise InputError(str(exc), collective=True) from None
    checkpointer = Checkpointer.from_args(args, comm)
    saved = checkpointer.latest() if checkpointer.resume else None
    if saved is not None:
        model.resume(train_docs, comm, saved.replicated, saved.sharded, saved.iteration)
        log.info("resuming LDA after iteration %d", saved.iteration)
    else:
        model.setup(train_docs, comm)

    def checkpoint(m):
        checkpointer.step(m.iteration, m.checkpoint_state)
        return False

    _log_setup(model, n_docs, local.n_docs - train_docs.n_docs, comm)
    model.fit(args.iterations, heldout=heldout, eval_every=args.eval_every,
              heldout_sweeps=args.heldout_sweeps, ll_every=args.ll_every, log=_log_iteration,
              checkpoint=checkpoint)
    final_ll = model.log_likelihood()
    top = model.top_words(args.top_words)
    _print_topics(top, args, comm)
    summary = {"documents": n_docs, "tokens": model.n_tokens, "topics": args.topics,
               "iterations": model.iteration, "log_likelihood": final_ll,
               "ll_per_token": final_ll / max(model.n_tokens, 1), "ranks": comm.size,
               "layout": model.layout_used,
               "alpha_mean": float(model.alpha.mean()), "beta": model.beta,
               "top_words": top}
    perps = [r["perplexity"] for r in model.history if "perplexity" in r]
    if perps:
        summary["perplexity"] = perps[-1]
    if args.output:
        model.save(args.output, doc_ids=train_ids, params=vars(args))
        summary["output"] = args.output
    model.close()
    return summary


def _log_setup(model, n_docs, n_held, comm):
    mem = model.memory_bytes()
    largest = comm.allreduce_scalar(mem["total"], "max")
    log.info("LDA: %d documents (%d held out), V = %d, %d tokens, K = %d on %d rank(s); "
             "%s layout; sampler state %.1f MB on the largest rank, %.1f MB of it shared by "
             "the ranks of a node (%d B per own token, %d B per token of the corpus, %d B per "
             "word-topic cell)",
             n_docs, comm.allreduce_scalar(n_held), model.n_words, model.n_tokens,
             model.n_topics, comm.size, model.layout_used,
             largest / 2**20, mem["shared"] / 2**20, mem["bytes_per_token"],
             mem["bytes_per_corpus_token"], mem["bytes_per_cell"])


def _log_iteration(rec):
    parts = [f"iteration {rec['iteration']}"]
    if "ll_per_token" in rec:
        parts.append(f"log-likelihood/token {rec['ll_per_token']:.4f}")
    if "perplexity" in rec:
        parts.append(f"held-out perplexity {rec['perplexity']:.2f}")
    parts.append(f"{rec['tokens_per_s'] / 1e6:.2f} M tokens/s, compute {rec['compute_s']:.3f} s, "
                 f"comm {rec['comm_s']:.3f} s, {rec['bytes'] / 1e6:.2f} MB (rank 0)")
    log.info(", ".join(parts))


def _print_topics(top, args, comm):
    if comm.rank == 0 and not args.json:
        for k, words in enumerate(top):
            print(f"topic {k:3d}: {' '.join(map(str, words))}", flush=True)


# ------------------------------------------------------------ infer/topics
@command(inputs=("model", "input", "vocab", "stop_words"))
def run_infer(args, comm):
    """Fold new documents into a trained model; write their topic proportions."""
    if args.sweeps < 1 or args.mh_steps < 1:
        raise InputError("lda infer: --sweeps and --mh-steps must be >= 1", collective=True)
    model = TopicModel.load(args.model, comm)
    local, n_docs = load_corpus(args.input, comm, **_read_options(args), vocab=model.vocab)
    tic = time.perf_counter()
    theta = model.transform(local, sweeps=args.sweeps, mh_steps=args.mh_steps, seed=args.seed)
    seconds = time.perf_counter() - tic
    tokens = comm.allreduce_scalar(local.n_tokens)
    slowest = comm.allreduce_scalar(seconds, "max")
    log.info("lda infer: %d documents, %d tokens, %d sweeps in %.2f s (%.2f M tokens/s)",
             n_docs, tokens, args.sweeps, slowest, tokens * args.sweeps / max(slowest, 1e-9) / 1e6)
    summary = {"documents": n_docs, "tokens": tokens, "sweeps": args.sweeps}
    if args.output:
        ids = np.arange(local.n_docs, dtype=np.int64) + local.doc_offset
        write_output(args.output, comm, sharded={"doc_topics": theta, "doc_ids": ids},
                     params=vars(args))
        summary["output"] = args.output
    return summary


@command(inputs=("model",), outputs=())
def run_topics(args, comm):
    """Print the most probable words of every topic of a model."""
    top = TopicModel.load(args.model, comm).top_words(args.top_words)
    _print_topics(top, args, comm)
    return {"topics": top}


# ------------------------------------------------------------ data corpus
@command(inputs=("input", "vocab", "stop_words"), outputs=("output", "vocab_output"), required=("output",))
def run_convert(args, comm):
    """Convert a corpus (rank 0 reads and writes)."""
    info = None
    with comm.io(), comm.guard():
        if comm.rank == 0:
            corpus = read_corpus(args.input, **_read_options(args))
            write_corpus(args.output, corpus, vocab_output=args.vocab_output)
            info = {"documents": corpus.n_docs, "words": corpus.n_words,
                    "tokens": corpus.n_tokens, "output": args.output}
    return comm.bcast_obj(info)


@command(required=("output",))
def run_synthetic(args, comm):
    """Draw a corpus from LDA (rank 0) and write it with its true topics."""
    from hpcml.topics.synthetic import lda_corpus

    if min(args.docs, args.words, args.topics, args.doc_length) < 1 or args.alpha <= 0 \
            or args.beta <= 0:
        raise InputError("data corpus synthetic: sizes must be >= 1 and alpha, beta > 0",
                         collective=True)
    info = None
    with comm.io(), comm.guard():
        if comm.rank == 0:
            corpus, phi, theta = lda_corpus(args.docs, args.words, args.topics, args.doc_length,
                                            alpha=args.alpha, beta=args.beta, seed=args.seed,
                                            length_spread=args.length_spread, zipf=args.zipf)
            write_corpus(args.output, corpus, extra={"truth/phi": phi, "truth/theta": theta})
            info = {"documents": corpus.n_docs, "words": corpus.n_words,
                    "tokens": corpus.n_tokens, "output": args.output}
    return comm.bcast_obj(info)
