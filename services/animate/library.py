"""The built-in motion library, authored as forward kinematics of a 2D figure.

Each motion is a few lines of joint-angle curves; :func:`build_all` samples them into the
JSON templates shipped in ``services/animate/motions/`` (run ``python -m
services.animate.library`` to rewrite them). The server only ever reads the JSON files: the
templates are data, and a deployment can add its own in the same format.

Limb angles are in degrees from straight down; the authored values are positive towards
the image's *left* (so ``l_arm=-12`` holds the person's left arm, which is on the image's
right, 12 degrees out from the body, and ``r_arm=12`` the right one). MediaPipe's "left" is
the person's left, on the image's right for a person facing the camera.
Proportions follow common figure-drawing canons (about 7.5 heads tall).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from services.animate.motions import BUILT_IN_DIR, LEGS, Motion

W, H = 512, 768
FPS = 24.0
HEAD = 82.0  # head height in template pixels
SEG = {
    "spine": 2.3 * HEAD,  # mid-hip to mid-shoulder
    "neck": 0.95 * HEAD,  # mid-shoulder to nose
    "shoulder": 0.95 * HEAD,  # half the biacromial width
    "hip": 0.55 * HEAD,  # half the hip-joint width
    "upper_arm": 1.45 * HEAD,
    "forearm": 1.25 * HEAD,
    "hand": 0.45 * HEAD,
    "thigh": 1.9 * HEAD,
    "shin": 1.8 * HEAD,
}
# Face landmarks relative to the nose, in head heights (x right, y down), person facing us.
FACE = {
    1: (0.09, -0.14), 2: (0.15, -0.14), 3: (0.21, -0.14),
    4: (-0.09, -0.14), 5: (-0.15, -0.14), 6: (-0.21, -0.14),
    7: (0.33, -0.06), 8: (-0.33, -0.06), 9: (0.09, 0.15), 10: (-0.09, 0.15),
}  # fmt: skip


@dataclasses.dataclass
class Pose2D:
    """Joint angles (degrees) and root of the authored figure for one frame."""

    root: tuple[float, float] = (W / 2, 0.56 * H)
    lean: float = 0.0  # spine, from straight up, positive leaning to the image's right
    pelvis: float = 0.0  # tilt of the hip line
    turn: float = 0.0  # yaw of hips and shoulders (foreshortens the widths)
    head: float = 0.0  # head tilt relative to the spine
    head_turn: float = 0.0  # yaw of the head (moves the face features sideways)
    l_arm: float = -12.0  # the person's left arm is on the image's right: negative = out
    l_fore: float = -8.0
    r_arm: float = 12.0
    r_fore: float = 8.0
    l_thigh: float = -3.0
    l_shin: float = 0.0
    r_thigh: float = 3.0
    r_shin: float = 0.0


def _dir(angle_deg: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([np.sin(a), np.cos(a)])


def keypoints(p: Pose2D) -> np.ndarray:
    """33 x 2 template pixels of one authored pose (forward kinematics)."""
    k = np.zeros((33, 2))
    root = np.array(p.root)
    ct, cs = np.cos(np.radians(p.turn)), np.cos(np.radians(p.turn * 0.8))
    across_hip = np.array([np.cos(np.radians(p.pelvis)), np.sin(np.radians(p.pelvis))])
    k[23] = root + across_hip * SEG["hip"] * ct  # left hip, image right
    k[24] = root - across_hip * SEG["hip"] * ct
    spine_up = np.array([np.sin(np.radians(p.lean)), -np.cos(np.radians(p.lean))])
    mid_s = root + spine_up * SEG["spine"]
    across = np.array([np.cos(np.radians(p.lean)), np.sin(np.radians(p.lean))])
    # A turn pulls the shoulder line along with the hips and moves it a little sideways.
    mid_s = mid_s + across * SEG["shoulder"] * 0.12 * np.sin(np.radians(p.turn))
    k[11] = mid_s + across * SEG["shoulder"] * cs
    k[12] = mid_s - across * SEG["shoulder"] * cs
    ha = p.lean + p.head
    nose = mid_s + np.array([np.sin(np.radians(ha)), -np.cos(np.radians(ha))]) * SEG["neck"]
    k[0] = nose
    c, s = np.cos(np.radians(ha)), np.sin(np.radians(ha))
    rot = np.array([[c, -s], [s, c]])
    yaw = np.sin(np.radians(p.head_turn + 0.6 * p.turn))
    for i, (fx, fy) in FACE.items():
        # Turning the head: features slide towards the turn, the far side more.
        off = np.array([fx * np.cos(np.radians(p.head_turn)) - 0.2 * yaw, fy]) * HEAD
        k[i] = nose + rot @ off
    k[0] = nose + rot @ np.array([0.25 * yaw * HEAD, 0.0])
    for _side, sh, el, wr, pk, ix, th, arm, fore, sign in (
        ("l", 11, 13, 15, 17, 19, 21, p.l_arm, p.l_fore, 1),
        ("r", 12, 14, 16, 18, 20, 22, p.r_arm, p.r_fore, -1),
    ):
        k[el] = k[sh] + _dir(-arm) * SEG["upper_arm"]
        k[wr] = k[el] + _dir(-fore) * SEG["forearm"]
        d = _dir(-fore)
        n = np.array([d[1], -d[0]]) * sign  # across the hand, towards the thumb side
        k[ix] = k[wr] + d * SEG["hand"] * 0.9 - n * 0.08 * HEAD
        k[pk] = k[wr] + d * SEG["hand"] * 0.8 + n * 0.12 * HEAD
        k[th] = k[wr] + d * SEG["hand"] * 0.45 - n * 0.2 * HEAD
    for hip, kn, an, he, ft, thigh, shin, sign in (
        (23, 25, 27, 29, 31, p.l_thigh, p.l_shin, 1),
        (24, 26, 28, 30, 32, p.r_thigh, p.r_shin, -1),
    ):
        k[kn] = k[hip] + _dir(-thigh) * SEG["thigh"]
        k[an] = k[kn] + _dir(-shin) * SEG["shin"]
        k[he] = k[an] + np.array([0.02 * sign, 0.22]) * HEAD
        k[ft] = k[an] + np.array([0.18 * sign, 0.4]) * HEAD
    return k


def _plant_feet(p: Pose2D, ground: float, lift: dict[str, float] | None = None) -> Pose2D:
    """Bend the knees (outwards, two-bone IK in the image plane) so both ankles sit on
    ``ground`` (minus ``lift`` for a raised foot) for the pose's hip height."""
    lift = lift or {}
    base = keypoints(p)
    for side, hip, thigh_attr, shin_attr, sign in (
        ("l", 23, "l_thigh", "l_shin", 1),
        ("r", 24, "r_thigh", "r_shin", -1),
    ):
        hx, hy = base[hip]
        thigh0 = -getattr(p, thigh_attr)  # as a direction angle
        ax = hx + np.sin(np.radians(thigh0)) * (SEG["thigh"] + SEG["shin"])
        ay = ground - lift.get(side, 0.0)
        d = float(np.hypot(ax - hx, ay - hy))
        a, b = SEG["thigh"], SEG["shin"]
        d = min(d, a + b - 1e-6)
        # Law of cosines: the angle at the hip between the hip->ankle line and the thigh.
        alpha = np.degrees(np.arccos((a * a + d * d - b * b) / (2 * a * d)))
        base_angle = np.degrees(np.arctan2(ax - hx, ay - hy))
        t = base_angle + sign * alpha  # knees outwards
        kx, ky = hx + a * np.sin(np.radians(t)), hy + a * np.cos(np.radians(t))
        s = np.degrees(np.arctan2(ax - kx, ay - ky))
        p = dataclasses.replace(p, **{thigh_attr: -t, shin_attr: -s})
    return p


