"""A ModelNet-style tree of synthetic objects built from primitives.

ModelNet cannot be downloaded on the machines this project is developed on, so
``hpcml data shapes`` writes ``ROOT/<class>/{train,test}/<class>_NNNN.off`` for
ten classes of parametric furniture and objects.  Every object draws its
proportions, part counts and styles at random (chairs with four legs or a swivel
base, slatted or solid backs, optional arms; tables round or square; ...), is
then stretched, sheared and jittered a little and turned to a random heading
about the up axis, so that classes overlap in silhouette (chair/sofa, table/bed,
bottle/lamp/cup, bookshelf/monitor) and must be told apart by structure.

Each file's random stream is seeded from (seed, class, split, index), so a tree
is reproducible and can be written by several processes in any order.  About 1
file in 30 gets ModelNet's fused ``OFF<nv> <nf> 0`` header.
"""

from __future__ import annotations

import os

import numpy as np

from hpcml.io.mesh import Mesh, rotation_z
from hpcml.io.off import write_off
from hpcml.vision.primitives import box, cylinder, place, revolve, torus

# Shorthand: every draw below is U(rng, low, high).
U = np.random.Generator.uniform


def _legs(rng, half_w, half_d, top_z, thick, round_legs, inset=0.0):
    """Four legs under the corners of a rectangle centred at the origin."""
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (half_w - inset - thick), sy * (half_d - inset - thick)
            if round_legs:
                parts.append(cylinder([x, y, 0.0], [x, y, top_z], thick * 0.6, 8))
            else:
                parts.append(box([x, y, top_z / 2], [thick, thick, top_z]))
    return parts


def _star_base(rng, height, radius, n_arms):
    """Central post on an n-armed star (swivel chairs, pedestal tables)."""
    parts = [cylinder([0, 0, 0.05], [0, 0, height], U(rng, 0.02, 0.05), 10)]
    for a in np.linspace(0, 2 * np.pi, n_arms, endpoint=False) + U(rng, 0, 1):
        tip = [radius * np.cos(a), radius * np.sin(a), 0.02]
        parts.append(cylinder([0, 0, 0.05], tip, 0.02, 6))
    return parts


def chair(rng):
    w, d = U(rng, 0.4, 0.6), U(rng, 0.4, 0.55)
    seat_z, seat_t = U(rng, 0.38, 0.5), U(rng, 0.03, 0.08)
    parts = [box([0, 0, seat_z], [w, d, seat_t])]
    if rng.random() < 0.7:
        parts += _legs(rng, w / 2, d / 2, seat_z, U(rng, 0.03, 0.06), rng.random() < 0.5)
    else:
        parts += _star_base(rng, seat_z, U(rng, 0.25, 0.35), int(rng.integers(4, 6)))
    back_h = U(rng, 0.3, 0.6)
    back_t = U(rng, 0.03, 0.06)
    y_back = -d / 2 + back_t / 2
    base = seat_z + seat_t / 2
    n_slats = int(rng.integers(0, 5))
    if n_slats == 0:
        parts.append(box([0, y_back, base + back_h / 2], [w, back_t, back_h]))
    else:
        for x in (-w / 2 + back_t / 2, w / 2 - back_t / 2):
            parts.append(box([x, y_back, base + back_h / 2], [back_t, back_t, back_h]))
        parts.append(box([0, y_back, base + back_h - 0.03], [w, back_t, 0.06]))
        for x in np.linspace(-w / 2, w / 2, n_slats + 2)[1:-1]:
            parts.append(box([x, y_back, base + back_h / 2], [0.03, back_t * 0.7, back_h]))
    if rng.random() < 0.3:
        arm_z = base + U(rng, 0.15, 0.25)
        for x in (-w / 2, w / 2):
            parts.append(box([x, 0, arm_z], [0.04, d * 0.9, 0.04]))
            parts.append(box([x, d / 3, (base + arm_z) / 2], [0.03, 0.03, arm_z - base]))
    return parts


