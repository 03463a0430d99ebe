"""Trained networks on disk: the model file of ``hpcml cnn train``, and networks rebuilt from it.

A model file (written through :func:`hpcml.io.hdf5.write_output`, so
atomically and with provenance) holds

- ``params/<name>``: the network's state dict, one array per entry;
- ``val/{scores,labels,confusion}`` and ``test/{scores,labels,confusion}``:
  the orientation-pooled class scores of each scored split (a split without
  objects is left out);
- the root attribute ``model`` (the registered name) and ``cnn_model``: the
  JSON description ``{"model", "width", "dropout", "classes", "sample_shape",
  "kind", "val_fraction", "seed"}`` from which :func:`build_network` rebuilds
  the network.

``hpcml cnn eval`` and ``hpcml cnn fuse`` read it with :func:`load_model`.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np

from hpcml.errors import InputError
from hpcml.io.hdf5 import write_output


def build_network(meta, params=None):
    """The network a description names, with its parameters when given.

    Parameters
    ----------
    meta : dict
        At least ``model``, ``classes``, ``sample_shape``, ``width`` and
        ``dropout`` (the ``cnn_model`` description of a model file).
    params : dict of str to array, optional
        A state dict as numpy arrays (``load_model``'s second item).

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    InputError
        The description names no network or one that cannot take its
        samples; every rank sees the same description, so the error is
        collective.
    """
    from hpcml.vision.models import build_model

    try:
        model = build_model(meta["model"], len(meta["classes"]), tuple(meta["sample_shape"]),
                            width=meta["width"], dropout=meta["dropout"])
    except ValueError as exc:
        raise InputError(str(exc), collective=True) from None
    if params is not None:
        import torch

        model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in params.items()})
    return model


def save_model(path, comm, model, meta, scores, params=None):
    """Write a model file (collective).

    Parameters
    ----------
    path : str
    comm : hpcml.comm.Comm
    model : torch.nn.Module
        Its state dict is written from rank 0's copy.
    meta : dict
        The network's description (see the module docstring); stored as the
        ``cnn_model`` JSON attribute.
    scores : dict of str to dict
        On rank 0, split name (``"val"``, ``"test"``) to the metrics of
        :func:`hpcml.vision.trainer.evaluate` (``scores``, ``labels``,
        ``confusion`` are written); ignored on the other ranks.
    params : dict, optional
        The job's parameters, for the provenance.
    """
    small = {}
    if comm.rank == 0:
        for split, metrics in scores.items():
            for key in ("scores", "labels", "confusion"):
                small[f"{split}/{key}"] = metrics[key]
        for k, v in model.state_dict().items():
            small[f"params/{k}"] = v.detach().cpu().numpy()
    write_output(path, comm, small=small,
                 attrs={"model": meta["model"], "cnn_model": json.dumps(meta)}, params=params)


def load_model(path, comm):
    """Read a model file on every rank.

    Returns
    -------
    meta : dict
        The network's description.
    params : dict of str to ndarray
        Its state dict.
    scores : dict of str to ndarray
        Stored ``val/...`` and ``test/...`` arrays, by their path in the file.

    Raises
    ------
    InputError
        Missing, unreadable, or not written by ``hpcml cnn train`` (on every rank).
    """
    content = None
    with comm.guard():
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file")
        try:
            with comm.io(), h5py.File(path, "r") as handle:
                if "cnn_model" not in handle.attrs or "params" not in handle:
                    raise InputError(f"{path}: not a model file from `hpcml cnn train`")
                meta = json.loads(handle.attrs["cnn_model"])
                params = {k: v[()] for k, v in handle["params"].items()}
                bad = [k for k, v in params.items() if not np.isfinite(v).all()]
                if bad:
                    raise InputError(f"{path}: parameter {bad[0]} holds NaN or Inf (a diverged training)")
                scores = {f"{g}/{k}": handle[g][k][()] for g in ("val", "test") if g in handle
                          for k in handle[g]}
                content = (meta, params, scores)
        except OSError as exc:
            raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
    return content
