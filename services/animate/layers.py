"""Body layers that match the photo: which pixels are an arm, a leg, or the torso with the
head, and what lies behind an arm.

The person analysis gives arm regions as capsules around the arm bones, which on real
photos take in the torso beside an arm held against the side, the skirt under a hand on
the hip, the hair over a shoulder. Here each arm is cut out by a graph cut (GrabCut,
Rother, Kolmogorov & Blake 2004: colour models of the two sides plus a contrast-sensitive
smoothness term, so the cut follows edges) seeded by what the pose and the analysis make
certain: the arm bones' core is arm; outside the person, the torso's core away from the
arms, the face and the hair are not. What cannot belong to an arm (the far side of the
capsule) never becomes arm.

Behind an arm that overlaps the body, the torso continues: its outline there is
interpolated from the rows where the torso's edge is free, so a raised arm uncovers cloth
out to the body's edge and background beyond it.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.common.analysis import person as P

ARM_SIDES = {
    "left": (P.L_SHOULDER, P.L_ELBOW, P.L_WRIST),
    "right": (P.R_SHOULDER, P.R_ELBOW, P.R_WRIST),
}
# Outer radius of what may be an arm, in shoulder widths: wider than any upper arm
# (biacromial breadth ~ 2.4 x upper-arm breadth, so an arm is ~0.2 sw across its radius
# at most, sleeves included) and a core that is certainly arm on any frame-filling photo.
ARM_REACH = 0.24
ARM_CORE = 0.045
GRABCUT_ITERATIONS = 3
GRABCUT_MAX_SIDE = 200  # the cut runs on a box at most this large (cost grows with area)


def _capsule(mask: np.ndarray, a, b, radius: float, value: int = 1) -> None:
    r = max(1, int(round(radius)))
    pa, pb = tuple(int(v) for v in np.round(a)), tuple(int(v) for v in np.round(b))
    cv2.line(mask, pa, pb, value, 2 * r)
    cv2.circle(mask, pa, r, value, -1)
    cv2.circle(mask, pb, r, value, -1)


def shoulder_width(lm: np.ndarray) -> float:
    """Distance between the shoulders (the scale of every body-relative length)."""
    return float(np.linalg.norm(lm[P.L_SHOULDER, :2] - lm[P.R_SHOULDER, :2]))


def _trunk_core(lm: np.ndarray, shape, sw: float) -> np.ndarray:
    """The middle of the trunk: the shoulder-hip quadrilateral shrunk towards its axis.
    Certainly torso unless an arm lies across it (the caller removes the arms' cores)."""
    ls, rs, lh, rh = (lm[i, :2].astype(np.float64) for i in (11, 12, 23, 24))
    ms, mh = (ls + rs) / 2, (lh + rh) / 2
    quad = []
    for p, m in ((rs, ms), (ls, ms), (lh, mh), (rh, mh)):
        quad.append(m + (p - m) * 0.55)
    quad = np.array(quad)
    quad[:2] += (mh - ms) * 0.12  # below the collar bones, where the arms join
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, [np.round(quad).astype(np.int32)], 1)
    return out > 0


def _legs_core(lm: np.ndarray, shape) -> np.ndarray:
    """Below the hips, the middle of the lower body (skirt, trousers, thighs): the hip
    segment carried down the body's axis, narrowed to 70 %. Never arm, unless an arm's
    core lies on it (the caller removes those)."""
    ls, rs, lh, rh = (lm[i, :2].astype(np.float64) for i in (11, 12, 23, 24))
    down = (lh + rh) / 2 - (ls + rs) / 2
    mh = (lh + rh) / 2
    a, b = mh + (lh - mh) * 0.7, mh + (rh - mh) * 0.7
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(
        out, [np.round(np.array([a, b, b + down * 1.5, a + down * 1.5])).astype(np.int32)], 1
    )
    return out > 0


