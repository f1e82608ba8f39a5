"""The skeletal renderer: layers cut out of the still, a background filled once, and per
frame deformed meshes drawn back to front.

Per frame and layer the cost is one ARAP solve, one rasterisation of the deformed
triangles' ids at half resolution (inside the layer's bounding box), one backward map from
each triangle's affine (output pixel -> still pixel), upsampled, and one ``cv2.remap`` of
the layer's premultiplied texture and its alpha; the background is computed once and copied.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from services.animate.deform import (
    ArapMesh,
    Bone,
    _seg_dist,
    affine_fit,
    build_mesh,
    rigid,
    skin_weights,
)
from services.animate.layers import _capsule, segment_arms, shoulder_width, torso_behind
from services.common.analysis import person as P

FAR = -1.0e5  # map value outside every triangle: remap reads transparent border there


@dataclasses.dataclass
class Layer:
    """One body part: its texture, its mesh and which bones move it.

    Attributes:
        name: "torso", "arm_left", "arm_right", "leg_left", "leg_right".
        texture: ``H x W x 3`` uint8, RGB premultiplied by alpha, in still pixels.
        alpha: ``H x W`` uint8 coverage.
        mesh: the ARAP mesh over the layer's cut-out.
        bones: names of the bones, in the order of the mesh's weight columns.
    """

    name: str
    texture: np.ndarray
    alpha: np.ndarray
    mesh: ArapMesh
    bones: list[str]


def fill_background(rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The still with ``hole`` filled from its surroundings (Telea 2004 fast-marching
    inpainting), once per clip. Large holes are filled at a quarter of the resolution and
    upsampled (what fills a hole is smooth anyway, and the cost grows with area x radius);
    pixels outside the hole stay exactly the still's, so the background cannot flicker."""
    h, w = hole.shape
    mask = hole.astype(np.uint8)
    k = 4 if mask.sum() > 20_000 else (2 if mask.sum() > 2_000 else 1)
    small = cv2.resize(rgb, (w // k, h // k), interpolation=cv2.INTER_AREA) if k > 1 else rgb
    small_mask = (
        (cv2.resize(mask, (w // k, h // k), interpolation=cv2.INTER_AREA) > 0).astype(np.uint8)
        if k > 1
        else mask
    )
    small_mask = cv2.dilate(small_mask, np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, small_mask, max(3, int(min(h, w) * 0.02 / k)), cv2.INPAINT_TELEA)
    if k > 1:
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
        # Soften the quarter-resolution blockiness inside the hole.
        filled = cv2.GaussianBlur(filled, (0, 0), k * 0.8)
    filled = filled.astype(np.float32) + _mirrored_grain(rgb, hole)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0)[..., None]
    soft = np.maximum(soft, mask[..., None].astype(np.float32))
    return np.clip(rgb * (1 - soft) + filled * soft + 0.5, 0, 255).astype(np.uint8)


def person_halo(still: np.ndarray, hole: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Pixels within 3 px outside ``hole`` that look like the person's edge rather than
    the background around them: nearer in colour to the person just inside its outline
    than to the background 6 to 12 px beyond the hole (both averaged locally, over about
    10 px), and over 30 levels from that background. Left in a plate they are a ghost
    outline. Worked out in the hole's box only, the local averages at a quarter of the
    resolution (they are smooth)."""
    h, w = hole.shape
    out = np.zeros((h, w), bool)
    ys, xs = np.nonzero(hole)
    if len(ys) == 0:
        return out
    pad = 48  # the outer ring (12 px) and the averages' reach
    y0, y1 = max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, h)
    x0, x1 = max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, w)
    img = still[y0:y1, x0:x1].astype(np.float32)
    hole8 = hole[y0:y1, x0:x1].astype(np.uint8)
    a = alpha[y0:y1, x0:x1]
    k3 = np.ones((3, 3), np.uint8)
    ring = (cv2.dilate(hole8, k3, iterations=3) > 0) & (hole8 == 0)
    outer = (cv2.dilate(hole8, k3, iterations=12) > 0) & ~(cv2.dilate(hole8, k3, iterations=6) > 0)
    inner = (a > 0.9) & ~(cv2.erode((a > 0.9).astype(np.uint8), k3, iterations=6) > 0)
    ch, cw = hole8.shape
    sh, sw_ = max(ch // 4, 1), max(cw // 4, 1)

    def local(mask):
        m = mask.astype(np.float32)
        s = cv2.GaussianBlur(cv2.resize(m, (sw_, sh), interpolation=cv2.INTER_AREA), (0, 0), 2.5)
        v = cv2.resize(img * m[..., None], (sw_, sh), interpolation=cv2.INTER_AREA)
        v = cv2.GaussianBlur(v, (0, 0), 2.5)
        s = cv2.resize(s, (cw, ch), interpolation=cv2.INTER_LINEAR)
        v = cv2.resize(v, (cw, ch), interpolation=cv2.INTER_LINEAR)
        return v / np.maximum(s, 1e-4)[..., None], s > 1e-3

    bg, bg_ok = local(outer)
    fg, fg_ok = local(inner)
    d_bg = np.linalg.norm(img - bg, axis=2)
    d_fg = np.linalg.norm(img - fg, axis=2)
    out[y0:y1, x0:x1] = ring & bg_ok & fg_ok & (d_bg > 30) & (d_fg < 0.6 * d_bg)
    return out


def _mirrored_grain(rgb: np.ndarray, hole: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """The photo's fine grain (the still less its blur at ``sigma``) carried into ``hole``
    by mirroring every hole pixel across the hole's edge: from the nearest pixel outside,
    as far again outwards. Added onto the smooth fill, grass, gravel or a patterned wall
    go on in grain where the person stood instead of ending at a smooth patch that shows
    as an outline when the person moves (structure plus texture, after Bertalmio et al.
    2003, "Simultaneous structure and texture image inpainting"). Zero outside the hole."""
    h, w = hole.shape
    out = np.zeros((h, w, 3), np.float32)
    inside = hole.astype(np.uint8)
    if not inside.any() or inside.all():
        return out
    img = rgb.astype(np.float32)
    grain = img - cv2.GaussianBlur(img, (0, 0), sigma)
    # Grain, not edges: a pixel whose grain (in brightness) stands out of its
    # neighbourhood's (over twice the median in 31 x 31 pixels) is an edge (a door frame,
    # a kerb) that mirrored would draw a jagged line through the fill; it carries none.
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    mag = cv2.absdiff(grey, cv2.GaussianBlur(grey, (0, 0), sigma))
    typical = cv2.medianBlur(mag, 31).astype(np.int32)
    grain[mag.astype(np.int32) > 2 * typical + 1] = 0
    _, labels = cv2.distanceTransformWithLabels(
        inside, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    oy, ox = np.nonzero(inside == 0)  # label k is the k-th pixel outside, in raster order
    hy, hx = np.nonzero(inside)
    k = labels[hy, hx] - 1
    ny, nx = oy[k], ox[k]
    my = np.clip(2 * ny - hy, 0, h - 1)
    mx = np.clip(2 * nx - hx, 0, w - 1)
    # A mirror image that lands in the hole again (a thin gap between two holes) takes
    # the grain of the nearest pixel outside instead.
    again = inside[my, mx] > 0
    my[again], mx[again] = ny[again], nx[again]
    out[hy, hx] = grain[my, mx]
    return out


def _fill_from(
    rgb: np.ndarray, hole: np.ndarray, source: np.ndarray, soft: bool = True
) -> np.ndarray:
    """``rgb`` with ``hole`` filled from the pixels of ``source`` only (the torso under an
    arm is filled with cloth, not with the background beside the body). Telea inpainting
    at half resolution, where everything outside ``source`` counts as unknown too."""
    h, w = hole.shape
    k = 2
    small = cv2.resize(rgb, (w // k, h // k), interpolation=cv2.INTER_AREA)
    known = cv2.resize(source.astype(np.uint8), (w // k, h // k), interpolation=cv2.INTER_NEAREST)
    known = cv2.erode(known, np.ones((3, 3), np.uint8))
    if known.sum() < 10:
        return fill_background(rgb, hole)
    filled = cv2.inpaint(small, (known == 0).astype(np.uint8), 3, cv2.INPAINT_TELEA)
    filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    if not soft:
        return np.where(hole[..., None], filled, rgb)
    a = cv2.GaussianBlur(hole.astype(np.float32), (0, 0), 1.0)[..., None]
    a = np.maximum(a, hole[..., None].astype(np.float32))
    return (rgb * (1 - a) + filled * a + 0.5).astype(np.uint8)


def part_masks(
    lm: np.ndarray,
    person: np.ndarray,
    arms: dict[str, np.ndarray],
    framing: str,
    still_arms: tuple[str, ...] = (),
    still_legs: bool = False,
    analysis_arms: dict[str, np.ndarray] | None = None,
    rgb: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Bool masks of the parts: the arms (already cut out, see :mod:`layers`), legs
    (full-body stills only: what lies below the hips, split by :func:`_split_legs` along
    the edges of ``rgb``), and the torso with the head (the rest). Limbs that do not move on their own (``still_arms``, ``still_legs``) are
    no parts of their own: they stay one piece with the torso, so no seam can open
    between them and what they rest on."""
    h, w = person.shape
    sw = shoulder_width(lm)
    analysis_arms = analysis_arms or {}
    parts: dict[str, np.ndarray] = {
        f"arm_{s}": arms[s] & person for s in ("left", "right") if s not in still_arms
    }
    taken = np.zeros((h, w), bool)
    for m in parts.values():
        taken |= m
    if framing == "full" and not still_legs:
        # Below the hips every pixel of the person that no moving arm holds belongs to the
        # nearer leg (bones of thigh, shin and foot): wide trousers, a skirt's hem and
        # the gap between touching knees move with a leg, never stay with the pelvis as
        # a strip that the moving leg tears away from. Kept-still arms hanging there are
        # not legs.
        hip_y = (lm[P.L_HIP, 1] + lm[P.R_HIP, 1]) / 2
        rows = np.arange(h)[:, None] > hip_y - 0.05 * sw
        held = taken.copy()
        for s in still_arms:
            held |= analysis_arms.get(s, np.zeros((h, w), bool))
        # The seat between the hip joints, down to the crotch, stays with the pelvis: two
        # legs turning apart about their hips would open a wedge there.
        lh, rh = lm[P.L_HIP, :2].astype(np.float64), lm[P.R_HIP, :2].astype(np.float64)
        crotch = _crotch(lm, person)
        seat = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(seat, np.round(np.array([lh, rh, crotch])).astype(np.int32), 1)
        below = person & rows & ~held & (seat == 0)
        parts["leg_left"], parts["leg_right"] = _split_legs(lm, below, rgb, sw)
        taken |= parts["leg_left"] | parts["leg_right"]
    parts["torso"] = person & ~taken
    return parts


def _crotch(lm: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Where the gap between the legs begins: walking from the middle of the hips towards
    the middle of the knees, the first point past which the photo shows background. The
    seat reaches down to it, so legs turning apart open the gap that is there instead of
    a slit above it. Legs that touch down to the knees (a skirt, trousers pressed together)
    show no gap: 0.7 hip widths below the hips then, clamped to 0.3 to 1.5 hip widths."""
    lh, rh = lm[P.L_HIP, :2].astype(np.float64), lm[P.R_HIP, :2].astype(np.float64)
    mid = (lh + rh) / 2
    hw = max(float(np.linalg.norm(lh - rh)), 1.0)
    knees = (lm[P.L_KNEE, :2] + lm[P.R_KNEE, :2]).astype(np.float64) / 2
    axis = knees - mid
    length = float(np.linalg.norm(axis))
    if length < 1.0 or axis[1] <= 0:
        return mid + np.array([0.0, 0.7 * hw])
    axis /= length
    h, w = person.shape
    run = 0
    for t in np.arange(0.3 * hw, min(1.5 * hw, 0.9 * length), 1.0):
        x, y = np.round(mid + t * axis).astype(int)
        if not (0 <= x < w and 0 <= y < h):
            break
        run = run + 1 if not person[y, x] else 0
        if run >= 3:  # three background pixels in a row: the gap, not a stray hole
            return mid + (t - 2) * axis
    return mid + np.array([0.0, 0.7 * hw])


def _adopt_fragments(parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The torso is one piece: a fragment of it that touches none of its main body (a V
    sign's second fingertip, beyond the arm's cut) goes to the limb it touches most, so it
    moves with that hand instead of floating where it was."""
    torso = parts.get("torso")
    limbs = [n for n in parts if n != "torso"]
    if torso is None or not limbs or not torso.any():
        return parts
    n, labels, stats, _ = cv2.connectedComponentsWithStats(torso.astype(np.uint8), connectivity=8)
    if n <= 2:
        return parts
    main = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    k = np.ones((5, 5), np.uint8)
    for c in range(1, n):
        if c == main:
            continue
        frag = labels == c
        ring = cv2.dilate(frag.astype(np.uint8), k) > 0
        touch = {name: int((ring & parts[name]).sum()) for name in limbs}
        best = max(touch, key=touch.get)
        if touch[best]:
            parts[best] = parts[best] | frag
            parts["torso"] = parts["torso"] & ~frag
    return parts


def _split_legs(
    lm: np.ndarray, below: np.ndarray, rgb: np.ndarray | None, sw: float
) -> tuple[np.ndarray, np.ndarray]:
    """``below`` (the person below the hips) split into the left and the right leg.

    Seeds are thin capsules along each leg's bones; where both claim a pixel, the nearer
    bone's. The rest (wide hems, a shoe's far side) is flooded from the seeds along the
    photo's edges (watershed, Meyer 1994), so a piece of one shoe never rides with the
    other leg however loosely the pose marks the feet. Without ``rgb`` the flood follows
    distance alone.
    """
    h, w = below.shape
    seeds = {}
    chains = {
        "left": (P.L_HIP, P.L_KNEE, P.L_ANKLE, P.L_FOOT),
        "right": (P.R_HIP, P.R_KNEE, P.R_ANKLE, P.R_FOOT),
    }
    for side, (hp, kn, an, ft) in chains.items():
        m = np.zeros((h, w), np.uint8)
        _capsule(m, lm[hp, :2], lm[kn, :2], 0.1 * sw)
        _capsule(m, lm[kn, :2], lm[an, :2], 0.06 * sw)
        _capsule(m, lm[an, :2], lm[ft, :2], 0.03 * sw)
        seeds[side] = (m > 0) & below
    both = seeds["left"] & seeds["right"]
    if both.any():
        ys, xs = np.nonzero(both)
        pts = np.stack([xs, ys], 1).astype(np.float64)
        d = {}
        for side, chain in chains.items():
            p_ = lm[list(chain), :2].astype(np.float64)
            d[side] = np.min([_seg_dist(pts, p_[i], p_[i + 1]) for i in range(3)], axis=0)
        seeds["left"][ys[d["left"] > d["right"]], xs[d["left"] > d["right"]]] = False
        seeds["right"][ys[d["left"] <= d["right"]], xs[d["left"] <= d["right"]]] = False
    markers = np.zeros((h, w), np.int32)
    markers[~below] = 3
    markers[seeds["left"]] = 1
    markers[seeds["right"]] = 2
    if seeds["left"].any() and seeds["right"].any():
        cv2.watershed(rgb if rgb is not None else np.zeros((h, w, 3), np.uint8), markers)
    label = np.where(markers == 1, 0, np.where(markers == 2, 1, -1)).astype(np.int32)
    label[~below] = -1
    label = _nearest_label(label, below) if (label >= 0).any() else label
    return (label == 0) & below, (label == 1) & below


def bone_geometry(lm: np.ndarray, sw: float) -> dict[str, Bone]:
    """Rest geometry of every skinning bone. The trunk has two: the chest (shoulders to the
    waist) follows the shoulders, the pelvis (waist down, and the thighs of a photo cut
    above the feet) follows the hips, so a skirt stays with the hips while the shoulders
    sway."""
    p = lm[:, :2].astype(np.float64)
    nose, mid_s = p[0], (p[11] + p[12]) / 2
    top = nose + (nose - mid_s) * 0.6
    wl, wr = p[11] + 0.55 * (p[23] - p[11]), p[12] + 0.55 * (p[24] - p[12])
    down_l, down_r = p[23] + 1.5 * (p[23] - p[11]), p[24] + 1.5 * (p[24] - p[12])
    return {
        "chest": Bone("chest", mid_s, (wl + wr) / 2, polygon=np.array([p[12], p[11], wl, wr])),
        "pelvis": Bone(
            "pelvis", (wl + wr) / 2, (p[23] + p[24]) / 2, polygon=np.array([wr, wl, down_l, down_r])
        ),  # fmt: skip
        # The pelvis as a leg's own layer hangs from it: at the hips only. The torso's
        # pelvis reaches down over the thighs (a photo cut above the knees moves them with
        # the hips), which in a leg would bind the upper thigh to the hips and bend it.
        "hips": Bone(
            "hips", (wl + wr) / 2, (p[23] + p[24]) / 2, polygon=np.array([wr, wl, p[23], p[24]])
        ),
        "head": Bone("head", nose, top),
        "upper_left": Bone("upper_left", p[11], p[13]),
        "fore_left": Bone("fore_left", p[13], p[19] * 0.5 + p[15] * 0.5),
        "upper_right": Bone("upper_right", p[12], p[14]),
        "fore_right": Bone("fore_right", p[14], p[20] * 0.5 + p[16] * 0.5),
        "thigh_left": Bone("thigh_left", p[23], p[25]),
        "shin_left": Bone("shin_left", p[25], p[31] * 0.5 + p[27] * 0.5),
        "thigh_right": Bone("thigh_right", p[24], p[26]),
        "shin_right": Bone("shin_right", p[26], p[32] * 0.5 + p[28] * 0.5),
    }


LAYER_BONES = {
    "torso": ["chest", "pelvis", "head"],
    "arm_left": ["chest", "upper_left", "fore_left"],
    "arm_right": ["chest", "upper_right", "fore_right"],
    "leg_left": ["hips", "thigh_left", "shin_left"],
    "leg_right": ["hips", "thigh_right", "shin_right"],
}
# (bone, proximal joint, distal joint) of the rigid limb bones.
LIMBS = {
    "upper_left": (11, 13), "fore_left": (13, 15), "upper_right": (12, 14), "fore_right": (14, 16),
    "thigh_left": (23, 25), "shin_left": (25, 27), "thigh_right": (24, 26), "shin_right": (26, 28),
}  # fmt: skip


def _pelvis_frame(p: np.ndarray) -> np.ndarray:
    """Three points that fix the pelvis: the hips and a point below their middle, square
    to the hip line at a fixed distance (so narrowing hips in a turn do not squash it)."""
    lh, rh = p[23], p[24]
    m = (lh + rh) / 2
    d = lh - rh
    n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6)
    if n[1] < 0:  # pointing down the body (image y grows downwards)
        n = -n
    return np.stack([lh, rh, m + n * 100.0])


def bone_transforms(
    rest: np.ndarray, target: np.ndarray, head_turn: float
) -> dict[str, np.ndarray]:
    """2 x 3 affine per bone taking rest pixels to the target pose."""
    out = {
        "chest": affine_fit(rest[[11, 12, 23, 24]], target[[11, 12, 23, 24]]),
        "pelvis": affine_fit(_pelvis_frame(rest), _pelvis_frame(target)),
    }
    out["hips"] = out["pelvis"]  # the same bone, bound over a shorter reach
    out["head"] = rigid(rest[0], target[0], head_turn)
    for name, (a, b) in LIMBS.items():
        v0, v1 = rest[b] - rest[a], target[b] - target[a]
        ang = np.arctan2(v1[1], v1[0]) - np.arctan2(v0[1], v0[0])
        out[name] = rigid(rest[a], target[a], ang)
    return out


def _feather(own: np.ndarray, grow: int = 2) -> np.ndarray:
    """Coverage of a part: 1 on its pixels and ``grow`` pixels past its cut (where the
    part it meets is drawn too, so two parts overlap there instead of each fading out,
    which left a background-coloured seam), then a one-pixel soft fall-off."""
    k = 2 * grow + 1
    grown = cv2.dilate(own.astype(np.uint8), np.ones((k, k), np.uint8)).astype(np.float32)
    soft = cv2.GaussianBlur(grown, (0, 0), 0.8)
    return np.maximum(soft, own.astype(np.float32))


class SkeletalRenderer:
    """Static data of one clip (layers, meshes, background), then frames on demand.

    Args:
        rgb: the still at clip size, ``H x W x 3`` uint8.
        analysis: its person analysis, in clip pixels.
        contact_shadow: draw a soft shadow under the feet (full-body stills).
        still_arms: arms that keep the still's pose (one piece with the torso).
        still_legs: the legs stay planted (one piece with the torso).
        arm_cut: the arms already cut out of this still (:func:`segment_arms`), if any.
    """

    def __init__(
        self,
        rgb: np.ndarray,
        analysis: P.PersonAnalysis,
        contact_shadow: bool = False,
        still_arms: tuple[str, ...] = (),
        still_legs: bool = False,
        arm_cut: dict[str, np.ndarray] | None = None,
    ):
        h, w = rgb.shape[:2]
        self.size = (h, w)
        lm = analysis.landmarks
        self.rest = lm[:, :2].astype(np.float64)
        sw = shoulder_width(lm)
        self.sw = sw
        alpha = np.clip(analysis.mask, 0, 1).astype(np.float32)
        person = alpha > 0.5
        self.still_arms, self.still_legs = tuple(still_arms), bool(still_legs)
        if len(self.still_arms) == 2:
            arms = {s: np.zeros((h, w), bool) for s in ("left", "right")}
        elif arm_cut is not None:
            arms = arm_cut
        else:
            arms = segment_arms(rgb, analysis, person)
        held = {s: analysis.arms[s] | analysis.hands[s] for s in ("left", "right")}
        parts = part_masks(
            lm, person, arms, analysis.framing, self.still_arms, self.still_legs, held, rgb
        )
        # Every pixel of the (soft-edged) person belongs to its nearest part.
        names = list(parts)
        label = np.full((h, w), -1, np.int32)
        for i, n in enumerate(names):
            label[parts[n]] = i
        near = _nearest_label(label, alpha > 0.01)
        self.parts = _adopt_fragments({n: near == i for i, n in enumerate(names)})
        feet = analysis.framing == "full" and not self.still_legs
        # What the plate repainted (quality measures judge ghosting beyond it).
        self.plate = self.plate_hole(alpha, analysis, sw, feet, rgb)
        self.background = fill_background(rgb, self.plate)
        # Behind the arms the torso continues out to the body's edge: those pixels of the
        # torso layer are filled from the torso, so a moving arm uncovers cloth there and
        # background (the plate) beyond it.
        arm_px = np.zeros((h, w), bool)
        for n in ("arm_left", "arm_right"):
            if n in self.parts:
                arm_px |= self.parts[n]
        self.behind = torso_behind(self.parts["torso"], arm_px, lm)
        torso_rgb = rgb
        if self.behind.any():
            # Exactly under the arms: a fill reaching past them would change the torso's
            # own pixels beside the arm, and the arm's soft edge, drawn over them, would
            # mix in the fill even in the first frame.
            torso_rgb = _fill_from(rgb, self.behind, self.parts["torso"] & ~arm_px, soft=False)
        geo = bone_geometry(lm, sw)
        spacing = float(np.clip(sw / 7.0, 8.0, 40.0))
        self.layers: list[Layer] = []
        for n in names:
            # Layers overlap across every joint (each reaches a little past its cut, the
            # torso all the way behind the arms), so nothing between two parts is ever
            # left uncovered; drawn back to front, the front part hides the overlap.
            a = alpha * _feather(self.parts[n])
            rgb_n = rgb
            if n == "torso":
                a = np.maximum(a, alpha * _feather(self.behind))
                rgb_n = torso_rgb
            elif n.startswith("leg_"):
                # A leg reaches up under the torso to the waist on its own side: drawn
                # behind the torso, it is hidden at rest, and when the leg turns out at
                # the hip it shows the hip continuing instead of a notch of background.
                a = np.maximum(a, alpha * self._under_torso(n, lm, sw))
            if (a > 0.5).sum() < 30:
                continue
            # The mesh reaches well past the soft edge: the half-resolution raster loses up
            # to two pixels along the mesh's border, which must fall where alpha is 0.
            region = cv2.dilate((a > 0.02).astype(np.uint8), np.ones((13, 13), np.uint8))
            sp = spacing if n == "torso" else spacing * 0.8
            v, tri = build_mesh(region, sp)
            if len(tri) == 0:
                continue
            # Thin wedges (a shoulder's cap, a wisp of hair) can lose their triangles to
            # the sliver filter; pixels the layer shows must be in its mesh, or the frame
            # shows the plate there even at rest: add vertices on what was missed.
            missed = (a > 0.05) & ~_raster(v, tri, (h, w))
            if missed.any():
                ys, xs = np.nonzero(missed)
                extra = np.unique(np.stack([xs, ys], 1) // 3 * 3, axis=0).astype(np.float64)
                v, tri = build_mesh(region, sp, extra=extra)
            bones = LAYER_BONES[n]
            wts = skin_weights(v, [geo[b] for b in bones], sigma=0.12 * sw)
            tex = (rgb_n.astype(np.float32) * a[..., None] + 0.5).astype(np.uint8)
            alpha8 = (a * 255.0 + 0.5).astype(np.uint8)
            self.layers.append(Layer(n, tex, alpha8, ArapMesh(v, tri, wts, (h, w)), bones))
        self.contact_shadow = contact_shadow and analysis.framing == "full"

    def _under_torso(self, leg: str, lm: np.ndarray, sw: float) -> np.ndarray:
        """The torso's pixels from the waist down (the hips and the seat) on ``leg``'s
        side of the body's axis and a tenth of a shoulder width past it (float mask): as
        the legs part, each carries a little of the seat's other half, which fills the
        notches that would open beside the seat's tip."""
        h, w = self.size
        torso = self.parts["torso"]
        hip_y = float(lm[[23, 24], 1].mean())
        mid_x = float(lm[[23, 24], 0].mean())
        ys, xs = np.mgrid[0:h, 0:w]
        band = ys > hip_y - 0.3 * sw  # down through the seat to the crotch
        # The person's left hip is at the larger x when they face the camera; follow the
        # landmarks, not an assumption about facing.
        left_is_right = lm[23, 0] > lm[24, 0]
        over = 0.1 * sw
        on_right = (leg == "leg_left") == left_is_right
        side = (xs >= mid_x - over) if on_right else (xs < mid_x + over)
        return (torso & band & side).astype(np.float32)

    @staticmethod
    def plate_hole(
        alpha: np.ndarray,
        analysis: P.PersonAnalysis,
        sw: float,
        free_feet: bool = False,
        rgb: np.ndarray | None = None,
    ) -> np.ndarray:
        """What the background plate must repaint: the person grown past the segmentation's
        soft edge (hair wisps and motion-blurred hands reach beyond it and would stay in
        the plate as a ghost outline once the person moves away), the hands more, as far
        as spread fingers reach, and the feet of legs that move (``free_feet``). Given the
        photo (``rgb``), the hole then grows twice over its border where that still looks
        like the person rather than the background (:func:`person_halo`): a shoe's soft
        shadow or a blurred sleeve the mask and the fixed margins missed."""
        r = int(max(4, round(0.035 * sw)))
        hole = cv2.dilate((alpha > 0.02).astype(np.uint8), cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))  # fmt: skip
        hands = np.zeros_like(hole)
        lm = analysis.landmarks
        for side, (wr, idx, pky) in {"left": (15, 19, 17), "right": (16, 20, 18)}.items():
            hands |= analysis.hands[side].astype(np.uint8)
            # Spread fingers (a V sign, a wave) reach a hand's length past the knuckles
            # that the pose marks, thinner than any mask finds them: repaint that far, or
            # the fingertips stay in the plate. Kept-still hands too: they ride on the
            # chest as it sways, and a V sign's fingertip stayed in the sky.
            if lm[wr, 3] >= 0.5:
                knuckles = (lm[idx, :2] + lm[pky, :2]) / 2
                reach = knuckles + 1.5 * (knuckles - lm[wr, :2])
                r_h = 0.6 * float(np.linalg.norm(knuckles - lm[wr, :2])) + 2
                _capsule(hands, lm[wr, :2], reach, r_h)
        if free_feet:
            # A shoe's outline, thin against a white floor, escapes the mask like fingers.
            for heel, toe in ((29, 31), (30, 32)):
                if lm[heel, 3] >= 0.5 and lm[toe, 3] >= 0.5:
                    _capsule(hands, lm[heel, :2], lm[toe, :2], 0.12 * sw)
        if hands.any():
            rh = int(max(6, round(0.08 * sw)))
            hole |= cv2.dilate(hands, cv2.getStructuringElement(
                cv2.MORPH_ELLIPSE, (2 * rh + 1, 2 * rh + 1)))  # fmt: skip
        hole = hole > 0
        if rgb is not None:
            for _ in range(2):
                halo = person_halo(rgb, hole, alpha)
                if not halo.any():
                    break
                hole |= cv2.dilate(halo.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        return hole

    # ------------------------------------------------------------------ per frame

    def deform(self, target: np.ndarray, head_turn: float) -> list[np.ndarray]:
        """Deformed vertex positions of every layer for one target pose."""
        tf = bone_transforms(self.rest, target, head_turn)
        return [layer.mesh.deform(np.stack([tf[b] for b in layer.bones])) for layer in self.layers]

    def order(self, behind: tuple[bool, bool]) -> list[int]:
        """Back-to-front layer indices: legs, arms that are behind, torso, arms in front."""
        rank = {"leg_left": 0, "leg_right": 0, "torso": 2}
        rank["arm_left"] = 1 if behind[0] else 3
        rank["arm_right"] = 1 if behind[1] else 3
        return sorted(range(len(self.layers)), key=lambda i: rank[self.layers[i].name])

    def render(
        self,
        positions: list[np.ndarray],
        behind: tuple[bool, bool] = (False, False),
        target: np.ndarray | None = None,
        coverage: np.ndarray | None = None,
    ) -> np.ndarray:
        """One RGB frame from deformed layer meshes.

        Args:
            positions: deformed vertices per layer (:meth:`deform`).
            behind: whether each arm (left, right) is drawn behind the torso.
            target: the target pose (for the contact shadow).
            coverage: optional ``H x W`` float32 array, filled with the person's composite
                alpha in this frame (for quality measures: 1 where the person hides the
                background, 0 where the plate shows).
        """
        out = self.background.copy()
        if self.contact_shadow and target is not None:
            _shadow(out, target, self.rest, self.sw)
        if coverage is not None:
            coverage[:] = 0.0
        for i in self.order(behind):
            self._draw(out, self.layers[i], positions[i], coverage)
        return out

    def _draw(
        self, out: np.ndarray, layer: Layer, p: np.ndarray, coverage: np.ndarray | None = None
    ) -> None:
        h, w = self.size
        x0 = max(int(np.floor(p[:, 0].min())) - 2, 0)
        y0 = max(int(np.floor(p[:, 1].min())) - 2, 0)
        x1 = min(int(np.ceil(p[:, 0].max())) + 3, w)
        y1 = min(int(np.ceil(p[:, 1].max())) + 3, h)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        lw, lh = (x1 - x0 + 1) // 2, (y1 - y0 + 1) // 2
        tri = layer.mesh.tri
        # Half-resolution pixel (u, v) stands for full-resolution (x0 + 2u + 0.5, ...),
        # which makes cv2.resize's x2 linear upsampling exact for affine maps.
        q = (p - [x0 + 0.5, y0 + 0.5]) / 2.0
        ids = np.full((lh, lw), -1, np.int32)
        fixed = np.round(q * 16).astype(np.int32)[tri]  # 4 fractional bits
        for k in range(len(tri)):
            cv2.fillConvexPoly(ids, fixed[k], int(k), lineType=cv2.LINE_8, shift=4)
        inv = _backward_affines(p, layer.mesh.rest, tri)  # F x 2 x 3: output -> still
        valid = ids >= 0
        vy, vx = np.nonzero(valid)
        t = ids[vy, vx]
        fx = x0 + 2.0 * vx + 0.5
        fy = y0 + 2.0 * vy + 0.5
        mapx = np.full((lh, lw), FAR, np.float32)
        mapy = np.full((lh, lw), FAR, np.float32)
        a = inv[t]
        mapx[vy, vx] = a[:, 0, 0] * fx + a[:, 0, 1] * fy + a[:, 0, 2]
        mapy[vy, vx] = a[:, 1, 0] * fx + a[:, 1, 1] * fy + a[:, 1, 2]
        bw, bh = x1 - x0, y1 - y0
        mx = cv2.resize(mapx, (2 * lw, 2 * lh), interpolation=cv2.INTER_LINEAR)[:bh, :bw]
        my = cv2.resize(mapy, (2 * lw, 2 * lh), interpolation=cv2.INTER_LINEAR)[:bh, :bw]
        # A pixel whose interpolation touched a FAR sample (weight >= 1/4 in a x2 linear
        # upsampling) maps far outside the texture, so remap reads the transparent border.
        # A pixel that maps just past the still's edge (the body cut by the frame, moved a
        # little inwards) reads the edge pixel, not the transparent border: the cut body
        # stays on the frame's edge. FAR stays far.
        np.clip(mx, 0, w - 1, out=mx, where=mx > FAR / 2)
        np.clip(my, 0, h - 1, out=my, where=my > FAR / 2)
        kw = {"borderMode": cv2.BORDER_CONSTANT, "borderValue": 0}
        rgb = cv2.remap(layer.texture, mx, my, cv2.INTER_LINEAR, **kw)
        alpha = cv2.remap(layer.alpha, mx, my, cv2.INTER_LINEAR, **kw)
        # "Over" with premultiplied colour: out = out * (1 - a) + rgb, in OpenCV's
        # saturating, multithreaded uint8 arithmetic.
        region = out[y0:y1, x0:x1]
        inv_a = cv2.cvtColor(cv2.bitwise_not(alpha), cv2.COLOR_GRAY2RGB)
        region[:] = cv2.add(cv2.multiply(region, inv_a, scale=1.0 / 255.0), rgb)
        if coverage is not None:
            a = alpha.astype(np.float32) / 255.0
            cov = coverage[y0:y1, x0:x1]
            cov[:] = cov * (1.0 - a) + a


def _raster(v: np.ndarray, tri: np.ndarray, shape) -> np.ndarray:
    """Pixels covered by the triangles (for checking a mesh against its cut-out)."""
    out = np.zeros(shape, np.uint8)
    cv2.fillPoly(out, list(np.round(v[tri] * 4).astype(np.int32)), 1, cv2.LINE_8, shift=2)
    return out > 0


def _backward_affines(p: np.ndarray, rest: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Per triangle, the affine taking deformed positions back to rest positions."""
    a, b, c = p[tri[:, 0]], p[tri[:, 1]], p[tri[:, 2]]
    m = np.stack([b - a, c - a], -1)  # F x 2 x 2, columns are edges
    det = m[:, 0, 0] * m[:, 1, 1] - m[:, 0, 1] * m[:, 1, 0]
    det = np.where(np.abs(det) < 1e-9, 1e-9, det)
    minv = (
        np.stack(
            [np.stack([m[:, 1, 1], -m[:, 0, 1]], -1), np.stack([-m[:, 1, 0], m[:, 0, 0]], -1)], 1
        )
        / det[:, None, None]
    )
    ra, rb, rc = rest[tri[:, 0]], rest[tri[:, 1]], rest[tri[:, 2]]
    r = np.stack([rb - ra, rc - ra], -1)
    lin = r @ minv  # F x 2 x 2
    off = ra - np.einsum("fij,fj->fi", lin, a)
    return np.concatenate([lin, off[..., None]], -1)


def _nearest_label(label: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Each pixel in ``where`` gets the label of the nearest labelled pixel."""
    if (label >= 0).all():
        return label
    _d, idx = cv2.distanceTransformWithLabels(
        (label < 0).astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )
    ys, xs = np.nonzero(label >= 0)
    lut = np.full(idx.max() + 1, -1, np.int32)
    lut[idx[ys, xs]] = label[ys, xs]
    out = lut[idx]
    out[~where & (label < 0)] = -1
    return out


def _shadow(out: np.ndarray, target: np.ndarray, rest: np.ndarray, sw: float) -> None:
    """A soft contact shadow under each foot: an ellipse on the ground, darker the nearer
    the foot is to the ground (Drop shadows of an ambient-occlusion kind)."""
    h, w = out.shape[:2]
    ground = rest[[29, 30, 31, 32], 1].max()
    shade = np.zeros((h, w), np.float32)
    for heel, toe in ((29, 31), (30, 32)):
        cx = float((target[heel, 0] + target[toe, 0]) / 2)
        lift = max(0.0, ground - float(max(target[heel, 1], target[toe, 1])))
        strength = float(np.exp(-lift / (0.3 * sw)))
        cv2.ellipse(
            shade, (int(cx), int(ground)), (int(0.35 * sw), int(0.07 * sw)), 0, 0, 360, strength, -1
        )
    shade = cv2.GaussianBlur(shade, (0, 0), 0.08 * sw)
    out[:] = (out * (1 - 0.35 * shade[..., None])).astype(np.uint8)
