"""Garment flat-lays drawn in code, with their true masks and landmarks.

The project ships no garment photos, so tests, the demo and the benchmarks draw their
garments here. Every garment is a polygon built in *garment units* (x from the vertical
axis of symmetry, y down from the garment's top; about one unit is the torso length),
scaled to fill 60-80 % of the canvas and centred. Because the outline is built from named
vertices, the landmarks are known exactly: they are the vertices themselves, not an
estimate.

Landmark names use **image** left and right: ``"_l"`` is the landmark with the smaller x
(for a garment laid front-up that is the wearer's *right*). Coordinates are pixel-centre
coordinates: pixel ``(row i, column j)`` is centred on ``(x=j, y=i)``.

* tops, dresses and outerwear: ``neck_l``, ``neck_r`` (where the neckline meets the
  shoulder seam), ``neck_front`` (lowest point of the front neckline), ``shoulder_l``,
  ``shoulder_r`` (shoulder tips), ``armpit_l``, ``armpit_r``, ``cuff_l_top``,
  ``cuff_l_bottom``, ``cuff_r_top``, ``cuff_r_bottom`` (the two corners of each sleeve
  opening, "top" being the one with the smaller y; absent when sleeveless), ``hem_l``,
  ``hem_r``;
* trousers and shorts: ``waist_l``, ``waist_r``, ``crotch``, ``leg_l_out``, ``leg_l_in``,
  ``leg_r_in``, ``leg_r_out`` (the corners of the leg openings);
* skirts: ``waist_l``, ``waist_r``, ``hem_l``, ``hem_r``.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

KINDS = (
    "tshirt",
    "longsleeve",
    "tank",
    "crop_top",
    "trousers",
    "shorts",
    "skirt",
    "dress",
    "jacket",
)
PATTERNS = ("solid", "stripes", "checks", "logo", "gradient")
BACKGROUNDS = ("white", "color", "textured", "transparent")

# Backdrop colours. "color" is a light grey-blue, "textured" a linen-like off-white.
WHITE = (255, 255, 255)
BACKDROP_COLOR = (196, 208, 224)
BACKDROP_TEXTURED = (236, 231, 224)
# Second colour of stripes when none is given: ecru, light but still apart from white
# (a pure white stripe on a white backdrop is invisible where it reaches the outline).
STRIPE_COLOR = (238, 230, 210)
# The printed rectangle of the "logo" pattern.
PRINT_COLOR = (250, 250, 250)

# Supersampling factor of the coverage mask: the outline is antialiased by area averaging.
_SS = 4
# Fixed-point bits for cv2.fillPoly: vertices keep 1/256 px precision.
_SHIFT = 8

_CATEGORY = {
    "tshirt": "top",
    "longsleeve": "top",
    "tank": "top",
    "crop_top": "top",
    "trousers": "bottom",
    "shorts": "bottom",
    "skirt": "bottom",
    "dress": "dress",
    "jacket": "outerwear",
}
_LENGTH = {
    "tshirt": "regular",
    "longsleeve": "regular",
    "tank": "regular",
    "crop_top": "cropped",
    # Bottoms: shorts end above the knee, skirts (knee length) are regular, trousers long.
    "trousers": "long",
    "shorts": "cropped",
    "skirt": "regular",
    "dress": "long",
    "jacket": "regular",
}


@dataclasses.dataclass
class FlatLay:
    """A drawn garment and the truth about it.

    Attributes:
        image: ``H x W x 3`` uint8 RGB, or ``H x W x 4`` RGBA (straight alpha, alpha = the
            antialiased coverage) for the transparent background.
        mask: ``H x W`` bool, the garment's true pixels (coverage at least one half).
        landmarks: name -> ``(x, y)`` float pixel coordinates, exact by construction.
        kind: one of :data:`KINDS`.
        category: ``"top"``, ``"bottom"``, ``"dress"`` or ``"outerwear"``.
        sleeve: ``"sleeveless"``, ``"short"``, ``"long"``, or None for bottoms.
        length: ``"cropped"``, ``"regular"`` or ``"long"``.
    """

    image: np.ndarray
    mask: np.ndarray
    landmarks: dict[str, tuple[float, float]]
    kind: str
    category: str
    sleeve: str | None
    length: str


@dataclasses.dataclass
class _Shape:
    """A garment outline in garment units, before placement on the canvas."""

    outline: list[tuple[float, float]]
    landmarks: dict[str, tuple[float, float]]
    sleeve: str | None
    # Where patterns start and what part they cover (garment units).
    torso_half_width: float = 0.0
    stripe_top: float = 0.0
    chest_y: float = 0.3
    # Right half of a top's body below the armpits: armpit, (waist,) hem corner.
    torso: list = dataclasses.field(default_factory=list)
    details: list = dataclasses.field(default_factory=list)


def draw_garment(
    kind: str,
    pattern: str = "solid",
    color: tuple[int, int, int] = (200, 40, 40),
    size: tuple[int, int] = (768, 768),
    background: str = "white",
    seed: int = 0,
    color2: tuple[int, int, int] | None = None,
) -> FlatLay:
    """Draw one garment laid flat, front up.

    Args:
        kind: one of :data:`KINDS`. A ``"dress"`` has short sleeves for an even ``seed`` and
            is sleeveless for an odd one.
        pattern: ``"solid"``; ``"stripes"`` (horizontal bands of ``color`` and ``color2``
            across the body below the armpits, plain yoke and sleeves; bottoms below the
            waistband); ``"checks"`` (gingham of ``color`` and its tints); ``"logo"`` (a
            ``color2`` rectangle printed with "DRAPE", centred on the chest); or
            ``"gradient"`` (``color`` at the top to ``color2`` at the bottom).
        color: main RGB colour.
        size: canvas ``(width, height)`` in pixels.
        background: ``"white"``, ``"color"`` (light grey-blue), ``"textured"`` (linen-like
            off-white with a fabric texture of about +-8 levels) or ``"transparent"``
            (RGBA).
        seed: varies the proportions (a few percent), the scale (60-80 % of the canvas),
            the placement and the textures; the same seed gives the same image.
        color2: second colour of the pattern; defaults to ecru for stripes, near-white for
            the logo print and a dark shade of ``color`` for the gradient.

    Returns:
        The :class:`FlatLay`.

    Raises:
        ValueError: for an unknown kind, pattern or background, or a canvas under 64 px.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; expected one of {PATTERNS}")
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}; expected one of {BACKGROUNDS}")
    width, height = int(size[0]), int(size[1])
    if min(width, height) < 64:
        raise ValueError(f"canvas {width} x {height} is too small (at least 64 x 64)")
    rng = np.random.default_rng(seed)
    shape = _SHAPES[kind](_Jitter(rng), seed)

    # Place: the outline's bounding box fills `fill` of the canvas on its tighter axis.
    pts = np.asarray(shape.outline, np.float64)
    x_lo, y_lo = pts.min(axis=0)
    x_hi, y_hi = pts.max(axis=0)
    fill = rng.uniform(0.64, 0.76)
    scale = fill * min(width / (x_hi - x_lo), height / (y_hi - y_lo))
    off_x = width / 2 + rng.uniform(-0.02, 0.02) * width - scale * (x_lo + x_hi) / 2
    off_y = height / 2 + rng.uniform(-0.02, 0.02) * height - scale * (y_lo + y_hi) / 2

    def to_px(p: tuple[float, float]) -> tuple[float, float]:
        return (off_x + scale * p[0], off_y + scale * p[1])

    outline_px = np.array([to_px(p) for p in shape.outline], np.float64)
    coverage = _coverage(outline_px, width, height)
    mask = coverage >= 0.5
    frame = _Frame(off_x, off_y, scale, width, height)

    c1 = np.asarray(color, np.float32)
    layer = _pattern_layer(pattern, c1, color2, shape, frame, kind)
    _draw_details(layer, shape, frame, c1)
    # Fabric: a faint weave so that the garment is not a flat colour (+-3 levels).
    layer += _texture(rng, height, width, amplitude=3.0, blur=1.0)[..., None]
    layer = np.clip(layer, 0, 255)

    alpha = coverage[..., None]
    if background == "transparent":
        rgb = np.clip(layer + 0.5, 0, 255).astype(np.uint8)
        a8 = np.clip(coverage * 255 + 0.5, 0, 255).astype(np.uint8)
        image = np.dstack([rgb, a8])
    else:
        backdrop = _backdrop(background, rng, height, width)
        image = np.clip(backdrop * (1 - alpha) + layer * alpha + 0.5, 0, 255).astype(np.uint8)

    landmarks = {name: to_px(p) for name, p in shape.landmarks.items()}
    return FlatLay(
        image=image,
        mask=mask,
        landmarks=landmarks,
        kind=kind,
        category=_CATEGORY[kind],
        sleeve=shape.sleeve,
        length=_LENGTH[kind],
    )


