"""TensorRT engine builder: the clear refusal where ``tensorrt`` is not importable (here),
the precision rules across TensorRT versions (11 dropped the FP16/BF16 flags), and profile
checks against a real exported graph."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from services.common.errors import ConfigError
from services.neural import export
from services.neural import tensorrt as T
from services.neural.pose_guider import PoseGuider, PoseGuiderConfig


@pytest.fixture(scope="module")
def guider_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "pose_guider.onnx"
    guider = PoseGuider(PoseGuiderConfig(block_out_channels=(8, 16), embedding_channels=16))
    export.export(guider, (torch.rand(2, 3, 32, 24),), path, export.POSE_GUIDER)
    return path


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt present")
def test_builder_says_clearly_that_tensorrt_is_missing(guider_onnx):
    profiles = {"pose": ((1, 3, 16, 16), (2, 3, 32, 24), (4, 3, 64, 64))}
    with pytest.raises(T.TensorRTUnavailable) as err:
        T.build_engine(guider_onnx, profiles)
    msg = str(err.value)
    assert "tensorrt Python package is not importable" in msg and "ONNX Runtime" in msg
    assert not list(guider_onnx.parent.glob("*.plan"))


def test_precision_rules_per_tensorrt_version():
    assert T.precision_plan("10.13.0.35", "fp16") == T.PrecisionPlan(
        False, ("FP16",), "builder flag FP16"
    )
    assert T.precision_plan("9.2.0", "bf16").flags == ("BF16",)
    assert T.precision_plan("8.6.1", "fp32").flags == ()
    with pytest.raises(ConfigError, match="no bf16 builder flag"):
        T.precision_plan("8.6.1", "bf16")
    # TensorRT 11 removed the precision flags: strongly typed, the graph's types decide.
    plan = T.precision_plan("11.0.0", "fp16")
    assert plan.strongly_typed and plan.flags == ()
    with pytest.raises(ConfigError, match="unknown precision"):
        T.precision_plan("10.0", "int4")


def test_engine_lands_next_to_its_graph():
    p = Path("/m/catvton/1/onnx/unet_step.onnx")
    assert T.engine_path(p, "10.13.0", "fp16") == Path(
        "/m/catvton/1/onnx/unet_step.trt10.fp16.plan"
    )


def test_profiles_are_checked_against_the_graph(guider_onnx):
    T.check_profiles(guider_onnx, {"pose": ((1, 3, 16, 16), (2, 3, 32, 24), (4, 3, 64, 64))})
    with pytest.raises(ConfigError, match="no optimization profile"):
        T.check_profiles(guider_onnx, {})
    with pytest.raises(ConfigError, match="does not fit"):
        T.check_profiles(guider_onnx, {"pose": ((1, 4, 16, 16), (2, 3, 32, 24), (4, 3, 64, 64))})
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        T.check_profiles(guider_onnx, {"pose": ((2, 3, 16, 16), (1, 3, 32, 24), (4, 3, 64, 64))})


def test_catvton_profiles_cover_guidance_batches():
    p = T.catvton_profiles(1024, 768)
    lo, opt, hi = p["unet_step"]["sample"]
    assert opt == hi == (2, 9, 256, 96) and lo[0] == 1
    assert p["vae_decoder"]["latents"][2] == (1, 4, 128, 96)
