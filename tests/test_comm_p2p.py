"""Comm.exscan, Comm.isend and Comm.irecv under mpiexec at 1-3 ranks and across emulated nodes."""

import os

import pytest

from conftest import mpi_script


@pytest.mark.mpi
@pytest.mark.parametrize("ranks,nodes", [(1, 1), (2, 1), (3, 2)])
def test_exscan_and_ring_of_messages(ranks, nodes):
    env = {**os.environ, "MPIR_CVAR_NUM_CLIQUES": str(nodes)}
    mpi_script(ranks, "check_comm_p2p.py", env=env)