# --------------------------------------------------------------------------- shapes


class _Jitter:
    """Multiplies nominal proportions by 1 +- a few percent, drawn from the seed."""

    def __init__(self, rng: np.random.Generator, amount: float = 0.04) -> None:
        self.rng = rng
        self.amount = amount

    def __call__(self, value: float) -> float:
        return value * (1.0 + self.rng.uniform(-self.amount, self.amount))


def _mirror(right: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Close a right half that runs from a point on the axis to a point on the axis."""
    left = [(-x, y) for x, y in reversed(right[1:-1])]
    return right + left


def _mirror_landmarks(named: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    out = dict(named)
    for name, (x, y) in named.items():
        if "_r" in name:
            out[name.replace("_r", "_l", 1)] = (-x, y)
    return out


def _neckline(half_width: float, depth: float, n: int = 12) -> list[tuple[float, float]]:
    """Front neckline from its lowest point (on the axis) up to the right neck point."""
    return [
        (half_width * math.sin(t), depth * math.cos(t)) for t in np.linspace(0.0, math.pi / 2, n)
    ]


def _bezier(p0, p1, p2, n: int = 14) -> list[tuple[float, float]]:
    out = []
    for t in np.linspace(0.0, 1.0, n):
        out.append(
            (
                (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t**2 * p2[0],
                (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t**2 * p2[1],
            )
        )
    return out


def _sleeve(shoulder, angle_deg: float, length: float, cuff_width: float):
    """Cuff corners of a sleeve leaving ``shoulder`` at ``angle_deg`` below horizontal;
    the cuff is perpendicular to the sleeve's upper edge."""
    a = math.radians(angle_deg)
    top = (shoulder[0] + length * math.cos(a), shoulder[1] + length * math.sin(a))
    bottom = (top[0] - cuff_width * math.sin(a), top[1] + cuff_width * math.cos(a))
    return top, bottom


def _top_shape(
    j: _Jitter,
    *,
    neck_w: float,
    neck_d: float,
    shoulder: tuple[float, float],
    sleeve: str,
    armpit: tuple[float, float],
    hem: tuple[float, float],
    waist: tuple[float, float] | None = None,
    sleeve_angle: float = 35.0,
    sleeve_len: float = 0.27,
    cuff_w: float = 0.17,
    armhole_ctrl: tuple[float, float] | None = None,
) -> _Shape:
    neck_w, neck_d = j(neck_w), j(neck_d)
    shoulder = (j(shoulder[0]), shoulder[1])
    armpit = (j(armpit[0]), j(armpit[1]))
    hem = (j(hem[0]), j(hem[1]))
    right = _neckline(neck_w, neck_d)
    marks = {"neck_front": (0.0, neck_d), "neck_r": (neck_w, 0.0), "shoulder_r": shoulder}
    if sleeve == "sleeveless":
        ctrl = armhole_ctrl or (shoulder[0], armpit[1] - 0.07)
        right += _bezier(shoulder, ctrl, armpit)[:-1]
    else:
        top, bottom = _sleeve(shoulder, j(sleeve_angle), j(sleeve_len), j(cuff_w))
        right += [shoulder, top, bottom]
        marks["cuff_r_top"], marks["cuff_r_bottom"] = top, bottom
    right.append(armpit)
    torso = [armpit]
    if waist is not None:
        torso.append((j(waist[0]), j(waist[1])))
    torso.append(hem)
    right += torso[1:] + [(0.0, hem[1])]
    marks["armpit_r"], marks["hem_r"] = armpit, hem
    return _Shape(
        outline=_mirror(right),
        landmarks=_mirror_landmarks(marks),
        sleeve=sleeve,
        torso_half_width=min(armpit[0], hem[0]),
        stripe_top=armpit[1],
        chest_y=armpit[1] * 0.55 + neck_d * 0.45,
        torso=torso,
    )


def _tshirt(j: _Jitter, seed: int) -> _Shape:
    s = _top_shape(
        j,
        neck_w=0.14,
        neck_d=0.11,
        shoulder=(0.38, 0.07),
        sleeve="short",
        armpit=(0.34, 0.29),
        hem=(0.35, 1.0),
    )
    s.details = ["collar", "cuffs", "hem"]
    return s


def _crop_top(j: _Jitter, seed: int) -> _Shape:
    s = _top_shape(
        j,
        neck_w=0.14,
        neck_d=0.11,
        shoulder=(0.38, 0.07),
        sleeve="short",
        armpit=(0.34, 0.29),
        hem=(0.35, 0.60),
    )
    s.details = ["collar", "cuffs", "hem"]
    return s


def _longsleeve(j: _Jitter, seed: int) -> _Shape:
    s = _top_shape(
        j,
        neck_w=0.14,
        neck_d=0.11,
        shoulder=(0.38, 0.07),
        sleeve="long",
        armpit=(0.35, 0.36),
        hem=(0.35, 1.0),
        sleeve_angle=65.0,
        sleeve_len=0.85,
        cuff_w=0.11,
    )
    s.details = ["collar", "cuffs", "hem"]
    return s


def _tank(j: _Jitter, seed: int) -> _Shape:
    s = _top_shape(
        j,
        neck_w=0.12,
        neck_d=0.20,
        shoulder=(0.22, 0.015),
        sleeve="sleeveless",
        armpit=(0.35, 0.33),
        hem=(0.36, 1.0),
        armhole_ctrl=(0.22, 0.26),
    )
    s.details = ["collar", "hem"]
    return s


def _dress(j: _Jitter, seed: int) -> _Shape:
    if seed % 2 == 0:
        s = _top_shape(
            j,
            neck_w=0.12,
            neck_d=0.13,
            shoulder=(0.28, 0.05),
            sleeve="short",
            armpit=(0.29, 0.25),
            waist=(0.25, 0.55),
            hem=(0.58, 1.55),
            sleeve_angle=35.0,
            sleeve_len=0.20,
            cuff_w=0.13,
        )
    else:
        s = _top_shape(
            j,
            neck_w=0.12,
            neck_d=0.16,
            shoulder=(0.20, 0.02),
            sleeve="sleeveless",
            armpit=(0.29, 0.27),
            waist=(0.25, 0.55),
            hem=(0.58, 1.55),
            armhole_ctrl=(0.20, 0.22),
        )
    s.torso_half_width = 0.25
    s.details = ["collar", "waist_seam", "hem"]
    return s


def _jacket(j: _Jitter, seed: int) -> _Shape:
    s = _top_shape(
        j,
        neck_w=0.13,
        neck_d=0.24,
        shoulder=(0.40, 0.07),
        sleeve="long",
        armpit=(0.37, 0.37),
        hem=(0.37, 1.05),
        sleeve_angle=66.0,
        sleeve_len=0.86,
        cuff_w=0.12,
    )
    s.details = ["lapels", "zip", "pockets", "cuffs", "hem"]
    return s


def _trousers(j: _Jitter, seed: int) -> _Shape:
    w, hip, crotch = j(0.34), (j(0.37), j(0.25)), j(0.36)
    out_, in_ = (j(0.37), j(1.40)), (j(0.11), 0.0)
    in_ = (in_[0], out_[1])
    right = [(0.0, 0.0), (w, 0.0), hip, out_, in_, (0.0, crotch)]
    marks = {"waist_r": (w, 0.0), "leg_r_out": out_, "leg_r_in": in_, "crotch": (0.0, crotch)}
    return _Shape(
        outline=_mirror(right),
        landmarks=_mirror_landmarks(marks),
        sleeve=None,
        torso_half_width=hip[0],
        stripe_top=0.07,
        chest_y=0.17,
        details=["waistband", "fly", "crease"],
    )


def _shorts(j: _Jitter, seed: int) -> _Shape:
    w, hip, crotch = j(0.34), (j(0.38), j(0.20)), j(0.34)
    out_ = (j(0.42), j(0.60))
    in_ = (j(0.075), out_[1] + 0.02)
    right = [(0.0, 0.0), (w, 0.0), hip, out_, in_, (0.0, crotch)]
    marks = {"waist_r": (w, 0.0), "leg_r_out": out_, "leg_r_in": in_, "crotch": (0.0, crotch)}
    return _Shape(
        outline=_mirror(right),
        landmarks=_mirror_landmarks(marks),
        sleeve=None,
        torso_half_width=hip[0],
        stripe_top=0.07,
        chest_y=0.17,
        details=["waistband", "fly", "leg_hems"],
    )


def _skirt(j: _Jitter, seed: int) -> _Shape:
    w, hem = j(0.30), (j(0.50), j(0.82))
    sag = j(0.03)
    right = [(0.0, 0.0), (w, 0.0), hem]
    # The hem of a flared skirt laid flat is an arc, lowest on the axis.
    right += [
        (hem[0] * (1 - t), hem[1] + sag * math.sin(t * math.pi / 2))
        for t in np.linspace(0.0, 1.0, 10)[1:]
    ]
    marks = {"waist_r": (w, 0.0), "hem_r": hem}
    return _Shape(
        outline=_mirror(right),
        landmarks=_mirror_landmarks(marks),
        sleeve=None,
        torso_half_width=w,
        stripe_top=0.07,
        chest_y=0.2,
        details=["waistband", "hem"],
    )


_SHAPES = {
    "tshirt": _tshirt,
    "longsleeve": _longsleeve,
    "tank": _tank,
    "crop_top": _crop_top,
    "trousers": _trousers,
    "shorts": _shorts,
    "skirt": _skirt,
    "dress": _dress,
    "jacket": _jacket,
}


# --------------------------------------------------------------------------- rendering


@dataclasses.dataclass
class _Frame:
    """Garment units -> canvas pixels."""

    off_x: float
    off_y: float
    scale: float
    width: int
    height: int

    def px(self, x: float, y: float) -> tuple[float, float]:
        return (self.off_x + self.scale * x, self.off_y + self.scale * y)

    def pts(self, points) -> np.ndarray:
        """Points in units -> int32 fixed-point array for cv2 drawing with ``shift``."""
        arr = np.array([self.px(x, y) for x, y in points], np.float64)
        return np.round(arr * (1 << _SHIFT)).astype(np.int32)

    def lw(self, units: float) -> int:
        return max(1, int(round(units * self.scale)))


def _coverage(outline_px: np.ndarray, width: int, height: int) -> np.ndarray:
    """Antialiased coverage in 0..1 of a polygon given in pixel-centre coordinates."""
    big = np.zeros((height * _SS, width * _SS), np.uint8)
    # Pixel centre p at 1x is at (p + 0.5) * SS - 0.5 on the supersampled grid.
    pts = (outline_px + 0.5) * _SS - 0.5
    fixed = np.round(pts * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(big, [fixed], 255, lineType=cv2.LINE_8, shift=_SHIFT)
    small = cv2.resize(big, (width, height), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / 255.0


def _texture(
    rng: np.random.Generator, height: int, width: int, amplitude: float, blur: float
) -> np.ndarray:
    """Zero-mean noise scaled so its extremes are about +-``amplitude`` levels."""
    noise = rng.standard_normal((height, width)).astype(np.float32)
    if blur > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), blur)
    peak = float(np.percentile(np.abs(noise), 99.5)) or 1.0
    return noise * (amplitude / peak)


def _backdrop(kind: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    if kind == "white":
        return np.full((height, width, 3), WHITE, np.float32)
    if kind == "color":
        return np.full((height, width, 3), BACKDROP_COLOR, np.float32)
    # Linen: blotchy low-frequency variation, a fine weave and grain; together +-8 levels.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    weave = np.sin(xx * 1.9) * np.sin(yy * 1.7)
    tex = (
        0.45 * _texture(rng, height, width, 1.0, 6.0)
        + 0.25 * weave
        + 0.30 * _texture(rng, height, width, 1.0, 0.0)
    )
    tex *= 8.0 / max(float(np.abs(tex).max()), 1e-6)
    base = np.asarray(BACKDROP_TEXTURED, np.float32)
    return base + tex[..., None]


def _tint(color: np.ndarray, towards, amount: float) -> np.ndarray:
    return color * (1 - amount) + np.asarray(towards, np.float32) * amount


def _pattern_layer(
    pattern: str,
    c1: np.ndarray,
    color2,
    shape: _Shape,
    frame: _Frame,
    kind: str,
) -> np.ndarray:
    h, w = frame.height, frame.width
    layer = np.empty((h, w, 3), np.float32)
    layer[:] = c1
    ys = (np.arange(h, dtype=np.float32) - frame.off_y) / frame.scale  # rows in units
    xs = (np.arange(w, dtype=np.float32) - frame.off_x) / frame.scale
    hem_y = max(y for _, y in shape.outline)
    if pattern == "stripes":
        c2 = np.asarray(color2 if color2 is not None else STRIPE_COLOR, np.float32)
        # An odd number of bands from `stripe_top` to the hem, so that the first and the
        # last band are the main colour: a light band never forms the garment's edge there.
        span = hem_y - shape.stripe_top
        n = max(5, int(round(span / 0.035)) | 1)
        band = span / n
        idx = np.floor((ys - shape.stripe_top) / band).astype(int)
        light_rows = (idx % 2 == 1) & (ys > shape.stripe_top) & (ys < hem_y)
        region = np.broadcast_to(light_rows[:, None], (h, w))
        if shape.torso:
            # Tops: body only; the sleeves and the yoke above the armpits stay plain.
            region = region & _torso_band(shape, frame)
        layer[region] = c2
    elif pattern == "checks":
        # Gingham: a vertical and a horizontal set of bands of a mid tint over a light
        # tint; where they cross, the full colour.
        period = 0.12
        vb = (np.floor(xs / (period / 2)).astype(int) % 2 == 0)[None, :]
        hb = (np.floor(ys / (period / 2)).astype(int) % 2 == 0)[:, None]
        light = _tint(c1, (255, 255, 255), 0.72)
        mid = _tint(c1, (255, 255, 255), 0.38)
        layer[:] = light
        layer[np.broadcast_to(vb ^ hb, (h, w))] = mid
        layer[np.broadcast_to(vb & hb, (h, w))] = c1
    elif pattern == "gradient":
        c2 = np.asarray(color2 if color2 is not None else c1 * 0.35, np.float32)
        t = np.clip(ys / hem_y, 0.0, 1.0)[:, None, None]
        layer[:] = c1 * (1 - t) + c2 * t
    elif pattern == "logo":
        c2 = color2 if color2 is not None else PRINT_COLOR
        _draw_logo(layer, shape, frame, c1, np.asarray(c2, np.float32))
    return layer


def _torso_band(shape: _Shape, frame: _Frame) -> np.ndarray:
    """Pixels of a top's body below the armpits (the sleeves cut off)."""
    region = np.zeros((frame.height, frame.width), np.uint8)
    poly = shape.torso + [(-x, y) for x, y in reversed(shape.torso)]
    cv2.fillPoly(region, [frame.pts(poly)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return region.astype(bool)


def _draw_logo(layer, shape: _Shape, frame: _Frame, c1: np.ndarray, c2: np.ndarray) -> None:
    half_w = 0.55 * shape.torso_half_width
    half_h = 0.35 * half_w
    cy = shape.chest_y + 0.12 if shape.sleeve is not None else shape.chest_y
    x0, y0 = frame.px(-half_w, cy - half_h)
    x1, y1 = frame.px(half_w, cy + half_h)
    cv2.rectangle(layer, (round(x0), round(y0)), (round(x1), round(y1)), c2.tolist(), -1)
    text = "DRAPE"
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, 2)
    fs = 0.8 * (x1 - x0) / tw
    thick = max(1, int(round(fs * 2)))
    (tw, th), _ = cv2.getTextSize(text, font, fs, thick)
    org = (int(round((x0 + x1) / 2 - tw / 2)), int(round((y0 + y1) / 2 + th / 2)))
    # putText draws on 8-bit images only: render coverage, then blend the ink in.
    ink = np.zeros(layer.shape[:2], np.uint8)
    cv2.putText(ink, text, org, font, fs, 255, thick, cv2.LINE_AA)
    a = ink.astype(np.float32)[..., None] / 255.0
    layer[:] = layer * (1 - a) + (c1 * 0.55) * a


def _draw_details(layer: np.ndarray, shape: _Shape, frame: _Frame, c1: np.ndarray) -> None:
    """Seams, ribs, a zip: drawn over the pattern, all inside the outline."""
    dark = (c1 * 0.78).tolist()
    lm = shape.landmarks
    aa = cv2.LINE_AA
    if "collar" in shape.details:
        nw, nd = lm["neck_r"][0], lm["neck_front"][1]
        rib = _neckline(nw + 0.025, nd + 0.025, 16)
        rib = [(-x, y) for x, y in reversed(rib)] + rib[1:]
        cv2.polylines(layer, [frame.pts(rib)], False, dark, frame.lw(0.018), aa, _SHIFT)
    if "cuffs" in shape.details and "cuff_r_top" in lm:
        for side in ("l", "r"):
            top, bot = np.array(lm[f"cuff_{side}_top"]), np.array(lm[f"cuff_{side}_bottom"])
            sh = np.array(lm[f"shoulder_{side}"])
            inward = sh - top
            inward = inward / np.linalg.norm(inward) * 0.035
            cv2.line(
                layer,
                *[tuple(int(v) for v in frame.pts([p + inward])[0]) for p in (top, bot)],
                dark,
                frame.lw(0.006),
                aa,
                _SHIFT,
            )
    if "hem" in shape.details and "hem_r" in lm:
        y = lm["hem_r"][1] - 0.035
        x = lm["hem_r"][0] - 0.01
        cv2.polylines(
            layer, [frame.pts([(-x, y), (x, y)])], False, dark, frame.lw(0.005), aa, _SHIFT
        )
    if "waist_seam" in shape.details:
        cv2.polylines(
            layer,
            [frame.pts([(-0.24, 0.55), (0.24, 0.55)])],
            False,
            dark,
            frame.lw(0.006),
            aa,
            _SHIFT,
        )
    if "waistband" in shape.details:
        w = lm["waist_r"][0]
        band = [(-w - 0.01, -0.01), (w + 0.01, -0.01), (w + 0.01, 0.065), (-w - 0.01, 0.065)]
        cv2.fillPoly(layer, [frame.pts(band)], (c1 * 0.82).tolist(), aa, _SHIFT)
    if "fly" in shape.details:
        fly = [(0.0, 0.065), (0.0, 0.24), (0.02, 0.28), (0.06, 0.27), (0.06, 0.065)]
        cv2.polylines(layer, [frame.pts(fly)], False, dark, frame.lw(0.005), aa, _SHIFT)
    if "crease" in shape.details:
        for side in (-1, 1):
            x_top = side * 0.19
            x_bot = side * (lm["leg_r_out"][0] + lm["leg_r_in"][0]) / 2
            cv2.polylines(
                layer,
                [frame.pts([(x_top, 0.3), (x_bot, lm["leg_r_out"][1] - 0.02)])],
                False,
                (c1 * 0.9).tolist(),
                frame.lw(0.004),
                aa,
                _SHIFT,
            )
    if "leg_hems" in shape.details:
        for side in ("l", "r"):
            o, i = np.array(lm[f"leg_{side}_out"]), np.array(lm[f"leg_{side}_in"])
            up = np.array([0.0, -0.035])
            cv2.polylines(
                layer, [frame.pts([o + up, i + up])], False, dark, frame.lw(0.005), aa, _SHIFT
            )
    if "pockets" in shape.details:
        for side in (-1, 1):
            pts = [(side * 0.14, 0.78), (side * 0.27, 0.68)]
            cv2.polylines(layer, [frame.pts(pts)], False, dark, frame.lw(0.012), aa, _SHIFT)
    if "lapels" in shape.details:
        nw, nd = lm["neck_r"][0], lm["neck_front"][1]
        for side in (-1, 1):
            lapel = [
                (side * nw, 0.0),
                (side * (nw + 0.12), 0.20),
                (side * 0.02, nd + 0.14),
                (side * 0.01, nd + 0.02),
            ]
            cv2.fillPoly(layer, [frame.pts(lapel)], (c1 * 0.86).tolist(), aa, _SHIFT)
            cv2.polylines(layer, [frame.pts(lapel)], True, dark, frame.lw(0.005), aa, _SHIFT)
    if "zip" in shape.details:
        # The front opening: a zip tape that contrasts with the cloth, edged by the shadow
        # of the two fronts meeting. It runs from the neckline to the hem.
        top, bottom = lm["neck_front"][1], lm["hem_r"][1]
        lum = float(c1 @ np.array([0.299, 0.587, 0.114], np.float32))
        tape = (40.0, 40.0, 40.0) if lum > 110 else (200.0, 200.0, 200.0)
        pts = frame.pts([(0.0, top), (0.0, bottom)])
        cv2.polylines(layer, [pts], False, (c1 * 0.5).tolist(), frame.lw(0.026), aa, _SHIFT)
        cv2.polylines(layer, [pts], False, tape, frame.lw(0.012), aa, _SHIFT)


def draw_boundary_shift(color: tuple[int, int, int] = (40, 90, 160)) -> np.ndarray:
    """A plain sleeveless shift whose outline sits on the top/dress boundary of garment
    analysis (its height is 2.9 torso widths: a long tunic or a short dress), on a light
    backdrop, 300 x 500: the outline cannot settle its category, so analysis without a
    hint refuses it (tests of GARMENT_CATEGORY_UNCERTAIN).

    Returns:
        ``500 x 300 x 3`` uint8 RGB.
    """
    m = np.zeros((500, 300), np.uint8)
    cv2.rectangle(m, (100, 60), (200, 350), 1, -1)
    # Shallow armholes and a round neckline.
    cv2.fillPoly(m, [np.array([[100, 60], [125, 60], [100, 110]])], 0)
    cv2.fillPoly(m, [np.array([[200, 60], [175, 60], [200, 110]])], 0)
    cv2.ellipse(m, (150, 60), (20, 18), 0, 0, 180, 0, -1)
    image = np.full((500, 300, 3), 250, np.uint8)
    image[m > 0] = color
    return image


def draw_white_tee_on_sweep(size: tuple[int, int] = (384, 384), seed: int = 1) -> FlatLay:
    """A white tee on a light-grey sweep, a couple of Delta E apart, with a soft fold
    shading: the packshot the colour cut-out alone punches full of holes, which the learned
    cut-out has to handle (tests and the demo).

    Returns:
        the :class:`FlatLay` (its ``mask`` is the tee's true outline).
    """
    flat = draw_garment("tshirt", size=size, background="white", seed=seed)
    h, w = flat.mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    fold = 2.0 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    image = np.where(flat.mask, 252.0 + fold, 246.0)
    rgb = np.clip(np.repeat(image[..., None], 3, axis=2), 0, 255).astype(np.uint8)
    return dataclasses.replace(flat, image=rgb)
