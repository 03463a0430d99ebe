"""``hpcml lda train|infer|topics`` and ``hpcml data corpus convert|synthetic``.

Corpus inputs (``--input``) are recognised by name unless ``--format`` says:
``FILE.h5[:/GROUP]`` (HDF5 CSR corpus, group ``corpus`` by default; each
rank reads only its documents), ``docword.NAME.txt[.gz]`` (UCI bag of words,
with ``--vocab vocab.NAME.txt``), anything else plain text (one document
per line).  Each rank takes a contiguous range of documents holding about
the same number of tokens.
"""

import logging
import os
import time

import numpy as np

from hpcml.checkpoint import Checkpointer, add_arguments
from hpcml.errors import InputError
from hpcml.io.corpus import Corpus, read_hdf5, read_hdf5_info, token_ptr, write_hdf5
from hpcml.io.hdf5 import write_output
from hpcml.io.uci import ENGLISH_STOP_WORDS, read_stop_words, read_text, read_uci, write_uci
from hpcml.kernels import lda as kern
from hpcml.topics.lda import EXCHANGES, INITS, LAYOUTS, LDA, SAMPLERS, heldout_mask

log = logging.getLogger("hpcml")

FORMATS = ("auto", "hdf5", "uci", "text")


# ----------------------------------------------------------------- corpora
def corpus_format(path, fmt="auto"):
    """The format of a corpus path: 'hdf5', 'uci' or 'text'."""
    if fmt != "auto":
        return fmt
    base = os.path.basename(path.split(":")[0])
    if base.endswith((".h5", ".hdf5")):
        return "hdf5"
    if base.startswith("docword."):
        return "uci"
    return "text"


def _split_spec(path):
    file, _, group = path.partition(":")
    return file, group.strip("/") or "corpus"


def token_cuts(token_ptr, size):
    """Document boundaries giving each of ``size`` ranks about equal tokens."""
    n_docs = token_ptr.shape[0] - 1
    cuts = np.searchsorted(token_ptr, np.linspace(0, token_ptr[-1], size + 1), side="left")
    cuts[0], cuts[-1] = 0, n_docs
    return np.maximum.accumulate(np.minimum(cuts, n_docs))


def read_whole(args, vocab=None):
    """Read a UCI or text corpus entirely (every rank reads; the files are read-only)."""
    fmt = corpus_format(args.input, args.format)
    if fmt == "uci":
        return read_uci(args.input, args.vocab)
    if fmt == "text":
        stop = read_stop_words(args.stop_words) if args.stop_words else ENGLISH_STOP_WORDS
        return read_text(args.input, stop_words=stop, min_count=args.min_count,
                         max_doc_freq=args.max_doc_freq, vocab=vocab)
    file, group = _split_spec(args.input)
    n_docs, _, _, _ = read_hdf5_info(file, group)
    return read_hdf5(file, group, 0, n_docs)


def load_local(args, comm, vocab=None):
    """This rank's documents and the global document count (collective)."""
    fmt = corpus_format(args.input, args.format)
    with comm.io(), comm.guard():
        if fmt == "hdf5":
            file, group = _split_spec(args.input)
            n_docs, _, tptr, _ = read_hdf5_info(file, group)
            cuts = token_cuts(tptr, comm.size)
            local = read_hdf5(file, group, int(cuts[comm.rank]), int(cuts[comm.rank + 1]))
        else:
            whole = read_whole(args, vocab)
            cuts = token_cuts(token_ptr(whole), comm.size)
            local = whole.slice(int(cuts[comm.rank]), int(cuts[comm.rank + 1]))
            n_docs = whole.n_docs
    return local, n_docs


