"""The ``geometric`` try-on backend: part-based thin-plate-spline warps driven by garment
landmarks and body measurements, then layered compositing. Runs on a CPU with nothing
but the installed packages."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from services.common.analysis import person as P
from services.tryon import fit
from services.tryon.composite import Layer
from services.tryon.parts import bottom_hips, inside_back, split_bottom, split_top
from services.tryon.warp import WarpedPart, warp_part

INSIDE_SHADE = 0.62  # the inside of a garment is in its own shadow
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
    names = ["neck_l", "neck_r", "neck_front", "shoulder_l", "shoulder_r",
             "armpit_l", "armpit_r", "hem_l", "hem_r"]  # fmt: skip
    src = {k: np.asarray(v, np.float64) for k, v in lmk.items()}
    # Side seams and hem stay straight: their midpoints are control points too.
    return _pairs(src, targets, names, [("armpit_l", "hem_l"), ("armpit_r", "hem_r"),
                                        ("hem_l", "hem_r")])  # fmt: skip


def dress_top(
    pa: P.PersonAnalysis,
    rgba: np.ndarray,
    mask: np.ndarray,
    lmk: dict[str, np.ndarray],
    sleeve: str | None = None,
) -> tuple[list[Layer], list[PartWarp]]:
    """Warp a top (or dress, or jacket) onto the person.

    Args:
        pa: person analysis of the photo.
        rgba: garment cut-out.
        mask: garment alpha of the cut-out (float 0..1).
        lmk: garment landmarks in cut-out pixels.
        sleeve: the garment's sleeve class; "long" sleeves end at the wrists.

    Returns:
        The layers to composite and the per-part warps (for debug images).
    """
    size = pa.size
    targets, scale = fit.top_targets(pa, lmk)
    parts = split_top(mask, lmk)
    src, dst = _torso_points(lmk, targets)
    layers, warps = [], []
    torso = warp_part(rgba, parts["torso"], src, dst, size)
    # A sleeveless top's back is cut low under its straps: no inner back shows.
    inner = inside_back(mask, lmk) if sleeve != "sleeveless" else None
    if inner is not None and inner.any():
        # The inner back of the collar: the garment's own colour, in the shade of the inside.
        band = (mask > 0.5) & (cv2.dilate(inner, np.ones((9, 9), np.uint8)) > 0)
        colour = (
            np.median(rgba[band][:, :3], axis=0) if band.any() else rgba[mask > 0.5][:, :3].mean(0)
        )
        lining = np.zeros_like(rgba)
        lining[..., :3] = np.clip(colour * INSIDE_SHADE, 0, 255).astype(np.uint8)
        lining[..., 3] = 255
        back = warp_part(lining, inner, src, dst, size)
        layers.append(Layer("collar_back", back.rgb, back.alpha, "collar"))
    layers.append(Layer("torso", torso.rgb, torso.alpha, "torso"))
    warps.append(PartWarp("torso", src, dst, torso))
    for side in ("l", "r"):
        key = f"sleeve_{side}"
        if key not in parts or parts[key].max() <= 0:
            continue
        _names, s_src, s_dst = fit.sleeve_targets(
            pa, lmk, targets, scale, side, to_wrist=sleeve == "long"
        )
        sleeve = warp_part(rgba, parts[key], s_src, s_dst, size)
        layers.append(Layer(key, sleeve.rgb, sleeve.alpha, "sleeve"))
        warps.append(PartWarp(key, s_src, s_dst, sleeve))
    return layers, warps


def _pairs(src: dict, dst: dict, names: list[str], mids: list[tuple[str, str]]):
    """Control points for the named points plus the midpoints of the given pairs (seams
    stay straight between their ends)."""
    names = [n for n in names if n in src and n in dst]
    s = [src[n] for n in names]
    d = [dst[n] for n in names]
    for a, b in mids:
        if a in src and b in src and a in dst and b in dst:
            s.append((src[a] + src[b]) / 2)
            d.append((dst[a] + dst[b]) / 2)
    return np.array(s), np.array(d)


def dress_bottom(
    pa: P.PersonAnalysis,
    rgba: np.ndarray,
    mask: np.ndarray,
    lmk: dict[str, np.ndarray],
    length: str,
) -> tuple[list[Layer], list[PartWarp]]:
    """Warp trousers, shorts or a skirt onto the person: the waist panel and each leg (or
    the skirt panel) with its own thin-plate spline.

    Args:
        pa: person analysis (hips in frame).
        rgba: garment cut-out; mask: its alpha; lmk: its landmarks (cut-out pixels).
        length: the garment's length class.
    """
    size = pa.size
    lmk = dict(lmk)
    if "crotch" in lmk:
        lmk.update(bottom_hips(mask, lmk))
    dst, src, _scale = fit.bottom_targets(pa, lmk, length)
    parts = split_bottom(mask, lmk)
    layers, warps = [], []
    if "skirt" in parts:
        plan = {
            "skirt": (
                ["waist_l", "waist_r", "side_l", "side_r", "hem_l", "hem_r"],
                [("waist_l", "waist_r"), ("hem_l", "hem_r"), ("waist_l", "side_l"),
                 ("waist_r", "side_r"), ("side_l", "hem_l"), ("side_r", "hem_r")],
            )
        }  # fmt: skip
    else:
        plan = {
            "waist": (
                ["waist_l", "waist_r", "hip_l", "hip_r", "crotch"],
                [("waist_l", "waist_r"), ("hip_l", "crotch"), ("crotch", "hip_r"),
                 ("waist_l", "hip_l"), ("waist_r", "hip_r")],
            )
        }  # fmt: skip
        for s in ("l", "r"):
            plan[f"leg_{s}"] = (
                [f"waist_{s}", f"hip_{s}", "crotch", f"knee_{s}_out", f"knee_{s}_in",
                 f"leg_{s}_out", f"leg_{s}_in"],
                [(f"hip_{s}", "crotch"), (f"leg_{s}_out", f"leg_{s}_in"),
                 (f"hip_{s}", f"knee_{s}_out"), ("crotch", f"knee_{s}_in"),
                 (f"knee_{s}_out", f"leg_{s}_out"), (f"knee_{s}_in", f"leg_{s}_in")],
            )  # fmt: skip
    for name, (names, mids) in plan.items():
        s_pts, d_pts = _pairs(src, dst, names, mids)
        part = warp_part(rgba, parts[name], s_pts, d_pts, size)
        layers.append(Layer(name, part.rgb, part.alpha, "lower"))
        warps.append(PartWarp(name, s_pts, d_pts, part))
    return layers, warps
