"""A full-body test figure drawn from a skeleton, with its analysis built from the same
skeleton (no photo of a whole standing person ships with the installed packages).

Used by the tests and the quality benchmark for the full-body paths (legs, ground contact,
contact shadow); the half-body paths run on real photos.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.animate.library import H, Pose2D, W, keypoints
from services.common.analysis.person import BodyMeasurements, PersonAnalysis


def _capsule(img, a, b, r, colour) -> None:
    pa, pb = tuple(int(v) for v in np.round(a)), tuple(int(v) for v in np.round(b))
    cv2.line(img, pa, pb, colour, 2 * int(r), cv2.LINE_AA)
    cv2.circle(img, pa, int(r), colour, -1, cv2.LINE_AA)
    cv2.circle(img, pb, int(r), colour, -1, cv2.LINE_AA)


def figure(width: int = 384, height: int = 576, seed: int = 0) -> tuple[np.ndarray, PersonAnalysis]:
    """A standing person (skin, striped shirt, trousers, shoes) in a textured room, and an
    analysis of it (landmarks, soft mask, arm masks, framing "full")."""
    rng = np.random.default_rng(seed)
    s = min(width / W, height / H)
    kp = keypoints(Pose2D()) * s + [(width - W * s) / 2, (height - H * s) / 2]
    yy, xx = np.mgrid[0:height, 0:width]
    bg = np.dstack([180 + 30 * np.sin(xx / 23.0), 170 + 20 * np.cos(yy / 31.0), 150 + 0 * xx])
    floor = yy > kp[[29, 30, 31, 32], 1].max() - 6 * s
    bg[floor] = [120, 100, 80]
    img = (bg + rng.normal(0, 4, bg.shape)).clip(0, 255).astype(np.uint8)
    person = np.zeros((height, width), np.uint8)
    arms = {"left": np.zeros_like(person), "right": np.zeros_like(person)}
    sw = np.linalg.norm(kp[11] - kp[12])
    skin, shirt, trousers, shoe = (224, 172, 140), (40, 90, 190), (50, 50, 60), (30, 20, 20)
    layer = img.copy()
    # Legs, torso, arms, head: drawn back to front with flat colours and a little shading.
    for _side, (hp, kn, an, ft) in {"left": (23, 25, 27, 31), "right": (24, 26, 28, 32)}.items():
        for a, b, r in ((hp, kn, 0.2), (kn, an, 0.15)):
            _capsule(layer, kp[a], kp[b], r * sw, trousers)
            _capsule(person, kp[a], kp[b], r * sw, 1)
        _capsule(layer, kp[an], kp[ft], 0.1 * sw, shoe)
        _capsule(person, kp[an], kp[ft], 0.1 * sw, 1)
    torso = np.round(
        kp[[12, 11, 23, 24]] + [[-0.08 * sw, 0], [0.08 * sw, 0], [0.1 * sw, 0], [-0.1 * sw, 0]]
    ).astype(np.int32)
    cv2.fillPoly(layer, [torso], shirt, cv2.LINE_AA)
    cv2.fillPoly(person, [torso], 1)
    striped = layer.copy()
    for k in range(int(kp[11, 1]), int(kp[23, 1]), max(4, int(0.08 * sw))):
        cv2.line(striped, (0, k), (width, k), (230, 230, 230), 2)
    inside = np.zeros_like(person)
    cv2.fillPoly(inside, [torso], 1)
    layer = np.where((inside > 0)[..., None], striped, layer)
    for a, b, r, c in ((23, 24, 0.22, trousers),):
        _capsule(layer, kp[a], kp[b], r * sw, c)
        _capsule(person, kp[a], kp[b], r * sw, 1)
    # Re-draw the legs over the floor/background only (done above), then arms and head.
    for side, (sh, el, wr, ix) in {"left": (11, 13, 15, 19), "right": (12, 14, 16, 20)}.items():
        _capsule(layer, kp[sh], kp[el], 0.13 * sw, shirt)
        _capsule(layer, kp[el], kp[wr], 0.1 * sw, skin)
        _capsule(layer, kp[wr], kp[ix], 0.09 * sw, skin)
        for a, b, r in ((sh, el, 0.13), (el, wr, 0.1), (wr, ix, 0.09)):
            _capsule(arms[side], kp[a], kp[b], r * sw, 1)
            _capsule(person, kp[a], kp[b], r * sw, 1)
    head_c = kp[0] + [0, -0.05 * sw]
    neck_top = kp[0] + [0, 0.2 * sw]
    _capsule(layer, (kp[11] + kp[12]) / 2, neck_top, 0.12 * sw, skin)
    _capsule(person, (kp[11] + kp[12]) / 2, neck_top, 0.12 * sw, 1)
    cv2.ellipse(
        layer,
        tuple(int(v) for v in head_c),
        (int(0.3 * sw), int(0.38 * sw)),
        0,
        0,
        360,
        skin,
        -1,
        cv2.LINE_AA,
    )
    cv2.ellipse(
        person, tuple(int(v) for v in head_c), (int(0.3 * sw), int(0.38 * sw)), 0, 0, 360, 1, -1
    )
    cv2.ellipse(
        layer,
        tuple(int(v) for v in head_c - [0, 0.2 * sw]),
        (int(0.32 * sw), int(0.22 * sw)),
        0,
        180,
        360,
        (60, 40, 30),
        -1,
        cv2.LINE_AA,
    )
    for i in (2, 5):
        cv2.circle(layer, tuple(int(v) for v in kp[i]), max(1, int(0.03 * sw)), (30, 30, 30), -1)
    shade = 1 - 0.15 * (xx - kp[0, 0]) ** 2 / (0.6 * sw) ** 2
    layer = (layer * np.clip(shade, 0.8, 1)[..., None]).astype(np.uint8)
    img = np.where((person > 0)[..., None], layer, img)
    mask = cv2.GaussianBlur(person.astype(np.float32), (0, 0), 0.8)
    lm = np.zeros((33, 4), np.float32)
    lm[:, :2] = kp
    lm[:, 3] = 0.99
    pb = person > 0
    arms_b = {k: (v > 0) & pb for k, v in arms.items()}
    empty = np.zeros_like(pb)
    ys, xs = np.nonzero(pb)
    analysis = PersonAnalysis(
        size=(height, width), landmarks=lm, mask=mask, face=empty, hair=empty, skin=empty,
        arms=arms_b, hands={"left": empty, "right": empty}, upper_clothes=empty,
        lower_clothes=empty, torso=pb & ~arms_b["left"] & ~arms_b["right"], framing="full",
        facing="front",
        measurements=BodyMeasurements(float(sw), float(sw), float(sw), float(sw), 0.0, 0.0),
        box=(int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), persons=1,
        warnings=[],
    )  # fmt: skip
    return img, analysis
