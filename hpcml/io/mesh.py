"""Triangle meshes: the in-memory type, STL and OBJ readers, format dispatch.

Every reader returns a :class:`Mesh` whose faces are triangles: polygons are
split into fans, which is exact for the convex polygons that mesh exporters
write.  A file that cannot be read raises :class:`MeshError` naming the file
and, where one is to blame, the line.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np


class MeshError(ValueError):
    """A mesh file that cannot be read; the message is one line.

    Parameters
    ----------
    path : str
        The file.
    message : str
        What is wrong.
    line : int, optional
        1-based line number of the offending line, when one is to blame.
    """

    def __init__(self, path, message, line=None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh.

    Attributes
    ----------
    vertices : ndarray of float64, shape (n_vertices, 3)
    faces : ndarray of int64, shape (n_faces, 3)
        Indices into ``vertices``.
    """

    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self):
        v = np.ascontiguousarray(self.vertices, dtype=np.float64)
        f = np.ascontiguousarray(self.faces, dtype=np.int64)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"vertices must have shape (n, 3), got {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"faces must have shape (m, 3), got {f.shape}")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError("face index out of range")
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f.reshape(-1, 3))

    @property
    def triangles(self):
        """Corner coordinates, shape (n_faces, 3, 3)."""
        return self.vertices[self.faces]

    @staticmethod
    def concatenate(meshes):
        """One mesh holding all parts of ``meshes`` (faces re-indexed)."""
        verts, faces, base = [], [], 0
        for m in meshes:
            verts.append(m.vertices)
            faces.append(m.faces + base)
            base += len(m.vertices)
        if not verts:
            return Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
        return Mesh(np.concatenate(verts), np.concatenate(faces))


def rotation_z(angle):
    """Rotation about the up (z) axis by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def fan_triangulate(polygon):
    """Split one polygon (vertex index list, >= 3 entries) into a triangle fan."""
    p0 = polygon[0]
    return [(p0, polygon[i], polygon[i + 1]) for i in range(1, len(polygon) - 1)]


def read_stl(path):
    """Read an ASCII or binary STL file.

    Binary is recognised by its size (84 + 50 bytes per facet), because some
    exporters start binary files with the word ``solid`` too.  Vertices are
    shared by exact coordinate equality so the result is indexed.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) >= 84:
        (count,) = struct.unpack_from("<I", data, 80)
        if len(data) == 84 + 50 * count:
            rec = np.frombuffer(data, dtype=np.dtype([("n", "<f4", 3), ("v", "<f4", (3, 3)),
                                                     ("attr", "<u2")]), count=count, offset=84)
            return _indexed(rec["v"].astype(np.float64).reshape(-1, 3), path)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise MeshError(path, "neither a binary STL (size does not match the facet count) "
                        "nor ASCII text") from None
    corners = []
    in_loop, loop_start = 0, None
    for lineno, raw in enumerate(text.splitlines(), 1):
        tok = raw.split()
        if not tok:
            continue
        if tok[0] == "outer":
            in_loop, loop_start = 0, lineno
        elif tok[0] == "vertex":
            if len(tok) != 4:
                raise MeshError(path, f"expected 'vertex x y z', got {raw.strip()!r}", lineno)
            try:
                corners.append([float(t) for t in tok[1:]])
            except ValueError:
                raise MeshError(path, f"bad number in {raw.strip()!r}", lineno) from None
            in_loop += 1
        elif tok[0] == "endloop" and in_loop != 3:
            raise MeshError(path, f"facet has {in_loop} vertices, expected 3", loop_start or lineno)
    if not text.lstrip().startswith("solid"):
        raise MeshError(path, "not an STL file (no 'solid' header)", 1)
    if len(corners) % 3:
        raise MeshError(path, "truncated file: incomplete facet at the end")
    return _indexed(np.asarray(corners, dtype=np.float64).reshape(-1, 3), path)


def _indexed(corners, path):
    """Turn a (3*m, 3) corner list into an indexed mesh."""
    if len(corners) == 0:
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    uniq, inverse = np.unique(corners, axis=0, return_inverse=True)
    return Mesh(uniq, inverse.reshape(-1, 3))


def read_obj(path):
    """Read the geometry of a Wavefront OBJ file (``v`` and ``f`` records).

    Face entries may be ``i``, ``i/t``, ``i//n`` or ``i/t/n``; negative indices
    count back from the last vertex read, as the format specifies.
    """
    verts, faces = [], []
    with open(path, "r", errors="replace") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.split("#", 1)[0]
            tok = line.split()
            if not tok:
                continue
            if tok[0] == "v":
                if len(tok) < 4:
                    raise MeshError(path, "vertex record needs 3 coordinates", lineno)
                try:
                    verts.append([float(t) for t in tok[1:4]])
                except ValueError:
                    raise MeshError(path, f"bad number in {line.strip()!r}", lineno) from None
            elif tok[0] == "f":
                if len(tok) < 4:
                    raise MeshError(path, "face record needs at least 3 vertices", lineno)
                poly = []
                for t in tok[1:]:
                    try:
                        idx = int(t.split("/", 1)[0])
                    except ValueError:
                        raise MeshError(path, f"bad face index {t!r}", lineno) from None
                    idx = idx - 1 if idx > 0 else len(verts) + idx
                    if not 0 <= idx < len(verts):
                        raise MeshError(path, f"face index {t} refers to a vertex not defined "
                                        f"before this line", lineno)
                    poly.append(idx)
                faces.extend(fan_triangulate(poly))
    return Mesh(np.asarray(verts, dtype=np.float64).reshape(-1, 3),
                np.asarray(faces, dtype=np.int64).reshape(-1, 3))


def read_mesh(path):
    """Read a mesh, choosing the reader from the file extension (.off, .stl, .obj)."""
    from hpcml.io.off import read_off

    readers = {".off": read_off, ".stl": read_stl, ".obj": read_obj}
    ext = os.path.splitext(str(path))[1].lower()
    if ext not in readers:
        raise MeshError(path, f"unknown mesh format {ext!r} (expected .off, .stl or .obj)")
    try:
        mesh = readers[ext](path)
    except OSError as exc:
        raise MeshError(path, f"cannot read: {exc.strerror or exc}") from None
    # A NaN or Inf coordinate would voxelize to an empty grid that keeps its label.
    bad = np.flatnonzero(~np.isfinite(mesh.vertices).all(axis=1))
    if bad.size:
        raise MeshError(path, f"vertex {bad[0]} has a coordinate that is not finite "
                              f"({' '.join(map(str, mesh.vertices[bad[0]]))})")
    return mesh
