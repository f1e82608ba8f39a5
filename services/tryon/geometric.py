"""The ``geometric`` try-on backend: part-based thin-plate-spline warps driven by garment
landmarks and body measurements, then layered compositing. Runs on a CPU with nothing
but the installed packages."""

from __future__ import annotations

import dataclasses

import numpy as np

from services.common.analysis import person as P
from services.tryon import fit
from services.tryon.composite import Layer
from services.tryon.parts import split_top
from services.tryon.warp import WarpedPart, warp_part

BACKEND = "geometric"
VERSION = "geometric/0.1.0"


@dataclasses.dataclass
class PartWarp:
    """One part's warp, kept for debug images (control points and the backward map)."""

    name: str
    src: np.ndarray
    dst: np.ndarray
    warped: WarpedPart


def _torso_points(lmk: dict[str, np.ndarray], targets: dict[str, np.ndarray]):
    names = [
        n
        for n in (
            "neck_l",
            "neck_r",
            "neck_front",
            "shoulder_l",
            "shoulder_r",
            "armpit_l",
            "armpit_r",
            "hem_l",
            "hem_r",
        )
        if n in lmk and n in targets
    ]
    src = [np.asarray(lmk[n], np.float64) for n in names]
    dst = [targets[n] for n in names]
    # Side seams and hem stay straight: add their midpoints.
    for a, b in (("armpit_l", "hem_l"), ("armpit_r", "hem_r"), ("hem_l", "hem_r")):
        if a in names and b in names:
            src.append((np.asarray(lmk[a]) + np.asarray(lmk[b])) / 2)
            dst.append((targets[a] + targets[b]) / 2)
    return np.array(src), np.array(dst)


def dress_top(
    pa: P.PersonAnalysis, rgba: np.ndarray, mask: np.ndarray, lmk: dict[str, np.ndarray]
) -> tuple[list[Layer], list[PartWarp]]:
    """Warp a top (or dress, or jacket) onto the person.

    Args:
        pa: person analysis of the photo.
        rgba: garment cut-out.
        mask: garment alpha of the cut-out (float 0..1).
        lmk: garment landmarks in cut-out pixels.

    Returns:
        The layers to composite and the per-part warps (for debug images).
    """
    size = pa.size
    targets, scale = fit.top_targets(pa, lmk)
    parts = split_top(mask, lmk)
    src, dst = _torso_points(lmk, targets)
    layers, warps = [], []
    torso = warp_part(rgba, parts["torso"], src, dst, size)
    layers.append(Layer("torso", torso.rgb, torso.alpha, "torso"))
    warps.append(PartWarp("torso", src, dst, torso))
    for side in ("l", "r"):
        key = f"sleeve_{side}"
        if key not in parts or parts[key].max() <= 0:
            continue
        _names, s_src, s_dst = fit.sleeve_targets(pa, lmk, targets, scale, side)
        sleeve = warp_part(rgba, parts[key], s_src, s_dst, size)
        layers.append(Layer(key, sleeve.rgb, sleeve.alpha, "sleeve"))
        warps.append(PartWarp(key, s_src, s_dst, sleeve))
    return layers, warps
