"""Sampler, trainer, checkpoint/resume and learning on the synthetic shapes (one process)."""

import numpy as np
import pytest

from conftest import mpi_script
from hpcml.comm import Comm
from hpcml.vision.dataset import SampleSet, validation_split
from hpcml.vision.sampler import DistributedSampler

torch = pytest.importorskip("torch", reason="the cnn extra (torch) is not installed")

from hpcml.checkpoint import Checkpointer  # noqa: E402
from hpcml.errors import InputError  # noqa: E402
from hpcml.vision.models import build_model  # noqa: E402
from hpcml.vision.trainer import TrainConfig, evaluate, train  # noqa: E402


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_sampler_covers_each_epoch_once(size):
    n, batch = 3 * 4 + 1, 4
    per_rank = [DistributedSampler(n, batch, r, size, seed=9) for r in range(size)]
    for epoch in range(2):
        steps = [list(s.batches(epoch)) for s in per_rank]
        seen = []
        for step in range(per_rank[0].steps_per_epoch()):
            blocks = [steps[r][step][1] for r in range(size)]
            # The ranks' blocks, in rank order, are exactly the global batch.
            gb = np.concatenate(blocks)
            assert len(gb) == steps[0][step][2]
            seen.extend(gb)
        assert sorted(seen) == list(range(n))
        np.testing.assert_array_equal(seen, per_rank[0].order(epoch))
    assert not np.array_equal(per_rank[0].order(0), per_rank[0].order(1))
    resumed = list(per_rank[0].batches(1, start_step=2))
    assert [s for s, _, _ in resumed] == list(range(2, per_rank[0].steps_per_epoch()))
    assert DistributedSampler(n, batch, 0, 1, drop_last=True).steps_per_epoch() == 3


def test_lr_schedule():
    c = TrainConfig(lr=0.1, schedule="step", step_epochs=2, gamma=0.5, epochs=6)
    assert [c.lr_at(e) for e in range(5)] == [0.1, 0.1, 0.05, 0.05, 0.025]
    cos = TrainConfig(lr=0.2, schedule="cosine", epochs=4)
    np.testing.assert_allclose([cos.lr_at(e) for e in range(4)],
                               [0.2 * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in range(4)])
    with pytest.raises(ValueError):
        TrainConfig(schedule="linear")


def test_validation_split_is_stratified():
    labels = np.repeat(np.arange(3), [10, 5, 1])
    tr, va = validation_split(labels, 0.2, seed=1)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 16
    assert np.bincount(labels[va], minlength=3).tolist() == [2, 1, 0]
    np.testing.assert_array_equal(va, validation_split(labels, 0.2, seed=1)[1])


def random_set(n_obj=13, n_rot=2, g=12, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_obj)
    x = rng.random((n_obj, n_rot, g, g, g)) < 0.05 + 0.1 * y[:, None, None, None, None]
    return SampleSet(x.astype(np.uint8), y.astype(np.int64), "voxels",
                     [f"c{i}" for i in range(n_classes)])


def fresh(dropout=0.5):
    torch.manual_seed(5)
    return build_model("voxnet", 3, (12, 12, 12), width=0.25, dropout=dropout)


def test_resume_continues_the_same_loss_curve(tmp_path):
    comm = Comm.self_comm()
    data = random_set()
    cfg = dict(global_batch=5, lr=0.05, step_epochs=2, gamma=0.5, seed=2)
    seen = []
    straight = train(fresh(), "voxnet", data, comm, TrainConfig(epochs=3, **cfg),
                     on_epoch=seen.append)
    assert seen == straight["epochs"] and [m["epoch"] for m in seen] == [1, 2, 3]
    # Stop after one epoch (plus a mid-epoch checkpoint), then resume to three epochs.
    ck = Checkpointer(str(tmp_path / "ck"), comm, every=4, resume=True)
    first = train(fresh(), "voxnet", data, comm, TrainConfig(epochs=1, **cfg), checkpointer=ck)
    other_start = fresh()
    with torch.no_grad():  # the resumed run must not depend on its own initial weights
        for p in other_start.parameters():
            p.add_(1.0)
    rest = train(other_start, "voxnet", data, comm, TrainConfig(epochs=3, **cfg), checkpointer=ck)
    # Dropout is on: equality needs the restored RNG state as well as weights and momentum.
    np.testing.assert_allclose(first["history"] + rest["history"], straight["history"], rtol=1e-6)
    assert rest["steps"] == 2 * first["steps"]


