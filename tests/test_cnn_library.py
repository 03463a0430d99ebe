"""Train, save, load and score a network from Python, without the CLI."""

import json

import h5py
import numpy as np
import pytest

from conftest import hpcml
from hpcml.comm import Comm

torch = pytest.importorskip("torch", reason="the cnn extra (torch) is not installed")

from hpcml.vision.model_file import build_network, load_model, save_model  # noqa: E402
from hpcml.vision.preprocess import load_split  # noqa: E402
from hpcml.vision.trainer import (  # noqa: E402
    TrainConfig, evaluate, fit_and_score, score_model_file)

CLASSES = ["a", "b", "c"]


def write_voxels(path, seed=0, g=12, n_rot=2):
    """A preprocessed voxel file as ``hpcml data voxelize`` writes it; class c fills 5 + 10c %."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "voxels"
        f["classes"] = np.array([c.encode() for c in CLASSES])
        for split, n in (("train", 15), ("test", 7)):
            y = np.arange(n) % len(CLASSES)
            x = rng.random((n, n_rot, g, g, g)) < 0.05 + 0.1 * y[:, None, None, None, None]
            f[f"{split}/x"] = x.astype(np.uint8)
            f[f"{split}/y"] = y.astype(np.int64)


@pytest.mark.mpi
def test_fit_save_load_score_matches_cnn_eval(tmp_path):
    comm = Comm.self_comm()
    data = tmp_path / "vox.h5"
    write_voxels(data)
    config = TrainConfig(epochs=2, global_batch=6, lr=0.05, seed=1)
    fit = fit_and_score(str(data), "voxnet", comm, config, width=0.25, val_fraction=0.3)
    assert set(fit.accuracy) == {"val", "test"} and fit.objects["test"] == 7
    assert fit.meta["classes"] == CLASSES and fit.meta["sample_shape"] == [12, 12, 12]

    path = tmp_path / "voxnet.h5"
    save_model(str(path), comm, fit.model, fit.meta, fit.scores)
    meta, params, scores = load_model(str(path), comm)
    assert meta == fit.meta
    np.testing.assert_array_equal(scores["test/scores"], fit.scores["test"]["scores"])
    network = build_network(meta, params)
    for k, v in fit.model.state_dict().items():
        assert torch.equal(network.state_dict()[k], v)
    again = evaluate(network, load_split(str(data), "test", comm), comm)
    np.testing.assert_array_equal(again["scores"], fit.scores["test"]["scores"])

    metrics = score_model_file(str(path), str(data), comm)
    assert metrics["accuracy"] == fit.accuracy["test"]
    result = hpcml(1, "cnn", "eval", path, "--data", data, "--json")
    assert result.returncode == 0, result
    reported = json.loads(result.stdout)
    assert reported["accuracy"] == metrics["accuracy"]
    assert reported["per_class_accuracy"] == metrics["per_class_accuracy"]
    assert reported["confusion"] == metrics["confusion"].tolist()
