"""Voxeliser and renderer against plain-Python references."""

import os

import numpy as np
import pytest

from hpcml.io.mesh import Mesh
from hpcml.io.modelnet import scan_tree
from hpcml.io.off import read_off
from hpcml.kernels.render import camera_directions, camera_frames, normalise_for_views, render_views
from hpcml.kernels.voxelize import to_grid_coords, voxelize, voxelize_orientations
from hpcml.vision.primitives import box, revolve
from hpcml.vision.shapes import CLASSES, generate_tree, make_object


# ---------------------------------------------------------------- references
def ref_tri_box(tri, centre, half):
    """Separating-axis test written from the definition: 13 candidate axes."""
    v = np.asarray(tri, float) - centre
    edges = [v[1] - v[0], v[2] - v[1], v[0] - v[2]]
    axes = list(np.eye(3)) + [np.cross(edges[0], edges[1])]
    axes += [np.cross(a, e) for a in np.eye(3) for e in edges]
    for ax in axes:
        p = v @ ax
        r = half * np.abs(ax).sum()
        if p.min() > r or p.max() < -r:
            return False
    return True


def ref_voxelize(mesh, grid, object_size, solid):
    occ = np.zeros((grid,) * 3, np.uint8)
    tris = to_grid_coords(mesh.vertices, grid, object_size)[mesh.faces]
    for tri in tris:
        lo = np.clip(np.floor(tri.min(0)).astype(int) - 1, 0, grid - 1)
        hi = np.clip(np.floor(tri.max(0)).astype(int) + 1, 0, grid - 1)
        for i in range(lo[0], hi[0] + 1):
            for j in range(lo[1], hi[1] + 1):
                for k in range(lo[2], hi[2] + 1):
                    if ref_tri_box(tri, np.array([i, j, k]) + 0.5, 0.5):
                        occ[i, j, k] = 1
    if solid:
        # Breadth-first search over empty voxels from the whole boundary.
        outside = np.zeros_like(occ, bool)
        frontier = [idx for idx in np.ndindex(occ.shape)
                    if min(idx) == 0 or max(idx) == grid - 1]
        frontier = [idx for idx in frontier if not occ[idx]]
        for idx in frontier:
            outside[idx] = True
        while frontier:
            nxt = []
            for idx in frontier:
                for ax in range(3):
                    for step in (-1, 1):
                        n = list(idx)
                        n[ax] += step
                        n = tuple(n)
                        if 0 <= n[ax] < grid and not occ[n] and not outside[n]:
                            outside[n] = True
                            nxt.append(n)
            frontier = nxt
        occ[~outside] = 1
    return occ


