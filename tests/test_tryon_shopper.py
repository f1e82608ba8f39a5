"""The shopper's side of a try-on: the old garment goes with no remnants, what the new
garment bares is drawn from the person's own skin, and hair and hands stay in front.

Inputs are the drawn full-body figure (:mod:`services.tryon.figures`, a real face on a
drawn body) changed in known places (a long sleeve, a tunic hem, long hair painted on), so
each assertion knows which pixels were the old garment, and garments drawn in code.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from services.common.analysis import person as P
from services.tryon.figures import SKIN, draw_figure
from services.tryon.flatlays import draw_garment
from services.tryon.pipeline import GarmentInput, TryOnOptions, TryOnPipeline

OLD = (150, 30, 45)  # the shopper's own top: burgundy, far from any skin tone
NEW = (30, 90, 200)  # the new garment: blue


@pytest.fixture(scope="module")
def analyzer():
    a = P.PersonAnalyzer()
    yield a
    a.close()


@pytest.fixture(scope="module")
def pipeline(analyzer):
    return TryOnPipeline(analyzer, refine_fn=None)


def _skin_like(rgb: np.ndarray) -> np.ndarray:
    """The figure's skin (SKIN, shaded 0.6..1.05): warm, R well above B, not burgundy."""
    px = rgb.reshape(-1, 3).astype(np.float32)
    tone = np.asarray(SKIN, np.float32)
    # Divide the brightness out: a shaded skin pixel is SKIN times a scalar.
    k = (px @ tone) / float(tone @ tone)
    off = np.linalg.norm(px - k[:, None] * tone, axis=1)
    return ((off < 18) & (k > 0.5) & (k < 1.15)).reshape(rgb.shape[:-1])


def _old_like(rgb: np.ndarray) -> np.ndarray:
    px = rgb.reshape(-1, 3).astype(np.float32)
    tone = np.asarray(OLD, np.float32)
    k = (px @ tone) / float(tone @ tone)
    off = np.linalg.norm(px - k[:, None] * tone, axis=1)
    return ((off < 25) & (k > 0.5)).reshape(rgb.shape[:-1])


def _bone(pa: P.PersonAnalysis, a: int, b: int, t0: float, t1: float, width: float):
    """Pixels within ``width`` of the part of bone a-b between fractions ``t0`` and ``t1``."""
    m = np.zeros(pa.size, np.uint8)
    pa_, pb = pa.point(a), pa.point(b)
    p0, p1 = pa_ + t0 * (pb - pa_), pa_ + t1 * (pb - pa_)
    cv2.line(m, tuple(np.round(p0).astype(int)), tuple(np.round(p1).astype(int)), 1, int(width))
    return m > 0


@pytest.fixture(scope="module")
def long_sleeved(analyzer):
    """The figure in a burgundy top whose sleeves run to the wrists: its bare forearms are
    recoloured burgundy (keeping their shading), so we know every old-sleeve pixel."""
    img = draw_figure(top=OLD, seed=1)
    pa = analyzer.analyze(img)
    sw = pa.measurements.shoulder_width
    sleeve = np.zeros(pa.size, bool)
    for e, w in ((P.L_ELBOW, P.L_WRIST), (P.R_ELBOW, P.R_WRIST)):
        sleeve |= _bone(pa, e, w, -0.1, 1.0, 0.32 * sw)
    sleeve &= _skin_like(img)
    out = img.astype(np.float32)
    # Smooth cloth (no grain): whatever grain the bared arm gets is the skin's, not the
    # old sleeve's showing through the shading.
    smooth = cv2.GaussianBlur(out, (0, 0), 3.0)
    lum = smooth[sleeve] @ np.asarray(SKIN, np.float32) / float(np.dot(SKIN, SKIN))
    out[sleeve] = lum[:, None] * np.asarray(OLD, np.float32)
    photo = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return photo, sleeve, analyzer.analyze(photo)


