"""The one-pass scaled sum against numpy."""

import numpy as np
import pytest

from hpcml.kernels.sum import sum_scaled


@pytest.mark.parametrize("p", [2, 3, 5])
def test_sum_in_rank_order_scaled_into_every_source(p):
    rng = np.random.default_rng(p)
    n = 5000  # more than two scratch blocks, the last one partial
    vectors = [rng.standard_normal(n).astype(np.float32) for _ in range(p)]
    before = [v.copy() for v in vectors]
    lo, hi = 3, n - 7
    expected = before[0][lo:hi] + before[1][lo:hi]
    for v in before[2:]:
        expected = expected + v[lo:hi]
    expected = expected * np.float32(1 / p)
    sum_scaled(vectors, lo, hi, 1 / p)
    for v, old in zip(vectors, before):
        assert np.array_equal(v[lo:hi], expected)  # the same bits as numpy in rank order
        assert np.array_equal(v[:lo], old[:lo]) and np.array_equal(v[hi:], old[hi:])


def test_other_destinations_and_empty_slice():
    a, b = np.arange(10, dtype=np.float32), np.ones(10, np.float32)
    out = np.zeros(10, np.float32)
    sum_scaled([a, b], 2, 6, destinations=[out])
    assert out.tolist() == [0, 0, 3, 4, 5, 6, 0, 0, 0, 0]
    assert a[2] == 2 and b[2] == 1  # sources untouched
    sum_scaled([a, b], 4, 4, destinations=[out])


@pytest.mark.parametrize("bad", [
    lambda: sum_scaled([np.zeros(4, np.float32)], 0, 4),
    lambda: sum_scaled([np.zeros(4, np.float32), np.zeros(4)], 0, 4),
    lambda: sum_scaled([np.zeros(4, np.float32), np.zeros(5, np.float32)], 0, 4),
    lambda: sum_scaled([np.zeros(4, np.float32)] * 2, 0, 5),
    lambda: sum_scaled([np.zeros(8, np.float32)[::2]] * 2, 0, 4),
])
def test_refuses_what_it_cannot_sum(bad):
    with pytest.raises(ValueError):
        bad()
