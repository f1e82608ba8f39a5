"""Garment analysis (:mod:`services.common.analysis.garment`) against flat-lays drawn in code
(:mod:`services.tryon.flatlays`), whose masks and landmarks are known exactly.

The matrix is every kind x every pattern x every backdrop, drawn at 384 x 384 (the figures
hold at 256-768; smaller keeps the suite fast). Each case is drawn and analysed once and
shared by the IoU, classification and landmark tests.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage

from services.common.analysis.garment import (
    CATEGORIES,
    GarmentAnalysis,
    analyze_garment,
    segment_garment,
)
from services.common.errors import InvalidInputError
from services.tryon.flatlays import BACKGROUNDS, KINDS, PATTERNS, FlatLay, draw_garment

SIZE = (384, 384)
MATRIX = [(k, p, b) for k in KINDS for p in PATTERNS for b in BACKGROUNDS]
# Landmarks must be within this fraction of the garment's bounding-box diagonal.
LANDMARK_TOLERANCE = 0.03


def _seed(kind: str, pattern: str) -> int:
    # Vary the proportions across the matrix; a dress alternates short sleeves (even seed)
    # and sleeveless (odd), so both are covered.
    return PATTERNS.index(pattern) + (KINDS.index(kind) % 2)


@functools.cache
def case(kind: str, pattern: str, background: str) -> tuple[FlatLay, GarmentAnalysis]:
    flat = draw_garment(kind, pattern, size=SIZE, background=background, seed=_seed(kind, pattern))
    return flat, analyze_garment(flat.image)


def iou(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.logical_and(found, truth).sum() / np.logical_or(found, truth).sum())


def uncropped(analysis: GarmentAnalysis, shape: tuple[int, int]) -> np.ndarray:
    """The analysis's crop mask put back into the full image."""
    x0, y0, x1, y1 = analysis.bbox
    full = np.zeros(shape, bool)
    full[y0:y1, x0:x1] = analysis.mask >= 0.5
    return full


def landmark_errors(flat: FlatLay, analysis: GarmentAnalysis) -> dict[str, float]:
    """Distance of each found landmark from the truth, in bounding-box diagonals."""
    ys, xs = np.nonzero(flat.mask)
    diagonal = float(np.hypot(xs.max() - xs.min(), ys.max() - ys.min()))
    x0, y0 = analysis.bbox[:2]
    return {
        name: float(np.hypot(fx + x0 - tx, fy + y0 - ty)) / diagonal
        for name, (tx, ty) in flat.landmarks.items()
        for fx, fy in [analysis.landmarks[name]]
    }


# --------------------------------------------------------------------------- segmentation


@pytest.mark.parametrize("kind,pattern,background", MATRIX)
def test_segmentation_matches_the_true_mask(kind, pattern, background):
    flat, _ = case(kind, pattern, background)
    alpha = segment_garment(flat.image)
    assert alpha.dtype == np.float32 and alpha.shape == flat.mask.shape
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0
    floor = 0.98 if background == "transparent" else 0.95
    assert iou(alpha >= 0.5, flat.mask) >= floor


@pytest.mark.parametrize("kind,pattern,background", MATRIX)
def test_analysis_crop_holds_the_whole_cut_out(kind, pattern, background):
    flat, found = case(kind, pattern, background)
    h, w = found.mask.shape
    x0, y0, x1, y1 = found.bbox
    assert (x1 - x0, y1 - y0) == (w, h)
    assert found.rgba.shape == (h, w, 4) and found.rgba.dtype == np.uint8
    assert np.array_equal(found.rgba[..., 3] >= 128, found.mask >= 0.5)
    # The crop is the garment plus a margin: nothing of it is cut off, and little else.
    assert not found.mask[[0, -1], :].any() and not found.mask[:, [0, -1]].any()
    assert iou(uncropped(found, flat.mask.shape), flat.mask) >= 0.95
    assert found.mask.size < 1.3 * (flat.mask.any(0).sum() * flat.mask.any(1).sum())


