"""Try-on ``diffusion`` backend (CatVTON design) end to end with a tiny random-weight network:
through TryOnService like the embedded default, and the pipeline's steps, progress,
cancellation and seeds."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from drape.common.v1 import common_pb2
from drape.tryon.v1 import tryon_service_pb2 as pb
from drape.tryon.v1 import tryon_service_pb2_grpc as pb_grpc
from services.common.config import load_settings
from services.common.context import CancelToken
from services.common.errors import CancelledError, InvalidInputError
from services.neural import catvton
from services.neural.configs import write_catvton_repository
from services.neural.repository import ModelRef, ModelRepositoryError, open_model
from services.tryon.diffusion import DiffusionParams, DiffusionTryOnPipeline, crop_box
from services.tryon.flatlays import draw_garment
from services.tryon.pipeline import GarmentInput
from services.tryon.server import TryOnApp

from helpers import error_details, png, serving

SIZE = {"tryon_diffusion_height": 64, "tryon_diffusion_width": 48}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_catvton_repository(root, seed=1)
    return root


@pytest.fixture(scope="module")
def stub(model_dir):
    """Deployment default geometric; requests may ask for diffusion (the allow-list)."""
    settings = load_settings(
        env={},
        metrics_port=-1,
        grpc_address="127.0.0.1:0",
        model_dir=str(model_dir),
        tryon_request_backends="diffusion",
        diffusion_steps=3,
        diffusion_max_steps=8,
        **SIZE,
    )
    with serving(TryOnApp(settings), settings=settings, ready_timeout=120) as (_s, channel):
        yield pb_grpc.TryOnServiceStub(channel)


def request(person, garment, **kw) -> pb.TryOnRequest:
    return pb.TryOnRequest(
        person=common_pb2.Image(data=png(person)),
        garments=[pb.Garment(flat_lay=common_pb2.Image(data=png(garment)))],
        **kw,
    )


def decode(image: common_pb2.Image, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image.data)).convert(mode))


def test_diffusion_still_over_grpc_keeps_everything_outside_the_mask(stub):
    photo = data.astronaut()
    tee = draw_garment("tshirt", "stripes", (30, 90, 200)).image
    resp = stub.TryOn(
        request(
            photo,
            tee,
            backend="diffusion",
            refine=False,
            return_garment_mask=True,
            diffusion=pb.DiffusionOptions(steps=2, guidance_scale=2.0, seed=7),
        ),
        timeout=120,
    )
    assert resp.meta.backend == "diffusion"
    assert resp.meta.backend_version == "diffusion/catvton/1"
    assert resp.diffusion_seed == 7 and not resp.refined
    out = decode(resp.image)
    assert out.shape == photo.shape and (resp.image.width, resp.image.height) == (512, 512)
    mask = decode(resp.garment_mask, "L")
    assert 0.05 < (mask > 0).mean() < 0.6
    # Untouched outside the painted region, bit for bit; repainted inside.
    assert np.array_equal(out[mask == 0], photo[mask == 0])
    inside = mask == 255
    assert np.abs(out[inside].astype(int) - photo[inside]).mean() > 10
    stages = [t.stage for t in resp.meta.timings]
    assert stages[:3] == ["decode", "person", "garment"] and "diffusion" in stages
    # The same seed gives the same still.
    again = stub.TryOn(
        request(photo, tee, backend="diffusion", refine=False,
                diffusion=pb.DiffusionOptions(steps=2, guidance_scale=2.0, seed=7)),
        timeout=120,
    )  # fmt: skip
    assert np.array_equal(decode(again.image), out)


def test_default_backend_stays_geometric_and_warns_about_diffusion_options(stub):
    resp = stub.TryOn(
        request(data.astronaut(), draw_garment("tshirt").image,
                diffusion=pb.DiffusionOptions(steps=3)),
        timeout=120,
    )  # fmt: skip
    assert resp.meta.backend == "geometric" and not resp.HasField("diffusion_seed")
    assert "DIFFUSION_OPTIONS_IGNORED" in [w.reason for w in resp.meta.warnings]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (pb.DiffusionOptions(steps=9), "diffusion.steps"),
        (pb.DiffusionOptions(steps=-1), "diffusion.steps"),
        (pb.DiffusionOptions(guidance_scale=31), "diffusion.guidance_scale"),
    ],
)
def test_diffusion_options_out_of_range(stub, options, field):
    with pytest.raises(grpc.RpcError) as err:
        stub.TryOn(
            request(data.astronaut(), draw_garment("tshirt").image, backend="diffusion",
                    diffusion=options),
            timeout=30,
        )  # fmt: skip
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value) == ("OPTION_OUT_OF_RANGE", field)


def test_backend_not_on_the_allow_list_is_refused(model_dir, make_server):
    settings = load_settings(env={}, model_dir=str(model_dir), tryon_backend="diffusion", **SIZE)
    _, channel = make_server(TryOnApp(settings), model_dir=str(model_dir))
    stub = pb_grpc.TryOnServiceStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        stub.TryOn(request(data.astronaut(), draw_garment("tshirt").image, backend="geometric"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err.value) == ("BACKEND_UNAVAILABLE", "backend")
    # Its default is diffusion: a request naming no backend gets it.
    resp = stub.TryOn(
        request(data.astronaut(), draw_garment("tank").image, refine=False,
                diffusion=pb.DiffusionOptions(steps=1)),
        timeout=120,
    )  # fmt: skip
    assert resp.meta.backend == "diffusion" and resp.HasField("diffusion_seed")


# ------------------------------------------------------------------------- the pipeline


@pytest.fixture(scope="module")
def pipeline(model_dir):
    from services.common.analysis.person import PersonAnalyzer

    model = open_model(model_dir, ModelRef("catvton", "1"), catvton.KIND, catvton.REQUIRED)
    net = catvton.load(model, torch.device("cpu"), torch.float32)
    pipe = DiffusionTryOnPipeline(PersonAnalyzer(), net, size=(64, 48), steps=4)
    yield pipe
    pipe.analyzer.close()


def test_progress_per_step_and_cancellation_between_steps(pipeline):
    seen: list[str] = []
    tee = [GarmentInput(draw_garment("tshirt").image)]
    result = pipeline.run(data.astronaut(), tee, progress=seen.append,
                          diffusion=DiffusionParams(steps=5, seed=1))  # fmt: skip
    steps = [s for s in seen if s.startswith("denoise")]
    assert steps == [f"denoise {i}/5" for i in range(1, 6)] and result.steps == 5
    assert seen.index("garment") < seen.index("denoise 1/5") < seen.index("paste")

    token = CancelToken()

    def cancel_after_two(stage: str) -> None:
        if stage == "denoise 2/5":
            token.cancel("test")

    with pytest.raises(CancelledError, match="denoising step 3/5"):
        pipeline.run(data.astronaut(), tee, token=token, progress=cancel_after_two,
                     diffusion=DiffusionParams(steps=5, seed=1))  # fmt: skip


def test_seed_and_guidance_change_the_result(pipeline):
    tee = [GarmentInput(draw_garment("tshirt").image)]
    a = pipeline.run(data.astronaut(), tee, diffusion=DiffusionParams(steps=2, seed=1))
    b = pipeline.run(data.astronaut(), tee, diffusion=DiffusionParams(steps=2, seed=2))
    c = pipeline.run(data.astronaut(), tee,
                     diffusion=DiffusionParams(steps=2, seed=1, guidance=1.0))  # fmt: skip
    assert a.seed == 1 and b.seed == 2
    assert not np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    # Face and hair are never repainted.
    keep = a.person.face | a.person.hair
    assert np.array_equal(a.image[keep], data.astronaut()[keep])


def test_the_garment_reaches_the_person_half_of_the_canvas(pipeline):
    """CatVTON has no garment encoder: the garment enters only through the latents
    concatenated with the person's. Two garments, same seed: the person half differs."""
    person, mask, garment = (torch.zeros(1, 3, 32, 24), torch.zeros(1, 1, 32, 24),
                             torch.zeros(1, 3, 32, 24))  # fmt: skip
    mask[..., 8:24, 4:20] = 1
    net = pipeline.net
    outs = [
        net.generate(person, mask, garment + v, 2, 1.0, torch.Generator().manual_seed(0))
        for v in (-0.8, 0.8)
    ]
    assert outs[0].shape == (1, 3, 32, 24)
    assert (outs[0] - outs[1]).abs().mean() > 1e-5


