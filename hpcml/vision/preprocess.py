"""Meshes of a ModelNet-style tree -> voxel grids or rendered views in one HDF5 file.

Ranks split each split's file list into contiguous blocks
(:func:`hpcml.partition.block_range`), convert their meshes with the Numba
kernels and write their rows of ``/<split>/x`` (uint8 samples, shape
``(objects, orientations, ...)``), ``/<split>/y`` (labels) and
``/<split>/file_index`` (row of ``/<split>/files``) through
:func:`hpcml.io.hdf5.write_output`, so the file appears complete or not at all.
``/classes`` lists the class names; root attributes record how the samples
were made (``kind``, grid or view parameters).

A mesh that cannot be read (or has no faces) is fatal by default
(``on_bad_mesh="fail"``: one line naming the file, exit 2 on every rank) or
skipped with a warning naming it (``"skip"``); a class left without meshes is
an error either way.
"""

from __future__ import annotations

import logging

import h5py
import numpy as np

from hpcml.errors import InputError
from hpcml.io.mesh import MeshError, read_mesh
from hpcml.io.modelnet import DatasetError, scan_tree
from hpcml.kernels.render import render_views
from hpcml.kernels.voxelize import voxelize_orientations
from hpcml.partition import block_range
from hpcml.runtime import refuse_beyond_memory
from hpcml.vision.dataset import StoredSamples

log = logging.getLogger("hpcml")
SPLITS = ("train", "test")


def mesh_samples(mesh, kind, options):
    """One object's samples as uint8, shape (orientations, ...).

    Parameters
    ----------
    mesh : Mesh
    kind : {"voxels", "views"}
    options : dict
        voxels: ``grid``, ``object_size``, ``orientations``, ``solid``;
        views: ``views``, ``size``, ``mode``, ``orientations``.
    """
    n_rot = options["orientations"]
    if kind == "voxels":
        return voxelize_orientations(mesh, n_rot, options["grid"], options["object_size"],
                                     options["solid"])
    out = np.empty((n_rot, options["views"], options["size"], options["size"]), np.uint8)
    for r in range(n_rot):
        img = render_views(mesh, options["views"], options["size"], options["mode"],
                           angle=2 * np.pi * r / n_rot)
        out[r] = np.rint(img * 255)
    return out


def _sample_shape(kind, options):
    if kind == "voxels":
        return (options["orientations"],) + (options["grid"],) * 3
    return (options["orientations"], options["views"], options["size"], options["size"])


def preprocess(root, output, comm, kind, options, on_bad_mesh="fail", splits=SPLITS):
    """Convert a tree's meshes in parallel and write them to ``output`` (collective).

    Returns
    -------
    dict
        Counts per split (``objects``, ``skipped``) and the class names.
    """
    if on_bad_mesh not in ("skip", "fail"):
        raise InputError(f"--on-bad-mesh must be skip or fail, got {on_bad_mesh!r}", collective=True)
    trees = None
    with comm.guard():
        if comm.rank == 0:
            try:
                trees = {s: scan_tree(root, s) for s in splits}
            except DatasetError as exc:
                raise InputError(str(exc)) from None
    trees = comm.bcast_obj(trees)
    # A rank holds its samples of every split until the write, twice while stacking them.
    per_rank = sum(-(-len(trees[s].files) // comm.size) for s in splits)
    with comm.guard():
        refuse_beyond_memory(2 * per_rank * int(np.prod(_sample_shape(kind, options))),
                             f"{kind} of {sum(len(trees[s].files) for s in splits)} meshes",
                             "fewer --orientations or views, a smaller --grid or --size, or more ranks")
    classes = trees[splits[0]].classes
    sharded, small, summary = {}, {"classes": np.array(classes, dtype="S")}, {"classes": classes}
    for split in splits:
        tree = trees[split]
        lo, hi = block_range(len(tree.files), comm.size, comm.rank)
        rows, labels, index, skipped, problem = [], [], [], [], ""
        for i in range(lo, hi):
            path = tree.files[i]
            try:
                with comm.io():
                    mesh = read_mesh(path)
                if len(mesh.faces) == 0:
                    raise MeshError(path, "mesh has no faces")
            except MeshError as exc:
                if on_bad_mesh == "fail":
                    problem = f"{exc} (use --on-bad-mesh skip to leave it out)"
                    break
                skipped.append(str(exc))
                continue
            rows.append(mesh_samples(mesh, kind, options))
            labels.append(tree.labels[i])
            index.append(i)
        comm.agree(not problem, problem)
        for lines in comm.allgather_obj(skipped):
            for line in lines:
                log.warning("skipped unreadable mesh %s", line)
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
        counts = comm.allreduce(counts.astype(np.int64), op="sum")
        if (counts == 0).any():
            empty = classes[int(np.flatnonzero(counts == 0)[0])]
            raise InputError(f"{root}: class {empty!r} has no usable meshes in split {split!r}",
                             collective=True)
        shape = _sample_shape(kind, options)
        sharded[f"{split}/x"] = np.stack(rows) if rows else np.zeros((0,) + shape, np.uint8)
        sharded[f"{split}/y"] = np.asarray(labels, dtype=np.int64)
        sharded[f"{split}/file_index"] = np.asarray(index, dtype=np.int64)
        small[f"{split}/files"] = np.array([p.encode() for p in tree.files], dtype="S")
        summary[split] = {"objects": int(counts.sum()),
                          "skipped": len(tree.files) - int(counts.sum())}
    from hpcml.io.hdf5 import write_output

    attrs = {"kind": kind, **{k: v for k, v in options.items()}}
    write_output(output, comm, small=small, sharded=sharded, attrs=attrs,
                 params={"root": str(root), "kind": kind, "on_bad_mesh": on_bad_mesh, **options})
    return summary


def load_split(path, split, comm):
    """Open one split of a preprocessed file on every rank (collective on errors).

    Only the labels are read now; each rank reads its samples batch by batch
    (:class:`~hpcml.vision.dataset.StoredSamples`), so its memory does not
    grow with the data set.

    Returns
    -------
    StoredSamples
    """
    data = None
    with comm.guard():
        try:
            with comm.io(), h5py.File(path, "r") as handle:
                if f"{split}/x" not in handle or "classes" not in handle:
                    raise InputError(f"{path}: no {split!r} samples (not written by "
                                     f"`hpcml data voxelize|render`?)")
                kind = handle.attrs.get("kind")
                kind = kind.decode() if isinstance(kind, bytes) else str(kind)
                classes = [c.decode() for c in handle["classes"][()]]
                x, y = handle[f"{split}/x"], handle[f"{split}/y"]
                if x.ndim != 5 or x.dtype != np.uint8 or y.shape != (x.shape[0],):
                    raise InputError(f"{path}: {split}/x {x.shape} {x.dtype} and {split}/y "
                                     f"{y.shape} are not uint8 samples (objects, orientations, "
                                     f"a, b, c) and one label per object")
                # What a rank holds of a split: its labels and, in training, the
                # epoch's order of its samples (8 bytes each).
                refuse_beyond_memory(8 * x.shape[0] * (1 + x.shape[1]),
                                     f"{path}: the labels and sample order of the {split} split "
                                     f"({x.shape[0]} objects x {x.shape[1]} orientations)",
                                     "fewer --orientations or objects")
                data = StoredSamples(str(path), split, kind, classes, y[()].astype(np.int64),
                                     x.shape[1:], comm=comm)
        except InputError:
            raise
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except OSError as exc:
            raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from None
    return data
