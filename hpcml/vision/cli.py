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

import numpy as np

from hpcml import options
from hpcml.command import command
from hpcml.errors import InputError
from hpcml.io.hdf5 import write_output
from hpcml.vision import require_torch

log = logging.getLogger("hpcml")


def register(subparsers, common):
    """Add ``cnn train|eval|fuse`` and ``data shapes|voxelize|render``."""
    from hpcml.checkpoint import add_arguments
    from hpcml.cli import Parser, data_commands

    data = data_commands(subparsers)
    shapes = data.add_parser("shapes", parents=[common], help="a ModelNet-style tree of synthetic "
                             "OFF meshes (10 classes)",
                             description="Write ROOT/<class>/{train,test}/*.off (--output ROOT).")
    shapes.add_argument("--train", type=options.count, default=40, help="objects per class (train)")
    shapes.add_argument("--test", type=options.count, default=10, help="objects per class (test)")
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
            p.add_argument("--grid", type=options.count, default=30, help="voxels per side (30)")
            p.add_argument("--object-size", type=options.positive, default=24,
                           help="voxels spanned by the object's longest side (24)")
            p.add_argument("--orientations", type=options.count, default=12,
                           help="rotations about the up axis per object (12)")
            p.add_argument("--solid", action="store_true", help="fill closed interiors")
        else:
            p.add_argument("--views", type=int, choices=[12, 20], default=12)
            p.add_argument("--size", type=options.count, default=32, help="image side in pixels")
            p.add_argument("--mode", choices=["depth", "shaded"], default="shaded")
            p.add_argument("--orientations", type=options.count, default=1,
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
    train.add_argument("--width", type=options.positive, default=1.0,
                       help="scale of every channel/unit count (1.0: the published size)")
    train.add_argument("--dropout", type=float, default=None, help="override the dropout rate")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch", type=options.count, default=32, help="global batch size")
    train.add_argument("--lr", type=options.positive, default=0.01)
    train.add_argument("--momentum", type=float, default=0.9)
    train.add_argument("--weight-decay", type=float, default=5e-4)
    train.add_argument("--schedule", choices=["step", "cosine", "constant"], default="step")
    train.add_argument("--step-epochs", type=options.count, default=10,
                       help="epochs between learning-rate drops (step schedule)")
    train.add_argument("--gamma", type=options.positive, default=0.1, help="learning-rate drop factor")
    train.add_argument("--bucket-mb", type=options.positive, default=4.0,
                       help="gradient bucket size in MiB")
    train.add_argument("--factored-gradients", action=argparse.BooleanOptionalAction,
                       default=True,
                       help="ranks on one node exchange the inputs and output gradients of "
                            "large fully connected layers instead of their weight gradients")
    train.add_argument("--gradient-transport", choices=["auto", "shared", "allreduce", "hierarchical"],
                       default="auto",
                       help="how gradient buckets are averaged: auto (shared memory on one node, "
                            "hierarchical across nodes), shared, allreduce (MPI over all ranks) or "
                            "hierarchical (shared memory per node, then MPI among node leaders)")
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
    fuse.add_argument("--step", type=options.grid_step, default=0.05,
                      help="weight grid spacing, a number dividing 1 (default 0.05)")
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
@command(inputs=("data",), required=("output",), checkpoints=True, resumable=("epochs",))
def run_train(args, comm):
    """Train, then score the validation and test splits and write the model file."""
    require_torch()
    from hpcml.checkpoint import Checkpointer
    from hpcml.vision.model_file import save_model
    from hpcml.vision.trainer import TrainConfig, fit_and_score

    if not 0 <= args.val_fraction < 1:
        raise InputError(f"--val-fraction must be in [0, 1), got {args.val_fraction}",
                         collective=True)
    try:
        config = TrainConfig(epochs=args.epochs, global_batch=args.batch, lr=args.lr,
                             momentum=args.momentum, weight_decay=args.weight_decay,
                             schedule=args.schedule, step_epochs=args.step_epochs,
                             gamma=args.gamma, bucket_mb=args.bucket_mb,
                             factored=args.factored_gradients,
                             transport=args.gradient_transport, seed=args.seed)
    except ValueError as exc:
        raise InputError(f"cnn train: {exc}", collective=True) from None
    fit = fit_and_score(args.data, args.model, comm, config, width=args.width,
                        dropout=args.dropout, val_fraction=args.val_fraction,
                        checkpointer=Checkpointer.from_args(args, comm), show_progress=True)
    for m in fit.training["epochs"]:
        log.info("epoch %d: loss %.4f, train accuracy %.4f, lr %.3g, %.1f samples/s",
                 m["epoch"], m["loss"], m["accuracy"], m["lr"], m["samples_per_s"])
    for name, accuracy in fit.accuracy.items():
        log.info("%s accuracy %.4f (%d objects)", name, accuracy, fit.objects[name])
    save_model(args.output, comm, fit.model, fit.meta, fit.scores, params=vars(args))
    return {"model": args.model, "epochs": fit.training["epochs"],
            **{f"{name}_accuracy": a for name, a in fit.accuracy.items()}, "output": args.output}


@command(inputs=("model_file", "data"))
def run_eval(args, comm):
    """Score the test split with a trained network."""
    require_torch()
    from hpcml.vision.trainer import score_model_file

    metrics = score_model_file(args.model_file, args.data, comm)
    summary, small = None, {}
    if comm.rank == 0:
        per_class = metrics["per_class_accuracy"]
        summary = {"model": metrics["model"], "accuracy": metrics["accuracy"],
                   "per_class_accuracy": per_class, "confusion": metrics["confusion"].tolist()}
        log.info("test accuracy %.4f over %d objects", metrics["accuracy"], len(metrics["labels"]))
        for c in metrics["classes"]:
            log.info("  %-12s %s", c, "-" if per_class[c] is None else f"{per_class[c]:.3f}")
        small = {k: metrics[k] for k in ("scores", "labels", "confusion")}
    summary = comm.bcast_obj(summary)
    if args.output:
        write_output(args.output, comm, small=small, attrs={"model": summary["model"]},
                     params=vars(args))
    return summary


@command(inputs=("model_files",))
def run_fuse(args, comm):
    """Choose fusion weights on validation scores; report test accuracy (rank 0 computes)."""
    from hpcml.vision.fusion import fuse_models
    from hpcml.vision.model_file import load_model

    models = [load_model(p, comm) for p in args.model_files]
    summary = {**fuse_models(models, args.model_files, comm, step=args.step),
               "models": args.model_files}
    for path, w, acc in zip(args.model_files, summary["weights"],
                            summary["single_test_accuracy"]):
        log.info("%-40s weight %.2f test accuracy %.4f", path, w, acc)
    log.info("fused test accuracy %.4f (validation %.4f)", summary["fused_test_accuracy"],
             summary["val_accuracy"])
    if args.output:
        write_output(args.output, comm, small={"weights": np.asarray(summary["weights"])},
                     attrs={"models": json.dumps(args.model_files)},
                     params=vars(args))
    return summary