def take_docs(corpus, keep):
    """The documents of ``corpus`` where ``keep`` is true, and their global ids."""
    ids = np.arange(corpus.n_docs) + corpus.doc_offset
    lengths = np.diff(corpus.indptr)
    entry_keep = np.repeat(keep, lengths)
    indptr = np.zeros(int(keep.sum()) + 1, np.int64)
    np.cumsum(lengths[keep], out=indptr[1:])
    sub = Corpus(indptr, corpus.indices[entry_keep], corpus.counts[entry_keep],
                 corpus.n_words, corpus.vocab, 0)
    return sub, ids[keep]


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
    g.add_argument("--sampler", choices=SAMPLERS, default="mh",
                   help="mh: O(1) Metropolis-Hastings per token; dense: exact O(K) reference")
    g.add_argument("--mh-steps", type=int, default=2, help="proposal pairs per token (mh)")
    g.add_argument("--init", choices=INITS, default="random",
                   help="initial topics: random, or progressive (each token drawn given the "
                        "tokens before it; costs about a sweep, saves many at large K)")
    g = train.add_argument_group("distribution")
    g.add_argument("--layout", choices=LAYOUTS, default="auto",
                   help="shared: ranks on one node share one copy of the counts and take "
                        "turns on blocks of words; replicated: each rank its own copy, "
                        "changes exchanged (the options below); auto: shared when all ranks "
                        "run on one node")
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
    g.add_argument("--top-words", type=int, default=10, help="words printed per topic")
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
    topics.add_argument("--top-words", type=int, default=10)
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


def run_train(args, comm):
    """Train, print the top words, write the model; returns the summary."""
    _check_train_args(args)
    alpha = _parse_alpha(args.alpha, args.topics)
    local, n_docs = load_local(args, comm)
    ids = np.arange(local.n_docs) + local.doc_offset
    held = heldout_mask(ids, args.heldout)
    train_docs, train_ids = take_docs(local, ~held)
    heldout = take_docs(local, held)[0] if args.heldout > 0 else None
    try:
        model = LDA(args.topics, alpha=alpha, beta=args.beta, sampler=args.sampler,
                    mh_steps=args.mh_steps, sync_every=args.sync_every, staleness=args.staleness,
                    exchange=args.exchange, optimize_every=args.optimize_every, seed=args.seed,
                    init=args.init, layout=args.layout)
    except InputError as exc:
        raise InputError(str(exc), collective=True) from None
    checkpointer = Checkpointer.from_args(args, comm)
    saved = checkpointer.latest() if checkpointer.resume else None
    if saved is not None:
        model.alpha = saved.replicated["alpha"]
        model.beta = float(saved.replicated["beta"])
        model.setup(train_docs, comm, z=saved.sharded["z"], rng_state=saved.sharded["rng"])
        model.iteration = saved.iteration
        model.history = _history_from(saved)
        log.info("resuming LDA after iteration %d", saved.iteration)
    else:
        model.setup(train_docs, comm)
    mem = model.memory_bytes()
    largest = comm.allreduce_scalar(mem["total"], "max")
    log.info("LDA: %d documents (%d held out), V = %d, %d tokens, K = %d on %d rank(s); "
             "%s layout; sampler state %.1f MB on the largest rank, %.1f MB of it shared by "
             "the ranks of a node (%d B per own token, %d B per token of the corpus, %d B per "
             "word-topic cell)",
             n_docs, comm.allreduce_scalar(int(held.sum())), model.n_words, model.n_tokens,
             args.topics, comm.size, "shared" if model.shared else "replicated",
             largest / 2**20, mem["shared"] / 2**20, mem["bytes_per_token"],
             mem["bytes_per_corpus_token"], mem["bytes_per_cell"])

    def report(rec):
        parts = [f"iteration {rec['iteration']}"]
        if "ll_per_token" in rec:
            parts.append(f"log-likelihood/token {rec['ll_per_token']:.4f}")
        if "perplexity" in rec:
            parts.append(f"held-out perplexity {rec['perplexity']:.2f}")
        parts.append(f"{rec['tokens_per_s'] / 1e6:.2f} M tokens/s, compute {rec['compute_s']:.3f} s, "
                     f"comm {rec['comm_s']:.3f} s, {rec['bytes'] / 1e6:.2f} MB (rank 0)")
        log.info(", ".join(parts))

    def checkpoint(m):
        state = _checkpoint_state(m)
        if checkpointer.due(m.iteration):
            checkpointer.save(m.iteration, **state)
        if checkpointer.stop_requested():
            checkpointer.stop(m.iteration, **state)
        return False

    model.fit(args.iterations, heldout=heldout, eval_every=args.eval_every,
              heldout_sweeps=args.heldout_sweeps, ll_every=args.ll_every, log=report,
              checkpoint=checkpoint)
    final_ll = model.log_likelihood()
    vocab = local.vocab
    top = model.top_words(args.top_words, vocab)
    if comm.rank == 0 and not args.json:
        for k, words in enumerate(top):
            print(f"topic {k:3d}: {' '.join(map(str, words))}", flush=True)
    summary = {"documents": n_docs, "tokens": model.n_tokens, "topics": args.topics,
               "iterations": model.iteration, "log_likelihood": final_ll,
               "ll_per_token": final_ll / max(model.n_tokens, 1), "ranks": comm.size,
               "layout": "shared" if model.shared else "replicated",
               "alpha_mean": float(model.alpha.mean()), "beta": model.beta,
               "top_words": top}
    perps = [r["perplexity"] for r in model.history if "perplexity" in r]
    if perps:
        summary["perplexity"] = perps[-1]
    if args.output:
        _write_model(args.output, comm, model, vocab, train_ids, vars(args))
        summary["output"] = args.output
    model.close()
    return summary


