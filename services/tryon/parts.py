"""Splitting a garment cut-out into the parts that warp separately.

A top is a torso panel plus one sleeve per side. The panel is the region between the side
seams, i.e. inside the polygon shoulder → armpit → hem on each side, extended upwards to
hold the collar; whatever of the garment lies outside it on one side is that side's sleeve.
The parts overlap by a couple of pixels so no seam opens when they are warped apart.
"""

from __future__ import annotations

import cv2
import numpy as np

OVERLAP_PX = 2


def _polygon_mask(shape: tuple[int, int], pts: list[np.ndarray]) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(np.array(pts)).astype(np.int32)], 1, cv2.LINE_8)
    return m.astype(np.float32)


def split_top(mask: np.ndarray, lmk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Part alphas of a top, dress or jacket.

    Args:
        mask: garment alpha (float 0..1) of the cut-out.
        lmk: garment landmarks; sleeves need ``shoulder_*``, ``armpit_*`` and ``hem_*``.

    Returns:
        ``{"torso": alpha, "sleeve_l": alpha, "sleeve_r": alpha}`` (sleeves absent for a
        sleeveless top).
    """
    h, w = mask.shape
    g = {k: np.asarray(v, np.float64) for k, v in lmk.items()}
    has_sleeves = "cuff_l_top" in g and "cuff_r_top" in g
    if not has_sleeves:
        return {"torso": mask.astype(np.float32)}
    sl, sr, al, ar, hl, hr = (
        g[k] for k in ("shoulder_l", "shoulder_r", "armpit_l", "armpit_r", "hem_l", "hem_r")
    )

    def extend(a: np.ndarray, b: np.ndarray, y: float) -> np.ndarray:
        """Point on line a→b (continued) at height y."""
        if abs(b[1] - a[1]) < 1e-6:
            return np.array([b[0], y])
        t = (y - a[1]) / (b[1] - a[1])
        return a + t * (b - a)

    bottom = float(h + 2)
    top = -2.0
    poly = [
        np.array([sl[0], top]),
        sl,
        al,
        extend(al, hl, bottom),
        extend(ar, hr, bottom),
        ar,
        sr,
        np.array([sr[0], top]),
    ]
    inside = _polygon_mask((h, w), poly)
    k = np.ones((2 * OVERLAP_PX + 1, 2 * OVERLAP_PX + 1), np.uint8)
    torso_zone = cv2.dilate(inside, k)
    # Grow each sleeve into the torso only where it touches garment pixels of the sleeve
    # itself, so no sliver of the torso's side seam travels with the sleeve.
    sleeve_core = ((mask > 0.5) & (inside < 0.5)).astype(np.uint8)
    outside = cv2.dilate(sleeve_core, k).astype(np.float32)
    centre_x = (sl[0] + sr[0]) / 2
    left = np.zeros((h, w), np.float32)
    left[:, : int(round(centre_x))] = 1.0
    return {
        "torso": mask * torso_zone,
        "sleeve_l": mask * outside * left,
        "sleeve_r": mask * outside * (1.0 - left),
    }


def bottom_hips(mask: np.ndarray, lmk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outer edges of a pair of trousers (or shorts) at the crotch row: ``hip_l`` and
    ``hip_r``, where the waist panel meets the legs."""
    y = int(round(float(lmk["crotch"][1])))
    y = min(max(y, 0), mask.shape[0] - 1)
    xs = np.flatnonzero(mask[y] > 0.5)
    if xs.size == 0:
        xs = np.array([lmk["waist_l"][0], lmk["waist_r"][0]])
    return {
        "hip_l": np.array([float(xs[0]), float(y)]),
        "hip_r": np.array([float(xs[-1]), float(y)]),
    }


def split_bottom(mask: np.ndarray, lmk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Part alphas of a bottom.

    Trousers and shorts: the waist panel (waistband down to the crotch row) and one leg per
    side below it, split at the crotch; the legs reach a few pixels up into the panel so no
    seam opens. A skirt is one panel.

    Returns:
        ``{"waist": alpha, "leg_l": alpha, "leg_r": alpha}`` or ``{"skirt": alpha}``.
    """
    if "crotch" not in lmk:
        return {"skirt": mask.astype(np.float32)}
    h, w = mask.shape
    cx, cy = (float(v) for v in lmk["crotch"])
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    above = (rows <= cy + OVERLAP_PX).astype(np.float32)
    below = (rows >= cy - 2 * OVERLAP_PX).astype(np.float32)
    left = (cols < cx).astype(np.float32)
    m = mask.astype(np.float32)
    return {
        "waist": m * above,
        "leg_l": m * below * left,
        "leg_r": m * below * (1.0 - left),
    }


BACK_NECK_DIP = 0.2  # the back neckline dips this fraction of the front neckline's depth


def inside_back(mask: np.ndarray, lmk: dict[str, np.ndarray]) -> np.ndarray:
    """Where the inside of the back of the collar shows through the front neckline.

    A flat-lay shows the front; the back neckline sits higher (it dips about a fifth as
    deep as the front one). Between that shallow curve and the front neckline, inside the
    neck opening, the wearer would see the garment's inner back: this region, in cut-out
    pixels (the part of the neck hole below the back neckline). Empty without neck points.
    """
    if not all(k in lmk for k in ("neck_l", "neck_r", "neck_front")):
        return np.zeros(mask.shape, np.float32)
    nl, nr, nf = (np.asarray(lmk[k], np.float64) for k in ("neck_l", "neck_r", "neck_front"))
    top = (nl[1] + nr[1]) / 2
    depth = nf[1] - top
    if depth <= 2 or nr[0] - nl[0] <= 4:
        return np.zeros(mask.shape, np.float32)
    h, w = mask.shape
    xs = np.arange(w, dtype=np.float64)
    t = np.clip((xs - nl[0]) / (nr[0] - nl[0]), 0, 1)
    back = top + BACK_NECK_DIP * depth * np.sin(np.pi * t)  # a shallow arc, ends at the seams
    rows = np.arange(h, dtype=np.float64)[:, None]
    inside = (rows >= back[None, :]) & (rows <= nf[1] + 1) & ((xs > nl[0]) & (xs < nr[0]))[None]
    return (inside & (mask < 0.5)).astype(np.float32)
