"""3-D CNN workload side by side with its peers; prints ratios.

    python bench/cnn.py [--part all|throughput|voxelize|accuracy] [--steps 6] [--repeats 3]

throughput
    Training samples/s of VoxNet and V-CNN I at 1 and 2 ranks: hpcml's trainer
    (bucketed allreduce from backward hooks over MPI) against PyTorch
    DistributedDataParallel (gloo), same model, data, per-rank batch, bucket
    size and one thread per rank.  Runs alternate (hpcml, DDP, hpcml, ...) and
    the median of ``--repeats`` is reported.  Weak scaling: the per-rank batch
    is fixed, so efficiency = samples/s at 2 ranks / (2 x samples/s at 1 rank).
voxelize
    Meshes/s of hpcml's voxeliser against trimesh's ``voxelized`` (which
    subdivides triangles to the voxel pitch and marks the vertices) on the
    same synthetic meshes at the same 30³ resolution, one core each.
accuracy
    Test accuracy on the synthetic 10-class set after a fixed budget of epochs
    for V-CNN I, V-CNN II and MV-CNN (2 ranks), and of their late fusion with
    weights chosen on a validation split.

trimesh is a bench-only dependency (``pip install trimesh``).
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = {"voxnet": (32, 32, 32), "vcnn1": (30, 30, 30)}


# ----------------------------------------------------------------- workers (one per rank)
def _random_set(n_objects, shape, n_classes=10, seed=0):
    from hpcml.vision.dataset import SampleSet

    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_objects)
    x = (rng.random((n_objects, 1) + shape) < 0.08).astype(np.uint8)
    return SampleSet(x, y.astype(np.int64), "voxels", [str(c) for c in range(n_classes)])


def worker_hpcml(args):
    import torch

    from hpcml.comm import Comm
    from hpcml.vision.models import build_model
    from hpcml.vision.trainer import TrainConfig, train

    torch.set_num_threads(1)
    comm = Comm.world()
    gb = args.local_batch * comm.size
    data = _random_set(gb * args.steps, SHAPES[args.model])
    torch.manual_seed(0)
    model = build_model(args.model, 10, SHAPES[args.model])
    cfg = TrainConfig(epochs=2, global_batch=gb, lr=0.01, bucket_mb=args.bucket_mb, seed=1)
    out = train(model, args.model, data, comm, cfg, device=torch.device("cpu"))
    if comm.rank == 0:  # epoch 1 warms up; epoch 2 is timed
        print(json.dumps({"samples_per_s": out["epochs"][1]["samples_per_s"]}))


def worker_ddp(args):
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from hpcml.vision.models import build_model
    from hpcml.vision.sampler import DistributedSampler

    torch.set_num_threads(1)
    rank, size = int(os.environ["PMI_RANK"]), int(os.environ["PMI_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=size,
                            init_method=f"tcp://127.0.0.1:{args.port}")
    gb = args.local_batch * size
    data = _random_set(gb * args.steps, SHAPES[args.model])
    torch.manual_seed(0)
    model = DistributedDataParallel(build_model(args.model, 10, SHAPES[args.model]),
                                    bucket_cap_mb=args.bucket_mb)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sampler = DistributedSampler(data.n_samples, gb, rank, size, seed=1)
    for epoch in range(2):
        dist.barrier()
        t0 = time.perf_counter()
        for _, idx, _ in sampler.batches(epoch):
            opt.zero_grad(set_to_none=True)
            xb, yb = data.batch(idx)
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        dist.barrier()
        seconds = time.perf_counter() - t0
    if rank == 0:
        print(json.dumps({"samples_per_s": data.n_samples / seconds}))
    dist.destroy_process_group()


def worker_accuracy(args):
    import torch

    from hpcml.comm import Comm
    from hpcml.vision.dataset import validation_split
    from hpcml.vision.fusion import choose_weights, fuse
    from hpcml.vision.models import build_model
    from hpcml.vision.preprocess import load_split
    from hpcml.vision.trainer import TrainConfig, evaluate, metrics_from_scores, train

    comm = Comm.world()
    plan = json.loads(args.plan)
    val_scores, test_scores, report = [], [], {}
    for name, data_file, width, epochs, lr in plan:
        full, test = load_split(data_file, "train", comm), load_split(data_file, "test", comm)
        tr_idx, va_idx = validation_split(full.y, 0.2, seed=0)
        torch.manual_seed(0)
        model = build_model(name, len(full.classes), full.sample_shape, width=width)
        t0 = time.perf_counter()
        out = train(model, name, full.subset(tr_idx), comm,
                    TrainConfig(epochs=epochs, global_batch=32, lr=lr, schedule="cosine", seed=0))
        val_m = evaluate(model, full.subset(va_idx), comm)
        test_m = evaluate(model, test, comm)
        if comm.rank == 0:
            val_scores.append(val_m["scores"])
            test_scores.append(test_m["scores"])
            report[name] = {"test_accuracy": test_m["accuracy"], "val_accuracy": val_m["accuracy"],
                            "epochs": epochs, "width": width,
                            "train_loss": out["epochs"][-1]["loss"],
                            "seconds": time.perf_counter() - t0}
            labels_val, labels_test = val_m["labels"], test_m["labels"]
    if comm.rank == 0:
        w, val_acc = choose_weights(np.stack(val_scores), labels_val, step=0.05)
        fused = metrics_from_scores(fuse(np.stack(test_scores), w), labels_test,
                                    np.stack(test_scores).shape[2])
        report["fusion"] = {"weights": w.tolist(), "val_accuracy": val_acc,
                            "test_accuracy": fused["accuracy"]}
        print(json.dumps(report))


# ----------------------------------------------------------------- driver
def _mpiexec(ranks, argv, timeout=1200):
    from hpcml.launch import mpiexec_path

    cmd = [mpiexec_path(), "-n", str(ranks), sys.executable, os.path.abspath(__file__), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_throughput(args):
    print("\nTraining throughput (samples/s, median of %d; one thread per rank; "
          "per-rank batch %d; bucket %.0f MiB)" % (args.repeats, args.local_batch, args.bucket_mb))
    print(f"{'model':<8} {'ranks':>5} {'hpcml':>10} {'DDP (gloo)':>11} {'hpcml/DDP':>10}")
    results = {}
    for model in ("voxnet", "vcnn1"):
        for ranks in (1, 2):
            runs = {"hpcml": [], "ddp": []}
            for _ in range(args.repeats):  # interleaved: both see the same machine state
                common = ["--model", model, "--local-batch", str(args.local_batch),
                          "--steps", str(args.steps), "--bucket-mb", str(args.bucket_mb)]
                runs["hpcml"].append(_mpiexec(ranks, ["--worker", "hpcml", *common])["samples_per_s"])
                runs["ddp"].append(_mpiexec(ranks, ["--worker", "ddp", "--port", str(_free_port()),
                                                    *common])["samples_per_s"])
            med = {k: statistics.median(v) for k, v in runs.items()}
            results[(model, ranks)] = med
            print(f"{model:<8} {ranks:>5} {med['hpcml']:>10.1f} {med['ddp']:>11.1f} "
                  f"{med['hpcml'] / med['ddp']:>10.2f}")
    for model in ("voxnet", "vcnn1"):
        eff = {k: results[(model, 2)][k] / (2 * results[(model, 1)][k]) for k in ("hpcml", "ddp")}
        print(f"{model:<8} scaling efficiency 1->2 ranks: hpcml {eff['hpcml']:.2f}, "
              f"DDP {eff['ddp']:.2f}")


def bench_voxelize(args):
    import trimesh

    from harness import compare
    from hpcml.kernels.voxelize import to_grid_coords, voxelize
    from hpcml.vision.shapes import CLASSES, make_object

    meshes = [make_object(name, np.random.default_rng([7, i])) for i in range(4)
              for name in sorted(CLASSES)]
    coords = [to_grid_coords(m.vertices, 30, 24) for m in meshes]

    def ours():
        for m in meshes:
            voxelize(m, grid=30, object_size=24)

    def theirs():
        for v, m in zip(coords, meshes):
            trimesh.Trimesh(v, m.faces, process=False).voxelized(pitch=1.0)

    med = compare({"hpcml": ours, "trimesh": theirs}, repeats=args.repeats, warmup=1)
    n = len(meshes)
    print(f"\nVoxelisation of {n} synthetic meshes at 30³ (surface), one core, median of "
          f"{args.repeats}")
    print(f"hpcml {n / med['hpcml']:.0f} meshes/s, trimesh {n / med['trimesh']:.0f} "
          f"meshes/s, speed-up {med['trimesh'] / med['hpcml']:.1f}x")


def bench_accuracy(args):
    from hpcml.comm import Comm
    from hpcml.vision.preprocess import preprocess
    from hpcml.vision.shapes import generate_tree

    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "shapes")
        generate_tree(root, args.n_train, args.n_test, seed=11)
        comm = Comm.self_comm()
        vox, views = os.path.join(tmp, "vox.h5"), os.path.join(tmp, "views.h5")
        preprocess(root, vox, comm, "voxels", {"grid": 30, "object_size": 24,
                                               "orientations": 4, "solid": False})
        preprocess(root, views, comm, "views", {"views": 12, "size": 32, "mode": "shaded",
                                                "orientations": 1})
        plan = [["vcnn1", vox, args.width, args.epochs, 0.05],
                ["vcnn2", vox, args.width, args.epochs, 0.05],
                ["mvcnn", views, 0.5, 3 * args.epochs, 0.02]]
        t0 = time.perf_counter()
        report = _mpiexec(2, ["--worker", "accuracy", "--plan", json.dumps(plan)], timeout=3600)
    print(f"\nAccuracy on the synthetic 10-class set ({args.n_train} train / {args.n_test} test "
          f"objects per class, 20% of train held out for fusion weights), 2 ranks, "
          f"{time.perf_counter() - t0:.0f} s")
    for name, r in report.items():
        if name == "fusion":
            continue
        print(f"{name:<7} width {r['width']:<5} {r['epochs']:>3} epochs: test accuracy "
              f"{r['test_accuracy']:.3f} (validation {r['val_accuracy']:.3f})")
    fus = report["fusion"]
    best = max(r["test_accuracy"] for n, r in report.items() if n != "fusion")
    print(f"fusion weights {[round(w, 2) for w in fus['weights']]}: test accuracy "
          f"{fus['test_accuracy']:.3f}; fused / best single = {fus['test_accuracy'] / best:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "throughput", "voxelize", "accuracy"], default="all")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per throughput run")
    parser.add_argument("--local-batch", type=int, default=16)
    parser.add_argument("--bucket-mb", type=float, default=4.0)
    parser.add_argument("--n-train", type=int, default=40)
    parser.add_argument("--n-test", type=int, default=10)
    parser.add_argument("--width", type=float, default=0.25, help="V-CNN width for accuracy")
    parser.add_argument("--epochs", type=int, default=8, help="V-CNN epochs for accuracy")
    parser.add_argument("--worker", choices=["hpcml", "ddp", "accuracy"], help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        {"hpcml": worker_hpcml, "ddp": worker_ddp, "accuracy": worker_accuracy}[args.worker](args)
        return
    sys.path.insert(0, HERE)
    if args.part in ("all", "voxelize"):
        bench_voxelize(args)
    if args.part in ("all", "throughput"):
        bench_throughput(args)
    if args.part in ("all", "accuracy"):
        bench_accuracy(args)


if __name__ == "__main__":
    main()
