"""Object File Format (OFF) meshes, as ModelNet ships them.

Accepted quirks: the keyword fused with the counts on the first line
(``OFF28048 35408 0``, about 1 in 40 ModelNet40 files), counts on the keyword
line or the next one, ``#`` comments anywhere, blank lines, the ``COFF`` /
``NOFF`` / ``CNOFF`` / ``STOFF`` variants (extra per-vertex fields are ignored),
polygon faces (split into triangle fans) and trailing per-face colours.

A truncated or inconsistent file raises :class:`hpcml.io.mesh.MeshError` with
the 1-based line number of the first offending line.
"""

from __future__ import annotations

import re

import numpy as np

from hpcml.io.mesh import Mesh, MeshError, fan_triangulate

_KEYWORD = re.compile(r"^(ST)?(C)?(N)?(4)?(n)?OFF(?:BINARY)?")


def _content_lines(text):
    """Yield (line_number, stripped_content) for lines with content left after comments."""
    for lineno, raw in enumerate(text.splitlines(), 1):
        content = raw.split("#", 1)[0].strip()
        if content:
            yield lineno, content


def parse_off(text, path="<string>"):
    """Parse OFF text into a :class:`Mesh`.

    Parameters
    ----------
    text : str
        The whole file.
    path : str
        Name used in error messages.
    """
    lines = list(_content_lines(text))
    if not lines:
        raise MeshError(path, "empty file: no OFF header")
    lineno, first = lines[0]
    match = _KEYWORD.match(first)
    if not match:
        raise MeshError(path, f"not an OFF file: first line is {first[:40]!r}", lineno)
    if match.group(4) or match.group(5):
        raise MeshError(path, "only 3-D OFF files are supported (found a 4OFF/nOFF header)", lineno)
    if first.endswith("BINARY"):
        raise MeshError(path, "binary OFF is not supported", lineno)
    rest = first[match.end():].split()
    pos = 1
    if not rest:
        if len(lines) < 2:
            raise MeshError(path, "truncated file: missing the vertex/face count line", lineno)
        lineno, counts_line = lines[1]
        rest = counts_line.split()
        pos = 2
    if len(rest) < 2:
        raise MeshError(path, f"count line needs 'n_vertices n_faces [n_edges]', got "
                        f"{' '.join(rest)!r}", lineno)
    try:
        n_vert, n_face = int(rest[0]), int(rest[1])
    except ValueError:
        raise MeshError(path, f"bad vertex/face counts {' '.join(rest[:3])!r}", lineno) from None
    if n_vert < 0 or n_face < 0:
        raise MeshError(path, "negative vertex or face count", lineno)

    vlines = lines[pos:pos + n_vert]
    if len(vlines) < n_vert:
        last = lines[-1][0]
        raise MeshError(path, f"truncated file: header promises {n_vert} vertices, found "
                        f"{len(vlines)}", last)
    vertices = _parse_vertices(vlines, path)
    pos += n_vert

    flines = lines[pos:pos + n_face]
    if len(flines) < n_face:
        last = lines[-1][0]
        raise MeshError(path, f"truncated file: header promises {n_face} faces, found "
                        f"{len(flines)}", last)
    extra = len(lines) - pos - n_face
    hint = (f" (the file has {extra} line(s) more than its header promises: are there more than "
            f"{n_vert} vertices?)" if extra > 0 else "")
    faces = _parse_faces(flines, n_vert, path, hint)
    return Mesh(vertices, faces)


def _parse_vertices(vlines, path):
    """Vertex lines -> (n, 3) float64; the first three numbers of each line count."""
    tokens = [content.split()[:3] for _, content in vlines]
    try:
        return np.array(tokens, dtype=np.float64).reshape(-1, 3)
    except ValueError:
        pass  # a short or non-numeric line: find it below to name its line number
    for (lineno, content), tok in zip(vlines, tokens):
        if len(tok) < 3:
            raise MeshError(path, f"vertex line needs 3 coordinates, got {content[:60]!r}", lineno)
        try:
            [float(t) for t in tok]
        except ValueError:
            raise MeshError(path, f"bad vertex coordinate in {content[:60]!r}", lineno) from None
    raise AssertionError("unreachable: numpy rejected vertices that parse one by one")


def _parse_faces(flines, n_vert, path, hint=""):
    """Face lines -> (m, 3) int64 triangles, polygons split into fans.

    ``hint`` ends every error message (why the faces may be misplaced).
    """
    split = [content.split() for _, content in flines]
    # Fast path: every face a bare triangle "3 i j k", which is what ModelNet has.
    if split and all(len(t) == 4 and t[0] == "3" for t in split):
        try:
            faces = np.array(split, dtype=np.int64)[:, 1:]
        except ValueError:
            faces = None
        if faces is not None and (faces.size == 0 or (faces.min() >= 0 and faces.max() < n_vert)):
            return faces
    triangles = []
    for (lineno, content), tok in zip(flines, split):
        try:
            count = int(tok[0])
            idx = [int(t) for t in tok[1:1 + count]]
        except ValueError:
            raise MeshError(path, f"bad face record {content[:60]!r}{hint}", lineno) from None
        if count < 3:
            raise MeshError(path, f"face with {count} vertices (need at least 3){hint}", lineno)
        if len(idx) < count:
            raise MeshError(path, f"face declares {count} vertices but lists {len(idx)}{hint}", lineno)
        bad = [i for i in idx if not 0 <= i < n_vert]
        if bad:
            raise MeshError(path, f"face refers to vertex {bad[0]} but the file has "
                            f"{n_vert} vertices{hint}", lineno)
        triangles.extend(fan_triangulate(idx))
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def read_off(path):
    """Read an OFF file into a :class:`Mesh` (see the module notes for accepted quirks)."""
    with open(path, "r", encoding="ascii", errors="replace") as fh:
        return parse_off(fh.read(), str(path))


def write_off(path, mesh, fused_header=False):
    """Write ``mesh`` as OFF.

    Parameters
    ----------
    path : str or path-like
    mesh : Mesh
    fused_header : bool
        Write ``OFF<nv> <nf> 0`` on one line, as some ModelNet files have it.
    """
    nv, nf = len(mesh.vertices), len(mesh.faces)
    head = f"OFF{nv} {nf} 0\n" if fused_header else f"OFF\n{nv} {nf} 0\n"
    with open(path, "w") as fh:
        fh.write(head)
        np.savetxt(fh, mesh.vertices, fmt="%.6g")
        np.savetxt(fh, np.column_stack([np.full(nf, 3), mesh.faces]), fmt="%d")