def _arm_capsule(
    lm: np.ndarray,
    shape,
    side: str,
    radius: float,
    start: float = 0.0,
    hand: bool = True,
    fingertips: bool = False,
):
    """Capsules along one arm: upper arm ``radius``, forearm and hand 0.7 of it (forearm
    breadth is ~0.7 of upper-arm breadth with the sleeve's slack). The hand's capsule
    ends at the middle of the hand, or with ``fingertips`` a palm's length past the
    knuckles the pose marks (fingers are about as long as the palm)."""
    s, e, wr = ARM_SIDES[side]
    m = np.zeros(shape, np.uint8)
    a = lm[s, :2] + (lm[e, :2] - lm[s, :2]) * start
    _capsule(m, a, lm[e, :2], radius)
    _capsule(m, lm[e, :2], lm[wr, :2], radius * 0.7)
    if hand:
        end = _hand_centre(lm, side)
        if fingertips:
            idx, pky = (P.L_INDEX, P.L_PINKY) if side == "left" else (P.R_INDEX, P.R_PINKY)
            knuckles = (lm[idx, :2] + lm[pky, :2]) / 2
            end = knuckles + (knuckles - lm[wr, :2])
        _capsule(m, lm[wr, :2], end, radius * 0.7)
    return m > 0


def _hand_centre(lm: np.ndarray, side: str) -> np.ndarray:
    """Middle of the hand: the wrist pushed along the forearm towards the fingers."""
    s, e, wr = ARM_SIDES[side]
    idx, pky = (P.L_INDEX, P.L_PINKY) if side == "left" else (P.R_INDEX, P.R_PINKY)
    return (lm[wr, :2] + lm[idx, :2] + lm[pky, :2]) / 3


