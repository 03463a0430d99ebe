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


def test_recorded_bytes_per_step_are_the_bucket_bytes_on_two_nodes(tmp_path):
    import json

    import h5py
    import torch

    from conftest import hpcml
    from hpcml.vision.models import build_model

    g, n_rot, ranks, batch = 16, 2, 4, 8
    rng = np.random.default_rng(0)
    data = tmp_path / "vox.h5"
    with h5py.File(data, "w") as f:
        f.attrs["kind"] = "voxels"
        f["classes"] = np.array([b"a", b"b", b"c"])
        for split, n in (("train", 16), ("test", 3)):
            y = np.arange(n) % 3
            f[f"{split}/x"] = (rng.random((n, n_rot, g, g, g)) < 0.1).astype(np.uint8)
            f[f"{split}/y"] = y.astype(np.int64)
    out = tmp_path / "m.h5"
    # 32 samples, batches of 8: 4 steps, 2 samples per rank.
    result = hpcml(ranks, "cnn", "train", "--data", data, "--model", "voxnet", "--width", 0.25,
                   "--epochs", 1, "--batch", batch, "--output", out, env=nodes(2), timeout=300)
    assert result.returncode == 0, result
    with h5py.File(out) as f:
        report = json.loads(f.attrs["communication"])
    assert report["iterations"] == 4 and report["ranks_per_node"] == [2, 2], report

    # The formula, from the network: float32 gradients; a Linear layer is factored
    # when its weight outnumbers every rank's factors (in * out > P * rows * (in + out)).
    model = build_model("voxnet", 3, (g, g, g), width=0.25)
    rows = -(-batch // ranks)
    factored = [m for m in model.modules() if isinstance(m, torch.nn.Linear)
                and m.in_features * m.out_features > ranks * rows * (m.in_features + m.out_features)]
    assert factored, "the test needs a factored layer"
    bucket = 4 * (sum(p.numel() for p in model.parameters())
                  - sum(m.weight.numel() for m in factored))
    widths = sum(m.in_features + m.out_features for m in factored)
    expected = {
        "shared_sum": (bucket, bucket),              # every rank: its node's sum
        "leaders_allreduce": (0, bucket),            # the node leaders only
        "shared_factors": (4 * rows * widths,) * 2,  # every rank publishes its rows' factors
        "leaders_allgatherv": (0, 4 * ranks * (rows * widths + len(factored))),
    }  # and nothing else: without --checkpoint-dir a step asks no stop-signal allreduce
    got = {kind: (figures["bytes"]["min"], figures["bytes"]["max"])
           for kind, figures in report["collectives"].items()}
    assert got == expected, (got, expected)
    assert report["bytes"]["max"] == sum(hi for _, hi in expected.values())
