"""FusionNet's late fusion: a weighted sum of the class scores of several networks.

Weights live on the simplex and are chosen by exhaustive search on a grid of
step ``step`` to maximise accuracy on a validation split (Hegde & Zadeh choose
them "by cross-validation"; a held-out split is the cheap version).  Ties are
broken by the lower validation log loss, then by the first candidate in
lexicographic order, so the choice is deterministic.

:func:`fuse_models` is ``hpcml cnn fuse``: it checks that model files were
scored on the same objects, chooses the weights and reports test accuracies.
"""

from __future__ import annotations

import itertools

import numpy as np

from hpcml.errors import InputError


def simplex_grid(n_models, step):
    """All weight vectors with entries in multiples of ``step`` that sum to 1."""
    n = int(round(1.0 / step))
    if not np.isclose(n * step, 1.0):
        raise ValueError(f"step must divide 1, got {step}")
    out = [np.array(c + (n - sum(c),)) / n
           for c in itertools.product(range(n + 1), repeat=n_models - 1) if sum(c) <= n]
    return np.array(out)


def fuse(scores, weights):
    """Weighted sum of score arrays: ``sum_m weights[m] * scores[m]``, shape (n, n_classes)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.tensordot(np.asarray(weights, dtype=np.float64), scores, axes=1)


def choose_weights(scores, labels, step=0.1):
    """Fusion weights that maximise validation accuracy.

    Parameters
    ----------
    scores : array (n_models, n_samples, n_classes)
        Class probabilities of each network on the validation split.
    labels : array (n_samples,)
    step : float
        Grid spacing on the simplex.

    Returns
    -------
    weights : ndarray (n_models,)
    accuracy : float
        Validation accuracy of the fused scores.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 3 or scores.shape[1] != len(labels):
        raise ValueError("scores must be (n_models, n_samples, n_classes) matching labels")
    best_key, best = None, None
    for w in simplex_grid(scores.shape[0], step):
        fused = fuse(scores, w)
        acc = float((fused.argmax(axis=1) == labels).mean())
        nll = float(-np.log(np.clip(fused[np.arange(len(labels)), labels], 1e-12, None)).mean())
        key = (-acc, round(nll, 12))
        if best_key is None or key < best_key:
            best_key, best = key, (w, acc)
    return best


def _check_fusable(models, names):
    """Raise InputError unless every model has val and test scores of the same objects."""
    first_classes = models[0][0]["classes"]
    for path, (meta, _, scores) in zip(names, models):
        if meta["classes"] != first_classes:
            raise InputError(f"{path}: trained on other classes than {names[0]}")
        for key in ("val/scores", "test/scores"):
            if key not in scores:
                split = key.split("/")[0]
                hint = " (train with --val-fraction > 0)" if split == "val" else ""
                raise InputError(f"{path}: no {split} scores stored{hint}")
    for key in ("val/labels", "test/labels"):
        ref = models[0][2][key]
        for path, (_, _, scores) in zip(names[1:], models[1:]):
            if not np.array_equal(scores[key], ref):
                raise InputError(f"{path}: its {key.split('/')[0]} objects differ from {names[0]}'s "
                                 "(same data file, seed and --val-fraction needed)")


def fuse_models(models, names, comm, step=0.05):
    """FusionNet late fusion of trained networks: weights from validation, test accuracy.

    Rank 0 computes; every rank gets the result.

    Parameters
    ----------
    models : list of tuple
        What :func:`hpcml.vision.model_file.load_model` returned for each
        network; all trained on the same data file with the same seed and
        validation fraction.
    names : list of str
        The models' names (their paths), for messages.
    comm : hpcml.comm.Comm
    step : float
        Weight grid spacing (must divide 1).

    Returns
    -------
    dict
        ``weights`` (list, one per model), ``val_accuracy`` of the fused
        scores, ``single_test_accuracy`` (list, each model alone),
        ``fused_test_accuracy``.

    Raises
    ------
    InputError
        Models of other classes, without validation or test scores, or
        scored on other objects (on every rank).
    """
    # Here, not at the top: choosing weights needs no torch, the trainer module does.
    from hpcml.vision.trainer import metrics_from_scores

    summary = None
    with comm.guard():
        if comm.rank == 0:
            _check_fusable(models, names)
            val = np.stack([s["val/scores"] for _, _, s in models])
            test = np.stack([s["test/scores"] for _, _, s in models])
            weights, val_acc = choose_weights(val, models[0][2]["val/labels"], step=step)
            n_classes = val.shape[2]
            test_labels = models[0][2]["test/labels"]
            singles = [metrics_from_scores(t, test_labels, n_classes)["accuracy"] for t in test]
            fused = metrics_from_scores(fuse(test, weights), test_labels, n_classes)
            summary = {"weights": weights.tolist(), "val_accuracy": val_acc,
                       "single_test_accuracy": singles, "fused_test_accuracy": fused["accuracy"]}
    return comm.bcast_obj(summary)
