"""Animate ``diffusion`` backend (AnimateAnyone design) with tiny random-weight networks:
reference attention, pose guider, motion modules, sliding windows, per-frame decoding; the
checkpoint layout of the open re-implementation with its motion-module keys checked; and a
short clip through the animate pipeline like the skeletal default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from services.animate import diffusion as AD
from services.common.context import CancelToken
from services.common.errors import CancelledError
from services.neural.configs import animatediff_motion_key, write_animate_repository
from services.neural.repository import ModelRef, ModelRepositoryError, open_model


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_animate_repository(root, seed=4)
    return root


@pytest.fixture(scope="module")
def net(repo):
    model = open_model(repo, ModelRef("animate-anyone", "1"), AD.KIND, AD.REQUIRED)
    return AD.load(model, torch.device("cpu"), torch.float32)


def pose_maps(n: int, h: int = 32, w: int = 24, shift: int = 0) -> np.ndarray:
    maps = np.zeros((n, h, w, 3), np.uint8)
    for f in range(n):
        x = 4 + (f * 2 + shift) % (w - 8)
        maps[f, 4:28, x : x + 3] = 255
    return maps


def still(h: int = 32, w: int = 24) -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[::16, ::16][:h, :w])


def test_windows_cover_every_frame_with_overlap():
    assert AD.windows(5, 8, 2) == [range(0, 5)]
    wins = AD.windows(24, 8, 2)
    assert [w.start for w in wins] == [0, 6, 12, 16] and all(len(w) == 8 for w in wins)
    assert set().union(*map(set, wins)) == set(range(24))


def test_clip_longer_than_a_window_with_progress(net):
    seen = []
    frames = net.render(still(), pose_maps(10), AD.AnimateOptions(steps=2, window=4, overlap=1),
                        progress=lambda d, n, s: seen.append((d, n, s)))  # fmt: skip
    assert frames.shape == (10, 32, 24, 3) and frames.dtype == np.uint8
    assert [s for s in seen if s[2] == "denoise"] == [(1, 2, "denoise"), (2, 2, "denoise")]
    assert [s[0] for s in seen if s[2] == "decode"] == list(range(1, 11))
    assert net.layers > 0 and len(net.bank.features) == net.layers


def test_reference_features_and_poses_drive_the_frames(net):
    opts = AD.AnimateOptions(steps=2, window=4, overlap=1, seed=1)
    base = net.render(still(), pose_maps(4), opts)
    other_still = net.render(255 - still(), pose_maps(4), opts)
    other_pose = net.render(still(), pose_maps(4, shift=5), opts)
    assert np.abs(base.astype(int) - other_still).mean() > 0.5
    assert np.abs(base.astype(int) - other_pose).mean() > 0.01
    assert np.array_equal(base, net.render(still(), pose_maps(4), opts))  # seeded


def test_motion_modules_mix_frames_within_a_window(net):
    """Change only frame 0's pose: frame 3 changes too when both share a window (temporal
    attention), and not when the windows are single frames."""
    a, b = pose_maps(4), pose_maps(4)
    b[0] = 255 - b[0]
    together = AD.AnimateOptions(steps=1, window=4, overlap=0, seed=2)
    apart = AD.AnimateOptions(steps=1, window=1, overlap=0, seed=2)
    d_together = np.abs(net.render(still(), a, together)[3].astype(int)
                        - net.render(still(), b, together)[3]).mean()  # fmt: skip
    d_apart = np.abs(net.render(still(), a, apart)[3].astype(int)
                     - net.render(still(), b, apart)[3]).mean()  # fmt: skip
    assert d_together > 0 and d_apart == 0


def test_cancellation_between_windows(net):
    token = CancelToken()
    token.cancel("test")
    with pytest.raises(CancelledError, match="denoising step 1/2"):
        net.render(still(), pose_maps(4), AD.AnimateOptions(steps=2, window=4), token=token)


def test_motion_module_keys_convert_both_ways():
    k = "down_blocks.1.motion_modules.0.transformer_blocks.0.attn1.to_q.weight"
    original = animatediff_motion_key(k)
    assert original == ("down_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks."
                        "0.attention_blocks.0.to_q.weight")  # fmt: skip
    assert AD.convert_motion_key(original) == k
    assert AD.convert_motion_key(original.replace("to_q.weight", "pos_encoder.pe")) is None
    assert AD.convert_motion_key("mid_block.motion_modules.0.temporal_transformer.norm.weight") \
        == "mid_block.motion_modules.0.norm.weight"  # fmt: skip


def test_missing_motion_module_keys_fail_the_load(repo, tmp_path):
    import shutil

    d = tmp_path / "animate-anyone" / "1"
    shutil.copytree(repo / "animate-anyone" / "1", d)
    state = torch.load(d / "motion_module.pth", weights_only=True)
    dropped = [k for k in state if "up_blocks.1.motion_modules" in k]
    for k in dropped:
        del state[k]
    torch.save(state, d / "motion_module.pth")
    from services.neural.repository import write_manifest

    write_manifest(d, "animate-anyone", "1", AD.KIND)
    model = open_model(tmp_path, ModelRef("animate-anyone", "1"), AD.KIND, AD.REQUIRED)
    with pytest.raises(ModelRepositoryError, match="flicker") as err:
        AD.load(model, torch.device("cpu"), torch.float32)
    learned = [k for k in dropped if ".pos_encoder." not in k]  # fixed tables are not counted
    assert err.value.path == d / "motion_module.pth" and f"{len(learned)} of" in str(err.value)


def test_short_clip_through_the_animate_pipeline(net):
    from services.animate.motions import MotionLibrary
    from services.animate.pipeline import AnimatePipeline, ClipOptions
    from services.common.analysis.person import PersonAnalyzer

    backend = AD.DiffusionAnimateBackend(net, AD.AnimateOptions(steps=1, window=4, overlap=1))
    analyzer = PersonAnalyzer()
    try:
        pipe = AnimatePipeline(analyzer)
        motion = MotionLibrary().get("idle-sway-upper")
        clip = pipe.run(data.astronaut(), motion,
                        ClipOptions(fps=4, duration=1.5, width=64, height=64, preview=None),
                        backend=backend)  # fmt: skip
    finally:
        analyzer.close()
    assert clip.frame_count == 6 and clip.width == 64 and clip.height == 64
    assert len(clip.mp4) > 100
    from services.common.video import VideoLimits, decode_video

    video = decode_video(clip.mp4, VideoLimits())
    assert len(video.frames) == 6 and video.frames[0].shape == (64, 64, 3)


def test_animate_service_serves_the_diffusion_backend_and_refuses_a_broken_repository(
    repo, tmp_path, make_server
):
    """Wired into AnimateService: a clip request naming ``diffusion`` runs it end to end
    over gRPC; a corrupted weight file keeps the server NOT_SERVING, naming the file."""
    import io

    from PIL import Image

    from drape.animate.v1 import animate_service_pb2 as pb
    from drape.animate.v1 import animate_service_pb2_grpc as pb_grpc
    from drape.common.v1 import common_pb2, operations_pb2
    from services.animate.server import AnimateApp
    from services.common.config import load_settings
    from services.common.video import decode_video

    settings = load_settings(env={}, model_dir=str(repo), neural_device="cpu",
                             animate_request_backends=("skeletal", "diffusion"),
                             diffusion_steps=1)  # fmt: skip
    _server, channel = make_server(AnimateApp(settings), model_dir=str(repo), neural_device="cpu")
    stub = pb_grpc.AnimateServiceStub(channel)
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "PNG")
    op = stub.StartClip(pb.StartClipRequest(
        request_id="diffusion-clip", still=common_pb2.Image(data=buf.getvalue()),
        template_name="idle-sway-upper", fps=4, width=64, height=64, duration_seconds=1.0,
        backend="diffusion"), timeout=30)  # fmt: skip
    msgs = list(stub.WatchClip(operations_pb2.OperationRef(operation_id=op.id), timeout=300))
    final = msgs[-1]
    assert final.operation.state == operations_pb2.OPERATION_STATE_SUCCEEDED, final.operation
    assert final.result.meta.backend == "diffusion"
    v = decode_video(final.result.clip.data)
    assert (v.frame_count, v.width, v.height) == (4, 64, 64)

    broken = tmp_path / "models"
    import shutil

    shutil.copytree(repo, broken)
    target = next((broken / "animate-anyone" / "1").rglob("*.safetensors"))
    target.write_bytes(target.read_bytes()[:-1] + b"\0")
    bad = load_settings(env={}, model_dir=str(broken), neural_device="cpu",
                        animate_backend="diffusion")  # fmt: skip
    server, _ch = make_server(AnimateApp(bad), wait_ready=False, model_dir=str(broken))
    assert not server.wait_ready(60)
    assert target.name in str(server.load_error)
