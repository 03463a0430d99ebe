"""Closed and open triangle-mesh primitives used to build synthetic objects.

All primitives are returned in a local frame with ``z`` up (ModelNet's up axis).
"""

from __future__ import annotations

import numpy as np

from hpcml.io.mesh import Mesh

_BOX_FACES = np.array([[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
                       [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]])


def box(center, size):
    """Axis-aligned box with the given centre and edge lengths (12 triangles)."""
    c, h = np.asarray(center, float), 0.5 * np.asarray(size, float)
    corners = np.array([[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1],
                        [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]], float)
    return Mesh(c + corners * h, _BOX_FACES)


def revolve(profile, segments=16, cap_bottom=True, cap_top=True):
    """Surface of revolution about the z axis.

    Parameters
    ----------
    profile : sequence of (radius, z)
        From bottom to top; radius >= 0.
    segments : int
        Points per ring.
    cap_bottom, cap_top : bool
        Close the first / last ring with a triangle fan (ignored for radius 0).
    """
    prof = np.asarray(profile, float)
    theta = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    rings = [np.column_stack([r * np.cos(theta), r * np.sin(theta), np.full(segments, z)])
             for r, z in prof]
    verts = list(np.concatenate(rings))
    faces = []
    for k in range(len(prof) - 1):
        a, b = k * segments, (k + 1) * segments
        for s in range(segments):
            t = (s + 1) % segments
            faces += [[a + s, a + t, b + t], [a + s, b + t, b + s]]
    for cap, ring, flip in ((cap_bottom, 0, True), (cap_top, len(prof) - 1, False)):
        if cap and prof[ring, 0] > 0:
            centre = len(verts)
            verts.append([0.0, 0.0, prof[ring, 1]])
            base = ring * segments
            for s in range(segments):
                t = (s + 1) % segments
                faces.append([centre, base + t, base + s] if flip else [centre, base + s, base + t])
    return Mesh(np.asarray(verts), np.asarray(faces))


def cylinder(p0, p1, radius, segments=12):
    """Closed cylinder between points ``p0`` and ``p1``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    length = np.linalg.norm(p1 - p0)
    local = revolve([(radius, 0.0), (radius, length)], segments)
    return place(local, frame_from_z(p1 - p0), p0)


def torus(major, minor, arc=2 * np.pi, segments=16, tube_segments=8):
    """Torus (or an arc of one) in the xz plane around the y axis, centred at the origin."""
    u = np.linspace(0.0, arc, segments + 1 if arc < 2 * np.pi else segments, endpoint=arc < 2 * np.pi)
    v = np.linspace(0.0, 2 * np.pi, tube_segments, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    x = (major + minor * np.cos(vv)) * np.cos(uu)
    z = (major + minor * np.cos(vv)) * np.sin(uu)
    y = minor * np.sin(vv)
    verts = np.column_stack([x.ravel(), y.ravel(), z.ravel()])
    nu, closed = len(u), arc >= 2 * np.pi
    faces = []
    for i in range(nu if closed else nu - 1):
        i2 = (i + 1) % nu
        for j in range(tube_segments):
            j2 = (j + 1) % tube_segments
            a, b, c, d = i * tube_segments + j, i2 * tube_segments + j, i2 * tube_segments + j2, \
                i * tube_segments + j2
            faces += [[a, b, c], [a, c, d]]
    return Mesh(verts, np.asarray(faces))


def frame_from_z(direction):
    """Rotation matrix whose third column is the unit vector along ``direction``."""
    z = np.asarray(direction, float)
    z = z / np.linalg.norm(z)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])


def place(mesh, rotation, translation):
    """Rotate (3x3 matrix) then translate a mesh."""
    return Mesh(mesh.vertices @ np.asarray(rotation).T + np.asarray(translation), mesh.faces)


