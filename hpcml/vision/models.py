"""Networks for 3-D object recognition (PyTorch; install the ``cnn`` extra).

Volumetric networks take occupancy grids ``(batch, 1, G, G, G)``; MV-CNN takes
rendered views ``(batch, n_views, H, W)``.  Every constructor takes the input
shape so that a grid too small for the network is refused with one clear line
(:class:`ValueError`) instead of a shape error deep inside ``forward``.

Choices made where the papers are silent or where this project departs from them:

* No batch normalisation anywhere.  BatchNorm statistics depend on how a batch
  is split across ranks, and the data-parallel trainer promises that the same
  global batch trains the same network on any number of ranks.
* Dropout rates are constructor arguments (``dropout=0`` for exact
  reproducibility tests); defaults follow the papers where they say something.
* ``width`` scales every channel and hidden-unit count, so tests and laptops can
  run the same topology at a fraction of the cost; ``width=1`` is the size
  described below.
* Weights use PyTorch's default initialisation for each layer type.
"""

from __future__ import annotations

import torch
from torch import nn


def _w(n, width):
    """Scale a channel count, keeping at least one channel."""
    return max(1, int(round(n * width)))


class _Classifier(nn.Module):
    """Shared plumbing: feature extractor + head sized by a dry run on the input shape."""

    input_kind = "voxels"
    min_size = 1

    def _finish(self, features, head_in_shape, hidden, n_classes, dropout):
        self.features = features
        try:
            with torch.no_grad():
                flat = self.features(torch.zeros((1,) + tuple(head_in_shape))).numel()
        except RuntimeError:
            raise ValueError(f"{type(self).__name__} cannot take input of shape "
                             f"{tuple(head_in_shape)}: grid/image too small (needs at least "
                             f"{self.min_size} per side)") from None
        layers, size = [nn.Flatten()], flat
        for h in hidden:
            layers += [nn.Linear(size, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            size = h
        layers.append(nn.Linear(size, n_classes))
        self.head = nn.Sequential(*layers)

    def forward(self, x):
        return self.head(self.features(x))


def _check_grid(name, grid):
    if int(grid) != grid or grid < 1:
        raise ValueError(f"{name}: grid must be a positive integer, got {grid}")


class VoxNet(_Classifier):
    """VoxNet (Maturana & Scherer 2015): conv 32@5³/2 → conv 32@3³ → max-pool 2³ → fc 128 → fc.

    Leaky ReLU (slope 0.1) as in the paper; dropout 0.2 / 0.3 / 0.4 after the
    two convolutions and the hidden fully connected layer in the paper, here one
    ``dropout`` after the hidden layer (default 0.4) and ``conv_dropout``
    (default 0.2) after each convolution.  The paper's grid is 32³; any grid of
    at least 11 works.
    """

    min_size = 11

    def __init__(self, n_classes, grid=32, width=1.0, dropout=0.4, conv_dropout=0.2):
        super().__init__()
        _check_grid("VoxNet", grid)
        c = _w(32, width)
        feats = nn.Sequential(
            nn.Conv3d(1, c, 5, stride=2), nn.LeakyReLU(0.1, inplace=True), nn.Dropout(conv_dropout),
            nn.Conv3d(c, c, 3), nn.LeakyReLU(0.1, inplace=True), nn.MaxPool3d(2),
            nn.Dropout(conv_dropout))
        self._finish(feats, (1, grid, grid, grid), [_w(128, width)], n_classes, dropout)


class VCNN1(_Classifier):
    """V-CNN I of FusionNet (Hegde & Zadeh 2016), 30³ input.

    The paper gives the network as a figure only.  This implementation takes its
    three-convolution, two-fully-connected shape from the volumetric network of
    Qi et al. (2016) that V-CNN I builds on: conv 48@6³ stride 2 → conv 160@5³
    stride 2 → conv 512@3³ stride 2 → fc 2048 → fc 2048 → fc classes, ReLU,
    dropout (default 0.5) after each hidden fully connected layer.  On a 30³
    grid the feature maps are 13³, 5³ and 2³.
    """

    min_size = 22

    def __init__(self, n_classes, grid=30, width=1.0, dropout=0.5):
        super().__init__()
        _check_grid("VCNN1", grid)
        c1, c2, c3 = _w(48, width), _w(160, width), _w(512, width)
        feats = nn.Sequential(
            nn.Conv3d(1, c1, 6, stride=2), nn.ReLU(inplace=True),
            nn.Conv3d(c1, c2, 5, stride=2), nn.ReLU(inplace=True),
            nn.Conv3d(c2, c3, 3, stride=2), nn.ReLU(inplace=True))
        h = _w(2048, width)
        self._finish(feats, (1, grid, grid, grid), [h, h], n_classes, dropout)


class Inception3d(nn.Module):
    """GoogLeNet-style module in 3-D: 1³, 1³→3³, 1³→5³ and 3³-max-pool→1³ branches, concatenated.

    Padding keeps the spatial size, so the branches can be stacked along channels.
    """

    def __init__(self, c_in, c1, c3_reduce, c3, c5_reduce, c5, c_pool):
        super().__init__()
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731 - a fresh module per use
        self.b1 = nn.Sequential(nn.Conv3d(c_in, c1, 1), relu())
        self.b3 = nn.Sequential(nn.Conv3d(c_in, c3_reduce, 1), relu(),
                                nn.Conv3d(c3_reduce, c3, 3, padding=1), relu())
        self.b5 = nn.Sequential(nn.Conv3d(c_in, c5_reduce, 1), relu(),
                                nn.Conv3d(c5_reduce, c5, 5, padding=2), relu())
        self.bp = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), nn.Conv3d(c_in, c_pool, 1),
                                relu())
        self.out_channels = c1 + c3 + c5 + c_pool

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class VCNN2(_Classifier):
    """V-CNN II of FusionNet: volumetric inception modules, 30³ input.

    The paper shows inception-style modules mixing kernel sizes; the exact
    widths are not published.  Chosen here: stem conv 48@5³ stride 2 (30³ → 13³),
    inception (32, 32→48, 8→16, pool→16; 112 channels), max-pool 3³ stride 2
    (→ 6³), inception (64, 48→96, 16→32, pool→32; 224 channels), max-pool 2³
    (→ 3³), fc 1024 → fc classes, dropout (default 0.5) before the last layer.
    """

    min_size = 13

    def __init__(self, n_classes, grid=30, width=1.0, dropout=0.5):
        super().__init__()
        _check_grid("VCNN2", grid)
        w = lambda n: _w(n, width)  # noqa: E731
        stem = w(48)
        inc1 = Inception3d(stem, w(32), w(32), w(48), w(8), w(16), w(16))
        inc2 = Inception3d(inc1.out_channels, w(64), w(48), w(96), w(16), w(32), w(32))
        feats = nn.Sequential(nn.Conv3d(1, stem, 5, stride=2), nn.ReLU(inplace=True),
                              inc1, nn.MaxPool3d(3, stride=2), inc2, nn.MaxPool3d(2))
        self._finish(feats, (1, grid, grid, grid), [w(1024)], n_classes, dropout)


