"""Numba kernels, one module per family: a private ``_kernel`` and a public wrapper."""
