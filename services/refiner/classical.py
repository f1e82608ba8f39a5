"""Classical refiner backend: make a try-on composite look like one photograph.

The try-on stage pastes a warped garment onto the shopper photo. :func:`refine` matches the
garment to the scene in small steps, one concern each:

1. light: the garment's white balance and exposure moved towards the light of the scene
   around it (:func:`match_light`), bounded and mild so the garment keeps its own colour;
2. contrast: the garment's local (detail-layer) contrast nudged towards the scene's
   (:func:`match_contrast`);
3. seam: the garment's edge feathered in a thin band around its contour
   (:func:`blend_seam`);
4. grain: the photo's noise level estimated (:func:`estimate_noise_sigma`) and the part the
   pasted garment lacks added to it, and to the feathered band (:func:`match_grain`);
5. restore: protected pixels (face, hair, hands) and everything outside the garment and its
   band copied back bit-exactly from the original photo (:func:`restore`).

Colour work happens in linear RGB (the sRGB transfer function undone), where light adds and
multiplies as it does physically; the seam and grain are handled on the encoded 0..255
scale, where the photo's noise was measured. The seam runs before the grain so its blur
does not smooth away the grain just added. Pure numpy/OpenCV: no gRPC, no model weights, and
deterministic for a given seed.
"""

from __future__ import annotations

import dataclasses
import math
import time

import cv2
import numpy as np

from services.common.errors import InvalidInputError
from services.common.filters import wide_gaussian

# --- Tunables. Each says why it has its value; change them with the tests in mind. ---

# Seam band half-width as a fraction of the image's long side: about 4 px at 1024, 2 px at
# 512. Wide enough to soften an aliased cut-out edge, narrow enough that the garment's
# silhouette stays sharp and "body and background untouched" still holds.
_BAND_FRAC = 1.0 / 256.0
_BAND_MIN_PX = 2
# Width of the scene ring (beyond the band) whose texture the garment's contrast is matched
# to: about 60 px at 1024 px, enough to hold the person's neighbouring skin and clothes and
# some background, local enough to be seen side by side with the garment.
_RING_FRAC = 0.06
_RING_MIN_PX = 8
# Alpha at or above which a pixel is pure garment (the garment's statistics use only these).
_CORE_ALPHA = 0.98

# Pixels that carry no usable colour: clipped highlights (any channel at or above sRGB 250)
# and near-black (linear luminance below 0.01, about sRGB 25), where noise dominates chroma.
_CLIP_LINEAR = 0.955
_DARK_Y = 0.01
# Grey pixels (achromatic surfaces, which show the light's colour) are searched within
# _GREY_SEARCH_DEG of neutral, then the estimate settles on the densest cluster within
# _GREY_MODE_DEG of itself, so desaturated coloured surfaces (a pale orange suit, skin)
# do not drag the scene's light towards their hue.
_GREY_SEARCH_DEG = 15.0
_GREY_MODE_DEG = 5.0
# A garment pixel counts as evidence of a colour cast only within this angle (linear RGB) of
# neutral or of the scene's light. 10 degrees admits casts the gain bounds below can undo
# (gains 0.85/1.0/1.2 are 8 degrees) and rejects most garment colours: red, navy, beige
# (18), khaki and light blue (14). Paler tints (pale pink is 8, cream 11 near a warm scene
# light) cannot be told from a cast and are pulled towards grey, within the gain bounds.
_GARMENT_GREY_DEG = 10.0
# A garment's white-balance estimate is fully trusted when at least this fraction of its
# pixels is grey; below, the correction fades linearly to none. With no grey pixels there
# is no evidence of a cast, only of the garment's own colour, and nothing is changed.
_GREY_FRACTION_FULL = 0.2
_MIN_STAT_PIXELS = 50
# Bounds of the white-balance gains (before `strength`). Mild on purpose: the try-on quality
# goal is mean CIEDE2000 <= 6 between flat-lay and rendered garment colour.
_WB_GAIN_RANGE = (0.8, 1.25)
# Exposure only ever darkens: a diffuse garment cannot be brighter than the scene's diffuse
# white under the same light (that is a flat-lay shot in brighter studio light), whereas a
# garment darker than its surroundings is far more often a dark fabric than a dark exposure,
# and the two cannot be told apart. Garment "white" = 95th percentile of its luminance,
# scene white = 99th percentile of unclipped scene pixels; within 10 % nothing happens.
_EXPOSURE_RANGE = (0.7, 1.0)
_EXPOSURE_DEADZONE = math.log(1.10)
_GARMENT_WHITE_PCT = 95.0
_SCENE_WHITE_PCT = 99.0
# Contrast: fraction (in log) of the scene/garment detail-contrast ratio applied, and its
# bounds. Textures differ between materials, so the match is deliberately partial.
_CONTRAST_TRUST = 0.25
_CONTRAST_RANGE = (0.85, 1.18)
# Detail layer = log-luminance minus its Gaussian base of this sigma (fraction of the long
# side, about 20 px at 1024): texture and small folds are detail, broad shading is not.
_DETAIL_SIGMA_FRAC = 0.02