class MVCNN(nn.Module):
    """Multi-view CNN (Su et al. 2015): one 2-D CNN shared by all views, max-pooled over views.

    Su et al. and FusionNet start from an ImageNet-pretrained VGG/AlexNet; no
    pretrained weights are available offline, so the per-view network here is a
    small one trained from scratch: conv 32@5² → pool → conv 64@3² → pool →
    conv 128@3² → pool (ReLU, "same" padding), then the element-wise maximum
    over views of the flattened features ("view pooling" after the last
    convolution, as in MVCNN), fc 512 → fc classes with dropout (default 0.5).
    Views are single-channel depth or shaded images.
    """

    input_kind = "views"
    min_size = 8

    def __init__(self, n_classes, n_views=12, size=32, width=1.0, dropout=0.5):
        super().__init__()
        if int(size) != size or size < self.min_size:
            raise ValueError(f"MVCNN cannot take {size}x{size} views: needs at least "
                             f"{self.min_size} pixels per side")
        c1, c2, c3 = _w(32, width), _w(64, width), _w(128, width)
        self.n_views = n_views
        self.cnn = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten())
        flat = c3 * (size // 8) ** 2
        h = _w(512, width)
        self.head = nn.Sequential(nn.Linear(flat, h), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(h, n_classes))

    def forward(self, x):
        b, v, hgt, wid = x.shape
        feats = self.cnn(x.reshape(b * v, 1, hgt, wid)).reshape(b, v, -1)
        return self.head(feats.max(dim=1).values)


MODELS = {"voxnet": VoxNet, "vcnn1": VCNN1, "vcnn2": VCNN2, "mvcnn": MVCNN}


def build_model(name, n_classes, sample_shape, width=1.0, dropout=None):
    """Construct a registered network for inputs of one sample's shape.

    Parameters
    ----------
    name : {"voxnet", "vcnn1", "vcnn2", "mvcnn"}
    n_classes : int
    sample_shape : tuple
        ``(G, G, G)`` for volumetric networks (cubic grids only), ``(V, H, W)``
        for MV-CNN (square images).
    width : float
    dropout : float, optional
        Overrides the network's default dropout (all dropout layers).

    Raises
    ------
    ValueError
        Unknown name, or an input shape the network cannot take.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    cls = MODELS[name]
    kw = {} if dropout is None else {"dropout": dropout}
    if name == "voxnet" and dropout is not None:
        kw["conv_dropout"] = dropout
    shape = tuple(int(s) for s in sample_shape)
    if cls.input_kind == "views":
        if len(shape) != 3 or shape[1] != shape[2]:
            raise ValueError(f"mvcnn needs (views, size, size) samples, got shape {shape}")
        return cls(n_classes, n_views=shape[0], size=shape[1], width=width, **kw)
    if len(shape) != 3 or len(set(shape)) != 1:
        raise ValueError(f"{name} needs cubic (G, G, G) voxel grids, got shape {shape}")
    return cls(n_classes, grid=shape[0], width=width, **kw)


def orientation_pooled_scores(model, x, batch_size=64):
    """Class probabilities averaged over orientations (test-time orientation pooling).

    Parameters
    ----------
    model : nn.Module
        In eval mode.
    x : tensor, shape (n_objects, n_orientations, *sample_shape)
        Each object's samples under every orientation.

    Returns
    -------
    tensor, shape (n_objects, n_classes)
        Mean softmax over orientations: FusionNet pools its 60 orientations the
        same way at test time (a mean of class scores).
    """
    n, r = x.shape[:2]
    flat = x.reshape((n * r,) + tuple(x.shape[2:]))
    if model_input_kind(model) == "voxels":
        flat = flat.unsqueeze(1)
    outs = []
    with torch.no_grad():
        for start in range(0, len(flat), batch_size):
            outs.append(torch.softmax(model(flat[start:start + batch_size].float()), dim=1))
    return torch.cat(outs).reshape(n, r, -1).mean(dim=1)


def model_input_kind(model):
    """"voxels" or "views"."""
    return getattr(model, "input_kind", "voxels")