def table(rng):
    top_z, top_t = U(rng, 0.6, 0.8), U(rng, 0.03, 0.08)
    if rng.random() < 0.3:
        r = U(rng, 0.4, 0.7)
        parts = [revolve([(r, top_z - top_t / 2), (r, top_z + top_t / 2)], 24)]
        if rng.random() < 0.5:
            parts += _star_base(rng, top_z, r * 0.6, int(rng.integers(3, 5)))
        else:
            parts += _legs(rng, r * 0.65, r * 0.65, top_z, U(rng, 0.04, 0.07), True)
        return parts
    w, d = U(rng, 0.8, 1.6), U(rng, 0.5, 0.9)
    parts = [box([0, 0, top_z], [w, d, top_t])]
    leg_t = U(rng, 0.04, 0.09)
    parts += _legs(rng, w / 2, d / 2, top_z, leg_t, rng.random() < 0.4, inset=U(rng, 0, 0.08))
    if rng.random() < 0.35:
        parts.append(box([0, 0, U(rng, 0.1, 0.25)], [w * 0.85, d * 0.85, 0.03]))
    return parts


def bed(rng):
    w, length = U(rng, 0.9, 1.6), U(rng, 1.8, 2.2)
    frame_z = U(rng, 0.15, 0.35)
    mat_h = U(rng, 0.15, 0.3)
    parts = [box([0, 0, frame_z + mat_h / 2], [w, length, mat_h])]
    parts += _legs(rng, w / 2, length / 2, frame_z, U(rng, 0.05, 0.09), False)
    head_h = U(rng, 0.6, 1.1)
    parts.append(box([0, -length / 2 - 0.03, head_h / 2], [w + 0.06, 0.06, head_h]))
    if rng.random() < 0.5:
        foot_h = U(rng, 0.35, 0.6)
        parts.append(box([0, length / 2 + 0.03, foot_h / 2], [w + 0.06, 0.06, foot_h]))
    n_pillows = int(rng.integers(0, 3))
    for j in range(n_pillows):
        x = -w / 2 + (j + 0.5) * w / n_pillows
        parts.append(box([x, -length / 2 + 0.25, frame_z + mat_h + 0.06],
                         [w / n_pillows * 0.8, 0.3, 0.12]))
    return parts


def lamp(rng):
    base_r = U(rng, 0.1, 0.2)
    parts = [revolve([(base_r, 0.0), (base_r * 0.8, U(rng, 0.03, 0.08))], 16)]
    height = U(rng, 0.5, 1.6)
    if rng.random() < 0.4:
        knee = np.array([U(rng, -0.2, 0.2), U(rng, -0.2, 0.2), height * U(rng, 0.4, 0.7)])
        top = np.array([U(rng, 0.1, 0.35), 0.0, height])
        parts += [cylinder([0, 0, 0], knee, 0.015, 8), cylinder(knee, top, 0.015, 8)]
    else:
        top = np.array([0.0, 0.0, height])
        parts.append(cylinder([0, 0, 0], top, U(rng, 0.01, 0.03), 8))
    r_bot, r_top = U(rng, 0.12, 0.28), U(rng, 0.05, 0.2)
    shade_h = U(rng, 0.12, 0.3)
    shade = revolve([(r_bot, -shade_h * 0.6), (r_top, shade_h * 0.4)], 20,
                    cap_bottom=False, cap_top=rng.random() < 0.5)
    parts.append(place(shade, np.eye(3), top))
    return parts


def bottle(rng):
    r = U(rng, 0.06, 0.14)
    body = U(rng, 0.15, 0.35)
    shoulder = U(rng, 0.04, 0.12)
    neck_r = r * U(rng, 0.25, 0.45)
    neck = U(rng, 0.05, 0.15)
    profile = [(r * U(rng, 0.85, 1.0), 0.0), (r, 0.02), (r * U(rng, 0.9, 1.1), body),
               (neck_r, body + shoulder), (neck_r, body + shoulder + neck),
               (neck_r * 1.15, body + shoulder + neck + 0.01)]
    return [revolve(profile, 20)]


