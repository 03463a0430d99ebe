"""HDF5 input and output with h5py from PyPI (no parallel HDF5 needed).

Reading: every rank opens the file read-only and reads only its own row
block of a dense dataset or of a CSR group (``data``, ``indices``,
``indptr`` and a ``shape`` attribute).  Datasets are addressed as
``file.h5:/path``.

Writing: small results are written by rank 0, row-sharded results by each
rank in turn into the same file, all under a temporary name that is renamed
only when the file is complete, so a crashed job never leaves an output
that looks finished.  Every output carries its provenance as attributes.
"""

import contextlib
import datetime
import json
import os
import shutil
import sys
import time

import h5py
import numpy as np
import scipy.sparse as sp

import hpcml
from hpcml.distmat import DistMatrix
from hpcml.errors import InputError
from hpcml.partition import block_range
from hpcml.runtime import refuse_beyond_memory


def parse_spec(spec):
    """Split ``"file.h5:/path/to/dataset"`` into ``(file, "/path/to/dataset")``."""
    path, sep, name = str(spec).rpartition(":")
    if not sep or not path or not name:
        raise InputError(f"{spec!r}: expected FILE.h5:/DATASET")
    return path, name if name.startswith("/") else "/" + name


@contextlib.contextmanager
def _open_for_reading(path):
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 file ({exc})") from None
    with handle:
        yield handle


def _lookup(handle, path, name):
    # h5py's get() answers None for a damaged object as for a missing one.
    try:
        return handle[name]
    except KeyError as exc:
        if "doesn't exist" in str(exc) or name not in handle:
            raise InputError(f"{path}: no dataset {name}") from None
        raise InputError(f"{path}:{name} cannot be read, the file is damaged ({exc})") from None


def _csr_parts(group, path, name):
    missing = [key for key in ("data", "indices", "indptr") if key not in group]
    if missing or "shape" not in group.attrs:
        raise InputError(f"{path}:{name} is a group but not a CSR matrix "
                         f"(needs data, indices, indptr and a shape attribute)")
    shape = tuple(int(s) for s in group.attrs["shape"])
    if len(shape) != 2 or group["indptr"].shape != (shape[0] + 1,):
        raise InputError(f"{path}:{name}: indptr has {group['indptr'].shape[0]} entries "
                         f"for shape {shape}")
    return shape


def _float_dtype(stored, dtype, where):
    if dtype is not None:
        return np.dtype(dtype)
    if stored.kind == "f" and stored.itemsize in (4, 8):
        return stored
    if stored.kind in "iuf":
        return np.dtype(np.float64)
    raise InputError(f"{where}: dtype {stored} is not numeric")


def _read_local_block(path, name, comm, dtype):
    with _open_for_reading(path) as handle:
        obj = _lookup(handle, path, name)
        where = f"{path}:{name}"
        if isinstance(obj, h5py.Group):
            m, n = _csr_parts(obj, path, name)
            start, stop = block_range(m, comm.size, comm.rank)
            indptr = obj["indptr"][start:stop + 1].astype(np.int64)
            lo, hi = int(indptr[0]), int(indptr[-1])
            if np.any(np.diff(indptr) < 0):
                raise InputError(f"{where}: indptr decreases within rows {start}..{stop}")
            refuse_beyond_memory((hi - lo) * (obj["data"].dtype.itemsize + 4), f"{where}: rows {start}..{stop}",
                                 "run on more ranks or nodes")
            data = obj["data"][lo:hi]
            indices = obj["indices"][lo:hi]
            if indices.size and (indices.min() < 0 or indices.max() >= n):
                raise InputError(f"{where}: a column index is outside 0..{n - 1} in rows {start}..{stop}")
            kind = _float_dtype(data.dtype, dtype, where)
            return sp.csr_matrix((data.astype(kind, copy=False), indices, indptr - lo),
                                 shape=(stop - start, n))
        if obj.ndim != 2:
            raise InputError(f"{where} must be a 2-D matrix, has shape {obj.shape}")
        kind = _float_dtype(obj.dtype, dtype, where)
        start, stop = block_range(obj.shape[0], comm.size, comm.rank)
        refuse_beyond_memory((stop - start) * obj.shape[1] * np.dtype(kind).itemsize,
                             f"{where}: rows {start}..{stop}", "run on more ranks or nodes")
        return np.ascontiguousarray(obj[start:stop], dtype=kind)


