"""The fused one-pass ``AᵀA v`` against numpy's two passes and the memory bound.

    python bench/normal.py [--rows 200000] [--cols 200] [--repeats 9]

Prints the median time of each candidate and its ratio to the time to
stream the block once from memory (measured beside it, same run), and the
speed-up over numpy's ``A.T @ (A @ v)``.  Run with one thread per process:
``OPENBLAS_NUM_THREADS=1`` is set below before numpy loads.
"""

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from harness import compare, print_table, stream_read  # noqa: E402
from hpcml.kernels.normal import normal_product  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    A = rng.standard_normal((args.rows, args.cols))
    v = rng.standard_normal(args.cols)
    flat = A.reshape(-1)
    assert np.allclose(normal_product(A, v), A.T @ (A @ v), rtol=1e-10, atol=1e-8)

    medians = compare({
        "stream the block once": lambda: stream_read(flat),
        "hpcml fused AᵀA v": lambda: normal_product(A, v),
        "numpy A.T @ (A @ v)": lambda: A.T @ (A @ v),
    }, repeats=args.repeats)
    gbs = A.nbytes / medians["stream the block once"] / 1e9
    print_table(medians, "stream the block once",
                f"dense {args.rows}x{args.cols} float64 ({A.nbytes / 1e6:.0f} MB), "
                f"read bandwidth {gbs:.1f} GB/s")
    fused = medians["hpcml fused AᵀA v"]
    print(f"fused / one-pass bound: {fused / medians['stream the block once']:.2f}x (target <= 1.3)")
    print(f"numpy two-pass / fused: {medians['numpy A.T @ (A @ v)'] / fused:.2f}x (target >= 1.5)")

    nnz_per_row = 50
    S = sp.random(args.rows, 100 * args.cols, density=nnz_per_row / (100 * args.cols), format="csr", rng=rng)
    w = rng.standard_normal(S.shape[1])
    sparse = compare({
        "stream CSR data+indices": lambda: (stream_read(S.data), stream_read(S.indices)),
        "hpcml fused AᵀA v (CSR)": lambda: normal_product(S, w),
        "scipy S.T @ (S @ v)": lambda: S.T @ (S @ w),
    }, repeats=args.repeats)
    print_table(sparse, "stream CSR data+indices",
                f"CSR {S.shape[0]}x{S.shape[1]}, {S.nnz} non-zeros")


if __name__ == "__main__":
    main()
