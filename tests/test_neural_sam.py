"""SAM garment masks: the network reads the released checkpoints' keys, is prompted by the
classical cut-out's box and points, and segments a flat-lay on a busy background (tiny
random-weight SAM: the code is real, the weights fake)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from services.common.config import load_settings
from services.common.errors import InvalidInputError
from services.neural import garment_sam
from services.neural.repository import ModelRef, ModelRepositoryError, open_model, write_manifest
from services.neural.sam import KIND, Sam, SamConfig, load_sam
from services.tryon.flatlays import draw_garment

# Names from the released sam_vit_b_01ec64.pth (one of each module kind).
OFFICIAL_KEYS = (
    "image_encoder.pos_embed",
    "image_encoder.patch_embed.proj.weight",
    "image_encoder.blocks.0.attn.rel_pos_h",
    "image_encoder.blocks.0.attn.qkv.weight",
    "image_encoder.blocks.0.mlp.lin1.weight",
    "image_encoder.neck.0.weight",
    "image_encoder.neck.3.bias",
    "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    "prompt_encoder.point_embeddings.3.weight",
    "prompt_encoder.not_a_point_embed.weight",
    "prompt_encoder.mask_downscaling.6.weight",
    "prompt_encoder.no_mask_embed.weight",
    "mask_decoder.iou_token.weight",
    "mask_decoder.mask_tokens.weight",
    "mask_decoder.transformer.layers.0.self_attn.q_proj.weight",
    "mask_decoder.transformer.layers.1.cross_attn_image_to_token.out_proj.bias",
    "mask_decoder.transformer.layers.0.norm4.weight",
    "mask_decoder.transformer.final_attn_token_to_image.v_proj.weight",
    "mask_decoder.transformer.norm_final_attn.weight",
    "mask_decoder.output_upscaling.3.weight",
    "mask_decoder.output_hypernetworks_mlps.3.layers.2.weight",
    "mask_decoder.iou_prediction_head.layers.2.bias",
)


def busy_flat_lay() -> np.ndarray:
    """A tee on a checkerboard table: the case the classical cut-out handles worst."""
    g = draw_garment("tshirt", "solid", (200, 40, 40)).image
    h, w = g.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    board = np.where(((yy // 24 + xx // 24) % 2)[..., None] == 0, 235, 205).astype(np.uint8)
    board = np.repeat(board, 3, axis=2)
    garment = (g[..., :3] < 250).any(axis=2)
    return np.where(garment[..., None], g[..., :3], board)


def test_vit_b_has_the_released_parameter_names_and_shapes():
    # Built on the meta device: the names and shapes without allocating 94 M parameters.
    with torch.device("meta"):
        sam = Sam(SamConfig.vit_b())
    state = sam.state_dict()
    assert set(OFFICIAL_KEYS) <= set(state)
    assert "pixel_mean" not in state  # a non-persistent buffer, as in the release
    assert tuple(state["image_encoder.pos_embed"].shape) == (1, 64, 64, 768)
    assert tuple(state["image_encoder.blocks.0.attn.rel_pos_h"].shape) == (27, 64)  # window 14
    assert tuple(state["image_encoder.blocks.2.attn.rel_pos_h"].shape) == (127, 64)  # global
    assert tuple(state["mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"].shape) == (128, 256)  # fmt: skip
    n_decoder = sum(v.numel() for k, v in state.items() if k.startswith("mask_decoder."))
    assert 4.0e6 < n_decoder < 4.1e6  # the paper's "~4M parameter" decoder


@pytest.fixture
def sam_dir(tmp_path):
    torch.manual_seed(0)
    d = tmp_path / "sam" / "1"
    d.mkdir(parents=True)
    sam = Sam(SamConfig.tiny())
    save_file(sam.state_dict(), str(d / "model.safetensors"))
    (d / "config.json").write_text(json.dumps({"variant": "tiny", "weights": "model.safetensors"}))
    write_manifest(d, "sam", "1", KIND)
    return tmp_path, sam


def test_checkpoint_loads_strictly_and_refuses_a_mismatch(sam_dir, tmp_path):
    root, sam = sam_dir
    loaded = load_sam(root / "sam" / "1")
    for k, v in sam.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    state = sam.state_dict()
    state.pop("mask_decoder.iou_token.weight")
    save_file(state, str(root / "sam" / "1" / "model.safetensors"))
    with pytest.raises(ModelRepositoryError, match="iou_token"):
        load_sam(root / "sam" / "1")


def test_prompt_comes_from_the_classical_cutout():
    alpha = np.zeros((100, 80), np.float32)
    alpha[20:90, 10:70] = 1
    p = garment_sam.prompt_from_cutout(alpha)
    assert p.box.tolist() == [[10, 20], [69, 89]]
    assert 1 <= len(p.points) <= 3 and (p.labels == 1).all()
    for x, y in p.points:
        assert alpha[int(y), int(x)] == 1 and 20 <= x <= 60 and 30 <= y <= 80
    with pytest.raises(InvalidInputError, match="no garment found"):
        garment_sam.prompt_from_cutout(np.zeros((10, 10), np.float32))


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_segments_a_busy_flat_lay_end_to_end(sam_dir, runtime):
    from services.neural import export
    from services.neural.sam import SamDecoder, prompt_arrays

    root, sam = sam_dir
    d = root / "sam" / "1"
    if runtime == "onnxruntime":
        coords, labels = prompt_arrays([[1, 2]], [1], None, 1.0)
        export.export(SamDecoder(load_sam(d)), (torch.randn(1, 32, 4, 4), coords, labels),
                      d / garment_sam.ONNX_DECODER, export.SAM_DECODER)  # fmt: skip
        write_manifest(d, "sam", "1", KIND)
    model = open_model(root, ModelRef("sam", "1"), KIND, garment_sam.REQUIRED)
    seg = garment_sam.load(model, runtime)
    image = busy_flat_lay()
    alpha = seg.segment(image)
    assert alpha.shape == image.shape[:2] and alpha.dtype == np.float32
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0 and alpha.std() > 0
    # Deterministic; torch and ONNX Runtime prompt paths agree.
    torch_seg = garment_sam.SamGarmentSegmenter(seg.sam)
    assert np.abs(torch_seg.segment(image) - alpha).max() < 1e-3


def test_garment_analysis_uses_the_configured_segmenter_on_a_busy_backdrop():
    """The classical cut-out refuses a flat-lay on a checkerboard table; with a segmenter
    that finds the garment (here one that knows the drawn garment's pixels, standing in
    for trained SAM weights) the same image is analysed as a top."""
    from services.common.analysis.garment import analyze_garment

    g = draw_garment("tshirt", "solid", (200, 40, 40)).image[..., :3]
    truth = (g < 250).any(axis=2)
    yy, xx = np.mgrid[0 : g.shape[0], 0 : g.shape[1]]
    tiles = ((yy // 32 + xx // 32) % 3)[..., None]  # a loud tablecloth: blue, yellow, green
    cloth = np.where(tiles == 0, [40, 60, 200], np.where(tiles == 1, [230, 210, 40], [40, 160, 80]))
    image = np.where(truth[..., None], g, cloth).astype(np.uint8)
    with pytest.raises(InvalidInputError) as err:
        analyze_garment(image)
    assert err.value.reason == "GARMENT_NOT_FOUND"
    calls = []

    def segmenter(img: np.ndarray) -> np.ndarray:
        calls.append(img.shape)
        return truth.astype(np.float32)

    ga = analyze_garment(image, segmenter=segmenter)
    assert calls == [image.shape] and ga.category == "top" and ga.sleeve == "short"


def test_tryon_service_loads_sam_when_configured_and_refuses_a_broken_checkpoint(
    sam_dir, make_server
):
    from services.tryon.server import TryOnApp

    root, _sam = sam_dir
    ok = load_settings(env={}, model_dir=str(root), garment_segmenter="sam",
                       garment_sam_model="sam/1")  # fmt: skip
    app = TryOnApp(ok)
    make_server(app, model_dir=str(root))
    assert app.pipeline.segmenter is not None  # SAM's segment, loaded at start-up
    alpha = app.pipeline.segmenter(busy_flat_lay())
    assert alpha.shape == busy_flat_lay().shape[:2]
    weights = root / "sam" / "1" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\1")
    server, _ch = make_server(TryOnApp(ok), wait_ready=False, model_dir=str(root))
    assert not server.wait_ready(60)
    assert "model.safetensors" in str(server.load_error)
