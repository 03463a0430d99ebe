"""Training on N ranks equals training on one with the same global batch.

Every rank also runs the whole training alone (on COMM_SELF) and compares the
parameters and the per-step losses with the distributed run.  The 20
samples make global batches of 7, 7 and 6, which 2 or 3 ranks split unevenly.
The distributed run is made twice: with the hidden fully connected layer
factored (the trainer's default on one node) and without.
"""

import sys
from dataclasses import replace

import numpy as np
import torch

from hpcml.comm import Comm, install_abort_hook
from hpcml.vision.dataset import SampleSet
from hpcml.vision.models import build_model
from hpcml.vision.trainer import TrainConfig, train

install_abort_hook()  # a failed check on one rank ends the job instead of hanging it
world = Comm.world()
rng = np.random.default_rng(0)
n_obj, n_rot, g = 3 * 3 + 1, 2, 16
labels = rng.integers(0, 3, n_obj)
x = (rng.random((n_obj, n_rot, g, g, g)) < 0.1 + 0.1 * labels[:, None, None, None, None])
data = SampleSet(x.astype(np.uint8), labels.astype(np.int64), "voxels", ["a", "b", "c"])
# 20 samples, batch 7: steps of 7, 7, 6 samples.
config = TrainConfig(epochs=2, global_batch=7, lr=0.05, momentum=0.9, weight_decay=1e-3,
                     schedule="step", step_epochs=1, gamma=0.5, bucket_mb=0.01, seed=3)


def run(comm, seed, factored=True):
    torch.manual_seed(seed)
    model = build_model("voxnet", 3, (g, g, g), width=0.25, dropout=0.0)
    # Linear(64, 32) outnumbers the factors of 3 ranks' blocks of up to 3 rows.
    fc = model.head[1]
    assert fc.in_features * fc.out_features > 3 * 3 * (fc.in_features + fc.out_features)
    out = train(model, "voxnet", data, comm, replace(config, factored=factored),
                device=torch.device("cpu"))
    return out, np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


alone, alone_params = run(Comm.self_comm(), 1234)
assert alone["steps"] == 6, alone["steps"]
for factored in (True, False):
    # Initial weights differ per rank; the broadcast must make rank 0's win.
    dist, dist_params = run(world, 1234 + world.rank, factored)
    assert dist["steps"] == 6, dist["steps"]
    np.testing.assert_allclose(dist["history"], alone["history"], rtol=1e-5)
    np.testing.assert_allclose(dist_params, alone_params, rtol=1e-4, atol=1e-6)
    # Every rank ends with the same parameters.
    spread = world.allreduce(dist_params.copy(), "max") - world.allreduce(dist_params.copy(), "min")
    assert spread.max() == 0.0, spread.max()
if world.rank == 0:
    print("ok", dist["history"])
sys.exit(0)
