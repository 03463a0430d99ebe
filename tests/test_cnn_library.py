"""Train, save, load and score a network from Python, without the CLI."""

import json

import h5py
import numpy as np
import pytest

from conftest import hpcml, mpi_script
from hpcml.comm import Comm

torch = pytest.importorskip("torch", reason="the cnn extra (torch) is not installed")

from hpcml.vision.model_file import build_network, load_model, save_model  # noqa: E402
from hpcml.vision.preprocess import load_split  # noqa: E402
from hpcml.vision.trainer import (  # noqa: E402
    TrainConfig, evaluate, fit_and_score, score_model_file)

CLASSES = ["a", "b", "c"]


def write_voxels(path, seed=0, g=12, n_rot=2, n_train=15, n_test=7):
    """A preprocessed voxel file as ``hpcml data voxelize`` writes it; class c fills 5 + 10c %."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "voxels"
        f["classes"] = np.array([c.encode() for c in CLASSES])
        for split, n in (("train", n_train), ("test", n_test)):
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


@pytest.mark.mpi
def test_peak_memory_of_a_training_rank_does_not_grow_with_the_data(tmp_path):
    # Training splits of 400 and 1600 objects (16 KiB each: 6.5 and 26 MB); a rank
    # that held its split would grow by the 19.7 MB between them, a rank that reads
    # its block of each batch by a few hundred KiB (labels, the epoch's permutation).
    peaks, sizes = [], []
    for n in (400, 1600):
        data = tmp_path / f"vox{n}.h5"
        write_voxels(data, g=16, n_rot=4, n_train=n, n_test=6)
        report = json.loads(mpi_script(2, "cnn_peak_rss.py", data, timeout=240).stdout)
        assert report["steps"] == -(-n * 4 // 64)
        peaks.append(max(report["peak_rss_kib"]) * 1024)
        sizes.append(report["split_bytes"])
    grown = sizes[1] - sizes[0]
    assert grown == 1200 * 4 * 16 ** 3
    # A quarter of the data's growth: far above the noise of ru_maxrss between two
    # runs (under 2 MB here), far below what holding the split costs.
    assert peaks[1] - peaks[0] < grown / 4, (peaks, sizes)


def test_stored_samples_read_the_bits_of_the_split_in_memory(tmp_path):
    from hpcml.vision.dataset import SampleSet

    path = tmp_path / "views.h5"
    rng = np.random.default_rng(5)
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "views"
        f["classes"] = np.array([c.encode() for c in CLASSES])
        for split in ("train", "test"):
            f[f"{split}/x"] = rng.integers(0, 256, (13, 3, 4, 6, 7), dtype=np.uint8)
            f[f"{split}/y"] = np.arange(13) % 3
    stored = load_split(str(path), "train", Comm.self_comm())
    with h5py.File(path) as f:
        memory = SampleSet(f["train/x"][()], f["train/y"][()], "views", CLASSES)
    assert (stored.n_samples, stored.sample_shape, stored.kind) == (39, (4, 6, 7), "views")
    for a, b in ((stored, memory), (stored.subset([2, 5, 11]), memory.subset([2, 5, 11]))):
        for idx in ([], [0], list(rng.permutation(a.n_samples))):
            for mine, theirs in zip(a.batch(idx), b.batch(idx)):
                assert torch.equal(mine, theirs)
        order = rng.permutation(a.n_objects)
        assert torch.equal(a.objects(order), b.objects(order))
        np.testing.assert_array_equal(a.y, b.y)
    stored.close()


def test_a_file_without_the_split_is_named_once(tmp_path):
    from hpcml.errors import InputError

    path = tmp_path / "vox.h5"
    with h5py.File(path, "w") as f:
        f["classes"] = np.array([b"a"])
    with pytest.raises(InputError) as caught:
        load_split(str(path), "train", Comm.self_comm())
    assert str(caught.value) == (f"{path}: no 'train' samples (not written by "
                                 f"`hpcml data voxelize|render`?)")
