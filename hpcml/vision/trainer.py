"""Data-parallel training of the recognition networks over MPI ranks.

One process per rank holds a full replica of the network.  Rank 0's initial
parameters are broadcast; every step each rank runs forward and backward on
its block of the global batch (:class:`~hpcml.vision.sampler.DistributedSampler`)
while :class:`~hpcml.vision.buckets.GradientBuckets` averages the gradients
over the ranks from backward hooks; then every rank takes the same SGD step.
The per-rank loss is the *sum* of its samples' losses times ``size / global_batch``,
so the averaged gradient is exactly the gradient of the global batch's mean
loss even when the ranks' blocks differ in size (or are empty): the same
global batch trains the same network on any number of ranks, up to the order
of floating-point additions.

Learning rate: ``lr * gamma ** (epoch // step_epochs)`` ("step") or a cosine
from ``lr`` to 0 over the epochs ("cosine"); a function of the epoch only, so a
resumed run needs no scheduler state.  Dropout draws from a torch generator
seeded per rank; its state is checkpointed per rank.

Checkpoints (``hpcml.checkpoint``) hold the parameters, the SGD momentum
buffers, the position (epoch, step) and every rank's RNG state, and are written
every ``checkpoint.every`` steps and when a SIGTERM/SIGUSR1 arrives on any rank.

:func:`fit_and_score` is the whole of ``hpcml cnn train`` short of the model
file (:func:`hpcml.vision.model_file.save_model`): read a preprocessed file,
hold out a validation split, build, train, score; :func:`score_model_file`
is ``hpcml cnn eval``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from hpcml.errors import ConvergenceError, InputError
from hpcml.partition import block_range
from hpcml.progress import Progress
from hpcml.runtime import keep_freed_memory, refuse_beyond_memory
from hpcml.vision.buckets import GradientBuckets
from hpcml.vision.dataset import validation_split
from hpcml.vision.model_file import build_network, load_model
from hpcml.vision.models import model_input_kind, orientation_pooled_scores
from hpcml.vision.preprocess import load_split
from hpcml.vision.sampler import DistributedSampler
from hpcml.vision.transports import TRANSPORTS


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run (all ranks pass the same values)."""

    epochs: int = 10
    global_batch: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"
    step_epochs: int = 10
    gamma: float = 0.1
    bucket_mb: float = 4.0
    #: Factored gradients for the large fully connected layers
    #: (:class:`~hpcml.vision.buckets.GradientBuckets`, ``factor_rows``).
    factored: bool = True
    #: Gradient transport (:mod:`hpcml.vision.transports`): auto, shared,
    #: allreduce or hierarchical.
    transport: str = "auto"
    seed: int = 0
    eval_batch: int = 64

    def __post_init__(self):
        if self.schedule not in ("step", "cosine", "constant"):
            raise ValueError(f"schedule must be step, cosine or constant, got {self.schedule!r}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {self.transport!r}")
        if self.epochs < 0 or self.global_batch < 1 or self.lr <= 0 or self.bucket_mb <= 0:
            raise ValueError("epochs >= 0, global_batch >= 1, lr > 0 and bucket_mb > 0 required")

    def lr_at(self, epoch):
        """Learning rate used throughout ``epoch``."""
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "cosine":
            return 0.5 * self.lr * (1 + math.cos(math.pi * epoch / max(self.epochs, 1)))
        return self.lr * self.gamma ** (epoch // max(self.step_epochs, 1))


def pick_device(rank):
    """This rank's device: a GPU (rank modulo the visible GPUs) when there is one, else CPU."""
    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


def make_sgd(model, config, device):
    """SGD with the configured momentum and weight decay, fused where PyTorch has a
    fused kernel for ``device`` (one pass over each parameter instead of several;
    on the CPU 6x faster for V-CNN I's 16 M parameters)."""
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay,
                           fused=device.type in ("cpu", "cuda"))


