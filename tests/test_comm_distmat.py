
import os

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from conftest import RANKS, mpi_script
from hpcml.io.hdf5 import write_matrix

pytestmark = [pytest.mark.mpi, pytest.mark.numerics]


@pytest.mark.parametrize("ranks", RANKS)
def test_collectives(ranks):
    mpi_script(ranks, "check_comm.py")


@pytest.mark.parametrize("ranks,nodes", [(1, 1), (2, 1), (2, 2), (3, 3), (4, 2), (3, 2)])
def test_topology_matches_emulated_nodes(ranks, nodes):
    """MPICH's cliques emulate nodes: 4 ranks as 2 nodes x 2, 3 as 3 x 1, 3 as 2 + 1."""
    env = {**os.environ, "MPIR_CVAR_NUM_CLIQUES": str(nodes)}
    mpi_script(ranks, "check_topology.py", nodes, env=env)


@pytest.mark.parametrize("ranks", RANKS)
def test_distmat_products_equal_numpy(ranks):
    mpi_script(ranks, "check_distmat.py", timeout=240)


@pytest.fixture(scope="module")
def matrices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("io")
    rng = np.random.default_rng(7)
    dense = rng.standard_normal((3 * 5 + 1, 6))
    sparse = sp.random(3 * 5 + 1, 9, density=0.3, format="csr", rng=rng)
    write_matrix(f"{folder}/A.h5:/A", dense)
    write_matrix(f"{folder}/A.h5:/S", sparse)
    with h5py.File(folder / "A.h5", "a") as handle:
        handle["b"] = np.arange(dense.shape[0], dtype=float)
    np.save(folder / "A.npy", dense)
    scipy.io.mmwrite(str(folder / "A.mtx"), sparse)
    return folder


@pytest.mark.parametrize("ranks", RANKS)
def test_sharded_reads_and_writes(ranks, matrices):
    mpi_script(ranks, "check_hdf5.py", matrices)


@pytest.mark.parametrize("ranks", [1, 3])
def test_output_never_visible_before_complete(ranks, tmp_path):
    mpi_script(ranks, "check_atomic_write.py", tmp_path)
