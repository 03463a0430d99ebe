"""Network shapes, input checks, orientation pooling and late fusion."""

import numpy as np
import pytest

from hpcml.vision.fusion import choose_weights, fuse, simplex_grid

torch = pytest.importorskip("torch", reason="the cnn extra (torch) is not installed")

from hpcml.vision.models import (MODELS, VCNN1, build_model,  # noqa: E402
                                 orientation_pooled_scores)


@pytest.mark.parametrize("name, shape", [("voxnet", (12, 12, 12)), ("vcnn1", (22, 22, 22)),
                                         ("vcnn2", (16, 16, 16)), ("mvcnn", (3, 8, 8))])
def test_forward_backward_small(name, shape):
    torch.manual_seed(0)
    model = build_model(name, 4, shape, width=0.1)
    x = torch.rand((2,) + ((1,) if model.input_kind == "voxels" else ()) + shape)
    out = model(x)
    assert out.shape == (2, 4)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_full_size_vcnn1_feature_maps():
    # 30^3 -> 13^3 -> 5^3 -> 2^3 with 512 channels, as documented.
    model = VCNN1(10, grid=30, width=1.0)
    with torch.no_grad():
        feats = model.features(torch.zeros(1, 1, 30, 30, 30))
    assert feats.shape == (1, 512, 2, 2, 2)


@pytest.mark.parametrize("name", ["voxnet", "vcnn1", "vcnn2"])
def test_min_size_is_exact(name):
    cls = MODELS[name]
    build_model(name, 2, (cls.min_size,) * 3, width=0.05)
    with pytest.raises(ValueError, match=f"at least {cls.min_size} per side"):
        build_model(name, 2, (cls.min_size - 1,) * 3, width=0.05)


@pytest.mark.parametrize("name, shape, words", [
    ("voxnet", (8, 8, 8), "too small"), ("vcnn1", (21, 21, 21), "too small"),
    ("vcnn2", (10, 10, 10), "too small"), ("mvcnn", (12, 4, 4), "at least 8"),
    ("vcnn1", (30, 30, 20), "cubic"), ("mvcnn", (12, 32, 16), "(views, size, size)"),
    ("resnet", (30, 30, 30), "unknown model")])
def test_input_shape_errors_are_one_line(name, shape, words):
    with pytest.raises(ValueError) as info:
        build_model(name, 10, shape, width=0.1)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_orientation_pooling_is_mean_of_softmax():
    torch.manual_seed(1)
    model = build_model("voxnet", 3, (12, 12, 12), width=0.1).eval()
    x = torch.rand(5, 4, 12, 12, 12)
    pooled = orientation_pooled_scores(model, x, batch_size=3)
    with torch.no_grad():
        manual = torch.stack([torch.softmax(model(x[:, r].unsqueeze(1)), 1) for r in range(4)])
    torch.testing.assert_close(pooled, manual.mean(0))
    assert set(MODELS) == {"voxnet", "vcnn1", "vcnn2", "mvcnn"}


def test_simplex_grid_and_fuse():
    g = simplex_grid(3, 0.25)
    assert len(g) == 15  # C(4 + 2, 2)
    np.testing.assert_allclose(g.sum(1), 1.0)
    s = np.random.default_rng(0).random((3, 4, 2))
    np.testing.assert_allclose(fuse(s, [0.2, 0.3, 0.5]), 0.2 * s[0] + 0.3 * s[1] + 0.5 * s[2])
    with pytest.raises(ValueError):
        simplex_grid(2, 0.3)


def test_choose_weights_beats_each_model_by_brute_force():
    rng = np.random.default_rng(3)
    n, c = 200, 5
    labels = rng.integers(0, c, n)
    scores = []
    for noise in (1.0, 1.2, 1.5):  # three noisy, partly independent classifiers
        logits = rng.normal(scale=noise, size=(n, c))
        logits[np.arange(n), labels] += 1.0
        p = np.exp(logits)
        scores.append(p / p.sum(1, keepdims=True))
    w, acc = choose_weights(scores, labels, step=0.1)
    singles = [float((s.argmax(1) == labels).mean()) for s in scores]
    assert acc >= max(singles)
    # Brute force over the same grid finds no better accuracy.
    best = max(float((fuse(scores, v).argmax(1) == labels).mean()) for v in simplex_grid(3, 0.1))
    assert acc == best
    assert np.isclose(w.sum(), 1.0)
