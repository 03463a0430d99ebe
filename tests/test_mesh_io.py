"""Mesh readers on hand-written files with the quirks ModelNet ships."""

import struct

import numpy as np
import pytest

from hpcml.io.mesh import Mesh, MeshError, read_mesh, read_obj, read_stl
from hpcml.io.modelnet import DatasetError, scan_tree
from hpcml.io.off import parse_off, read_off, write_off

CUBE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                   [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], dtype=float)
CUBE_QUADS = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [1, 2, 6, 5], [2, 3, 7, 6], [3, 0, 4, 7]]


def cube_off(header):
    body = "\n".join(" ".join(str(c) for c in v) for v in CUBE_V.astype(int))
    faces = "\n".join("4 " + " ".join(map(str, q)) for q in CUBE_QUADS)
    return f"{header}\n{body}\n{faces}\n"


def total_area(mesh):
    t = mesh.triangles
    return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum()


@pytest.mark.parametrize("header", ["OFF\n8 6 0", "OFF8 6 0", "OFF 8 6 0", "OFF\n\n# c\n8 6 12"])
def test_off_headers_and_quads(header):
    mesh = parse_off(cube_off(header))
    np.testing.assert_array_equal(mesh.vertices, CUBE_V)
    assert mesh.faces.shape == (12, 3)
    assert total_area(mesh) == pytest.approx(6.0)


def test_off_comments_blank_lines_coff_and_face_colours():
    text = """# exported by hand
COFF
3 1 0   # counts

0 0 0 255 0 0 255
1 0 0 0 255 0 255   # trailing comment
# between
0 1 0 0 0 255 255
3 0 1 2 10 20 30
"""
    mesh = parse_off(text)
    np.testing.assert_array_equal(mesh.vertices, [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2]])


def test_off_pentagon_fan():
    text = "OFF\n5 1 0\n0 0 0\n2 0 0\n3 1 0\n1 2 0\n-1 1 0\n5 0 1 2 3 4\n"
    mesh = parse_off(text)
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 3, 4]])
    # Shoelace area of the pentagon.
    x, y = mesh.vertices[:, 0], mesh.vertices[:, 1]
    shoelace = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert total_area(mesh) == pytest.approx(shoelace)


@pytest.mark.parametrize("text, line, words", [
    ("", None, "empty"),
    ("PLY\n3 1 0\n", 1, "not an OFF"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n", 4, "promises 3 vertices"),
    ("OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", 6, "promises 2 faces"),
    ("OFF\n3 1 0\n0 0 0\n1 0\n0 1 0\n3 0 1 2\n", 4, "3 coordinates"),
    ("OFF\n3 1 0\n0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n", 4, "bad vertex"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", 6, "vertex 7"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", 6, "lists 3"),
    ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", 6, "at least 3"),
    ("OFF\nthree 1 0\n", 2, "bad vertex/face counts"),
    ("OFF\n", 1, "count line"),
])
def test_off_errors_name_the_line(text, line, words):
    with pytest.raises(MeshError) as info:
        parse_off(text, "bad.off")
    msg = str(info.value)
    assert words in msg and "\n" not in msg
    assert info.value.line == line
    assert msg.startswith("bad.off" + (f":{line}" if line else ""))


@pytest.mark.parametrize("fused", [False, True])
def test_write_read_roundtrip(tmp_path, fused):
    rng = np.random.default_rng(0)
    mesh = Mesh(rng.normal(size=(20, 3)).round(4), rng.integers(0, 20, size=(30, 3)))
    path = tmp_path / "m.off"
    write_off(path, mesh, fused_header=fused)
    back = read_off(path)
    np.testing.assert_allclose(back.vertices, mesh.vertices, rtol=1e-5)
    np.testing.assert_array_equal(back.faces, mesh.faces)


def test_stl_ascii_and_binary_agree(tmp_path):
    tri = np.array([[[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[1, 0, 0], [1, 1, 0], [0, 1, 0]]], float)
    ascii_text = "solid t\n" + "".join(
        "facet normal 0 0 1\n outer loop\n" + "".join(f"  vertex {a} {b} {c}\n" for a, b, c in t)
        + " endloop\nendfacet\n" for t in tri) + "endsolid t\n"
    (tmp_path / "a.stl").write_text(ascii_text)
    blob = b"solid but binary".ljust(80, b" ") + struct.pack("<I", len(tri))
    for t in tri:
        blob += struct.pack("<3f", 0, 0, 1) + struct.pack("<9f", *t.ravel()) + b"\0\0"
    (tmp_path / "b.stl").write_bytes(blob)
    a, b = read_stl(tmp_path / "a.stl"), read_mesh(tmp_path / "b.stl")
    for m in (a, b):
        assert len(m.vertices) == 4  # shared corners merged
        np.testing.assert_allclose(m.triangles, tri)


def test_stl_truncated(tmp_path):
    (tmp_path / "t.stl").write_text("solid t\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\n"
                                    "vertex 1 0 0\nendloop\nendfacet\nendsolid\n")
    with pytest.raises(MeshError, match="2 vertices"):
        read_stl(tmp_path / "t.stl")


def test_obj_slashes_negative_indices_and_errors(tmp_path):
    (tmp_path / "q.obj").write_text("# quad\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\n"
                                    "f 1//1 2//1 3//1 4//1\nf -4/1 -3/1 -2/1\n")
    mesh = read_obj(tmp_path / "q.obj")
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 2]])
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 3\n")
    with pytest.raises(MeshError, match=r"bad.obj:3: face index 3"):
        read_obj(tmp_path / "bad.obj")


