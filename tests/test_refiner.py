"""The classical refiner: exact restoration, bounded corrections, grain, seams, refusals,
and the RefinerService over gRPC."""

from __future__ import annotations

import io

import cv2
import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image
from skimage import data

from drape.common.v1 import common_pb2
from drape.refiner.v1 import refiner_service_pb2 as pb
from drape.refiner.v1 import refiner_service_pb2_grpc as pb_grpc
from services.common.errors import InvalidInputError
from services.refiner.classical import noise_sigma, refine

from helpers import png


def pasted(seed: int = 0):
    """The astronaut with a clean, flat red patch pasted on the torso."""
    person = data.astronaut()
    comp = person.copy()
    alpha = np.zeros(person.shape[:2], np.float32)
    alpha[280:480, 160:360] = 1.0
    comp[alpha > 0.5] = (200, 40, 40)
    protect = np.zeros(person.shape[:2], bool)
    protect[60:200, 180:300] = True  # the face
    return person, comp, alpha, protect


def test_restores_exactly_outside_the_garment_and_under_protect():
    person, comp, alpha, protect = pasted()
    comp[protect] = 0  # damage the face in the composite: it must come back
    out = refine(comp, person, alpha, protect).image
    assert np.array_equal(out[protect], person[protect])
    far = ~cv2.dilate((alpha > 0.01).astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    assert np.array_equal(out[far], person[far])


def test_strength_zero_only_restores():
    person, comp, alpha, protect = pasted()
    out = refine(comp, person, alpha, protect, strength=0.0).image
    inside = alpha > 0.5
    assert np.array_equal(out[inside], comp[inside])


def test_corrections_keep_the_garment_colour():
    from skimage.color import deltaE_ciede2000, rgb2lab

    person, comp, alpha, protect = pasted()
    res = refine(comp, person, alpha, protect, seed=1)
    inside = cv2.erode((alpha > 0.5).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    before = rgb2lab(comp[inside].reshape(-1, 1, 3).astype(np.float32) / 255).mean(axis=0)
    after = rgb2lab(res.image[inside].reshape(-1, 1, 3).astype(np.float32) / 255).mean(axis=0)
    assert float(deltaE_ciede2000(before, after).mean()) < 3.0
    for c in "rgb":
        assert 0.98 <= res.stats[f"wb_gain_{c}"] <= 1.02


def test_grain_is_matched():
    rng = np.random.default_rng(0)
    flat = np.clip(128 + rng.normal(0, 6, (256, 256)), 0, 255).astype(np.uint8)
    assert noise_sigma(flat) == pytest.approx(6, rel=0.5)
    person = np.dstack([flat] * 3)
    comp = person.copy()
    alpha = np.zeros((256, 256), np.float32)
    alpha[64:192, 64:192] = 1
    comp[alpha > 0.5] = 90  # a perfectly clean patch
    res = refine(comp, person, alpha, None, seed=3)
    assert res.stats["noise_added"] > 3
    patch = cv2.cvtColor(res.image, cv2.COLOR_RGB2GRAY)[80:176, 80:176]
    assert noise_sigma(patch) == pytest.approx(res.stats["noise_photo"], rel=0.5)


def test_seam_is_softened():
    person, comp, alpha, _ = pasted()
    out = refine(comp, person, alpha, None).image.astype(int)
    step_before = np.abs(np.diff(comp.astype(int)[380, 150:170, 0])).max()
    step_after = np.abs(np.diff(out[380, 150:170, 0])).max()
    assert step_after < step_before


@pytest.mark.parametrize(
    "kw, reason, field",
    [
        ({"garment_alpha": np.zeros((10, 10), np.float32)}, "MASK_SIZE_MISMATCH", "garment_mask"),
        ({"protect_mask": np.zeros((10, 10), bool)}, "MASK_SIZE_MISMATCH", "protect_mask"),
        ({"strength": 1.5}, "OPTION_OUT_OF_RANGE", "strength"),
        ({"person": np.zeros((10, 10, 3), np.uint8)}, "ORIGINAL_SIZE_MISMATCH", "original"),
    ],
)
def test_bad_inputs(kw, reason, field):
    person, comp, alpha, protect = pasted()
    args = {
        "composite": comp,
        "person": person,
        "garment_alpha": alpha,
        "protect_mask": protect,
        **kw,
    }
    with pytest.raises(InvalidInputError) as ei:
        refine(**args)
    assert (ei.value.reason, ei.value.field) == (reason, field)


def test_refiner_service(make_server):
    from services.common.config import load_settings
    from services.refiner.server import RefinerApp

    _server, channel = make_server(RefinerApp(load_settings(env={})))
    stub = pb_grpc.RefinerServiceStub(channel)
    person, comp, alpha, protect = pasted()
    mask = (alpha * 255).astype(np.uint8)
    resp = stub.Refine(
        pb.RefineRequest(
            composite=common_pb2.Image(data=png(comp)),
            original=common_pb2.Image(data=png(person)),
            garment_mask=common_pb2.Image(data=png(mask)),
            protect_mask=common_pb2.Image(data=png(protect.astype(np.uint8) * 255)),
            seed=7,
        ),
        timeout=30,
    )
    out = np.asarray(Image.open(io.BytesIO(resp.image.data)).convert("RGB"))
    assert out.shape == person.shape and resp.seed == 7 and resp.meta.backend == "classical"
    assert np.array_equal(out[protect], person[protect])
    with pytest.raises(grpc.RpcError) as ei:
        stub.Refine(
            pb.RefineRequest(
                composite=common_pb2.Image(data=png(comp)),
                garment_mask=common_pb2.Image(data=png(mask[:10, :10])),
            ),
            timeout=30,
        )
    info = error_details_pb2.ErrorInfo()
    assert (
        rpc_status.from_call(ei.value).details[0].Unpack(info)
        and info.reason == "MASK_SIZE_MISMATCH"
    )
    with pytest.raises(grpc.RpcError) as ei:
        stub.Refine(
            pb.RefineRequest(
                composite=common_pb2.Image(data=png(comp)),
                garment_mask=common_pb2.Image(data=png(np.zeros_like(mask))),
            ),
            timeout=30,
        )
    assert rpc_status.from_call(ei.value).details[0].Unpack(info) and info.reason == "MASK_EMPTY"
