"""Same-global-batch training on a node layout, straight and through a checkpoint.

Usage: check_cnn_layouts.py OUT.npz DIR [RESUME_FROM]

Run under ``MPIR_CVAR_NUM_CLIQUES`` to emulate nodes.  Trains a small VoxNet
with the default gradient transport (shared on one node, hierarchical across
nodes) and factored gradients for two epochs ("straight"), then again one
epoch with a checkpoint in DIR and a resumed second epoch: the resumed run
must end with the same bits as the straight one.  Both must agree with the
same training in one process to float32 rounding.  With RESUME_FROM, the
second epoch is also resumed from a checkpoint that another launch (another
layout, the same number of ranks) wrote there.  OUT receives the parameters
of each run (``straight``, ``resumed``, ``resumed_from``) for the caller to
compare across layouts.
"""

import shutil
import sys
from dataclasses import replace

import numpy as np
import torch

from hpcml.checkpoint import Checkpointer
from hpcml.comm import Comm, install_abort_hook
from hpcml.vision.dataset import SampleSet
from hpcml.vision.models import build_model
from hpcml.vision.trainer import TrainConfig, train

install_abort_hook()  # a failed check on one rank ends the job instead of hanging it
world = Comm.world()
out_path, folder = sys.argv[1], sys.argv[2]
resume_from = sys.argv[3] if len(sys.argv) > 3 else None
rng = np.random.default_rng(0)
n_obj, n_rot, g = 3 * 3 + 1, 2, 12
labels = rng.integers(0, 3, n_obj)
x = (rng.random((n_obj, n_rot, g, g, g)) < 0.1 + 0.1 * labels[:, None, None, None, None])
data = SampleSet(x.astype(np.uint8), labels.astype(np.int64), "voxels", ["a", "b", "c"])
# 20 samples, batch 7: steps of 7, 7, 6 samples, split unevenly over 2-4 ranks.
config = TrainConfig(epochs=2, global_batch=7, lr=0.05, momentum=0.9, weight_decay=1e-3,
                     schedule="step", step_epochs=1, gamma=0.5, bucket_mb=0.004, seed=3)
JOB = {"check": "cnn_layouts"}


def copy(folder, tag):
    """A copy of a checkpoint folder to resume in (resuming saves there too), so that
    ``folder`` keeps only the checkpoint of the first epoch for other launches."""
    target = f"{out_path}.{tag}"
    if world.rank == 0:
        shutil.copytree(folder, target)
    world.barrier()
    return target


def run(comm, epochs=2, directory=None, resume=False):
    # Initial weights differ per rank; the broadcast must make rank 0's win.
    torch.manual_seed(1234 + comm.rank)
    model = build_model("voxnet", 3, (g, g, g), width=0.25, dropout=0.0)
    ckpt = Checkpointer(directory, comm, every=0, resume=resume, job=JOB) if directory else None
    out = train(model, "voxnet", data, comm, replace(config, epochs=epochs), checkpointer=ckpt,
                device=torch.device("cpu"))
    return out, np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


straight, params = run(world)
assert straight["steps"] == 6, straight["steps"]
# Every rank ends with the same bits.
spread = world.allreduce(params.copy(), "max") - world.allreduce(params.copy(), "min")
assert spread.max() == 0.0, spread.max()
alone, alone_params = run(Comm.self_comm())
np.testing.assert_allclose(straight["history"], alone["history"], rtol=1e-5)
np.testing.assert_allclose(params, alone_params, rtol=1e-4, atol=1e-6)

first, _ = run(world, epochs=1, directory=folder)
assert first["steps"] == 3, first["steps"]
second, resumed = run(world, directory=copy(folder, "resumed"), resume=True)
assert second["steps"] == 3, second["steps"]
assert np.array_equal(resumed, params), np.abs(resumed - params).max()
assert second["history"] == straight["history"][3:], (second["history"], straight["history"])

saved = {"straight": params, "resumed": resumed, "history": np.asarray(straight["history"])}
if resume_from is not None:
    again, saved["resumed_from"] = run(world, directory=copy(resume_from, "from"), resume=True)
    assert again["steps"] == 3, again["steps"]
if world.rank == 0:
    np.savez(out_path, **saved)
    print("ok", world.topology)
sys.exit(0)
