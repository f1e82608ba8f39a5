"""ONNX export of each network (named inputs and outputs, dynamic shapes) and parity on ONNX
Runtime CPU against torch, within ``export.ATOL`` + ``export.RTOL * |torch|``; the ONNX
Runtime session factory and the ``onnxruntime`` runtime of the try-on backend."""

from __future__ import annotations

import onnx
import pytest
import torch

from services.common.errors import ConfigError
from services.neural import catvton, export
from services.neural import diffusion as D
from services.neural.configs import write_catvton_repository
from services.neural.pose_guider import PoseGuider, PoseGuiderConfig
from services.neural.repository import ModelRef, ModelRepositoryError, open_model
from services.neural.runtime import create_session, provider_list
from services.neural.sam import Sam, SamConfig, SamDecoder, prompt_arrays


def dims(path, name: str) -> list:
    model = onnx.load(str(path), load_external_data=False)
    vi = next(v for v in [*model.graph.input, *model.graph.output] if v.name == name)
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny CatVTON repository, exported by the real export code."""
    root = tmp_path_factory.mktemp("models")
    write_catvton_repository(root, seed=3)
    ref = ModelRef("catvton", "1")
    model = open_model(root, ref, catvton.KIND, catvton.REQUIRED)
    net = catvton.load(model, torch.device("cpu"), torch.float32)
    files = export.export_catvton(model.path, net, height=32, width=24)
    return root, net, files


def test_unet_step_parity_at_another_size_and_batch(exported):
    root, net, files = exported
    path = root / "catvton" / "1" / catvton.ONNX_UNET
    assert path in files
    assert dims(path, "sample") == ["batch", 9, "height", "width"]
    assert dims(path, "timestep") == ["batch"]
    assert dims(path, "noise_pred")[1] == 4
    session = create_session(path, ("cpu",))
    torch.manual_seed(0)
    # Exported at batch 2, 32x12 latents; checked at batch 3 and 16x20.
    inputs = (torch.randn(3, 9, 16, 20), torch.tensor([999.0, 500.0, 1.0]))
    errors = export.parity(catvton.CatVTONStep(net.unet), session, inputs, export.UNET_STEP)
    assert errors["noise_pred"] <= export.ATOL, errors


def test_vae_decoder_parity(exported):
    root, net, _ = exported
    path = root / "catvton" / "1" / catvton.ONNX_VAE_DECODER
    assert dims(path, "latents") == ["batch", 4, "height", "width"]
    session = create_session(path, ("cpu",))
    inputs = (torch.randn(1, 4, 10, 14),)
    errors = export.parity(D.VaeDecoder(net.vae), session, inputs, export.VAE_DECODER)
    assert errors["image"] <= export.ATOL, errors


def test_exported_graphs_are_in_the_manifest_and_verified(exported):
    root, _, _ = exported
    model = open_model(root, ModelRef("catvton", "1"), catvton.KIND, catvton.REQUIRED)
    assert model.has(catvton.ONNX_UNET) and model.has(catvton.ONNX_VAE_DECODER)


def test_onnxruntime_runtime_gives_the_torch_result(exported):
    root, net, _ = exported
    model = open_model(root, ModelRef("catvton", "1"), catvton.KIND, catvton.REQUIRED)
    ort_net = catvton.load(model, torch.device("cpu"), torch.float32, "onnxruntime", ("cpu",))
    assert isinstance(ort_net.step, D.OrtStep)
    person, garment = torch.rand(1, 3, 32, 24) * 2 - 1, torch.rand(1, 3, 32, 24) * 2 - 1
    mask = torch.zeros(1, 1, 32, 24)
    mask[..., 8:28, 4:20] = 1
    a, b = (
        n.generate(person, mask, garment, 3, 2.5, torch.Generator().manual_seed(5))
        for n in (net, ort_net)
    )
    assert (a - b).abs().max() < 1e-3


def test_pose_guider_parity(tmp_path):
    torch.manual_seed(0)
    guider = PoseGuider(PoseGuiderConfig(block_out_channels=(8, 16, 32), embedding_channels=32))
    torch.nn.init.normal_(guider.conv_out.weight, std=0.1)  # zero-initialised: make it matter
    path = tmp_path / "pose_guider.onnx"
    export.export(guider, (torch.rand(2, 3, 64, 48),), path, export.POSE_GUIDER)
    assert dims(path, "pose") == ["batch", 3, "height", "width"]
    inputs = (torch.rand(3, 3, 32, 40),)
    errors = export.parity(guider, create_session(path), inputs, export.POSE_GUIDER)
    assert errors["features"] <= export.ATOL, errors
    assert guider(inputs[0]).shape == (3, 32, 8, 10)


def test_sam_decoder_parity_with_any_number_of_points(tmp_path):
    torch.manual_seed(0)
    sam = Sam(SamConfig.tiny()).eval()
    emb = torch.randn(1, 32, 4, 4)
    coords, labels = prompt_arrays([[10, 20], [30, 31]], [1, 0], [[5, 5], [50, 60]], 1.0)
    path = tmp_path / "sam_decoder.onnx"
    decoder = SamDecoder(sam)
    export.export(decoder, (emb, coords, labels), path, export.SAM_DECODER)
    assert dims(path, "point_coords") == [1, "points", 2]
    assert dims(path, "low_res_masks") == [1, 4, 16, 16]
    session = create_session(path)
    for n_points in (1, 3, 6):
        pts = torch.rand(n_points, 2).numpy() * 60
        inputs = (emb, *prompt_arrays(pts, [1] * n_points, None, 1.0))
        errors = export.parity(decoder, session, inputs, export.SAM_DECODER)
        assert max(errors.values()) <= export.ATOL, (n_points, errors)


def test_provider_list_maps_names_and_refuses_what_the_build_lacks(tmp_path):
    providers = provider_list(
        ("tensorrt", "cuda", "cpu"),
        cache_dir=tmp_path,
        fp16=True,
        available=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert [p for p, _ in providers] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
    ]  # fmt: skip
    trt = providers[0][1]
    assert trt["trt_fp16_enable"] and trt["trt_engine_cache_path"] == str(tmp_path)
    assert trt["trt_timing_cache_enable"]
    with pytest.raises(ConfigError, match="cuda .* is not in this onnxruntime build") as err:
        provider_list(("cuda", "cpu"), available=["CPUExecutionProvider"])
    assert err.value.setting == "DRAPE_ORT_PROVIDERS"
    with pytest.raises(ConfigError, match="unknown execution provider 'rocm'"):
        provider_list(("rocm",))


def test_onnxruntime_runtime_without_exported_graphs_refuses_to_load(tmp_path):
    write_catvton_repository(tmp_path, seed=0, attention=False)
    model = open_model(tmp_path, ModelRef("catvton", "1"), catvton.KIND, catvton.REQUIRED)
    with pytest.raises(ModelRepositoryError, match="drape models export") as err:
        catvton.load(model, torch.device("cpu"), torch.float32, "onnxruntime")
    assert err.value.path == model.path / catvton.ONNX_UNET
