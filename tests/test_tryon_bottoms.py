"""Bottoms and outfits on a full-body input: waist panel and legs warped onto the hips and
legs, tuck, old trousers replaced by skin where shorts end, shoes and face untouched.

No full-body photo ships in the installed packages, so these run on the studio figure of
:mod:`services.tryon.figures` (a real face on a drawn full-body figure that MediaPipe
detects with every landmark visible); the refusal runs on a real half-body photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from services.common.analysis import person as P
from services.common.analysis.garment import analyze_garment
from services.common.errors import InvalidInputError
from services.tryon import fit
from services.tryon.figures import JEANS, SHIRT, draw_figure
from services.tryon.flatlays import draw_garment
from services.tryon.geometric import dress_bottom
from services.tryon.parts import bottom_hips
from services.tryon.pipeline import GarmentInput, TryOnOptions, TryOnPipeline

BROWN = (150, 100, 60)
RED = (200, 40, 40)
GREEN = (40, 130, 60)


@pytest.fixture(scope="module")
def analyzer():
    return P.PersonAnalyzer()


@pytest.fixture(scope="module")
def figure():
    return draw_figure()


@pytest.fixture(scope="module")
def figure_pa(analyzer, figure):
    return analyzer.analyze(figure)


@pytest.fixture(scope="module")
def pipeline(analyzer):
    return TryOnPipeline(analyzer)  # no refiner: pixel checks see the composite itself


def lab_distance(pixels: np.ndarray, rgb) -> np.ndarray:
    lab = cv2.cvtColor(pixels.reshape(-1, 1, 3).astype(np.uint8), cv2.COLOR_RGB2LAB)
    ref = cv2.cvtColor(np.uint8([[rgb]]), cv2.COLOR_RGB2LAB)[0, 0]
    return np.linalg.norm(lab.reshape(-1, 3)[:, 1:].astype(float) - ref[1:].astype(float), axis=1)


def along_leg(pa: P.PersonAnalysis, side: str, fractions) -> np.ndarray:
    hip, knee, ankle = fit.leg_path(pa, side)
    pts = []
    for f in fractions:  # 0 = hip, 0.5 = knee, 1 = ankle
        pts.append(
            hip + (knee - hip) * f * 2 if f <= 0.5 else knee + (ankle - knee) * (f - 0.5) * 2
        )
    return np.round(pts).astype(int)


def test_the_figure_is_a_full_body_person(figure_pa):
    assert figure_pa.framing == "full"
    assert figure_pa.landmarks[:, 3].min() > 0.6
    assert figure_pa.lower_clothes.sum() > 20_000


@pytest.mark.parametrize("kind", ["trousers", "shorts", "skirt"])
def test_bottom_landmarks_land_on_their_targets(figure_pa, kind):
    ga = analyze_garment(draw_garment(kind, color=BROWN).image)
    assert ga.category == "bottom"
    layers, warps = dress_bottom(figure_pa, ga.rgba, ga.mask, dict(ga.landmarks), ga.length)
    names = {w.name for w in warps}
    assert names == ({"skirt"} if kind == "skirt" else {"waist", "leg_l", "leg_r"})
    for w in warps:  # the backward map takes each target back onto its garment point
        checked = 0
        for (sx, sy), (dx, dy) in zip(w.src, w.dst, strict=True):
            if not (0 <= dx < figure_pa.size[1] and 0 <= dy < figure_pa.size[0]):
                continue
            mx = w.warped.map_x[int(round(dy)), int(round(dx))]
            my = w.warped.map_y[int(round(dy)), int(round(dx))]
            if mx < 0:  # outside the box the part lands in: the map is not evaluated there
                continue
            assert np.hypot(mx - sx, my - sy) < 6.0, (w.name, (sx, sy), (mx, my))
            checked += 1
        assert checked >= 5, w.name
    # The waistband sits between the shoulders and the hip joints, centred on the body.
    lmk = dict(ga.landmarks)
    if kind != "skirt":
        lmk |= bottom_hips(ga.mask, lmk)
    dst, _src, _ = fit.bottom_targets(figure_pa, lmk, ga.length)
    hip_y = (figure_pa.point(P.L_HIP)[1] + figure_pa.point(P.R_HIP)[1]) / 2
    sh_y = (figure_pa.point(P.L_SHOULDER)[1] + figure_pa.point(P.R_SHOULDER)[1]) / 2
    waist_y = (dst["waist_l"][1] + dst["waist_r"][1]) / 2
    assert sh_y + 0.6 * (hip_y - sh_y) < waist_y < hip_y


def test_trousers_cover_the_legs_to_the_ankles(pipeline, figure, figure_pa):
    r = pipeline.run(figure, [GarmentInput(draw_garment("trousers", color=BROWN).image)])
    assert r.image.shape == figure.shape
    for side in ("l", "r"):
        pts = along_leg(figure_pa, side, np.linspace(0.1, 0.95, 12))
        d = lab_distance(r.image[pts[:, 1], pts[:, 0]], BROWN)
        assert np.median(d) < 12, d
    # Face and shoes are the photo's own pixels.
    assert np.array_equal(r.image[figure_pa.face], figure[figure_pa.face])
    for heel, toe in ((P.L_HEEL, P.L_FOOT), (P.R_HEEL, P.R_FOOT)):
        mid = np.round((figure_pa.point(heel) + figure_pa.point(toe)) / 2).astype(int)
        assert np.array_equal(r.image[mid[1], mid[0]], figure[mid[1], mid[0]])
    # The shirt (not replaced) is untouched above the waist.
    chest = np.round(figure_pa.point(P.L_SHOULDER) * 0.5 + figure_pa.point(P.R_HIP) * 0.5)
    x, y = chest.astype(int)
    assert (
        np.abs(
            r.image[y - 5 : y + 5, x - 5 : x + 5].astype(int) - figure[y - 5 : y + 5, x - 5 : x + 5]
        ).max()
        < 3
    )


def test_shorts_bare_the_lower_legs(pipeline, figure, figure_pa):
    r = pipeline.run(figure, [GarmentInput(draw_garment("shorts", color=GREEN).image)])
    thigh = along_leg(figure_pa, "l", [0.15, 0.25])
    assert np.median(lab_distance(r.image[thigh[:, 1], thigh[:, 0]], GREEN)) < 12
    shin = np.concatenate([along_leg(figure_pa, s, np.linspace(0.65, 0.9, 6)) for s in "lr"])
    shin_px = r.image[shin[:, 1], shin[:, 0]]
    # Skin, not the old jeans: warm (red above blue) and far from the jeans' colour.
    assert (shin_px[:, 0].astype(int) - shin_px[:, 2] > 30).all(), shin_px
    assert np.median(lab_distance(shin_px, JEANS)) > 25


def test_outfit_tuck_puts_the_band_over_the_top(pipeline, figure, figure_pa):
    top = GarmentInput(draw_garment("tshirt", color=RED).image)
    bottom = GarmentInput(draw_garment("trousers", color=BROWN).image)
    untucked = pipeline.run(figure, [top, bottom], TryOnOptions(tuck="untucked", refine=False))
    tucked = pipeline.run(figure, [top, bottom], TryOnOptions(tuck="tucked", refine=False))
    hip = (figure_pa.point(P.L_HIP) + figure_pa.point(P.R_HIP)) / 2
    sh = (figure_pa.point(P.L_SHOULDER) + figure_pa.point(P.R_SHOULDER)) / 2
    xs = np.arange(int(hip[0]) - 20, int(hip[0]) + 20)

    def last_row(img: np.ndarray, colour) -> int:
        """The lowest row at the body's centre line that shows ``colour``."""
        rows = [y for y in range(int(sh[1]), int(hip[1] + 60))
                if np.median(lab_distance(img[y, xs], colour)) < 12]  # fmt: skip
        return max(rows)

    band_top = min(
        y for y in range(int(sh[1]), int(hip[1] + 60))
        if np.median(lab_distance(tucked.image[y, xs], BROWN)) < 12
    )  # fmt: skip
    # Tucked: the tee ends at the band; untucked: it hangs over the band, lower down.
    assert last_row(tucked.image, RED) <= band_top + 2
    assert last_row(untucked.image, RED) >= band_top + 5
    # Both garments show in both: the chest is the tee, the knees the trousers.
    for r in (untucked, tucked):
        cy = int(sh[1] + 0.3 * (hip[1] - sh[1]))
        assert np.median(lab_distance(r.image[cy, xs], RED)) < 12
        knee = along_leg(figure_pa, "r", [0.5])[0]
        assert lab_distance(r.image[knee[1], knee[0]][None], BROWN)[0] < 12
        assert lab_distance(r.image[cy, xs], SHIRT).min() > 20  # old shirt gone from the chest


