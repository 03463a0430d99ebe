import numpy as np
import pytest
from hypothesis import given, strategies as st

from hpcml.partition import block_counts, block_offsets, block_range, owner


@given(st.integers(0, 10_000), st.integers(1, 300))
def test_blocks_cover_rows_once_and_differ_by_at_most_one(n, size):
    counts = block_counts(n, size)
    offsets = block_offsets(n, size)
    assert counts.sum() == n and len(counts) == size
    assert counts.max() - counts.min() <= 1
    assert np.all(np.diff(counts) <= 0)  # the larger blocks come first
    assert offsets[0] == 0 and offsets[-1] == n
    assert np.array_equal(np.diff(offsets), counts)
    for rank in {0, size // 2, size - 1}:
        assert block_range(n, size, rank) == (offsets[rank], offsets[rank + 1])


@given(st.integers(1, 2_000), st.integers(1, 50), st.data())
def test_owner_agrees_with_ranges(n, size, data):
    i = data.draw(st.integers(0, n - 1))
    start, stop = block_range(n, size, owner(i, n, size))
    assert start <= i < stop


def test_more_ranks_than_rows_gives_empty_shards():
    assert list(block_counts(2, 4)) == [1, 1, 0, 0]
    assert block_range(2, 4, 3) == (2, 2)


@pytest.mark.parametrize("args", [(-1, 2), (3, 0)])
def test_bad_arguments(args):
    with pytest.raises(ValueError):
        block_counts(*args)
    with pytest.raises(ValueError):
        block_range(*args, 0)
