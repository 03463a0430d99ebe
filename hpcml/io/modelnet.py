"""The ModelNet directory layout: ``ROOT/<class>/{train,test}/*.off``.

Class indices follow the sorted class-directory names, so the same tree gives
the same labels on every rank and in every run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MESH_EXTENSIONS = (".off", ".stl", ".obj")


class DatasetError(ValueError):
    """A dataset tree that cannot be used; the message is one line."""


@dataclass(frozen=True)
class MeshTree:
    """The files of one split of a ModelNet-style tree.

    Attributes
    ----------
    root : str
    split : str
    classes : list of str
        Sorted class names; a label is an index into this list.
    files : list of str
        Mesh paths, sorted by class then file name.
    labels : list of int
    """

    root: str
    split: str
    classes: list
    files: list
    labels: list


def scan_tree(root, split, allow_empty_class=False):
    """List the meshes of one split.

    Parameters
    ----------
    root : str
        Directory holding one sub-directory per class.
    split : {"train", "test"}
    allow_empty_class : bool
        When False, a class without meshes in this split is an error (it would
        leave an output unit that never sees an example).

    Raises
    ------
    DatasetError
        Missing root, no class directories, or an empty class.
    """
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
    if not os.path.isdir(root):
        raise DatasetError(f"{root}: no such dataset directory")
    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise DatasetError(f"{root}: no class directories (expected ROOT/<class>/{split}/*.off)")
    files, labels = [], []
    for label, name in enumerate(classes):
        split_dir = os.path.join(root, name, split)
        found = []
        if os.path.isdir(split_dir):
            found = sorted(f for f in os.listdir(split_dir)
                           if f.lower().endswith(MESH_EXTENSIONS))
        if not found and not allow_empty_class:
            raise DatasetError(f"{split_dir}: class {name!r} has no meshes in split {split!r}")
        files.extend(os.path.join(split_dir, f) for f in found)
        labels.extend([label] * len(found))
    return MeshTree(str(root), split, classes, files, labels)