GROUND = keypoints(Pose2D())[27, 1]


def _ease(x: float) -> float:
    """Smoothstep: 0 at 0, 1 at 1, flat at both ends."""
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def _idle_sway(t: float, T: float) -> Pose2D:
    ph = 2 * np.pi * t / T
    return _plant_feet(
        Pose2D(
            root=(W / 2 + 7 * np.sin(ph), 0.56 * H + 1.5 * (1 - np.cos(2 * ph))),
            lean=-2.0 * np.sin(ph),
            pelvis=2.5 * np.sin(ph),
            head=3.0 * np.sin(ph - 0.8),
            l_arm=-12 + 3 * np.sin(ph + 0.5),
            l_fore=-8 + 4 * np.sin(ph + 0.9),
            r_arm=12 + 3 * np.sin(ph + 0.5),
            r_fore=8 + 4 * np.sin(ph + 0.9),
        ),
        GROUND,
    )


def _step_and_pose(t: float, T: float) -> Pose2D:
    # 0-25 %: step out to the person's left; 25-75 %: hand on hip, weight shift; back.
    out = _ease(t / (0.25 * T)) * (1 - _ease((t - 0.75 * T) / (0.25 * T)))
    lift = {"l": 18 * np.sin(np.pi * min(t / (0.25 * T), 1.0)) if t < 0.25 * T else 0.0}
    if t > 0.75 * T:
        lift = {"l": 18 * np.sin(np.pi * (t - 0.75 * T) / (0.25 * T))}
    p = Pose2D(
        root=(W / 2 + 14 * out, 0.56 * H + 6 * out),
        lean=-3 * out,
        pelvis=4 * out,
        head=4 * out,
        l_thigh=-3 - 9 * out,
        r_thigh=3 - 2 * out,
        r_arm=12 + 28 * out,  # right hand to the hip: elbow out, forearm back in
        r_fore=8 - 62 * out,
        l_arm=-12 - 4 * out,
        l_fore=-8 - 6 * out,
    )
    return _plant_feet(p, GROUND, lift)


