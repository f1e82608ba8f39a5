"""Fuzz target: video decoding and the motion-video entry points of animate.

What ``StartClip(motion_video=...)`` and ``ExtractMotion`` do with an upload before any pose
model runs: ``decode_video`` under the production limits with animate's ``max_side``, then
``MotionExtractor.check``; a video that reads as a drawn pose skeleton goes on through
``MotionExtractor.extract`` (the skeleton reader needs no model; camera footage would go to
MediaPipe, which is left out: its input is decoded frames, not bytes). Coverage is that of
the Python code of ``services.common.video``: FFmpeg in PyAV is
compiled code that atheris cannot see, so the fuzzer steers by our checks, not the demuxers.

    .venv/bin/python benchmarks/fuzz/fuzz_video.py -max_total_time=600
"""

from __future__ import annotations

import io
import math
import sys

import atheris
import av
import cv2
import numpy as np

with atheris.instrument_imports(include=["services.common.video"]):
    from services.common.video import VideoLimits, decode_video, encode_mp4

import _harness  # noqa: E402 - after the instrumented imports

# Not instrumented: the skeleton reader is numpy on decoded frames (few branches that bytes
# steer), and instrumented it grew the fuzzer by ~1.5 MB an input (atheris's comparison
# hooks; the same code without them holds steady), which ends a run as a false "OOM".
from services.animate.extract import (  # noqa: E402
    OPENPOSE_COLOURS,
    OPENPOSE_LIMBS,
    OPENPOSE_TO_MP,
    MotionExtractor,
    is_skeleton_video,
)
from services.animate.server import VIDEO_MAX_SIDE  # noqa: E402
from services.common.config import Settings  # noqa: E402

SETTINGS = Settings()
LIMITS = VideoLimits.from_settings(SETTINGS)
EXTRACTOR = MotionExtractor(
    SETTINGS.motion_max_seconds, SETTINGS.motion_max_lost_share, SETTINGS.animate_max_fps
)


def one_input(data: bytes) -> None:
    """Decode ``data`` as a motion video and check it; raise only on a finding."""
    out: list = []
    decode = lambda: out.append(  # noqa: E731
        decode_video(data, LIMITS, field="motion_video.data", max_side=VIDEO_MAX_SIDE)
    )
    err = _harness.refused(decode)
    if err is not None:
        if not err.reason.startswith("VIDEO_"):
            raise _harness.Finding(f"decode_video refused with {err.reason}: {err}")
        return
    video = out[0]
    f = video.frames
    if f.dtype != np.uint8 or f.ndim != 4 or f.shape[3] != 3 or not len(f):
        raise _harness.Finding(f"frames are {f.shape} {f.dtype}")
    if len(f) > LIMITS.max_frames or f.nbytes > LIMITS.max_decoded_bytes:
        raise _harness.Finding(f"{len(f)} frames, {f.nbytes} bytes: over the limits")
    if max(video.width, video.height) > VIDEO_MAX_SIDE:
        raise _harness.Finding(f"frames are {video.width} x {video.height} after max_side")
    if not (math.isfinite(video.fps) and video.fps >= 0):
        raise _harness.Finding(f"fps {video.fps}")
    if not (math.isfinite(video.duration_seconds) and video.duration_seconds >= 0):
        raise _harness.Finding(f"duration {video.duration_seconds}")
    span: list = []
    check = lambda: span.append(  # noqa: E731
        EXTRACTOR.check(video, 0.0, 0.0, 0.0, "", "motion_video")
    )
    if _harness.refused(check) is not None:
        return
    first, last, _fps = span[0]
    if not 0 <= first < last <= len(f):
        raise _harness.Finding(f"check() gave frames {first}..{last} of {len(f)}")
    if is_skeleton_video(f[first:last]):
        got: list = []
        extract = lambda: got.append(EXTRACTOR.extract(video, field="motion_video"))  # noqa: E731
        if _harness.refused(extract) is None:
            motion, _lost = got[0]
            if not np.isfinite(motion.frames).all() or motion.frame_count < 1:
                raise _harness.Finding("extract() gave a motion with non-finite keypoints")


def _encode(frames: list[np.ndarray], fmt: str, codec: str, pix_fmt: str, rate: int = 8) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def skeleton_frames(n: int = 4, size: tuple[int, int] = (120, 180)) -> list[np.ndarray]:
    """OpenPose-style drawings of a built-in motion (limbs at 60 %, joints as dots)."""
    from services.animate.motions import MotionLibrary

    w, h = size
    m = MotionLibrary().get("arm-swing-dance")
    px = m.frames[..., :2] * [w, h]
    frames = []
    for f in range(n):
        kp = np.zeros((18, 2))
        for mp_i, op_i in OPENPOSE_TO_MP.items():
            kp[op_i] = px[f * 2, mp_i]
        kp[1] = (px[f * 2, 11] + px[f * 2, 12]) / 2  # the neck
        canvas = np.zeros((h, w, 3), np.uint8)
        for i, (a, b) in OPENPOSE_LIMBS.items():
            c = (kp[a] + kp[b]) / 2
            length = float(np.hypot(*(kp[a] - kp[b])))
            ang = float(np.degrees(np.arctan2(kp[b][1] - kp[a][1], kp[b][0] - kp[a][0])))
            poly = cv2.ellipse2Poly(
                (int(c[0]), int(c[1])), (int(length / 2), 2), int(ang), 0, 360, 1
            )
            cv2.fillConvexPoly(canvas, poly, [int(v) for v in OPENPOSE_COLOURS[i]])
        canvas = (canvas * 0.6).astype(np.uint8)
        for k in range(18):
            cv2.circle(
                canvas, tuple(int(v) for v in kp[k]), 2, [int(v) for v in OPENPOSE_COLOURS[k]], -1
            )
        frames.append(canvas)
    return frames


def seeds() -> list[bytes]:
    """Tiny clips in every accepted container and several codecs (made here), a drawn
    skeleton clip, and broken ones."""
    rng = np.random.default_rng(0)
    grad = np.linspace(0, 255, 32, dtype=np.float32)
    frames = [
        np.clip(grad[None, :, None] + [i * 30, 0, 255 - i * 30], 0, 255).astype(np.uint8)
        * np.ones((32, 1, 1), np.uint8)
        for i in range(6)
    ]
    noisy = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    out = [
        encode_mp4(frames, 8.0),
        _encode(frames, "mp4", "mpeg4", "yuv420p"),
        _encode(frames, "webm", "libvpx", "yuv420p"),
        _encode(frames, "matroska", "ffv1", "yuv420p"),
        _encode(frames, "avi", "mjpeg", "yuvj420p"),
        _encode(noisy, "avi", "png", "rgb24"),
        _encode(noisy, "mov", "qtrle", "rgb24"),
        _encode(frames[:3], "gif", "gif", "rgb8"),
        _encode(skeleton_frames(3, (60, 90)), "matroska", "ffv1", "yuv444p"),
    ]
    out.append(out[0][: len(out[0]) * 2 // 3])  # a truncated MP4
    out.append(out[3][:64])  # a Matroska header and nothing else
    return out


if __name__ == "__main__":
    sys.exit(_harness.main("video", one_input, seeds))
