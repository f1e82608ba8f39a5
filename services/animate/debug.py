"""Debug drawings: skeletons over frames, contact sheets of clips and motions."""

from __future__ import annotations

import cv2
import numpy as np

# Bones drawn for a 33-keypoint pose (MediaPipe topology).
BONES = (
    (11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24),
    (23, 25), (25, 27), (24, 26), (26, 28), (27, 29), (29, 31), (27, 31), (28, 30),
    (30, 32), (28, 32), (15, 19), (16, 20), (0, 7), (0, 8), (9, 10),
)  # fmt: skip


def draw_pose(
    img: np.ndarray,
    pts: np.ndarray,
    vis: np.ndarray | None = None,
    colour=(255, 60, 60),
    thickness: int = 2,
) -> np.ndarray:
    """Draw a 33-point pose (pixels) on a copy of ``img``; points with ``vis < 0.5`` are
    skipped. Left side (the person's) in ``colour``, right side in its complement."""
    out = np.ascontiguousarray(img.copy())
    vis = np.ones(len(pts)) if vis is None else vis
    for a, b in BONES:
        if vis[a] < 0.5 or vis[b] < 0.5:
            continue
        c = colour if (a % 2 == 1 and a > 10) else tuple(255 - v for v in colour)
        cv2.line(
            out,
            tuple(int(v) for v in np.round(pts[a])),
            tuple(int(v) for v in np.round(pts[b])),
            c,
            thickness,
            cv2.LINE_AA,
        )
    for i, p in enumerate(pts):
        if vis[i] >= 0.5:
            cv2.circle(out, tuple(int(v) for v in np.round(p)), thickness + 1, colour, -1)
    return out


def sheet(tiles: list[np.ndarray], cols: int, cell: int = 200) -> np.ndarray:
    """Tiles fitted into ``cell``-high cells, ``cols`` per row, on white."""
    rows = (len(tiles) + cols - 1) // cols
    widths = [int(round(t.shape[1] * cell / t.shape[0])) for t in tiles]
    cw = max(widths) if widths else cell
    out = np.full((rows * (cell + 4) + 4, cols * (cw + 4) + 4, 3), 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        small = cv2.resize(t[..., :3], (widths[i], cell), interpolation=cv2.INTER_AREA)
        y, x = 4 + r * (cell + 4), 4 + c * (cw + 4)
        out[y : y + cell, x : x + widths[i]] = small
    return out
