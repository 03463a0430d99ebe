"""Preprocessed samples in memory: objects x orientations x sample.

Voxel grids are stored as ``uint8`` occupancy and views as ``uint8`` grey
levels (value * 255); both become ``float32`` in ``[0, 1]`` per batch only, so
a 12-orientation 30³ ModelNet40 training set takes 3.2 GB instead of 13.
During training every (object, orientation) pair is one sample, as in VoxNet
and FusionNet; at test time the orientations of an object are pooled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SampleSet:
    """Samples of one split.

    Attributes
    ----------
    x : ndarray of uint8, shape (n_objects, n_orientations, *sample_shape)
    y : ndarray of int64, shape (n_objects,)
    kind : {"voxels", "views"}
    classes : list of str
    """

    x: np.ndarray
    y: np.ndarray
    kind: str
    classes: list

    def __post_init__(self):
        if self.x.ndim != 5:
            raise ValueError(f"samples must be (objects, orientations, a, b, c), got {self.x.shape}")
        if len(self.x) != len(self.y):
            raise ValueError("samples and labels differ in length")
        if self.kind not in ("voxels", "views"):
            raise ValueError(f"kind must be 'voxels' or 'views', got {self.kind!r}")

    @property
    def n_objects(self):
        return len(self.y)

    @property
    def n_orientations(self):
        return self.x.shape[1]

    @property
    def n_samples(self):
        """Training samples: every (object, orientation) pair."""
        return self.n_objects * self.n_orientations

    @property
    def sample_shape(self):
        return tuple(self.x.shape[2:])

    @property
    def scale(self):
        return 1.0 if self.kind == "voxels" else 1.0 / 255.0

    def batch(self, sample_indices, device="cpu"):
        """Inputs and labels of training samples (object*n_orientations + orientation)."""
        import torch  # here, so that preprocessing never pays for importing torch

        idx = np.asarray(sample_indices, dtype=np.int64)
        obj, rot = np.divmod(idx, self.n_orientations)
        xb = torch.from_numpy(self.x[obj, rot].astype(np.float32) * np.float32(self.scale))
        if self.kind == "voxels":
            xb = xb.unsqueeze(1)
        return xb.to(device), torch.from_numpy(self.y[obj]).to(device)

    def objects(self, object_indices, device="cpu"):
        """All orientations of some objects, shape (n, n_orientations, *sample_shape), float32."""
        import torch

        idx = np.asarray(object_indices, dtype=np.int64)
        return torch.from_numpy(self.x[idx].astype(np.float32) * np.float32(self.scale)).to(device)

    def subset(self, object_indices):
        idx = np.asarray(object_indices, dtype=np.int64)
        return SampleSet(self.x[idx], self.y[idx], self.kind, self.classes)


def validation_split(labels, fraction, seed):
    """Hold out about ``fraction`` of each class's objects: (train_idx, val_idx), both sorted.

    Every class keeps at least one training object; a class with one object
    contributes nothing to validation.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng([seed, 7])
    labels = np.asarray(labels)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(int(round(fraction * len(members))), len(members) - 1)
        val.extend(rng.choice(members, size=k, replace=False))
    val = np.sort(np.asarray(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val