def read_matrix(spec, comm, dtype=None, name="matrix"):
    """Read this rank's row block of a dense or CSR matrix.

    Parameters
    ----------
    spec : str
        ``file.h5:/dataset`` (a 2-D dataset, or a CSR group).
    comm : hpcml.comm.Comm
    dtype : numpy dtype, optional
        float32 or float64; defaults to the stored float type (integers
        become float64).
    name : str
        What to call the matrix in error messages.

    Returns
    -------
    DistMatrix

    Raises
    ------
    InputError
        On every rank: missing file or dataset, wrong shape, a non-numeric
        dtype, malformed CSR, or NaN/Inf (naming the global row).
    """
    path, dataset = parse_spec(spec)
    local = None
    with comm.guard(), comm.io():
        local = _read_local_block(path, dataset, comm, dtype)
    A = DistMatrix(local, comm)
    A.check_finite(f"{name} {path}:{dataset}")
    return A


def read_rows(spec, comm, dtype=np.float64):
    """This rank's block of a 1-D or 2-D dataset split like a matrix's rows.

    Returns
    -------
    local : numpy.ndarray
    length : int
        Global length of the first axis.
    """
    path, name = parse_spec(spec)
    local, length = None, 0
    with comm.guard(), comm.io():
        with _open_for_reading(path) as handle:
            obj = _lookup(handle, path, name)
            if not isinstance(obj, h5py.Dataset) or obj.ndim not in (1, 2):
                raise InputError(f"{path}:{name} must be a 1-D or 2-D dataset")
            length = obj.shape[0]
            start, stop = block_range(length, comm.size, comm.rank)
            local = np.ascontiguousarray(obj[start:stop], dtype=dtype)
    comm.agree(bool(np.isfinite(local).all()), f"{path}:{name} has a NaN or Inf")
    return local, length


def read_replicated(spec, comm, dtype=np.float64, allow_inf=False):
    """A small dataset read by rank 0 and broadcast to every rank.

    NaN is refused, and so is ±inf unless ``allow_inf`` (bounds may be infinite).
    """
    path, name = parse_spec(spec)
    data = None
    with comm.guard():
        if comm.rank == 0:
            with comm.io(), _open_for_reading(path) as handle:
                obj = _lookup(handle, path, name)
                if not isinstance(obj, h5py.Dataset):
                    raise InputError(f"{path}:{name} is not a dataset")
                data = np.asarray(obj[()], dtype=dtype)
            if np.isnan(data).any() or not (allow_inf or np.isfinite(data).all()):
                raise InputError(f"{path}:{name} has a NaN" + ("" if allow_inf else " or Inf"))
    return comm.bcast(data, root=0)


# -- writing --------------------------------------------------------------------


def _fsync_dir(path):
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_name(path, tag):
    folder, base = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{base}.tmp-{tag}")


#: A temporary file untouched for this long, whose writer's process is gone
#: from this host, was left by a killed job.
_STALE_SECONDS = 60


def _pid_is_dead(tag):
    """True if ``tag`` is the id of no process on this host."""
    if not str(tag).isdigit():
        return False
    try:
        os.kill(int(tag), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_dead_temporaries(folder, prefix):
    """Remove what a killed writer (SIGKILL, node failure) left half-written in ``folder``.

    Only entries ``PREFIX...tmp-PID`` whose process no longer exists on this
    host and which nobody has touched for a minute; files or folders.
    """
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) and ".tmp-" in n]
    except OSError:
        return
    for name in names:
        tmp = os.path.join(folder, name)
        with contextlib.suppress(OSError):
            if _pid_is_dead(name.rpartition(".tmp-")[2]) and time.time() - os.stat(tmp).st_mtime > _STALE_SECONDS:
                if os.path.isdir(tmp):
                    shutil.rmtree(tmp)
                else:
                    os.remove(tmp)


