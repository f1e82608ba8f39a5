"""Cut-out meshes, skinning and as-rigid-as-possible deformation.

Each body layer (torso and head, each arm, each leg) is a triangle mesh over its cut-out
(contour points plus interior samples, Delaunay-triangulated, triangles outside the cut-out
dropped). Vertices are bound to the layer's bones with linear blend skinning; the skinned
positions are then refined as-rigid-as-possible (Sorkine & Alexa 2007, "As-Rigid-As-Possible
Surface Modeling", in 2D as in Igarashi et al. 2005): alternate per-vertex best rotations
(local step) with one sparse linear solve (global step). The global matrix depends only on
the rest mesh, so it is factorised once per clip and each frame costs two triangular solves
per iteration.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu
from scipy.spatial import Delaunay

ARAP_ITERATIONS = 3
ARAP_PULL = 2.0  # weight of the pull towards the skinned positions (lambda)
PIN_PULL = 1.0e4  # a pinned vertex: the pull outweighs every edge term by far


@dataclasses.dataclass
class Bone:
    """A skinning bone: a segment (or, for the torso, a polygon) in rest pixels."""

    name: str
    a: np.ndarray
    b: np.ndarray
    polygon: np.ndarray | None = None


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def _poly_dist(p: np.ndarray, poly: np.ndarray) -> np.ndarray:
    d = np.min([_seg_dist(p, poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly))], 0)
    inside = np.array(
        [
            cv2.pointPolygonTest(poly.astype(np.float32), (float(x), float(y)), False) >= 0
            for x, y in p
        ]
    )
    return np.where(inside, 0.0, d)


def build_mesh(
    mask: np.ndarray, spacing: float, extra: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate a cut-out: contour points every ``spacing`` px (half that on tight
    curves), an interior hexagonal grid, Delaunay, and only triangles whose centroid and
    edge midpoints lie in the mask.

    Args:
        mask: the cut-out.
        spacing: vertex spacing in pixels.
        extra: ``K x 2`` further vertices (where a first mesh left pixels of the cut-out
            uncovered); triangles touching them are kept even when thin.

    Returns:
        ``(vertices V x 2 float64, triangles F x 3 int32)``, counter-clockwise in image
        coordinates (positive signed area with y down).
    """
    m = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    pts = []
    for c in contours:
        c = c[:, 0, :].astype(np.float64)
        if len(c) < 8:
            continue
        step = max(1, int(spacing * 0.5))
        pts.append(c[::step])
    h, w = mask.shape
    dy = spacing * np.sqrt(3) / 2
    ys = np.arange(spacing / 2, h, dy)
    grid = []
    for k, y in enumerate(ys):
        xs = np.arange(spacing / 2 + (spacing / 2 if k % 2 else 0), w, spacing)
        grid.append(np.stack([xs, np.full_like(xs, y)], 1))
    grid = np.concatenate(grid)
    # Interior samples away from the contour (contour points handle the edge).
    dist = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    gi = np.clip(grid.astype(int), 0, [w - 1, h - 1])
    grid = grid[dist[gi[:, 1], gi[:, 0]] > spacing * 0.45]
    pts.append(grid)
    if extra is not None and len(extra):
        pts.append(np.asarray(extra, np.float64))
    v = np.concatenate(pts) if pts else np.zeros((0, 2))
    v = np.unique(np.round(v, 2), axis=0)
    # A cut-out that the frame edge cuts: its contour runs along the last pixel row or
    # column, whose pixel centres lie half a pixel outside the triangles. Push those
    # vertices past the edge so the mesh covers every pixel up to the border.
    for axis, size in ((0, w), (1, h)):
        v[v[:, axis] <= 0.5, axis] = -2.0
        v[v[:, axis] >= size - 1.5, axis] = size + 1.0
    # A cut-out that fills a corner of the frame needs the corner itself, or the last
    # triangle along one edge stops short of the other edge.
    corners = [(x, y, cx, cy) for x, cx in ((0, -2.0), (w - 1, w + 1.0))
               for y, cy in ((0, -2.0), (h - 1, h + 1.0))]  # fmt: skip
    extra_c = [(cx, cy) for x, y, cx, cy in corners if mask[y, x]]
    if extra_c:
        v = np.concatenate([v, np.array(extra_c, np.float64)])
    v = np.unique(v, axis=0)
    if len(v) < 3:
        return v, np.zeros((0, 3), np.int32)
    tri = Delaunay(v).simplices
    inside = np.ones(len(tri), bool)
    # Chords between neighbouring contour points graze the edge: test against a slightly
    # grown mask, or the border loses wedges.
    m = cv2.dilate(m, np.ones((5, 5), np.uint8))
    for wts in ((1 / 3, 1 / 3, 1 / 3), (0.5, 0.5, 0), (0, 0.5, 0.5), (0.5, 0, 0.5)):
        c = sum(wt * v[tri[:, k]] for k, wt in enumerate(wts))
        ci = np.clip(np.round(c).astype(int), 0, [w - 1, h - 1])
        inside &= m[ci[:, 1], ci[:, 0]] > 0
    tri = tri[inside]
    # Slivers between neighbouring contour points fold at the slightest squeeze; they lie
    # in the transparent margin around the cut-out, so dropping them loses nothing.
    a, b, c = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
    area = np.abs(
        0.5
        * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
    )
    longest = np.max(
        [
            np.linalg.norm(b - a, axis=1),
            np.linalg.norm(c - b, axis=1),
            np.linalg.norm(a - c, axis=1),
        ],
        0,
    )
    keep = (area > 0.05 * spacing**2) & (area / np.maximum(longest, 1e-9) ** 2 > 0.08)
    if extra is not None and len(extra):
        added = np.zeros(len(v), bool)
        ev = np.round(np.asarray(extra, np.float64), 2)
        added[np.nonzero((v[:, None, :] == ev[None, :, :]).all(-1).any(1))[0]] = True
        keep |= added[tri].any(axis=1) & (area > 1e-3)
    tri = tri[keep]
    used = np.unique(tri)
    remap = np.full(len(v), -1)
    remap[used] = np.arange(len(used))
    v, tri = v[used], remap[tri]
    area = signed_area(v, tri)
    tri[area < 0] = tri[area < 0][:, [0, 2, 1]]
    return v, tri.astype(np.int32)


