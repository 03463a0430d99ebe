"""Side-by-side timing: candidates run interleaved in one process, medians and ratios.

Interleaving (A B C A B C ...) exposes every candidate to the same machine
state, so their ratio means something even on a shared, noisy box where an
absolute time does not.
"""

import statistics
import time

from numba import njit

from hpcml.kernels import JIT


@njit(**JIT)
def stream_read(flat):
    """Touch every element of a 1-D array once, vectorised: the one-pass memory bound."""
    acc = 0.0
    for i in range(flat.size):
        acc += flat[i]
    return acc


def compare(candidates, repeats=7, warmup=1):
    """Time each zero-argument callable ``repeats`` times, interleaved.

    Parameters
    ----------
    candidates : dict of str to callable
    repeats : int
    warmup : int
        Untimed rounds first (JIT compilation, page faults).

    Returns
    -------
    dict of str to float
        Median seconds per candidate.
    """
    for _ in range(warmup):
        for run in candidates.values():
            run()
    samples = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def print_table(medians, reference, title, extra=None):
    """Print medians and each one's ratio to ``reference`` (ratio > 1: slower than it)."""
    print(f"\n{title}")
    print(f"{'candidate':<32} {'median ms':>10} {'ratio to ' + reference:>22}")
    for name, seconds in medians.items():
        note = f"  {extra[name]}" if extra and name in extra else ""
        print(f"{name:<32} {seconds * 1e3:>10.2f} {seconds / medians[reference]:>22.2f}{note}")