# Linear-light luminance weights of the sRGB (Rec. 709) primaries.
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
# Luma weights of the encoded values (Rec. 601, as JPEG uses): grain correlation is measured
# on the signal the camera's compressor saw.
_LUMA_601 = np.array([0.299, 0.587, 0.114], np.float32)
# Immerkaer (1996) noise-estimation mask: the difference of two Laplacians, which cancels
# image structure up to second order; for white noise of sigma s its output has sigma 6 s.
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
# Median of |N(0, 1)|: turns a median absolute deviation into a standard deviation
# (Donoho & Johnstone 1994).
_MAD_TO_SIGMA = 0.6745


@dataclasses.dataclass
class RefineResult:
    """What :func:`refine` returns.

    Attributes:
        image: the refined composite, HxWx3 uint8 RGB.
        stages: seconds spent per stage, in the order they ran.
        stats: what was measured and applied (gains, contrast, noise sigmas, band width),
            plain Python numbers and lists, ready for logs or JSON.
    """

    image: np.ndarray
    stages: dict[str, float]
    stats: dict[str, object]


@dataclasses.dataclass(frozen=True)
class _Regions:
    """Masks and distances of one call, all on the working crop."""

    band_px: int
    ring_px: int
    long_side: int  # of the whole image, not the crop: sets filter sizes
    alpha: np.ndarray  # HxW float32 0..1
    support: np.ndarray  # alpha > 0: the garment, soft edge included
    core: np.ndarray  # pure garment
    dist_out: np.ndarray  # px to the nearest support pixel (0 inside the support)
    dist_in: np.ndarray  # px to the nearest non-support pixel (0 outside the support)
    keep: np.ndarray  # restored from the original: protected or beyond the band
    ring: np.ndarray  # scene pixels around the garment (reference of its contrast)


# --------------------------------------------------------------------------- validation


def check_inputs(
    composite: np.ndarray,
    person: np.ndarray,
    garment_alpha: np.ndarray,
    protect_mask: np.ndarray | None,
    strength: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the arguments of :func:`refine` and normalise the masks.

    Args:
        composite: HxWx3 uint8 RGB try-on composite.
        person: HxWx3 uint8 RGB original shopper photo, the composite's size.
        garment_alpha: HxW weights 0..1 of the pasted garment (values outside are clipped).
        protect_mask: HxW bool of pixels to keep exactly, or None.
        strength: 0..1.

    Returns:
        (alpha as float32 clipped to 0..1, protect mask as bool, all False when None).

    Raises:
        ValueError: composite or person is not an HxWx3 uint8 array, or the alpha holds NaN
            or infinity (programming errors: the service decodes images to RGB uint8).
        InvalidInputError: IMAGE_EMPTY (composite has no pixel), ORIGINAL_SIZE_MISMATCH
            (field ``original``), MASK_SIZE_MISMATCH (field ``garment_mask`` or
            ``protect_mask``), MASK_EMPTY (no garment pixel at or above 0.5, field
            ``garment_mask``), OPTION_OUT_OF_RANGE (field ``strength``).
    """
    for name, img in (("composite", composite), ("person", person)):
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3:
            raise ValueError(f"{name} must be an HxWx3 uint8 array")
        if img.shape[2] != 3:
            raise ValueError(f"{name} must have 3 channels, got {img.shape[2]}")
    if composite.shape[0] == 0 or composite.shape[1] == 0:
        raise InvalidInputError("IMAGE_EMPTY", "the composite has no pixels", field="composite")
    size = composite.shape[:2]
    want = f"{size[1]}x{size[0]}"
    if person.shape != composite.shape:
        raise InvalidInputError(
            "ORIGINAL_SIZE_MISMATCH",
            f"the original is {person.shape[1]}x{person.shape[0]}, the composite {want}",
            field="original",
            metadata={"expected": want, "got": f"{person.shape[1]}x{person.shape[0]}"},
        )
    for field, mask in (("garment_mask", garment_alpha), ("protect_mask", protect_mask)):
        if mask is None:
            continue
        shape = np.shape(mask)
        if tuple(shape) != tuple(size):
            got = "x".join(str(n) for n in shape[::-1]) if len(shape) == 2 else str(shape)
            raise InvalidInputError(
                "MASK_SIZE_MISMATCH",
                f"{field} is {got}, the composite {want}",
                field=field,
                metadata={"expected": want, "got": got},
            )
    try:
        value = float(strength)
    except (TypeError, ValueError):
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise InvalidInputError(
            "OPTION_OUT_OF_RANGE",
            f"strength must be within [0, 1], got {strength!r}",
            field="strength",
        )
    alpha = np.asarray(garment_alpha, dtype=np.float32)
    if not np.isfinite(alpha).all():
        raise ValueError("garment_alpha holds NaN or infinity")
    alpha = np.clip(alpha, 0.0, 1.0)
    if not (alpha >= 0.5).any():
        raise InvalidInputError(
            "MASK_EMPTY", "the garment mask has no pixel at or above 0.5", field="garment_mask"
        )
    protect = np.zeros(size, bool) if protect_mask is None else np.asarray(protect_mask, dtype=bool)
    return alpha, protect


# --------------------------------------------------------------------------- colour space


def _srgb_decode_lut() -> np.ndarray:
    v = np.arange(256, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _srgb_encode_lut() -> np.ndarray:
    # 65536 steps of linear light: the coarsest step (near black, slope 12.92) is 0.05 of an
    # 8-bit level, so an unchanged pixel survives decode -> encode -> round bit-exactly.
    x = np.linspace(0.0, 1.0, 65536)
    y = np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)
    return (y * 255.0).astype(np.float32)


_DECODE = _srgb_decode_lut()
_ENCODE = _srgb_encode_lut()


def to_linear(rgb8: np.ndarray) -> np.ndarray:
    """sRGB uint8 -> linear RGB float32 0..1 (IEC 61966-2-1 transfer function)."""
    return _DECODE[rgb8]


def to_srgb255(linear: np.ndarray) -> np.ndarray:
    """Linear RGB (clipped to 0..1) -> encoded sRGB float32 on the 0..255 scale, unrounded."""
    idx = (np.clip(linear, 0.0, 1.0) * 65535.0 + 0.5).astype(np.uint16)
    return _ENCODE[idx]


def _luminance(linear: np.ndarray) -> np.ndarray:
    return linear @ _LUMA


def _rounded(value: float, digits: int = 4) -> float | None:
    """A statistic for logs and JSON: rounded, and None when it could not be measured."""
    return round(value, digits) if math.isfinite(value) else None


# --------------------------------------------------------------------------- regions


def _band_px(shape: tuple[int, int]) -> int:
    return max(_BAND_MIN_PX, round(_BAND_FRAC * max(shape)))


def _garment_roi(alpha: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The garment's bounding box grown by ``margin``, clipped to the image."""
    rows = np.flatnonzero(alpha.any(axis=1))
    cols = np.flatnonzero(alpha.any(axis=0))
    h, w = alpha.shape
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
        slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)),
    )


