"""What kind of garment a cut-out is, from the structure of its outline.

Garment analysis (:mod:`services.common.analysis.garment`) cuts a packshot out; this module
reads the cut-out's binary mask, upright, and measures what garments are made of:

* **a leg split**: trousers and shorts have two legs, so near the bottom the middle of the
  garment is empty with fabric on both sides, and that gap is open to the hem;
* **the top edge**: a bottom's waistband is a straight edge across its whole width; an
  upper-body garment's top edge is two shoulder lines sloping away from a neckline (or
  straps rising from a cut-away armhole), so it is far from one straight line;
* **sleeves**: the torso's sides are near-straight lines from the armpits to the hem; fabric
  standing out beyond those lines above the hem is sleeve, and how far it reaches from the
  shoulder, in torso widths, says short or long;
* **length against width**: a dress is far longer than its torso is wide, a crop top
  shorter; a bottom's length against its waistband separates shorts, knee length and full
  length.

Every measure is a ratio of lengths of the garment itself (no pixel constants), computed on
the mask scaled to a fixed height. The thresholds come from garment construction, not from
any set of photos: they sit between the proportions of the garment types (see the comments
at each constant), and a measure close to its threshold lowers the confidence so that the
caller can refuse instead of guessing.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

# Masks are measured at this height (width keeps the aspect ratio).
_HEIGHT = 256


@dataclasses.dataclass
class ShapeFeatures:
    """Measures of an upright garment mask. Lengths are in units of the torso width (the
    median width of the run of fabric through the garment's axis over 65-90 % of its
    height: a top's body, a dress's skirt, a bottom's hips or legs together).

    Attributes:
        tilt: degrees the mask was turned to stand its principal axis upright.
        shoulder_depth: how far below the top edge the garment first spans 70 % of its
            upper width, over that width: about 0 for a waistband (full width at once), a
            tenth to a half for shoulders sloping from a neckline or straps.
        leg_split: height of the gap between two legs, open to the hem, over the height.
        length: height over the narrowest torso width between a fifth and three fifths of
            the height (a top's chest or waist, a dress's waist, a bottom's waistband).
        sleeve_excess: the largest width beyond the torso on both sides together, in the
            upper 60 %, over the torso width (sleeves standing out).
        sleeve_reach: distance from the top edge at the torso's side to the farthest point of
            the widest sleeve rows, over the torso width (0 without sleeves).
        sleeve_end: lowest row, over the height, down to which the garment stays wider than
            its torso by a sleeve (a short sleeve ends high, a hanging long one low).
        aspect: height over width of the upright mask's bounding box.
    """

    tilt: float
    shoulder_depth: float
    leg_split: float
    length: float
    sleeve_excess: float
    sleeve_reach: float
    sleeve_end: float
    aspect: float
    straight_top: float = 0.0
    sleeve_out: float = 0.0
    sleeve_length: float = 0.0
    sleeve_hanging: float = 0.0
    neckline: float = 0.0
    side_bay: float = 0.0
    bottom_length: float = 0.0
    dress_length: float = 0.0
    torso_length: float = 0.0


def features(mask: np.ndarray) -> dict[str, float]:
    """:class:`ShapeFeatures` of ``mask`` as a dict (for logs and benchmarks)."""
    return dataclasses.asdict(measure(mask))


# Only a garment photographed a little askew is turned upright; a larger angle of the
# principal axis is a garment's own shape (a sleeve spread to one side).
_MAX_TILT = 25.0


def upright(mask: np.ndarray) -> tuple[np.ndarray, float]:
    """Turn ``mask`` so that its principal axis is vertical (within :data:`_MAX_TILT`),
    cropped to the garment at :data:`_HEIGHT` rows. Returns the mask and the angle."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean(), xs.mean()
    cov = np.cov(np.stack([xs - cx, ys - cy]))
    evals, evecs = np.linalg.eigh(cov)
    major = evecs[:, int(np.argmax(evals))]
    angle = float(np.degrees(np.arctan2(major[0], major[1])))  # from vertical
    if angle > 90:
        angle -= 180
    if angle < -90:
        angle += 180
    # Only a clearly elongated shape has a meaningful axis.
    if evals.max() < 1.3 * evals.min() or abs(angle) > _MAX_TILT:
        angle = 0.0
    m = mask.astype(np.uint8) * 255
    if abs(angle) > 1.0:
        h, w = m.shape
        pad = int(0.3 * max(h, w))
        m = cv2.copyMakeBorder(m, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        rot = cv2.getRotationMatrix2D((cx + pad, cy + pad), -angle, 1.0)
        m = cv2.warpAffine(m, rot, (m.shape[1], m.shape[0]), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(m >= 128)
    m = m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = m.shape
    width = max(8, round(w * _HEIGHT / h))
    return cv2.resize(m, (width, _HEIGHT), interpolation=cv2.INTER_AREA) >= 128, angle


def measure(mask: np.ndarray) -> ShapeFeatures:
    """Measure a binary garment mask (any size, garment roughly upright).

    Raises:
        ValueError: when the mask is empty.
    """
    if not np.asarray(mask).any():
        raise ValueError("the mask is empty")
    m, tilt = upright(np.asarray(mask, bool))
    h, w = m.shape
    rows_any = m.any(axis=1)
    left = np.where(rows_any, np.argmax(m, axis=1), 0)
    right = np.where(rows_any, w - 1 - np.argmax(m[:, ::-1], axis=1), 0)
    extent = np.where(rows_any, right - left + 1, 0).astype(float)
    fill = m.sum(axis=1).astype(float)
    # The axis: the median midpoint of the rows' extents in the lower half.
    xc = float(np.median((left[h // 2 :] + right[h // 2 :]) / 2.0))
    xi = int(np.clip(round(xc), 1, w - 2))

    # Top edge: rows down to where the fabric first spans 70 % of the upper width.
    upper_w = float(extent[: h // 2].max())
    reach70 = np.flatnonzero(fill >= 0.7 * upper_w)
    shoulder_depth = (float(reach70[0]) if reach70.size else float(h)) / upper_w

    # Leg split: going up from the hem, rows where the axis columns are empty and fabric lies
    # on both sides.
    band = m[:, xi - 1 : xi + 2].any(axis=1)
    both = m[:, :xi].any(axis=1) & m[:, xi + 1 :].any(axis=1)
    gap = ~band & both
    split = 0
    for y in range(h - 1, -1, -1):
        if gap[y]:
            split += 1
        elif split > 0 or y < h - 1 - int(0.05 * h):
            break
    leg_split = split / h

    # Torso: the run of fabric through the axis, per row.
    run = np.zeros(h)
    for y in range(h):
        if m[y, xi]:
            r, rl = m[y, xi:], m[y, xi::-1]
            run[y] = (
                (np.argmin(r) if not r.all() else r.size)
                + (np.argmin(rl) if not rl.all() else rl.size)
                - 1
            )
    lower = run[int(0.65 * h) : int(0.9 * h)]
    lower = lower[lower > 0]
    torso = float(np.median(lower)) if lower.size else float(w)
    mid = run[int(0.3 * h) : int(0.65 * h)]
    mid = mid[mid > 0]
    narrow = float(mid.min()) if mid.size else torso
    length = h / max(narrow, 1.0)

    # Sleeves: the garment's extent beyond the torso width.
    excess = (extent - torso) / torso
    upper = slice(int(0.05 * h), int(0.6 * h))
    sleeve_excess = float(excess[upper].max())
    sleeve_reach, sleeve_end = 0.0, 0.0
    if sleeve_excess > 0.15:
        ys = np.arange(h)
        peak = int(0.05 * h) + int(np.argmax(excess[upper]))
        # Down from the widest sleeve row while the garment stays wider than the torso.
        below = np.flatnonzero((excess[peak:] < 0.1) & (ys[peak:] > peak))
        end = peak + (int(below[0]) if below.size else h - 1 - peak)
        sleeve_end = end / h
        top = int(np.flatnonzero(rows_any)[0])
        half_out = (extent[peak] - torso) / 2.0
        # From the shoulder point (top edge, torso side) to the sleeve's far corner.
        sleeve_reach = float(np.hypot(half_out, end - top)) / torso
    straight = _straight_top(m, extent)
    # Lengths. A bottom: height over the waistband (the extent just below the top edge).
    first = int(np.flatnonzero(rows_any)[0])
    # (The widest row of the top 8 %: a drawstring or a belt loop above the band is narrow.)
    waistband = float(np.max(extent[first : first + int(0.08 * h) + 1]))
    bottom_length = h / max(waistband, 1.0)
    # A dress: height over the depth of its waist (the narrowest torso row below the chest).
    mid_rows = np.arange(int(0.2 * h), int(0.6 * h))
    mid_rows = mid_rows[run[mid_rows] > 0]
    waist_row = int(mid_rows[np.argmin(run[mid_rows])]) if mid_rows.size else h // 2
    dress_length = h / max(waist_row - first, 1.0)
    # A top: the torso's length at the axis (down to the hem there) over its width.
    axis_rows = np.flatnonzero(m[:, xi])
    hem = int(axis_rows[-1]) if axis_rows.size else h - 1
    body = run[first + int(0.5 * (hem - first)) : first + int(0.9 * (hem - first)) + 1]
    body = body[body > 0]
    torso_length = (hem - first) / max(float(np.median(body)) if body.size else w, 1.0)
    out, slen, hanging, neck, bay = _armpits(m, xc)
    return ShapeFeatures(
        bottom_length=bottom_length,
        dress_length=dress_length,
        torso_length=torso_length,
        side_bay=bay,
        neckline=neck,
        straight_top=straight,
        sleeve_out=out,
        sleeve_length=slen,
        sleeve_hanging=hanging,
        tilt=tilt,
        shoulder_depth=shoulder_depth,
        leg_split=leg_split,
        length=length,
        sleeve_excess=sleeve_excess,
        sleeve_reach=sleeve_reach,
        sleeve_end=sleeve_end,
        aspect=h / w,
    )


def _straight_top(m: np.ndarray, extent: np.ndarray) -> float:
    """Share of the upper width along which the top edge lies on one straight line.

    A waistband is one straight edge across the garment's whole top; shoulders, a
    neckline, straps or a hood break the top edge into pieces at different heights and
    slopes, no single one of which spans much of the width. The line is the one through two
    top-edge points with the most top-edge points within 3 % of the width of it (every pair
    of a fixed sample of columns is tried: deterministic, and small).
    """
    h, w = m.shape
    upper_w = float(extent[: h // 2].max())
    has = m.any(axis=0)
    top = np.argmax(m, axis=0).astype(float)
    cols = np.flatnonzero(has)
    if cols.size < 4:
        return 0.0
    sample = cols[np.linspace(0, cols.size - 1, min(40, cols.size)).astype(int)]
    tol = 0.03 * upper_w
    xs, ys = cols.astype(float), top[cols]
    best = 0
    for i in range(sample.size):
        for j in range(i + 1, sample.size):
            x1, x2 = float(sample[i]), float(sample[j])
            y1, y2 = top[sample[i]], top[sample[j]]
            slope = (y2 - y1) / (x2 - x1)
            if abs(slope) > 0.5:  # steeper than about 27 degrees: not a waistband
                continue
            d = np.abs(ys - (y1 + slope * (xs - x1))) / np.hypot(1.0, slope)
            best = max(best, int(np.count_nonzero(d <= tol)))
    return best / upper_w


def _armpits(m: np.ndarray, xc: float) -> tuple[float, float, float, float, float]:
    """Sleeves from the bays of the outline on each side of the upper body.

    Beside a sleeve the outline turns in at the armpit: a bay of the convex hull whose
    deepest point is the armpit. A short or spread sleeve's bay opens sideways, between the
    cuff (standing out beyond the armpit) and the hem corner; a long sleeve hanging along
    the body leaves a slit that opens downwards (the armpit lies above both ends). A
    sleeveless armhole is also a bay, but its upper end (the strap, the shoulder) does not
    stand out beyond the armpit.

    Returns:
        ``(out, length, hanging)``, each the mean over the two sides: how far the bay's upper
        end stands out beyond the armpit, over the armpit's distance from the axis; the
        distance from the shoulder (the top edge above the armpit) to the sleeve's end, over
        the chest width (twice the armpit's distance from the axis); and 1 where the bay is
        a downward slit.
    """
    h, w = m.shape
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    c = max(contours, key=cv2.contourArea)
    hull = cv2.convexHull(c, returnPoints=False)
    if hull is None or len(hull) < 3:
        return 0.0, 0.0, 0.0, 0.0, 0.0
    try:
        defects = cv2.convexityDefects(c, hull)
    except cv2.error:
        defects = None
    pts = c[:, 0, :].astype(float)
    rows = np.flatnonzero(m.any(axis=1))
    top_y, height = float(rows[0]), float(rows[-1] - rows[0] + 1)
    top = np.argmax(m, axis=0)
    sides = {"l": None, "r": None}
    cols = np.flatnonzero(m.any(axis=0))
    half_w = (cols[-1] - cols[0] + 1) / 2.0
    neck = bay = 0.0
    if defects is not None:
        for s_i, e_i, f_i, depth in np.asarray(defects).reshape(-1, 4):
            d = depth / 256.0
            far = pts[f_i]
            # A neckline: a bay at the top around the axis, opening upwards.
            if (
                abs(far[0] - xc) < 0.25 * half_w
                and far[1] < top_y + 0.45 * height
                and far[1] > max(pts[s_i][1], pts[e_i][1])
            ):
                neck = max(neck, d / (2.0 * half_w))
            if d < 0.03 * w or not (top_y + 0.08 * height <= far[1] <= top_y + 0.8 * height):
                continue
            # Bays around the axis are a neckline (above) or the gap between legs (below),
            # not an armpit.
            if abs(far[0] - xc) < 0.25 * half_w:
                continue
            side = "l" if far[0] < xc else "r"
            if far[1] <= top_y + 0.45 * height:
                bay = max(bay, d / (2.0 * half_w))
            if sides[side] is None or d > sides[side][0]:
                sides[side] = (d, pts[s_i], pts[e_i], far)
    outs, lengths, hangs = [], [], []
    for found in sides.values():
        if found is None:
            outs.append(0.0)
            lengths.append(0.0)
            hangs.append(0.0)
            continue
        _d, p1, p2, far = found
        half = max(abs(far[0] - xc), 1.0)
        upper, lower = (p1, p2) if p1[1] <= p2[1] else (p2, p1)
        # A slit: the armpit lies well above both ends of the bay (a quarter of the height:
        # a short sleeve angled down puts its cuff a little below the armpit, not that far).
        hanging = far[1] < min(p1[1], p2[1]) - 0.25 * height
        # The sleeve's end: for a slit, the end farther from the axis (the cuff beside the
        # hem corner); otherwise the upper end.
        tip = (p1 if abs(p1[0] - xc) > abs(p2[0] - xc) else p2) if hanging else upper
        out = (abs(tip[0] - xc) - half) / half
        xs = int(np.clip(round(far[0]), 0, w - 1))
        shoulder = np.array([far[0], float(top[xs])])
        outs.append(float(out))
        lengths.append(float(np.hypot(*(tip - shoulder))) / (2.0 * half))
        hangs.append((min(p1[1], p2[1]) - far[1]) / height if hanging else 0.0)
    return float(np.mean(outs)), float(np.mean(lengths)), float(np.mean(hangs)), neck, bay


# --------------------------------------------------------------------------- classification

# Each rule compares a measure with a threshold set between the proportions of the garment
# types it separates (see each constant). The margin of the closest comparison that decided
# the result, relative to the threshold, is the classification's confidence; under
# UNSURE_BELOW the caller asks for a hint instead of guessing.

# Leg split: the gap between two legs runs at least this share of the height up from the
# hem (shorts: a fifth to a third; trousers: a third to three quarters).
LEGS_ABOVE = 0.15
# A sleeve stands out beyond its armpit by at least this share of the armpit's distance
# from the axis (set-in short sleeves: half or more; a strap or a shoulder over a cut-away
# armhole: not at all).
SLEEVE_OUT_ABOVE = 0.38
# Fabric beyond the armpit that a pair of legs cannot have (trousers lying straight).
NO_SLEEVE_BELOW = 0.15
# A waistband: one straight top edge across at least this share of the upper width.
WAISTBAND_ABOVE = 0.75
# A skirt's top edge is straight over most of its width too, if less so (a belt, a bow).
SKIRT_TOP_ABOVE = 0.55
# An armhole: a bay of the outline in the upper body deeper than this share of the width.
ARMHOLE_ABOVE = 0.03
# A dress is long: height at least this many times its narrowest torso width (tops: under
# 2.6, their torso is about as long as wide; dresses: 3 and more)...
DRESS_LENGTH_ABOVE = 2.8
# ...and the whole garment is clearly taller than wide (a top with spread sleeves is not).
DRESS_ASPECT_ABOVE = 1.25
# A sleeved upper garment this much taller than wide reaches the thigh: a coat.
COAT_ASPECT_ABOVE = 1.6
# Sleeve length: a sleeve hanging as a slit beside the body for at least this share of the
# height is long; otherwise long when shoulder-to-cuff is at least this many chest widths
# (short sleeves: 0.3-0.8; long: 1 and more).
SLIT_LONG_ABOVE = 0.1
SLEEVE_LONG_ABOVE = 0.9
# Length classes. Tops: torso length over torso width (crop tops under 1.1; tunics over
# 1.9). Bottoms: length over waistband width (shorts and minis under 1.25; knee length to
# 1.8; full length beyond). Dresses: height over the depth of the waist below the top edge
# (a mini ends about two waist depths down; a maxi three and more).
TOP_CROPPED_BELOW, TOP_LONG_ABOVE = 1.1, 1.9
BOTTOM_CROPPED_BELOW, BOTTOM_LONG_ABOVE = 1.25, 1.8
DRESS_CROPPED_BELOW, DRESS_LONG_ABOVE = 2.2, 2.8
# Under this confidence (the deciding measure within 5 % of its threshold) the call is a
# coin toss, and a wrong still is worse than asking for a hint.
UNSURE_BELOW = 0.525


@dataclasses.dataclass
class Description:
    """What :func:`describe` decided.

    Attributes:
        category: ``top``, ``bottom``, ``dress`` or ``outerwear``.
        sleeve: ``sleeveless``, ``short`` or ``long``; None for a bottom.
        length: ``cropped``, ``regular`` or ``long``.
        category_confidence: 0.5 (on a threshold) to 1 (far from every threshold).
        sleeve_confidence: the same for the sleeve (1 for a bottom).
        features: the measures it was decided from.
    """

    category: str
    sleeve: str | None
    length: str
    category_confidence: float
    sleeve_confidence: float
    features: ShapeFeatures


def _margin(value: float, threshold: float) -> float:
    """0..1: how far ``value`` is from ``threshold``, relative to it (1 at twice or half)."""
    if threshold <= 0:
        return 1.0
    return float(min(1.0, abs(value - threshold) / threshold))


def _confidence(margins: list[float]) -> float:
    return float(0.5 + 0.5 * min(1.0, max(0.0, min(margins)))) if margins else 1.0


def describe(
    mask: np.ndarray, category: str | None = None, features: ShapeFeatures | None = None
) -> Description:
    """Category, sleeve and length of a garment mask; ``category`` (a hint) is taken as
    given and only the sleeve and length are decided. ``features``: the mask's
    :func:`measure`, when already taken (a second description under a hint).

    Raises:
        ValueError: when the mask is empty.
    """
    f = features if features is not None else measure(mask)
    sleeve_out = f.sleeve_out > SLEEVE_OUT_ABOVE
    slit = f.sleeve_hanging > 0
    armhole = f.side_bay > ARMHOLE_ABOVE
    sleeve, s_margins = _sleeve(f, sleeve_out, slit, armhole)
    margins: list[float] = []
    if category is None:
        category = _category(f, sleeve, sleeve_out, slit, armhole, margins)
    if category == "bottom":
        sleeve, s_margins = None, []
    return Description(
        category=category,
        sleeve=sleeve,
        length=_length(category, f),
        category_confidence=_confidence(margins),
        sleeve_confidence=_confidence(s_margins),
        features=f,
    )


def _sleeve(f: ShapeFeatures, sleeve_out: bool, slit: bool, armhole: bool):
    """The sleeve class an upper-body garment's outline shows, and the deciding margins."""
    if slit and f.sleeve_hanging > SLIT_LONG_ABOVE:
        return "long", [_margin(f.sleeve_hanging, SLIT_LONG_ABOVE)]
    if sleeve_out or slit:
        sleeve = "long" if f.sleeve_length > SLEEVE_LONG_ABOVE else "short"
        return sleeve, [
            _margin(f.sleeve_out, SLEEVE_OUT_ABOVE),
            _margin(f.sleeve_length, SLEEVE_LONG_ABOVE),
        ]
    margins = [_margin(f.side_bay, ARMHOLE_ABOVE), _margin(f.sleeve_out, SLEEVE_OUT_ABOVE)]
    if armhole:
        return "sleeveless", margins
    # Neither a sleeve standing out nor an armhole cutting in: the sides run convex from the
    # shoulders to the hem, which only sleeves lying along the body give.
    return "long", margins


def _category(
    f: ShapeFeatures, sleeve: str, sleeve_out: bool, slit: bool, armhole: bool, margins: list
) -> str:
    """The category the outline shows; appends the deciding margin to ``margins``."""
    # Each rule that reads the garment as a bottom, with the margin it passed by; the
    # clearest one sets the confidence (a skirt that barely passes as a waistband but clearly
    # as a skirt is a clear bottom).
    bottom_rules = []
    no_sleeve = f.sleeve_out < NO_SLEEVE_BELOW and not slit
    if f.leg_split > LEGS_ABOVE and not slit and (no_sleeve or f.straight_top > WAISTBAND_ABOVE):
        bottom_rules.append(_margin(f.leg_split, LEGS_ABOVE))
    if f.straight_top > WAISTBAND_ABOVE and not sleeve_out and not armhole:
        bottom_rules.append(_margin(f.straight_top, WAISTBAND_ABOVE))
    if no_sleeve and not armhole and f.straight_top > SKIRT_TOP_ABOVE:
        bottom_rules.append(
            min(_margin(f.straight_top, SKIRT_TOP_ABOVE), _margin(f.side_bay, ARMHOLE_ABOVE))
        )
    if bottom_rules:
        margins.append(max(bottom_rules))
        return "bottom"
    # How clearly it is not a bottom: an upper body's own features (sleeves, an armhole, a
    # slit), else how far its top edge is from a skirt's.
    margins.append(
        max(
            _margin(f.sleeve_out, NO_SLEEVE_BELOW) if f.sleeve_out >= NO_SLEEVE_BELOW else 0.0,
            1.0 if armhole or slit else 0.0,
            _margin(f.straight_top, SKIRT_TOP_ABOVE),
        )
    )
    # A dress: long against its torso and taller than wide, or, without long sleeves (a
    # coat), far taller than wide; and its skirt is its lowest part on the centre line (a
    # garment whose middle ends well above its lowest point is a short top with sleeves
    # hanging below it).
    dress_rules = []
    if f.leg_split <= LEGS_ABOVE:
        if f.length > DRESS_LENGTH_ABOVE and f.aspect > DRESS_ASPECT_ABOVE:
            dress_rules.append(_margin(f.length, DRESS_LENGTH_ABOVE))
        if f.aspect > COAT_ASPECT_ABOVE and sleeve != "long":
            dress_rules.append(_margin(f.aspect, COAT_ASPECT_ABOVE))
    if dress_rules:
        margins.append(max(dress_rules))
        return "dress"
    # The clearest of the reasons it is not a dress.
    margins.append(
        max(
            _margin(f.length, DRESS_LENGTH_ABOVE) if f.length <= DRESS_LENGTH_ABOVE else 0.0,
            _margin(f.aspect, DRESS_ASPECT_ABOVE) if f.aspect <= DRESS_ASPECT_ABOVE else 0.0,
            _margin(f.leg_split, LEGS_ABOVE) if f.leg_split > LEGS_ABOVE else 0.0,
            _margin(f.aspect, COAT_ASPECT_ABOVE) if sleeve == "long" else 0.0,
        )
    )
    # A sleeved upper garment far taller than wide reaches the thigh: a coat.
    if sleeve == "long" and f.aspect > COAT_ASPECT_ABOVE:
        return "outerwear"
    return "top"


def _length(category: str, f: ShapeFeatures) -> str:
    if category == "bottom":
        ratio, lo, hi = f.bottom_length, BOTTOM_CROPPED_BELOW, BOTTOM_LONG_ABOVE
    elif category == "dress":
        ratio, lo, hi = f.dress_length, DRESS_CROPPED_BELOW, DRESS_LONG_ABOVE
    else:
        ratio, lo, hi = f.torso_length, TOP_CROPPED_BELOW, TOP_LONG_ABOVE
    return "cropped" if ratio < lo else "long" if ratio > hi else "regular"
