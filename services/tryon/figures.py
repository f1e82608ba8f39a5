"""A full-body shopper photo made in code, for tests, the demo and the benchmarks.

No full-body photo of a person ships in the installed packages (``skimage.data.astronaut``
and matplotlib's ``grace_hopper.jpg`` are both half-body portraits), and nothing may be
downloaded. Bottoms and outfits still need a full-body input, so this draws one: a real face
and hair (the astronaut's, cut out of ``skimage.data.astronaut()``) on a shaded studio
figure with adult proportions (about 7.5 heads tall), wearing a shirt with short sleeves
and jeans, arms a little away from the body, feet apart, on a studio backdrop.

MediaPipe's pose model finds all 33 landmarks on it with visibility above 0.97, the person
mask separates it cleanly and the clothes segmentation splits shirt and jeans: it exercises
the same analysis path as a real photo. It is an engineering test input, not a quality
reference: the quality benchmark reports its rows separately from the real photos.
"""

from __future__ import annotations

import cv2
import numpy as np

SKIN = (224, 172, 140)
SHIRT = (236, 236, 232)
JEANS = (64, 84, 120)
SHOES = (40, 34, 30)
BACKDROP = (214, 212, 206)
SUPERSAMPLE = 2  # drawn at 2x and reduced: anti-aliased edges