def ref_render(mesh, n_views, size, mode, fill=0.95):
    """Ray casting: each pixel's ray along the view axis, nearest hit over all triangles.

    Möller-Trumbore intersection, vectorised over the triangles with numpy.
    """
    v = normalise_for_views(mesh.vertices)
    tri = v[mesh.faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    normals = np.cross(e1, e2)
    out = np.zeros((n_views, size, size), np.float32)
    for view, (right, up, back) in enumerate(camera_frames(camera_directions(n_views))):
        h = np.cross(-back, e2)
        det = np.einsum("ij,ij->i", e1, h)
        ok = np.abs(det) > 1e-14
        safe = np.where(ok, det, 1.0)
        for row in range(size):
            for col in range(size):
                x = ((col + 0.5) - size / 2) / (size / 2 * fill)
                y = (size / 2 - (row + 0.5)) / (size / 2 * fill)
                s_ = x * right + y * up + 10 * back - tri[:, 0]
                a = np.einsum("ij,ij->i", s_, h) / safe
                q = np.cross(s_, e1)
                b = (q @ -back) / safe
                t = np.einsum("ij,ij->i", q, e2) / safe
                hit = ok & (a >= 0) & (b >= 0) & (a + b <= 1)
                if not hit.any():
                    continue
                best = np.flatnonzero(hit)[np.argmin(t[hit])]
                depth = t[best] - 10  # signed distance along the view axis from the centre plane
                if mode == "depth":
                    out[view, row, col] = 0.2 + 0.8 * (1 - depth) / 2
                else:
                    n = normals[best]
                    out[view, row, col] = 0.1 + 0.9 * abs(n @ back) / np.linalg.norm(n)
    return out


def sample_surface(mesh, n, rng):
    """Uniform-ish points on every triangle (n per triangle) including its corners."""
    tris = mesh.triangles
    a, b = rng.random((2, len(tris), n))
    flip = a + b > 1
    a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
    pts = tris[:, None, 0] + a[..., None] * (tris[:, None, 1] - tris[:, None, 0]) \
        + b[..., None] * (tris[:, None, 2] - tris[:, None, 0])
    return np.concatenate([pts.reshape(-1, 3), tris.reshape(-1, 3)])


# ---------------------------------------------------------------- voxeliser
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("solid", [False, True])
def test_voxelize_matches_reference(seed, solid):
    rng = np.random.default_rng(seed)
    # A random soup plus a closed box: exercises thin slivers, axis-aligned faces and filling.
    soup = Mesh(rng.normal(size=(12, 3)), rng.integers(0, 12, size=(10, 3)))
    mesh = Mesh.concatenate([soup, box([0.2, 0.1, 0.0], [1.5, 1.0, 0.8])])
    got = voxelize(mesh, grid=12, object_size=9, solid=solid)
    np.testing.assert_array_equal(got, ref_voxelize(mesh, 12, 9, solid))


def test_voxelize_is_conservative():
    # Independent of the separating-axis test: every sampled surface point lies in a set voxel.
    rng = np.random.default_rng(5)
    for name in ("chair", "airplane", "cup"):
        mesh = make_object(name, rng)
        occ = voxelize(mesh, grid=20, object_size=16)
        pts = sample_surface(Mesh(to_grid_coords(mesh.vertices, 20, 16), mesh.faces), 50, rng)
        idx = np.clip(np.floor(pts).astype(int), 0, 19)
        assert occ[idx[:, 0], idx[:, 1], idx[:, 2]].all()


def test_solid_box_fill_counts():
    occ = voxelize(box([0, 0, 0], [1, 1, 1]), grid=10, object_size=6, solid=True)
    # The cube spans [2, 8] in voxel units: faces on integer planes touch voxels 1..8.
    assert occ.sum() == 8 ** 3
    assert occ[1:9, 1:9, 1:9].all()
    hollow = voxelize(box([0, 0, 0], [1, 1, 1]), grid=10, object_size=6, solid=False)
    assert hollow[3:7, 3:7, 3:7].sum() == 0


def test_scaling_and_orientations():
    mesh = box([5, 5, 5], [2.0, 1.0, 0.5])
    occ = voxelize(mesh, grid=30, object_size=24)
    filled = np.argwhere(occ)
    span = filled.max(0) - filled.min(0) + 1
    assert span[0] in (24, 25, 26) and span[1] in (12, 13, 14)
    assert abs((filled.max(0) + filled.min(0)) / 2 - 14.5).max() <= 0.5
    rot = voxelize_orientations(mesh, 4, grid=30, object_size=24)
    assert rot.shape == (4, 30, 30, 30)
    # A quarter turn maps x onto y: orientation 1 is orientation 0 rotated in the xy plane.
    np.testing.assert_array_equal(rot[1], np.rot90(rot[0], k=1, axes=(0, 1)))
    np.testing.assert_array_equal(rot[2], rot[0][::-1, ::-1])


def test_voxelize_rejects_bad_arguments():
    with pytest.raises(ValueError, match="object_size"):
        voxelize(box([0, 0, 0], [1, 1, 1]), grid=8, object_size=10)
    with pytest.raises(TypeError):
        voxelize(np.zeros((3, 3)))
    empty = Mesh(np.zeros((0, 3)), np.zeros((0, 3), int))
    assert voxelize(empty, grid=4, object_size=3).sum() == 0


# ---------------------------------------------------------------- renderer
@pytest.mark.parametrize("mode", ["depth", "shaded"])
def test_render_matches_ray_casting(mode):
    rng = np.random.default_rng(2)
    mesh = Mesh.concatenate([box([0, 0, 0], [1.0, 0.6, 0.4]),
                             revolve([(0.2, 0.2), (0.1, 0.7)], 7),
                             Mesh(rng.normal(scale=0.4, size=(6, 3)), rng.integers(0, 6, (3, 3)))])
    got = render_views(mesh, n_views=12, size=16, mode=mode)
    ref = ref_render(mesh, 12, 16, mode)
    covered_got, covered_ref = got > 0, ref > 0
    # Pixel centres that fall exactly on a shared edge may go either way: allow very few.
    assert (covered_got != covered_ref).sum() <= 3
    both = covered_got & covered_ref
    close = np.isclose(got[both], ref[both], atol=1e-5)
    assert close.mean() > 0.99


def test_cameras_and_views():
    for n in (12, 20):
        d = camera_directions(n)
        np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0)
        assert len(np.unique(d.round(6), axis=0)) == n
        f = camera_frames(d)
        np.testing.assert_allclose(np.einsum("vij,vkj->vik", f, f), np.broadcast_to(np.eye(3), (n, 3, 3)),
                                   atol=1e-12)
    with pytest.raises(ValueError, match="12 or 20"):
        camera_directions(8)
    lamp = make_object("lamp", np.random.default_rng(0))
    # Unused vertices on a 12-fold symmetric ring fix the bounding box and sphere under
    # 30-degree turns, so normalisation does not change with the turn.
    v = lamp.vertices - (lamp.vertices.min(0) + lamp.vertices.max(0)) / 2
    r, h = 1.01 * np.linalg.norm(v[:, :2], axis=1).max(), np.abs(v[:, 2]).max()
    ring = np.array([[r * np.cos(a), r * np.sin(a), z] for a in np.arange(12) * np.pi / 6
                     for z in (-h, h)])
    mesh = Mesh(np.concatenate([v, ring]), lamp.faces)
    views = render_views(mesh, 12, size=24)
    assert views.shape == (12, 24, 24) and views.dtype == np.float32
    assert views.max() <= 1.0 and (views > 0).mean() > 0.02
    # A 30-degree turn of the object equals stepping the 12 azimuth cameras by one.
    turned = render_views(mesh, 12, size=24, angle=np.deg2rad(30))
    assert np.isclose(turned[1], views[0], atol=1e-5).mean() > 0.98