def commit_file(tmp, path):
    """Flush ``tmp`` to disk and rename it to ``path`` atomically."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path)


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    Missing parent directories are created.
    On an exception the temporary file is removed and ``path`` is untouched.
    Serial use (one process); :func:`write_output` is the collective form.
    """
    tmp = _tmp_name(path, os.getpid())
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        yield tmp
        commit_file(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def provenance(comm, params=None, timings=None, communication=None):
    """Attributes every output carries: version, time, ranks, command,
    parameters, timings and the per-iteration communication
    (:meth:`hpcml.comm.Comm.communication_report`)."""
    return {
        "hpcml_version": hpcml.__version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "ranks": comm.size,
        "command": " ".join(sys.argv),
        "params": json.dumps(_jsonable({k: v for k, v in (params or {}).items() if not callable(v)}),
                             sort_keys=True),
        "timings": json.dumps(timings or {}, sort_keys=True),
        "communication": json.dumps(communication or {}, sort_keys=True),
    }


def write_output(path, comm, small=None, sharded=None, attrs=None, params=None):
    """Write a job's results atomically (collective).

    Parameters
    ----------
    path : str
        Final file name (parent directories are created).  Nothing appears
        under it until every rank's data is written and flushed.
    comm : hpcml.comm.Comm
    small : dict of str to array-like, optional
        Replicated results, written by rank 0 from its copy.
    sharded : dict of str to numpy.ndarray, optional
        Row-sharded results: each rank passes its local rows; they are
        written at the rank's row offset into one global dataset.
    attrs : dict, optional
        Extra root attributes (scalars or strings).
    params : dict, optional
        The job's parameters, stored as JSON in the ``params`` attribute.
    """
    small = small or {}
    sharded = {k: np.ascontiguousarray(v) for k, v in (sharded or {}).items()}
    timings = comm.timing_report()
    communication = comm.communication_report()
    layouts = comm.allgather_obj({k: (v.shape, v.dtype.str) for k, v in sharded.items()})
    tag = comm.bcast_obj(os.getpid() if comm.rank == 0 else None)
    tmp = _tmp_name(path, tag)
    with comm.io():
        with comm.guard():
            if comm.rank == 0:
                _create(tmp, path, small, layouts, attrs, provenance(comm, params, timings, communication))
        try:
            # One rank at a time: h5py from PyPI cannot share a file opened
            # for writing.  Each turn ends in an agreement, so a failed write
            # becomes every rank's error instead of a hang.
            for rank in range(comm.size if sharded else 0):
                with comm.guard():
                    if rank == comm.rank:
                        _write_block(tmp, path, sharded, layouts[:rank])
            if comm.rank == 0:
                commit_file(tmp, path)
        except BaseException:
            if comm.rank == 0:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)
            raise
        comm.barrier()


def _write_block(tmp, path, sharded, before):
    try:
        with h5py.File(tmp, "r+") as handle:
            for key, block in sharded.items():
                offset = sum(lay[key][0][0] for lay in before)
                handle[key][offset:offset + block.shape[0]] = block
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc}") from None


def _create(tmp, path, small, layouts, attrs, prov):
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        handle = h5py.File(tmp, "w")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc}") from None
    with handle:
        for key, value in small.items():
            handle.create_dataset(key, data=np.asarray(value))
        for key in layouts[0] if layouts else {}:
            shapes = [lay[key][0] for lay in layouts]
            rows = sum(s[0] for s in shapes)
            handle.create_dataset(key, shape=(rows, *shapes[0][1:]), dtype=np.dtype(layouts[0][key][1]))
        for key, value in {**prov, **(attrs or {})}.items():
            handle.attrs[key] = value


def write_matrix(spec, A, mode="a"):
    """Write a whole matrix (dense array or scipy sparse) serially, for generators and tests.

    Dense arrays become a 2-D dataset, sparse ones a CSR group with a
    ``shape`` attribute — the two layouts :func:`read_matrix` reads.
    """
    path, name = parse_spec(spec)
    with h5py.File(path, mode) as handle:
        if name in handle:
            del handle[name]
        if sp.issparse(A):
            csr = sp.csr_matrix(A)
            group = handle.create_group(name)
            group.create_dataset("data", data=csr.data)
            group.create_dataset("indices", data=csr.indices)
            group.create_dataset("indptr", data=csr.indptr.astype(np.int64))
            group.attrs["shape"] = np.array(csr.shape, dtype=np.int64)
        else:
            handle.create_dataset(name, data=np.asarray(A))
