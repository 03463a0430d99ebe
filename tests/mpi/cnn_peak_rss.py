"""Train one epoch of a small VoxNet on a preprocessed file; print every rank's peak RSS.

Usage: cnn_peak_rss.py DATA.h5 [--in-memory]

Prints (rank 0) a JSON object: ``peak_rss_kib`` per rank (``ru_maxrss``) and
the bytes of the training split.  ``--in-memory`` first loads the whole
training split on every rank (what a rank held before samples were read
batch by batch), for comparison.
"""

import json
import resource
import sys

import h5py

from hpcml.comm import Comm, install_abort_hook
from hpcml.vision.dataset import SampleSet
from hpcml.vision.preprocess import load_split
from hpcml.vision.trainer import TrainConfig, fit_and_score, train

install_abort_hook()
comm = Comm.world()
path = sys.argv[1]
config = TrainConfig(epochs=1, global_batch=64, lr=0.01, seed=0)
with h5py.File(path, "r") as f:
    split_bytes = f["train/x"].nbytes
if "--in-memory" in sys.argv:
    import torch

    from hpcml.vision.models import build_model

    stored = load_split(path, "train", comm)
    with h5py.File(path, "r") as f:
        data = SampleSet(f["train/x"][()], stored.y, stored.kind, stored.classes)
    torch.manual_seed(0)
    model = build_model("voxnet", len(data.classes), data.sample_shape, width=0.25)
    steps = train(model, "voxnet", data, comm, config)["steps"]
else:
    steps = fit_and_score(path, "voxnet", comm, config, width=0.25).training["steps"]
every = comm.allgather_obj(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
if comm.rank == 0:
    print(json.dumps({"peak_rss_kib": every, "split_bytes": int(split_bytes), "steps": steps,
                      "ranks": comm.size}))
sys.exit(0)