def _series(history, key):
    return np.array([r.get(key, np.nan) for r in history], dtype=np.float64)


def _checkpoint_state(model):
    h = model.history
    own = np.array([[r["compute_s"], r["comm_s"], r["bytes"]] for r in h]).reshape(-1, 3)
    return {"replicated": {"alpha": model.alpha, "beta": np.array(model.beta),
                           "log_likelihood": _series(h, "log_likelihood"),
                           "perplexity": _series(h, "perplexity"),
                           "tokens_per_s": _series(h, "tokens_per_s")},
            "sharded": {"z": model.z, "rng": model.state, "timing": own}}


def _history_from(saved):
    rep, own = saved.replicated, saved.sharded["timing"]
    history = []
    for i in range(own.shape[0]):
        rec = {"iteration": i + 1, "compute_s": own[i, 0], "comm_s": own[i, 1],
               "bytes": own[i, 2], "tokens_per_s": rep["tokens_per_s"][i], "modes": []}
        for key in ("log_likelihood", "perplexity"):
            if not np.isnan(rep[key][i]):
                rec[key] = float(rep[key][i])
        history.append(rec)
    return history


def _write_model(path, comm, model, vocab, doc_ids, params):
    h = model.history
    own = np.array([[r["compute_s"], r["comm_s"], r["bytes"]] for r in h]).reshape(1, -1, 3)
    per_rank = comm.allgatherv(own)  # ranks x iterations x 3
    small = {"word_topic": model.word_topic().astype(np.int32), "topic_totals": model.nk,
             "alpha": model.alpha, "beta": np.array(model.beta),
             "history/log_likelihood": _series(h, "log_likelihood"),
             "history/perplexity": _series(h, "perplexity"),
             "history/tokens_per_s": _series(h, "tokens_per_s"),
             "history/compute_s": per_rank[:, :, 0].T, "history/comm_s": per_rank[:, :, 1].T,
             "history/bytes": per_rank[:, :, 2].T.astype(np.int64)}
    if vocab is not None:
        small["vocab"] = np.array([w.encode("utf-8") for w in vocab])
    write_output(path, comm, small=small,
                 sharded={"doc_topics": model.doc_topics(), "doc_ids": doc_ids.astype(np.int64)},
                 attrs={"n_topics": model.n_topics, "n_words": model.n_words,
                        "n_tokens": model.n_tokens},
                 params={k: v for k, v in params.items() if k != "handler"})


# ------------------------------------------------------------ infer/topics
def _read_model(path, comm):
    import h5py
    model = None
    with comm.io(), comm.guard():
        if comm.rank == 0:
            try:
                with h5py.File(path, "r") as f:
                    model = {"word_topic": f["word_topic"][...].astype(np.int32),
                             "topic_totals": f["topic_totals"][...].astype(np.int64),
                             "alpha": f["alpha"][...].astype(np.float64),
                             "beta": float(f["beta"][()]),
                             "vocab": [v.decode("utf-8") for v in f["vocab"][...]]
                             if "vocab" in f else None}
            except (OSError, KeyError) as exc:
                raise InputError(f"{path}: not an LDA model file ({exc})") from None
    return comm.bcast_obj(model)


