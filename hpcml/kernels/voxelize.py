"""Triangle mesh -> occupancy grid.

The surface is voxelised conservatively: a voxel is set when the closed unit
cube of the voxel and the triangle intersect, decided exactly by the
separating-axis test (Akenine-Möller 2001: the three box axes, the triangle
normal and the nine edge/axis cross products).  ``solid=True`` then sets every
voxel that cannot be reached from the grid boundary through empty voxels
(6-connected flood fill), which fills closed shells and leaves open ones as
surfaces.

Following VoxNet and FusionNet the object is scaled so that the longest side of
its bounding box spans ``object_size`` voxels (24 by default) and centred in a
``grid``-sized cube (30 by default, i.e. 3 voxels of padding on each side).
Orientations about the up (z) axis are produced by rotating the vertices
before voxelising: that keeps each orientation as sharp as the first, which
rotating a voxel grid would not.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from hpcml.io.mesh import Mesh, rotation_z
from hpcml.kernels import JIT


@njit(**JIT)
def _axis_separates(ax, ay, az, v0, v1, v2, half):
    """True when the axis (ax, ay, az) separates the triangle from the box at the origin."""
    p0 = ax * v0[0] + ay * v0[1] + az * v0[2]
    p1 = ax * v1[0] + ay * v1[1] + az * v1[2]
    p2 = ax * v2[0] + ay * v2[1] + az * v2[2]
    r = half * (abs(ax) + abs(ay) + abs(az))
    return min(p0, min(p1, p2)) > r or max(p0, max(p1, p2)) < -r


@njit(**JIT)
def _tri_box_overlap(v0, v1, v2, half):
    """Separating-axis test of a triangle (already relative to the box centre) and a cube."""
    for k in range(3):
        if min(v0[k], min(v1[k], v2[k])) > half or max(v0[k], max(v1[k], v2[k])) < -half:
            return False
    e = np.empty((3, 3))
    for k in range(3):
        e[0, k] = v1[k] - v0[k]
        e[1, k] = v2[k] - v1[k]
        e[2, k] = v0[k] - v2[k]
    for i in range(3):
        ex, ey, ez = e[i, 0], e[i, 1], e[i, 2]
        # Cross products of the box axes x, y, z with the edge.
        if _axis_separates(0.0, -ez, ey, v0, v1, v2, half):
            return False
        if _axis_separates(ez, 0.0, -ex, v0, v1, v2, half):
            return False
        if _axis_separates(-ey, ex, 0.0, v0, v1, v2, half):
            return False
    nx = e[0, 1] * e[1, 2] - e[0, 2] * e[1, 1]
    ny = e[0, 2] * e[1, 0] - e[0, 0] * e[1, 2]
    nz = e[0, 0] * e[1, 1] - e[0, 1] * e[1, 0]
    return not _axis_separates(nx, ny, nz, v0, v1, v2, half)


@njit(**JIT)
def _surface_kernel(tri, occ):
    """Set every voxel of ``occ`` whose unit cube meets a triangle of ``tri`` (voxel coords)."""
    g0, g1, g2 = occ.shape
    v0 = np.empty(3)
    v1 = np.empty(3)
    v2 = np.empty(3)
    for t in range(tri.shape[0]):
        lo = np.empty(3, np.int64)
        hi = np.empty(3, np.int64)
        dims = (g0, g1, g2)
        empty = False
        for k in range(3):
            a = min(tri[t, 0, k], min(tri[t, 1, k], tri[t, 2, k]))
            b = max(tri[t, 0, k], max(tri[t, 1, k], tri[t, 2, k]))
            # Voxel i covers [i, i+1]; a face lying exactly on i touches voxels i-1 and i.
            lo[k] = max(int(np.floor(a)) - 1, 0)
            hi[k] = min(int(np.floor(b)) + 1, dims[k] - 1)
            if lo[k] > hi[k]:
                empty = True
        if empty:
            continue
        for i in range(lo[0], hi[0] + 1):
            for j in range(lo[1], hi[1] + 1):
                for k in range(lo[2], hi[2] + 1):
                    if occ[i, j, k]:
                        continue
                    for c in range(3):
                        centre = (i, j, k)[c] + 0.5
                        v0[c] = tri[t, 0, c] - centre
                        v1[c] = tri[t, 1, c] - centre
                        v2[c] = tri[t, 2, c] - centre
                    if _tri_box_overlap(v0, v1, v2, 0.5):
                        occ[i, j, k] = 1


@njit(**JIT)
def _fill_kernel(occ):
    """Set every empty voxel not 6-connected to the boundary through empty voxels."""
    g0, g1, g2 = occ.shape
    outside = np.zeros(occ.shape, np.uint8)
    stack = np.empty((occ.size, 3), np.int64)
    top = 0
    for i in range(g0):
        for j in range(g1):
            for k in range(g2):
                on_border = i == 0 or j == 0 or k == 0 or i == g0 - 1 or j == g1 - 1 or k == g2 - 1
                if on_border and occ[i, j, k] == 0 and outside[i, j, k] == 0:
                    outside[i, j, k] = 1
                    stack[top, 0], stack[top, 1], stack[top, 2] = i, j, k
                    top += 1
    while top > 0:
        top -= 1
        i, j, k = stack[top, 0], stack[top, 1], stack[top, 2]
        for d in range(6):
            a, b, c = i, j, k
            if d == 0:
                a -= 1
            elif d == 1:
                a += 1
            elif d == 2:
                b -= 1
            elif d == 3:
                b += 1
            elif d == 4:
                c -= 1
            else:
                c += 1
            if 0 <= a < g0 and 0 <= b < g1 and 0 <= c < g2:
                if occ[a, b, c] == 0 and outside[a, b, c] == 0:
                    outside[a, b, c] = 1
                    stack[top, 0], stack[top, 1], stack[top, 2] = a, b, c
                    top += 1
    for i in range(g0):
        for j in range(g1):
            for k in range(g2):
                if outside[i, j, k] == 0:
                    occ[i, j, k] = 1


def to_grid_coords(vertices, grid=30, object_size=24):
    """Scale and centre vertices so the bounding box's longest side spans ``object_size`` voxels.

    Parameters
    ----------
    vertices : ndarray (n, 3)
    grid : int
        Voxels per side of the output grid.
    object_size : float
        Voxels spanned by the longest side of the object's bounding box.

    Returns
    -------
    ndarray (n, 3) float64
        Coordinates in voxel units; voxel ``i`` covers ``[i, i+1)``.
    """
    v = np.asarray(vertices, dtype=np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    extent = (hi - lo).max()
    scale = object_size / extent if extent > 0 else 1.0
    return (v - (lo + hi) / 2) * scale + grid / 2.0


def voxelize(mesh, grid=30, object_size=24, solid=False, angle=0.0):
    """Occupancy grid of a triangle mesh.

    Parameters
    ----------
    mesh : Mesh
    grid : int
        Output shape is ``(grid, grid, grid)``, indexed (x, y, z) with z up.
    object_size : float
        Voxels spanned by the longest bounding-box side; ``grid - object_size``
        voxels of padding are shared between both ends.
    solid : bool
        Fill enclosed interiors.
    angle : float
        Rotation about the up (z) axis in radians, applied before scaling.

    Returns
    -------
    ndarray of uint8, shape (grid, grid, grid)
    """
    if not isinstance(mesh, Mesh):
        raise TypeError("mesh must be an hpcml.io.mesh.Mesh")
    if int(grid) != grid or grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid}")
    if not 0 < object_size <= grid:
        raise ValueError(f"object_size must be in (0, grid], got {object_size}")
    occ = np.zeros((int(grid),) * 3, dtype=np.uint8)
    if len(mesh.faces) == 0:
        return occ
    v = mesh.vertices @ rotation_z(angle).T if angle else mesh.vertices
    tri = np.ascontiguousarray(to_grid_coords(v, grid, object_size)[mesh.faces])
    _surface_kernel(tri, occ)
    if solid:
        _fill_kernel(occ)
    return occ


def voxelize_orientations(mesh, n_orientations=12, grid=30, object_size=24, solid=False):
    """Occupancy grids of ``mesh`` turned to ``n_orientations`` evenly spaced headings.

    Returns
    -------
    ndarray of uint8, shape (n_orientations, grid, grid, grid)
        Orientation ``r`` is rotated by ``2*pi*r/n_orientations`` about z.
    """
    if n_orientations < 1:
        raise ValueError("n_orientations must be >= 1")
    return np.stack([voxelize(mesh, grid, object_size, solid, 2 * np.pi * r / n_orientations)
                     for r in range(n_orientations)])
