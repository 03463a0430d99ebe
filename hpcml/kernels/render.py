"""Multi-view z-buffer rendering of triangle meshes for MV-CNN.

Cameras (Su et al. 2015, MVCNN): with 12 views the cameras sit every 30
degrees of azimuth, 30 degrees above the ground plane, looking at the centre
of the object; with 20 views they sit on the vertices of a regular
dodecahedron around it.  Choices where the papers are silent: the projection is
orthographic (no field of view to tune, and the object's scale is already
normalised), the object is centred on its bounding-box centre and scaled so its
bounding sphere fills ``fill`` of the image half-width, and meshes are not
back-face culled (ModelNet's faces are not consistently oriented).

Pixel values: ``"depth"`` maps the nearest possible point to 1 and the
farthest to 0.2 (so the far side of an object stays distinguishable from the
background, which is 0); ``"shaded"`` is Lambertian shading under a light at
the camera, ``0.1 + 0.9*|cos|``, background 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hpcml.io.mesh import Mesh, rotation_z
from hpcml.kernels import JIT

MODES = {"depth": 0, "shaded": 1}


def camera_directions(n_views):
    """Unit vectors from the object centre towards each camera, shape (n_views, 3).

    Parameters
    ----------
    n_views : {12, 20}
    """
    if n_views == 12:
        az = np.deg2rad(np.arange(12) * 30.0)
        el = np.deg2rad(30.0)
        return np.column_stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az),
                                np.full(12, np.sin(el))])
    if n_views == 20:
        phi = (1 + np.sqrt(5)) / 2
        pts = [(a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)]
        for a in (-1, 1):
            for b in (-1, 1):
                pts += [(0, a / phi, b * phi), (a / phi, b * phi, 0), (a * phi, 0, b / phi)]
        pts = np.asarray(pts, float)
        return pts / np.linalg.norm(pts, axis=1, keepdims=True)
    raise ValueError(f"n_views must be 12 or 20, got {n_views}")


def camera_frames(directions):
    """Right, up and towards-camera unit vectors per view, shape (n_views, 3, 3).

    ``up`` is the projection of the world z axis (or of x for a camera straight
    above or below), so objects stand upright in every image.
    """
    frames = np.empty((len(directions), 3, 3))
    for i, d in enumerate(np.asarray(directions, float)):
        ref = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.99 else np.array([1.0, 0.0, 0.0])
        right = np.cross(ref, d)
        right /= np.linalg.norm(right)
        frames[i] = [right, np.cross(d, right), d]
    return frames


@njit(**JIT)
def _render_kernel(verts, faces, frames, size, fill, mode, out):
    """Rasterise every view of a normalised mesh into ``out`` (n_views, size, size)."""
    n_views = frames.shape[0]
    n_faces = faces.shape[0]
    half = 0.5 * size
    zbuf = np.empty((size, size))
    px = np.empty((verts.shape[0], 3))
    for view in range(n_views):
        zbuf[:, :] = 1e300  # finite: the shared flags (fastmath) assume no infinities
        for v in range(verts.shape[0]):
            x = verts[v, 0] * frames[view, 0, 0] + verts[v, 1] * frames[view, 0, 1] \
                + verts[v, 2] * frames[view, 0, 2]
            y = verts[v, 0] * frames[view, 1, 0] + verts[v, 1] * frames[view, 1, 1] \
                + verts[v, 2] * frames[view, 1, 2]
            d = verts[v, 0] * frames[view, 2, 0] + verts[v, 1] * frames[view, 2, 1] \
                + verts[v, 2] * frames[view, 2, 2]
            # Column from x, row from -y (row 0 at the top), depth = distance away from camera.
            px[v, 0] = half + x * half * fill
            px[v, 1] = half - y * half * fill
            px[v, 2] = -d
        for f in range(n_faces):
            a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
            ax, ay, az = px[a, 0], px[a, 1], px[a, 2]
            bx, by, bz = px[b, 0], px[b, 1], px[b, 2]
            cx, cy, cz = px[c, 0], px[c, 1], px[c, 2]
            area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
            if area == 0.0:
                continue
            col0 = max(int(np.ceil(min(ax, min(bx, cx)) - 0.5)), 0)
            col1 = min(int(np.floor(max(ax, max(bx, cx)) - 0.5)), size - 1)
            row0 = max(int(np.ceil(min(ay, min(by, cy)) - 0.5)), 0)
            row1 = min(int(np.floor(max(ay, max(by, cy)) - 0.5)), size - 1)
            shade = 0.0
            if mode == 1:
                # Face normal in camera coordinates: its z component is the cosine to the view.
                e1x, e1y, e1z = bx - ax, by - ay, bz - az
                e2x, e2y, e2z = cx - ax, cy - ay, cz - az
                # Undo the pixel scaling of x and y so the normal is the 3-D one.
                s = half * fill
                e1x, e1y, e2x, e2y = e1x / s, e1y / s, e2x / s, e2y / s
                nx = e1y * e2z - e1z * e2y
                ny = e1z * e2x - e1x * e2z
                nz = e1x * e2y - e1y * e2x
                norm = np.sqrt(nx * nx + ny * ny + nz * nz)
                shade = 0.1 + 0.9 * abs(nz) / norm if norm > 0 else 0.1
            for row in range(row0, row1 + 1):
                py = row + 0.5
                for col in range(col0, col1 + 1):
                    qx = col + 0.5
                    w0 = ((bx - qx) * (cy - py) - (by - py) * (cx - qx)) / area
                    w1 = ((cx - qx) * (ay - py) - (cy - py) * (ax - qx)) / area
                    w2 = 1.0 - w0 - w1
                    if w0 < 0.0 or w1 < 0.0 or w2 < 0.0:
                        continue
                    z = w0 * az + w1 * bz + w2 * cz
                    if z < zbuf[row, col]:
                        zbuf[row, col] = z
                        if mode == 0:
                            out[view, row, col] = 0.2 + 0.8 * (1.0 - z) * 0.5
                        else:
                            out[view, row, col] = shade


def normalise_for_views(vertices):
    """Centre on the bounding-box centre and scale the bounding sphere (about it) to radius 1."""
    v = np.asarray(vertices, dtype=np.float64)
    v = v - (v.min(axis=0) + v.max(axis=0)) / 2
    radius = np.sqrt((v * v).sum(axis=1).max()) if len(v) else 0.0
    return v / radius if radius > 0 else v


def render_views(mesh, n_views=12, size=64, mode="depth", fill=0.95, angle=0.0):
    """Render ``mesh`` from ``n_views`` cameras.

    Parameters
    ----------
    mesh : Mesh
    n_views : {12, 20}
    size : int
        Image height and width in pixels.
    mode : {"depth", "shaded"}
    fill : float
        Fraction of the image half-width covered by the bounding sphere's radius.
    angle : float
        Rotation of the object about z before rendering (radians).

    Returns
    -------
    ndarray of float32, shape (n_views, size, size)
    """
    if not isinstance(mesh, Mesh):
        raise TypeError("mesh must be an hpcml.io.mesh.Mesh")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    if not 0 < fill <= 1:
        raise ValueError(f"fill must be in (0, 1], got {fill}")
    frames = camera_frames(camera_directions(n_views))
    out = np.zeros((n_views, int(size), int(size)), dtype=np.float32)
    if len(mesh.faces) == 0:
        return out
    v = mesh.vertices @ rotation_z(angle).T if angle else mesh.vertices
    _render_kernel(normalise_for_views(v), mesh.faces, frames, int(size), float(fill),
                   MODES[mode], out)
    return out
