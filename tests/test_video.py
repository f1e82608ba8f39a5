"""Video decoding limits and the MP4 encoder (H.264, yuv420p, faststart)."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.errors import InvalidInputError
from services.common.video import VideoLimits, decode_video, encode_mp4


@pytest.fixture(scope="module")
def clip() -> bytes:
    # A bright square moving right over 48 frames at 24 fps: 2 s.
    frames = []
    for i in range(48):
        f = np.full((64, 96, 3), 30, np.uint8)
        f[20:40, i : i + 20] = 230
        frames.append(f)
    return encode_mp4(frames, fps=24)


def test_encoded_clip_is_h264_faststart_and_decodes_exactly(clip):
    assert clip[4:8] == b"ftyp"
    assert clip.find(b"moov") < clip.find(b"mdat")  # faststart: index before the media
    v = decode_video(clip)
    assert (v.codec, v.frame_count, v.width, v.height) == ("h264", 48, 96, 64)
    assert v.fps == pytest.approx(24) and v.duration_seconds == pytest.approx(2.0, abs=0.05)
    # The square moved: its centre of mass goes right frame after frame.
    xs = [np.nonzero(f[..., 0].max(axis=0) > 130)[0].mean() for f in v.frames]
    assert np.all(np.diff(xs) > 0)


@pytest.mark.parametrize(
    "limits, reason",
    [
        (VideoLimits(max_seconds=1.0), "VIDEO_TOO_LONG"),
        (VideoLimits(max_frames=10), "VIDEO_TOO_MANY_FRAMES"),
        (VideoLimits(max_pixels=96 * 63), "VIDEO_TOO_MANY_PIXELS"),
        (VideoLimits(max_bytes=1024), "VIDEO_TOO_LARGE"),
    ],
)
def test_limits(clip, limits, reason):
    with pytest.raises(InvalidInputError) as ei:
        decode_video(clip, limits)
    assert ei.value.reason == reason


@pytest.mark.parametrize(
    "data, reason",
    [(b"", "VIDEO_EMPTY"), (b"plain text, " * 40, "VIDEO_UNRECOGNIZED")],
)
def test_bad_bytes(data, reason):
    with pytest.raises(InvalidInputError) as ei:
        decode_video(data)
    assert ei.value.reason == reason


def test_downscale_for_analysis(clip):
    v = decode_video(clip, max_side=48)
    assert max(v.width, v.height) == 48


def test_encoder_refuses_odd_sizes():
    with pytest.raises(ValueError, match="even"):
        encode_mp4([np.zeros((15, 16, 3), np.uint8)], fps=10)


def test_animated_gif_is_a_video():
    import io

    from PIL import Image

    frames = [Image.new("RGB", (32, 24), (i * 20, 0, 0)) for i in range(10)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    v = decode_video(buf.getvalue())
    assert (v.frame_count, v.width, v.height) == (10, 32, 24)
    assert v.frames[-1, 0, 0, 0] > v.frames[0, 0, 0, 0]


@pytest.mark.parametrize(
    "data",
    [
        b"#EXTM3U\n#EXTINF:1.0,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n",  # HLS → local file
        b"ffconcat version 1.0\nfile /etc/hostname\n",  # concat list
        b"\x89PNG\r\n\x1a\n" + b"\0" * 64,  # a still image is not a motion video
    ],
)
def test_only_video_containers_reach_ffmpeg(data):
    with pytest.raises(InvalidInputError) as ei:
        decode_video(data)
    assert ei.value.reason == "VIDEO_UNRECOGNIZED"


def test_decoded_size_is_capped_before_decoding(clip):
    # 48 frames of 96x64x3 = 884 736 bytes decoded.
    with pytest.raises(InvalidInputError) as ei:
        decode_video(clip, VideoLimits(max_decoded_bytes=500_000))
    assert ei.value.reason == "VIDEO_DECODED_TOO_LARGE"
    assert decode_video(clip, VideoLimits(max_decoded_bytes=1_000_000)).frame_count == 48
