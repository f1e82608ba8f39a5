"""The last check before a still is returned: does each garment sit where its category
belongs on this body?

A garment described wrongly (a hint that contradicts the packshot, an outline read the wrong
way) is warped onto the wrong part of the body or stretched out of shape, and the still
looks plausible enough to be returned as if all went well. This check reads only the
warped garment and the pose, so it catches such a still whatever went wrong before it:

* **band**: nearly all of a garment's body panel lies in its category's vertical band: a
  top from a little above the shoulders to the upper thighs, a bottom from a little above
  the waist down, a dress from the shoulders down;
* **sleeves**: each sleeve lies along the arm it was fitted to (a sleeve flung across the
  body by a bent arm is a torn still);
* **reach**: the panel covers the body where its category always does, across the middle
  of the body: a top the chest, a bottom the hips, a dress both the chest and the upper
  thighs (a crop top dressed as a dress ends at the ribs).

Rows out of the photo's frame (a half-body photo) are not asked for.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.common.analysis import person as P
from services.common.errors import InvalidInputError
from services.tryon.fit import arm_path

# Share of a panel's alpha mass that must lie within its band.
MIN_IN_BAND = 0.85
# Band edges in torso lengths (shoulder line to hip line) from those lines. A collar rises a
# little above the shoulders; a long top or a coat reaches the upper thigh; a waistband sits
# a little above the hip joints.
_TOP_ABOVE_SHOULDERS = 0.35
_TOP_BELOW_HIPS = 1.0
_BOTTOM_ABOVE_HIPS = 0.45
# Where each category always covers the middle of the body: the bust, under half the torso
# below the shoulder line (a deep neckline or a cami's V ends above it, the shortest crop
# top below it); the seat, a little below the hip joints (low-rise shorts start at them);
# the upper thigh, a quarter torso below them.
_CHEST = 0.45
_SEAT = 0.15
_THIGH = 0.25
_UPPER = ("top", "dress", "outerwear")


def body_lines(pa: P.PersonAnalysis) -> tuple[float, float, float]:
    """``(shoulder_y, hip_y, centre_x)`` of the person, from the pose (the hips estimated
    when out of frame)."""
    lm = pa.landmarks
    shoulder_y = float((lm[P.L_SHOULDER, 1] + lm[P.R_SHOULDER, 1]) / 2)
    hip_y = float((lm[P.L_HIP, 1] + lm[P.R_HIP, 1]) / 2)
    centre_x = float(
        (lm[P.L_SHOULDER, 0] + lm[P.R_SHOULDER, 0] + lm[P.L_HIP, 0] + lm[P.R_HIP, 0]) / 4
    )
    return shoulder_y, hip_y, centre_x


def placement(pa: P.PersonAnalysis, category: str, panel: np.ndarray) -> dict[str, float]:
    """Measures of one garment's warped body panel (not its sleeves, which follow the arms
    anywhere).

    Args:
        pa: the person.
        category: the garment's category.
        panel: ``H x W`` alpha of the garment's body panel (torso panel, or the bottom's
            waist panel and legs) in the photo.

    Returns:
        ``in_band`` (share of the alpha inside the band) and, for each place the category
        must cover (``chest``, ``hips``, ``thigh``), the garment's alpha there (NaN where
        that place is out of the frame).
    """
    h, w = panel.shape
    shoulder_y, hip_y, cx = body_lines(pa)
    torso = max(hip_y - shoulder_y, 1.0)
    if category in _UPPER:
        lo = shoulder_y - _TOP_ABOVE_SHOULDERS * torso
        hi = hip_y + _TOP_BELOW_HIPS * torso if category != "dress" else float(h)
    else:
        lo, hi = hip_y - _BOTTOM_ABOVE_HIPS * torso, float(h)
    rows = np.arange(h, dtype=np.float64)[:, None]
    mass = float(panel.sum())
    inside = float((panel * ((rows >= lo) & (rows <= hi))).sum())
    out = {"in_band": inside / mass if mass > 0 else 0.0}
    places = {
        "top": {"chest": shoulder_y + _CHEST * torso},
        "outerwear": {"chest": shoulder_y + _CHEST * torso},
        "bottom": {"hips": hip_y + _SEAT * torso},
        "dress": {"chest": shoulder_y + _CHEST * torso, "thigh": hip_y + _THIGH * torso},
    }[category]
    # A short run of rows across the middle of the body there, not one point: a deep
    # neckline or a print must not decide it alone.
    lm = pa.landmarks
    shoulders = abs(float(lm[P.L_SHOULDER, 0] - lm[P.R_SHOULDER, 0]))
    hips = abs(float(lm[P.L_HIP, 0] - lm[P.R_HIP, 0]))
    # Across the shoulders (an open front, a zip left open, is no failure to cover).
    spans = {"chest": 1.0 * shoulders, "hips": 0.8 * hips, "thigh": 0.8 * hips}
    rows_half = max(2, int(0.04 * torso))
    for name, y in places.items():
        yi = int(round(y))
        if yi < 0 or yi >= h:
            out[name] = float("nan")
            continue
        half = max(2, int(spans[name] / 2))
        x0, x1 = max(0, int(cx) - half), min(w, int(cx) + half + 1)
        patch = panel[max(0, yi - rows_half) : yi + rows_half + 1, x0:x1]
        out[name] = float(patch.mean())
    return out


# A sleeve lies within this many shoulder widths of its arm's bones (a loose long sleeve
# hangs about a third of one from the arm's centre line).
_SLEEVE_REACH = 0.5
# Share of a sleeve's alpha that must lie that close to its arm.
MIN_ON_ARM = 0.8


def sleeve_on_arm(pa: P.PersonAnalysis, side: str, sleeve: np.ndarray) -> float:
    """Share of a warped sleeve's alpha within reach of the arm it was fitted to (the arm
    the warp used: :func:`services.tryon.fit.arm_path`, ``side`` ``"l"`` image-left)."""
    h, w = sleeve.shape
    bones = np.zeros((h, w), np.uint8)
    pts = np.round(np.asarray(arm_path(pa, side))[:, :2]).astype(np.int32)
    cv2.polylines(bones, [pts.reshape(-1, 1, 2)], False, 1, 1)
    if not bones.any():  # the whole arm out of the frame: nothing to compare with
        return 1.0
    dist = cv2.distanceTransform((bones == 0).astype(np.uint8), cv2.DIST_L2, 3)
    near = dist <= _SLEEVE_REACH * max(pa.measurements.shoulder_width, 1.0)
    mass = float(sleeve.sum())
    return float((sleeve * near).sum()) / mass if mass > 0 else 1.0


def check_sleeves(pa: P.PersonAnalysis, sleeves: dict[str, np.ndarray], index: int) -> None:
    """Refuse a still whose garment ``index`` has a sleeve warped away from its arm.

    Raises:
        InvalidInputError: GARMENT_FIT_FAILED (field ``garments[index]``).
    """
    for side, alpha in sleeves.items():
        share = sleeve_on_arm(pa, side, alpha)
        if share < MIN_ON_ARM:
            raise InvalidInputError(
                "GARMENT_FIT_FAILED",
                f"a sleeve could not be fitted to its arm: only {100 * share:.0f}% of it lies "
                "along the arm. Check the sleeve hint (or send one if none was sent)",
                field=f"garments[{index}]",
            )


def check_placement(pa: P.PersonAnalysis, category: str, panel: np.ndarray, index: int) -> None:
    """Refuse a still whose garment ``index`` is not where ``category`` belongs.

    Raises:
        InvalidInputError: GARMENT_FIT_FAILED (field ``garments[index]``) naming what is
            wrong and the hint to check.
    """
    m = placement(pa, category, panel)
    problems = []
    if m["in_band"] < MIN_IN_BAND:
        problems.append(
            f"only {100 * m['in_band']:.0f}% of it lies where a {category} belongs on this body"
        )
    for place in ("chest", "hips", "thigh"):
        if place in m and not np.isnan(m[place]) and m[place] < 0.5:
            problems.append(f"it does not cover the {place}, which a {category} always does")
    if problems:
        raise InvalidInputError(
            "GARMENT_FIT_FAILED",
            f"the garment could not be fitted as a {category}: {'; '.join(problems)}. Check "
            "the category, sleeve and length hints (or send them if none were sent)",
            field=f"garments[{index}]",
        )