def test_read_mesh_unknown_and_missing(tmp_path):
    with pytest.raises(MeshError, match="unknown mesh format"):
        read_mesh(tmp_path / "x.ply")
    with pytest.raises(MeshError, match="cannot read"):
        read_mesh(tmp_path / "missing.off")


def test_scan_tree(tmp_path):
    for cls, n_train, n_test in [("chair", 2, 1), ("bed", 1, 1)]:
        for split, n in (("train", n_train), ("test", n_test)):
            d = tmp_path / cls / split
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{cls}_{i:04d}.off").write_text(cube_off("OFF\n8 6 0"))
    tree = scan_tree(tmp_path, "train")
    assert tree.classes == ["bed", "chair"]
    assert tree.labels == [0, 1, 1]
    assert [p.rsplit("/", 1)[1] for p in tree.files] == ["bed_0000.off", "chair_0000.off",
                                                         "chair_0001.off"]
    (tmp_path / "lamp" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="'lamp' has no meshes"):
        scan_tree(tmp_path, "train")
    assert scan_tree(tmp_path, "train", allow_empty_class=True).classes[-1] == "lamp"
    with pytest.raises(DatasetError, match="no such dataset"):
        scan_tree(tmp_path / "nope", "test")


@pytest.mark.parametrize("name,text", [
    ("m.off", "OFF\n4 1 0\n0 0 0\n1 0 0\nnan 1 0\n0 0 1\n3 0 1 2\n"),
    ("m.obj", "v 0 0 0\nv 1 0 0\nv 0 inf 0\nf 1 2 3\n"),
    ("m.stl", "solid s\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 0 1 nan\n"
              "endloop\nendfacet\nendsolid s\n"),
])
def test_non_finite_vertices_are_refused(tmp_path, name, text):
    """A NaN or Inf vertex would voxelize to an empty grid that keeps its label."""
    (tmp_path / name).write_text(text)
    with pytest.raises(MeshError, match="has a coordinate that is not finite"):
        read_mesh(tmp_path / name)


def test_off_with_too_small_a_vertex_count_says_so(tmp_path):
    (tmp_path / "m.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 1 2\n")
    with pytest.raises(MeshError, match=r":6: face with 0 vertices .* are there more than 3 vertices\?"):
        read_mesh(tmp_path / "m.off")
