"""Garment flat-lay analysis: cut-out, category, sleeve and length, landmarks.

No learned model is involved; everything follows from colour and from the shape of the
cut-out:

* **Segmentation** (:func:`segment_garment`). A transparent PNG's alpha is used as is.
  Otherwise the backdrop colour is the median of a band along the image border, every
  pixel's distance from it is measured in CIE Lab (so a beige shirt on a cream backdrop is
  told apart by perceived colour, not by RGB sums), the threshold adapts to how much the
  border itself varies (a textured backdrop raises it), and the binary mask is cleaned:
  specks opened away, short vertical gaps bridged (a white stripe that runs out to the
  outline on a white backdrop), the largest component kept with any comparably large ones,
  enclosed holes filled (a white logo), and the edge feathered.
* **Category** from the mask: a neckline notch at the top centre means an upper-body
  garment; a straight top edge means a bottom, with two legs if the centre column is empty
  near the bottom. An upper-body garment whose body is much longer than its chest is wide is
  a dress; one with a long straight line down its centre (a zip, a button stand) is
  outerwear.
* **Landmarks** from the per-row extent of the run of garment pixels that contains the
  axis of symmetry (the torso), the first garment row per column (the top outline) and
  extreme points of regions in chosen directions (corners).

Landmark names and image-left/right convention are those of
:mod:`services.tryon.flatlays`: ``"_l"`` is the one with the smaller x in the image.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cv2
import numpy as np
from scipy import ndimage

from services.common.analysis import garment_shape as GS
from services.common.analysis.saliency import default_model as default_saliency
from services.common.errors import InvalidInputError

CATEGORIES = ("top", "bottom", "dress", "outerwear")
SLEEVES = ("sleeveless", "short", "long")
LENGTHS = ("cropped", "regular", "long")
_UPPER = ("top", "dress", "outerwear")

# Refusals (GARMENT_NOT_FOUND): a garment smaller than this fraction of the image is too
# small to analyse (or is a speck on an empty photo)...
MIN_AREA_FRACTION = 0.02
# ...and one covering more than this fraction of the image border is not a flat-lay on a
# backdrop (a close-up of fabric, a photo of a person, noise).
MAX_BORDER_FRACTION = 0.5
# Median colour distance (Lab Delta E) of the border band from its own median colour above
# which the border is not a plain backdrop. Linen-like texture is about 1-3; noise 15+.
MAX_BACKDROP_SPREAD = 10.0
# With the learned cut-out a floor, a bedspread or props around the garment are fine (they
# are not salient); a border varying more than this is no backdrop at all (noise, a
# close-up of a pattern). Tiled floors measure about 12, noise about 37.
MAX_SCENE_SPREAD = 25.0

# Segmentation works on images at most this long side (the mask is scaled back): Lab
# conversion and morphology scale with pixels, and the outline needs no more detail.
_SEGMENT_SIDE = 1024
# A detection at least this confident (garment_shape's 0.5..1 scale) refuses a hint that
# contradicts it; a less certain one gives way to the hint.
_CLEAR = 0.65
# Shape analysis works on crops at most this long side; landmarks are scaled back.
_SHAPE_SIDE = 640
# Colour-distance threshold bounds (Delta E): the floor keeps JPEG noise on a flat white
# backdrop out; the cap keeps a busy border from swallowing a low-contrast garment.
_THRESHOLD_FLOOR = 5.0
_THRESHOLD_CAP = 30.0
# A border whose colour varies less than this (median Delta E) is a plain backdrop, whose
# colour edges are trusted for the outline; above it (a floor, a bedspread, props) only the
# learned saliency is.
_PLAIN_SPREAD = 5.0
# Delta E scale of the saliency model's view of a plain-backdrop photo, exp(-dE / scale):
# 2 Delta E (a white tee on a light-grey sweep) is mid-grey, 15 and more is black, JPEG
# noise on the backdrop (well under 1) stays near white.
_CONTRAST_SCALE = 3.0
# A pixel this far from a plain backdrop's colour (Delta E) is probably not backdrop (a
# white garment on a light sweep); only used to notice that the model missed most of one.
_FAINT_DELTA_E = 1.5
# The colour cut-out alone is sure (the learned model is skipped) on a backdrop varying by
# at most this much, with at most this share of the garment inferred (holes filled, gaps
# bridged) and nine in ten of the pixels just inside its outline at least this far from
# the backdrop.
_SURE_SPREAD = 2.0
_SURE_INFERRED = 0.02
_SURE_EDGE_DELTA_E = 12.0
_SKIP_WHEN_SURE = True


@dataclasses.dataclass
class GarmentAnalysis:
    """What :func:`analyze_garment` found.

    Attributes:
        rgba: the cut-out, ``h x w x 4`` uint8, cropped to :attr:`bbox`; alpha is the mask.
        mask: ``h x w`` float32 alpha of the crop, 0..1.
        bbox: ``(x0, y0, x1, y1)`` of the crop in the input image, ``x1``/``y1`` exclusive:
            the garment's bounding box plus a small margin, so that ``image[y0:y1, x0:x1]``
            is the crop and a crop point ``(x, y)`` is ``(x + x0, y + y0)`` in the input.
        category: ``"top"``, ``"bottom"``, ``"dress"`` or ``"outerwear"``.
        sleeve: ``"sleeveless"``, ``"short"`` or ``"long"``; None for bottoms.
        length: ``"cropped"``, ``"regular"`` or ``"long"``.
        landmarks: name -> ``(x, y)`` in the crop's pixel coordinates (pixel centres).
        category_source: ``"shape"`` (classified here) or ``"request"`` (the override).
        confidence: how clear-cut the shape classification was, 0.5..1 (1 for a request).
        sleeve_source, length_source: ``"shape"`` or ``"request"`` (a hint).
        features: the outline measures the description was decided from
            (:class:`services.common.analysis.garment_shape.ShapeFeatures`).
    """

    rgba: np.ndarray
    mask: np.ndarray
    bbox: tuple[int, int, int, int]
    category: str
    sleeve: str | None
    length: str
    landmarks: dict[str, tuple[float, float]]
    category_source: str
    confidence: float = 1.0
    sleeve_source: str = "shape"
    length_source: str = "shape"
    features: dict[str, float] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- segmentation


@dataclasses.dataclass
class _Segmentation:
    alpha: np.ndarray
    from_alpha: bool
    backdrop_spread: float


def segment_garment(image: np.ndarray, saliency: Saliency | str | None = "default") -> np.ndarray:
    """Cut the garment out of a flat-lay.

    Args:
        image: ``H x W x 3`` RGB or ``H x W x 4`` RGBA uint8 (as
            :func:`services.common.images.decode_image` returns). An alpha channel with
            real transparency is used as the mask; otherwise the learned saliency
            (U²-Net-p) finds the garment and, on a plain backdrop, colour edges give its
            exact outline.
        saliency: the saliency model; ``"default"`` is the shipped U²-Net-p
            (:func:`services.common.analysis.saliency.default_model`), None the colour
            cut-out alone.

    Returns:
        ``H x W`` float32 alpha in 0..1; all zeros when nothing stands out.

    Raises:
        ValueError: when ``image`` is not an ``H x W x 3|4`` uint8 array.
    """
    return _segment(_check_array(image), _saliency(saliency)).alpha


Saliency = Callable[[np.ndarray], np.ndarray]


def _saliency(choice: Saliency | str | None) -> Saliency | None:
    if isinstance(choice, str):
        if choice != "default":
            raise ValueError(f"saliency must be a model, 'default' or None, got {choice!r}")
        return default_saliency()
    return choice


def _check_array(image: np.ndarray) -> np.ndarray:
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] not in (3, 4)
    ):
        got = getattr(image, "shape", type(image).__name__), getattr(image, "dtype", "")
        raise ValueError(f"expected an H x W x 3|4 uint8 array, got {got}")
    return image


def _segment(image: np.ndarray, saliency: Callable[[np.ndarray], np.ndarray] | None = None):
    """The cut-out: real alpha if there is any, else the learned saliency and the colour
    cut-out combined (see :func:`_combine`); the colour cut-out alone without a model."""
    h_full, w_full = image.shape[:2]
    if image.shape[2] == 4:
        a = image[..., 3]
        # Real transparency: a visible share of the picture is see-through. An alpha channel
        # that only softens a few pixels says nothing about where the garment is.
        if np.count_nonzero(a < 128) >= 0.005 * a.size:
            return _Segmentation(a.astype(np.float32) / 255.0, True, 0.0)
        alpha = a[..., None].astype(np.float32) / 255.0
        rgb = (image[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    else:
        rgb = image

    scale = min(1.0, _SEGMENT_SIDE / max(h_full, w_full))
    if scale < 1.0:
        size = (max(1, round(w_full * scale)), max(1, round(h_full * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    band = max(2, round(0.02 * min(h, w)))
    colour, seen, spread, dist = _colour_cut(rgb, band)
    if saliency is not None and not (
        _SKIP_WHEN_SURE and _colour_is_sure(colour, seen, spread, dist)
    ):
        sal, second_look = _saliency_map(saliency, rgb, dist, spread)
        mask, seen = _combine(sal, colour, seen, spread, dist, second_look)
    else:
        mask = colour
    if not mask.any():
        return _Segmentation(np.zeros((h_full, w_full), np.float32), False, spread)
    mask = _drop_hanger(mask)
    # Pixels that bridging, hole filling or the learned map made garment may have the
    # backdrop's colour: their coverage cannot be measured, and must not be (it would read
    # as zero).
    alpha = _edge_alpha(rgb, mask, mask & ~seen, border_rgb=_border_band(rgb, band))
    if scale < 1.0:
        alpha = cv2.resize(alpha, (w_full, h_full), interpolation=cv2.INTER_LINEAR)
    return _Segmentation(np.clip(alpha, 0.0, 1.0), False, spread)


def _colour_is_sure(colour: np.ndarray, seen: np.ndarray, spread: float, dist: np.ndarray) -> bool:
    """Whether the colour cut-out alone is certain: a clean studio backdrop, every pixel of
    the garment's outline far from the backdrop's colour (no soft shadow, no faint white
    edge), and hardly any of the garment inferred rather than seen (no white on white).
    Then the learned model would only agree with it."""
    if spread > _SURE_SPREAD or colour.mean() < MIN_AREA_FRACTION:
        return False
    if np.count_nonzero(colour & ~seen) > _SURE_INFERRED * colour.sum():
        return False
    # A ring just inside the outline (its outermost, anti-aliased pixels are a mix).
    k, c8 = np.ones((3, 3), np.uint8), colour.astype(np.uint8)
    ring = (cv2.erode(c8, k, iterations=2) > 0) & ~(cv2.erode(c8, k, iterations=5) > 0)
    return bool(ring.any()) and float(np.percentile(dist[ring], 10)) >= _SURE_EDGE_DELTA_E


def _saliency_map(
    saliency: Saliency, rgb: np.ndarray, dist: np.ndarray, spread: float
) -> tuple[np.ndarray, bool]:
    """The model's saliency, ``H x W``; on a plain backdrop, a second look when the model
    saw far less than what differs from the backdrop (then the flag is True).

    A white tee on a light-grey sweep differs from it by a couple of Delta E, which a network
    trained on natural contrast does not see: it fixes on the print. Shown each pixel's
    distance from the backdrop instead, amplified (dark on white), the tee is a clear
    silhouette. That view is not the default because it also amplifies soft shadows around
    a garment, which the photo itself lets the model ignore.
    """
    h, w = rgb.shape[:2]
    sal = cv2.resize(np.asarray(saliency(rgb), np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if spread > _PLAIN_SPREAD:
        return sal, False
    seen = _main_pieces(sal >= 0.5)
    differs = _main_pieces(
        cv2.morphologyEx(
            (dist > _FAINT_DELTA_E).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)
        ).astype(bool)
    )
    if differs.sum() <= 2 * seen.sum() or np.count_nonzero(differs & seen) < 0.8 * seen.sum():
        return sal, False
    view = (255.0 * np.exp(-dist / _CONTRAST_SCALE)).astype(np.uint8)
    view = np.repeat(view[..., None], 3, axis=2)
    second = np.asarray(saliency(view), np.float32)
    return cv2.resize(second, (w, h), interpolation=cv2.INTER_LINEAR), True


def _colour_cut(rgb: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Colour-distance cut-out from the backdrop colour (the border band's median).

    Returns:
        ``(mask, seen, spread, dist)``: the cleaned binary mask, the pixels that differ from
        the backdrop by colour (before bridging and hole filling), the border's median
        colour spread and every pixel's distance from the backdrop colour (Delta E).
    """
    h, w = rgb.shape[:2]
    lab = cv2.cvtColor(rgb.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_RGB2Lab)
    # A light blur evens out fabric and backdrop texture before the per-pixel test.
    lab = cv2.GaussianBlur(lab, (0, 0), 0.5)
    border = _border_band(lab, band)
    backdrop = np.median(border, axis=0)
    dist = np.sqrt(((lab - backdrop) ** 2).sum(axis=2))
    border_dist = np.sqrt(((border - backdrop) ** 2).sum(axis=1))
    # Median and MAD rather than mean and std: a garment that touches the border puts
    # outliers into the band, and they must not lift the threshold above the garment.
    med = float(np.median(border_dist))
    mad = 1.4826 * float(np.median(np.abs(border_dist - med)))
    threshold = float(np.clip(med + 6.0 * mad + 2.0, _THRESHOLD_FLOOR, _THRESHOLD_CAP))

    fg = (dist > threshold).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    seen = fg.astype(bool)
    fg = _bridge_vertical(fg, max(3, int(0.05 * h) | 1))
    mask = _main_pieces(fg.astype(bool))
    # Holes enclosed by the garment are garment: a white print, a white stripe that stops
    # short of the outline, a button the colour of the backdrop.
    return ndimage.binary_fill_holes(mask), seen, med, dist


