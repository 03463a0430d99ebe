"""hpcml: large machine-learning jobs run the HPC way.

SPMD programs under ``mpiexec``/``srun``, explicit message passing with
mpi4py, Numba kernels for each node's hot loops and HDF5 for data.
"""

__version__ = "0.1.0"
