"""Refiner ``diffusion`` backend with a tiny random-weight SD inpainting network: only the
seam band changes, face/hands and background come back bit-exactly; over RefinerService."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from drape.common.v1 import common_pb2
from drape.refiner.v1 import refiner_service_pb2 as pb
from drape.refiner.v1 import refiner_service_pb2_grpc as pb_grpc
from services.common.config import load_settings
from services.neural.configs import write_sd_inpainting_repository
from services.neural.repository import ModelRef, ModelRepositoryError, open_model
from services.refiner import diffusion as RD
from services.refiner.server import RefinerApp

from helpers import error_details, png, serving


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_sd_inpainting_repository(root, seed=2)
    return root


@pytest.fixture(scope="module")
def refiner(model_dir):
    model = open_model(model_dir, ModelRef("sd-inpainting", "1"), RD.KIND, RD.REQUIRED)
    net = RD.load(model, torch.device("cpu"), torch.float32)
    net.max_side = 96
    return net


def scene():
    """The astronaut with a flat blue square pasted on her chest, and a protected face."""
    person = data.astronaut()[::4, ::4].copy()  # 128 x 128
    comp = person.copy()
    alpha = np.zeros(person.shape[:2], np.float32)
    alpha[60:110, 30:90] = 1.0
    comp[alpha > 0] = (40, 60, 200)
    protect = np.zeros(person.shape[:2], bool)
    protect[10:45, 40:80] = True
    protect[100:112, 85:95] = True  # a "hand" over the garment's corner
    return person, comp, alpha, protect


def test_only_the_seam_band_changes(refiner):
    person, comp, alpha, protect = scene()
    result = refiner.refine(comp, person, alpha, protect, strength=1.0, seed=3)
    out = result.image
    band, _ = RD.seam_band(alpha, result.stats["band_px"])
    band &= ~protect
    outside = ~band & (alpha <= 0)
    assert np.array_equal(out[outside], person[outside])
    assert np.array_equal(out[protect], person[protect])
    interior = (alpha > 0) & ~band & ~protect
    assert np.array_equal(out[interior], comp[interior])
    on_contour = band & (np.abs(np.gradient(alpha)[0]) + np.abs(np.gradient(alpha)[1]) > 0)
    assert np.abs(out[on_contour].astype(int) - comp[on_contour]).mean() > 3
    assert result.stats["steps_run"] == round(20 * 0.3) and "inpaint" in result.stages
    again = refiner.refine(comp, person, alpha, protect, strength=1.0, seed=3)
    assert np.array_equal(again.image, out)


def test_strength_zero_only_restores(refiner):
    person, comp, alpha, protect = scene()
    result = refiner.refine(comp, person, alpha, protect, strength=0.0)
    assert result.stats["steps_run"] == 0 and "inpaint" not in result.stages
    garment = (alpha > 0) & ~protect
    assert np.array_equal(result.image[garment], comp[garment])
    assert np.array_equal(result.image[~garment], person[~garment])


def test_progress_and_cancellation_between_steps(refiner):
    from services.common.context import CancelToken
    from services.common.errors import CancelledError

    person, comp, alpha, protect = scene()
    token, seen = CancelToken(), []

    def progress(i: int, n: int) -> None:
        seen.append((i, n))
        if i == 2:
            token.cancel("test")

    with pytest.raises(CancelledError, match="denoising step 3/6"):
        refiner.refine(comp, person, alpha, protect, 1.0, 0, token, progress)
    assert seen == [(1, 6), (2, 6)]


@pytest.fixture(scope="module")
def stub(model_dir):
    settings = load_settings(env={}, metrics_port=-1, model_dir=str(model_dir),
                             refiner_request_backends="diffusion")  # fmt: skip
    with serving(RefinerApp(settings), settings=settings, ready_timeout=60) as (_s, channel):
        yield pb_grpc.RefinerServiceStub(channel)


def test_refine_over_grpc_with_the_diffusion_backend(stub):
    person, comp, alpha, protect = scene()
    mask = (alpha * 255).astype(np.uint8)
    resp = stub.Refine(
        pb.RefineRequest(
            composite=common_pb2.Image(data=png(comp)),
            original=common_pb2.Image(data=png(person)),
            garment_mask=common_pb2.Image(data=png(np.dstack([mask] * 3))),
            protect_mask=common_pb2.Image(
                data=png(np.dstack([protect.astype(np.uint8) * 255] * 3))
            ),
            backend="diffusion",
            seed=11,
        ),
        timeout=60,
    )
    assert resp.meta.backend == "diffusion"
    assert resp.meta.backend_version == "diffusion/sd-inpainting/1" and resp.seed == 11
    out = np.asarray(Image.open(io.BytesIO(resp.image.data)).convert("RGB"))
    assert out.shape == comp.shape
    assert np.array_equal(out[protect], person[protect])
    # The default is still classical.
    resp = stub.Refine(pb.RefineRequest(composite=common_pb2.Image(data=png(comp))), timeout=60)
    assert resp.meta.backend == "classical"
    with pytest.raises(grpc.RpcError) as err:
        stub.Refine(pb.RefineRequest(composite=common_pb2.Image(data=png(comp)), backend="gan"))
    assert error_details(err.value) == ("BACKEND_UNAVAILABLE", "backend")


def test_missing_prompt_embedding_keeps_the_refiner_not_serving(tmp_path, make_server):
    d = write_sd_inpainting_repository(tmp_path, seed=0)
    (d / RD.EMBEDS).unlink()
    settings = load_settings(env={}, model_dir=str(tmp_path), refiner_backend="diffusion")
    server, _ = make_server(RefinerApp(settings), wait_ready=False)
    assert not server.wait_ready(30)
    assert isinstance(server.load_error, ModelRepositoryError)
    assert str(d / RD.EMBEDS) in str(server.load_error)