def _main_pieces(mask: np.ndarray, share: float = 0.1) -> np.ndarray:
    """The largest connected piece and any at least ``share`` of its size (a detached strap,
    a belt); specks, labels and props smaller than that go."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    if count <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(count, bool)
    keep[1:] = areas >= share * areas.max()
    return keep[labels]


def _combine(
    sal: np.ndarray,
    colour: np.ndarray,
    seen: np.ndarray,
    spread: float,
    dist: np.ndarray,
    second_look: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Learned saliency where it is strong, colour edges where they are.

    U²-Net-p sees the garment as an object, so a white tee on white or a soft shadow does
    not fool it, and a busy floor or props around the garment are not salient; but its
    320 x 320 output is blurred at full resolution. The colour cut-out has crisp, exact
    edges but only on a plain backdrop, and punches holes where the garment has the
    backdrop's colour. So: the saliency decides the region (its interior is garment, far
    outside is backdrop) and, on a plain backdrop, the colour cut-out decides the outline
    within a narrow band along the saliency's edge; where the colour cut-out holds all the
    salient region and is at least as complete, it is taken whole (see below).

    Returns:
        ``(mask, seen)``: the binary mask, and the pixels whose colour was measured as
        garment (for the soft edge).
    """
    h, w = sal.shape
    s_bin = _main_pieces(sal >= 0.5)
    if not s_bin.any():
        return s_bin, seen
    ys, xs = np.nonzero(s_bin)
    size = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    plain = spread <= _PLAIN_SPREAD
    if plain and not colour.any() and (dist > _FAINT_DELTA_E).mean() < MIN_AREA_FRACTION:
        # Nothing differs from a plain backdrop, not even faintly: the image is blank,
        # whatever a min-max normalised saliency map of it shows.
        return colour, seen
    if plain:
        overlap = np.count_nonzero(colour & s_bin)
        # The colour cut-out holds nearly all the salient region and is as complete: on a
        # plain backdrop it is the exact one (it keeps the gap between two legs that the
        # blurred saliency bridges, and its bridging and hole filling keep backdrop-white
        # stripes and prints). It is also kept when it is much larger: the saliency fixed
        # on a detail (a bold print on a white tee can outshine the tee).
        # What only the saliency claims must have the backdrop's very colour for that (a
        # faint white sleeve on white differs by a Delta E or two, the gap between legs by
        # nothing).
        only_salient = s_bin & ~colour
        faint = (
            float(np.median(dist[only_salient])) >= _FAINT_DELTA_E if only_salient.any() else False
        )
        # Taken whole: what only the saliency claims is backdrop-coloured and the colour
        # cut-out adds little beyond the salient region, or the colour cut-out holds the
        # salient region and is much larger (the saliency fixed on a detail).
        extra = np.count_nonzero(colour & ~s_bin)
        # (Not after a second look: that map is of a garment too faint for the colour
        # cut-out by construction.)
        if (not faint and not second_look and extra <= 0.15 * colour.sum()) or (
            overlap >= 0.9 * s_bin.sum() and colour.sum() > 1.2 * s_bin.sum()
        ):
            return colour, seen
    r = max(2, int(0.015 * size))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    core = cv2.erode(s_bin.astype(np.uint8), k).astype(bool)
    reach = cv2.dilate(s_bin.astype(np.uint8), k).astype(bool)
    if plain:
        mask = core | (reach & colour)
        seen = seen & reach
    else:
        mask = s_bin
        seen = np.zeros_like(seen)
    mask = ndimage.binary_fill_holes(_main_pieces(mask))
    return mask, seen