def test_attention_checkpoint_keys_are_checked(tmp_path, pipeline):
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from services.neural.configs import tiny_unet_config

    unet = UNet2DConditionModel(**tiny_unet_config())
    catvton.prepare_unet(unet)
    mods = catvton.attention_modules(unet)
    # Modules with 'attn1' in their name, processors included: 8 per attention layer.
    assert len(mods) % 8 == 0 and isinstance(mods[7], catvton.SelfAttention)
    full = {f"{i}.{n}": torch.ones_like(p) for i, m in enumerate(mods)
            for n, p in m.named_parameters()}  # fmt: skip
    save_file(full, str(tmp_path / "ok.safetensors"))
    assert catvton.load_attention(unet, tmp_path / "ok.safetensors") > 0
    assert torch.all(mods[0].to_q.weight == 1)
    # Every alias of one parameter left out ("0.to_v.weight" and "3.weight" are the same).
    gone = mods[0].to_v.weight
    partial = {f"{i}.{n}": torch.ones_like(p) for i, m in enumerate(mods)
               for n, p in m.named_parameters() if p is not gone}  # fmt: skip
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ModelRepositoryError, match="missing"):
        catvton.load_attention(unet, tmp_path / "partial.safetensors")
    save_file({"999.to_q.weight": torch.ones(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ModelRepositoryError, match="indexes no attn1 module"):
        catvton.load_attention(unet, tmp_path / "bad.safetensors")


def test_crop_box_has_the_working_aspect_and_holds_the_boxes():
    x0, y0, x1, y1 = crop_box([(100, 50, 300, 450), (120, 100, 280, 300)], 1024 / 768)
    assert abs((y1 - y0) / (x1 - x0) - 1024 / 768) < 0.01
    assert x0 <= 100 and y0 <= 50 and x1 >= 300 and y1 >= 450


def test_no_garment_is_refused_before_any_work(pipeline):
    with pytest.raises(InvalidInputError, match="at least one garment"):
        pipeline.run(data.astronaut(), [])
