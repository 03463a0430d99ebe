"""Comm's rank-order (layout-independent) float sum against MPI's own allreduce.

    mpiexec -n 4 python bench/allreduce.py [--repeats 7]
    MPIR_CVAR_NUM_CLIQUES=2 mpiexec -n 4 python bench/allreduce.py   # 2 nodes x 2

For arrays from one to a million float64 each candidate runs a batch of
allreduces, interleaved with the other (bench/harness.py); rank 0 prints
the median time per call and the ratio of the rank-order sum to MPI's.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

from harness import compare  # noqa: E402
from hpcml.comm import Comm  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    ordered, native = Comm(MPI.COMM_WORLD), Comm(MPI.COMM_WORLD, deterministic=False)
    if ordered.rank == 0:
        print(f"{ordered.size} ranks, {ordered.topology}; median µs per allreduce")
        print(f"{'float64s':>9} {'MPI':>10} {'rank order':>11} {'ratio':>7}")
    for n in (1, 16, 1000, 10_000, 100_000, 1_000_000):
        x = np.random.default_rng(ordered.rank).standard_normal(n)
        calls = max(2, min(200, 2_000_000 // max(n, 1)))

        def batch(comm):
            def run():
                comm.barrier()
                for _ in range(calls):
                    comm.allreduce(x.copy())
            return run
        medians = compare({"mpi": batch(native), "ordered": batch(ordered)}, repeats=args.repeats)
        if ordered.rank == 0:
            mpi, mine = medians["mpi"] / calls * 1e6, medians["ordered"] / calls * 1e6
            print(f"{n:>9} {mpi:>10.1f} {mine:>11.1f} {mine / mpi:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
