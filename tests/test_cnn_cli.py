"""``hpcml data shapes|voxelize|render`` and ``hpcml cnn train|eval|fuse`` end to end under mpiexec."""

import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

from conftest import hpcml
from hpcml.vision.shapes import generate_tree

pytest.importorskip("torch", reason="the cnn extra (torch) is not installed")
pytestmark = pytest.mark.mpi

CLASSES = ["bottle", "chair", "table"]
VOX = ["--grid", 14, "--object-size", 12, "--orientations", 2]
TRAIN = ["--model", "voxnet", "--width", 0.25, "--epochs", 2, "--batch", 8, "--lr", 0.05]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn") / "shapes"
    generate_tree(root, n_train=5, n_test=2, seed=4, classes=CLASSES)
    return root


@pytest.fixture(scope="module")
def voxels(tree):
    out = tree.parent / "vox.h5"
    result = hpcml(2, "data", "voxelize", tree, "--output", out, *VOX, "--json")
    assert result.returncode == 0, result
    summary = json.loads(result.stdout)
    assert summary["train"] == {"objects": 15, "skipped": 0}
    return out


def test_voxelize_output_matches_the_kernel(tree, voxels):
    from hpcml.io.off import read_off
    from hpcml.kernels.voxelize import voxelize_orientations

    with h5py.File(voxels) as f:
        assert f.attrs["kind"] == "voxels" and f.attrs["ranks"] == 2
        assert [c.decode() for c in f["classes"][()]] == CLASSES
        x, y, idx = f["train/x"][()], f["train/y"][()], f["train/file_index"][()]
        files = [p.decode() for p in f["train/files"][()]]
    assert x.shape == (15, 2, 14, 14, 14) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, np.repeat([0, 1, 2], 5))
    for row in (0, 7, 14):
        expected = voxelize_orientations(read_off(files[idx[row]]), 2, grid=14, object_size=12)
        np.testing.assert_array_equal(x[row], expected)


