"""Bucket layout of the gradient allreduce and its single-rank path (no thread, no MPI)."""

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the cnn extra (torch) is not installed")

from hpcml.comm import Comm  # noqa: E402
from hpcml.vision.buckets import GradientBuckets, plan_buckets  # noqa: E402


def test_plan_closes_a_bucket_at_its_limit():
    # First limit 500 B: 10 + 600 reaches it; then 1000 B: 5 + 5 + 3000 reaches it.
    assert plan_buckets([10, 600, 5, 5, 3000, 1], 1000, 500) == [[0, 1], [2, 3, 4], [5]]
    # A first limit above the bucket size is cut down to it.
    assert plan_buckets([400, 400, 400], 500, 1 << 20) == [[0, 1], [2]]
    assert plan_buckets([], 1000, 500) == []


def test_plan_keeps_order_and_every_parameter_once():
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 5000, 200).tolist()
    plan = plan_buckets(sizes, 4096, 1024)
    assert [i for b in plan for i in b] == list(range(200))
    for k, b in enumerate(plan):
        limit = 1024 if k == 0 else 4096
        assert sum(sizes[i] for i in b[:-1]) < limit
        assert sum(sizes[i] for i in b) >= limit or k == len(plan) - 1


def test_single_rank_buckets_give_the_plain_gradients():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(7, 300), torch.nn.ReLU(), torch.nn.Linear(300, 3))
    x, y = torch.rand(5, 7), torch.tensor([0, 2, 1, 1, 0])
    torch.nn.functional.cross_entropy(model(x), y).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    threads = threading.active_count()
    # Reverse order: [out bias 12 B], [out weight 3600 B + hidden bias 1200 B], [hidden weight].
    buckets = GradientBuckets(model, Comm.self_comm(), bucket_bytes=4096, first_bucket_bytes=8)
    assert threading.active_count() == threads  # one rank: nothing to communicate, no thread
    assert [len(b) for b in buckets.buckets] == [1, 2, 1]
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        buckets.start()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        buckets.finish()
        for p, g in zip(model.parameters(), expected):
            assert torch.equal(p.grad, g)
    buckets.remove()


def test_single_rank_gives_zeros_to_parameters_without_gradient():
    torch.manual_seed(0)
    used, unused = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    model = torch.nn.ModuleList([used, unused])
    buckets = GradientBuckets(model, Comm.self_comm())
    buckets.start()
    used(torch.rand(4, 3)).sum().backward()
    buckets.finish()
    assert torch.count_nonzero(used.weight.grad) > 0
    assert unused.weight.grad is not None and not unused.weight.grad.any()
    buckets.remove()


def test_refuses_a_thread_level_that_forbids_the_communication_thread():
    class Funneled:  # stands for a 2-rank communicator whose MPI was initialised "funneled"
        size, rank, thread_level = 2, 0, "funneled"

    with pytest.raises(RuntimeError, match="thread level 'funneled'"):
        GradientBuckets(torch.nn.Linear(2, 2), Funneled())
    # mpi4py asks for "multiple" unless told otherwise.
    assert Comm.self_comm().thread_level == "multiple"


def test_transport_names_and_the_shared_transport_across_nodes():
    from types import SimpleNamespace

    from hpcml.vision.trainer import TrainConfig
    from hpcml.vision.transports import resolve_transport

    one = SimpleNamespace(spans_nodes=False, topology="1 node(s) x 2 rank(s)")
    two = SimpleNamespace(spans_nodes=True, topology="2 node(s) x 2 rank(s)")
    assert resolve_transport("auto", one) == "shared"
    assert resolve_transport("auto", two) == "hierarchical"
    assert resolve_transport("allreduce", two) == "allreduce"
    assert resolve_transport("hierarchical", one) == "hierarchical"
    with pytest.raises(ValueError, match="needs every rank on one node, not 2 node"):
        resolve_transport("shared", two)
    with pytest.raises(ValueError, match="unknown gradient transport 'ring'"):
        resolve_transport("ring", one)
    with pytest.raises(ValueError, match="transport must be one of"):
        TrainConfig(transport="ring")