def _drop_hanger(mask: np.ndarray) -> np.ndarray:
    """Remove a hanger's hook (and clips) sticking up from the top of a garment.

    A hook is thin (a few per cent of the garment's width) and stands above the garment's
    top edge near its centre; a strap is thin too but runs from the body to the shoulders on
    either side. So: what an opening with a kernel a little wider than a hook removes and
    lies above the opened garment's top row within the central three tenths of its width
    goes, with the thin central pixels connected to it (the hook's neck in the neck
    opening). Straps stand off the centre, and ties below the hem are never above the top.
    """
    ys, xs = np.nonzero(mask)
    width = xs.max() - xs.min() + 1
    r = max(2, int(0.02 * width))
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    body = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, k).astype(bool)
    body = _main_pieces(body, 0.05)
    if not body.any():
        return mask
    rows = np.flatnonzero(body.any(axis=1))
    top = rows[0]
    thin = mask & ~body
    bx = np.flatnonzero(body.any(axis=0))
    centre, half = (bx[0] + bx[-1]) / 2.0, (bx[-1] - bx[0] + 1) / 2.0
    central = np.zeros_like(mask)
    central[:, max(0, int(centre - 0.3 * half)) : int(centre + 0.3 * half) + 1] = True
    # Thin fabric above the garment's body near its centre is a hook; what hangs from it
    # down into the neck opening (its neck, thin and central too) goes with it.
    seed = thin & central
    seed[top:] = False
    if not seed.any():
        return mask
    drop = ndimage.binary_propagation(seed, mask=thin & central)
    out = mask & ~drop
    return _main_pieces(out)


