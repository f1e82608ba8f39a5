"""Classical refiner backend: make a try-on composite look like one photograph.

The try-on stage pastes a warped garment onto the shopper photo. :func:`refine` matches the
garment to the scene in small steps, one concern each:

1. light: the garment's white balance and exposure moved towards the light of the scene
   around it (:func:`match_light`), bounded and mild so the garment keeps its own colour;
2. contrast: the garment's local (detail-layer) contrast nudged towards the scene's
   (:func:`match_contrast`);
3. grain: the photo's noise level estimated (:func:`estimate_noise_sigma`) and the part the
   pasted garment lacks added to it (:func:`match_grain`);
4. seam: a feathered re-composite of garment and scene in a thin band around the garment's
   edge (:func:`blend_seam`);
5. restore: protected pixels (face, hair, hands) and everything outside the garment and its
   band copied back bit-exactly from the original photo (:func:`restore`).

Colour work happens in linear RGB (the sRGB transfer function undone), where light adds and
multiplies as it does physically; grain and the seam are handled on the encoded 0..255 scale,
where the photo's noise was measured. Pure numpy/OpenCV: no gRPC, no model weights, and
deterministic for a given seed.
"""

from __future__ import annotations

import dataclasses
import math
import time

import cv2
import numpy as np

from services.common.errors import InvalidInputError

# --- Tunables. Each says why it has its value; change them with the tests in mind. ---

# Seam band half-width as a fraction of the image's long side: about 4 px at 1024, 2 px at
# 512. Wide enough to hide an aliased or fringed cut-out edge, narrow enough that the
# garment's silhouette stays sharp and "body and background untouched" still holds.
_BAND_FRAC = 1.0 / 256.0
_BAND_MIN_PX = 2
# Width of the scene ring (beyond the band) whose pixels describe the scene's light: about
# 60 px at 1024 px, enough to hold the person's neighbouring skin and clothes and some
# background, local enough to share the garment's light.
_RING_FRAC = 0.06
_RING_MIN_PX = 8
# Alpha at or above which a pixel is pure garment (statistics and the garment layer of the
# seam use only these).
_CORE_ALPHA = 0.98
# Outermost garment pixels are often contaminated by the flat-lay's background (a light or
# dark fringe); the seam rebuilds them from the garment's interior.
_FRINGE_PX = 1