def segment_arms(
    rgb: np.ndarray, analysis: P.PersonAnalysis, person: np.ndarray
) -> dict[str, np.ndarray]:
    """Bool mask of each arm (shoulder to fingertips), separated from the torso, clothes,
    hair and the other arm even where they touch.

    Args:
        rgb: the still, ``H x W x 3`` uint8.
        analysis: its person analysis (same pixels).
        person: bool person mask.

    Returns:
        ``{"left": mask, "right": mask}`` (the person's sides).
    """
    lm = analysis.landmarks
    h, w = person.shape
    sw = shoulder_width(lm)
    reach = {
        s: _arm_capsule(lm, (h, w), s, ARM_REACH * sw, fingertips=True) & person for s in ARM_SIDES
    }
    # Cores start a fifth of the way down the upper arm: the shoulder joint overlaps the
    # torso and is the one place where arm and torso pixels are not told apart by a cut.
    # The hand is certain only where the analysis found it as skin (a hand's place is a
    # guess where the pose model cannot see it, and a core on the skirt beside it would
    # teach the cut that the skirt is arm).
    inner = cv2.erode(person.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    core = {
        s: (
            _arm_capsule(lm, (h, w), s, max(2.0, ARM_CORE * sw), start=0.2, hand=False)
            | cv2.erode(analysis.hands[s].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        )
        & inner
        for s in ARM_SIDES
    }
    # A bare arm is skin: where most of a core is skin, its other pixels are what the
    # arm lies on or beside (a skirt under a hanging hand), not the arm.
    skin = analysis.skin | analysis.hands["left"] | analysis.hands["right"]
    for s in ARM_SIDES:
        if core[s].any() and (core[s] & skin).sum() > 0.3 * core[s].sum():
            core[s] &= skin
    wide_core = {s: _arm_capsule(lm, (h, w), s, 0.14 * sw, start=0.2) for s in ARM_SIDES}
    not_arm = ~person | analysis.face | analysis.hair
    trunk = _trunk_core(lm, (h, w), sw) | _legs_core(lm, (h, w))
    trunk &= ~wide_core["left"] & ~wide_core["right"]
    out = {}
    for side, other in (("left", "right"), ("right", "left")):
        if core[side].sum() < 20:
            out[side] = analysis.arms[side] & person
            continue
        sure_not = not_arm | trunk | core[other]
        out[side] = _cut(rgb, reach[side], core[side] & ~sure_not, sure_not, sw)
    # Skin inside an arm's capsule is that arm (bare arms; the cut can lose a forearm
    # that rests on the clothes when the clothes' colours resemble it).
    skin_arm = {
        s: (analysis.arms[s] | analysis.hands[s]) & skin & person & ~analysis.face
        for s in ARM_SIDES
    }
    for side, other in (("left", "right"), ("right", "left")):
        out[side] |= skin_arm[side] & ~out[other]
    # What the cut leaves of the torso as a sliver between an arm and the background (the
    # arm's soft, colour-mixed outer edge) is arm: a torso is never that thin there.
    rest = person & ~out["left"] & ~out["right"]
    k = max(3, int(round(0.06 * sw)) | 1)
    body = (
        cv2.morphologyEx(
            rest.astype(np.uint8),
            cv2.MORPH_OPEN,
            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)),
        )
        > 0
    )
    sliver = rest & ~body
    for side in ARM_SIDES:
        near_arm = cv2.dilate(out[side].astype(np.uint8), np.ones((k, k), np.uint8)) > 0
        out[side] |= sliver & reach[side] & near_arm
    # An arm pixel claimed by both sides goes to the nearer arm's bones.
    both = out["left"] & out["right"]
    if both.any():
        ys, xs = np.nonzero(both)
        p = np.stack([xs, ys], 1).astype(np.float64)
        d = {}
        for side, (s, e, wr) in ARM_SIDES.items():
            d[side] = np.minimum(
                _seg_dist(p, lm[s, :2], lm[e, :2]), _seg_dist(p, lm[e, :2], lm[wr, :2])
            )
        out["left"][ys[d["left"] > d["right"]], xs[d["left"] > d["right"]]] = False
        out["right"][ys[d["left"] <= d["right"]], xs[d["left"] <= d["right"]]] = False
    return out


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def _cut(
    rgb: np.ndarray, allowed: np.ndarray, sure: np.ndarray, sure_not: np.ndarray, sw: float
) -> np.ndarray:
    """GrabCut inside the box around ``allowed``: ``sure`` pixels are the arm, ``sure_not``
    and everything outside ``allowed`` are not. Runs at reduced size on large boxes."""
    h, w = allowed.shape
    ys, xs = np.nonzero(allowed)
    if len(ys) == 0:
        return allowed
    pad = int(0.1 * sw) + 4
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, h)
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, w)
    k = max(1.0, max(y1 - y0, x1 - x0) / GRABCUT_MAX_SIDE)
    bw, bh = max(8, int(round((x1 - x0) / k))), max(8, int(round((y1 - y0) / k)))

    def small(m: np.ndarray) -> np.ndarray:
        return cv2.resize(
            m[y0:y1, x0:x1].astype(np.uint8), (bw, bh), interpolation=cv2.INTER_NEAREST
        )

    img = cv2.resize(rgb[y0:y1, x0:x1], (bw, bh), interpolation=cv2.INTER_AREA)
    mask = np.full((bh, bw), cv2.GC_PR_BGD, np.uint8)
    mask[small(allowed) > 0] = cv2.GC_PR_FGD
    mask[small(~allowed | sure_not) > 0] = cv2.GC_BGD
    mask[small(sure) > 0] = cv2.GC_FGD
    if not (mask == cv2.GC_FGD).any() or not (mask == cv2.GC_BGD).any():
        return allowed & ~sure_not
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation is k-means: deterministic clips
    cv2.grabCut(img, mask, None, bgd, fgd, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    # Keep what is connected to the certain arm (stray islands of arm colour on the
    # clothes are clothes), then close pinholes inside the arm.
    n, lab = cv2.connectedComponents(fg)
    keep = np.unique(lab[small(sure) > 0])
    fg = np.isin(lab, keep[keep > 0]).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    full = cv2.resize(fg.astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((h, w), bool)
    out[y0:y1, x0:x1] = full > 0.5
    return out & allowed & ~sure_not


def torso_behind(torso: np.ndarray, arms: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Where the torso continues behind the arms: per row of the trunk, between the
    torso's left and right edges, where an edge that an arm touches is interpolated from
    the rows where it is free (the side of a body is smooth). Bounded by the convex hull of
    the torso, and only between the shoulders' and the hips' rows (plus the thighs on a
    photo cropped there).

    Args:
        torso: bool mask of the person without the arms.
        arms: bool mask of both arms.
        lm: the landmarks.

    Returns:
        bool mask of the arms' pixels that have torso behind them.
    """
    h, w = torso.shape
    ys_t, xs_t = np.nonzero(torso)
    if len(ys_t) < 50 or not arms.any():
        return np.zeros((h, w), bool)
    top = int(max(0, min(lm[11, 1], lm[12, 1])))
    bottom = h
    rows = np.arange(top, bottom)
    tor = torso[top:bottom]
    has = tor.any(axis=1)
    if has.sum() < 3:
        return np.zeros((h, w), bool)
    left = np.where(has, tor.argmax(axis=1), -1)
    right = np.where(has, w - 1 - tor[:, ::-1].argmax(axis=1), -1)
    grown = cv2.dilate(arms.astype(np.uint8), np.ones((7, 7), np.uint8))[top:bottom] > 0
    ri = np.arange(len(rows))
    free_l = has & ~grown[ri, np.clip(left, 0, w - 1)]
    free_r = has & ~grown[ri, np.clip(right, 0, w - 1)]
    out = np.zeros((h, w), bool)
    if free_l.sum() < 2 or free_r.sum() < 2:
        return out
    # The shoulder points anchor the edges at the top row: there the arm joins the torso.
    sx = sorted((float(lm[11, 0]), float(lm[12, 0])))
    il = np.concatenate([[0], ri[free_l]])
    ir = np.concatenate([[0], ri[free_r]])
    xl = np.interp(ri, il, np.concatenate([[sx[0]], left[free_l]]))
    xr = np.interp(ri, ir, np.concatenate([[sx[1]], right[free_r]]))
    # Rows past the last free edge would hold it constant forever: stop the torso where
    # it stops having a free edge on either side (below the hips of a full-body photo the
    # legs are their own layers anyway).
    last = min(ri[free_l].max(), ri[free_r].max())
    xs = np.arange(w)[None, :]
    band = (xs >= xl[:, None]) & (xs <= xr[:, None])
    band[last + 1 :] = False
    out[top:bottom] = band
    hull = np.zeros((h, w), np.uint8)
    pts = np.stack([xs_t[ys_t >= top], ys_t[ys_t >= top]], 1).astype(np.int32)
    if len(pts) >= 3:
        cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
        out &= hull > 0
    return out & arms


# Where along a limb contact is judged: past the joint that always touches the body (the
# shoulder, the crotch), to the wrist or the ankle; and how much of that length must lie
# against the body for the limb to count as resting on it.
CONTACT_FROM = 0.35
CONTACT_SAMPLES = 16
# More than two of the sixteen points: a limb that touches the body anywhere along its
# length cannot leave it without uncovering a surface the photo never showed.
CONTACT_SHARE = 0.15


def _walk_has_gap(person: np.ndarray, p: np.ndarray, q: np.ndarray) -> bool:
    """Whether the straight path from ``p`` to ``q`` crosses a pixel that is not the person
    (background between the two: they do not touch there). Points off the frame count as
    unknown, not as background."""
    h, w = person.shape
    n = int(np.ceil(np.linalg.norm(q - p))) + 1
    if n < 2:
        return False
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = np.round(p + (q - p) * t).astype(int)
    ok = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
    pts = pts[ok]
    return bool(len(pts)) and not bool(person[pts[:, 1], pts[:, 0]].all())


def _chain_points(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, n: int, start_at: float = CONTACT_FROM
) -> np.ndarray:
    """``n`` points evenly spaced by length along the chain a-b-c, from ``start_at`` of
    the first bone on."""
    start = a + (b - a) * start_at
    l1, l2 = float(np.linalg.norm(b - start)), float(np.linalg.norm(c - b))
    s = np.linspace(0.0, l1 + l2, n)
    out = []
    for d in s:
        if d <= l1:
            out.append(start + (b - start) * (d / max(l1, 1e-6)))
        else:
            out.append(b + (c - b) * ((d - l1) / max(l2, 1e-6)))
    return np.array(out)


def limb_contact(person: np.ndarray, lm: np.ndarray, framing: str) -> dict[str, float]:
    """How much of each limb rests against the body, from the person mask: the share of
    points along the limb (past the shoulder or the crotch) from which the straight way to
    the body crosses no background.

    * An arm (``"left"``, ``"right"``) is looked at from its forearm and hand
      towards the body's axis (the mid-shoulder to mid-hip line, carried down past the
      hips) at the same height. A hand on the hip, an arm held against the side, crossed
      arms and a hand in the hair touch; an arm held away with background showing
      between it and the body does not.
    * The legs (``"legs"``, full-body stills only) are looked at from one leg towards the
      same point of the other: legs together or crossed touch; legs apart do not.

    Moving a limb that rests on the body would uncover what the photo never showed (the
    torso under the arm, the inside of the other leg) and would tear the two apart; a
    limb that stands free uncovers background, which the plate holds.

    Args:
        person: bool person mask.
        lm: ``33 x 4`` landmarks (pixels, visibility last).
        framing: "half" or "full".

    Returns:
        ``{"left": share, "right": share[, "legs": share]}``, each in ``[0, 1]``; a limb the
        photo does not show (joints unseen) gets 1.0 (it cannot move cleanly either).
    """
    p = lm[:, :2].astype(np.float64)
    seen = lm[:, 3] >= 0.5
    ms, mh = (p[11] + p[12]) / 2, (p[23] + p[24]) / 2
    axis = mh - ms
    out: dict[str, float] = {}
    for side, (s, e, wr) in ARM_SIDES.items():
        if not seen[[s, e, wr]].all():
            out[side] = 1.0
            continue
        touch = 0
        # The forearm and the hand: the upper arm meets the torso at the armpit in every
        # relaxed pose, and the torso is continued behind it (:func:`torso_behind`); what
        # rests on the body (a hand on the hip, on the thigh, in the hair, crossed
        # forearms) is the forearm and the hand.
        pts = _chain_points(p[e], p[wr], _hand_centre(lm, side), CONTACT_SAMPLES, 0.2)
        for q in pts:
            # The axis point at the sample's height (along the body), unbounded below.
            t = float((q - ms) @ axis / max(float(axis @ axis), 1e-6))
            target = ms + axis * max(t, 0.0)
            touch += not _walk_has_gap(person, q, target)
        out[side] = touch / len(pts)
    if framing == "full":
        legs = ((23, 25, 27), (24, 26, 28))
        if not seen[[j for leg in legs for j in leg]].all():
            out["legs"] = 1.0
        else:
            a = _chain_points(*(p[j] for j in legs[0]), CONTACT_SAMPLES)
            b = _chain_points(*(p[j] for j in legs[1]), CONTACT_SAMPLES)
            touch = sum(not _walk_has_gap(person, x, y) for x, y in zip(a, b, strict=True))
            out["legs"] = touch / CONTACT_SAMPLES
    return out


# Share of an arm's bone core (upper arm past the shoulder, forearm) that its cut must
# hold for the cut to be trusted: below it, the cut lost the sleeve or the forearm to the
# torso (a black sleeve on a black top, a hand whose skin alone was found), and moving the
# arm would tear the hand from its sleeve.
CUT_TRUSTED = 0.6


def arm_cut_share(arms: dict[str, np.ndarray], lm: np.ndarray, person: np.ndarray) -> dict:
    """Per arm, the share of its bone core (a thin capsule inside the person) that
    :func:`segment_arms` labelled arm: the smaller of the upper arm's (from a fifth of the
    way down) and the forearm's. Judged apart, so that a whole forearm cannot hide a
    sleeve left on the torso (a T-shirt's sleeve in the shirt's colour)."""
    h, w = person.shape
    r = max(2.0, ARM_CORE * shoulder_width(lm))
    out = {}
    for side, (s, e, wr) in ARM_SIDES.items():
        shares = []
        for a, b in (
            (lm[s, :2] + 0.2 * (lm[e, :2] - lm[s, :2]), lm[e, :2]),
            (lm[e, :2], lm[wr, :2]),
        ):
            core = np.zeros((h, w), np.uint8)
            _capsule(core, a, b, r)
            core = (core > 0) & person
            n = int(core.sum())
            shares.append(float((arms[side] & core).sum()) / n if n else 0.0)
        out[side] = min(shares)
    return out
