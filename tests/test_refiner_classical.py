"""The classical refiner's numeric core (``services.refiner.classical``) on a real photo.

The scene is ``skimage.data.astronaut()``. A synthetic garment (a striped heather-grey knit,
or a red jersey) gets the photo's light: its colour from the photo's backdrop, which is
taken as neutral grey, and smooth folds. "Mis-lit" is the same garment with a blue cast
(linear gains 0.85 / 1.0 / 1.2) and 1.5x too bright, pasted with no grain.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from skimage.color import deltaE_ciede2000, rgb2lab

from services.common.errors import InvalidInputError
from services.refiner.classical import (
    check_inputs,
    estimate_noise_sigma,
    refine,
    to_linear,
    to_srgb255,
)

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
CAST = np.array([0.85, 1.0, 1.2], np.float32)
TORSO = (slice(300, 500), slice(130, 330))  # rows, columns of the pasted patch
FACE = (slice(40, 190), slice(150, 310))


@pytest.fixture(scope="module")
def person() -> np.ndarray:
    return data.astronaut()


def backdrop_light(person: np.ndarray) -> np.ndarray:
    """The photo's light colour (unit luminance), read off a patch of its grey backdrop."""
    light = to_linear(person[10:60, 300:360]).reshape(-1, 3).mean(0)
    return light / (light @ LUMA)