# ---------------------------------------------------------------- shapes
def test_generate_tree_reads_back(tmp_path):
    n = generate_tree(tmp_path, n_train=2, n_test=1, seed=3, classes=["cup", "sofa"],
                      fused_every=1)
    assert n == 6
    tree = scan_tree(tmp_path, "train")
    assert tree.classes == ["cup", "sofa"] and tree.labels == [0, 0, 1, 1]
    again = tmp_path / "again"
    generate_tree(again, n_train=2, n_test=1, seed=3, classes=["cup", "sofa"], fused_every=1)
    for path in tree.files:
        a = read_off(path)
        with open(path) as fh:
            assert fh.readline().startswith("OFF") and len(a.faces) > 10
        b = read_off(os.path.join(again, *path.split(os.sep)[-3:]))
        np.testing.assert_array_equal(a.vertices, b.vertices)
    with pytest.raises(ValueError, match="unknown shape classes"):
        generate_tree(tmp_path, 1, 1, classes=["teapot"])


def test_every_class_varies():
    assert len(CLASSES) >= 10
    for name in CLASSES:
        a = voxelize(make_object(name, np.random.default_rng(0)), grid=16, object_size=12)
        b = voxelize(make_object(name, np.random.default_rng(1)), grid=16, object_size=12)
        assert a.sum() > 20 and (a != b).any()