def test_train_eval_fuse(voxels, tmp_path):
    model = tmp_path / "voxnet.h5"
    result = hpcml(2, "cnn", "train", "--data", voxels, *TRAIN, "--val-fraction", 0.4,
                   "--seed", 3, "--output", model, "--json")
    assert result.returncode == 0, result
    summary = json.loads(result.stdout)
    assert len(summary["epochs"]) == 2 and 0 <= summary["test_accuracy"] <= 1
    with h5py.File(model) as f:
        assert f["val/scores"].shape == (6, 3) and f["test/scores"].shape == (6, 3)
        np.testing.assert_allclose(f["test/scores"][()].sum(1), 1.0, rtol=1e-5)

    result = hpcml(1, "cnn", "eval", model, "--data", voxels, "--json")
    assert result.returncode == 0, result
    ev = json.loads(result.stdout)
    assert ev["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert np.array(ev["confusion"]).sum() == 6 and set(ev["per_class_accuracy"]) == set(CLASSES)

    # Fusing a network with itself: every weighting scores the same; the search must say so.
    result = hpcml(2, "cnn", "fuse", model, model, "--step", 0.25, "--json")
    assert result.returncode == 0, result
    fused = json.loads(result.stdout)
    assert np.isclose(sum(fused["weights"]), 1.0)
    assert fused["fused_test_accuracy"] == pytest.approx(summary["test_accuracy"])


def test_render_output_matches_the_kernel(tree, tmp_path):
    from hpcml.io.off import read_off
    from hpcml.kernels.render import render_views

    views = tmp_path / "views.h5"
    result = hpcml(2, "data", "render", tree, "--output", views, "--size", 16, "--mode", "depth")
    assert result.returncode == 0, result
    with h5py.File(views) as f:
        x, idx = f["test/x"][()], f["test/file_index"][()]
        files = [p.decode() for p in f["test/files"][()]]
    assert x.shape == (6, 1, 12, 16, 16)
    expected = render_views(read_off(files[idx[3]]), 12, 16, "depth")
    np.testing.assert_array_equal(x[3, 0], np.rint(expected * 255).astype(np.uint8))


def test_grid_too_small(voxels):
    result = hpcml(1, "cnn", "train", "--data", voxels, "--model", "vcnn1", "--epochs", 1,
                   "--output", "unused.h5")
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "VCNN1 cannot take input" in lines[0] and "at least 22" in lines[0]


def test_bad_mesh_fail_or_skip(tree, tmp_path):
    import shutil

    bad_root = tmp_path / "bad"
    shutil.copytree(tree, bad_root)
    victim = bad_root / "chair" / "train" / "chair_0002.off"
    victim.write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n")
    result = hpcml(2, "data", "voxelize", bad_root, "--output", tmp_path / "v.h5", *VOX)
    assert result.returncode == 2, result
    line = result.stderr.strip().splitlines()
    assert len(line) == 1 and "chair_0002.off:5: truncated file" in line[0]
    assert not os.path.exists(tmp_path / "v.h5")
    result = hpcml(2, "data", "voxelize", bad_root, "--output", tmp_path / "v.h5", *VOX,
                   "--on-bad-mesh", "skip", "--json")
    assert result.returncode == 0, result
    assert "skipped unreadable mesh" in result.stderr and "chair_0002.off" in result.stderr
    assert json.loads(result.stdout)["train"] == {"objects": 14, "skipped": 1}


def test_mesh_with_a_nan_vertex_fails_instead_of_voxelizing_empty(tree, tmp_path):
    import shutil

    bad_root = tmp_path / "bad"
    shutil.copytree(tree, bad_root)
    victim = bad_root / "table" / "test" / "table_0001.off"
    lines = victim.read_text().splitlines()
    lines[2] = "nan 0 0"   # the first vertex
    victim.write_text("\n".join(lines) + "\n")
    result = hpcml(2, "data", "voxelize", bad_root, "--output", tmp_path / "v.h5", *VOX)
    assert result.returncode == 2, result
    assert "table_0001.off: vertex 0 has a coordinate that is not finite" in result.stderr, result
    assert not os.path.exists(tmp_path / "v.h5")


def test_class_left_empty_by_skipping(tree, tmp_path):
    import shutil

    from hpcml.comm import Comm
    from hpcml.errors import InputError
    from hpcml.vision.preprocess import preprocess

    bad_root = tmp_path / "bad"
    shutil.copytree(tree, bad_root)
    for f in (bad_root / "bottle" / "test").iterdir():
        f.write_text("garbage\n")
    options = {"grid": 8, "object_size": 6, "orientations": 1, "solid": False}
    with pytest.raises(InputError, match="class 'bottle' has no usable meshes in split 'test'"):
        preprocess(bad_root, tmp_path / "w.h5", Comm.self_comm(), "voxels", options, "skip")
    assert not (tmp_path / "w.h5").exists()


def test_sigterm_checkpoint_resume_and_foreign_checkpoint(voxels, tmp_path):
    from hpcml.launch import mpiexec_command

    ck = tmp_path / "ck"

    def args(epochs):
        return ["cnn", "train", "--data", str(voxels), "--model", "voxnet", "--width", "0.25",
                "--epochs", str(epochs), "--batch", "4", "--output", str(tmp_path / "m.h5"),
                "--checkpoint-dir", str(ck), "--checkpoint-every", "5"]

    proc = subprocess.Popen(mpiexec_command(2, args(1000)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 90
        while not list(ck.glob("ckpt-00000005-*")) and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 75, err
    assert "checkpoint of iteration" in err
    assert not (tmp_path / "m.h5").exists()
    last = int(sorted(os.listdir(ck))[-1].split("-")[1])
    assert last >= 5
    # A checkpoint of another network (here: other widths) is refused in one line.
    result = hpcml(2, *args(1000), "--width", "0.5", "--resume")
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "belongs to another job: params width was 0.25, is 0.5" in lines[0]
    # Resume and train to the end of the epoch after the checkpoint's last finished step
    # (30 samples, batches of 4: 8 steps per epoch).
    epochs = last // 8 + 1
    result = hpcml(2, *args(epochs), "--resume", "--json")
    assert result.returncode == 0, result
    assert os.path.exists(tmp_path / "m.h5")
    done = json.loads(result.stdout)["epochs"]
    assert [e["epoch"] for e in done] == [epochs]


def test_diverged_training_writes_no_model(voxels, tmp_path):
    result = hpcml(2, "cnn", "train", "--data", voxels, *TRAIN[:-2], "--lr", 1e30, "--output", tmp_path / "m.h5")
    assert result.returncode == 2 and "training diverged: the mean loss of epoch 1 is nan" in result.stderr, result
    assert result.stderr.count("hpcml: error") == 1 and not (tmp_path / "m.h5").exists()


def test_model_file_with_nan_parameters_is_refused(voxels, tmp_path):
    model = tmp_path / "m.h5"
    assert hpcml(1, "cnn", "train", "--data", voxels, *TRAIN[:-4], "--epochs", 1, "--output", model).returncode == 0
    with h5py.File(model, "a") as handle:
        name = sorted(handle["params"])[0]
        data = handle["params"][name][()]
        data.flat[0] = np.nan
        handle["params"][name][...] = data
    result = hpcml(2, "cnn", "eval", model, "--data", voxels)
    assert result.returncode == 2 and f"parameter {name} holds NaN or Inf" in result.stderr, result