def cup(rng):
    r = U(rng, 0.04, 0.07)
    h = U(rng, 0.07, 0.14)
    taper = U(rng, 0.7, 1.0)
    wall = U(rng, 0.004, 0.01)
    # Outer wall up, rim, inner wall down to the inner floor: an open vessel.
    profile = [(r * taper, 0.0), (r, h), (r - wall, h), ((r - wall) * taper, wall), (0.0, wall)]
    parts = [revolve(profile, 24)]
    if rng.random() < 0.8:
        hr = h * U(rng, 0.25, 0.35)
        handle = torus(hr, U(rng, 0.005, 0.01), arc=np.pi, segments=10, tube_segments=6)
        handle = place(handle, np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]]),
                       [r * (1 + taper) / 2 - 0.003, 0.0, h / 2])
        parts.append(handle)
    return parts


def bookshelf(rng):
    w, d, h = U(rng, 0.5, 1.2), U(rng, 0.25, 0.4), U(rng, 0.8, 2.0)
    t = U(rng, 0.015, 0.03)
    parts = [box([-w / 2 + t / 2, 0, h / 2], [t, d, h]), box([w / 2 - t / 2, 0, h / 2], [t, d, h]),
             box([0, 0, h - t / 2], [w, d, t]), box([0, 0, t / 2 + 0.05], [w, d, t])]
    if rng.random() < 0.7:
        parts.append(box([0, -d / 2 + t / 4, h / 2], [w, t / 2, h]))
    n_shelves = int(rng.integers(2, 7))
    levels = np.linspace(0.05, h, n_shelves + 1)
    for z in levels[1:-1]:
        parts.append(box([0, 0, z], [w - 2 * t, d, t]))
    for z0, z1 in zip(levels[:-1], levels[1:]):
        x = -w / 2 + t
        while rng.random() < 0.75:
            bw = U(rng, 0.02, 0.06)
            if x + bw > w / 2 - t:
                break
            bh = (z1 - z0 - t) * U(rng, 0.5, 0.9)
            parts.append(box([x + bw / 2, 0, z0 + t / 2 + bh / 2], [bw, d * 0.8, bh]))
            x += bw + U(rng, 0.0, 0.05)
    return parts


def sofa(rng):
    w, d = U(rng, 1.4, 2.4), U(rng, 0.75, 1.0)
    seat_z = U(rng, 0.35, 0.48)
    foot = U(rng, 0.03, 0.12)
    parts = [box([0, 0, (foot + seat_z) / 2], [w, d, seat_z - foot])]
    parts += _legs(rng, w / 2, d / 2, foot, 0.05, rng.random() < 0.5)
    back_h, back_t = U(rng, 0.3, 0.55), U(rng, 0.12, 0.25)
    parts.append(box([0, -d / 2 + back_t / 2, seat_z + back_h / 2], [w, back_t, back_h]))
    if rng.random() < 0.85:
        arm_h, arm_w = U(rng, 0.1, 0.3), U(rng, 0.08, 0.2)
        for x in (-w / 2 + arm_w / 2, w / 2 - arm_w / 2):
            parts.append(box([x, 0, (foot + seat_z + arm_h) / 2], [arm_w, d, seat_z + arm_h - foot]))
    n_cushions = int(rng.integers(1, 4))
    cw = (w - 0.4) / n_cushions
    for j in range(n_cushions):
        parts.append(box([-w / 2 + 0.2 + (j + 0.5) * cw, back_t / 2, seat_z + 0.05],
                         [cw * 0.95, d - back_t, 0.1]))
    return parts


def monitor(rng):
    w, h = U(rng, 0.45, 0.8), U(rng, 0.3, 0.5)
    depth = U(rng, 0.015, 0.06)
    neck_h = U(rng, 0.05, 0.2)
    base_w = U(rng, 0.15, 0.3)
    parts = [box([0, 0, 0.01], [base_w, base_w * 0.7, 0.02]),
             box([0, -0.03, neck_h / 2 + 0.02], [0.05, 0.03, neck_h + 0.04]),
             box([0, 0, neck_h + h / 2 + 0.02], [w, depth, h])]
    if rng.random() < 0.35:  # a deep CRT-style back
        parts.append(box([0, -depth / 2 - h * 0.3, neck_h + h / 2], [w * 0.7, h * 0.6, h * 0.7]))
    return parts