def test_long_sleeve_is_upper_clothes_even_below_the_hip_line(long_sleeved):
    photo, sleeve, pa = long_sleeved
    hip_y = (pa.point(P.L_HIP)[1] + pa.point(P.R_HIP)[1]) / 2
    rows = np.arange(photo.shape[0])[:, None]
    hands = pa.hands["left"] | pa.hands["right"]
    low = sleeve & (rows > hip_y + 2) & ~hands  # the cuff's rim at the hand is the hand's
    assert low.sum() > 50  # the forearms reach past the hip line on this figure
    assert pa.upper_clothes[sleeve & ~hands].mean() > 0.9
    assert pa.upper_clothes[low].mean() > 0.9  # the cuffs below the hip line too
    assert pa.lower_clothes[low].mean() < 0.1
    # The jeans beside the hands stay lower clothes (a sleeve is the top's colour).
    jeans = pa.lower_clothes & (rows > hip_y + 0.2 * pa.measurements.torso_length)
    assert jeans.sum() > 1000


def test_old_long_sleeve_under_a_new_short_sleeve_becomes_skin(long_sleeved, pipeline):
    photo, sleeve, pa = long_sleeved
    tee = draw_garment("tshirt", color=NEW, seed=0)
    res = pipeline.run(photo, [GarmentInput(tee.image)], TryOnOptions(refine=False))
    bare = sleeve & (res.garment_alpha < 0.05)
    bare = cv2.erode(bare.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert bare.sum() > 500
    out = res.image[bare]
    # No old sleeve left: the forearms are skin now, and not burgundy.
    assert _skin_like(out[None])[0].mean() > 0.9
    assert _old_like(out[None])[0].mean() < 0.02
    # Drawn from the person's own skin: the tone of the visible hands (the figure's skin).
    tone = np.median(out.astype(np.float32), axis=0)
    hands = (pa.hands["left"] | pa.hands["right"]) & _skin_like(photo)
    ref = np.median(photo[hands].astype(np.float32), axis=0)
    assert np.abs(tone - ref).max() < 30


def test_bared_skin_has_the_photo_s_texture_not_a_flat_fill(long_sleeved, pipeline):
    photo, sleeve, pa = long_sleeved
    tee = draw_garment("tshirt", color=NEW, seed=0)
    res = pipeline.run(photo, [GarmentInput(tee.image)], TryOnOptions(refine=False))
    bare = cv2.erode((sleeve & (res.garment_alpha < 0.05)).astype(np.uint8), np.ones((9, 9)))
    bare = bare > 0

    def detail(img: np.ndarray, where: np.ndarray) -> float:
        lum = img.astype(np.float32).mean(axis=-1)
        # Median absolute fine detail: grain, robust to the few edges a fill has.
        return float(np.median(np.abs(lum - cv2.GaussianBlur(lum, (0, 0), 1.0))[where]))

    visible = cv2.erode(pa.skin.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert visible.sum() > 500
    # The figure's skin carries sensor grain; a flat fill (tone x smooth shading) has next
    # to none. The filled forearm carries grain of the same order as the real skin.
    assert detail(res.image, bare) > 0.5 * detail(photo, visible)


@pytest.fixture(scope="module")
def tunic(analyzer):
    """The figure in a burgundy top long enough to end below the hip line, over jeans."""
    img = draw_figure(top=OLD, seed=2)
    pa = analyzer.analyze(img)
    hip_y = (pa.point(P.L_HIP)[1] + pa.point(P.R_HIP)[1]) / 2
    cx = (pa.point(P.L_HIP)[0] + pa.point(P.R_HIP)[0]) / 2
    sw = pa.measurements.shoulder_width
    hem = np.zeros(pa.size, bool)
    y0, y1 = int(hip_y - 0.25 * sw), int(hip_y + 0.18 * sw)
    hem[y0:y1, int(cx - 0.5 * sw) : int(cx + 0.5 * sw)] = True
    # Only over the jeans (the figure's lower body), not the hands or the backdrop.
    jeans = (pa.lower_clothes | pa.upper_clothes) & ~_skin_like(img)
    hem &= jeans & ~(pa.arms["left"] | pa.arms["right"])
    out = img.copy()
    shade = img[hem].astype(np.float32).mean(axis=-1, keepdims=True) / 80.0
    out[hem] = np.clip(shade * np.asarray(OLD, np.float32), 0, 255).astype(np.uint8)
    return out, hem, analyzer.analyze(out)


def test_old_hem_below_a_new_cropped_top_goes(tunic, pipeline):
    photo, hem, pa = tunic
    hip_y = (pa.point(P.L_HIP)[1] + pa.point(P.R_HIP)[1]) / 2
    rows = np.arange(photo.shape[0])[:, None]
    assert (hem & (rows > hip_y + 2)).sum() > 200
    crop = draw_garment("crop_top", color=NEW, seed=0)
    res = pipeline.run(
        photo, [GarmentInput(crop.image, category="top")], TryOnOptions(refine=False)
    )
    # Everything of the old top that the new one does not cover is gone: skin (a bare
    # midriff) or what was under it, never burgundy.
    old_anywhere = _old_like(photo) & (pa.mask > 0.5)
    left = old_anywhere & (res.garment_alpha < 0.05)
    assert old_anywhere.sum() > 5000
    assert _old_like(res.image[left][None])[0].mean() < 0.03


@pytest.fixture(scope="module")
def long_hair(analyzer):
    """The figure with two locks of its own hair colour painted from the hair beside the
    face down over the shoulders onto the chest."""
    img = draw_figure(top=(40, 140, 90), seed=3)  # a green top: not hair-coloured
    pa = analyzer.analyze(img)
    assert pa.hair.sum() > 100
    colour = np.median(img[pa.hair].astype(np.float32), axis=0)
    ys, xs = np.nonzero(pa.hair)
    face_x = np.nonzero(pa.face)[1].mean()
    sh_y = min(pa.point(P.L_SHOULDER)[1], pa.point(P.R_SHOULDER)[1])
    sw = pa.measurements.shoulder_width
    locks = np.zeros(pa.size, np.uint8)
    for side in (-1, 1):
        sel = (xs - face_x) * side > 0
        i = np.argmax(np.where(sel, ys, -1))  # the lowest hair pixel on this side
        top = (int(xs[i]), int(ys[i]) - 3)
        bottom = (int(xs[i] + side * 0.1 * sw), int(sh_y + 0.45 * sw))
        cv2.line(locks, top, bottom, 1, max(6, int(0.1 * sw)))
    locks = locks > 0
    rng = np.random.default_rng(0)
    out = img.astype(np.float32)
    out[locks] = colour + rng.normal(0, 4, (int(locks.sum()), 3))
    photo = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return photo, locks & (np.arange(pa.size[0])[:, None] > sh_y), analyzer.analyze(photo)


def test_long_hair_over_the_shoulders_stays_in_front(long_hair, pipeline):
    photo, locks_low, pa = long_hair
    assert locks_low.sum() > 200
    assert pa.hair[locks_low].mean() > 0.8  # found as hair below the shoulder line
    tee = draw_garment("tshirt", color=NEW, seed=0)
    res = pipeline.run(photo, [GarmentInput(tee.image)], TryOnOptions(refine=False))
    # The new garment is around the locks, and the locks are the photo's own pixels.
    ring = cv2.dilate(locks_low.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    assert (res.garment_alpha[ring & ~locks_low] > 0.5).mean() > 0.3
    inner = cv2.erode(locks_low.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert np.array_equal(res.image[pa.hair], photo[pa.hair])
    assert (res.image[inner] == photo[inner]).all(axis=-1).mean() > 0.9


def test_hair_and_hands_unchanged_on_a_real_photo(analyzer, pipeline):
    photo = data.astronaut()
    pa = analyzer.analyze(photo)
    tee = draw_garment("longsleeve", color=NEW, seed=0)
    res = pipeline.run(photo, [GarmentInput(tee.image)], TryOnOptions(refine=False))
    for mask in (pa.hair, pa.face, pa.hands["left"] | pa.hands["right"]):
        assert np.array_equal(res.image[mask], photo[mask])


def test_skin_is_found_on_a_photo_without_a_face(analyzer):
    """A shopper photo cropped at the chin (common on shop sites) has no face to learn the
    skin tone from: the palms seed it, so bare forearms are skin, not clothes to replace."""
    img = draw_figure(seed=4)
    pa = analyzer.analyze(img)
    lab = P._lab(img)
    person = pa.mask > 0.5
    no_face = np.zeros_like(person)
    assert not P._skin_mask(lab, no_face, person).any()  # nothing to learn from
    seed = P._hand_seed(lab, pa.landmarks, person, pa.size)
    assert seed.sum() >= 30
    skin = P._skin_mask(lab, no_face, person, seed)
    forearms = np.zeros(pa.size, bool)
    sw = pa.measurements.shoulder_width
    for e, w in ((P.L_ELBOW, P.L_WRIST), (P.R_ELBOW, P.R_WRIST)):
        forearms |= _bone(pa, e, w, 0.3, 0.8, 0.15 * sw)
    forearms &= _skin_like(img)
    assert forearms.sum() > 300
    assert skin[forearms].mean() > 0.7
    assert skin[pa.lower_clothes].mean() < 0.02  # the jeans are not skin


def test_old_clothes_pattern_does_not_print_through_but_folds_do():
    from services.tryon.composite import shading_map

    h, w = 240, 240
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    region = np.zeros((h, w), bool)
    region[40:200, 40:200] = True
    # Plain grey cloth with soft folds: a few per cent of luminance, smooth.
    folds = 150 + 8 * np.sin(xx / 9.0)
    plain = np.repeat(np.clip(folds, 0, 255)[..., None], 3, axis=2).astype(np.uint8)
    # A sheer dark top over skin: hard bands of fabric and the skin showing through (close
    # enough in colour to count as one material).
    bands = np.where((yy // 10) % 2 == 0, 70, 110).astype(np.float32)
    sheer = np.repeat(bands[..., None], 3, axis=2).astype(np.uint8)
    fold_map = shading_map(plain, region, scale=200.0)[60:180, 60:180]
    pattern_map = shading_map(sheer, region, scale=200.0)[60:180, 60:180]
    assert fold_map.std() > 0.01  # folds carry over
    assert pattern_map.std() < 0.6 * fold_map.std() + 0.02  # a pattern is damped
    assert pattern_map.min() > 0.8 and pattern_map.max() < 1.1


def test_bared_limbs_are_one_tube_through_the_joints():
    # Shaded bone by bone, each bone's end cap left a disc's outline at the knee: along a line
    # beside the leg's axis the shade dipped there and recovered. As one tube whose radius
    # runs from thigh to shin, the shade along it changes one way only.
    from services.common.analysis import person as P
    from services.tryon.composite import _limb_roundness
    from services.tryon.figures import draw_figure

    analyzer = P.PersonAnalyzer()
    pa = analyzer.analyze(draw_figure())
    analyzer.close()
    sw = pa.measurements.shoulder_width
    shade = _limb_roundness(pa, pa.size, sw)
    hip, knee, ankle = (pa.point(i) for i in (P.L_HIP, P.L_KNEE, P.L_ANKLE))
    offset = 0.08 * sw  # beside the axis, inside the leg
    values = []
    for f in np.linspace(0.5, 1.5, 41):  # mid-thigh to mid-shin
        p = hip + f * (knee - hip) if f <= 1 else knee + (f - 1) * (ankle - knee)
        values.append(shade[int(round(p[1])), int(round(p[0] + offset))])
    steps = np.diff(values)
    assert np.all(steps <= 0.01) or np.all(steps >= -0.01), np.round(values, 3)