def _border_band(img: np.ndarray, band: int) -> np.ndarray:
    """The pixels of a ``band``-wide frame along the image border, as ``N x C``."""
    c = img.shape[2]
    return np.concatenate(
        [
            img[:band].reshape(-1, c),
            img[-band:].reshape(-1, c),
            img[band:-band, :band].reshape(-1, c),
            img[band:-band, -band:].reshape(-1, c),
        ]
    )


def _edge_alpha(
    rgb: np.ndarray, mask: np.ndarray, inferred: np.ndarray, border_rgb: np.ndarray
) -> np.ndarray:
    """Soft alpha: the binary mask, with each outline pixel's own coverage where it can be
    measured.

    An outline pixel is a mix of garment and backdrop; in RGB its coverage is the
    projection of ``pixel - backdrop`` onto ``garment - backdrop``, with the garment colour
    taken from nearby interior pixels. That puts the 0.5 level where the true edge is,
    instead of wherever a blurred colour distance crosses a threshold (up to a pixel or two
    outside for a dark garment). Where garment and backdrop colours are too close to
    measure, and on ``inferred`` pixels (garment by shape, not by colour: a white stripe
    reaching the outline), the binary mask is feathered instead.
    """
    m8 = mask.astype(np.uint8)
    feathered = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.7)
    k5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    interior = cv2.erode(m8, k5, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    outline = (cv2.dilate(m8, k5) > 0) & (interior == 0)
    if not outline.any() or not interior.any():
        return feathered
    f = rgb.astype(np.float32)
    # The garment colour next to each outline pixel: that of the nearest interior pixel
    # (not an average over a window, which mixes a stripe's colours at a striped edge).
    _, nearest = cv2.distanceTransformWithLabels(
        (interior == 0).astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )
    palette = cv2.blur(f, (3, 3))[interior > 0]  # labels number interior pixels row-major
    backdrop = np.median(border_rgb.astype(np.float32), axis=0)
    ys, xs = np.nonzero(outline)
    garment = palette[nearest[ys, xs] - 1]
    span = garment - backdrop
    span2 = (span**2).sum(axis=1)
    coverage = ((f[ys, xs] - backdrop) * span).sum(axis=1) / np.maximum(span2, 1e-6)
    # Below ~12 RGB levels of contrast the projection is mostly noise.
    usable = (span2 > 12.0**2) & ~inferred[ys, xs]
    alpha = feathered.copy()
    alpha[ys[usable], xs[usable]] = np.clip(coverage[usable], 0.0, 1.0)
    # A pattern's edge next to the outline (a light check beside a dark rib) can read as low
    # coverage; such pixels enclosed by garment are garment, as in the binary mask.
    solid = alpha >= 0.5
    holes = ndimage.binary_fill_holes(solid) & ~solid
    alpha[holes] = np.maximum(feathered[holes], 0.5)
    return alpha


def _bridge_vertical(fg: np.ndarray, length: int) -> np.ndarray:
    """Close vertical gaps shorter than ``length`` px that have garment above and below.

    A band the colour of the backdrop (a white stripe on a white backdrop) that reaches the
    outline leaves a bay rather than a hole; a vertical closing fills it. Gaps open at the
    bottom (between the legs, under a sleeve) or at the top (the neckline) stay open: a
    closing only adds pixels with foreground within reach on both sides.
    """
    pad = length
    padded = cv2.copyMakeBorder(fg, pad, pad, 0, 0, cv2.BORDER_CONSTANT, value=0)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (1, length))
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel)
    return closed[pad:-pad]


# --------------------------------------------------------------------------- analysis


class _ShapeError(Exception):
    """The cut-out does not have the structure the landmark finder needs."""


