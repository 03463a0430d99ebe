"""FusionNet's late fusion: a weighted sum of the class scores of several networks.

Weights live on the simplex and are chosen by exhaustive search on a grid of
step ``step`` to maximise accuracy on a validation split (Hegde & Zadeh choose
them "by cross-validation"; a held-out split is the cheap version).  Ties are
broken by the lower validation log loss, then by the first candidate in
lexicographic order, so the choice is deterministic.
"""

from __future__ import annotations

import itertools

import numpy as np


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
