"""CNN training across emulated nodes (MPICH's ``MPIR_CVAR_NUM_CLIQUES``).

The gradient transport promises a sum order (:mod:`hpcml.vision.transports`):
1 node x P ranks and P nodes x 1 rank give the same bits, 2 nodes x 2 ranks
the same numbers in another association.  Checkpoints move between layouts
of the same number of ranks.
"""

import os

import numpy as np
import pytest

from conftest import mpi_script

pytest.importorskip("torch", reason="the cnn extra (torch) is not installed")
pytestmark = pytest.mark.mpi


def nodes(count):
    return {**os.environ, "MPIR_CVAR_NUM_CLIQUES": str(count)}


def layout(tmp_path, ranks, cliques, resume_from=None):
    """Run check_cnn_layouts.py on ``cliques`` emulated nodes; its saved parameters."""
    out, folder = tmp_path / f"{ranks}x{cliques}.npz", tmp_path / f"ck{ranks}x{cliques}"
    extra = [] if resume_from is None else [resume_from]
    mpi_script(ranks, "check_cnn_layouts.py", out, folder, *extra, env=nodes(cliques), timeout=300)
    return dict(np.load(out)), folder


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_bucket_transports_sum_in_the_promised_order(ranks):
    # 2 ranks = 2 x 1, 3 = 2 + 1 (round-robin: nodes {0, 2} and {1}), 4 = 2 x 2.
    mpi_script(ranks, "check_cnn_buckets.py", env=nodes(2))


def test_one_node_of_four_trains_like_four_nodes_of_one_and_two_of_two(tmp_path):
    one, ck_one = layout(tmp_path, 4, 1)
    four, _ = layout(tmp_path, 4, 4)
    # The same fold over the ranks in rank order: the same bits.
    assert np.array_equal(one["straight"], four["straight"])
    assert np.array_equal(one["history"], four["history"])
    # 2 x 2 (nodes {0, 2} and {1, 3}) adds (v0 + v2) + (v1 + v3): float32 rounding apart.
    two, _ = layout(tmp_path, 4, 2, resume_from=ck_one)
    np.testing.assert_allclose(two["straight"], one["straight"], rtol=1e-5, atol=1e-7)
    # A checkpoint of 1 x 4 resumed on 2 x 2: its second epoch is 2 x 2's.
    np.testing.assert_allclose(two["resumed_from"], two["straight"], rtol=1e-5, atol=1e-7)


def test_checkpoint_of_three_nodes_resumes_on_one_node_bit_for_bit(tmp_path):
    spread, ck_spread = layout(tmp_path, 3, 3)
    one, _ = layout(tmp_path, 3, 1, resume_from=ck_spread)
    assert np.array_equal(spread["straight"], one["straight"])
    assert np.array_equal(one["resumed_from"], one["straight"])