def analyze_garment(
    image: np.ndarray,
    category: str | None = None,
    segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
    *,
    sleeve: str | None = None,
    length: str | None = None,
    saliency: Saliency | str | None = "default",
) -> GarmentAnalysis:
    """Cut out a flat-lay garment and describe it.

    Args:
        image: ``H x W x 3`` RGB or ``H x W x 4`` RGBA uint8 flat-lay: one garment laid
            front-up on a plain backdrop (or a transparent PNG).
        category: override of the detected category (``"top"``, ``"bottom"``, ``"dress"``
            or ``"outerwear"``); landmarks are then found for that category. An upper-body
            category (top, dress, outerwear) needs a neckline and a bottom needs a
            waistband, so an override is refused only where the outline contradicts it: an
            upper-body category for a garment with a straight top edge (no neckline to
            find), or ``"bottom"`` for one whose top edge is a neckline between two
            shoulders. A bottom without two legs is handled as a skirt.
        segmenter: an alternative cut-out with :func:`segment_garment`'s contract (e.g.
            SAM, :mod:`services.neural.garment_sam`), used for images without real
            transparency; it copes with busy backdrops, so the plain-backdrop check is
            skipped.

    Returns:
        The :class:`GarmentAnalysis`.

    Raises:
        InvalidInputError: ``GARMENT_NOT_FOUND`` (field ``garment``) when the image is
            blank, its border is not a plain backdrop, the garment runs off most of the
            border, covers under 2 % of the image or has no recognisable garment outline;
            ``GARMENT_CATEGORY_INVALID`` (field ``category``) for an unknown category;
            ``GARMENT_CATEGORY_CONFLICT`` (field ``category``) for an override the outline
            contradicts.
        ValueError: when ``image`` is not an ``H x W x 3|4`` uint8 array.
    """
    image = _check_array(image)
    if category is not None and category not in CATEGORIES:
        raise InvalidInputError(
            "GARMENT_CATEGORY_INVALID",
            f"unknown garment category {category!r}; expected one of {', '.join(CATEGORIES)}",
            field="category",
        )
    if sleeve is not None and sleeve not in SLEEVES:
        raise InvalidInputError(
            "GARMENT_SLEEVE_INVALID",
            f"unknown sleeve hint {sleeve!r}; expected one of {', '.join(SLEEVES)}",
            field="sleeve",
        )
    if length is not None and length not in LENGTHS:
        raise InvalidInputError(
            "GARMENT_LENGTH_INVALID",
            f"unknown length hint {length!r}; expected one of {', '.join(LENGTHS)}",
            field="length",
        )
    h, w = image.shape[:2]
    if min(h, w) < 32:
        raise _not_found(f"the image is {w} x {h} pixels, too small to find a garment in")

    model = _saliency(saliency)
    seg = _segment(image, model)
    if segmenter is not None and not seg.from_alpha:
        seg = _Segmentation(np.asarray(segmenter(image), np.float32), False, 0.0)
    limit = MAX_BACKDROP_SPREAD if model is None and segmenter is None else MAX_SCENE_SPREAD
    if not seg.from_alpha and seg.backdrop_spread > limit:
        raise _not_found(
            "the image border is not a plain backdrop (its colour varies by a median "
            f"Delta E of {seg.backdrop_spread:.0f}); a flat-lay photo on a plain background "
            "is needed"
        )
    binary = seg.alpha >= 0.5
    area = float(binary.mean())
    if area == 0.0:
        raise _not_found(
            "nothing stands out from the background: the image looks blank"
            if not seg.from_alpha
            else "the image is fully transparent"
        )
    ring = np.concatenate([binary[0], binary[-1], binary[1:-1, 0], binary[1:-1, -1]])
    if ring.mean() > MAX_BORDER_FRACTION:
        raise _not_found(
            f"the garment covers {100 * ring.mean():.0f}% of the image border; a flat-lay "
            "with background on all sides is needed (this looks like a close-up or a photo "
            "without a plain background)"
        )
    if area < MIN_AREA_FRACTION:
        raise _not_found(
            f"the garment covers only {100 * area:.1f}% of the image; at least "
            f"{100 * MIN_AREA_FRACTION:.0f}% is needed"
        )

    ys, xs = np.nonzero(binary)
    gx0, gx1, gy0, gy1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    margin = 2 + round(0.02 * max(gx1 - gx0, gy1 - gy0))
    x0, y0 = max(0, gx0 - margin), max(0, gy0 - margin)
    x1, y1 = min(w, gx1 + margin), min(h, gy1 + margin)
    alpha = np.ascontiguousarray(seg.alpha[y0:y1, x0:x1])
    rgb = np.ascontiguousarray(image[y0:y1, x0:x1, :3])

    try:
        found = _describe(rgb, alpha >= 0.5, category, sleeve, length)
    except _ShapeError as exc:
        raise _not_found(f"the cut-out does not have a garment's outline: {exc}") from None

    a8 = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return GarmentAnalysis(
        rgba=np.dstack([rgb, a8]),
        mask=alpha,
        bbox=(x0, y0, x1, y1),
        category=found["category"],
        sleeve=found["sleeve"],
        length=found["length"],
        landmarks=found["landmarks"],
        category_source="request" if category is not None else "shape",
        confidence=1.0 if category is not None else found["confidence"],
        sleeve_source="request" if sleeve is not None and found["sleeve"] is not None else "shape",
        length_source="request" if length is not None else "shape",
        features=found["features"],
    )


def _not_found(why: str) -> InvalidInputError:
    return InvalidInputError("GARMENT_NOT_FOUND", f"no garment found: {why}", field="garment")


def _conflict(message: str) -> InvalidInputError:
    return InvalidInputError("GARMENT_CATEGORY_CONFLICT", message, field="category")


def _describe(
    rgb: np.ndarray,
    mask: np.ndarray,
    requested: str | None,
    sleeve_hint: str | None = None,
    length_hint: str | None = None,
) -> dict:
    """Category, sleeve, length and landmarks (crop coordinates) of a cropped mask.

    The description comes from :func:`services.common.analysis.garment_shape.describe`;
    hints win over it unless the outline flatly contradicts them, and without a hint a
    coin-toss decision is refused rather than guessed.
    """
    h, w = mask.shape
    scale = min(1.0, _SHAPE_SIDE / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        m = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) >= 128
    else:
        m = mask
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size < 8:
        raise _ShapeError("it is only a few pixels tall")

    found = GS.describe(m)
    f = found.features
    # Only a clear-cut reading of the outline overrules a hint ("flatly contradicts").
    if (
        requested is not None
        and requested != found.category
        and found.category_confidence >= _CLEAR
    ):
        sleeves = f.sleeve_out > GS.SLEEVE_OUT_ABOVE or f.sleeve_hanging > 0
        if requested == "bottom" and sleeves and f.leg_split <= GS.LEGS_ABOVE:
            raise _conflict(
                "category 'bottom' needs a waistband along the top edge, but this garment has "
                "sleeves standing out from its shoulders and no legs (it looks like a "
                f"{found.category})"
            )
        if (
            requested in _UPPER
            and found.category == "bottom"
            and not sleeves
            and f.side_bay <= GS.ARMHOLE_ABOVE
            and (f.leg_split > GS.LEGS_ABOVE or f.straight_top > GS.WAISTBAND_ABOVE)
        ):
            raise _conflict(
                f"category {requested!r} needs an upper-body garment, but this one has a "
                "straight top edge (a waistband), no shoulders or sleeves"
                + (" and two legs" if f.leg_split > GS.LEGS_ABOVE else "")
                + " (it looks like a bottom)"
            )
    if requested is None and found.category_confidence < GS.UNSURE_BELOW:
        raise InvalidInputError(
            "GARMENT_CATEGORY_UNCERTAIN",
            f"the garment's outline does not settle its category (it is closest to "
            f"{found.category!r}); send the category hint (top, bottom, dress or outerwear)",
            field="category",
        )
    category = requested or found.category
    if requested is not None and requested != found.category:
        found = GS.describe(m, requested, features=f)
    sleeve = found.sleeve if category != "bottom" else None
    if category != "bottom" and sleeve_hint is None and found.sleeve_confidence < GS.UNSURE_BELOW:
        raise InvalidInputError(
            "GARMENT_CATEGORY_UNCERTAIN",
            f"the garment's outline does not settle its sleeves (closest: {sleeve!r}); send "
            "the sleeve hint (sleeveless, short or long)",
            field="sleeve",
        )
    if category != "bottom" and sleeve_hint is not None:
        sleeve = sleeve_hint
    length = length_hint or found.length

    xc = _axis(m)
    if category in _UPPER:
        landmarks, _info = _upper(m, xc)
    else:
        landmarks, _info = _lower(m, xc, f.leg_split > GS.LEGS_ABOVE)
    if scale < 1.0:
        landmarks = {
            k: ((x + 0.5) / scale - 0.5, (y + 0.5) / scale - 0.5) for k, (x, y) in landmarks.items()
        }
    return {
        "category": category,
        "sleeve": sleeve,
        "length": length,
        "landmarks": {k: (float(x), float(y)) for k, (x, y) in landmarks.items()},
        "confidence": found.category_confidence,
        "features": dataclasses.asdict(f),
    }


