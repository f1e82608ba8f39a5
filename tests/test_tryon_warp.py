"""Thin-plate-spline warps, the fit and the composite of the geometric try-on backend."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from services.common.analysis import person as P
from services.tryon.composite import composite
from services.tryon.geometric import dress_top
from services.tryon.warp import ThinPlateSpline, warp_part


def test_tps_interpolates_controls_and_reproduces_affine():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (8, 2))
    dst = src + rng.normal(0, 5, (8, 2))
    assert np.abs(ThinPlateSpline(src, dst)(src) - dst).max() < 1e-6
    a = np.array([[1.2, 0.3], [-0.1, 0.9]])
    tps = ThinPlateSpline(src, src @ a.T + [7, -3])
    q = rng.uniform(0, 100, (20, 2))
    assert np.abs(tps(q) - (q @ a.T + [7, -3])).max() < 1e-6  # affine maps need no bending
    with pytest.raises(ValueError):
        ThinPlateSpline(np.zeros((3, 2)), np.zeros((3, 2)))  # coincident points


def test_warp_moves_a_landmark_onto_its_target():
    rgba = np.zeros((200, 200, 4), np.uint8)
    rgba[40:160, 40:160] = (200, 30, 30, 255)
    rgba[95:105, 115:125, :3] = (0, 255, 0)  # a marker around (120, 100)
    mask = rgba[..., 3].astype(np.float32) / 255
    src = np.array([[40, 40], [160, 40], [40, 160], [160, 160], [120, 100]], float)
    dst = np.array([[100, 80], [260, 90], [90, 260], [250, 250], [230, 140]], float)
    part = warp_part(rgba, mask, src, dst, (320, 320))
    green = (part.rgb[..., 1] > 200) & (part.rgb[..., 0] < 60) & (part.alpha > 0.5)
    ys, xs = np.nonzero(green)
    assert abs(xs.mean() - 230) < 3 and abs(ys.mean() - 140) < 3
    for x, y in dst[:4]:  # corners land on their targets
        assert part.alpha[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4].max() > 0.2


def drawn_tee(colour=(30, 90, 200)) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A short-sleeved tee on white with its landmarks known by construction."""
    lm = {
        "neck_l": (250, 100), "neck_r": (350, 100), "neck_front": (300, 140),
        "shoulder_l": (190, 115), "shoulder_r": (410, 115),
        "armpit_l": (200, 220), "armpit_r": (400, 220),
        "hem_l": (205, 520), "hem_r": (395, 520),
        "cuff_l_top": (110, 230), "cuff_l_bottom": (160, 265),
        "cuff_r_top": (490, 230), "cuff_r_bottom": (440, 265),
    }  # fmt: skip
    order = ["neck_l", "shoulder_l", "cuff_l_top", "cuff_l_bottom", "armpit_l", "hem_l", "hem_r",
             "armpit_r", "cuff_r_bottom", "cuff_r_top", "shoulder_r", "neck_r", "neck_front"]  # fmt: skip
    m = np.zeros((600, 600), np.uint8)
    cv2.fillPoly(m, [np.array([lm[k] for k in order], np.int32)], 1)
    rgba = np.zeros((600, 600, 4), np.uint8)
    rgba[m > 0] = (*colour, 255)
    return rgba, m.astype(np.float32), {k: np.array(v, float) for k, v in lm.items()}


@pytest.fixture(scope="module")
def astronaut_result():
    analyzer = P.PersonAnalyzer()
    photo = data.astronaut()
    pa = analyzer.analyze(photo)
    analyzer.close()
    rgba, mask, lm = drawn_tee()
    layers, warps = dress_top(pa, rgba, mask, lm)
    return photo, pa, composite(photo, pa, layers), warps


def test_real_photo_keeps_size_and_face_and_wears_the_colour(astronaut_result):
    photo, pa, res, _warps = astronaut_result
    assert res.image.shape == photo.shape
    assert np.array_equal(res.image[pa.face], photo[pa.face])  # face pixels unchanged
    assert np.array_equal(res.image[pa.hair], photo[pa.hair])
    # The garment's colour covers the torso: most of the chest is blue now.
    ls, rs = pa.point(P.L_SHOULDER), pa.point(P.R_SHOULDER)
    mid = (ls + rs) / 2
    x0, x1 = (
        int(mid[0] - 0.25 * pa.measurements.shoulder_width),
        int(mid[0] + 0.25 * pa.measurements.shoulder_width),
    )
    y0 = int(mid[1] + 0.15 * pa.measurements.torso_length)
    y1 = min(photo.shape[0], int(mid[1] + 0.8 * pa.measurements.torso_length))
    chest = res.image[y0:y1, x0:x1].reshape(-1, 3).astype(int)
    blue = (chest[:, 2] > chest[:, 0] + 60) & (chest[:, 2] > chest[:, 1] + 30)
    assert blue.mean() > 0.9
    assert (res.garment_alpha[y0:y1, x0:x1] > 0.9).mean() > 0.9
    # The background far from the person is untouched.
    assert np.array_equal(res.image[:40, :40], photo[:40, :40])


def test_sleeves_follow_the_arms(astronaut_result):
    _photo, pa, _res, warps = astronaut_result
    sleeve = next(w for w in warps if w.name == "sleeve_l")  # image-left: the person's right arm
    ys, xs = np.nonzero(sleeve.warped.alpha > 0.5)
    shoulder, elbow = pa.point(P.R_SHOULDER), pa.point(P.R_ELBOW)
    centroid = np.array([xs.mean(), ys.mean()])
    # The short sleeve sits on the upper arm: between shoulder and elbow, near the bone.
    t = np.dot(centroid - shoulder, elbow - shoulder) / np.dot(elbow - shoulder, elbow - shoulder)
    assert 0.0 < t < 0.8
    # Every control point of every part lands where the fit asked.
    for w in warps:
        for x, y in w.dst:
            if 0 <= x < pa.size[1] and 0 <= y < pa.size[0]:
                win = w.warped.alpha[
                    max(0, int(y) - 4) : int(y) + 5, max(0, int(x) - 4) : int(x) + 5
                ]
                assert win.max() > 0.1, (w.name, x, y)
