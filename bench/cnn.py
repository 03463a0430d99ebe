"""3-D CNN workload side by side with its peers; prints ratios.

    python bench/cnn.py [--part all|throughput|voxelize|accuracy|memory|transports]
                        [--models voxnet,vcnn1]
                        [--repeats 5] [--pairs 6] [--steps 3] [--local-batch 16]
                        [--no-factored]

throughput
    Training samples/s of VoxNet and V-CNN I at 1 and 2 ranks: hpcml's trainer
    (bucketed allreduce from backward hooks over MPI; factored gradients for
    the large fully connected layers unless ``--no-factored``) against PyTorch
    DistributedDataParallel (gloo), same model, data, per-rank batch, bucket
    size and one thread per rank.  On a machine shared with other work the
    cores a job gets change from second to second, so each job runs both
    trainers, an epoch of each in turn, and the ratio is taken per pair of
    epochs (median and quartiles over all pairs of all repetitions).  Weak
    scaling: the per-rank batch is fixed, so the wall-clock efficiency is
    samples/s at 2 ranks / (2 x samples/s at 1 rank), for both trainers; the
    1- and 2-rank jobs alternate.  Alongside: the load average between jobs and
    CPU milliseconds per sample (all ranks), which the load barely moves, so
    its 1-rank/2-rank ratio shows the work that parallel training adds even
    when the wall-clock efficiency is capped by cores that other processes hold.
    The speed of this machine drifts by ±20% from minute to minute, which
    moves ratios of separate jobs by as much; so hpcml's scaling is also
    measured in one 2-rank job whose epochs alternate between 2 ranks, 1 rank
    (the other core idle) and two independent 1-rank runs at once -- the
    last is what the machine allows two ranks with no communication at all
    (they share caches, memory bandwidth and whatever else runs).
voxelize
    Meshes/s of hpcml's voxeliser against trimesh's ``voxelized`` (which
    subdivides triangles to the voxel pitch and marks the vertices) on the
    same synthetic meshes at the same 30³ resolution, one core each.
accuracy
    Test accuracy on the synthetic 10-class set after a fixed budget of epochs
    for V-CNN I, V-CNN II and MV-CNN (2 ranks), and of their late fusion with
    weights chosen on a validation split.
memory
    Peak RSS (``ru_maxrss``, the largest of 2 ranks) of one epoch of VoxNet
    training on 30³ voxel files of N and 4N training objects (2 orientations),
    as ``cnn train`` reads them (batch by batch from the file) and, beside it,
    with the whole training split loaded on every rank first (how ranks held
    it before); prints the growth from N to 4N against the data's growth.
    ``--n-train`` sets N (default 40 here means 500).
transports
    Seconds to average 64 MB of gradients in 4 MiB buckets (V-CNN I's size)
    over 4 ranks on 2 emulated nodes (``MPIR_CVAR_NUM_CLIQUES=2``: traffic
    between them leaves MPICH's shared-memory transport) by the hierarchical
    transport and by MPI's allreduce over all ranks, interleaved, median of
    ``--repeats`` x 5 rounds each; and on one node, shared against allreduce.

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


def worker_pair(args):
    """hpcml's trainer and DDP in one job, an epoch of each in turn, on identical replicas.

    One hpcml training run calls back after each of its epochs to run a DDP
    epoch, so both trainers keep their state as in a real run and see the
    machine in the same state to within an epoch: the ratio of each pair of
    epochs is far steadier on a shared machine than that of two separate
    runs.  Pair 0 warms up (the first optimiser built imports torch._dynamo,
    seconds of CPU).  hpcml's CPU time runs from the end of one DDP epoch to
    the end of its next epoch (its metrics allreduce included).
    """
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    from hpcml.comm import Comm
    from hpcml.vision.models import build_model
    from hpcml.vision.sampler import DistributedSampler
    from hpcml.vision.trainer import TrainConfig, make_sgd, train

    torch.set_num_threads(1)
    comm = Comm.world()
    dist.init_process_group("gloo", rank=comm.rank, world_size=comm.size,
                            init_method=f"tcp://127.0.0.1:{args.port}")
    gb = args.local_batch * comm.size
    data = _random_set(gb * args.steps, SHAPES[args.model])
    torch.manual_seed(0)
    ours = build_model(args.model, 10, SHAPES[args.model])
    torch.manual_seed(0)
    theirs = DistributedDataParallel(build_model(args.model, 10, SHAPES[args.model]),
                                     bucket_cap_mb=args.bucket_mb)
    # The optimiser hpcml's trainer builds (fused SGD), so that the trainers differ
    # only in how they average gradients.
    opt = make_sgd(theirs, TrainConfig(lr=0.01), torch.device("cpu"))
    sampler = DistributedSampler(data.n_samples, gb, comm.rank, comm.size, seed=1)
    pairs = []  # per pair: seconds and all ranks' CPU seconds, hpcml then DDP

    def ddp_epoch(metrics):
        """After each hpcml epoch (its figures in ``metrics``): one DDP epoch, timed alike."""
        cpu = comm.allreduce_scalar(time.process_time() - clock[0])
        pair = {"hpcml": (metrics["seconds"], cpu)}
        dist.barrier()
        c0, t0 = time.process_time(), time.perf_counter()
        for _, idx, _ in sampler.batches(metrics["epoch"]):
            opt.zero_grad(set_to_none=True)
            xb, yb = data.batch(idx)
            F.cross_entropy(theirs(xb), yb).backward()
            opt.step()
        dist.barrier()
        pair["ddp"] = (time.perf_counter() - t0, comm.allreduce_scalar(time.process_time() - c0))
        pairs.append(pair)
        clock[0] = time.process_time()

    clock = [time.process_time()]
    train(ours, args.model, data, comm,
          TrainConfig(epochs=args.pairs + 1, global_batch=gb, lr=0.01, bucket_mb=args.bucket_mb,
                      factored=args.factored, seed=1),
          device=torch.device("cpu"), on_epoch=ddp_epoch)
    dist.destroy_process_group()
    if comm.rank == 0:
        print(json.dumps({"n_samples": data.n_samples, "pairs": pairs[1:]}))


def worker_scaling(args):
    """1 -> 2 rank scaling of hpcml's trainer measured in paired epochs of one 2-rank job.

    After each 2-rank epoch (the trainer's ``on_epoch`` callback), rank 0
    trains a 1-rank replica for an epoch of the same per-rank work while
    rank 1 waits asleep (one core busy, as in a 1-rank job), then both ranks
    train their 1-rank replicas at once (two independent runs: what the
    machine allows two ranks without any communication).  The three epochs
    lie seconds apart, so the ratios hold even while the machine's speed
    drifts from minute to minute, which ratios of separate jobs do not.
    """
    import torch

    from hpcml.comm import Comm, wait_sleeping
    from hpcml.vision.models import build_model
    from hpcml.vision.trainer import TrainConfig, train

    torch.set_num_threads(1)
    comm, alone = Comm.world(), Comm.self_comm()
    if comm.size != 2:
        raise SystemExit("the scaling worker runs on 2 ranks")
    shape = SHAPES[args.model]
    joint_data = _random_set(args.local_batch * comm.size * args.steps, shape)
    solo_data = _random_set(args.local_batch * args.steps, shape, seed=1 + comm.rank)
    torch.manual_seed(0)
    joint, solo = build_model(args.model, 10, shape), build_model(args.model, 10, shape)

    def sleeping_barrier():
        wait_sleeping(comm.mpi.Ibarrier().Test)

    def solo_epoch(epoch):
        out = train(solo, args.model, solo_data, alone,
                    TrainConfig(epochs=1, global_batch=args.local_batch, lr=0.01,
                                bucket_mb=args.bucket_mb, factored=args.factored, seed=epoch),
                    device=torch.device("cpu"))
        return out["epochs"][0]["seconds"]

    rows = []

    def after_epoch(metrics):
        row = {"joint": metrics["seconds"]}
        sleeping_barrier()
        if comm.rank == 0:
            row["alone"] = solo_epoch(metrics["epoch"])
        sleeping_barrier()
        together = solo_epoch(metrics["epoch"])
        row["together"] = comm.allreduce_scalar(together) / comm.size
        sleeping_barrier()
        rows.append(row)

    train(joint, args.model, joint_data, comm,
          TrainConfig(epochs=args.pairs + 1, global_batch=args.local_batch * comm.size, lr=0.01,
                      bucket_mb=args.bucket_mb, seed=1, factored=args.factored),
          device=torch.device("cpu"), on_epoch=after_epoch)
    if comm.rank == 0:
        print(json.dumps({"rows": rows[1:]}))  # the first epochs warm up


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
def _mpiexec(ranks, *argvs, timeout=1200):
    """Run this script under ``mpiexec -n ranks`` once per ``argv``, all at once;
    returns the JSON report of each job (one report for one ``argv``)."""
    from hpcml.launch import mpiexec_path

    cmds = [[mpiexec_path(), "-n", str(ranks), sys.executable, os.path.abspath(__file__), *a]
            for a in argvs]
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    reports = []
    for cmd, proc in zip(cmds, procs):
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports if len(reports) > 1 else reports[0]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load():
    return os.getloadavg()[0]


def bench_throughput(args):
    models = args.models.split(",")
    print(f"\nTraining throughput, hpcml's trainer vs DDP (gloo): one job per (model, ranks, "
          f"repetition) runs an epoch of each in turn ({args.pairs} timed pairs after a warm-up "
          f"pair), {args.repeats} repetitions, 1- and 2-rank jobs interleaved, then a 2-rank job "
          f"of paired scaling epochs; one thread per "
          f"rank; per-rank batch {args.local_batch}; {args.steps} steps per epoch; "
          f"bucket {args.bucket_mb:g} MiB; hpcml's factored gradients "
          f"{'on' if args.factored else 'off'}")
    pairs = {(m, r): [] for m in models for r in (1, 2)}
    scaling = {m: [] for m in models}  # paired epochs of worker_scaling
    loads = [_load()]

    def argv(model, worker="pair"):
        return ["--worker", worker, "--port", str(_free_port()), "--model", model,
                "--local-batch", str(args.local_batch), "--steps", str(args.steps),
                "--pairs", str(args.pairs), "--bucket-mb", str(args.bucket_mb),
                "--factored" if args.factored else "--no-factored"]

    for rep in range(args.repeats):
        for model in models:
            for ranks in ((1, 2) if rep % 2 == 0 else (2, 1)):
                out = _mpiexec(ranks, argv(model))
                n = out["n_samples"]
                pairs[(model, ranks)] += [{k: (n / sec, 1e3 * cpu / n) for k, (sec, cpu) in p.items()}
                                          for p in out["pairs"]]
                loads.append(_load())
            scaling[model] += _mpiexec(2, argv(model, "scaling"))["rows"]
    print(f"load average (1 min) sampled between jobs: median {statistics.median(loads):.1f}, "
          f"range {min(loads):.1f}-{max(loads):.1f}, on {os.cpu_count()} cores")
    print(f"{'model':<7} {'ranks':>5} {'hpcml':>8} {'DDP':>8}  {'hpcml/DDP':>9} {'quartiles':>11}  "
          f"{'CPU ms/sample hpcml, DDP':>24}")
    med = {}
    for model in models:
        for ranks in (1, 2):
            rows = pairs[(model, ranks)]
            m = {(k, j): statistics.median(p[k][j] for p in rows)
                 for k in ("hpcml", "ddp") for j in (0, 1)}
            med[(model, ranks)] = m
            q1, q2, q3 = statistics.quantiles([p["hpcml"][0] / p["ddp"][0] for p in rows], n=4)
            print(f"{model:<7} {ranks:>5} {m['hpcml', 0]:>8.1f} {m['ddp', 0]:>8.1f}  {q2:>9.2f} "
                  f"{q1:>5.2f}-{q3:<5.2f}  {m['hpcml', 1]:>14.2f}, {m['ddp', 1]:.2f}")
    print("(samples/s: medians over all pairs; hpcml/DDP: median and quartiles of the ratios "
          "of paired epochs)")
    print("scaling efficiency 1->2 ranks (weak: per-rank batch fixed), from the medians:\n"
          "  wall = samples/s at 2 / (2 x samples/s at 1): capped by the cores the load leaves;\n"
          "  CPU = CPU ms/sample at 1 / CPU ms/sample at 2: the work that parallel training adds")
    print("  paired: hpcml's wall efficiency from epochs seconds apart in one 2-rank job (1-rank\n"
          "  epoch with the other core idle / 2-rank epoch), median and quartiles; beside it two\n"
          "  independent 1-rank runs at once, what the machine allows with no communication")
    for model in models:
        lo, hi = med[(model, 1)], med[(model, 2)]
        wall = {k: hi[k, 0] / (2 * lo[k, 0]) for k in ("hpcml", "ddp")}
        cpu = {k: lo[k, 1] / hi[k, 1] for k in ("hpcml", "ddp")}
        rows = scaling[model]
        q1, q2, q3 = statistics.quantiles([r["alone"] / r["joint"] for r in rows], n=4)
        c1, c2, c3 = statistics.quantiles([r["alone"] / r["together"] for r in rows], n=4)
        print(f"{model:<7} wall: hpcml {wall['hpcml']:.2f}, DDP {wall['ddp']:.2f}    "
              f"CPU: hpcml {cpu['hpcml']:.2f}, DDP {cpu['ddp']:.2f}    "
              f"paired: hpcml {q2:.2f} ({q1:.2f}-{q3:.2f}), two 1-rank runs at once "
              f"{c2:.2f} ({c1:.2f}-{c3:.2f})")


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


def worker_transports(args):
    from hpcml.comm import Comm
    from hpcml.runtime import keep_freed_memory
    from hpcml.vision.transports import make_transport

    keep_freed_memory()  # as the trainer does
    comm = Comm.world()
    n, bucket = 16 << 20, 1 << 20  # float32 elements: 64 MB, 4 MiB buckets
    names = ["hierarchical", "allreduce"] if comm.spans_nodes else ["shared", "allreduce"]
    transports = {name: make_transport(name, comm, n) for name in names}
    rng = np.random.default_rng(comm.rank)
    for t in transports.values():
        t.local[:] = rng.random(n, dtype=np.float32)
    seconds = {name: [] for name in names}
    for _ in range(args.repeats * 5 + 1):  # the first round warms up
        for name, t in transports.items():
            comm.barrier()
            t0 = time.perf_counter()
            for lo in range(0, n, bucket):
                t.reduce(lo, lo + bucket, 1.0 / comm.size)
            comm.barrier()
            seconds[name].append(time.perf_counter() - t0)
    for t in transports.values():
        t.free()
    if comm.rank == 0:
        print(json.dumps({"layout": str(comm.topology),
                          **{k: statistics.median(v[1:]) for k, v in seconds.items()}}))


def bench_transports(args):
    from hpcml.launch import mpiexec_path

    print("\n# averaging 64 MB of gradients (4 MiB buckets), 4 ranks, median seconds")
    for cliques in (2, 1):
        env = {**os.environ, "MPIR_CVAR_NUM_CLIQUES": str(cliques)}
        cmd = [mpiexec_path(), "-n", "4", sys.executable, os.path.abspath(__file__),
               "--worker", "transports", "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
        report = json.loads(out.strip().splitlines()[-1])
        mine = report.get("hierarchical", report.get("shared"))
        which = "hierarchical" if "hierarchical" in report else "shared"
        print(f"{report['layout']}: {which} {mine:.4f} s, MPI allreduce {report['allreduce']:.4f} s, "
              f"allreduce / {which} = {report['allreduce'] / mine:.2f}")


def bench_memory(args):
    import h5py

    from hpcml.launch import mpiexec_path

    n = 500 if args.n_train == 40 else args.n_train
    script = os.path.join(os.path.dirname(HERE), "tests", "mpi", "cnn_peak_rss.py")
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for objects in (n, 4 * n):
            path = os.path.join(tmp, f"vox{objects}.h5")
            with h5py.File(path, "w") as f:
                f.attrs["kind"] = "voxels"
                f["classes"] = np.array([str(c).encode() for c in range(10)])
                for split, k in (("train", objects), ("test", 20)):
                    f[f"{split}/y"] = rng.integers(0, 10, k)
                    x = f.create_dataset(f"{split}/x", (k, 2, 30, 30, 30), np.uint8)
                    for lo in range(0, k, 256):
                        x[lo:lo + 256] = rng.random((min(256, k - lo), 2, 30, 30, 30)) < 0.08
            for extra in ([], ["--in-memory"]):
                cmd = [mpiexec_path(), "-n", "2", sys.executable, script, path, *extra]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                report = json.loads(out.strip().splitlines()[-1])
                rows.append((objects, "in memory" if extra else "read by batch",
                             report["split_bytes"], max(report["peak_rss_kib"]) / 1024))
    print("\n# peak RSS of a training rank (max of 2 ranks), VoxNet width 0.25, 30^3 x 2 orientations")
    print(f"{'objects':>8} {'split MB':>9} {'how':>14} {'peak RSS MiB':>13}")
    for objects, how, split, rss in rows:
        print(f"{objects:>8} {split / 1e6:>9.1f} {how:>14} {rss:>13.1f}")
    for how in ("read by batch", "in memory"):
        small, big = [r for r in rows if r[1] == how]
        print(f"{how}: RSS grows {big[3] - small[3]:.1f} MiB from {small[0]} to {big[0]} objects "
              f"while the split grows {(big[2] - small[2]) / 2**20:.1f} MiB "
              f"(ratio {(big[3] - small[3]) * 2**20 / (big[2] - small[2]):.3f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "throughput", "voxelize", "accuracy", "memory",
                                           "transports"],
                        default="all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="voxnet,vcnn1", help="throughput: comma-separated")
    parser.add_argument("--steps", type=int, default=3, help="throughput: steps per epoch")
    parser.add_argument("--pairs", type=int, default=6,
                        help="throughput: timed epoch pairs (hpcml, DDP) per job")
    parser.add_argument("--epochs", type=int, default=8, help="V-CNN epochs for accuracy")
    parser.add_argument("--local-batch", type=int, default=16)
    parser.add_argument("--bucket-mb", type=float, default=4.0)
    parser.add_argument("--factored", action=argparse.BooleanOptionalAction, default=True,
                        help="hpcml's factored gradients for large fully connected layers")
    parser.add_argument("--n-train", type=int, default=40)
    parser.add_argument("--n-test", type=int, default=10)
    parser.add_argument("--width", type=float, default=0.25, help="V-CNN width for accuracy")
    parser.add_argument("--worker", choices=["pair", "scaling", "accuracy", "transports"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        {"pair": worker_pair, "scaling": worker_scaling,
         "accuracy": worker_accuracy, "transports": worker_transports}[args.worker](args)
        return
    sys.path.insert(0, HERE)
    if args.part in ("all", "voxelize"):
        bench_voxelize(args)
    if args.part in ("all", "throughput"):
        bench_throughput(args)
    if args.part in ("all", "accuracy"):
        bench_accuracy(args)
    if args.part in ("all", "memory"):
        bench_memory(args)
    if args.part in ("all", "transports"):
        bench_transports(args)


if __name__ == "__main__":
    main()