def garment_linear(person: np.ndarray, kind: str) -> np.ndarray:
    """A garment in the photo's light, linear RGB, the photo's size."""
    h, w = person.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "knit":
        albedo = np.full((h, w, 3), 0.42, np.float32)
        albedo[(yy.astype(int) // 8) % 5 == 0] = (0.05, 0.07, 0.20)
    else:  # "red"
        albedo = np.full((h, w, 3), (0.55, 0.04, 0.04), np.float32)
    rng = np.random.default_rng(1)
    fibre = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.0)
    folds = 0.9 + 0.1 * np.sin(2 * np.pi * (xx / 50 + 0.8 * np.sin(yy / 45)))
    return albedo * (1 + 0.1 * fibre)[..., None] * folds[..., None] * backdrop_light(person)


def paste(person: np.ndarray, garment_lin: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    g = to_srgb255(garment_lin)
    out = g * alpha[..., None] + person.astype(np.float32) * (1 - alpha[..., None])
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def torso_alpha(shape: tuple[int, int]) -> np.ndarray:
    alpha = np.zeros(shape, np.float32)
    alpha[TORSO] = 1.0
    return alpha


def interior(alpha: np.ndarray, px: int = 6) -> np.ndarray:
    return ndimage.binary_erosion(alpha > 0.99, iterations=px)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


# --------------------------------------------------------------------------- restore


def test_protected_and_outside_pixels_come_back_bit_identical(person):
    alpha = torso_alpha(person.shape[:2])
    comp = paste(person, garment_linear(person, "knit") * CAST * 1.5, alpha)
    protect = np.zeros(alpha.shape, bool)
    protect[FACE] = True
    protect[300:340, 130:180] = True  # a hand over the garment: protection wins
    rng = np.random.default_rng(0)
    # Drift everywhere the garment is not (a re-encoded composite): it must be undone.
    drift = rng.integers(-3, 4, comp.shape)
    comp = np.where(alpha[..., None] > 0, comp, np.clip(comp + drift, 0, 255)).astype(np.uint8)

    res = refine(comp, person, alpha, protect, seed=5)

    assert res.image.dtype == np.uint8 and res.image.shape == person.shape
    assert np.array_equal(res.image[protect], person[protect])
    band = res.stats["band_px"]
    assert 1 <= band <= max(person.shape) // 100  # a thin seam band, scaled with the image
    dist = ndimage.distance_transform_edt(alpha == 0)
    outside = dist > band
    assert np.array_equal(res.image[outside], person[outside])
    # And the garment itself was refined (not simply copied back).
    assert not np.array_equal(res.image[interior(alpha)], comp[interior(alpha)])


def test_strength_zero_only_restores(person):
    alpha = torso_alpha(person.shape[:2])
    comp = paste(person, garment_linear(person, "knit") * CAST * 1.5, alpha)
    comp[FACE] = 0  # damaged face in the composite
    protect = np.zeros(alpha.shape, bool)
    protect[FACE] = True

    res = refine(comp, person, alpha, protect, strength=0.0)

    keep = protect | (ndimage.distance_transform_edt(alpha == 0) > res.stats["band_px"])
    assert np.array_equal(res.image[keep], person[keep])
    assert np.array_equal(res.image[~keep], comp[~keep])
    assert res.stats["wb_gains"] == [1.0, 1.0, 1.0] and res.stats["exposure_gain"] == 1.0


# --------------------------------------------------------------------------- light


def test_white_balance_error_is_reduced(person):
    alpha = torso_alpha(person.shape[:2])
    truth_lin = garment_linear(person, "knit")
    comp = paste(person, truth_lin * CAST * 1.5, alpha)
    core = interior(alpha)
    truth = to_linear(paste(person, truth_lin, alpha))[core].mean(0)

    res = refine(comp, person, alpha, seed=0)

    before = angle_deg(to_linear(comp)[core].mean(0), truth)
    after = angle_deg(to_linear(res.image)[core].mean(0), truth)
    assert before > 6.0
    assert after < 0.35 * before, (before, after, res.stats["wb_gains"])
    # The gains that did it are reported, and within the documented bounds.
    r, g, b = res.stats["wb_gains"]
    assert r > 1.05 and b < 0.95
    assert all(0.8 <= v <= 1.25 for v in (r, g, b))


def test_light_correction_scales_with_strength(person):
    alpha = torso_alpha(person.shape[:2])
    comp = paste(person, garment_linear(person, "knit") * CAST * 1.5, alpha)
    full = np.array(refine(comp, person, alpha).stats["wb_gains"])
    half = np.array(refine(comp, person, alpha, strength=0.5).stats["wb_gains"])
    np.testing.assert_allclose(half, np.sqrt(full), atol=2e-3)


@pytest.mark.parametrize("kind", ["knit", "red"])
def test_colour_identity_is_kept_under_correct_light(person, kind):
    alpha = torso_alpha(person.shape[:2])
    comp = paste(person, garment_linear(person, kind), alpha)
    core = interior(alpha)

    res = refine(comp, person, alpha, seed=0)

    def lab(img):
        return rgb2lab(img[core].reshape(-1, 1, 3))

    # Per pixel, grain included: the mean CIEDE2000 change stays small.
    change = float(deltaE_ciede2000(lab(comp), lab(res.image)).mean())
    assert change < 3.0, (change, res.stats)
    if kind == "red":
        # No grey pixels, so no evidence of a cast: a red garment's colour is its own.
        assert res.stats["wb_gains"] == [1.0, 1.0, 1.0]


# --------------------------------------------------------------------------- seam


def boundary_step(img: np.ndarray, alpha: np.ndarray) -> float:
    """Largest luminance difference between 4-neighbours on either side of the edge."""
    y = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    inside = alpha > 0.5
    steps = []
    for axis in (0, 1):
        diff = np.abs(np.diff(y, axis=axis))
        across = np.diff(inside.astype(np.int8), axis=axis) != 0
        steps.append(diff[across].max())
    return float(max(steps))


@pytest.mark.parametrize("lit", ["correct", "mis-lit"])
def test_seam_has_no_hard_step(person, lit):
    alpha = torso_alpha(person.shape[:2])  # a hard, aliased paste
    garment = garment_linear(person, "knit") * (CAST * 1.5 if lit == "mis-lit" else 1.0)
    comp = paste(person, garment, alpha)

    res = refine(comp, person, alpha, seed=0)

    before, after = boundary_step(comp, alpha), boundary_step(res.image, alpha)
    assert after < 0.85 * before, (before, after)


# --------------------------------------------------------------------------- grain


def test_noise_sigma_estimate_on_a_flat_image():
    rng = np.random.default_rng(0)
    for sigma in (2.0, 5.0, 10.0):
        flat = np.clip(120 + rng.normal(0, sigma, (256, 256)), 0, 255).astype(np.uint8)
        assert estimate_noise_sigma(flat) == pytest.approx(sigma, rel=0.5)
    clean = np.full((64, 64), 120, np.uint8)
    assert estimate_noise_sigma(clean) == 0.0


def test_noise_sigma_estimate_ignores_image_structure(person):
    """On a real photo with known noise added, the photo's texture does not count."""
    rng = np.random.default_rng(1)
    grey = cv2.cvtColor(person, cv2.COLOR_RGB2GRAY).astype(np.float32)
    own = estimate_noise_sigma(grey)
    noisy = np.clip(grey + rng.normal(0, 6.0, grey.shape), 0, 255)
    assert estimate_noise_sigma(noisy) == pytest.approx(math.hypot(6.0, own), rel=0.5)


def test_grain_is_added_to_a_too_clean_garment(person):
    rng = np.random.default_rng(2)
    sigma = 4.0
    noisy_person = np.clip(person + rng.normal(0, sigma, person.shape[:2])[..., None], 0, 255)
    noisy_person = noisy_person.astype(np.uint8)
    alpha = torso_alpha(person.shape[:2])
    # A clean, fibre-free garment: nothing for the estimator but the grain refine adds.
    flat = np.full(person.shape, (0.3, 0.3, 0.32), np.float32) * backdrop_light(person)
    comp = paste(noisy_person, flat, alpha)
    core = interior(alpha)

    def grain(img: np.ndarray) -> float:
        return estimate_noise_sigma(img[..., 1].astype(np.float32), core)

    res = refine(comp, noisy_person, alpha, seed=3)

    assert grain(comp) < 0.5
    photo = res.stats["noise_sigma_scene"][1]
    assert photo == pytest.approx(sigma, rel=0.5)
    assert res.stats["noise_sigma_added"][1] > 0.5 * sigma
    assert grain(res.image) == pytest.approx(photo, rel=0.5)
    # Seeded: the same seed gives the same pixels, another seed other grain.
    assert np.array_equal(refine(comp, noisy_person, alpha, seed=3).image, res.image)
    assert not np.array_equal(refine(comp, noisy_person, alpha, seed=4).image, res.image)


def test_no_grain_is_added_to_an_already_noisy_garment(person):
    alpha = torso_alpha(person.shape[:2])
    rng = np.random.default_rng(4)
    comp = paste(person, garment_linear(person, "red"), alpha).astype(np.float32)
    comp = np.clip(comp + rng.normal(0, 8.0, comp.shape), 0, 255).astype(np.uint8)
    res = refine(comp, person, alpha, seed=0)
    assert res.stats["noise_sigma_added"] == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------- refusals


def _args(person):
    alpha = torso_alpha(person.shape[:2])
    return {
        "composite": person.copy(),
        "person": person,
        "garment_alpha": alpha,
        "protect_mask": np.zeros(alpha.shape, bool),
        "strength": 1.0,
    }


@pytest.mark.parametrize(
    "change, reason, field",
    [
        ({"garment_alpha": np.ones((10, 10), np.float32)}, "MASK_SIZE_MISMATCH", "garment_mask"),
        (
            {"garment_alpha": np.ones((512, 512, 1), np.float32)},
            "MASK_SIZE_MISMATCH",
            "garment_mask",
        ),
        ({"protect_mask": np.zeros((512, 511), bool)}, "MASK_SIZE_MISMATCH", "protect_mask"),
        ({"garment_alpha": np.zeros((512, 512), np.float32)}, "MASK_EMPTY", "garment_mask"),
        ({"person": np.zeros((10, 10, 3), np.uint8)}, "ORIGINAL_SIZE_MISMATCH", "original"),
        ({"strength": 1.5}, "OPTION_OUT_OF_RANGE", "strength"),
        ({"strength": -0.1}, "OPTION_OUT_OF_RANGE", "strength"),
        ({"strength": float("nan")}, "OPTION_OUT_OF_RANGE", "strength"),
    ],
)
def test_bad_inputs_are_refused_with_their_reason(person, change, reason, field):
    args = _args(person) | change
    with pytest.raises(InvalidInputError) as err:
        refine(**args)
    assert (err.value.reason, err.value.field) == (reason, field)
    with pytest.raises(InvalidInputError):
        check_inputs(**args)


def test_wrong_array_types_are_programming_errors(person):
    with pytest.raises(ValueError):
        refine(**(_args(person) | {"composite": person.astype(np.float32)}))
