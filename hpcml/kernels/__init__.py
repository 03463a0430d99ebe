"""Numba kernels for the per-node hot loops.

Each family lives in its own module as a private ``@njit`` kernel plus a
public wrapper that checks dtypes and shapes.  The compilation flags come
from :data:`JIT` so that every kernel is built the same way.
"""

import os

#: Options shared by every kernel.  ``fastmath`` lets LLVM vectorise the
#: reductions (reassociation); ``cache`` keeps compiled code between runs so
#: that short jobs and the tests do not pay the compile time again.
JIT = {
    "cache": os.environ.get("HPCML_NUMBA_CACHE", "1") != "0",
    "fastmath": True,
    "nogil": True,
    "error_model": "numpy",
}
