"""Comm's topology against the node layout the test asked MPICH to emulate.

Usage: check_topology.py NODES (the value of MPIR_CVAR_NUM_CLIQUES, 1 for none).
"""

import sys

import numpy as np

from hpcml.comm import Comm

comm = Comm.world()
r, p = comm.rank, comm.size
nodes = min(int(sys.argv[1]), p)
topo = comm.topology

assert topo.nodes == nodes, (topo, nodes)
assert sum(topo.ranks_per_node) == p, topo
assert comm.spans_nodes == (nodes > 1) and comm.shares_node() == (nodes == 1)
assert comm.node.size == topo.ranks_per_node[topo.node_index], (topo, comm.node.size)

# Every rank of a node agrees on its node index; nodes are numbered by lowest rank.
members = comm.allgather_obj(topo.node_index)
lowest = [members.index(k) for k in range(nodes)]
assert lowest == sorted(lowest), members

# The node communicator sums over its own ranks only; the leaders' over one rank per node.
on_node = comm.node.allreduce(np.array([1.0]))[0]
assert on_node == topo.ranks_per_node[topo.node_index]
assert (comm.leaders is not None) == (comm.node.rank == 0)
if comm.leaders is not None:
    assert comm.leaders.size == nodes and comm.leaders.rank == topo.node_index
    assert comm.leaders.allreduce(np.array([1.0]))[0] == nodes
    assert comm.leaders.topology.nodes == nodes
