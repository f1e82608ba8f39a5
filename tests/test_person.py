"""Person analysis on the real photos that ship in installed packages, and every refusal
reason produced by an input that should produce it."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from PIL import Image
from skimage import data

from services.common.analysis import person as P
from services.common.errors import InvalidInputError


@pytest.fixture(scope="module")
def analyzer():
    a = P.PersonAnalyzer()
    yield a
    a.close()


def hopper() -> np.ndarray:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module", params=["astronaut", "grace_hopper"])
def analysed(request, analyzer):
    rgb = data.astronaut() if request.param == "astronaut" else hopper()
    return rgb, analyzer.analyze(rgb)


def test_upper_body_photo_is_understood(analysed):
    rgb, pa = analysed
    h, w = rgb.shape[:2]
    assert pa.size == (h, w) and pa.framing == "half" and pa.facing == "front"
    assert pa.persons == 1 and pa.warnings == []
    nose = pa.point(P.NOSE).astype(int)
    assert pa.face[nose[1], nose[0]]  # the face region covers the nose
    # The person's left shoulder is on the image's right for a front view.
    assert pa.point(P.L_SHOULDER)[0] > pa.point(P.R_SHOULDER)[0]
    m = pa.measurements
    assert 0.25 * w < m.shoulder_width < 0.9 * w
    assert 0.5 * m.shoulder_width < m.chest_width < 1.3 * m.shoulder_width
    assert m.torso_length > 0.8 * m.shoulder_width
    assert m.hip_width == 0 and m.leg_length == 0  # out of frame: not guessed


def test_regions_are_where_they_belong(analysed):
    rgb, pa = analysed
    chest = (
        (pa.point(P.L_SHOULDER) + pa.point(P.R_SHOULDER)) / 2
        + [0, 0.3 * pa.measurements.torso_length]
    ).astype(int)
    x, y = chest
    patch = (slice(y - 5, y + 5), slice(x - 5, x + 5))
    assert pa.upper_clothes[patch].mean() > 0.9  # the chest is clothed
    assert not pa.upper_clothes[pa.face].any() and not pa.skin[pa.face].any()
    assert not (pa.upper_clothes & pa.hair).any()
    # Hair sits above the eyes; the face is mostly below the hairline.
    eyes_y = (pa.point(P.L_EYE)[1] + pa.point(P.R_EYE)[1]) / 2
    if pa.hair.any():
        assert np.nonzero(pa.hair)[0].mean() < eyes_y
    # Clothes stay inside the person.
    assert ((pa.mask > 0.5) | ~pa.upper_clothes).all()
    # Background far from the person is none of the regions.
    corner = (slice(0, 20), slice(0, 20))
    for m in (pa.face, pa.hair, pa.skin, pa.upper_clothes):
        assert not m[corner].any()


def test_no_person(analyzer):
    for img in (
        np.full((400, 300, 3), 255, np.uint8),
        np.random.default_rng(0).integers(0, 256, (400, 300, 3), dtype=np.uint8),
    ):
        with pytest.raises(InvalidInputError) as ei:
            analyzer.analyze(img)
        assert ei.value.reason == "NO_PERSON_DETECTED" and ei.value.field == "person"


def test_person_too_small(analyzer):
    canvas = np.full((1024, 1024, 3), 200, np.uint8)
    canvas[400:620, 400:620] = cv2.resize(data.astronaut(), (220, 220))
    with pytest.raises(InvalidInputError) as ei:
        analyzer.analyze(canvas)
    assert ei.value.reason == "PERSON_TOO_SMALL"
    assert "px" in ei.value.message


def test_multiple_persons(analyzer):
    two = np.concatenate([cv2.resize(data.astronaut(), (512, 600)), hopper()], axis=1)
    with pytest.raises(InvalidInputError) as ei:
        analyzer.analyze(two, selection=P.PersonSelection.REFUSE)
    assert ei.value.reason == "MULTIPLE_PERSONS" and ei.value.metadata["persons"] == "2"
    pa = analyzer.analyze(two)  # default: the most prominent, with a warning
    assert pa.persons == 2 and pa.warnings[0][0] == "MOST_PROMINENT_PERSON_CHOSEN"


@pytest.mark.parametrize("turns", [1, 2])
def test_person_not_upright(analyzer, turns):
    with pytest.raises(InvalidInputError) as ei:
        analyzer.analyze(np.ascontiguousarray(np.rot90(data.astronaut(), turns)))
    assert ei.value.reason == "POSE_UNSUPPORTED" and "upright" in ei.value.message


def _landmarks(ls_x, rs_x, nose_vis=1.0):
    lm = np.zeros((33, 4), np.float32)
    lm[:, 3] = 1.0
    lm[:, :2] = (200, 100)
    lm[P.L_SHOULDER, :2], lm[P.R_SHOULDER, :2] = (ls_x, 200), (rs_x, 200)
    lm[P.L_HIP, :2], lm[P.R_HIP, :2] = (ls_x - 20, 450), (rs_x + 20, 450)
    lm[P.NOSE, 3] = nose_vis
    return lm


def test_back_and_side_views_are_refused():
    size = (600, 400)
    P.check_pose(_landmarks(300, 100), size, face_found=True)  # front view passes
    with pytest.raises(InvalidInputError, match="from the back"):
        P.check_pose(_landmarks(100, 300, nose_vis=0.1), size, face_found=False)
    # A rear view whose head looks back over a shoulder shows a face, but its shoulders
    # and hips are both mirrored: still the back.
    with pytest.raises(InvalidInputError, match="from the back"):
        P.check_pose(_landmarks(100, 300), size, face_found=True)
    with pytest.raises(InvalidInputError, match="from the side"):
        lm = _landmarks(230, 170)
        lm[P.L_HIP, :2], lm[P.R_HIP, :2] = (220, 450), (180, 450)
        P.check_pose(lm, size, face_found=True)


def test_facing_from_nose_position():
    lm = _landmarks(300, 100)
    lm[P.NOSE, 0] = 200
    assert P.facing_of(lm) == "front"
    lm[P.NOSE, 0] = 280
    assert P.facing_of(lm) == "three_quarter_left"
    lm[P.NOSE, 0] = 120
    assert P.facing_of(lm) == "three_quarter_right"