def signed_area(v: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Signed area of each triangle (positive: counter-clockwise with y down)."""
    a, b, c = v[tri[:, 0]], v[tri[:, 1]], v[tri[:, 2]]
    return 0.5 * (
        (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    )


def skin_weights(v: np.ndarray, bones: list[Bone], sigma: float) -> np.ndarray:
    """``V x B`` skinning weights: a Gaussian of the distance to each bone (0 inside the
    torso polygon), normalised; near-binary inside a part, blended across joints."""
    d = np.stack(
        [
            _poly_dist(v, b.polygon) if b.polygon is not None else _seg_dist(v, b.a, b.b)
            for b in bones
        ],
        1,
    )
    d = d - d.min(axis=1, keepdims=True)  # relative: stable far from every bone
    w = np.exp(-0.5 * (d / sigma) ** 2)
    return w / w.sum(axis=1, keepdims=True)


class ArapMesh:
    """A rest mesh with its skinning and the ARAP system, factorised once.

    Args:
        vertices: ``V x 2`` rest positions.
        triangles: ``F x 3``.
        weights: ``V x B`` skinning weights.
        frame: ``(height, width)`` of the still. Vertices past its edges (where the frame
            cuts the body) stay on their edge: they follow their bone along it but never
            leave it, so the cut body never comes away from the border.
    """

    def __init__(
        self,
        vertices: np.ndarray,
        triangles: np.ndarray,
        weights: np.ndarray,
        frame: tuple[int, int] | None = None,
    ):
        self.rest = vertices.astype(np.float64)
        self.tri = triangles
        self.weights = weights
        n = len(vertices)
        e = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
        e = np.unique(np.sort(e, axis=1), axis=0)
        self.ei = np.concatenate([e[:, 0], e[:, 1]])  # both directions
        self.ej = np.concatenate([e[:, 1], e[:, 0]])
        self.er = self.rest[self.ei] - self.rest[self.ej]
        ones = np.ones(len(self.ei))
        adj = sp.csr_matrix((ones, (self.ei, self.ej)), shape=(n, n))
        lap = sp.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj
        # Vertices held firmly by one bone are pulled to their skinned place; vertices in
        # the blend zones of joints are left to ARAP, which keeps their triangles' shapes.
        self._mean = sp.diags(1.0 / np.maximum(np.asarray(adj.sum(axis=1)).ravel(), 1)) @ adj
        self.pull = ARAP_PULL * weights.max(axis=1) ** 4 + 1e-3
        self.edge_x = np.zeros(n, bool)
        self.edge_y = np.zeros(n, bool)
        if frame is not None:
            h, w = frame
            self.edge_x = (self.rest[:, 0] < 0) | (self.rest[:, 0] > w - 1)
            self.edge_y = (self.rest[:, 1] < 0) | (self.rest[:, 1] > h - 1)
            self.pull[self.edge_x | self.edge_y] = PIN_PULL
        self._solve = splu((2 * lap + sp.diags(self.pull)).tocsc()).solve

    def skin(self, transforms: np.ndarray) -> np.ndarray:
        """Linear blend skinning: ``transforms`` is ``B x 2 x 3`` (affine per bone)."""
        h = np.concatenate([self.rest, np.ones((len(self.rest), 1))], 1)  # V x 3
        per_bone = np.einsum("bij,vj->vbi", transforms, h)  # V x B x 2
        return np.einsum("vb,vbi->vi", self.weights, per_bone)

    def deform(self, transforms: np.ndarray, iterations: int = ARAP_ITERATIONS) -> np.ndarray:
        """Skinned positions refined as-rigid-as-possible; the rest mesh for identity
        transforms (exactly: the rest positions solve both terms with zero energy)."""
        q = self.skin(transforms)
        p = q
        n = len(self.rest)
        for _ in range(iterations):
            ep = p[self.ei] - p[self.ej]
            dot = np.bincount(self.ei, (self.er * ep).sum(1), n)
            crs = np.bincount(self.ei, self.er[:, 0] * ep[:, 1] - self.er[:, 1] * ep[:, 0], n)
            th = np.arctan2(crs, dot)
            c, s = np.cos(th), np.sin(th)
            # b_i = sum_j (R_i + R_j)(r_i - r_j) + pull_i q_i
            ci, si, cj, sj = c[self.ei], s[self.ei], c[self.ej], s[self.ej]
            rx = (ci + cj) * self.er[:, 0] - (si + sj) * self.er[:, 1]
            ry = (si + sj) * self.er[:, 0] + (ci + cj) * self.er[:, 1]
            bx = np.bincount(self.ei, rx, n) + self.pull * q[:, 0]
            by = np.bincount(self.ei, ry, n) + self.pull * q[:, 1]
            p = self._solve(np.stack([bx, by], 1))
        p[self.edge_x, 0] = self.rest[self.edge_x, 0]
        p[self.edge_y, 1] = self.rest[self.edge_y, 1]
        p = self.untangle(p)
        p[self.edge_x, 0] = self.rest[self.edge_x, 0]
        p[self.edge_y, 1] = self.rest[self.edge_y, 1]
        return p

    def untangle(self, p: np.ndarray, rounds: int = 20) -> np.ndarray:
        """Unfold triangles that a tight bend (an elbow past 90 degrees) folded over: move
        their vertices towards the mean of their neighbours until none is inverted. Rare and
        local, so this costs nothing on most frames."""
        for _ in range(rounds):
            bad = signed_area(p, self.tri) <= 1e-6
            if not bad.any():
                break
            idx = np.unique(self.tri[bad])
            mean = self._mean @ p
            p = p.copy()
            p[idx] = 0.5 * p[idx] + 0.5 * mean[idx]
        return p

    def inverted(self, p: np.ndarray) -> int:
        """Triangles folded over (signed area flipped or collapsed) at positions ``p``."""
        return int((signed_area(p, self.tri) <= 1e-9).sum())


def rigid(pivot0: np.ndarray, pivot1: np.ndarray, angle: float) -> np.ndarray:
    """2 x 3 affine: rotate by ``angle`` about ``pivot0`` and move it to ``pivot1``."""
    c, s = np.cos(angle), np.sin(angle)
    r = np.array([[c, -s], [s, c]])
    return np.concatenate([r, (pivot1 - r @ pivot0)[:, None]], 1)


def affine_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2 x 3 affine taking ``src`` (K x 2) to ``dst``."""
    a = np.concatenate([src, np.ones((len(src), 1))], 1)
    x, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return x.T
