"""TryOnService over a real gRPC channel on a real photo: the still, its provenance, the
garment mask, and refusals with reasons."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from PIL import Image
from skimage import data

from drape.common.v1 import common_pb2
from drape.tryon.v1 import tryon_service_pb2 as pb
from drape.tryon.v1 import tryon_service_pb2_grpc as pb_grpc
from services.common.config import load_settings
from services.tryon.figures import draw_figure
from services.tryon.flatlays import draw_boundary_shift, draw_garment
from services.tryon.server import TryOnApp

from helpers import error_details, png, serving


@pytest.fixture(scope="module")
def stub():
    settings = load_settings(env={}, metrics_port=-1, grpc_address="127.0.0.1:0")
    with serving(TryOnApp(settings), settings=settings, ready_timeout=120) as (_s, channel):
        yield pb_grpc.TryOnServiceStub(channel)


def request(person: np.ndarray, *garments: np.ndarray, **kw) -> pb.TryOnRequest:
    return pb.TryOnRequest(
        person=common_pb2.Image(data=png(person)),
        garments=[pb.Garment(flat_lay=common_pb2.Image(data=png(g))) for g in garments],
        **kw,
    )


def test_tryon_on_a_real_photo(stub):
    photo = data.astronaut()
    tee = draw_garment("tshirt", "stripes", (30, 90, 200)).image
    resp = stub.TryOn(
        request(
            photo,
            tee,
            request_id="t-1",
            return_garment_mask=True,
            output_format=common_pb2.IMAGE_FORMAT_PNG,
            experiment=common_pb2.Experiment(experiment_id="tryon-ab", variant="control"),
        ),
        timeout=120,
    )
    out = np.asarray(Image.open(io.BytesIO(resp.image.data)).convert("RGB"))
    assert out.shape == photo.shape and (resp.image.width, resp.image.height) == (512, 512)
    assert resp.meta.backend == "geometric" and resp.meta.backend_version.startswith("geometric/")
    assert resp.meta.request_id == "t-1" and resp.meta.experiment.variant == "control"
    stages = [t.stage for t in resp.meta.timings]
    assert stages[:2] == ["decode", "person"] and "warp" in stages and stages[-1] == "encode"
    assert resp.garments[0].category == pb.GARMENT_CATEGORY_TOP
    assert resp.garments[0].sleeve_length == pb.SLEEVE_LENGTH_SHORT
    assert resp.person.framing == pb.BODY_FRAMING_HALF_BODY and resp.person.persons_detected == 1
    mask = np.asarray(Image.open(io.BytesIO(resp.garment_mask.data)).convert("L"))
    assert mask.shape == photo.shape[:2] and 0.1 < (mask > 128).mean() < 0.6
    # Where the mask says garment, the still is mostly the garment's blue or white stripes.
    px = out[mask > 200].astype(int)
    bluish_or_white = (px[:, 2] > px[:, 0] + 40) | (px.min(axis=1) > 170)
    assert bluish_or_white.mean() > 0.85


@pytest.mark.parametrize(
    "make, reason, field",
    [
        (
            lambda: pb.TryOnRequest(person=common_pb2.Image(data=png(data.astronaut()))),
            "NO_GARMENTS",
            "garments",
        ),
        (
            lambda: request(data.astronaut(), np.full((300, 300, 3), 255, np.uint8)),
            "GARMENT_NOT_FOUND",
            "garments[0].flat_lay",
        ),
        (
            lambda: request(np.full((300, 300, 3), 255, np.uint8), draw_garment("tshirt").image),
            "NO_PERSON_DETECTED",
            "person",
        ),
        (
            lambda: request(data.astronaut(), draw_garment("tshirt").image, backend="magic"),
            "BACKEND_UNAVAILABLE",
            "backend",
        ),
        (
            lambda: request(data.astronaut(), draw_garment("tshirt").image, quality=101),
            "OPTION_OUT_OF_RANGE",
            "quality",
        ),
        (
            lambda: pb.TryOnRequest(
                person=common_pb2.Image(data=b"junk"),
                garments=[
                    pb.Garment(flat_lay=common_pb2.Image(data=png(draw_garment("tank").image)))
                ],
            ),
            "IMAGE_UNRECOGNIZED",
            "person.data",
        ),
        (
            lambda: request(data.astronaut(), *[draw_garment("tshirt").image] * 3),
            "TOO_MANY_GARMENTS",
            "garments",
        ),
        (
            lambda: request(
                data.astronaut(), draw_garment("tshirt").image, draw_garment("tank").image
            ),
            "GARMENT_CATEGORY_CONFLICT",
            "garments",
        ),
        (
            lambda: request(data.astronaut(), draw_garment("trousers").image),
            "POSE_UNSUPPORTED",
            "person",
        ),
        (
            # An outline on the top/dress boundary and no category hint.
            lambda: request(data.astronaut(), draw_boundary_shift()),
            "GARMENT_CATEGORY_UNCERTAIN",
            "garments[0].category",
        ),
        (
            # A crop top described as a dress: it would end at the ribs of a full body.
            lambda: pb.TryOnRequest(
                person=common_pb2.Image(data=png(draw_figure())),
                garments=[
                    pb.Garment(
                        flat_lay=common_pb2.Image(data=png(draw_garment("crop_top").image)),
                        category=pb.GARMENT_CATEGORY_DRESS,
                    )
                ],
            ),
            "GARMENT_FIT_FAILED",
            "garments[0]",
        ),
    ],
)
def test_refusals(stub, make, reason, field):
    with pytest.raises(grpc.RpcError) as ei:
        stub.TryOn(make(), timeout=120)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(ei.value) == (reason, field)
