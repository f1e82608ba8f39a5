"""Retargeting: a motion template performed by the person in the still.

The template's movement is applied as *changes* to the still's own skeleton: every bone
turns by the angle its template counterpart turned since the template's first frame, and
keeps the still's length (across-body segments, the shoulder and hip half-widths, scale by
the template's foreshortening so turns read as turns). The root (mid-hip) moves by the
template's root motion scaled by the ratio of torso lengths, and for full-body motions the
feet are put back on the still's ground line. So the clip's first frame is the still's own
pose (no jump), limb lengths never change (no stretching), and the template's performer's
proportions and placement do not matter.

Poses are handled as :class:`PoseParams` (root offset, bone-angle changes, width ratios)
so that easing and blending interpolate angles, never positions: an eased or blended pose
still has the still's bone lengths.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from services.animate.layers import CONTACT_SHARE
from services.animate.motions import Motion
from services.common.errors import InvalidInputError

HIP, SHO = -1, -2  # virtual joints: mid-hip and mid-shoulder
# (parent, child, kind) in topological order. kind: "rigid" keeps the still's length,
# "width" scales with the template's foreshortening.
BONES: tuple[tuple[int, int, str], ...] = (
    (HIP, SHO, "rigid"),
    (SHO, 11, "width"), (SHO, 12, "width"), (HIP, 23, "width"), (HIP, 24, "width"),
    (SHO, 0, "rigid"),
    (11, 13, "rigid"), (13, 15, "rigid"), (15, 17, "rigid"), (15, 19, "rigid"), (15, 21, "rigid"),
    (12, 14, "rigid"), (14, 16, "rigid"), (16, 18, "rigid"), (16, 20, "rigid"), (16, 22, "rigid"),
    (23, 25, "rigid"), (25, 27, "rigid"), (27, 29, "rigid"), (27, 31, "rigid"),
    (24, 26, "rigid"), (26, 28, "rigid"), (28, 30, "rigid"), (28, 32, "rigid"),
)  # fmt: skip
FACE = tuple(range(1, 11))  # rigid with the head (nose), turning with the ear line
LEG_BONES = tuple(i for i, b in enumerate(BONES) if b[1] >= 25)
LIMB_BONES = tuple(
    i for i, b in enumerate(BONES) if b[2] == "rigid" and b[1] in (13, 15, 14, 16, 25, 27, 26, 28)
)
EASE_SECONDS = 0.5
ARM_JOINTS = {"left": (11, 13, 15), "right": (12, 14, 16)}  # shoulder, elbow, wrist


def _joint(pts: np.ndarray, j: int) -> np.ndarray:
    if j == HIP:
        return (pts[..., 23, :] + pts[..., 24, :]) / 2
    if j == SHO:
        return (pts[..., 11, :] + pts[..., 12, :]) / 2
    return pts[..., j, :]


def _angle(v: np.ndarray) -> np.ndarray:
    return np.arctan2(v[..., 1], v[..., 0])


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


@dataclasses.dataclass
class PoseParams:
    """Poses relative to the still's rest pose.

    Attributes:
        root: ``N x 2`` offset of the mid-hip from its rest position, pixels.
        turn: ``N x B`` change of each bone's angle (radians) from rest.
        scale: ``N x B`` bone length over rest length (1 for rigid bones).
        head: ``N`` change of the ear line's angle (turns the face).
    """

    root: np.ndarray
    turn: np.ndarray
    scale: np.ndarray
    head: np.ndarray

    def __len__(self) -> int:
        return int(self.root.shape[0])

    def take(self, idx) -> PoseParams:
        return PoseParams(self.root[idx], self.turn[idx], self.scale[idx], self.head[idx])

    @staticmethod
    def concat(parts: list[PoseParams]) -> PoseParams:
        return PoseParams(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("root", "turn", "scale", "head")
            )
        )


def blend(a: PoseParams, b: PoseParams, w: np.ndarray) -> PoseParams:
    """Per-frame blend ``(1 - w) a + w b``, angles along the shorter way round."""
    w1 = w[:, None]
    return PoseParams(
        root=a.root + (b.root - a.root) * w1,
        turn=a.turn + _wrap(b.turn - a.turn) * w1,
        scale=a.scale + (b.scale - a.scale) * w1,
        head=a.head + _wrap(b.head - a.head) * w,
    )


def pose_from_params(rest: np.ndarray, p: PoseParams) -> np.ndarray:
    """Forward kinematics: ``N x 33 x 2`` keypoints of the rest skeleton posed by ``p``."""
    n = len(p)
    out = np.zeros((n, 33, 2), np.float64)
    virt = {HIP: _joint(rest, HIP)[None] + p.root}
    for bi, (par, ch, _kind) in enumerate(BONES):
        base = virt[par] if par < 0 else out[:, par]
        v = _joint(rest, ch) - _joint(rest, par)
        ang = _angle(v) + p.turn[:, bi]
        length = np.hypot(*v) * p.scale[:, bi]
        pt = base + np.stack([np.cos(ang), np.sin(ang)], -1) * length[:, None]
        if ch < 0:
            virt[ch] = pt
        else:
            out[:, ch] = pt
    # The shoulders hang off the mid-shoulder point; the mid-shoulder must stay their mean,
    # which holds because both width bones turn and scale alike (they are placed that way).
    c, s = np.cos(p.head), np.sin(p.head)
    for i in FACE:
        off = rest[i] - rest[0]
        out[:, i, 0] = out[:, 0, 0] + c * off[0] - s * off[1]
        out[:, i, 1] = out[:, 0, 1] + s * off[0] + c * off[1]
    return out


def params_of(rest: np.ndarray, pts: np.ndarray) -> PoseParams:
    """The parameters that pose ``rest`` as ``pts`` (``N x 33 x 2``); exact for poses made
    by :func:`pose_from_params` of the same rest."""
    n = pts.shape[0]
    turn = np.zeros((n, len(BONES)))
    scale = np.ones((n, len(BONES)))
    for bi, (par, ch, kind) in enumerate(BONES):
        v0 = _joint(rest, ch) - _joint(rest, par)
        v = _joint(pts, ch) - _joint(pts, par)
        turn[:, bi] = _wrap(_angle(v) - _angle(v0))
        if kind == "width":
            scale[:, bi] = np.hypot(v[:, 0], v[:, 1]) / max(np.hypot(*v0), 1e-6)
    ear0 = _angle(rest[7] - rest[8])
    head = _wrap(_angle(pts[:, 7] - pts[:, 8]) - ear0)
    root = _joint(pts, HIP) - _joint(rest, HIP)
    return PoseParams(root, turn, scale, head)


@dataclasses.dataclass
class Targets:
    """What the renderer follows.

    Attributes:
        points: ``N x 33 x 2`` target keypoints in clip pixels.
        params: the same poses as parameters (for chaining and blending).
        behind: ``N x 2`` bool, the person's left / right arm is behind the torso.
        moved: ``33`` bool, keypoints the motion drives (legs are not in upper-body motions).
        still_arms: arms kept in the still's pose (they move with the chest as one piece
            with the torso; see :func:`arms_to_keep_still`).
        still_legs: the legs stay planted (an upper-body motion, or legs that touch each
            other in the still); they are one piece with the torso.
        arm_cut: the arms cut out of the still where fitting the motion already made
            them (:func:`services.animate.layers.segment_arms`), so the renderer reuses it.
        leg_turn_wanted: the largest leg turn (degrees) the motion asked for, before any
            ``leg_turn_limit`` clamped it.
        head_tilt_wanted: the largest tilt of the head or swing of the neck against the
            chest (degrees) the motion asked for, before any ``head_tilt_limit``.
        travel_wanted: how far the motion moved the hips (torso lengths), before any
            ``travel_limit``.
        width_wanted: the smallest and largest width scale the motion asked for, before
            any ``width_range``.
    """

    points: np.ndarray
    params: PoseParams
    behind: np.ndarray
    moved: np.ndarray
    still_arms: tuple[str, ...] = ()
    still_legs: bool = True
    arm_cut: dict[str, np.ndarray] | None = None
    leg_turn_wanted: float = 0.0
    head_tilt_wanted: float = 0.0
    travel_wanted: float = 0.0
    width_wanted: tuple[float, float] = (1.0, 1.0)


def sample_times(motion: Motion, fps: float, frames: int) -> np.ndarray:
    """Template frame positions (fractional) for ``frames`` clip frames at ``fps``:
    repeated passes for longer clips (wrapping for looping motions, restarting
    otherwise)."""
    t = np.arange(frames) / fps * motion.fps
    n = motion.frame_count
    return t % n if motion.loops or n == 1 else np.minimum(t % (n + 0.0), n - 1)


def _resample(x: np.ndarray, pos: np.ndarray, loops: bool) -> np.ndarray:
    """Linear interpolation of per-frame values ``x`` (N x ...) at fractional ``pos``."""
    n = x.shape[0]
    i0 = np.floor(pos).astype(int)
    frac = (pos - i0).reshape(-1, *([1] * (x.ndim - 1)))
    i1 = (i0 + 1) % n if loops else np.minimum(i0 + 1, n - 1)
    i0 = np.clip(i0, 0, n - 1)
    return x[i0] * (1 - frac) + x[i1] * frac


def retarget(
    motion: Motion,
    rest: np.ndarray,
    framing: str,
    fps: float,
    frames: int,
    loop: bool = False,
    start: np.ndarray | None = None,
    still_arms: tuple[str, ...] = (),
    still_legs: bool = False,
    leg_turn_limit: float | None = None,
    head_tilt_limit: float | None = None,
    travel_limit: float | None = None,
    width_range: tuple[float, float] | None = None,
) -> Targets:
    """Map ``motion`` onto the skeleton ``rest`` (the still's landmarks in clip pixels).

    Args:
        motion: the template.
        rest: ``33 x 2`` landmarks of the still, in clip pixels.
        framing: the still's framing, "half" or "full".
        fps: clip frame rate.
        frames: clip length in frames.
        loop: blend the end into the start so the clip loops.
        start: ``33 x 2`` pose to start from (chaining), eased into the motion.
        still_arms: arms ("left", "right") kept in the still's pose (see
            :func:`arms_to_keep_still`); they move with the chest only.
        still_legs: keep the legs planted in the still's pose even for a full-body motion
            (legs that touch each other cannot be moved apart cleanly): the motion is played
            as its upper-body variant, hips anchored.
        leg_turn_limit: largest turn (degrees) of a thigh, shin or foot away from the
            still's pose; larger turns are clamped (the cut-out legs bend cleanly only
            so far). ``Targets.clamped`` says how far the motion wanted to go.
        head_tilt_limit: largest tilt (degrees) of the head, and swing of the neck, against
            the chest; larger ones are clamped (a head cut out of a photo turns on its neck
            cleanly only so far). ``Targets.head_tilt_wanted`` says how far the motion went.
        travel_limit: largest move of the hips from where the still has them, in torso
            lengths; a motion that travels further is played with its path scaled down
            (the person stays in the frame, and a dance's steps across a room stay steps).
        width_range: smallest and largest scale of the shoulders' and hips' width; a turn
            that would squeeze the photo's torso to a sliver (a model turning round) or
            widen it is played only so far.

    Raises:
        InvalidInputError: MOTION_FRAMING_MISMATCH for a full-body motion on a half-body
            still (the legs it moves are not in the photo).
    """
    if motion.framing == "full" and framing != "full":
        raise InvalidInputError(
            "MOTION_FRAMING_MISMATCH",
            f"motion {motion.name!r} moves the legs, but the still shows the person from the"
            " hips up; choose an upper-body motion",
            field="template_name",
        )
    rest = rest.astype(np.float64)
    tmpl = motion.pixels().astype(np.float64)
    pos = sample_times(motion, fps, frames)
    t = _resample(tmpl, pos, motion.loops)
    ref = tmpl[0]
    # Changes since the template's first frame, applied to the still.
    tp = params_of(ref, t)
    k = np.linalg.norm(_joint(rest, SHO) - _joint(rest, HIP)) / max(
        np.linalg.norm(_joint(ref, SHO) - _joint(ref, HIP)), 1e-6
    )
    root = tp.root * k
    turn, scale, head = tp.turn.copy(), tp.scale.copy(), tp.head.copy()
    torso = float(np.linalg.norm(_joint(rest, SHO) - _joint(rest, HIP)))
    travel = float(np.linalg.norm(root, axis=1).max()) / max(torso, 1e-6) if len(root) else 0.0
    if travel_limit is not None and travel > travel_limit:
        root *= travel_limit / travel
    spine = next(bi for bi, b in enumerate(BONES) if b[:2] == (HIP, SHO))
    width = [bi for bi, b in enumerate(BONES) if b[2] == "width"]
    widths = (float(scale[:, width].min()), float(scale[:, width].max())) if len(scale) else (1, 1)
    if width_range is not None:
        scale[:, width] = np.clip(scale[:, width], *width_range)
        # The shoulder and hip lines tilt against the spine no further than a head tilts
        # (a misread hip line in a video turned the photo's pelvis on its side).
        lim = np.radians(head_tilt_limit if head_tilt_limit is not None else 15.0)
        for bi in width:
            rel = _wrap(turn[:, bi] - turn[:, spine])
            turn[:, bi] = turn[:, spine] + np.clip(rel, -lim, lim)
    moved = np.ones(33, bool)
    upper = motion.framing == "upper" or still_legs
    if upper:
        # The hips are the anchor of an upper-body motion: they and the legs stay put.
        root[:] = 0.0
        for bi, (_par, ch, _kind) in enumerate(BONES):
            if ch in (23, 24) or bi in LEG_BONES:
                turn[:, bi] = 0.0
                scale[:, bi] = 1.0
        moved[25:] = False
    for side in still_arms:
        # The arm keeps its angles to the chest: it turns only as the chest turns.
        for bi, (par, _ch, _kind) in enumerate(BONES):
            if par in ARM_JOINTS[side]:
                turn[:, bi] = turn[:, spine]
    # An ear line has no direction: a performer turning round swaps the ears, which is no
    # roll of the head (a model's turn on the catwalk read as a 180 degree roll).
    head = (head + np.pi / 2) % np.pi - np.pi / 2
    neck = next(bi for bi, b in enumerate(BONES) if b[:2] == (SHO, 0))
    tilt = np.stack([_wrap(head - turn[:, spine]), _wrap(turn[:, neck] - turn[:, spine])], 1)
    tilt_wanted = float(np.degrees(np.abs(tilt).max())) if len(tilt) else 0.0
    if head_tilt_limit is not None:
        lim = np.radians(head_tilt_limit)
        head = turn[:, spine] + np.clip(tilt[:, 0], -lim, lim)
        turn[:, neck] = turn[:, spine] + np.clip(tilt[:, 1], -lim, lim)
    clamped = 0.0
    if leg_turn_limit is not None and not upper:
        lim = np.radians(leg_turn_limit)
        legs = list(LEG_BONES)
        # A limb's turn is relative to the image; the thigh's own turn is what bends it
        # at the hip, the shin's and foot's are measured against the thigh's.
        clamped = float(np.degrees(np.abs(turn[:, legs]).max())) if legs else 0.0
        turn[:, legs] = np.clip(turn[:, legs], -lim, lim)
    params = PoseParams(root, turn, scale, head)
    pts = pose_from_params(rest, params)
    if not upper:
        lift_limit = travel_limit * torso if travel_limit is not None else None
        pts, params = _ground(rest, ref, t, pts, params, k, lift_limit)
    ease = max(1, int(round(EASE_SECONDS * fps)))
    if loop and frames > 2:
        # Cross-fade the last frames towards the first, so frame N (= frame 0 on repeat)
        # follows frame N-1 smoothly. Looping motions whose passes fit exactly need none.
        passes = frames / fps * motion.fps / motion.frame_count
        if not (motion.loops and abs(passes - round(passes)) < 1e-6):
            e = min(ease * 2, frames - 1)
            w = np.zeros(frames)
            f = np.arange(frames - e, frames)
            x = (f - (frames - e) + 1) / (e + 1)
            w[frames - e :] = x * x * (3 - 2 * x)
            params = blend(params, params.take(np.zeros(frames, int)), w)
    if start is not None:
        sp = params_of(rest, start[None].astype(np.float64)).take(np.zeros(frames, int))
        x = np.clip(np.arange(frames) / ease, 0, 1)
        params = blend(sp, params, x * x * (3 - 2 * x))
    pts = pose_from_params(rest, params)
    behind = _behind(t, ref)
    return Targets(
        points=pts, params=params, behind=behind, moved=moved, still_arms=tuple(still_arms),
        still_legs=upper, leg_turn_wanted=clamped, head_tilt_wanted=tilt_wanted,
        travel_wanted=travel, width_wanted=widths,
    )  # fmt: skip


def _ground(rest, ref, t, pts, params: PoseParams, k: float, lift_limit: float | None = None):
    """Keep the feet on the still's ground: the lowest foot point is where the template
    says it is relative to its own ground, scaled to the person (a jump lifts them, at
    most ``lift_limit`` pixels)."""
    feet = [27, 28, 29, 30, 31, 32]
    ground_rest = rest[feet, 1].max()
    ground_tmpl = ref[feet, 1].max()
    lift = np.maximum(ground_tmpl - t[:, feet, 1].max(axis=1), 0.0) * k  # both feet off
    if lift_limit is not None:
        lift = np.minimum(lift, lift_limit)
    dy = (ground_rest - lift) - pts[:, feet, 1].max(axis=1)
    root = params.root.copy()
    root[:, 1] += dy
    p = PoseParams(root, params.turn, params.scale, params.head)
    return pose_from_params(rest, p), p


def _behind(t: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per frame, whether each arm (person's left, right) swings behind the torso: the arm
    on the side the performer turned towards goes back (judged from where the nose sits
    between the shoulders, relative to the first frame)."""

    def ratio(p):
        span = p[..., 11, 0] - p[..., 12, 0]
        span = np.where(np.abs(span) < 1e-6, 1e-6, span)
        return (p[..., 0, 0] - p[..., 12, 0]) / span

    d = ratio(t) - ratio(ref)
    return np.stack([d > 0.12, d < -0.12], -1)


def arms_to_keep_still(
    lm: np.ndarray, size: tuple[int, int], contact: dict[str, float] | None = None
) -> dict[str, str]:
    """Arms a motion must not move on this photo, with the reason: an arm the photo does
    not show whole (elbow or wrist unseen or out of the frame: moving it would reveal
    what is not there), or an arm that rests on the body (a hand on the hip or in the
    hair, an arm held against the side, crossed arms: lifting it would uncover what the
    photo never showed and tear it from the clothes; it moves with the chest, as one piece
    with the torso).

    Args:
        lm: ``33 x 4`` landmarks (pixels, visibility last) of the still in clip pixels.
        size: ``(height, width)``.
        contact: :func:`services.animate.layers.limb_contact` of the still; without it,
            only a bent arm with the hand at the hip counts as resting.

    Returns:
        ``{side: reason}``.
    """
    h, w = size
    sw = float(np.linalg.norm(lm[11, :2] - lm[12, :2]))
    out = {}
    for side, (s, e, wr) in ARM_JOINTS.items():
        seen = all(lm[j, 3] >= 0.5 and 0 <= lm[j, 0] < w and 0 <= lm[j, 1] < h for j in (s, e, wr))
        if not seen:
            out[side] = "the photo does not show the whole arm"
            continue
        hip = 23 if side == "left" else 24
        upper, fore = lm[s, :2] - lm[e, :2], lm[wr, :2] - lm[e, :2]
        cos = float(upper @ fore / max(np.linalg.norm(upper) * np.linalg.norm(fore), 1e-6))
        bent = cos > np.cos(np.radians(130))  # elbow angle under 130 degrees
        on_hip = np.linalg.norm(lm[wr, :2] - lm[hip, :2]) < 0.45 * sw
        if bent and on_hip:
            out[side] = "the hand rests on the hip"
        elif contact is not None and contact.get(side, 0.0) >= CONTACT_SHARE:
            out[side] = (
                f"the arm rests on the body ({contact[side]:.0%} of its length touches it, "
                "so moving it would uncover what the photo does not show)"
            )
    return out


# How far (degrees, against the spine) an arm bone of the still may be from the motion's
# first frame for the motion's arm movement to apply: the motion is played as changes of
# angle, and from a pose that far away the same changes make another gesture (arms that
# open from the sides cross over the head when they start raised).
ARM_POSE_TOLERANCE = 60.0


def arms_off_the_motion(lm: np.ndarray, motion: Motion) -> dict[str, str]:
    """Arms whose pose in the still is too far from the motion's starting pose for the
    motion's arm movement to make sense on them, with the reason.

    Args:
        lm: ``33 x 2+`` landmarks of the still (pixels).
        motion: the template.

    Returns:
        ``{side: reason}``.
    """
    ref = motion.pixels()[0].astype(np.float64)
    p = lm[:, :2].astype(np.float64)

    def rel_angles(pts: np.ndarray, s: int, e: int, wr: int) -> np.ndarray:
        spine = _joint(pts, SHO) - _joint(pts, HIP)
        base = np.arctan2(spine[1], spine[0])
        return np.array([np.arctan2(*(pts[b] - pts[a])[::-1]) - base for a, b in ((s, e), (e, wr))])

    out = {}
    for side, (s, e, wr) in ARM_JOINTS.items():
        d = np.degrees(np.abs(_wrap(rel_angles(p, s, e, wr) - rel_angles(ref, s, e, wr))))
        if d.max() > ARM_POSE_TOLERANCE:
            out[side] = (
                f"its pose in the photo is {d.max():.0f} degrees from where the motion starts"
                " the arm's movement, which would make another gesture of it"
            )
    return out


def legs_touch(contact: dict[str, float]) -> bool:
    """Whether the legs of a full-body still touch each other (together, crossed): a
    step would tear them apart, so a full-body motion keeps them planted."""
    return contact.get("legs", 0.0) >= CONTACT_SHARE


def bone_lengths(pts: np.ndarray) -> np.ndarray:
    """``... x B`` lengths of every bone (for checks: rigid bones keep theirs)."""
    out = []
    for par, ch, _kind in BONES:
        v = _joint(pts, ch) - _joint(pts, par)
        out.append(np.hypot(v[..., 0], v[..., 1]))
    return np.stack(out, -1)


def rigid_bone_mask() -> np.ndarray:
    return np.array([k == "rigid" for _p, _c, k in BONES])
