"""Numba kernels, one module per family: private ``@njit`` kernel + checked public wrapper."""