# Pixels that carry no usable colour: clipped highlights (any channel at or above sRGB 250)
# and near-black (linear luminance below 0.01, about sRGB 25), where noise dominates chroma.
_CLIP_LINEAR = 0.955
_DARK_Y = 0.01
# A pixel is "grey" (achromatic under the light) when its linear-RGB direction is within
# this angle of neutral. 15 degrees admits a strong but plausible white-balance error
# (e.g. gains 0.85/1.0/1.2 are 8 degrees) and rejects saturated garments (a red shirt is 40+).
_GREY_ANGLE_DEG = 15.0
# A garment's white-balance estimate is fully trusted when at least this fraction of its
# pixels is grey; below, the correction fades linearly to none. A saturated single-colour
# garment has no grey pixels and thus no evidence of a colour cast, only of its own colour.
_GREY_FRACTION_FULL = 0.2
_MIN_STAT_PIXELS = 50
# Bounds of the light correction (before `strength`). Mild on purpose: the try-on quality
# goal is mean CIEDE2000 <= 6 between flat-lay and rendered garment colour.
_WB_GAIN_RANGE = (0.8, 1.25)
_EXPOSURE_RANGE = (0.7, 1.4)
# Exposure: the garment/ring brightness ratio mixes a light error with the (unknown)
# difference of the materials' albedos, so only half of it (in log) is taken as light, and
# differences under 10 % are left alone.
_EXPOSURE_TRUST = 0.5
_EXPOSURE_DEADZONE = math.log(1.10)
# Contrast: fraction (in log) of the scene/garment detail-contrast ratio applied, and its
# bounds. Textures differ between materials, so the match is deliberately partial.
_CONTRAST_TRUST = 0.5
_CONTRAST_RANGE = (0.8, 1.25)
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
    ring: np.ndarray  # scene pixels describing the light around the garment


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
    dist_out = cv2.distanceTransform((~support).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    dist_in = cv2.distanceTransform(support.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    # A garment that is translucent everywhere still needs a core; take its most opaque part.
    core = alpha >= min(_CORE_ALPHA, _CORE_ALPHA * float(alpha.max()))
    keep = protect | (dist_out > band_px)
    # The ring lies beyond the band so that no garment pixel (nor seam) leaks into it;
    # protected skin is scene too and stays in.
    ring = (dist_out > band_px) & (dist_out <= band_px + ring_px)
    return _Regions(
        band_px, ring_px, long_side, alpha, support, core, dist_out, dist_in, keep, ring
    )


# --------------------------------------------------------------------------- a. light


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


def estimate_scene_light(linear: np.ndarray, ring: np.ndarray) -> dict[str, object]:
    """Light colour and level of the scene around the garment.

    The colour is the median chromaticity of the ring's grey pixels (a grey-pixel estimate
    in the spirit of Yang, Gao & Li, "Efficient illuminant estimation for color constancy
    using grey pixels", CVPR 2015); when fewer than 2 % of the ring is grey it falls back to
    the ring's grey-world mean (Buchsbaum 1980). The level is the median luminance.

    Args:
        linear: HxWx3 linear RGB of the original photo.
        ring: HxW bool, the scene ring around the garment.

    Returns:
        ``{"illuminant": rgb with unit luminance, "level": float, "pixels": int,
        "method": "grey-pixels" | "grey-world" | "none"}``.
    """
    px = linear[ring]
    px = px[_usable(px)]
    neutral = np.ones(3, np.float32)
    if len(px) < _MIN_STAT_PIXELS:
        return {"illuminant": neutral, "level": math.nan, "pixels": len(px), "method": "none"}
    chroma = px / (px @ _LUMA)[:, None]
    grey = _angle_deg(chroma, neutral) < _GREY_ANGLE_DEG
    if grey.sum() >= max(_MIN_STAT_PIXELS, 0.02 * len(px)):
        illuminant, method = np.median(chroma[grey], axis=0), "grey-pixels"
    else:
        illuminant, method = px.mean(axis=0), "grey-world"
    return {
        "illuminant": _unit_luminance(illuminant.astype(np.float32)),
        "level": float(np.median(px @ _LUMA)),
        "pixels": len(px),
        "method": method,
    }


def estimate_garment_light(
    linear: np.ndarray, core: np.ndarray, scene_illuminant: np.ndarray
) -> dict[str, object]:
    """Light colour and level the pasted garment appears to be lit by.

    Only the garment's grey pixels (near neutral, or near the scene's light colour) are
    evidence of its light: the colour of a saturated garment is its own, not a cast, so the
    estimate comes with a confidence that falls to zero as grey pixels become rare.

    Args:
        linear: HxWx3 linear RGB of the composite.
        core: HxW bool, pure-garment pixels.
        scene_illuminant: the scene's light colour (unit luminance).

    Returns:
        ``{"illuminant", "level", "grey_fraction", "confidence", "pixels"}``.
    """
    px = linear[core]
    px = px[_usable(px)]
    neutral = np.ones(3, np.float32)
    if len(px) < _MIN_STAT_PIXELS:
        return {
            "illuminant": neutral,
            "level": math.nan,
            "grey_fraction": 0.0,
            "confidence": 0.0,
            "pixels": len(px),
        }
    chroma = px / (px @ _LUMA)[:, None]
    grey = (_angle_deg(chroma, neutral) < _GREY_ANGLE_DEG) | (
        _angle_deg(chroma, scene_illuminant) < _GREY_ANGLE_DEG
    )
    fraction = float(grey.mean())
    if grey.sum() >= _MIN_STAT_PIXELS:
        illuminant = _unit_luminance(np.median(chroma[grey], axis=0).astype(np.float32))
        confidence = min(fraction / _GREY_FRACTION_FULL, 1.0)
    else:
        illuminant, confidence = neutral, 0.0
    return {
        "illuminant": illuminant,
        "level": float(np.median(px @ _LUMA)),
        "grey_fraction": fraction,
        "confidence": confidence,
        "pixels": len(px),
    }


def light_gains(
    scene: dict[str, object], garment: dict[str, object], strength: float
) -> tuple[np.ndarray, float]:
    """Bounded white-balance gains and exposure gain that move the garment into the scene's
    light.

    White balance: von Kries-style per-channel gains (scene light / garment light), scaled by
    the garment estimate's confidence, normalised to leave luminance alone and clamped to
    ``_WB_GAIN_RANGE``. Exposure: half the log ratio of the median luminances, with a 10 %
    dead zone, clamped to ``_EXPOSURE_RANGE``. Both are raised to ``strength``.

    Args:
        scene: from :func:`estimate_scene_light`.
        garment: from :func:`estimate_garment_light`.
        strength: 0..1.

    Returns:
        (per-channel white-balance gains, exposure gain).
    """
    log_wb = float(garment["confidence"]) * (
        np.log(scene["illuminant"]) - np.log(garment["illuminant"])
    )
    wb = np.exp(log_wb).astype(np.float32)
    wb = np.clip(wb / float(wb @ _LUMA), *_WB_GAIN_RANGE) ** strength
    exposure = 1.0
    if math.isfinite(scene["level"]) and math.isfinite(garment["level"]):
        log_ratio = _EXPOSURE_TRUST * math.log(max(scene["level"], 1e-4) / garment["level"])
        shrunk = math.copysign(max(abs(log_ratio) - _EXPOSURE_DEADZONE, 0.0), log_ratio)
        exposure = float(np.clip(math.exp(shrunk), *_EXPOSURE_RANGE)) ** strength
    return wb.astype(np.float32), exposure


def match_light(
    composite_linear: np.ndarray,
    person_linear: np.ndarray,
    regions: _Regions,
    strength: float,
) -> tuple[np.ndarray, dict[str, object]]:
    """Step a: put the garment in the scene's light (white balance and exposure).

    Args:
        composite_linear: HxWx3 linear RGB of the composite (not modified).
        person_linear: HxWx3 linear RGB of the original photo.
        regions: masks of this call.
        strength: 0..1.

    Returns:
        (the composite with the gains applied to garment pixels, weighted by alpha; stats).
    """
    scene = estimate_scene_light(person_linear, regions.ring)
    garment = estimate_garment_light(composite_linear, regions.core, scene["illuminant"])
    wb, exposure = light_gains(scene, garment, strength)
    gain = wb * np.float32(exposure)
    out = composite_linear * (1.0 + regions.alpha[..., None] * (gain - 1.0))
    stats = {
        "scene_illuminant": [round(float(v), 4) for v in scene["illuminant"]],
        "scene_light_method": scene["method"],
        "scene_level": round(scene["level"], 4),
        "garment_illuminant": [round(float(v), 4) for v in garment["illuminant"]],
        "garment_level": round(garment["level"], 4),
        "garment_grey_fraction": round(garment["grey_fraction"], 3),
        "wb_confidence": round(garment["confidence"], 3),
        "wb_gains": [round(float(v), 4) for v in wb],
        **{f"wb_gain_{c}": round(float(v), 4) for c, v in zip("rgb", wb, strict=True)},
        "exposure_gain": round(exposure, 4),
        "ring_pixels": scene["pixels"],
    }
    return out, stats


# --------------------------------------------------------------------------- b. contrast


def _detail_layer(log_y: np.ndarray, mask: np.ndarray | None, sigma: float) -> np.ndarray:
    """log-luminance minus its Gaussian base; with ``mask``, the base is a normalised
    convolution over the mask only, so the garment's edge against the scene is not
    mistaken for garment texture."""
    if mask is None:
        return log_y - cv2.GaussianBlur(log_y, (0, 0), sigma)
    weight = mask.astype(np.float32)
    num = cv2.GaussianBlur(log_y * weight, (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)
    return log_y - num / np.maximum(den, 1e-6)


def match_contrast(
    linear: np.ndarray, person_linear: np.ndarray, regions: _Regions, strength: float
) -> tuple[np.ndarray, dict[str, object]]:
    """Step b: scale the garment's local contrast part of the way towards the scene's.

    Local contrast is the median absolute value of the detail layer (log2 luminance minus a
    Gaussian base of about 2 % of the image size, after a 1 px blur so grain does not count).
    The garment's detail layer is multiplied by ``(scene / garment) ** 0.5`` clamped to
    ``_CONTRAST_RANGE``; chromaticity is kept (all channels scale together).

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


# --------------------------------------------------------------------------- c. grain


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
    strength: float,
    seed: int,
) -> tuple[np.ndarray, dict[str, object]]:
    """Step c: add the grain the pasted garment lacks.

    Per channel, the photo's sigma (measured on the original around the garment) and the
    garment's own are estimated with :func:`estimate_noise_sigma`; where the garment is
    cleaner, Gaussian noise of ``sqrt(photo**2 - garment**2) * strength`` is added to garment
    pixels, weighted by alpha, with the photo's inter-channel correlation.

    Args:
        srgb: HxWx3 float32 on the 0..255 scale after the colour steps (not modified).
        person8: HxWx3 uint8 original photo.
        regions: masks of this call.
        strength: 0..1.
        seed: seed of the noise generator.

    Returns:
        (the image with grain added, stats).
    """
    inner = regions.core & (regions.dist_in > 2)
    # The scene is measured outside the garment: the caller may pass the composite itself
    # as ``person`` (try-on does), and the clean garment must not lower the estimate.
    scene_px = regions.dist_out > regions.band_px
    scene = np.array(
        [estimate_noise_sigma(person8[..., c], scene_px) for c in range(3)], np.float32
    )
    own = np.array([estimate_noise_sigma(srgb[..., c], inner) for c in range(3)], np.float32)
    added = np.sqrt(np.maximum(scene**2 - own**2, 0.0)) * np.float32(strength)
    sigma_y, rho = _grain_correlation(person8, scene_px, scene)
    added_y = math.sqrt(
        rho * float(np.sum(_LUMA_601 * added)) ** 2
        + (1.0 - rho) * float(np.sum((_LUMA_601 * added) ** 2))
    )
    out = srgb
    if added.any():
        rng = np.random.default_rng(seed)
        z = rng.standard_normal((4, *srgb.shape[:2]), dtype=np.float32)
        shared = np.float32(math.sqrt(rho)) * z[0]
        own_part = np.float32(math.sqrt(1.0 - rho))
        noise = np.stack([added[c] * (shared + own_part * z[c + 1]) for c in range(3)], -1)
        out = srgb + regions.alpha[..., None] * noise
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


# --------------------------------------------------------------------------- d. seam


def _extend(img: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """``img`` where ``valid``, elsewhere a smooth continuation of it (normalised
    convolution, Knutsson & Westin 1993)."""
    weight = valid.astype(np.float32)
    num = cv2.GaussianBlur(img * weight[..., None], (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)[..., None]
    filled = np.where(den > 1e-4, num / np.maximum(den, 1e-4), img)
    return np.where(valid[..., None], img, filled)


def blend_seam(
    srgb: np.ndarray, person8: np.ndarray, regions: _Regions, strength: float
) -> tuple[np.ndarray, dict[str, object]]:
    """Step d: re-composite garment and scene with a feathered alpha in a thin band.

    The garment layer is the refined garment's interior (its outermost ``_FRINGE_PX`` px
    and any soft-alpha pixels dropped, as cut-outs carry the flat-lay's background there),
    continued outwards; the scene layer is the original photo outside the garment,
    continued inwards (so the person's old clothes under the garment never show through).
    They are mixed with the garment alpha blurred by a Gaussian of ``band / 3`` px, which
    falls below 0.2 % at the band's outer edge, where it is cut to zero: nothing outside the
    garment dilated by the band changes. A Laplacian-pyramid blend (Burt & Adelson, "A
    multiresolution spline with application to image mosaics", ACM TOG 2(4), 1983) was
    considered; its benefit, low frequencies blended over a wide zone, is exactly what the
    narrow band forbids, so a feather is used.

    Args:
        srgb: HxWx3 float32 0..255 refined composite (not modified).
        person8: HxWx3 uint8 original photo.
        regions: masks of this call.
        strength: 0..1, mixes the composite's own edge (0) with the feathered one (1).

    Returns:
        (the blended image, stats).
    """
    band = regions.band_px
    zone = ((regions.dist_out > 0) & (regions.dist_out <= band)) | (
        regions.support & ((regions.dist_in <= band) | ~regions.core)
    )
    if not zone.any() or strength == 0.0:
        return srgb, {"band_px": band, "feather_sigma_px": 0.0}
    garment_valid = regions.core & (regions.dist_in > _FRINGE_PX)
    if not garment_valid.any():
        garment_valid = regions.core
    scene_valid = ~regions.support
    # Reach of the continuations: far enough to cover the zone, at least the band.
    reach_g = cv2.distanceTransform((~garment_valid).astype(np.uint8), cv2.DIST_L2, 3)
    reach_s = cv2.distanceTransform((~scene_valid).astype(np.uint8), cv2.DIST_L2, 3)
    sigma_g = max(float(band), float(reach_g[zone].max()) / 2.0)
    sigma_s = max(float(band), float(reach_s[zone].max()) / 2.0) if scene_valid.any() else band
    garment = _extend(srgb, garment_valid, sigma_g)
    scene = _extend(person8.astype(np.float32), scene_valid, sigma_s)
    feather = band / 3.0
    weight = cv2.GaussianBlur(regions.alpha, (0, 0), feather)
    weight[regions.dist_out > band] = 0.0
    blended = weight[..., None] * garment + (1.0 - weight[..., None]) * scene
    mix = (zone * np.float32(strength))[..., None]
    out = srgb + mix * (blended - srgb)
    return out, {"band_px": band, "feather_sigma_px": round(feather, 3)}


# --------------------------------------------------------------------------- e. restore


def restore(image: np.ndarray, person: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Step e: copy ``person`` back, bit-exactly, wherever ``keep`` is set (in place).

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
    regions = _regions(alpha_full[roi], protect_full[roi], band, ring_px, max(composite.shape))
    lap("check")

    stats: dict[str, object] = {"band_px": band, "ring_px": ring_px, "strength": strength}
    out = composite.copy()
    if strength > 0.0:
        person_lin = to_linear(person8)
        lin, light_stats = match_light(to_linear(comp8), person_lin, regions, strength)
        lap("light")
        lin, contrast_stats = match_contrast(lin, person_lin, regions, strength)
        lap("contrast")
        srgb, grain_stats = match_grain(to_srgb255(lin), person8, regions, strength, seed)
        lap("grain")
        srgb, seam_stats = blend_seam(srgb, person8, regions, strength)
        out[roi] = np.clip(srgb + 0.5, 0.0, 255.0).astype(np.uint8)
        lap("seam")
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
