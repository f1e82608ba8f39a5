"""Compositing the warped garment into the photo.

Layers, back to front: the photo with the old garment removed where the new one does not
reach (arms get skin, the rest is filled from the surrounding background), the new garment
with the photo's folds and light applied (shading transfer), then whatever belongs in front
of it: hair falling over the shoulders, the face, hands, and forearms crossing the torso.
Edges are soft: the garment's alpha is anti-aliased by the warp and feathered by a pixel.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from services.common.analysis import person as P
from services.common.filters import wide_gaussian


@dataclasses.dataclass
class Layer:
    """A warped garment part ready to composite."""

    name: str
    rgb: np.ndarray  # H x W x 3 float32 0..255
    alpha: np.ndarray  # H x W float32 0..1
    kind: str  # "torso", "sleeve", "lower"


@dataclasses.dataclass
class CompositeResult:
    """The composite and the masks later stages (refiner, metrics, storefront) need."""

    image: np.ndarray  # H x W x 3 uint8
    garment_alpha: np.ndarray  # H x W float32: where the new garment shows
    protect: np.ndarray  # H x W bool: face, hair, hands (must stay the photo's pixels)
    cleared: np.ndarray  # H x W bool: old-garment pixels replaced by skin or background
    shading: np.ndarray  # H x W float32: the multiplicative shading applied


# Spread (standard deviation) of the log-luminance ripple of folds on plain cloth.
_FOLD_SPREAD = 0.03


def shading_map(rgb: np.ndarray, region: np.ndarray, scale: float) -> np.ndarray:
    """Folds and light of the old clothes as a multiplicative map around 1.

    Only pixels of the old garment's dominant material count (its main colour in Lab):
    prints, badges, a white shirt under a jacket are left out and filled in from around them
    by normalised convolution, so they do not print through onto the new garment. On those
    pixels the luminance at a fine scale divided by that at a coarse scale keeps folds and
    creases but drops the old garment's own colour. Outside ``region`` the map is 1.

    Args:
        rgb: the photo.
        region: where the old clothes are.
        scale: a length in pixels (e.g. the shoulder width) setting the filter sizes.
    """
    ones = np.ones(rgb.shape[:2], np.float32)
    box = _box(region)
    if box is None or region.sum() < 100:
        return ones
    # Only around the region: its box plus three of the widest blur's sigmas (beyond that
    # the map is 1 and the blurs see the same pixels).
    pad = int(3 * max(4.0, scale * 0.15)) + 2
    h, w = region.shape
    y0, y1, x0, x1 = (
        max(0, box[0] - pad),
        min(h, box[1] + pad),
        max(0, box[2] - pad),
        min(w, box[3] + pad),
    )
    crop_rgb, crop_region = rgb[y0:y1, x0:x1], region[y0:y1, x0:x1]
    if scale * 0.015 >= 3.0:
        # The finest filter is a few pixels wide or more: half resolution keeps every fold
        # it resolves, at a quarter of the cost; the smooth map comes back up bilinearly.
        ch, cw = crop_region.shape
        small = (max(1, cw // 2), max(1, ch // 2))
        half = _shading_map(
            cv2.resize(crop_rgb, small, interpolation=cv2.INTER_AREA),
            cv2.resize(crop_region.astype(np.uint8), small, interpolation=cv2.INTER_NEAREST) > 0,
            scale / 2,
        )
        ones[y0:y1, x0:x1] = cv2.resize(half, (cw, ch), interpolation=cv2.INTER_LINEAR)
    else:
        ones[y0:y1, x0:x1] = _shading_map(crop_rgb, crop_region, scale)
    return ones


def _shading_map(rgb: np.ndarray, region: np.ndarray, scale: float) -> np.ndarray:
    ones = np.ones(rgb.shape[:2], np.float32)
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    ref = np.median(lab[region][::7], axis=0)  # a 1-in-7 sample: same median, 7x cheaper
    chroma = np.linalg.norm(lab[..., 1:] - ref[1:], axis=-1)
    same = region & (chroma < 12.0) & (np.abs(lab[..., 0] - ref[0]) < 30.0)
    if same.sum() < 100:
        return ones
    # The offset keeps dark clothes (L of a few units, where a fold changes L by as much)
    # from giving huge log ratios: folds show on a black top, they do not carve it.
    lum = np.log(lab[..., 0] + 15.0)
    wgt = same.astype(np.float32)
    fine_sigma, coarse_sigma = max(1.0, scale * 0.015), max(4.0, scale * 0.15)

    h, w = lum.shape

    def smooth(sigma: float) -> np.ndarray:
        return wide_gaussian(lum * wgt, sigma) / np.maximum(wide_gaussian(wgt, sigma), 1e-4)

    # At most about 14 % darker and 8 % lighter: a fold, not a print of the old clothes (a
    # sheer top over skin, a marled knit, a pattern the colour test let through).
    log_ratio = np.clip(smooth(fine_sigma) - smooth(coarse_sigma), -0.15, 0.08)
    # Folds are subtle: on plain cloth their log-luminance ripple has a spread of a few
    # hundredths. Old clothes that vary far more (a sheer top over skin and underwear,
    # stripes, a marled knit) are pattern, not folds: the map is damped in proportion.
    spread = float(np.std(log_ratio[same]))
    log_ratio *= min(1.0, _FOLD_SPREAD / max(spread, 1e-6))
    ratio = np.exp(log_ratio)
    support = np.clip(wide_gaussian(wgt, coarse_sigma) * 3.0, 0, 1)
    fade = wide_gaussian(region.astype(np.float32), fine_sigma * 2) * support
    return (1.0 + (ratio - 1.0) * fade).astype(np.float32)


def _skin_fill(
    rgb: np.ndarray, pa: P.PersonAnalysis, region: np.ndarray, shading: np.ndarray
) -> np.ndarray:
    """Skin for ``region`` (arms revealed by a shorter sleeve, a neckline, a midriff, legs
    under a shorter bottom), drawn from the person's own visible skin. Returns the ``N x 3``
    colours of the ``N`` pixels of ``region``.

    * Tone: the colour of the visible skin (face excluded when enough other skin shows:
      faces are lit and made up differently from limbs), weighted towards the skin nearest
      each pixel (normalised convolution, a shoulder width wide) so a forearm continues the
      hand beside it and a neckline the neck above it.
    * Texture: fine luminance grain as strong as that of the person's visible skin (pores,
      hairs, sensor grain), as a relative modulation: a flat fill reads as paint next to
      real skin.
    * Shading: the fall-off of a cylinder across each limb (Lambertian: brightness ~ cos of
      the angle to the surface normal) so an arm reads as round, times the photo's light
      where the old clothes were at a coarse scale (their folds are left out: skin does not
      crease like cloth).
    """
    h, w = rgb.shape[:2]
    sw = max(pa.measurements.shoulder_width, 1.0)
    src = _skin_source(pa)
    img = rgb.astype(np.float32)
    if src.any():
        tone_global = np.median(img[src][::3], axis=0)
    else:  # no skin seen anywhere (gloves, a face out of frame): a neutral mid tone
        tone_global = np.array([200.0, 160.0, 140.0], np.float32)
    box = _box(region)
    if box is None:
        return np.zeros((0, 3), np.float32)
    pad = int(sw)
    y0, y1 = max(0, box[0] - pad), min(h, box[1] + pad)
    x0, x1 = max(0, box[2] - pad), min(w, box[3] + pad)
    sl = np.s_[y0:y1, x0:x1]
    tone = _local_tone(img, src, sl, tone_global, sw)

    round_ = _limb_roundness(pa, (h, w), sw, (y0, x0, y1, x1))
    light = wide_gaussian(shading[sl], max(2.0, 0.06 * sw))
    texture = _skin_texture(img, src, (y1 - y0, x1 - x0), sw)
    out = tone * (light * round_ * texture)[..., None]
    return out[region[sl]]


def _skin_source(pa: P.PersonAnalysis) -> np.ndarray:
    """Visible skin to copy from: the body's skin, eroded off its border (its rim blends
    into clothes and background); the inner face when too little body skin shows."""
    k = np.ones((3, 3), np.uint8)
    body = cv2.erode(pa.skin.astype(np.uint8), k, iterations=2) > 0
    if body.sum() >= 200:
        return body
    face = cv2.erode(pa.face.astype(np.uint8), k, iterations=3) > 0
    return face if face.sum() >= 50 else pa.skin | pa.face


def _local_tone(
    img: np.ndarray, src: np.ndarray, sl, tone_global: np.ndarray, sw: float
) -> np.ndarray:
    """Per pixel of the window ``sl``: the visible skin's colour, nearer skin weighing more;
    the global tone where no skin is near. Computed at a quarter of the resolution (it is
    smooth by construction)."""
    win_src = src[sl].astype(np.float32)
    hh, ww = win_src.shape
    if win_src.sum() < 20:
        return np.broadcast_to(tone_global, (hh, ww, 3)).astype(np.float32)
    k = 4
    small = (max(1, ww // k), max(1, hh // k))
    wgt = cv2.resize(win_src, small, interpolation=cv2.INTER_AREA)
    col = cv2.resize(img[sl] * win_src[..., None], small, interpolation=cv2.INTER_AREA)
    sigma = max(1.0, 0.5 * sw / k)
    wb = wide_gaussian(wgt, sigma)
    cb = wide_gaussian(col, sigma)
    # A prior of the global tone worth a little skin: weak support falls back to it.
    prior = 0.02
    tone = (cb + prior * tone_global) / (wb + prior)[..., None]
    return cv2.resize(tone, (ww, hh), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def _skin_texture(img: np.ndarray, src: np.ndarray, shape: tuple[int, int], sw: float):
    """A ``shape`` field around 1: fine relative luminance grain with the strength and
    grain size measured on the largest patch of visible skin. All ones when no patch of at
    least 8 px shows.

    The grain is synthesised (seeded noise blurred to the skin's grain size, scaled to the
    detail's standard deviation), not copied: a copied patch repeated over a limb is a
    visible wallpaper, and a patch of a small skin area (a face) carries features (lashes,
    lips) that must not be repeated at all.
    """
    ones = np.ones(shape, np.float32)
    if src.sum() < 64:
        return ones
    dist = cv2.distanceTransform(src.astype(np.uint8), cv2.DIST_L2, 3)
    r = int(min(dist.max(), 0.15 * sw))
    if r < 4:
        return ones
    cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    patch = img[max(0, cy - r + 1) : cy + r, max(0, cx - r + 1) : cx + r].mean(axis=-1)
    # Relative detail finer than about 1 % of the shoulder width (pores, fine hair, grain);
    # a robust spread (MAD), so that a mole or a glint in the patch does not set it, at
    # most 2 % (smooth skin in a sharp photo; beyond it grain reads as sand).
    grain = max(1.5, 0.012 * sw)
    base = cv2.GaussianBlur(patch, (0, 0), grain)
    detail = patch / np.maximum(base, 1.0) - 1.0
    strength = float(np.clip(1.4826 * np.median(np.abs(detail - np.median(detail))), 0.0, 0.02))
    if strength <= 1e-4:
        return ones
    rng = np.random.default_rng(shape[0] * 7919 + shape[1])
    noise = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 0.7)
    noise /= max(float(noise.std()), 1e-6)
    return (1.0 + strength * noise).astype(np.float32)


def _limb_roundness(
    pa: P.PersonAnalysis,
    size: tuple[int, int],
    sw: float,
    window: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Cylinder fall-off across each upper arm, forearm, thigh and shin (1 off the limbs),
    over ``window`` ``(y0, x0, y1, x1)`` of the frame (all of it by default): only the
    window is ever used, so only it is computed."""
    h, w = size
    oy, ox, h, w = window if window is not None else (0, 0, h, w)
    # The smallest distance to a limb, in units of the limb's radius at that point: each
    # chain (shoulder-elbow-wrist, hip-knee-ankle) is one tube whose radius runs linearly
    # along each bone and is shared at the joint, so where two bones meet the field is
    # continuous (capsules shaded one by one leave a disc's outline at every elbow and knee).
    nd = np.full((h - oy, w - ox), np.inf, np.float32)
    upper_arm, forearm = 0.17 * sw, 0.14 * sw
    thigh, shin = LEG_RADII[0] * sw, LEG_RADII[1] * sw
    elbow, knee = (upper_arm + forearm) / 2, (thigh + shin) / 2
    for joints, radii in (
        ((P.R_SHOULDER, P.R_ELBOW, P.R_WRIST), (upper_arm, elbow, forearm)),
        ((P.L_SHOULDER, P.L_ELBOW, P.L_WRIST), (upper_arm, elbow, forearm)),
        ((P.R_HIP, P.R_KNEE, P.R_ANKLE), (thigh, knee, shin)),
        ((P.L_HIP, P.L_KNEE, P.L_ANKLE), (thigh, knee, shin)),
    ):
        for (a_i, b_i), ra, rb in zip(
            ((joints[0], joints[1]), (joints[1], joints[2])),
            (radii[0], radii[1]),
            (radii[1], radii[2]),
            strict=True,
        ):
            a, b = pa.point(a_i), pa.point(b_i)
            reach = 1.6 * max(ra, rb)  # the rim's ease-back below
            x0, x1 = (
                int(max(ox, min(a[0], b[0]) - reach)),
                int(min(w, max(a[0], b[0]) + reach + 1)),
            )
            y0, y1 = (
                int(max(oy, min(a[1], b[1]) - reach)),
                int(min(h, max(a[1], b[1]) + reach + 1)),
            )
            if x1 <= x0 or y1 <= y0:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            d = b - a
            t = np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
            dist = np.hypot(xs - (a[0] + t * d[0]), ys - (a[1] + t * d[1]))
            here = dist / np.maximum(ra + (rb - ra) * t, 1.0)
            win = nd[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            np.minimum(win, here, out=win)
    cos = np.sqrt(np.clip(1.0 - nd**2, 0.0, 1.0))
    # Past the nominal radius (a limb wider than the model) the rim shade eases back to 1
    # instead of jumping: a jump draws the tube's outline on the skin.
    rim = 0.72 + 0.28 * np.clip((nd - 1.0) / 0.6, 0.0, 1.0)
    round_ = np.where(nd < 1.0, 0.72 + 0.28 * cos, rim).astype(np.float32)
    return round_


def composite(
    photo: np.ndarray,
    pa: P.PersonAnalysis,
    layers: list[Layer],
    replaces: str = "upper",
) -> CompositeResult:
    """Composite garment layers (already warped into the photo's frame) onto the photo.

    Args:
        photo: ``H x W x 3`` uint8 RGB.
        pa: the person analysis of ``photo``.
        layers: torso panel, sleeves, lower-body parts, in any order.
        replaces: "upper", "lower" or "both": which old clothes the new garment replaces.

    Returns:
        The composite and its masks.
    """
    h, w = photo.shape[:2]
    sw = pa.measurements.shoulder_width
    old = np.zeros((h, w), bool)
    if replaces in ("upper", "both"):
        old |= pa.upper_clothes
    if replaces in ("lower", "both"):
        old |= pa.lower_clothes
    shade = shading_map(photo, old | (pa.mask > 0.5), sw)
    # The clothes' own outline (a dark rim where the silhouette blends into the background)
    # goes with them: a thin band around the old clothes, never over face, hair or skin.
    rim = max(3, int(RIM * sw) | 1)
    keep = pa.face | pa.hair | pa.skin | pa.hands["left"] | pa.hands["right"]
    old = old | (cv2.dilate(old.astype(np.uint8), np.ones((rim, rim), np.uint8)) > 0) & ~keep

    # What stays in front of the garment: face, hair, hands always; a forearm crossing the
    # torso stays in front of the torso panel (but inside its own sleeve).
    hands = pa.hands["left"] | pa.hands["right"]
    protect = pa.face | pa.hair | hands

    def soft(mask: np.ndarray) -> np.ndarray:
        return np.maximum(
            cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 1.0), mask.astype(np.float32)
        )

    if replaces in ("lower", "both"):
        protect = protect | _feet(pa)
    corridor, above_shoulders = _torso_corridor(pa)
    # What each kind of layer goes behind, built only for the kinds present.
    cut_masks = {
        "sleeve": lambda: protect,
        "torso": lambda: protect | _forearms_over_torso(pa, layers),
        # Arms hanging beside the hips stay in front of a bottom's waist panel.
        "lower": lambda: protect | ((pa.arms["left"] | pa.arms["right"]) & ~old),
        # The inner back of the collar shows only behind the neck, beside it and above the
        # shoulder line: the neck and the chest are in front of it.
        "collar": lambda: protect | pa.skin | ~above_shoulders,
    }
    cut_of = {"lower_front": "lower"}
    cuts: dict[str, np.ndarray] = {}
    alpha = np.zeros((h, w), np.float32)
    colour = np.zeros((h, w, 3), np.float32)
    order = {"collar": -1, "lower": 0, "torso": 1, "lower_front": 1.5, "sleeve": 2}
    for layer in sorted(layers, key=lambda lyr: order.get(lyr.kind, 1)):
        kind = cut_of.get(layer.kind, layer.kind if layer.kind in cut_masks else "torso")
        if kind not in cuts:
            cuts[kind] = soft(cut_masks[kind]())
        box = _box(layer.alpha)
        if box is None:
            continue
        sl = np.s_[box[0] : box[1], box[2] : box[3]]  # only where the layer lands
        a = layer.alpha[sl] * (1.0 - cuts[kind][sl])
        colour[sl] = layer.rgb[sl] * a[..., None] + colour[sl] * (1 - a[..., None])
        alpha[sl] = a + alpha[sl] * (1 - a)
    # ``colour`` is premultiplied by ``alpha`` (layers went "over" a transparent start).
    _close_seams(colour, alpha, (pa.mask > 0.5) & ~protect, sw)
    box = _box(alpha)
    if box is not None:  # one-pixel feather (no jagged edge), then back to straight colour
        y0, y1 = max(0, box[0] - 3), min(h, box[1] + 3)
        x0, x1 = max(0, box[2] - 3), min(w, box[3] + 3)
        sl = np.s_[y0:y1, x0:x1]
        alpha[sl] = cv2.GaussianBlur(alpha[sl], (0, 0), 0.7)
        colour[sl] = (
            cv2.GaussianBlur(colour[sl], (0, 0), 0.7) / np.maximum(alpha[sl], 1e-4)[..., None]
        )

    # Old garment where the new one does not reach.
    cleared = old & (alpha < 0.5) & ~protect
    base = photo.astype(np.float32)
    # Under the old clothes is the body: arms and the torso corridor (neckline, a bare
    # midriff) get skin; the rest of what the old clothes covered (a bulky suit wider
    # than the body) was background, filled from around it.
    body = ((pa.arms["left"] | pa.arms["right"]) & ~above_shoulders) | corridor
    if replaces in ("lower", "both"):
        body |= _legs(pa) & (pa.mask > 0.5)
    arms = body & cleared
    if arms.any():
        base[arms] = _skin_fill(photo, pa, arms, shade)
    rest = cleared & ~arms
    if rest.any():
        # The body under loose old clothes is unknown; fill from the surroundings.
        # Seeded only from outside the old clothes: what they hid must not bleed back in.
        base[rest] = _fill_background(base, rest | old, sw)[rest]

    # Outside the garment and the cleared pixels the result is the photo itself (alpha 0,
    # base = photo): the float maths runs only in their box.
    image = photo.copy()
    box = _box((alpha > 0) | cleared)
    if box is not None:
        sl = np.s_[box[0] : box[1], box[2] : box[3]]
        a = alpha[sl][..., None]
        out = colour[sl] * shade[sl][..., None]
        out *= a
        out += base[sl] * (1 - a)
        out += 0.5
        np.clip(out, 0, 255, out=out)
        image[sl] = out.astype(np.uint8)
    # Exactly the photo where something is in front.
    image[protect] = photo[protect]
    return CompositeResult(
        image=image,
        garment_alpha=alpha,
        protect=protect,
        cleared=cleared,
        shading=shade,
    )


RIM = 0.03  # width of the old clothes' outline removed with them, in shoulder widths
SEAM_CLOSE = 0.03  # slits narrower than this fraction of the shoulder width are closed


def _close_seams(colour: np.ndarray, alpha: np.ndarray, allowed: np.ndarray, sw: float) -> None:
    """Close the slits between separately warped parts (a sleeve and the torso panel part
    a few pixels at the armpit): narrow gaps inside the garment, on the person, take the
    colour of the garment around them. A real gap (background between an arm and the
    body) is wider, or off the person, and stays. In place."""
    solid = (alpha > 0.5).astype(np.uint8)
    k = max(3, int(SEAM_CLOSE * sw) | 1)
    closed = cv2.morphologyEx(
        solid, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    gap = (closed > 0) & (solid == 0) & allowed
    box = _box(gap)
    if box is None:
        return
    pad = 2 * k
    y0, y1 = max(0, box[0] - pad), min(alpha.shape[0], box[1] + pad)
    x0, x1 = max(0, box[2] - pad), min(alpha.shape[1], box[3] + pad)
    sl = np.s_[y0:y1, x0:x1]
    a = alpha[sl]
    # The fill is a smooth average of the garment around the slit: at half resolution.
    bh, bw = a.shape
    small = (max(1, bw // 2), max(1, bh // 2))
    sigma = k / 4.0
    weight = cv2.GaussianBlur(cv2.resize(a, small, interpolation=cv2.INTER_AREA), (0, 0), sigma)
    total = cv2.GaussianBlur(
        cv2.resize(colour[sl], small, interpolation=cv2.INTER_AREA), (0, 0), sigma
    )
    fill = cv2.resize(total / np.maximum(weight, 1e-4)[..., None], (bw, bh))
    g = gap[sl]
    colour[sl][g] = fill[g]
    a[g] = 1.0


def _box(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` bounding the non-zero pixels of ``alpha``, or None."""
    rows = np.flatnonzero(alpha.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(alpha[rows[0] : rows[-1] + 1].any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _fill_background(base: np.ndarray, hole: np.ndarray, scale: float) -> np.ndarray:
    """Fill ``hole`` from its surroundings (Telea 2004 fast-marching inpainting).

    Run at a quarter of the resolution for large holes (inpainting cost grows with the
    hole's area times the radius), then upsampled: what fills a hole is smooth anyway.
    """
    h, w = hole.shape
    k = 4 if hole.sum() > 20_000 else 1
    img = np.clip(base, 0, 255).astype(np.uint8)
    mask = cv2.dilate(hole.astype(np.uint8), np.ones((5, 5), np.uint8))
    if k > 1:
        img = cv2.resize(img, (w // k, h // k), interpolation=cv2.INTER_AREA)
        mask = (cv2.resize(mask, (w // k, h // k), interpolation=cv2.INTER_AREA) > 0).astype(
            np.uint8
        )
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    radius = max(3, int(scale * 0.03 / k))
    filled = cv2.inpaint(img, mask, radius, cv2.INPAINT_TELEA)
    if k > 1:
        filled = cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR)
    return filled.astype(np.float32)


def _torso_corridor(pa: P.PersonAnalysis) -> tuple[np.ndarray, np.ndarray]:
    """Where the torso itself is, old clothes aside: between the sides of the chest (from
    the measured chest width, at most the shoulder width) from the neck base down to the
    hips. Also returns the zone above the shoulder line beside the neck (where an arm
    capsule's round end pokes up but no body is)."""
    h, w = pa.size
    ls, rs = pa.point(P.L_SHOULDER), pa.point(P.R_SHOULDER)
    mid_s = (ls + rs) / 2
    mid_h = (pa.point(P.L_HIP) + pa.point(P.R_HIP)) / 2
    axis = mid_h - mid_s
    length = max(float(np.linalg.norm(axis)), 1.0)
    down = axis / length
    across = np.array([down[1], -down[0]])
    # Broadcast a row and a column (float32) rather than two full coordinate grids.
    dx = np.arange(w, dtype=np.float32)[None, :] - np.float32(mid_s[0])
    dy = np.arange(h, dtype=np.float32)[:, None] - np.float32(mid_s[1])
    u = np.abs(dx * np.float32(across[0]) + dy * np.float32(across[1]))
    v = dx * np.float32(down[0]) + dy * np.float32(down[1])
    m = pa.measurements
    half = 0.5 * min(max(m.chest_width, 0.7 * m.shoulder_width), m.shoulder_width)
    # Narrower at the neck (a neck is about a third of the shoulder width), full below.
    neck_half = 0.15 * m.shoulder_width  # a neck is about 0.3 of the biacromial breadth
    t = np.clip((v + 0.15 * m.shoulder_width) / (0.25 * m.shoulder_width), 0, 1)
    corridor = (
        (v > -0.15 * m.shoulder_width)
        & (v < 1.1 * length)
        & (u < neck_half + t * (half - neck_half))
    )
    above = (v < -0.02 * m.shoulder_width) & (u > neck_half)
    return corridor, above


LEG_RADII = (0.26, 0.17)  # thigh and calf radius, in shoulder widths


def _legs(pa: P.PersonAnalysis) -> np.ndarray:
    """Capsules along the thighs and shins: where skin goes when a shorter bottom replaces
    a longer one."""
    h, w = pa.size
    out = np.zeros((h, w), np.uint8)
    sw = pa.measurements.shoulder_width
    for a_i, b_i, r in (
        (P.R_HIP, P.R_KNEE, LEG_RADII[0]), (P.L_HIP, P.L_KNEE, LEG_RADII[0]),
        (P.R_KNEE, P.R_ANKLE, LEG_RADII[1]), (P.L_KNEE, P.L_ANKLE, LEG_RADII[1]),
    ):  # fmt: skip
        a, b = pa.point(a_i), pa.point(b_i)
        cv2.line(out, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), 1,
                 max(2, int(2 * r * sw)))  # fmt: skip
    return out > 0


def _feet(pa: P.PersonAnalysis) -> np.ndarray:
    """Shoes (heel to toe) stay the photo's: a new bottom never covers them."""
    h, w = pa.size
    out = np.zeros((h, w), np.uint8)
    sw = pa.measurements.shoulder_width
    for heel, toe in ((P.L_HEEL, P.L_FOOT), (P.R_HEEL, P.R_FOOT)):
        if not (pa.visible(heel) and pa.visible(toe)):
            continue
        a, b = np.round(pa.point(heel)).astype(int), np.round(pa.point(toe)).astype(int)
        cv2.line(out, tuple(a), tuple(b), 1, max(2, int(0.12 * sw)))
    return (out > 0) & (pa.mask > 0.5)


def _forearms_over_torso(pa: P.PersonAnalysis, layers: list[Layer]) -> np.ndarray:
    """Forearm pixels lying over the torso panel with the wrist nearer the camera than the
    shoulder line: a hand on the belly or arms crossed stay in front of the garment."""
    h, w = pa.size
    torso = np.zeros((h, w), bool)
    for layer in layers:
        if layer.kind == "torso":
            torso |= layer.alpha > 0.5
    out = np.zeros((h, w), bool)
    shoulder_z = (pa.landmarks[P.L_SHOULDER, 2] + pa.landmarks[P.R_SHOULDER, 2]) / 2
    sw = pa.measurements.shoulder_width
    for e, wr in ((P.L_ELBOW, P.L_WRIST), (P.R_ELBOW, P.R_WRIST)):
        if pa.landmarks[wr, 2] > shoulder_z - 0.1 * sw:
            continue
        seg = np.zeros((h, w), np.uint8)
        a, b = pa.point(e), pa.point(wr)
        cv2.line(
            seg,
            tuple(np.round(a).astype(int)),
            tuple(np.round(b).astype(int)),
            1,
            max(2, int(0.28 * sw)),
        )
        out |= (seg > 0) & torso & (pa.mask > 0.5)
    return out
