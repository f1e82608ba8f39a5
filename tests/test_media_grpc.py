"""Bad and unusual image inputs through a real gRPC server: the exact status code and
ErrorInfo reason for each refusal, and correctly normalised pixels for the valid-but-odd."""

from __future__ import annotations

import io
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from drape.common.v1 import common_pb2, media_service_pb2, media_service_pb2_grpc
from services.common.config import MiB

import samples
from helpers import error_details

LIMITS = {"max_message_bytes": 2 * MiB, "max_image_bytes": 1 * MiB, "max_video_bytes": 1 * MiB}


@pytest.fixture
def stub(make_server):
    _server, channel = make_server(**LIMITS)
    return media_service_pb2_grpc.MediaServiceStub(channel)


def inspect(stub, data: bytes, **kw):
    req = media_service_pb2.InspectImageRequest(image=common_pb2.Image(data=data), **kw)
    return stub.InspectImage(req, timeout=30)


def refusal(stub, data: bytes):
    """(code, ErrorInfo reason, BadRequest field) of a refused call."""
    with pytest.raises(grpc.RpcError) as ei:
        inspect(stub, data)
    return (ei.value.code(), *error_details(ei.value))


REFUSED = {
    "empty": (b"", "IMAGE_EMPTY"),
    "truncated JPEG": (samples.truncated(samples.jpeg(400, 300)), "IMAGE_TRUNCATED"),
    "truncated PNG": (samples.truncated(samples.png(400, 300)), "IMAGE_TRUNCATED"),
    "random bytes": (samples.random_bytes(), "IMAGE_UNRECOGNIZED"),
    "header claims 50000x50000": (samples.png_header_only(50_000, 50_000), "IMAGE_TOO_MANY_PIXELS"),
    "zero width": (samples.png_header_only(0, 100), "IMAGE_INVALID_DIMENSIONS"),
    "zero height": (samples.png_header_only(100, 0), "IMAGE_INVALID_DIMENSIONS"),
    "text file": (samples.TEXT_FILE, "IMAGE_UNRECOGNIZED"),
    "over the image byte limit": (samples.jpeg(8, 8) + b"\0" * (MiB + 10), "IMAGE_TOO_LARGE"),
    "GIF (not accepted)": (samples.encode(samples.gradient(), "GIF"), "IMAGE_FORMAT_UNSUPPORTED"),
    "corrupt PNG header": (samples.png(10, 10)[:30], "IMAGE_CORRUPT"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_image_is_refused_with_reason(stub, case):
    data, reason = REFUSED[case]
    code, got_reason, field = refusal(stub, data)
    assert (code, got_reason) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    assert field == "image.data"


def test_message_over_transport_limit_is_resource_exhausted(stub):
    # Bigger than max_message_bytes: gRPC refuses it before any Drape code runs.
    with pytest.raises(grpc.RpcError) as ei:
        inspect(stub, b"\xff" * (3 * MiB))
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in ei.value.details().lower()


def decoded(resp) -> np.ndarray:
    img = Image.open(io.BytesIO(resp.normalized.data))
    assert img.format == "PNG"
    return np.asarray(img)


def test_16bit_png_is_scaled_to_8bit_rgb(stub):
    resp = inspect(stub, samples.png_16bit(), return_normalized=True)
    assert (resp.source_mode, resp.channels) == ("I;16", 3)
    px = decoded(resp)
    assert px.dtype == np.uint8 and px.shape == (8, 32, 3)
    assert px[0, 0].tolist() == [0, 0, 0] and px[0, -1].tolist() == [255, 255, 255]
    assert np.all(np.diff(px[0, :, 0].astype(int)) >= 0)  # the ramp survives, monotone


def test_cmyk_jpeg_becomes_rgb_with_right_colour(stub):
    resp = inspect(stub, samples.cmyk_jpeg(), return_normalized=True)
    assert (resp.source_mode, resp.channels) == ("CMYK", 3)
    px = decoded(resp).astype(int)
    # Pure cyan: no red, full green and blue.
    assert px[..., 0].max() < 20 and px[..., 1].min() > 235 and px[..., 2].min() > 235


def test_palette_png_with_transparency_becomes_rgba(stub):
    resp = inspect(stub, samples.palette_png_with_transparency(), return_normalized=True)
    assert (resp.source_mode, resp.channels) == ("P", 4)
    px = decoded(resp)
    assert px.shape == (10, 20, 4)
    assert px[:, :10, 3].max() == 0  # transparent half
    assert px[:, 10:].reshape(-1, 4).tolist() == [[255, 0, 0, 255]] * 100


def test_exif_rotation_is_applied(stub):
    resp = inspect(stub, samples.exif_rotated_jpeg(6), return_normalized=True)
    assert (resp.source_width, resp.source_height, resp.exif_orientation) == (64, 48, 6)
    assert (resp.width, resp.height) == (48, 64)
    px = decoded(resp).astype(int)
    # Stored bottom-left (red 0, green 255) must now be top-left after a 90° clockwise turn.
    assert px[0, 0, 0] < 30 and px[0, 0, 1] > 225
    # Stored top-right (red 255, green 0) ends up bottom-right.
    assert px[-1, -1, 0] > 225 and px[-1, -1, 1] < 30


def test_plain_jpeg_round_trips(stub):
    resp = inspect(stub, samples.jpeg(64, 48), return_normalized=True, request_id="req-42")
    assert (resp.source_format, resp.width, resp.height, resp.channels) == ("JPEG", 64, 48, 3)
    assert resp.meta.request_id == "req-42"
    assert len(resp.meta.trace_id) == 32
    assert np.abs(decoded(resp).astype(int) - samples.gradient(64, 48)).mean() < 3


def test_video_inspection_and_refusal(stub):
    from services.common.video import encode_mp4

    frames = [np.full((32, 48, 3), 10 * i, np.uint8) for i in range(12)]
    data = encode_mp4(frames, fps=12)
    resp = stub.InspectVideo(
        media_service_pb2.InspectVideoRequest(video=common_pb2.Video(data=data)), timeout=30
    )
    assert (resp.codec, resp.width, resp.height, resp.frame_count) == ("h264", 48, 32, 12)
    assert resp.fps == pytest.approx(12)
    with pytest.raises(grpc.RpcError) as ei:
        stub.InspectVideo(
            media_service_pb2.InspectVideoRequest(video=common_pb2.Video(data=b"not a video")),
            timeout=30,
        )
    st = rpc_status.from_call(ei.value)
    info = error_details_pb2.ErrorInfo()
    assert st.details[0].Unpack(info) and info.reason == "VIDEO_UNRECOGNIZED"


DATA = Path(__file__).resolve().parent / "data"


def test_jpeg_scan_bomb_is_refused_before_decoding(stub):
    code, reason, _field = refusal(stub, samples.jpeg_scan_bomb())
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "IMAGE_TOO_COMPLEX")


@pytest.mark.parametrize("fmt", ["TIFF", "WEBP", "BMP"])
def test_other_accepted_formats(stub, fmt):
    resp = inspect(stub, samples.encode(samples.gradient(), fmt), return_normalized=True)
    assert (resp.source_format, resp.width, resp.height) == (fmt, 64, 48)
    assert np.abs(decoded(resp).astype(int) - samples.gradient()).mean() < 4


def test_grayscale_with_transparency_keeps_alpha(stub):
    resp = inspect(stub, samples.grayscale_png_with_transparency(), return_normalized=True)
    px = decoded(resp)
    assert (resp.source_mode, px.shape) == ("L", (6, 12, 4))
    assert (
        px[:, :6, 3].max() == 0 and px[:, 6:].reshape(-1, 4).tolist() == [[200, 200, 200, 255]] * 36
    )


@pytest.mark.parametrize(
    "name", ["corrupt_exif_orientation6.jpg", "corrupt_exif_orientation6.webp"]
)
def test_malformed_exif_still_rotates(stub, name):
    # Fuzzed files whose EXIF block cannot be re-serialised (Pillow's exif_transpose raises
    # on them); the orientation tag itself is readable and must still be applied.
    resp = inspect(stub, (DATA / name).read_bytes())
    assert resp.exif_orientation == 6
    assert (resp.source_width, resp.source_height, resp.width, resp.height) == (56, 40, 40, 56)


def test_normalised_output_over_message_limit_is_refused_with_reason(stub):
    # Noise compresses badly: 0.3 MiB as JPEG, but ~2.4 MB as PNG, over the 2 MiB limit.
    noise = np.random.default_rng(3).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    data = samples.encode(noise, "JPEG", quality=50)
    assert len(data) < MiB
    with pytest.raises(grpc.RpcError) as ei:
        inspect(stub, data, return_normalized=True)
    st = rpc_status.from_call(ei.value)
    info = error_details_pb2.ErrorInfo()
    assert st.details[0].Unpack(info) and info.reason == "OUTPUT_TOO_LARGE"
