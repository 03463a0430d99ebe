"""Readers fed random and mutated bytes: every input gives a result or the documented error.

The documented errors are :class:`hpcml.io.mesh.MeshError` for meshes and
:class:`hpcml.errors.InputError` for everything else; anything else (an
IndexError, a MemoryError, a hang) is a bug.  Each reader gets random bytes
and single-byte mutations, insertions and deletions of a valid file, a
bounded number of examples with a deadline per example.
"""

import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpcml import jobs
from hpcml.errors import InputError
from hpcml.io.mesh import MeshError, read_mesh
from hpcml.io.mps import read_mps
from hpcml.io.uci import read_text, read_uci

FUZZ = settings(max_examples=int(os.environ.get("HPCML_FUZZ_EXAMPLES", 150)), deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

VALID = {
    "mesh.off": b"OFF\n4 2 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n4 0 1 2 3\n",
    "mesh.obj": b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1/1 2/2 4/4\nf -1 -2 -3\n",
    "mesh.stl": (b"solid s\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 0\n"
                 b"endloop\nendfacet\nendsolid s\n"),
    "docword.c.txt": b"3\n4\n5\n1 1 2\n1 3 1\n2 2 4\n3 4 1\n3 1 7\n",
    "corpus.txt": "apple banana\ncherry apple\n\ndate café\n".encode(),
    "model.mps": (b"NAME T\nROWS\n N COST\n L LIM1\n G LIM2\nCOLUMNS\n X1 COST 1 LIM1 1\n X1 LIM2 1\n"
                  b" X2 COST 2 LIM1 1\nRHS\n RHS LIM1 4 LIM2 1\nRANGES\n RNG LIM1 2\nBOUNDS\n UP BND X1 4\n"
                  b" FR BND X2\nENDATA\n"),
    "job.toml": b'workload = "svd"\ndescription = "x"\n[params]\nk = 3\ninput = "a.h5:/A"\n[resources]\nranks = 2\n',
}

VOCAB = b"a\nb\nc\nd\n"


def _read(name, data, folder):
    """Run the reader for ``name`` on ``data``; returns the documented error type."""
    path = os.path.join(folder, name)
    with open(path, "wb") as handle:
        handle.write(data)
    if name.startswith("mesh."):
        read_mesh(path)
        return MeshError
    if name.startswith("docword."):
        with open(os.path.join(folder, "vocab.c.txt"), "wb") as handle:
            handle.write(VOCAB)
        read_uci(path, os.path.join(folder, "vocab.c.txt"))
        return InputError
    if name == "corpus.txt":
        read_text(path)
        return InputError
    if name == "model.mps":
        read_mps(path)
        return InputError
    jobs.load(path)
    return InputError


def _mutate(data, position, byte, kind):
    i = position % (len(data) + 1)
    if kind == "replace" and i < len(data):
        return data[:i] + bytes([byte]) + data[i + 1:]
    if kind == "delete":
        return data[:i] + data[i + 1:]
    return data[:i] + bytes([byte]) + data[i:]


def _check(name, data):
    errors = (MeshError,) if name.startswith("mesh.") else (InputError,)
    with tempfile.TemporaryDirectory() as folder:
        try:
            _read(name, data, folder)
        except errors:
            pass


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_inputs_read(name):
    with tempfile.TemporaryDirectory() as folder:
        _read(name, VALID[name], folder)


@pytest.mark.parametrize("name", sorted(VALID))
@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(name, data):
    _check(name, data)


@pytest.mark.parametrize("name", sorted(VALID))
@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255),
                                st.sampled_from(["replace", "insert", "delete"])), min_size=1, max_size=4))
def test_mutated_valid_files(name, edits):
    data = VALID[name]
    for position, byte, kind in edits:
        data = _mutate(data, position, byte, kind)
    _check(name, data)


@pytest.mark.parametrize("header,message", [
    (b"100000000000\n4\n1\n1 1 1\n", "header D = 100000000000 documents need 800.0 GB"),
    (b"1\n4\n100000000000\n1 1 1\n", "header NNZ = 100000000000, but the 6 bytes after the header hold at most 1"),
    (b"3000000000\n3000000000\n1\n1 1 1\n", "is too large to index"),
])
def test_uci_header_sizes_are_checked_before_allocating(tmp_path, header, message, monkeypatch):
    import hpcml.io.uci as uci

    monkeypatch.setattr(uci, "available_memory", lambda: 64 * 10**9)   # the same verdict on any machine
    (tmp_path / "docword.h.txt").write_bytes(header)
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        read_uci(str(tmp_path / "docword.h.txt"))