def _axis(m: np.ndarray) -> float:
    """x of the vertical axis of symmetry: median midpoint of the rows' extents."""
    rows = m.any(axis=1)
    left = np.argmax(m, axis=1)
    right = m.shape[1] - 1 - np.argmax(m[:, ::-1], axis=1)
    return float(np.median((left[rows] + right[rows]) / 2.0))


def _top_profile(m: np.ndarray) -> np.ndarray:
    """First garment row per column (``h`` where the column is empty)."""
    first = np.argmax(m, axis=0)
    return np.where(m.any(axis=0), first, m.shape[0])


def _centre_run(m: np.ndarray, xi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: whether the axis column is garment, and the run's left and right ends."""
    right = m[:, xi:]
    r_len = np.where(right.all(axis=1), right.shape[1], np.argmin(right, axis=1))
    left = m[:, xi::-1]
    l_len = np.where(left.all(axis=1), left.shape[1], np.argmin(left, axis=1))
    return m[:, xi], xi - l_len + 1, xi + r_len - 1


def _chord_farthest(points: np.ndarray, start, end) -> int:
    """Index of the point farthest from the chord ``start -> end`` on its right-hand side
    (with y down: above/outside for a chord running right-and-down)."""
    d = np.asarray(end, float) - np.asarray(start, float)
    n = np.array([d[1], -d[0]]) / max(np.hypot(*d), 1e-9)
    return int(np.argmax((points - np.asarray(start, float)) @ n))


# --------------------------------------------------------------------------- upper body


def _upper(m: np.ndarray, xc: float) -> tuple[dict, dict]:
    h, w = m.shape
    xi = int(round(xc))
    column = m[:, xi]
    if not column.any():
        raise _ShapeError("the centre column is empty")
    y_nf = int(np.argmax(column))
    run = column[y_nf:]
    y_hem = y_nf + (int(np.argmin(run)) - 1 if not run.all() else run.size - 1)
    if y_hem - y_nf < 8:
        raise _ShapeError("the body below the neckline is too short")

    right, right_sleeved = _upper_side(m, xi, y_nf, y_hem)
    flipped, left_sleeved = _upper_side(m[:, ::-1], w - 1 - xi, y_nf, y_hem)
    left = {k: (w - 1 - x, y) for k, (x, y) in flipped.items()}
    landmarks = {"neck_front": (xc, float(y_nf))}
    for side, found in (("r", right), ("l", left)):
        for part in ("neck", "shoulder", "armpit", "hem"):
            landmarks[f"{part}_{side}"] = found[part]
    sleeved = right_sleeved and left_sleeved
    if sleeved:
        for side, found in (("r", right), ("l", left)):
            landmarks[f"cuff_{side}_top"] = found["cuff_top"]
            landmarks[f"cuff_{side}_bottom"] = found["cuff_bottom"]

    chest = landmarks["armpit_r"][0] - landmarks["armpit_l"][0]
    if chest <= 4:
        raise _ShapeError("no torso between the armpits")
    top_y = (landmarks["neck_l"][1] + landmarks["neck_r"][1]) / 2
    hem_y = (landmarks["hem_l"][1] + landmarks["hem_r"][1]) / 2
    info = {"chest": chest, "length_ratio": (hem_y - top_y) / chest, "sleeve": "sleeveless"}
    info["sleeve_ratio"] = 0.0
    if sleeved:
        reach = []
        for side in ("l", "r"):
            mid = np.add(landmarks[f"cuff_{side}_top"], landmarks[f"cuff_{side}_bottom"]) / 2
            reach.append(np.hypot(*(mid - np.asarray(landmarks[f"shoulder_{side}"]))))
        info["sleeve_ratio"] = float(np.mean(reach)) / chest
        info["sleeve"] = "sleeved"
    return landmarks, info


def _upper_side(m: np.ndarray, xi: int, y_nf: int, y_hem: int) -> tuple[dict, bool]:
    """Right-hand landmarks of an upper-body garment (call on a flipped mask for the left),
    and whether that side has a sleeve."""
    h, w = m.shape
    on, _, b = _centre_run(m, xi)
    out = (b - xi).astype(float)
    top = _top_profile(m)
    ys = np.arange(y_nf, y_hem + 1)
    body = out[ys]

    # Neck point: the highest point of the outline right of the notch (the innermost
    # column at that height: the shoulder seam slopes down from it).
    right_cols = np.arange(xi + 1, w)
    t_right = top[xi + 1 :]
    if right_cols.size == 0 or t_right.min() >= h:
        raise _ShapeError("nothing right of the centre line")
    neck_x = int(right_cols[np.flatnonzero(t_right == t_right.min())[0]])
    neck = (float(neck_x), float(t_right.min()))

    # Going up the torso from the hem, the run through the centre widens at once where a
    # sleeve joins it: that row is the armpit. Without such a jump there are no sleeves.
    lower = body[len(body) // 2 :]
    half_chest = float(np.median(lower)) if lower.size else float(body.max())
    # A sleeve joining adds a third of the half chest or more (dress cap sleeves; more for
    # t-shirts and long sleeves). Comparing short windows above and below each row, rather
    # than single rows, keeps a ragged outline's one-row notches from passing for a sleeve.
    jump_tol = max(3.0, 0.15 * half_chest)
    k = max(2, int(0.01 * len(body)))
    padded = np.concatenate([np.full(k, body[0]), body, np.full(k, body[-1])])
    windows = np.lib.stride_tricks.sliding_window_view(padded, k)
    # Row i: median of rows i-k+1..i (above, itself included) and of rows i+1..i+k (below).
    above = np.median(windows[1 : len(body) + 1], axis=1)
    below = np.median(windows[k + 1 : k + 1 + len(body)], axis=1)
    steps = np.minimum(above, body) - below
    # Only the upper two thirds: a flared hem's last, antialiased rows can step as well.
    steps[int(0.65 * len(steps)) :] = 0
    jumps = np.flatnonzero(steps > jump_tol)
    found: dict = {"neck": neck}
    if jumps.size:
        i = int(jumps[-1])
        i = min(i + 1, len(body) - 1)
        merge = (float(b[ys[i]]), float(ys[i]))  # first row of the torso alone
        found["armpit"] = _wedge_apex(m, on, b, merge, half_chest)
        cuff_top, cuff_bottom = _cuffs(m, xi, on, b, merge, half_chest)
        found["cuff_top"], found["cuff_bottom"] = cuff_top, cuff_bottom
        # Shoulder tip: the bend of the top outline between the neck point and the cuff.
        cols = np.arange(int(neck[0]), int(round(cuff_top[0])) + 1)
        cols = cols[top[cols] < h]
        pts = np.stack([cols, top[cols]], axis=1).astype(float)
        found["shoulder"] = tuple(pts[_chord_farthest(pts, neck, cuff_top)])
    sleeved = "armpit" in found
    # Hem corner: the bottom-outer corner of the torso run.
    lo = int(found["armpit"][1]) if "armpit" in found else y_nf + (y_hem - y_nf) // 2
    rows = np.arange(max(lo, y_nf), y_hem + 1)
    rows = rows[on[rows]]
    if rows.size == 0:
        raise _ShapeError("no torso below the armpits")
    k = int(np.argmax(b[rows] + rows))
    hem = (float(b[rows[k]]), float(rows[k]))
    found["hem"] = hem
    if "armpit" not in found:
        # Sleeveless: the strap's outer top corner is the shoulder; the armpit is where the
        # armhole meets the side seam, the outline's farthest point outside the chord from
        # shoulder to hem corner.
        right_edge = w - 1 - np.argmax(m[:, ::-1], axis=1)
        rows_all = np.arange(int(neck[1]), int(hem[1]) + 1)
        rows_all = rows_all[m[rows_all].any(axis=1)]
        score = (right_edge[rows_all] - xi) - (rows_all - neck[1])
        j = int(np.argmax(score))
        shoulder = (float(right_edge[rows_all[j]]), float(rows_all[j]))
        found["shoulder"] = shoulder
        side = np.arange(int(shoulder[1]), int(hem[1]) + 1)
        side = side[m[side].any(axis=1)]
        pts = np.stack([right_edge[side], side], axis=1).astype(float)
        rough = pts[_chord_farthest(pts, shoulder, hem)]
        found["armpit"] = _side_seam_top(right_edge, xi, rough, shoulder[1], half_chest)
    return found, sleeved


def _wedge_apex(m: np.ndarray, on: np.ndarray, b: np.ndarray, seen, half_chest: float):
    """The armpit of a sleeve hanging close to the body.

    The gap between a long sleeve and the torso closes to a wedge whose tip is narrower than
    a pixel, so the rows where torso and sleeve first merge lie below the true armpit. The
    torso's side and the sleeve's underside are near-straight there: fitted on the rows
    where the gap is open and met, they give the tip.
    """
    h, w = m.shape
    y0 = int(seen[1])
    # Not the first rows below the merge: there the gap is a pixel or two wide and its
    # mixed pixels count as garment, which would bias the lines towards each other.
    rows = np.arange(y0 + 1 + int(0.1 * half_chest), min(h, y0 + 1 + int(0.5 * half_chest)))
    rows = rows[on[rows]]
    if rows.size < 5:
        return seen
    side = b[rows].astype(float)
    sleeve = np.full(rows.size, np.nan)
    for k, y in enumerate(rows):
        after = m[y, b[y] + 1 :]
        if after.any():
            sleeve[k] = b[y] + 1 + np.argmax(after)
    ok = ~np.isnan(sleeve)
    if ok.sum() < 5:
        return seen
    # Edges of the gap: half a pixel outside the last and first garment pixel centres.
    s_slope, s_icpt = np.polyfit(rows[ok], side[ok] + 0.5, 1)
    v_slope, v_icpt = np.polyfit(rows[ok], sleeve[ok] - 0.5, 1)
    if v_slope - s_slope <= 1e-3:  # the gap does not open downwards
        return seen
    apex = (s_icpt - v_icpt) / (v_slope - s_slope)
    y = float(np.clip(apex, y0 - 0.15 * half_chest, y0))
    return (float(s_slope * y + s_icpt), y)


def _side_seam_top(edge: np.ndarray, xi: int, rough, top: float, half_chest: float) -> tuple:
    """Where a sleeveless garment's side seam ends in the armhole.

    The farthest point from the shoulder-hem chord is a good first guess, but along a side
    almost parallel to the chord a one-pixel bump moves it far. So: fit the side just below
    the guess with a line, and go up from there while the outline stays on it; the armhole
    leaves the line abruptly, at the armpit.
    """
    half_width = max(rough[0] - xi, 4.0)
    lo, hi = int(rough[1] + 0.15 * half_width), int(rough[1] + 0.7 * half_width)
    hi = min(hi, edge.size)
    if hi - lo < 4:
        return (float(rough[0]), float(rough[1]))
    rows = np.arange(lo, hi)
    slope, icpt = np.polyfit(rows, edge[rows].astype(float), 1)
    tol = max(1.5, 0.03 * half_chest)
    last, misses = lo, 0
    for y in range(lo - 1, int(top), -1):
        if abs(edge[y] - (slope * y + icpt)) > tol:
            misses += 1
            if misses >= 2:  # two rows off the line: not a ragged pixel, the armhole
                break
        else:
            last, misses = y, 0
    return (float(edge[last]), float(last))


def _cuffs(m, xi, on, b, armpit, half_chest) -> tuple[tuple, tuple]:
    """The two corners of the right sleeve's opening; ``armpit`` is the first row where the
    torso's run no longer includes the sleeve."""
    ax, ay = armpit
    h, w = m.shape
    margin = max(2.0, 0.04 * half_chest)
    cols = np.arange(w)[None, :]
    rows = np.arange(h)[:, None]
    b_eff = np.where(on, b, xi)[:, None]
    beyond = np.where(rows <= ay, cols > ax + margin, (cols > b_eff) & (cols > xi))
    candidate = (m & beyond).astype(np.uint8)
    # The sleeve is the largest piece beyond the torso's side; slivers along a ragged
    # outline elsewhere (an antialiased hem row) are not.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=8)
    if count <= 1:
        raise _ShapeError("a sleeve is missing")
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    ys, xs = np.nonzero(labels == biggest)
    px = np.stack([xs, ys], axis=1).astype(float)
    if len(px) < 10:
        raise _ShapeError("a sleeve is too small to measure")
    # The sleeve's root: its pixels next to the torso's side line.
    near = px[px[:, 0] <= ax + margin + 2]
    root = near.mean(axis=0) if len(near) else np.array([ax, ay - half_chest * 0.5])
    dist = np.hypot(*(px - root).T)
    tip = px[dist >= 0.75 * dist.max()].mean(axis=0)
    u = (tip - root) / max(np.hypot(*(tip - root)), 1e-9)
    v = np.array([-u[1], u[0]])
    # The opening's corners are the sleeve's extreme points half-way between its axis and
    # the perpendicular, on either side.
    c1 = px[int(np.argmax(px @ (u + v)))]
    c2 = px[int(np.argmax(px @ (u - v)))]
    top, bottom = (c1, c2) if c1[1] <= c2[1] else (c2, c1)
    return (float(top[0]), float(top[1])), (float(bottom[0]), float(bottom[1]))


def _lower(m: np.ndarray, xc: float, legs: bool) -> tuple[dict, dict]:
    h, w = m.shape
    rows = np.flatnonzero(m.any(axis=1))
    top, bottom = int(rows[0]), int(rows[-1])
    height = bottom - top + 1
    left_edge = np.argmax(m, axis=1)
    right_edge = w - 1 - np.argmax(m[:, ::-1], axis=1)
    xi = int(round(xc))

    upper_rows = rows[rows <= top + 0.3 * height]
    kr = int(np.argmax(right_edge[upper_rows] - upper_rows))
    kl = int(np.argmax(-left_edge[upper_rows] - upper_rows))
    landmarks = {
        "waist_l": (float(left_edge[upper_rows[kl]]), float(upper_rows[kl])),
        "waist_r": (float(right_edge[upper_rows[kr]]), float(upper_rows[kr])),
    }
    waist = landmarks["waist_r"][0] - landmarks["waist_l"][0]
    if waist <= 4:
        raise _ShapeError("no waistband")
    if legs:
        # The centre column's first run of garment, from the waist down to the gap (three
        # columns, so that a ragged antialiased pixel does not end it early).
        column = m[:, max(0, xi - 1) : xi + 2].any(axis=1)
        start = int(np.argmax(column))
        run = column[start:]
        crotch = start + (int(np.argmin(run)) - 1 if not run.all() else run.size - 1)
        leg_rows = np.arange(crotch + 1, bottom + 1)
        leg_rows = leg_rows[m[leg_rows].any(axis=1)]
        landmarks["crotch"] = _crotch(m, xi, xc, crotch, bottom)
        for side, sub, to_x in (
            ("r", m[:, xi + 1 :], lambda x: xi + 1 + x),
            ("l", m[:, :xi][:, ::-1], lambda x: xi - 1 - x),
        ):
            has = sub[leg_rows].any(axis=1)
            rr = leg_rows[has]
            if rr.size == 0:
                raise _ShapeError("a leg is missing")
            inner = np.argmax(sub[rr], axis=1)
            outer = sub.shape[1] - 1 - np.argmax(sub[rr][:, ::-1], axis=1)
            ko = int(np.argmax(outer + rr))
            ki = int(np.argmax(rr - inner))
            landmarks[f"leg_{side}_out"] = (float(to_x(outer[ko])), float(rr[ko]))
            landmarks[f"leg_{side}_in"] = (float(to_x(inner[ki])), float(rr[ki]))
        hem_y = np.mean([landmarks[f"leg_{s}_{e}"][1] for s in "lr" for e in ("in", "out")])
    else:
        lower_rows = rows[rows >= top + 0.6 * height]
        kr = int(np.argmax(right_edge[lower_rows] + lower_rows))
        kl = int(np.argmax(-left_edge[lower_rows] + lower_rows))
        landmarks["hem_l"] = (float(left_edge[lower_rows[kl]]), float(lower_rows[kl]))
        landmarks["hem_r"] = (float(right_edge[lower_rows[kr]]), float(lower_rows[kr]))
        hem_y = (landmarks["hem_l"][1] + landmarks["hem_r"][1]) / 2
    waist_y = (landmarks["waist_l"][1] + landmarks["waist_r"][1]) / 2
    return landmarks, {"length_ratio": (hem_y - waist_y) / waist}


def _crotch(m: np.ndarray, xi: int, xc: float, found: int, bottom: int) -> tuple[float, float]:
    """The top of the gap between the legs.

    Near the crotch the gap narrows below a pixel and the cut-out closes it, so the first
    open row of the centre column sits too low. The inseams are close to straight lines:
    fitted on the open part of the gap and met, they put the apex where the gap closes.
    """
    leg = bottom - found
    rows = np.arange(found + int(0.1 * leg), found + int(0.6 * leg))
    rows = rows[m[rows, : xi + 1].any(axis=1) & m[rows, xi:].any(axis=1)]
    if rows.size < 6:
        return (xc, float(found))
    right = m[rows, xi:]
    left = m[rows, : xi + 1][:, ::-1]
    # Edges of the gap, half a pixel outside the last garment pixel centres.
    x_right = xi + np.argmax(right, axis=1) - 0.5
    x_left = xi - np.argmax(left, axis=1) + 0.5
    slope_r, icpt_r = np.polyfit(rows, x_right, 1)
    slope_l, icpt_l = np.polyfit(rows, x_left, 1)
    if slope_r - slope_l <= 1e-3:  # the gap does not open downwards: keep what was seen
        return (xc, float(found))
    apex = (icpt_l - icpt_r) / (slope_r - slope_l)
    # Only ever move up, and not far: a rounded crotch sits below the lines' meeting point.
    y = float(np.clip(apex, found - 0.1 * leg, found))
    return (float((slope_r * y + icpt_r + slope_l * y + icpt_l) / 2), y)
