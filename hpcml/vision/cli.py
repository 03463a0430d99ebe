"""``hpcml cnn train|eval|fuse`` and ``hpcml data shapes|voxelize|render``.

A typical run::

    hpcml data shapes --output runs/shapes --train 40 --test 10
    mpiexec -n 2 hpcml data voxelize runs/shapes --output runs/vox.h5
    mpiexec -n 2 hpcml cnn train --data runs/vox.h5 --model vcnn1 --output runs/vcnn1.h5
    mpiexec -n 2 hpcml cnn fuse runs/vcnn1.h5 runs/vcnn2.h5 runs/mvcnn.h5

``cnn train`` writes the trained parameters together with the orientation-
pooled class scores of the validation split (``--val-fraction`` of the
training objects, held out) and of the test split; ``cnn fuse`` chooses the
fusion weights on the validation scores and reports test accuracy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

import h5py
import numpy as np

from hpcml.command import command
from hpcml.errors import InputError

log = logging.getLogger("hpcml")


def _positive(kind):
    def check(text):
        value = kind(text)
        if value <= 0:
            raise ValueError(text)
        return value
    check.__name__ = kind.__name__
    return check


def register(subparsers, common):
    """Add ``cnn train|eval|fuse`` and ``data shapes|voxelize|render``."""
    from hpcml.checkpoint import add_arguments
    from hpcml.cli import Parser, data_commands

    data = data_commands(subparsers)
    shapes = data.add_parser("shapes", parents=[common], help="a ModelNet-style tree of synthetic "
                             "OFF meshes (10 classes)",
                             description="Write ROOT/<class>/{train,test}/*.off (--output ROOT).")
    shapes.add_argument("--train", type=_positive(int), default=40, help="objects per class (train)")
    shapes.add_argument("--test", type=_positive(int), default=10, help="objects per class (test)")
    shapes.add_argument("--classes", default=None, help="comma-separated subset of classes")
    shapes.set_defaults(handler=run_shapes)

    for name, helptext in (("voxelize", "meshes -> occupancy grids (HDF5)"),
                           ("render", "meshes -> multi-view images (HDF5)")):
        p = data.add_parser(name, parents=[common], help=helptext,
                            description="Convert ROOT/<class>/{train,test}/*.off|stl|obj into "
                            "--output FILE.h5; ranks split the files.")
        p.add_argument("root", help="dataset directory (ModelNet layout)")
        p.add_argument("--on-bad-mesh", choices=["skip", "fail"], default="fail",
                       help="skip unreadable meshes (warning naming each) or stop (default)")
        if name == "voxelize":
            p.add_argument("--grid", type=_positive(int), default=30, help="voxels per side (30)")
            p.add_argument("--object-size", type=_positive(float), default=24,
                           help="voxels spanned by the object's longest side (24)")
            p.add_argument("--orientations", type=_positive(int), default=12,
                           help="rotations about the up axis per object (12)")
            p.add_argument("--solid", action="store_true", help="fill closed interiors")
        else:
            p.add_argument("--views", type=int, choices=[12, 20], default=12)
            p.add_argument("--size", type=_positive(int), default=32, help="image side in pixels")
            p.add_argument("--mode", choices=["depth", "shaded"], default="shaded")
            p.add_argument("--orientations", type=_positive(int), default=1,
                           help="rotations about the up axis per object (1)")
        p.set_defaults(handler=run_preprocess, kind="voxels" if name == "voxelize" else "views")

    cnn = subparsers.add_parser("cnn", help="3-D object recognition: V-CNN I/II, MV-CNN, VoxNet, "
                                "FusionNet")
    sub = cnn.add_subparsers(dest="cnn_command", metavar="ACTION", parser_class=Parser)
    sub.required = True

    train = sub.add_parser("train", parents=[common], help="data-parallel training",
                           description="Train a network on a file from `hpcml data voxelize|render`; "
                           "--output gets the parameters and the validation/test class scores.")
    train.add_argument("--data", required=True, help="preprocessed HDF5 file")
    train.add_argument("--model", required=True, choices=["voxnet", "vcnn1", "vcnn2", "mvcnn"])
    train.add_argument("--width", type=_positive(float), default=1.0,
                       help="scale of every channel/unit count (1.0: the published size)")
    train.add_argument("--dropout", type=float, default=None, help="override the dropout rate")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch", type=_positive(int), default=32, help="global batch size")
    train.add_argument("--lr", type=_positive(float), default=0.01)
    train.add_argument("--momentum", type=float, default=0.9)
    train.add_argument("--weight-decay", type=float, default=5e-4)
    train.add_argument("--schedule", choices=["step", "cosine", "constant"], default="step")
    train.add_argument("--step-epochs", type=_positive(int), default=10,
                       help="epochs between learning-rate drops (step schedule)")
    train.add_argument("--gamma", type=_positive(float), default=0.1, help="learning-rate drop factor")
    train.add_argument("--bucket-mb", type=_positive(float), default=4.0,
                       help="gradient bucket size in MiB")
    train.add_argument("--factored-gradients", action=argparse.BooleanOptionalAction,
                       default=True,
                       help="ranks on one node exchange the inputs and output gradients of "
                            "large fully connected layers instead of their weight gradients")
    train.add_argument("--val-fraction", type=float, default=0.0,
                       help="fraction of training objects held out for choosing fusion weights")
    add_arguments(train)
    train.set_defaults(handler=run_train)

    ev = sub.add_parser("eval", parents=[common], help="evaluate a trained network",
                        description="Orientation-pooled accuracy, per-class accuracy and confusion "
                        "matrix of a model file on the test split of --data.")
    ev.add_argument("model_file", help="output of `hpcml cnn train`")
    ev.add_argument("--data", required=True, help="preprocessed HDF5 file")
    ev.set_defaults(handler=run_eval)

    fuse = sub.add_parser("fuse", parents=[common], help="FusionNet late fusion of trained networks",
                          description="Choose fusion weights on the validation scores stored in "
                          "the model files and report the fused test accuracy.")
    fuse.add_argument("model_files", nargs="+", help="outputs of `hpcml cnn train` (same data)")
    fuse.add_argument("--step", type=_positive(float), default=0.05, help="weight grid spacing")
    fuse.set_defaults(handler=run_fuse)


# ----------------------------------------------------------------------- data
@command(outputs=(), output_dirs=("output",), required=("output",))
def run_shapes(args, comm):
    """Generate the synthetic tree on rank 0."""
    from hpcml.vision.shapes import CLASSES, generate_tree

    classes = None if args.classes is None else [c.strip() for c in args.classes.split(",")]
    unknown = sorted(set(classes or []) - set(CLASSES))
    if unknown:
        raise InputError(f"data shapes: unknown classes {unknown}; known: {sorted(CLASSES)}",
                         collective=True)
    count = 0
    with comm.guard():
        if comm.rank == 0:
            with comm.io():
                count = generate_tree(args.output, args.train, args.test, args.seed, classes)
    return {"output": args.output, "files": comm.bcast_obj(count)}


@command(inputs=("root",), required=("output",))
def run_preprocess(args, comm):
    """``data voxelize`` / ``data render``."""
    from hpcml.vision.preprocess import preprocess

    if args.kind == "voxels":
        if args.object_size > args.grid:
            raise InputError(f"--object-size {args.object_size} does not fit in --grid {args.grid}",
                             collective=True)
        options = {"grid": args.grid, "object_size": args.object_size,
                   "orientations": args.orientations, "solid": bool(args.solid)}
    else:
        options = {"views": args.views, "size": args.size, "mode": args.mode,
                   "orientations": args.orientations}
    summary = preprocess(args.root, args.output, comm, args.kind, options, args.on_bad_mesh)
    return {"output": args.output, **summary}


# ----------------------------------------------------------------------- models
def _model_or_input_error(name, n_classes, shape, width, dropout):
    from hpcml.vision.models import build_model

    try:
        return build_model(name, n_classes, shape, width=width, dropout=dropout)
    except ValueError as exc:
        raise InputError(str(exc), collective=True) from None


def _require_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError("cnn: PyTorch is not installed (pip install 'hpcml[cnn]')",
                         collective=True) from None


@command(inputs=("data",), required=("output",), checkpoints=True, resumable=("epochs",))
def run_train(args, comm):
    """Train, then score the validation and test splits and write the model file."""
    _require_torch()
    import torch

    from hpcml.checkpoint import Checkpointer
    from hpcml.io.hdf5 import write_output
    from hpcml.vision.dataset import validation_split
    from hpcml.vision.preprocess import load_split
    from hpcml.vision.trainer import TrainConfig, evaluate, train

    if not 0 <= args.val_fraction < 1:
        raise InputError(f"--val-fraction must be in [0, 1), got {args.val_fraction}",
                         collective=True)
    try:
        config = TrainConfig(epochs=args.epochs, global_batch=args.batch, lr=args.lr,
                             momentum=args.momentum, weight_decay=args.weight_decay,
                             schedule=args.schedule, step_epochs=args.step_epochs,
                             gamma=args.gamma, bucket_mb=args.bucket_mb,
                             factored=args.factored_gradients, seed=args.seed)
    except ValueError as exc:
        raise InputError(f"cnn train: {exc}", collective=True) from None
    full = load_split(args.data, "train", comm)
    test = load_split(args.data, "test", comm)
    train_idx, val_idx = validation_split(full.y, args.val_fraction, args.seed)
    data, val = full.subset(train_idx), full.subset(val_idx)
    torch.manual_seed(args.seed)
    model = _model_or_input_error(args.model, len(full.classes), full.sample_shape,
                                  args.width, args.dropout)
    if model.input_kind != full.kind:
        raise InputError(f"{args.model} takes {model.input_kind} but {args.data} holds {full.kind}",
                         collective=True)
    result = train(model, args.model, data, comm, config, Checkpointer.from_args(args, comm),
                   show_progress=True)
    for m in result["epochs"]:
        log.info("epoch %d: loss %.4f, train accuracy %.4f, lr %.3g, %.1f samples/s",
                 m["epoch"], m["loss"], m["accuracy"], m["lr"], m["samples_per_s"])
    small, summary = {}, {"model": args.model, "epochs": result["epochs"]}
    for name, split in (("val", val), ("test", test)):
        if split.n_objects == 0:
            continue
        metrics = evaluate(model, split, comm)
        if comm.rank == 0:
            small[f"{name}/scores"] = metrics["scores"]
            small[f"{name}/labels"] = metrics["labels"]
            small[f"{name}/confusion"] = metrics["confusion"]
            summary[f"{name}_accuracy"] = metrics["accuracy"]
            log.info("%s accuracy %.4f (%d objects)", name, metrics["accuracy"], split.n_objects)
    summary = comm.bcast_obj(summary)
    for k, v in model.state_dict().items():
        small[f"params/{k}"] = v.detach().cpu().numpy()
    meta = {"model": args.model, "width": args.width, "dropout": args.dropout,
            "classes": full.classes, "sample_shape": list(full.sample_shape),
            "kind": full.kind, "val_fraction": args.val_fraction, "seed": args.seed}
    write_output(args.output, comm, small=small if comm.rank == 0 else {},
                 attrs={"model": args.model, "cnn_model": json.dumps(meta)},
                 params=vars(args))
    return {**summary, "output": args.output}


def load_model_file(path, comm):
    """Read a model file on every rank: (description dict, state arrays, stored scores)."""
    content = None
    with comm.guard():
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file")
        try:
            with comm.io(), h5py.File(path, "r") as handle:
                if "cnn_model" not in handle.attrs or "params" not in handle:
                    raise InputError(f"{path}: not a model file from `hpcml cnn train`")
                attrs = json.loads(handle.attrs["cnn_model"])
                params = {k: v[()] for k, v in handle["params"].items()}
                scores = {f"{g}/{k}": handle[g][k][()] for g in ("val", "test") if g in handle
                          for k in handle[g]}
                content = (attrs, params, scores)
        except OSError as exc:
            raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
    return content


@command(inputs=("model_file", "data"))
def run_eval(args, comm):
    """Score the test split with a trained network."""
    _require_torch()
    import torch

    from hpcml.vision.preprocess import load_split
    from hpcml.vision.trainer import evaluate

    attrs, params, _ = load_model_file(args.model_file, comm)
    test = load_split(args.data, "test", comm)
    classes = attrs["classes"]
    if classes != test.classes:
        raise InputError(f"{args.model_file} was trained on classes {classes}, "
                         f"{args.data} has {test.classes}", collective=True)
    shape = tuple(attrs["sample_shape"])
    if shape != test.sample_shape:
        raise InputError(f"{args.model_file} expects samples of shape {list(shape)}, "
                         f"{args.data} has {list(test.sample_shape)}", collective=True)
    model = _model_or_input_error(attrs["model"], len(classes), shape, attrs["width"],
                                  attrs["dropout"])
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in params.items()})
    metrics = evaluate(model, test, comm)
    summary = None
    if comm.rank == 0:
        per_class = {c: (None if np.isnan(a) else float(a))
                     for c, a in zip(classes, metrics["per_class_accuracy"])}
        summary = {"model": attrs["model"], "accuracy": metrics["accuracy"],
                   "per_class_accuracy": per_class, "confusion": metrics["confusion"].tolist()}
        log.info("test accuracy %.4f over %d objects", metrics["accuracy"], test.n_objects)
        for c in classes:
            log.info("  %-12s %s", c, "-" if per_class[c] is None else f"{per_class[c]:.3f}")
        if args.output:
            small = {"scores": metrics["scores"], "labels": metrics["labels"],
                     "confusion": metrics["confusion"]}
    else:
        small = {}
    if args.output:
        from hpcml.io.hdf5 import write_output
        write_output(args.output, comm, small=small, attrs={"model": attrs["model"]},
                     params=vars(args))
    return comm.bcast_obj(summary)


@command(inputs=("model_files",))
def run_fuse(args, comm):
    """Choose fusion weights on validation scores; report test accuracy (rank 0 computes)."""
    from hpcml.vision.fusion import choose_weights, fuse
    from hpcml.vision.trainer import metrics_from_scores

    loaded = [load_model_file(p, comm) for p in args.model_files]
    summary = None
    with comm.guard():
        if comm.rank == 0:
            summary, weights = _fuse_on_root(args, loaded, choose_weights, fuse, metrics_from_scores)
    summary = comm.bcast_obj(summary)
    if args.output:
        from hpcml.io.hdf5 import write_output
        write_output(args.output, comm, small={"weights": np.asarray(summary["weights"])},
                     attrs={"models": json.dumps(args.model_files)},
                     params=vars(args))
    return summary


def _fuse_on_root(args, loaded, choose_weights, fuse, metrics_from_scores):
    names = args.model_files
    first_classes = loaded[0][0]["classes"]
    for path, (attrs, _, scores) in zip(names, loaded):
        if attrs["classes"] != first_classes:
            raise InputError(f"{path}: trained on other classes than {names[0]}")
        for key in ("val/scores", "test/scores"):
            if key not in scores:
                split = key.split("/")[0]
                hint = " (train with --val-fraction > 0)" if split == "val" else ""
                raise InputError(f"{path}: no {split} scores stored{hint}")
    for key in ("val/labels", "test/labels"):
        ref = loaded[0][2][key]
        for path, (_, _, scores) in zip(names[1:], loaded[1:]):
            if not np.array_equal(scores[key], ref):
                raise InputError(f"{path}: its {key.split('/')[0]} objects differ from {names[0]}'s "
                                 "(same data file, seed and --val-fraction needed)")
    val = np.stack([s["val/scores"] for _, _, s in loaded])
    test = np.stack([s["test/scores"] for _, _, s in loaded])
    weights, val_acc = choose_weights(val, loaded[0][2]["val/labels"], step=args.step)
    n_classes = val.shape[2]
    test_labels = loaded[0][2]["test/labels"]
    singles = [metrics_from_scores(t, test_labels, n_classes)["accuracy"] for t in test]
    fused = metrics_from_scores(fuse(test, weights), test_labels, n_classes)
    for path, w, acc in zip(names, weights, singles):
        log.info("%-40s weight %.2f test accuracy %.4f", path, w, acc)
    log.info("fused test accuracy %.4f (validation %.4f)", fused["accuracy"], val_acc)
    return {"weights": weights.tolist(), "val_accuracy": val_acc, "single_test_accuracy": singles,
            "fused_test_accuracy": fused["accuracy"], "models": names}, weights