@pytest.mark.parametrize("kind", ["tshirt", "longsleeve", "dress", "trousers", "skirt"])
def test_white_print_and_white_stripes_do_not_punch_holes(kind):
    white = (255, 255, 255)
    for pattern in ("logo", "stripes"):
        flat = draw_garment(kind, pattern, color=(200, 40, 40), size=SIZE, color2=white)
        rgb = flat.image.astype(int)
        is_white = (rgb.min(axis=2) >= 245) & flat.mask
        assert is_white.sum() > 500, "the drawing has no white print or stripes to test"
        found = segment_garment(flat.image) >= 0.5
        # No hole: filling holes changes nothing; and the white garment pixels are garment.
        assert np.array_equal(ndimage.binary_fill_holes(found), found)
        assert found[is_white].mean() >= 0.98, pattern
        assert iou(found, flat.mask) >= 0.97, pattern


def test_a_garment_close_to_the_backdrop_colour_is_still_cut_out():
    # Light grey on white (Delta E about 14) and a grey-blue a shade darker than the
    # grey-blue backdrop (Delta E about 11).
    for color, background in (((215, 215, 215), "white"), ((160, 175, 200), "color")):
        flat = draw_garment("tshirt", color=color, size=SIZE, background=background)
        assert iou(segment_garment(flat.image) >= 0.5, flat.mask) >= 0.95, color


def test_segment_refuses_a_non_image_array():
    with pytest.raises(ValueError):
        segment_garment(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        segment_garment(np.zeros((10, 10, 3), np.float32))


# --------------------------------------------------------------------------- classification


def expected_category(flat: FlatLay) -> str:
    """What the outline can tell: a hip-length jacket has a shirt's outline (the zip line
    that sets it apart on this drawing does not on real packshots, where shirts, cardigans
    and hoodies have one too), so it reads as a top; its category comes from a hint."""
    if flat.category == "outerwear" and flat.length != "long":
        return "top"
    return flat.category


@pytest.mark.parametrize("kind,pattern,background", MATRIX)
def test_category_sleeve_and_length(kind, pattern, background):
    flat, found = case(kind, pattern, background)
    assert (found.category, found.sleeve, found.length) == (
        expected_category(flat),
        flat.sleeve,
        flat.length,
    )
    assert found.category_source == "shape"
    assert 0.5 <= found.confidence <= 1.0


def test_the_matrix_covers_every_class():
    seen = {(case(k, p, "white")[0].category, case(k, p, "white")[0].sleeve) for k, p, _ in MATRIX}
    assert {c for c, _ in seen} == set(CATEGORIES)
    assert {s for _, s in seen} == {None, "sleeveless", "short", "long"}
    assert {case(k, "solid", "white")[0].length for k in KINDS} == {"cropped", "regular", "long"}


# --------------------------------------------------------------------------- landmarks


@pytest.mark.parametrize("kind,pattern,background", MATRIX)
def test_landmarks_are_found_near_the_truth(kind, pattern, background):
    flat, found = case(kind, pattern, background)
    assert set(found.landmarks) == set(flat.landmarks)
    errors = landmark_errors(flat, found)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= LANDMARK_TOLERANCE, f"{worst} off by {errors[worst]:.1%}"


def test_landmark_names_follow_image_left_and_right():
    flat, found = case("tshirt", "solid", "white")
    for part in ("neck", "shoulder", "armpit", "hem"):
        assert found.landmarks[f"{part}_l"][0] < found.landmarks[f"{part}_r"][0]
    assert found.landmarks["cuff_l_top"][1] < found.landmarks["cuff_l_bottom"][1]
    flat, found = case("trousers", "solid", "white")
    xs = [found.landmarks[n][0] for n in ("leg_l_out", "leg_l_in", "leg_r_in", "leg_r_out")]
    assert xs == sorted(xs)


def test_landmarks_hold_on_a_large_photo():
    # Over the shape-analysis working size (640 px), landmarks are scaled back to the crop.
    flat = draw_garment("jacket", "checks", size=(1100, 1000), background="textured", seed=3)
    found = analyze_garment(flat.image, category="outerwear")
    assert (found.category, found.sleeve) == ("outerwear", "long")
    assert max(landmark_errors(flat, found).values()) <= LANDMARK_TOLERANCE


# --------------------------------------------------------------------------- category override


@pytest.mark.parametrize(
    "kind,requested",
    [("tshirt", "outerwear"), ("jacket", "top"), ("tank", "dress"), ("skirt", "bottom")],
)
def test_a_category_override_is_honoured(kind, requested):
    flat = draw_garment(kind, size=SIZE)
    found = analyze_garment(flat.image, category=requested)
    assert found.category == requested
    assert found.category_source == "request" and found.confidence == 1.0
    # Landmarks are still found, for the requested category's family.
    assert set(found.landmarks) == set(flat.landmarks)
    assert max(landmark_errors(flat, found).values()) <= LANDMARK_TOLERANCE
    assert found.sleeve == flat.sleeve


@pytest.mark.parametrize(
    "kind,requested", [("trousers", "top"), ("skirt", "dress"), ("tshirt", "bottom")]
)
def test_an_override_the_outline_contradicts_is_refused(kind, requested):
    with pytest.raises(InvalidInputError) as err:
        analyze_garment(draw_garment(kind, size=SIZE).image, category=requested)
    assert err.value.reason == "GARMENT_CATEGORY_CONFLICT"
    assert err.value.field == "category"
    assert requested in err.value.message


def test_an_unknown_category_is_refused():
    with pytest.raises(InvalidInputError) as err:
        analyze_garment(draw_garment("tshirt", size=SIZE).image, category="hat")
    assert err.value.reason == "GARMENT_CATEGORY_INVALID" and err.value.field == "category"


# --------------------------------------------------------------------------- refusals


def _tiny_garment() -> np.ndarray:
    canvas = np.full((512, 512, 3), 255, np.uint8)
    canvas[200:264, 220:284] = draw_garment("tshirt", size=(64, 64)).image
    return canvas


def _opaque_all_round() -> np.ndarray:
    # A transparent PNG whose opaque part runs off every edge: not a cut-out garment.
    rgba = np.full((300, 300, 4), 200, np.uint8)
    rgba[100:200, 100:200, 3] = 0
    return rgba


@pytest.mark.parametrize(
    "name,image,why",
    [
        ("blank white", np.full((400, 400, 3), 255, np.uint8), "blank"),
        ("uniform colour", np.full((400, 300, 3), (70, 120, 160), np.uint8), "blank"),
        (
            "random noise",
            np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8),
            "not a plain backdrop",
        ),
        ("tiny garment", _tiny_garment(), "covers only"),
        ("fully transparent", np.zeros((300, 300, 4), np.uint8), "transparent"),
        ("runs off the border", _opaque_all_round(), "border"),
    ],
)
def test_garment_not_found(name, image, why):
    with pytest.raises(InvalidInputError) as err:
        analyze_garment(image)
    assert err.value.reason == "GARMENT_NOT_FOUND"
    assert err.value.field == "garment"
    assert why in err.value.message, err.value.message