def airplane(rng):
    length = U(rng, 1.5, 3.0)
    r = length * U(rng, 0.04, 0.07)
    prof = [(0.0, 0.0), (r * 0.6, length * 0.05), (r, length * 0.2), (r, length * 0.75),
            (r * 0.4, length)]
    body = place(revolve(prof, 14), np.array([[0, 0, 1], [0, 1, 0], [-1, 0, 0]]),
                 [-length / 2, 0, 0])
    parts = [body]
    span = length * U(rng, 0.7, 1.2)
    chord = length * U(rng, 0.1, 0.2)
    sweep = U(rng, 0.0, 0.5)
    wing_x = U(rng, -0.1, 0.15) * length
    for s in (-1, 1):
        wing = box([0, 0, 0], [chord, span / 2, 0.02 * length])
        shear = np.array([[1, -s * sweep, 0], [0, 1, 0], [0, 0, 1]])
        parts.append(place(wing, shear, [wing_x, s * (span / 4 + r * 0.5), -r * 0.3]))
    tail_span = span * U(rng, 0.25, 0.4)
    parts.append(box([length * 0.42, 0, 0], [chord * 0.6, tail_span, 0.015 * length]))
    fin_h = length * U(rng, 0.1, 0.2)
    parts.append(box([length * 0.42, 0, r + fin_h / 2], [chord * 0.7, 0.015 * length, fin_h]))
    for k in range(int(rng.choice([0, 1, 2]))):
        for s in (-1, 1):
            y = s * span * (0.15 + 0.12 * k)
            parts.append(cylinder([wing_x - chord, y, -r], [wing_x, y, -r], r * 0.35, 10))
    return parts


CLASSES = {"airplane": airplane, "bed": bed, "bookshelf": bookshelf, "bottle": bottle,
           "chair": chair, "cup": cup, "lamp": lamp, "monitor": monitor, "sofa": sofa,
           "table": table}


def make_object(name, rng, deform=True):
    """One random object of class ``name`` as a single mesh (z up, random heading).

    Parameters
    ----------
    name : str
        A key of :data:`CLASSES`.
    rng : numpy.random.Generator
    deform : bool
        Apply the random stretch, shear, jitter and heading.
    """
    mesh = Mesh.concatenate(CLASSES[name](rng))
    if not deform:
        return mesh
    v = mesh.vertices
    stretch = np.diag(rng.uniform(0.85, 1.15, size=3))
    shear = np.eye(3)
    shear[0, 1], shear[1, 0], shear[0, 2] = rng.uniform(-0.08, 0.08, size=3)
    size = np.ptp(v, axis=0).max()
    v = v @ (shear @ stretch).T + rng.normal(scale=0.003 * size, size=v.shape)
    v = v @ rotation_z(rng.uniform(0, 2 * np.pi)).T
    return Mesh(v, mesh.faces)


def generate_tree(root, n_train, n_test, seed=0, classes=None, fused_every=30):
    """Write a ModelNet-style tree of synthetic OFF meshes.

    Parameters
    ----------
    root : str
        Output directory (created).
    n_train, n_test : int
        Objects per class in each split.
    seed : int
    classes : list of str, optional
        Subset of :data:`CLASSES` (default all ten).
    fused_every : int
        Every this many files (on average) uses the fused ``OFF<nv> ...`` header.

    Returns
    -------
    int
        Number of files written.
    """
    names = sorted(CLASSES) if classes is None else list(classes)
    unknown = set(names) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown shape classes {sorted(unknown)}; known: {sorted(CLASSES)}")
    count = 0
    for ci, name in enumerate(sorted(CLASSES)):
        if name not in names:
            continue
        for si, (split, n) in enumerate((("train", n_train), ("test", n_test))):
            out = os.path.join(root, name, split)
            os.makedirs(out, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, ci, si, i])
                mesh = make_object(name, rng)
                fused = fused_every > 0 and rng.random() < 1.0 / fused_every
                write_off(os.path.join(out, f"{name}_{i + 1:04d}.off"), mesh, fused_header=fused)
                count += 1
    return count
