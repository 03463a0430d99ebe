"""Process set-up that must happen before numpy, BLAS or numba start threads.

Only the standard library is imported here: the thread variables are read
by OpenBLAS, OpenMP and numba when they load, so they must be set first.
"""

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

# Launchers tell each process its rank and how many ranks share its node.
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_ON_NODE")


def launcher_rank(environ=os.environ):
    """This process's rank as the launcher set it (0 when not launched by MPI)."""
    for name in _RANK_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def ranks_on_node(environ=os.environ):
    """Number of ranks the launcher placed on this node (1 when unknown)."""
    for name in _LOCAL_SIZE_VARIABLES:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def limit_threads(environ=os.environ):
    """Give each rank its share of the node's cores unless told otherwise.

    Several ranks on one node, each running a multithreaded BLAS or numba,
    oversubscribe the cores and slow every rank down.  When more than one
    rank shares the node, each thread variable that the user did not set
    becomes ``HPCML_THREADS``, else ``SLURM_CPUS_PER_TASK``, else 1.

    Returns
    -------
    dict
        The variables this call set.
    """
    explicit = environ.get("HPCML_THREADS") or ""
    if not explicit and ranks_on_node(environ) <= 1:
        return {}
    threads = explicit or environ.get("SLURM_CPUS_PER_TASK") or "1"
    changed = {}
    for name in THREAD_VARIABLES:
        if name not in environ:
            environ[name] = changed[name] = threads
    return changed


def available_memory(meminfo="/proc/meminfo"):
    """Bytes of memory this node can still give without swapping, or ``None`` where unknown.

    Linux's ``MemAvailable`` (free memory plus the page cache it can drop).
    """
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def refuse_beyond_memory(nbytes, what, remedy, ranks=None):
    """Raise :class:`hpcml.errors.InputError` if ``nbytes`` per rank cannot fit this node.

    Parameters
    ----------
    nbytes : int
        What each rank is about to allocate.
    what : str
        What it is, for the message.
    remedy : str
        The options that change it.
    ranks : int, optional
        How many ranks of the node allocate it (default: the launcher's
        ranks per node).
    """
    from hpcml.errors import InputError

    available = available_memory()
    ranks = ranks_on_node() if ranks is None else ranks
    if available is not None and nbytes * ranks > available:
        on = f" on each of {ranks} ranks" if ranks > 1 else ""
        raise InputError(f"{what} needs {nbytes / 1e9:.1f} GB{on} and this node has "
                         f"{available / 1e9:.1f} GB available: {remedy}")


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_",
                     "MALLOC_TOP_PAD_", "LD_PRELOAD")


def keep_freed_memory(environ=os.environ):
    """Let this process reuse the memory it frees instead of giving it back to the kernel.

    A training step allocates and frees the same large tensors (activations,
    gradients) every time.  glibc maps blocks of over 32 MiB straight from
    the kernel and unmaps them when they are freed, and gives the free top
    of its heap back, so every step pays tens of thousands of page faults
    and the zeroing of the pages: 46 of 331 ms (system time) of a V-CNN I
    step at one rank on the CPU here.  Serving every block from the heap and
    never trimming it removes them; the price is that the process keeps its
    peak memory until it exits.  Does nothing when malloc is not glibc's or when the user set
    malloc's variables (or preloads another allocator).

    Returns
    -------
    bool
        Whether the setting was applied.
    """
    if any(name in environ for name in MALLOC_VARIABLES):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; the trim threshold is an int, so 2 GiB - 1.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