# --------------------------------------------------------------------------- learned cut-out


def test_the_shipped_saliency_model_is_verified(tmp_path):
    from services.common.analysis import saliency
    from services.common.errors import ConfigError

    path = saliency.default_model_path()
    assert path.name == "u2netp.onnx" and path.stat().st_size > 4_000_000
    model = saliency.SaliencyModel(path)  # the shipped file has the pinned digest
    out = model(draw_garment("tshirt", size=(256, 256)).image)
    assert out.shape == (320, 320) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    corrupted = tmp_path / "u2netp.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="corrupted"):
        saliency.SaliencyModel(corrupted)
    with pytest.raises(ConfigError, match="missing"):
        saliency.SaliencyModel(tmp_path / "absent.onnx")


def _white_on_light_grey() -> tuple[np.ndarray, np.ndarray]:
    from services.tryon.flatlays import draw_white_tee_on_sweep

    flat = draw_white_tee_on_sweep()
    return flat.image, flat.mask


def test_a_white_tee_on_a_light_grey_sweep_is_cut_out_whole():
    rgb, truth = _white_on_light_grey()
    learned = segment_garment(rgb) >= 0.5
    colour_only = segment_garment(rgb, saliency=None) >= 0.5
    assert iou(learned, truth) >= 0.93
    assert iou(learned, truth) > iou(colour_only, truth) + 0.05
    # No holes for the shopper's body to show through.
    assert np.array_equal(ndimage.binary_fill_holes(learned), learned)