def _arms_open(t: float, T: float) -> Pose2D:
    # Rise (30 %), hold (40 %), lower (30 %): arms open sideways, palms to the camera.
    a = _ease(t / (0.3 * T)) * (1 - _ease((t - 0.7 * T) / (0.3 * T)))
    return Pose2D(
        l_arm=-12 - 48 * a,
        l_fore=-8 - 62 * a,
        r_arm=12 + 48 * a,
        r_fore=8 + 62 * a,
        head=-2 * a,
        root=(W / 2, 0.56 * H - 2 * a),
    )


def _quarter_turn(t: float, T: float) -> Pose2D:
    # Turn a quarter of the way (to 40 degrees) to the person's left and back.
    a = _ease(t / (0.4 * T)) * (1 - _ease((t - 0.6 * T) / (0.4 * T)))
    return Pose2D(
        turn=40 * a,
        head_turn=15 * a,
        lean=-1.5 * a,
        l_arm=-12 + 6 * a,
        l_fore=-8 + 6 * a,
        r_arm=12 - 4 * a,
        r_fore=8 - 10 * a,
    )


def _arm_swing_dance(t: float, T: float) -> Pose2D:
    # Two beats a second: arms swing in opposition, hips sway, knees bounce on each beat.
    beat = 2 * np.pi * t / (T / 4)  # four sways per pass
    sway = np.sin(beat)
    bounce = 0.5 * (1 - np.cos(2 * beat))
    p = Pose2D(
        root=(W / 2 + 10 * sway, 0.56 * H + 10 * bounce),
        pelvis=5 * sway,
        lean=-3 * sway,
        head=4 * np.sin(beat - 0.6),
        l_arm=-20 - 30 * (0.5 + 0.5 * sway),
        l_fore=-30 - 60 * (0.5 + 0.5 * sway),
        r_arm=20 + 30 * (0.5 - 0.5 * sway),
        r_fore=30 + 60 * (0.5 - 0.5 * sway),
    )
    return _plant_feet(p, GROUND)


def _gestures(t: float, T: float) -> Pose2D:
    # Upper body only: the right hand comes up to present the garment, then the left,
    # with a nod and a little shoulder movement; for half-body photos.
    a = _ease(t / (0.2 * T)) * (1 - _ease((t - 0.35 * T) / (0.15 * T)))
    b = _ease((t - 0.45 * T) / (0.2 * T)) * (1 - _ease((t - 0.8 * T) / (0.2 * T)))
    ph = 2 * np.pi * t / T
    return Pose2D(
        r_arm=12 + 10 * a,
        r_fore=8 - 95 * a,
        l_arm=-12 - 10 * b,
        l_fore=-8 + 95 * b,
        head=5 * np.sin(2 * ph) * 0.6,
        lean=1.5 * np.sin(ph),
        turn=8 * (a - b),
        root=(W / 2 + 4 * np.sin(ph), 0.56 * H),
    )


SPECS: dict[str, tuple[str, str, float, bool, Callable[[float, float], Pose2D]]] = {
    "idle-sway": ("Relaxed standing sway, arms loose", "full", 4.0, True, _idle_sway),
    "step-and-pose": (
        "Steps out to the side, hand to the hip, and back",
        "full",
        4.0,
        True,
        _step_and_pose,
    ),
    "arms-open": (
        "Opens the arms to show the garment's sides, then lowers them",
        "upper",
        4.0,
        True,
        _arms_open,
    ),  # fmt: skip
    "quarter-turn": (
        "Turns hips and shoulders a quarter to one side and back",
        "upper",
        4.0,
        True,
        _quarter_turn,
    ),  # fmt: skip
    "arm-swing-dance": (
        "Short dance: arms swing in opposition, hips sway, knees bounce",
        "full",
        4.0,
        True,
        _arm_swing_dance,
    ),  # fmt: skip
    "upper-gestures": (
        "Half-body gestures: one hand then the other presents the garment",
        "upper",
        4.0,
        True,
        _gestures,
    ),  # fmt: skip
    "idle-sway-upper": (
        "Relaxed sway of the upper body, for half-body photos",
        "upper",
        4.0,
        True,
        _idle_sway,
    ),  # fmt: skip
}


def build(name: str) -> Motion:
    """Sample the authored motion ``name`` into a template."""
    desc, framing, seconds, loops, fn = SPECS[name]
    n = int(round(seconds * FPS))
    frames = np.zeros((n, 33, 3), np.float32)
    for i in range(n):
        kp = keypoints(fn(i / FPS, seconds))
        frames[i, :, 0] = kp[:, 0] / W
        frames[i, :, 1] = kp[:, 1] / H
        frames[i, :, 2] = 1.0
    if framing == "upper":
        frames[:, list(LEGS), :] = 0.0  # not moved, not shown
    return Motion(name, desc, FPS, loops, framing, frames, W, H)


def build_all(directory: Path = BUILT_IN_DIR) -> list[Path]:
    """Write every built-in template as JSON into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SPECS:
        path = directory / f"{name}.json"
        path.write_text(build(name).to_json() + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build_all():
        print(p)
