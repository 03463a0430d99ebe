"""Calibrate the scaling model's α and β here, then check its predictions.

Calibration: a ping-pong and an allreduce sweep (8 B … 64 MB) between
MPICH's emulated nodes (``MPIR_CVAR_NUM_CLIQUES=2``): 2 ranks as 2 nodes × 1,
and 4 ranks as 2 nodes × 2, whose same-node pair gives the shared-memory
figures.  α and β are fitted by least squares on relative residuals (a
plain fit of absolute times would let the 64 MB points decide α too):

* ping-pong, one-way time t(n) = α + nβ, between nodes and inside a node;
* allreduce, t(n) = the model's cost of the algorithm MPICH picks
  (:func:`hpcml.scale.collective_seconds`), which is linear in the
  network's α and β once the shared-memory part is fixed.

Check: a real workload (``hpcml stats`` on a wide matrix, whose one
allreduce per iteration is an n-vector, and ``hpcml lda train`` with the
replicated layout, whose exchange is an allgatherv of the tokens' topics)
runs on 1 node × 2 ranks, 2 nodes × 1 and 2 nodes × 2.  The first run's
record, scaled by :func:`hpcml.scale.predict` with the calibrated figures,
is set against what the other two measured (a 1-rank run would not do as
the base: it records no exchange).  On a machine with fewer cores than
ranks (4 ranks on 2 cores here) compute cannot divide by 2 from 2 to 4
ranks, and a rank's "communication" includes the time it waits for a
descheduled peer; the table shows compute and network apart for that.

Usage::

    python bench/network.py                 # calibrate, then check
    python bench/network.py --no-check      # calibrate only
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from hpcml import scale  # noqa: E402
from hpcml.launch import mpiexec_path  # noqa: E402

SIZES = [8 * 8 ** k for k in range(8)] + [64 << 20]   # 8 B, 64 B, ... 16 MiB, 64 MiB


def repeats(nbytes, budget):
    """Repetitions for one size: about ``budget`` seconds at 1 GB/s, 3 to 1000."""
    return int(min(1000, max(3, budget / (2e-5 + nbytes * 1e-9))))


# ----------------------------------------------------------------- the worker (under mpiexec)

def _ping_pong(mpi, me, a, b, budget):
    """One-way seconds per size between ranks ``a`` and ``b`` (median of blocks)."""
    times = []
    for n in SIZES:
        buf = np.zeros(n, np.uint8)
        reps = repeats(n, budget)
        blocks = []
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(reps):
                if me == a:
                    mpi.Send(buf, dest=b, tag=7)
                    mpi.Recv(buf, source=b, tag=7)
                else:
                    mpi.Recv(buf, source=a, tag=7)
                    mpi.Send(buf, dest=a, tag=7)
            blocks.append((time.perf_counter() - t0) / reps / 2)
        times.append(float(np.median(blocks)))
    return times


def worker(budget):
    """Ping-pong between node pairs, then an allreduce sweep on every rank; rank 0 prints JSON."""
    from hpcml.comm import Comm, wait_sleeping

    comm = Comm.world()
    # Point-to-point timing is below the Comm wrapper's collectives: the raw
    # communicator is used for the ping-pong only.
    mpi = comm.mpi
    node_of = comm.allgather_obj(comm.topology.node_index)
    pairs = {}
    other = [r for r in range(comm.size) if node_of[r] != node_of[0]]
    same = [r for r in range(1, comm.size) if node_of[r] == node_of[0]]
    if other:
        pairs["between nodes"] = (0, other[0])
    if same:
        pairs["inside a node"] = (0, same[0])
    result = {"ranks": comm.size, "ranks_per_node": list(comm.topology.ranks_per_node),
              "sizes": SIZES, "ping_pong": {}}
    for name, (a, b) in pairs.items():
        if comm.rank in (a, b):
            times = _ping_pong(mpi, comm.rank, a, b, budget)
            if comm.rank == 0:
                result["ping_pong"][name] = times
        # The ranks outside the pair wait without spinning, leaving the cores to it.
        wait_sleeping(mpi.Ibarrier().Test)
    sweep = []
    for n in SIZES:
        buf = np.zeros(max(n // 8, 1), np.float64)
        reps = repeats(n, budget)
        comm.allreduce(buf)   # warm
        blocks = []
        for _ in range(3):
            comm.barrier()
            t0 = time.perf_counter()
            for _ in range(reps):
                comm.allreduce(buf)
            blocks.append(comm.allreduce_scalar((time.perf_counter() - t0) / reps, "max"))
        sweep.append(float(np.median(blocks)))
    result["allreduce"] = sweep
    if comm.rank == 0:
        print(json.dumps(result), flush=True)


# ----------------------------------------------------------------- fits

def fit(rows, targets):
    """Least squares of ``rows @ x ≈ targets`` on relative residuals; returns x."""
    rows, targets = np.asarray(rows, float), np.asarray(targets, float)
    x, *_ = np.linalg.lstsq(rows / targets[:, None], np.ones_like(targets), rcond=None)
    return x


def fit_ping_pong(times):
    """(α, β) of t = α + nβ."""
    return fit([[1.0, n] for n in SIZES], times)


def fit_allreduce(runs, shm):
    """(α, β) of the network from allreduce sweeps: t − shared-memory part = a·α + b·β."""
    rows, targets = [], []
    for run in runs:
        nodes, per_node = len(run["ranks_per_node"]), max(run["ranks_per_node"])
        for n, t in zip(SIZES, run["allreduce"]):
            def cost(alpha, beta):
                return scale.collective_seconds("allreduce", n, nodes, per_node,
                                                scale.Network("x", alpha, beta), shm)[0]
            base = cost(0.0, 0.0)
            rows.append([cost(1.0, 0.0) - base, cost(0.0, 1.0) - base])
            targets.append(t - base)
    keep = [i for i, t in enumerate(targets) if t > 0]
    return fit([rows[i] for i in keep], [targets[i] for i in keep])


def run_worker(ranks, budget, env):
    command = [mpiexec_path(), "-n", str(ranks), sys.executable, os.path.abspath(__file__),
               "--worker", "--budget", str(budget)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode:
        sys.exit(f"worker failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def calibrate(budget):
    """Run the sweeps on 2 and 4 ranks of 2 emulated nodes; print and return the figures."""
    env = {**os.environ, "MPIR_CVAR_NUM_CLIQUES": "2", "OPENBLAS_NUM_THREADS": "1"}
    runs = [run_worker(2, budget, env), run_worker(4, budget, env)]
    print("sizes (bytes):", " ".join(f"{n:g}" for n in SIZES))
    print(f"{'sweep':<40} " + " ".join(f"{n:>9.3g}" for n in SIZES))
    for run in runs:
        layout = f"{len(run['ranks_per_node'])}x{max(run['ranks_per_node'])}"
        for name, times in run["ping_pong"].items():
            print(f"{'ping-pong one-way us, ' + name + ' (' + layout + ')':<40} "
                  + " ".join(f"{t * 1e6:>9.3g}" for t in times))
        print(f"{'allreduce us (' + layout + ')':<40} " + " ".join(f"{t * 1e6:>9.3g}" for t in run["allreduce"]))
    between = np.median([run["ping_pong"]["between nodes"] for run in runs], axis=0)
    alpha, beta = fit_ping_pong(between)
    shm_alpha, shm_beta = fit_ping_pong(runs[1]["ping_pong"]["inside a node"])
    shm = scale.Network("shared memory (fitted)", max(shm_alpha, 0.0), max(shm_beta, 0.0))
    net = scale.Network("emulated nodes (ping-pong fit)", max(alpha, 0.0), max(beta, 0.0))
    ar_alpha, ar_beta = fit_allreduce(runs, shm)
    net_ar = scale.Network("emulated nodes (allreduce fit)", max(ar_alpha, 0.0), max(ar_beta, 0.0))
    print("\nleast-squares fits (relative residuals):")
    for what in (net, shm, net_ar):
        print(f"  {what.describe()}")
    for what, times in (("between nodes", between), ("inside a node", runs[1]["ping_pong"]["inside a node"])):
        a, b = (net if what == "between nodes" else shm).alpha, (net if what == "between nodes" else shm).beta
        worst = max(abs(a + n * b - t) / t for n, t in zip(SIZES, times))
        print(f"  ping-pong {what}: largest relative misfit {100 * worst:.0f}%")
    print("\nallreduce predicted from the ping-pong fits against measured (us), relative error:")
    for run in runs:
        nodes, per_node = len(run["ranks_per_node"]), max(run["ranks_per_node"])
        cells = []
        for n, t in zip(SIZES, run["allreduce"]):
            pred, _ = scale.collective_seconds("allreduce", n, nodes, per_node, net, shm)
            cells.append(f"{pred * 1e6:.3g}/{t * 1e6:.3g} ({100 * (pred / t - 1):+.0f}%)")
        print(f"  {nodes}x{per_node}: " + ", ".join(cells))
    print(f"\nhpcml scale RUN.h5 --alpha {net.alpha:.3g} --beta {net.beta:.3g} "
          f"--shm-alpha {shm.alpha:.3g} --shm-beta {shm.beta:.3g}")
    return net, shm, net_ar


# ----------------------------------------------------------------- the check

def hpcml_cmd(ranks, *args):
    return [mpiexec_path(), "-n", str(ranks), sys.executable, "-m", "hpcml", *map(str, args)]


def payload(profile):
    """Payload bytes per iteration, over every collective."""
    return sum(calls * nbytes for calls, nbytes in profile.collectives.values())


def check(net, shm, folder, iterations):
    """Predicted against measured time per iteration for stats and lda train."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": os.path.dirname(HERE)}
    subprocess.run([sys.executable, "-m", "hpcml", "data", "matrix", "--rows", "97", "--cols", "60000",
                    "--output", f"{folder}/wide.h5:/A"], env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "hpcml", "data", "corpus", "synthetic", "--docs", "2000",
                    "--words", "2000", "--topics", "20", "--doc-length", "100",
                    "--output", f"{folder}/corpus.h5"], env=env, check=True, capture_output=True)
    jobs = {
        "stats": ["stats", "--input", f"{folder}/wide.h5:/A", "--tol", 0,
                  "--power-iterations", iterations],
        "lda train": ["lda", "train", "--input", f"{folder}/corpus.h5", "--topics", 20,
                      "--iterations", iterations, "--layout", "replicated"],
    }
    # The base run has every collective of the job (a 1-rank run has none: LDA
    # exchanges nothing there) and shares its node, so no figure of the
    # emulated network enters the prediction except through the model.
    layouts = [(1, 2), (2, 1), (2, 2)]
    print(f"\npredicted from the 1 node x 2 ranks run against measured, ms per iteration; "
          f"network {net.describe()}, {shm.describe()}")
    print(f"{'workload':<10} {'nodes x ranks':>13} {'compute':>15} {'network':>15} "
          f"{'total':>15} {'error':>6}   {'kB per iteration':>17}")
    print(f"{'':<10} {'':>13} {'pred / meas':>15} {'pred / meas':>15} {'pred / meas':>15} {'':>6}   "
          f"{'base / meas':>17}")

    def pair(p, m):
        return f"{p * 1e3:.3g} / {m * 1e3:.3g}"

    table = []
    for name, args in jobs.items():
        base = None
        for nodes, per_node in layouts:
            out = f"{folder}/{name.replace(' ', '_')}-{nodes}x{per_node}.h5"
            cenv = {**env, "MPIR_CVAR_NUM_CLIQUES": str(nodes)}
            done = subprocess.run(hpcml_cmd(nodes * per_node, *args, "--output", out), env=cenv,
                                  capture_output=True, text=True, timeout=900)
            if done.returncode:
                sys.exit(f"{name} failed:\n{done.stderr}")
            measured = scale.read_profile(out)
            if base is None:
                base = measured
                cells = [f"- / {t * 1e3:.3g}" for t in (base.compute_s, base.comm_s, base.wall_s)]
                print(f"{name:<10} {f'{nodes} x {per_node}':>13} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}"
                      "   base: " + ", ".join(f"{k} {c:.3g} x {b:.3g} B"
                                             for k, (c, b) in sorted(base.collectives.items())))
                continue
            row = scale.predict(base, [nodes], net, shm, ranks_per_node=per_node)[0]
            err = row["total_s"] / measured.wall_s - 1
            print(f"{name:<10} {f'{nodes} x {per_node}':>13} {pair(row['compute_s'], measured.compute_s):>15} "
                  f"{pair(row['network_s'], measured.comm_s):>15} {pair(row['total_s'], measured.wall_s):>15} "
                  f"{100 * err:>+5.0f}%   {payload(base) / 1e3:>8.4g} / {payload(measured) / 1e3:<8.4g}")
            table.append({"workload": name, "nodes": nodes, "ranks_per_node": per_node,
                          "predicted_s": row["total_s"], "measured_s": measured.wall_s,
                          "predicted_network_s": row["network_s"], "measured_comm_s": measured.comm_s})
    errors = [abs(r["predicted_s"] / r["measured_s"] - 1) for r in table]
    print(f"relative error of the time per iteration: median {100 * np.median(errors):.0f}%, "
          f"largest {100 * max(errors):.0f}%")
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=0.02,
                        help="seconds per size and block at 1 GB/s (default 0.02)")
    parser.add_argument("--no-check", action="store_true", help="calibrate only")
    parser.add_argument("--iterations", type=int, default=30, help="iterations of each checked job")
    parser.add_argument("--fit", choices=["ping-pong", "allreduce"], default="ping-pong",
                        help="which network fit the check uses (default ping-pong)")
    parser.add_argument("--alpha", type=float, help="skip calibration: the network's alpha (with --beta)")
    parser.add_argument("--beta", type=float)
    parser.add_argument("--shm-alpha", type=float, default=scale.SHARED_MEMORY.alpha)
    parser.add_argument("--shm-beta", type=float, default=scale.SHARED_MEMORY.beta)
    args = parser.parse_args()
    if args.worker:
        worker(args.budget)
        return
    print(f"{os.cpu_count()} CPU core(s) on this machine; MPICH emulated nodes (MPIR_CVAR_NUM_CLIQUES)")
    if args.alpha is not None and args.beta is not None:
        net = net_ar = scale.Network("given", args.alpha, args.beta)
        shm = scale.Network("shared memory (given)", args.shm_alpha, args.shm_beta)
    else:
        net, shm, net_ar = calibrate(args.budget)
    if not args.no_check:
        with tempfile.TemporaryDirectory() as folder:
            check(net if args.fit == "ping-pong" else net_ar, shm, folder, args.iterations)


if __name__ == "__main__":
    main()