def _capsule(
    canvas: np.ndarray,
    a: tuple[float, float],
    b: tuple[float, float],
    r0: float,
    r1: float,
    colour: tuple[int, int, int],
) -> None:
    """A tapered capsule from ``a`` (radius ``r0``) to ``b`` (``r1``), shaded as a cylinder
    lit from the upper left (brightness ~ cos of the angle to the surface normal)."""
    h, w = canvas.shape[:2]
    a_, b_ = np.asarray(a, np.float32), np.asarray(b, np.float32)
    pad = max(r0, r1) + 2
    x0, x1 = int(max(0, min(a_[0], b_[0]) - pad)), int(min(w, max(a_[0], b_[0]) + pad))
    y0, y1 = int(max(0, min(a_[1], b_[1]) - pad)), int(min(h, max(a_[1], b_[1]) + pad))
    if x1 <= x0 or y1 <= y0:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d = b_ - a_
    t = np.clip(((xs - a_[0]) * d[0] + (ys - a_[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
    r = r0 + (r1 - r0) * t
    off_x = xs - (a_[0] + t * d[0])
    dist = np.hypot(off_x, ys - (a_[1] + t * d[1])) / r
    inside = dist < 1
    shade = (0.66 + 0.34 * np.sqrt(np.clip(1 - dist**2, 0, 1))) * (1 - 0.08 * off_x / r)
    region = canvas[y0:y1, x0:x1]
    region[inside] = np.asarray(colour, np.float32)[None] * shade[inside][:, None]


def _torso(canvas: np.ndarray, cx: float, y_top: float, y_bot: float, half_widths, colour):
    """The torso as one smooth solid: per row a half width (interpolated from
    ``half_widths``, a list of (fraction of the height, half width)), shaded across."""
    h, w = canvas.shape[:2]
    fr, hw = np.array(half_widths, np.float32).T
    for y in range(int(y_top), int(min(h, y_bot))):
        f = (y - y_top) / max(y_bot - y_top, 1.0)
        half = float(np.interp(f, fr, hw))
        x0, x1 = int(max(0, cx - half)), int(min(w, cx + half + 1))
        xs = np.arange(x0, x1, dtype=np.float32)
        u = (xs - cx) / half
        shade = (0.7 + 0.3 * np.sqrt(np.clip(1 - u**2, 0, 1))) * (1 - 0.06 * u)
        canvas[y, x0:x1] = np.asarray(colour, np.float32)[None] * shade[:, None]


def _head(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face and hair with a soft elliptical alpha, resized by ``scale``."""
    import skimage.data

    head = skimage.data.astronaut()[10:196, 140:315].astype(np.float32)
    h, w = head.shape[:2]
    head = cv2.resize(head, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    h, w = head.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    ell = ((xx - w / 2) / (w * 0.46)) ** 2 + ((yy - h * 0.47) / (h * 0.47)) ** 2
    alpha = np.clip((1 - ell) * 8, 0, 1).astype(np.float32)
    alpha[int(h * 0.88) :] *= np.linspace(1, 0, h - int(h * 0.88))[:, None]  # fade at the chin
    return head, alpha


def draw_figure(
    size: tuple[int, int] = (768, 1024),
    top: tuple[int, int, int] = SHIRT,
    bottom: tuple[int, int, int] = JEANS,
    seed: int = 0,
) -> np.ndarray:
    """A full-body studio figure with a real face (see the module docstring).

    Args:
        size: ``(width, height)``; the figure is about 95 % of the height, centred.
        top: colour of the shirt (short sleeves).
        bottom: colour of the jeans.
        seed: sensor noise.

    Returns:
        ``height x width x 3`` uint8 RGB.
    """
    width, height = size
    ss = SUPERSAMPLE
    big_w, big_h = width * ss, height * ss
    canvas = np.empty((big_h, big_w, 3), np.float32)
    canvas[:] = (
        np.asarray(BACKDROP, np.float32) * (1 - 0.12 * np.linspace(0, 1, big_h))[:, None, None]
    )
    k = height / 1024 * ss  # all proportions below are for a 1024-px-high frame
    head_h = 128 * k
    cx, y0 = big_w / 2, 30 * k
    sh_y, hip_y, knee_y, ank_y = (y0 + f * head_h for f in (1.45, 3.95, 5.65, 7.2))
    sw = 1.45 * head_h
    shoulders = ((cx - sw / 2, sh_y), (cx + sw / 2, sh_y))
    elbows = (
        (cx - sw / 2 - 40 * k, y0 + 2.75 * head_h),
        (cx + sw / 2 + 40 * k, y0 + 2.75 * head_h),
    )
    wrists = (
        (cx - sw / 2 - 62 * k, y0 + 3.75 * head_h),
        (cx + sw / 2 + 62 * k, y0 + 3.75 * head_h),
    )
    for sign in (-1, 1):
        hip = (cx + sign * 0.42 * head_h, hip_y)
        knee = (cx + sign * 0.48 * head_h, knee_y)
        ankle = (cx + sign * 0.5 * head_h, ank_y)
        _capsule(canvas, hip, knee, 0.37 * head_h, 0.27 * head_h, bottom)
        _capsule(canvas, knee, ankle, 0.27 * head_h, 0.2 * head_h, bottom)
        toe = (ankle[0] + sign * 0.25 * head_h, ankle[1] + 0.2 * head_h)
        _capsule(
            canvas, (ankle[0], ankle[1] + 0.12 * head_h), toe, 0.14 * head_h, 0.13 * head_h, SHOES
        )
    _torso(
        canvas, cx, hip_y - 0.45 * head_h, hip_y + 0.35 * head_h,
        [(0, 0.66 * head_h), (1, 0.8 * head_h)], bottom,
    )  # fmt: skip
    _capsule(canvas, (cx, y0 + 0.9 * head_h), (cx, sh_y), 0.27 * head_h, 0.3 * head_h, SKIN)
    for s, e, w in zip(shoulders, elbows, wrists, strict=True):
        _capsule(canvas, e, w, 0.17 * head_h, 0.13 * head_h, SKIN)
        hand = (w[0] + (w[0] - e[0]) * 0.3, w[1] + 0.55 * head_h)
        _capsule(canvas, w, hand, 0.14 * head_h, 0.1 * head_h, SKIN)
        _capsule(canvas, s, e, 0.25 * head_h, 0.2 * head_h, top)
    _torso(
        canvas, cx, sh_y - 0.22 * head_h, hip_y - 0.3 * head_h,
        [(0, 0.45 * sw), (0.08, 0.62 * sw), (0.3, 0.6 * sw), (0.65, 0.5 * sw), (1, 0.56 * sw)],
        top,
    )  # fmt: skip
    head, alpha = _head(1.12 * head_h / 170)
    hh, hw = alpha.shape
    ty, tx = int(y0 - 0.05 * head_h), int(cx - hw / 2)
    region = canvas[ty : ty + hh, tx : tx + hw]
    region[:] = region * (1 - alpha[..., None]) + head * alpha[..., None]
    img = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
    img += np.random.default_rng(seed).normal(0, 2.0, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