def run_infer(args, comm):
    """Fold new documents into a trained model; write their topic proportions."""
    if args.sweeps < 1 or args.mh_steps < 1:
        raise InputError("lda infer: --sweeps and --mh-steps must be >= 1", collective=True)
    model = _read_model(args.model, comm)
    nwk, nk, alpha, beta = (model["word_topic"], model["topic_totals"], model["alpha"],
                            model["beta"])
    local, n_docs = load_local(args, comm, vocab=model["vocab"])
    comm.agree(local.n_words == nwk.shape[0],
               f"lda infer: {args.input} has {local.n_words} words, the model {nwk.shape[0]}")
    doc_ptr, words = local.tokens()
    state = kern.seed_state(args.seed, comm.rank)
    tic = time.perf_counter()
    ndk = kern.fold_in(doc_ptr, words, nwk, nk, alpha, beta, state, sweeps=args.sweeps,
                       mh_steps=args.mh_steps)
    seconds = time.perf_counter() - tic
    theta = ((ndk + alpha) / (ndk.sum(1, keepdims=True) + alpha.sum())).astype(np.float32)
    tokens = comm.allreduce_scalar(int(words.shape[0]))
    slowest = comm.allreduce_scalar(seconds, "max")
    log.info("lda infer: %d documents, %d tokens, %d sweeps in %.2f s (%.2f M tokens/s)",
             n_docs, tokens, args.sweeps, slowest, tokens * args.sweeps / max(slowest, 1e-9) / 1e6)
    summary = {"documents": n_docs, "tokens": tokens, "sweeps": args.sweeps}
    if args.output:
        ids = np.arange(local.n_docs, dtype=np.int64) + local.doc_offset
        write_output(args.output, comm, sharded={"doc_topics": theta, "doc_ids": ids},
                     params={k: v for k, v in vars(args).items() if k != "handler"})
        summary["output"] = args.output
    return summary


def run_topics(args, comm):
    """Print the most probable words of every topic of a model."""
    model = _read_model(args.model, comm)
    nwk, vocab = model["word_topic"], model["vocab"]
    order = np.argsort(-nwk.T.astype(np.int64), axis=1, kind="stable")[:, :args.top_words]
    top = [[vocab[i] if vocab else int(i) for i in row] for row in order]
    if comm.rank == 0 and not args.json:
        for k, ws in enumerate(top):
            print(f"topic {k:3d}: {' '.join(map(str, ws))}", flush=True)
    return {"topics": top}


# ------------------------------------------------------------ data corpus
def _uci_vocab_path(docword, given):
    if given:
        return given
    folder, base = os.path.split(docword)
    base = base[:-3] if base.endswith(".gz") else base
    return os.path.join(folder, base.replace("docword.", "vocab.", 1))


def _write_corpus(path, corpus, vocab_output=None, extra=None):
    fmt = corpus_format(path)
    if fmt == "hdf5":
        file, group = _split_spec(path)
        write_hdf5(file, corpus, group, extra=extra)
    elif fmt == "uci":
        write_uci(path, corpus, _uci_vocab_path(path, vocab_output) if corpus.vocab else None)
    else:
        raise InputError(f"{path}: output must be FILE.h5[:/GROUP] or docword.NAME.txt[.gz]")


def run_convert(args, comm):
    """Convert a corpus (rank 0 reads and writes)."""
    if not args.output:
        raise InputError("data corpus convert: --output is required", collective=True)
    info = None
    with comm.io(), comm.guard():
        if comm.rank == 0:
            corpus = read_whole(args)
            _write_corpus(args.output, corpus, args.vocab_output)
            info = {"documents": corpus.n_docs, "words": corpus.n_words,
                    "tokens": corpus.n_tokens, "output": args.output}
    return comm.bcast_obj(info)


def run_synthetic(args, comm):
    """Draw a corpus from LDA (rank 0) and write it with its true topics."""
    from hpcml.topics.synthetic import lda_corpus

    if not args.output:
        raise InputError("data corpus synthetic: --output is required", collective=True)
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
            _write_corpus(args.output, corpus,
                          extra={"truth/phi": phi, "truth/theta": theta})
            info = {"documents": corpus.n_docs, "words": corpus.n_words,
                    "tokens": corpus.n_tokens, "output": args.output}
    return comm.bcast_obj(info)
