"""The last check before a still is returned (:mod:`services.tryon.placement`): garments
where their category belongs, sleeves along their arms; on the real astronaut photo."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from services.common.analysis.garment import analyze_garment
from services.common.analysis.person import PersonAnalyzer
from services.common.errors import InvalidInputError
from services.tryon import geometric
from services.tryon import placement as PM
from services.tryon.flatlays import draw_garment


@pytest.fixture(scope="module")
def dressed():
    analyzer = PersonAnalyzer()
    pa = analyzer.analyze(data.astronaut())
    analyzer.close()
    ga = analyze_garment(draw_garment("tshirt", size=(384, 384)).image)
    lmk = {k: np.asarray(v, np.float64) for k, v in ga.landmarks.items()}
    layers, _ = geometric.dress_top(pa, ga.rgba, ga.mask, lmk, ga.sleeve)
    return pa, {ly.name: ly.alpha for ly in layers}


def test_a_well_fitted_tee_passes(dressed):
    pa, parts = dressed
    PM.check_placement(pa, "top", parts["torso"], 0)
    PM.check_sleeves(pa, {"l": parts["sleeve_l"], "r": parts["sleeve_r"]}, 0)
    assert PM.placement(pa, "top", parts["torso"])["in_band"] > 0.95
    assert PM.sleeve_on_arm(pa, "l", parts["sleeve_l"]) > 0.95


def test_a_panel_out_of_its_band_is_refused(dressed):
    pa, parts = dressed
    shoulder_y, hip_y, _ = PM.body_lines(pa)
    # The same panel dropped by a torso length: over the hips, where no top belongs.
    dropped = np.roll(parts["torso"], int(hip_y - shoulder_y), axis=0)
    dropped[: int(hip_y - shoulder_y)] = 0
    with pytest.raises(InvalidInputError) as err:
        PM.check_placement(pa, "top", dropped, 1)
    assert err.value.reason == "GARMENT_FIT_FAILED" and err.value.field == "garments[1]"
    assert "chest" in err.value.message


def test_a_sleeve_away_from_its_arm_is_refused(dressed):
    pa, parts = dressed
    # The image-left sleeve moved onto the other side of the body.
    shift = int(pa.measurements.shoulder_width)
    flung = np.roll(parts["sleeve_l"], shift, axis=1)
    assert PM.sleeve_on_arm(pa, "l", flung) < PM.MIN_ON_ARM
    with pytest.raises(InvalidInputError) as err:
        PM.check_sleeves(pa, {"l": flung}, 0)
    assert err.value.reason == "GARMENT_FIT_FAILED" and "arm" in err.value.message