def broadcast_parameters(model, comm):
    """Make every rank's parameters and buffers equal to rank 0's."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            host = tensor.detach().cpu().numpy() if comm.rank == 0 else None
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(comm.bcast(host, root=0))))


def _state_arrays(model, optimizer):
    """Replicated checkpoint content: parameters, buffers and momentum buffers."""
    # Flat names: the checkpoint helper stores each key as one dataset (no sub-groups).
    out = {f"model.{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    for i, p in enumerate(model.parameters()):
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            out[f"momentum.{i}"] = buf.detach().cpu().numpy()
    return out


def _load_state(model, optimizer, arrays, device):
    state = {k[len("model."):]: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()
             if k.startswith("model.")}
    model.load_state_dict(state)
    for i, p in enumerate(model.parameters()):
        key = f"momentum.{i}"
        if key in arrays:
            optimizer.state[p]["momentum_buffer"] = torch.from_numpy(
                np.array(arrays[key])).to(device)


def check_checkpoint_matches(meta, arrays, model, arch):
    """Raise InputError (one line, on every rank) if a checkpoint was written for another network.

    Every rank reads the same manifest and rank 0's replicated file, so every
    rank reaches the same verdict and the error is collective.
    """
    if meta.get("model") != arch:
        raise InputError(f"checkpoint was written for model {meta.get('model')!r}, not {arch!r}",
                         collective=True)
    state = model.state_dict()
    for k, v in state.items():
        saved = arrays.get(f"model.{k}")
        if saved is None or tuple(np.shape(saved)) != tuple(v.shape):
            got = None if saved is None else tuple(np.shape(saved))
            raise InputError(f"checkpoint does not fit this {arch}: parameter {k} has shape "
                             f"{got} in the checkpoint, {tuple(v.shape)} in the model",
                             collective=True)


def train(model, arch, data, comm, config, checkpointer=None, device=None, show_progress=False,
          on_epoch=None):
    """Train ``model`` on ``data`` across the ranks of ``comm``.

    Parameters
    ----------
    model : torch.nn.Module
        Same architecture on every rank; rank 0's initial weights win.
    arch : str
        Registered model name, stored in checkpoints and checked on resume.
    data : SampleSet
        Training samples (every rank holds them; each trains on its blocks).
    comm : hpcml.comm.Comm
    config : TrainConfig
    checkpointer : hpcml.checkpoint.Checkpointer, optional
        Resume from its latest checkpoint, save every ``every`` steps and on signals.
    device : torch.device, optional
        Default :func:`pick_device`.
    show_progress : bool
        Progress bar on rank 0 (stderr).
    on_epoch : callable, optional
        Called on every rank after each epoch with that epoch's metrics (the
        dict described below), outside the epoch's timing; it may communicate,
        since every rank calls it at the same point.

    Notes
    -----
    Sets this process's malloc to reuse freed memory
    (:func:`hpcml.runtime.keep_freed_memory`): the steps then stop paying
    for page faults, and the process keeps its peak memory until it exits.

    Returns
    -------
    dict
        ``history``: per-step global mean losses; ``epochs``: per-epoch metrics
        (``loss``, ``accuracy`` on the training samples seen, ``lr``, ``seconds``,
        ``samples_per_s``); ``steps``: optimiser steps taken in this call.

    Raises
    ------
    hpcml.checkpoint.Checkpointed
        After saving, when a stop signal arrived on any rank (exit code 75).
    InputError
        The data do not suit the network, or the checkpoint was written for another one.
    ConvergenceError
        The mean loss of an epoch is NaN or Inf (on every rank; exit code 2).
    """
    device = device or pick_device(comm.rank)
    keep_freed_memory()
    model.to(device)
    if model_input_kind(model) != data.kind:
        raise InputError(f"{arch} takes {model_input_kind(model)} but the data hold {data.kind}",
                         collective=True)
    with comm.guard():
        # A rank reads its block of each global batch (uint8) and makes it float32.
        refuse_beyond_memory(-(-config.global_batch // comm.size) * 5
                             * int(np.prod(data.sample_shape, dtype=np.int64)),
                             f"a rank's block of a global batch of {config.global_batch} samples "
                             f"of shape {list(data.sample_shape)}", "a smaller --batch or more ranks")
    broadcast_parameters(model, comm)
    optimizer = make_sgd(model, config, device)
    # Dropout streams differ between ranks (else every rank would drop the same units).
    torch.manual_seed(config.seed * 1000003 + comm.rank)
    sampler = DistributedSampler(data.n_samples, config.global_batch, comm.rank, comm.size,
                                 seed=config.seed)
    n_steps = sampler.steps_per_epoch()
    start_epoch, start_step, global_step = 0, 0, 0
    if checkpointer is not None:
        ckpt = checkpointer.latest() if checkpointer.resume else None
        if ckpt is not None:
            check_checkpoint_matches(ckpt.meta, ckpt.replicated, model, arch)
            _load_state(model, optimizer, ckpt.replicated, device)
            _restore_rng(ckpt.sharded, device)
            start_epoch, start_step = int(ckpt.meta["epoch"]), int(ckpt.meta["step"])
            global_step = int(ckpt.iteration)
            if start_step >= n_steps:
                start_epoch, start_step = start_epoch + 1, 0
    try:
        buckets = GradientBuckets(model, comm, bucket_bytes=int(config.bucket_mb * (1 << 20)),
                                  factor_rows=-(-config.global_batch // comm.size)
                                  if config.factored else 0, transport=config.transport)
    except ValueError as exc:  # every rank sees the same layout: the same verdict
        raise InputError(f"cnn train: {exc}", collective=True) from None
    history, epochs, steps_here = [], [], 0
    try:
        for epoch in range(start_epoch, config.epochs):
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at(epoch)
            model.train()
            t0 = time.perf_counter()
            sums = []  # per step: loss sum, correct, count (local)
            bar = Progress(n_steps, comm, f"epoch {epoch + 1}/{config.epochs}") \
                if show_progress else None
            for step, idx, gb in sampler.batches(epoch, start_step):
                optimizer.zero_grad(set_to_none=True)
                buckets.start()
                loss_sum = correct = 0.0
                if len(idx):
                    xb, yb = data.batch(idx, device)
                    out = model(xb)
                    losses = F.cross_entropy(out, yb, reduction="none")
                    (losses.sum() * (comm.size / gb)).backward()
                    loss_sum = float(losses.detach().sum())
                    correct = float((out.detach().argmax(1) == yb).sum())
                buckets.finish()
                optimizer.step()
                global_step += 1
                steps_here += 1
                sums.append((loss_sum, correct, len(idx)))
                if bar is not None:
                    bar.update(step + 1, loss=loss_sum / max(len(idx), 1))
                if checkpointer is not None:
                    checkpointer.step(global_step, lambda: _state(model, optimizer, arch, epoch,
                                                                  step + 1, device))
            start_step = 0
            totals = comm.allreduce(np.asarray(sums, dtype=np.float64).reshape(-1, 3), op="sum")
            seconds = time.perf_counter() - t0
            history.extend((totals[:, 0] / np.maximum(totals[:, 2], 1)).tolist())
            n_seen = totals[:, 2].sum()
            metrics = {"epoch": epoch + 1, "lr": config.lr_at(epoch),
                       "loss": float(totals[:, 0].sum() / max(n_seen, 1)),
                       "accuracy": float(totals[:, 1].sum() / max(n_seen, 1)),
                       "seconds": seconds, "samples_per_s": float(n_seen / max(seconds, 1e-9))}
            epochs.append(metrics)
            if not math.isfinite(metrics["loss"]):
                # Every rank holds the same allreduced loss: the same decision.
                raise ConvergenceError(f"training diverged: the mean loss of epoch {epoch + 1} is "
                                       f"{metrics['loss']} (lower --lr); nothing written", collective=True)
            if on_epoch is not None:
                on_epoch(metrics)
        if checkpointer is not None and steps_here and not checkpointer.due(global_step):
            checkpointer.save(global_step, **_state(model, optimizer, arch, config.epochs, 0,
                                                    device))
    finally:
        buckets.remove()
    return {"history": history, "epochs": epochs, "steps": steps_here,
            "config": asdict(config)}


def _state(model, optimizer, arch, epoch, step, device):
    """Checkpoint content; (epoch, step) is where training continues.

    Dropout on a GPU draws from that device's generator, so it is saved too.
    """
    sharded = {"rng": torch.get_rng_state().numpy().reshape(1, -1)}
    if device.type == "cuda":
        sharded["cuda_rng"] = torch.cuda.get_rng_state(device).numpy().reshape(1, -1)
    return {"replicated": _state_arrays(model, optimizer), "sharded": sharded,
            "meta": {"model": arch, "epoch": epoch, "step": step}}


def _restore_rng(sharded, device):
    torch.set_rng_state(torch.from_numpy(np.asarray(sharded["rng"]).reshape(-1).astype(np.uint8)))
    if device.type == "cuda" and "cuda_rng" in sharded:
        state = np.asarray(sharded["cuda_rng"]).reshape(-1).astype(np.uint8)
        torch.cuda.set_rng_state(torch.from_numpy(state), device)


def evaluate(model, data, comm, batch_size=64, device=None):
    """Orientation-pooled class scores and metrics of ``data``, gathered to rank 0.

    Objects are split across ranks in contiguous blocks; each rank scores its
    objects (mean softmax over orientations) and rank 0 receives them all.

    Returns
    -------
    dict on rank 0, None elsewhere
        ``scores`` (n_objects, n_classes), ``labels``, ``accuracy``,
        ``per_class_accuracy`` (NaN for a class without test objects),
        ``confusion`` (true x predicted counts).
    """
    device = device or pick_device(comm.rank)
    model.to(device).eval()
    lo, hi = block_range(data.n_objects, comm.size, comm.rank)
    n_classes = len(data.classes)
    local = np.zeros((hi - lo, n_classes))
    for start in range(lo, hi, batch_size):
        stop = min(start + batch_size, hi)
        x = data.objects(np.arange(start, stop), device)
        local[start - lo:stop - lo] = orientation_pooled_scores(model, x, batch_size).cpu().numpy()
    scores = comm.gatherv(local, root=0)
    if comm.rank != 0:
        return None
    return metrics_from_scores(scores, data.y, n_classes)


def metrics_from_scores(scores, labels, n_classes):
    """Accuracy, per-class accuracy and confusion matrix of class scores."""
    labels = np.asarray(labels)
    pred = np.asarray(scores).argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    per_class = np.full(n_classes, np.nan)
    counts = confusion.sum(axis=1)
    has = counts > 0
    per_class[has] = np.diag(confusion)[has] / counts[has]
    return {"scores": np.asarray(scores), "labels": labels,
            "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
            "per_class_accuracy": per_class, "confusion": confusion}


@dataclass
class FitResult:
    """What :func:`fit_and_score` returns.

    Attributes
    ----------
    model : torch.nn.Module
        The trained network (the same on every rank).
    meta : dict
        Its description, the ``meta`` of :func:`hpcml.vision.model_file.save_model`.
    training : dict
        What :func:`train` returned.
    accuracy : dict of str to float
        Split (``"val"``, ``"test"``) to orientation-pooled accuracy, on every
        rank; a split without objects is left out.
    objects : dict of str to int
        Split to its number of objects (the same splits as ``accuracy``).
    scores : dict of str to dict
        On rank 0, split to the metrics of :func:`evaluate`; empty elsewhere.
    """

    model: object
    meta: dict
    training: dict
    accuracy: dict = field(default_factory=dict)
    objects: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)


def fit_and_score(data_path, model_name, comm, config, width=1.0, dropout=None, val_fraction=0.0,
                  checkpointer=None, show_progress=False):
    """Train a network on a preprocessed file and score its validation and test splits.

    Parameters
    ----------
    data_path : str
        Output of ``hpcml data voxelize|render`` (:func:`hpcml.vision.preprocess.preprocess`).
    model_name : {"voxnet", "vcnn1", "vcnn2", "mvcnn"}
    comm : hpcml.comm.Comm
    config : TrainConfig
        Its ``seed`` also draws the validation split and the initial weights.
    width : float
        Scale of every channel/unit count (1.0: the published size).
    dropout : float, optional
        Overrides the network's dropout rate.
    val_fraction : float
        Fraction of each class's training objects held out for validation, in [0, 1).
    checkpointer : hpcml.checkpoint.Checkpointer, optional
        As in :func:`train`.
    show_progress : bool
        Progress bar on rank 0 (stderr).

    Returns
    -------
    FitResult

    Raises
    ------
    InputError
        Unreadable data, a network that cannot take its samples, or a
        checkpoint of another network (on every rank).
    hpcml.checkpoint.Checkpointed
        As in :func:`train`.
    """
    full = load_split(data_path, "train", comm)
    test = load_split(data_path, "test", comm)
    train_idx, val_idx = validation_split(full.y, val_fraction, config.seed)
    data, val = full.subset(train_idx), full.subset(val_idx)
    meta = {"model": model_name, "width": width, "dropout": dropout, "classes": full.classes,
            "sample_shape": list(full.sample_shape), "kind": full.kind,
            "val_fraction": val_fraction, "seed": config.seed}
    # Seeded before building: rank 0's initial weights (broadcast by train) follow the seed.
    torch.manual_seed(config.seed)
    model = build_network(meta)
    if model.input_kind != full.kind:
        raise InputError(f"{model_name} takes {model.input_kind} but {data_path} holds {full.kind}",
                         collective=True)
    training = train(model, model_name, data, comm, config, checkpointer,
                     show_progress=show_progress)
    result = FitResult(model, meta, training)
    for name, split in (("val", val), ("test", test)):
        if split.n_objects == 0:
            continue
        metrics = evaluate(model, split, comm, batch_size=config.eval_batch)
        result.objects[name] = split.n_objects
        if comm.rank == 0:
            result.scores[name] = metrics
            result.accuracy[name] = metrics["accuracy"]
    result.accuracy = comm.bcast_obj(result.accuracy)
    return result


def score_model_file(model_path, data_path, comm):
    """Orientation-pooled test metrics of a model file on the test split of a data file.

    Parameters
    ----------
    model_path : str
        Output of ``hpcml cnn train`` (:func:`hpcml.vision.model_file.save_model`).
    data_path : str
        A preprocessed file with the classes and sample shape the network was trained on.
    comm : hpcml.comm.Comm

    Returns
    -------
    dict on rank 0, None elsewhere
        The metrics of :func:`evaluate` with ``per_class_accuracy`` as a dict
        from class name to accuracy (None for a class without test objects),
        plus ``model`` (the network's name) and ``classes``.

    Raises
    ------
    InputError
        Unreadable files, or data that do not suit the network (on every rank).
    """
    meta, params, _ = load_model(model_path, comm)
    test = load_split(data_path, "test", comm)
    classes = meta["classes"]
    if classes != test.classes:
        raise InputError(f"{model_path} was trained on classes {classes}, "
                         f"{data_path} has {test.classes}", collective=True)
    shape = tuple(meta["sample_shape"])
    if shape != test.sample_shape:
        raise InputError(f"{model_path} expects samples of shape {list(shape)}, "
                         f"{data_path} has {list(test.sample_shape)}", collective=True)
    metrics = evaluate(build_network(meta, params), test, comm)
    if metrics is None:
        return None
    per_class = {c: (None if np.isnan(a) else float(a))
                 for c, a in zip(classes, metrics["per_class_accuracy"])}
    return {**metrics, "per_class_accuracy": per_class, "model": meta["model"], "classes": classes}