def test_resume_mid_epoch(tmp_path):
    import shutil

    comm = Comm.self_comm()
    data = random_set()  # 26 samples, batches of 4: 7 steps per epoch
    cfg = dict(global_batch=4, lr=0.05, seed=4)
    straight = train(fresh(), "voxnet", data, comm, TrainConfig(epochs=2, **cfg))
    ck = Checkpointer(str(tmp_path / "ck"), comm, every=10, resume=True)
    train(fresh(), "voxnet", data, comm, TrainConfig(epochs=2, **cfg), checkpointer=ck)
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert [n.rsplit("-", 1)[0] for n in names] == ["ckpt-00000010", "ckpt-00000014"]
    # Drop the final checkpoint: resume from step 10, the fourth step of the second epoch.
    shutil.rmtree(tmp_path / "ck" / names[-1])
    resumed = train(fresh(), "voxnet", data, comm, TrainConfig(epochs=2, **cfg), checkpointer=ck)
    assert resumed["steps"] == 4
    np.testing.assert_allclose(resumed["history"], straight["history"][-4:], rtol=1e-6)


def test_checkpoint_from_another_architecture(tmp_path):
    comm = Comm.self_comm()
    data = random_set()
    ck = Checkpointer(str(tmp_path / "ck"), comm, every=100, resume=True)
    train(fresh(), "voxnet", data, comm, TrainConfig(epochs=1, global_batch=8), checkpointer=ck)
    torch.manual_seed(0)
    wider = build_model("voxnet", 3, (12, 12, 12), width=0.5)
    with pytest.raises(InputError, match="does not fit this voxnet") as info:
        train(wider, "voxnet", data, comm, TrainConfig(epochs=2, global_batch=8), checkpointer=ck)
    assert "\n" not in str(info.value)
    other = build_model("vcnn2", 3, (13, 13, 13), width=0.1)
    with pytest.raises(InputError, match="written for model 'voxnet', not 'vcnn2'"):
        train(other, "vcnn2", random_set(g=13), comm, TrainConfig(epochs=2, global_batch=8),
              checkpointer=ck)


def test_learns_synthetic_shapes_well_above_chance():
    from hpcml.kernels.voxelize import voxelize_orientations
    from hpcml.vision.shapes import make_object

    names = ["bottle", "chair", "lamp", "table"]
    comm = Comm.self_comm()

    def make(split, n):
        xs, ys = [], []
        for c, name in enumerate(names):
            for i in range(n):
                mesh = make_object(name, np.random.default_rng([split, c, i]))
                xs.append(voxelize_orientations(mesh, 2, grid=14, object_size=12))
                ys.append(c)
        return SampleSet(np.stack(xs), np.array(ys), "voxels", names)

    tr, te = make(0, 12), make(1, 8)
    torch.manual_seed(0)
    model = build_model("voxnet", 4, (14, 14, 14), width=0.5)
    out = train(model, "voxnet", tr, comm, TrainConfig(epochs=12, global_batch=8, lr=0.05,
                                                      schedule="cosine", seed=1))
    assert out["history"][-1] < out["history"][0]
    metrics = evaluate(model, te, comm)
    assert metrics["confusion"].sum() == 32
    assert metrics["accuracy"] >= 0.6, metrics["confusion"]  # chance is 0.25



@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_bucketed_allreduce_is_the_mean(ranks):
    mpi_script(ranks, "check_cnn_buckets.py")


@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_train_like_one(ranks):
    mpi_script(ranks, "check_cnn_equivalence.py", timeout=180)