def test_a_dress_replaces_shirt_and_jeans(pipeline, figure, figure_pa):
    r = pipeline.run(figure, [GarmentInput(draw_garment("dress", color=GREEN, seed=1).image)])
    hip = (figure_pa.point(P.L_HIP) + figure_pa.point(P.R_HIP)) / 2
    assert lab_distance(r.image[int(hip[1]), int(hip[0])][None], GREEN)[0] < 12


def test_a_bottom_on_a_photo_that_ends_above_the_hips_is_refused(pipeline):
    with pytest.raises(InvalidInputError) as ei:
        pipeline.run(data.astronaut(), [GarmentInput(draw_garment("trousers").image)])
    assert ei.value.reason == "POSE_UNSUPPORTED"
    assert ei.value.field == "person"
    assert "hips" in str(ei.value)


def test_the_inner_back_of_the_collar_shows_beside_the_neck_not_over_it(
    pipeline, figure, figure_pa
):
    from services.tryon.geometric import INSIDE_SHADE

    r = pipeline.run(figure, [GarmentInput(draw_garment("tshirt", color=GREEN).image)])
    ls, rs = figure_pa.point(P.L_SHOULDER), figure_pa.point(P.R_SHOULDER)
    mid = (ls + rs) / 2
    sw = float(np.linalg.norm(ls - rs))
    inner = np.round(np.array(GREEN) * INSIDE_SHADE)
    # Just above the shoulder line, beside the neck: the shaded inside of the garment.
    y = int(mid[1] - 0.06 * sw)
    found = [x for x in range(int(mid[0] - 0.4 * sw), int(mid[0] + 0.4 * sw))
             if np.abs(r.image[y, x].astype(int) - inner).max() < 25]  # fmt: skip
    assert any(x < mid[0] - 0.15 * sw for x in found) and any(x > mid[0] + 0.15 * sw for x in found)
    # The neck itself (its centre line, the same height) stays skin, in front of the collar.
    assert not any(abs(x - mid[0]) < 0.08 * sw for x in found)
    assert r.image[y, int(mid[0])][0] > r.image[y, int(mid[0])][2] + 30  # warm: skin