def test_a_hanger_hook_goes():
    flat = draw_garment("tshirt", size=(384, 384), background="white")
    image = flat.image.copy()
    ys, xs = np.nonzero(flat.mask)
    cx, top = int(np.median(xs)), int(ys.min())
    # A hook and its neck standing above the neckline's centre, in the garment's shade.
    import cv2

    hook = np.zeros(flat.mask.shape, np.uint8)
    cv2.line(hook, (cx, top + 12), (cx, top - 30), 1, 3)
    cv2.ellipse(hook, (cx + 10, top - 30), (10, 10), 0, 180, 360, 1, 3)
    hook = hook.astype(bool) & ~flat.mask
    image[hook] = (60, 60, 60)
    found = segment_garment(image) >= 0.5
    assert found[hook].mean() < 0.05
    assert iou(found, flat.mask) >= 0.95


# --------------------------------------------------------------------------- hints, doubt


def test_sleeve_and_length_hints_win():
    found = analyze_garment(draw_garment("tshirt", size=SIZE).image, sleeve="long", length="long")
    assert (found.category, found.sleeve, found.length) == ("top", "long", "long")
    assert found.sleeve_source == "request" and found.length_source == "request"
    assert found.category_source == "shape"
    plain = analyze_garment(draw_garment("tshirt", size=SIZE).image)
    assert plain.sleeve_source == "shape" and plain.sleeve == "short"


@pytest.mark.parametrize(
    "hints, reason",
    [({"sleeve": "cap"}, "GARMENT_SLEEVE_INVALID"), ({"length": "midi"}, "GARMENT_LENGTH_INVALID")],
)
def test_unknown_hints_are_refused(hints, reason):
    with pytest.raises(InvalidInputError) as err:
        analyze_garment(draw_garment("tshirt", size=SIZE).image, **hints)
    assert err.value.reason == reason and err.value.field == next(iter(hints))


def test_an_outline_that_does_not_settle_the_category_is_refused_without_a_hint():
    from services.tryon.flatlays import draw_boundary_shift

    with pytest.raises(InvalidInputError) as err:
        analyze_garment(draw_boundary_shift())
    assert err.value.reason == "GARMENT_CATEGORY_UNCERTAIN" and err.value.field == "category"
    assert "category hint" in err.value.message
    # The hint settles it.
    assert analyze_garment(draw_boundary_shift(), category="dress").category == "dress"


def test_the_description_is_reported_with_its_measures():
    found = analyze_garment(draw_garment("trousers", size=SIZE).image)
    assert found.features["leg_split"] > 0.3 and found.features["straight_top"] > 0.75


def test_a_corrupted_cut_out_model_stops_try_on_start_up(tmp_path, monkeypatch):
    from services.common.analysis import saliency
    from services.common.config import load_settings
    from services.common.errors import ConfigError
    from services.tryon.server import TryOnApp

    bad = tmp_path / "u2netp.onnx"
    bad.write_bytes(saliency.default_model_path().read_bytes()[:-1] + b"\0")
    monkeypatch.setenv("DRAPE_SALIENCY_MODEL", str(bad))
    saliency.default_model.cache_clear()
    try:
        app = TryOnApp(load_settings(env={}, metrics_port=-1, grpc_address="127.0.0.1:0"))
        with pytest.raises(ConfigError, match="corrupted"):
            app.load()
    finally:
        monkeypatch.delenv("DRAPE_SALIENCY_MODEL")
        saliency.default_model.cache_clear()


def test_the_learned_model_runs_only_where_the_colour_cut_out_is_unsure():
    from services.common.analysis import saliency

    calls = []

    def counting(rgb):
        calls.append(rgb.shape)
        return saliency.default_model()(rgb)

    # A crisp garment on a clean studio white: the colour cut-out is certain on its own.
    crisp = draw_garment("tshirt", size=SIZE, background="white").image
    assert iou(segment_garment(crisp, saliency=counting) >= 0.5, segment_garment(crisp) >= 0.5) == 1
    assert calls == []
    # A white tee on a light-grey sweep: it is not, and the model runs.
    rgb, truth = _white_on_light_grey()
    assert iou(segment_garment(rgb, saliency=counting) >= 0.5, truth) >= 0.93
    assert len(calls) >= 1