def _regions(
    alpha: np.ndarray, protect: np.ndarray, band_px: int, ring_px: int, long_side: int
) -> _Regions:
    """Garment core, seam band, scene ring and the restore mask of one crop."""
    support = alpha > 0
    dist_out = cv2.distanceTransform(
        (~support).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
    )
    dist_in = cv2.distanceTransform(support.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # A garment that is translucent everywhere still needs a core; take its most opaque part.
    core = alpha >= min(_CORE_ALPHA, _CORE_ALPHA * float(alpha.max()))
    keep = protect | (dist_out > band_px)
    # The ring lies beyond the band so that no garment pixel (nor seam) leaks into it;
    # protected skin is scene too and stays in.
    ring = (dist_out > band_px) & (dist_out <= band_px + ring_px)
    return _Regions(
        band_px, ring_px, long_side, alpha, support, core, dist_out, dist_in, keep, ring
    )


# --------------------------------------------------------------------------- 1. light


def _usable(pixels: np.ndarray) -> np.ndarray:
    """Rows of an Nx3 linear array that carry colour: neither clipped nor near-black."""
    return (pixels.max(axis=1) < _CLIP_LINEAR) & (pixels @ _LUMA > _DARK_Y)


def _angle_deg(chroma: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Angle between each row of ``chroma`` and the vector ``reference``, in degrees."""
    cos = (chroma @ reference) / (
        np.linalg.norm(chroma, axis=1) * float(np.linalg.norm(reference)) + 1e-12
    )
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _unit_luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb / max(float(rgb @ _LUMA), 1e-6)


def _grey_mode(chroma: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, int]:
    """Median chromaticity of the cluster of rows within ``_GREY_MODE_DEG`` of ``start``,
    refined twice (a small mean-shift with a median). Returns (estimate, pixels used)."""
    estimate, used = start, 0
    for _ in range(3):
        near = _angle_deg(chroma, estimate) < _GREY_MODE_DEG
        used = int(near.sum())
        if used < _MIN_STAT_PIXELS:
            break
        estimate = np.median(chroma[near], axis=0)
    return estimate, used


def estimate_scene_light(scene: np.ndarray) -> dict[str, object]:
    """Light colour and white level of the scene.

    The colour comes from grey pixels (a grey-pixel estimate in the spirit of Yang, Gao &
    Li, "Efficient illuminant estimation for color constancy using grey pixels", CVPR
    2015): those within ``_GREY_SEARCH_DEG`` of neutral, narrowed to their densest cluster.
    When under 2 % of the pixels are grey it falls back to the grey-world mean (Buchsbaum,
    J. Franklin Inst. 310(1), 1980). The white level is the 99th percentile of luminance
    over the unclipped pixels.

    The whole photo outside the garment is used, not only a ring around it: the ring around
    a torso is mostly the person's own clothes and skin, whose palest pixels (a faded orange
    suit) pass for grey and pull the estimate to their hue, while a portrait is nearly
    always lit by one light whose colour the backdrop, a collar or an eye white shows.

    Args:
        scene: Nx3 linear RGB pixels of the original photo outside the garment.

    Returns:
        ``{"illuminant": rgb with unit luminance, "white": float, "pixels": int,
        "method": "grey-pixels" | "grey-world" | "none"}``.
    """
    neutral = np.ones(3, np.float32)
    px = scene[_usable(scene)]
    if len(px) < _MIN_STAT_PIXELS:
        return {"illuminant": neutral, "white": math.nan, "pixels": len(px), "method": "none"}
    luma = px @ _LUMA
    white = float(np.percentile(luma, _SCENE_WHITE_PCT))
    chroma = px / luma[:, None]
    grey = chroma[_angle_deg(chroma, neutral) < _GREY_SEARCH_DEG]
    illuminant, used, method = neutral, 0, "grey-pixels"
    if len(grey) >= _MIN_STAT_PIXELS:
        illuminant, used = _grey_mode(grey, np.median(grey, axis=0))
    if used < max(_MIN_STAT_PIXELS, 0.02 * len(px)):
        illuminant, method = px.mean(axis=0), "grey-world"
    return {
        "illuminant": _unit_luminance(illuminant.astype(np.float32)),
        "white": white,
        "pixels": len(px),
        "method": method,
    }


def estimate_garment_light(
    linear: np.ndarray, core: np.ndarray, scene_illuminant: np.ndarray
) -> dict[str, object]:
    """Light colour and white level the pasted garment appears to have.

    Only the garment's grey pixels (within ``_GARMENT_GREY_DEG`` of neutral or of the scene's
    light colour) are evidence of its light: the colour of a saturated garment is its own,
    not a cast, so the estimate carries a confidence that falls to zero as grey pixels
    become rare.

    Args:
        linear: HxWx3 linear RGB of the composite.
        core: HxW bool, pure-garment pixels.
        scene_illuminant: the scene's light colour (unit luminance).

    Returns:
        ``{"illuminant", "white", "grey_fraction", "confidence", "pixels"}``.
    """
    everything = linear[core]
    neutral = np.ones(3, np.float32)
    # Clipped garment pixels stay in the white level: they are the evidence of overexposure.
    white = (
        float(np.percentile(everything @ _LUMA, _GARMENT_WHITE_PCT))
        if len(everything) >= _MIN_STAT_PIXELS
        else math.nan
    )
    px = everything[_usable(everything)]
    result = {
        "illuminant": neutral,
        "white": white,
        "grey_fraction": 0.0,
        "confidence": 0.0,
        "pixels": len(px),
    }
    if len(px) < _MIN_STAT_PIXELS:
        return result
    chroma = px / (px @ _LUMA)[:, None]
    grey = (_angle_deg(chroma, neutral) < _GARMENT_GREY_DEG) | (
        _angle_deg(chroma, scene_illuminant) < _GARMENT_GREY_DEG
    )
    result["grey_fraction"] = float(grey.mean())
    if grey.sum() >= _MIN_STAT_PIXELS:
        result["illuminant"] = _unit_luminance(np.median(chroma[grey], axis=0))
        result["confidence"] = min(result["grey_fraction"] / _GREY_FRACTION_FULL, 1.0)
    return result


def light_gains(
    scene: dict[str, object], garment: dict[str, object], strength: float
) -> tuple[np.ndarray, float]:
    """Bounded white-balance gains and exposure gain that move the garment into the scene's
    light.

    White balance: per-channel gains scene light / garment light (the von Kries coefficient
    rule of chromatic adaptation, von Kries 1902, as in a camera's white balance), scaled in log by the garment estimate's confidence,
    normalised to leave luminance alone and clamped to ``_WB_GAIN_RANGE``. Exposure: scene
    white / garment white when the garment is more than 10 % brighter (the excess beyond
    the dead zone), clamped to ``_EXPOSURE_RANGE``. Both are raised to ``strength``.

    Args:
        scene: from :func:`estimate_scene_light`.
        garment: from :func:`estimate_garment_light`.
        strength: 0..1.

    Returns:
        (per-channel white-balance gains, exposure gain).
    """
    # No scene to match (the garment covers the photo): no white-balance evidence either.
    trust = float(garment["confidence"]) if scene["method"] != "none" else 0.0
    log_wb = trust * (np.log(scene["illuminant"]) - np.log(garment["illuminant"]))
    wb = np.exp(log_wb).astype(np.float32)
    wb = np.clip(wb / float(wb @ _LUMA), *_WB_GAIN_RANGE) ** np.float32(strength)
    exposure = 1.0
    if math.isfinite(scene["white"]) and math.isfinite(garment["white"]):
        excess = math.log(max(garment["white"], 1e-4) / max(scene["white"], 1e-4))
        darken = -max(excess - _EXPOSURE_DEADZONE, 0.0)
        exposure = float(np.clip(math.exp(darken), *_EXPOSURE_RANGE)) ** strength
    return wb.astype(np.float32), exposure


def match_light(
    composite_linear: np.ndarray,
    scene_linear: np.ndarray,
    regions: _Regions,
    strength: float,
) -> tuple[np.ndarray, dict[str, object]]:
    """Step 1: put the garment in the scene's light (white balance and exposure).

    Args:
        composite_linear: HxWx3 linear RGB of the composite (not modified).
        scene_linear: Nx3 linear RGB pixels of the original photo outside the garment and
            its band (a subsample is enough).
        regions: masks of this call.
        strength: 0..1.

    Returns:
        (the composite with the gains applied to garment pixels, weighted by alpha; stats).
    """
    scene = estimate_scene_light(scene_linear)
    # Thousands of pixels suffice for the statistics; a grid keeps them fast on big photos.
    step = max(1, round(regions.long_side / 512))
    garment = estimate_garment_light(
        composite_linear[::step, ::step], regions.core[::step, ::step], scene["illuminant"]
    )
    wb, exposure = light_gains(scene, garment, strength)
    gain = wb * np.float32(exposure)
    out = composite_linear * (1.0 + regions.alpha[..., None] * (gain - 1.0))
    stats = {
        "scene_illuminant": [round(float(v), 4) for v in scene["illuminant"]],
        "scene_light_method": scene["method"],
        "scene_white": _rounded(scene["white"]),
        "garment_illuminant": [round(float(v), 4) for v in garment["illuminant"]],
        "garment_white": _rounded(garment["white"]),
        "garment_grey_fraction": round(garment["grey_fraction"], 3),
        "wb_confidence": round(garment["confidence"], 3),
        "wb_gains": [round(float(v), 4) for v in wb],
        **{f"wb_gain_{c}": round(float(v), 4) for c, v in zip("rgb", wb, strict=True)},
        "exposure_gain": round(exposure, 4),
        "scene_pixels": scene["pixels"],
    }
    return out, stats


# --------------------------------------------------------------------------- 2. contrast


def _detail_layer(log_y: np.ndarray, mask: np.ndarray | None, sigma: float) -> np.ndarray:
    """log-luminance minus its Gaussian base; with ``mask``, the base is a normalised
    convolution over the mask only, so the garment's edge against the scene is not
    mistaken for garment texture."""
    if mask is None:
        return log_y - wide_gaussian(log_y, sigma, max_factor=4)
    weight = mask.astype(np.float32)
    num = wide_gaussian(log_y * weight, sigma, max_factor=4)
    den = wide_gaussian(weight, sigma, max_factor=4)
    return log_y - num / np.maximum(den, 1e-6)


def match_contrast(
    linear: np.ndarray, person_linear: np.ndarray, regions: _Regions, strength: float
) -> tuple[np.ndarray, dict[str, object]]:
    """Step 2: scale the garment's local contrast part of the way towards the scene's.

    Local contrast is the median absolute value of the detail layer (log2 luminance minus a
    Gaussian base of about 2 % of the image size, after a 1 px blur so grain does not count).
    The garment's detail layer is multiplied by ``(scene / garment) ** _CONTRAST_TRUST``
    (a quarter of the way, in log) clamped to ``_CONTRAST_RANGE``; chromaticity is kept (all
    channels scale together).

    Args:
        linear: HxWx3 linear RGB after :func:`match_light` (not modified).
        person_linear: HxWx3 linear RGB of the original photo.
        regions: masks of this call.
        strength: 0..1.

    Returns:
        (the adjusted image, stats).
    """
    sigma = max(3.0, _DETAIL_SIGMA_FRAC * regions.long_side)

    def log_luma(img: np.ndarray) -> np.ndarray:
        y = cv2.GaussianBlur(_luminance(img), (0, 0), 1.0)
        return np.log2(y + 1e-4)

    garment_detail = _detail_layer(log_luma(linear), regions.core, sigma)
    scene_detail = _detail_layer(log_luma(person_linear), None, sigma)
    # Only where the statistic means something: garment interior, usable scene pixels.
    inner = regions.core & (regions.dist_in > 2)
    g_mad = float(np.median(np.abs(garment_detail[inner]))) if inner.any() else 0.0
    ring = regions.ring & (_luminance(person_linear) > _DARK_Y)
    s_mad = float(np.median(np.abs(scene_detail[ring]))) if ring.any() else 0.0
    gain = 1.0
    if g_mad > 1e-3 and s_mad > 1e-3:
        gain = float(np.clip((s_mad / g_mad) ** _CONTRAST_TRUST, *_CONTRAST_RANGE))
    gain **= strength
    out = linear
    if gain != 1.0:
        factor = np.exp2((gain - 1.0) * garment_detail) - 1.0
        out = linear * (1.0 + (regions.alpha * factor)[..., None])
    stats = {
        "contrast_gain": round(gain, 4),
        "scene_detail_mad": round(s_mad, 4),
        "garment_detail_mad": round(g_mad, 4),
    }
    return out, stats


# --------------------------------------------------------------------------- 4. grain


def estimate_noise_sigma(channel: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Standard deviation of additive white noise in one image channel, in its own units.

    Immerkaer's operator ("Fast noise variance estimation", CVIU 64(2), 1996) removes image
    structure; the median absolute response is turned into a sigma as in Donoho & Johnstone
    ("Ideal spatial adaptation by wavelet shrinkage", Biometrika 81(3), 1994), which ignores
    the minority of pixels on edges. Only the flatter half of the pixels (by the gradient of
    a slightly blurred copy) is used, so texture is not mistaken for noise, and pixels next
    to clipped values (0 or 255) are skipped because clipping hides noise.

    Args:
        channel: HxW array (uint8 or float on the 0..255 scale).
        mask: optional HxW bool limiting where noise is measured.

    Returns:
        The sigma, or 0.0 when fewer than 64 pixels qualify.
    """
    img = np.asarray(channel, dtype=np.float32)
    if img.ndim != 2 or min(img.shape) < 3:
        return 0.0
    response = np.abs(cv2.filter2D(img, -1, _IMMERKAER, borderType=cv2.BORDER_REFLECT))
    kernel = np.ones((3, 3), np.uint8)
    unclipped = (cv2.erode(img, kernel) > 0.5) & (cv2.dilate(img, kernel) < 254.5)
    valid = unclipped
    valid[0, :] = valid[-1, :] = valid[:, 0] = valid[:, -1] = False
    if mask is not None:
        valid &= mask
    if valid.sum() < 64:
        return 0.0
    smooth = cv2.GaussianBlur(img, (0, 0), 1.5)
    grad = np.hypot(cv2.Sobel(smooth, -1, 1, 0), cv2.Sobel(smooth, -1, 0, 1))
    flat = valid & (grad <= np.median(grad[valid]))
    if flat.sum() < 64:
        return 0.0
    return float(np.median(response[flat]) / (_MAD_TO_SIGMA * 6.0))


# Short name used by callers and tests that only need the estimator.
noise_sigma = estimate_noise_sigma


def _row_bands(height: int, band: int = 96, margin: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of every other ``band``-row band (with ``margin`` rows either side for
    the estimator's filters) and which of them may be measured (not a margin). Small
    images are used whole."""
    if height < 4 * band:
        return np.arange(height), np.ones(height, bool)
    rows, keep = [], []
    for start in range(0, height, 2 * band):
        lo, hi = max(0, start - margin), min(height, start + band + margin)
        rows.append(np.arange(lo, hi))
        r = np.arange(lo, hi)
        keep.append((r >= start) & (r < start + band) & (r - lo >= margin) & (hi - r > margin))
    return np.concatenate(rows), np.concatenate(keep)


def _grain_correlation(person8: np.ndarray, mask: np.ndarray, sigmas: np.ndarray):
    """Luma noise sigma of the photo and how much of its noise the channels share (0..1).

    Shared (luminance) noise passes fully into luma, independent noise only partly; the luma
    sigma therefore tells the two apart. Camera JPEGs carry mostly luminance grain, and
    independent per-channel noise in its place would look like coloured confetti.

    Returns:
        (luma sigma on the 0..255 scale, correlation).
    """
    luma = person8.astype(np.float32) @ _LUMA_601
    sigma_y = estimate_noise_sigma(luma, mask)
    independent = float(np.sum((_LUMA_601 * sigmas) ** 2))
    shared = float(np.sum(_LUMA_601 * sigmas) ** 2)
    if shared - independent < 1e-6:
        return sigma_y, 1.0
    rho = float(np.clip((sigma_y**2 - independent) / (shared - independent), 0.0, 1.0))
    return sigma_y, rho


def match_grain(
    srgb: np.ndarray,
    person8: np.ndarray,
    regions: _Regions,
    seam: np.ndarray,
    strength: float,
    seed: int,
) -> tuple[np.ndarray, dict[str, object]]:
    """Step 4: add the grain the pasted garment lacks.

    Per channel, the photo's sigma (measured on the original around the garment) and the
    garment's own are estimated with :func:`estimate_noise_sigma`; where the garment is
    cleaner, Gaussian noise of ``sqrt(photo**2 - garment**2) * strength`` is added to garment
    pixels, weighted by alpha (and in the seam band by the feather's weight), with the
    photo's inter-channel correlation.

    Args:
        srgb: HxWx3 float32 on the 0..255 scale after the seam (not modified).
        person8: HxWx3 uint8 original photo.
        regions: masks of this call.
        seam: HxW weights of the seam feather, from :func:`blend_seam`.
        strength: 0..1.
        seed: seed of the noise generator.

    Returns:
        (the image with grain added, stats).
    """
    # The garment's own grain is measured away from the feathered seam.
    inner = regions.core & (regions.dist_in > regions.band_px + 2)
    # The scene is measured outside the garment: the caller may pass the composite itself
    # as ``person`` (try-on does), and the clean garment must not lower the estimate.
    scene_px = regions.dist_out > regions.band_px
    # The scene's grain is a property of the whole photo: every other band of rows (half
    # the pixels, each band's filter margin masked out) measures it at half the cost.
    rows, keep = _row_bands(scene_px.shape[0])
    scene_8, scene_sel = person8[rows], scene_px[rows] & keep[:, None]
    scene = np.array(
        [estimate_noise_sigma(scene_8[..., c], scene_sel) for c in range(3)], np.float32
    )
    # Only the garment's box matters here: with an 8-px margin (the estimator's filters
    # reach 7 px) the cropped estimate is exactly the full-frame one, at a fraction of it.
    rows = np.flatnonzero(inner.any(axis=1))
    if rows.size:
        h, w = inner.shape
        cols = np.flatnonzero(inner[rows[0] : rows[-1] + 1].any(axis=0))
        y0, y1 = max(0, rows[0] - 8), min(h, rows[-1] + 9)
        x0, x1 = max(0, cols[0] - 8), min(w, cols[-1] + 9)
        crop, inner_c = srgb[y0:y1, x0:x1], inner[y0:y1, x0:x1]
    else:
        crop, inner_c = srgb, inner
    own = np.array([estimate_noise_sigma(crop[..., c], inner_c) for c in range(3)], np.float32)
    added = np.sqrt(np.maximum(scene**2 - own**2, 0.0)) * np.float32(strength)
    sigma_y, rho = _grain_correlation(scene_8, scene_sel, scene)
    added_y = math.sqrt(
        rho * float(np.sum(_LUMA_601 * added)) ** 2
        + (1.0 - rho) * float(np.sum((_LUMA_601 * added) ** 2))
    )
    out = srgb
    if added.any():
        rng = np.random.default_rng(seed)
        weight = np.maximum(regions.alpha, seam)
        # Noise only where it lands: the box of the garment and its seam band.
        rows = np.flatnonzero(weight.any(axis=1))
        cols = np.flatnonzero(weight.any(axis=0))
        out = srgb.copy()
        if rows.size:
            sl = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
            z = rng.standard_normal((4, *weight[sl].shape), dtype=np.float32)
            shared = np.float32(math.sqrt(rho)) * z[0]
            own_part = np.float32(math.sqrt(1.0 - rho))
            noise = np.stack([added[c] * (shared + own_part * z[c + 1]) for c in range(3)], -1)
            # The seam's blur also took grain from the scene side of the band; give it back.
            out[sl] += weight[sl][..., None] * noise
    stats = {
        "noise_sigma_scene": [round(float(v), 3) for v in scene],
        "noise_sigma_garment": [round(float(v), 3) for v in own],
        "noise_sigma_added": [round(float(v), 3) for v in added],
        "noise_correlation": round(rho, 3),
        # Luma (Rec. 601) equivalents: what a greyscale look at the grain sees.
        "noise_photo": round(sigma_y, 3),
        "noise_added": round(added_y, 3),
    }
    return out, stats


# --------------------------------------------------------------------------- 3. seam


def seam_weight(regions: _Regions) -> np.ndarray:
    """How much of the seam feather each pixel gets: a Gaussian of the pixel's distance to
    the garment's contour (alpha = 0.5) with sigma ``band / 2``, cut to zero beyond ``band``
    from the contour and beyond ``band`` outside the garment."""
    inside = (regions.alpha >= 0.5).astype(np.uint8)
    to_out = cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    to_in = cv2.distanceTransform(1 - inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # Centre-to-contour distance: a pixel next to the contour is half a pixel from it.
    d = np.where(inside > 0, to_out, to_in) - 0.5
    band = float(regions.band_px)
    weight = np.exp(-0.5 * (d / (0.5 * band)) ** 2).astype(np.float32)
    weight[(d > band) | (regions.dist_out > band)] = 0.0
    return weight


def blend_seam(
    srgb: np.ndarray, regions: _Regions, strength: float
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """Step 3: feather the garment's edge in a thin band so it has no hard step or halo.

    Near the contour the image is mixed with a Gaussian blur of itself (sigma ``band / 4``,
    at least 0.6 px), weighted by :func:`seam_weight`. Where garment and scene colours are
    locally constant, blurring their composite equals compositing them with a Gaussian-
    feathered alpha, so this is a feathered-alpha blend that needs no separation of the
    layers: the composite's soft-edged pixels (a sliver of skin between sleeve and body, a
    hand in front) cannot be split into garment and scene reliably, and extrapolated layers
    turned such slivers into averages of distant colours. A Laplacian-pyramid blend (Burt &
    Adelson, "A multiresolution spline with application to image mosaics", ACM TOG 2(4),
    1983) was considered; its benefit, low frequencies mixed over a wide zone, is what the
    narrow band forbids. Nothing beyond ``band`` outside the garment changes.

    Args:
        srgb: HxWx3 float32 0..255 refined composite (not modified).
        regions: masks of this call.
        strength: 0..1, scales the feather.

    Returns:
        (the blended image, the weight map (for the grain step), stats).
    """
    weight = seam_weight(regions) * np.float32(strength)
    sigma = max(0.6, regions.band_px / 4.0)
    blurred = cv2.GaussianBlur(srgb, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    out = srgb + weight[..., None] * (blurred - srgb)
    return out, weight, {"feather_sigma_px": round(sigma, 3)}


# --------------------------------------------------------------------------- 5. restore


def restore(image: np.ndarray, person: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Step 5: copy ``person`` back, bit-exactly, wherever ``keep`` is set (in place).

    Args:
        image: HxWx3 uint8, modified in place.
        person: HxWx3 uint8 original photo.
        keep: HxW bool: protected pixels and everything beyond the garment's band.

    Returns:
        ``image``.
    """
    np.copyto(image, person, where=keep[..., None])
    return image


# --------------------------------------------------------------------------- pipeline


def _scene_sample(person: np.ndarray, roi: tuple[slice, slice], regions: _Regions) -> np.ndarray:
    """Linear RGB of the photo's pixels outside the garment and its band, on a grid of about
    512 px along the long side: the light statistics need thousands of pixels, not millions."""
    scene = np.ones(person.shape[:2], bool)
    scene[roi] = regions.dist_out > regions.band_px
    step = max(1, round(max(person.shape[:2]) / 512))
    return to_linear(person[::step, ::step][scene[::step, ::step]])


def refine(
    composite: np.ndarray,
    person: np.ndarray,
    garment_alpha: np.ndarray,
    protect_mask: np.ndarray | None = None,
    strength: float = 1.0,
    seed: int = 0,
) -> RefineResult:
    """Make a try-on composite look like one photograph (the ``classical`` backend).

    Args:
        composite: HxWx3 uint8 RGB, the person photo with the new garment pasted on.
        person: HxWx3 uint8 RGB, the original photo (same size).
        garment_alpha: HxW float 0..1, where the garment was pasted (soft edges allowed).
        protect_mask: HxW bool, pixels (face, hair, hands) returned bit-identical from
            ``person``; wins over the garment.
        strength: 0..1; scales every correction. 0 returns the composite with only the
            restore step applied.
        seed: seed of the grain generator (the result is deterministic for a given seed).

    Returns:
        A :class:`RefineResult`. Pixels outside the garment dilated by the seam band, and
        protected pixels, are bit-identical to ``person``.

    Raises:
        InvalidInputError: see :func:`check_inputs`.
        ValueError: see :func:`check_inputs`.
    """
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = now - clock
        clock = now

    alpha_full, protect_full = check_inputs(
        composite, person, garment_alpha, protect_mask, strength
    )
    strength = float(strength)
    band = _band_px(composite.shape[:2])
    ring_px = max(_RING_MIN_PX, round(_RING_FRAC * max(composite.shape[:2])))
    # Everything beyond the ring (plus the contrast base's reach) is restored untouched, so
    # work on the garment's neighbourhood only.
    margin = band + ring_px + 2
    roi = _garment_roi(alpha_full > 0, margin)
    comp8, person8 = composite[roi], person[roi]
    long_side = max(composite.shape[:2])
    regions = _regions(alpha_full[roi], protect_full[roi], band, ring_px, long_side)
    lap("check")

    stats: dict[str, object] = {"band_px": band, "ring_px": ring_px, "strength": strength}
    out = composite.copy()
    if strength > 0.0:
        person_lin = to_linear(person8)
        lin, light_stats = match_light(
            to_linear(comp8), _scene_sample(person, roi, regions), regions, strength
        )
        lap("light")
        lin, contrast_stats = match_contrast(lin, person_lin, regions, strength)
        lap("contrast")
        srgb, seam, seam_stats = blend_seam(to_srgb255(lin), regions, strength)
        lap("seam")
        srgb, grain_stats = match_grain(srgb, person8, regions, seam, strength, seed)
        out[roi] = np.clip(srgb + 0.5, 0.0, 255.0).astype(np.uint8)
        lap("grain")
        stats |= light_stats | contrast_stats | grain_stats | seam_stats
    else:
        stats |= {"wb_gains": [1.0, 1.0, 1.0], "exposure_gain": 1.0, "contrast_gain": 1.0}
        stats |= {"wb_gain_r": 1.0, "wb_gain_g": 1.0, "wb_gain_b": 1.0, "noise_added": 0.0}

    keep_full = np.ones(composite.shape[:2], bool)
    keep_full[roi] = regions.keep
    keep_full |= protect_full
    restore(out, person, keep_full)
    lap("restore")
    return RefineResult(image=out, stages=stages, stats=stats)
