"""Video decoding with limits (duration, frames, frame size, bytes) and H.264 encoding.

Limits are checked from the container header before decoding, and again while decoding
(headers can lie), so an upload can never make us decode more than ``max_frames`` frames.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterable
from fractions import Fraction

import av
import numpy as np

from services.common.errors import InvalidInputError


@dataclasses.dataclass(frozen=True)
class VideoLimits:
    """What :func:`decode_video` accepts."""

    max_bytes: int = 48 * 1024 * 1024
    max_seconds: float = 30.0
    max_frames: int = 1800
    max_pixels: int = 3840 * 2160
    max_decoded_bytes: int = 1024 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings) -> VideoLimits:
        """Limits from a :class:`services.common.config.Settings`."""
        return cls(
            max_bytes=settings.max_video_bytes,
            max_seconds=settings.max_video_seconds,
            max_frames=settings.max_video_frames,
            max_pixels=settings.max_video_pixels,
            max_decoded_bytes=settings.max_video_decoded_bytes,
        )


@dataclasses.dataclass(frozen=True)
class DecodedVideo:
    """Decoded frames and what the container said about them.

    Attributes:
        frames: ``N x H x W x 3`` uint8 RGB.
        fps: average frame rate.
        duration_seconds: duration (from the container, or frames / fps).
        container: demuxer name.
        codec: video codec name.
    """

    frames: np.ndarray
    fps: float
    duration_seconds: float
    container: str
    codec: str

    @property
    def frame_count(self) -> int:
        return int(self.frames.shape[0])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])


def _refuse(reason: str, message: str, field: str) -> InvalidInputError:
    return InvalidInputError(reason, message, field=field)


def _container_of(data: bytes) -> str | None:
    """Container named by the file's signature; None for anything we do not accept.

    Only real video containers reach FFmpeg: its other demuxers (image sequences,
    playlists, concat lists) either decode an image during probing before any limit can be
    checked, or refer to other files.
    """
    if data[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4"  # ISO BMFF: MP4, MOV, 3GP
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # MKV, WebM
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def decode_video(
    data: bytes,
    limits: VideoLimits = VideoLimits(),
    field: str = "video",
    max_side: int | None = None,
) -> DecodedVideo:
    """Decode every frame of an uploaded video under ``limits``.

    Args:
        data: the encoded file (any container/codec FFmpeg in PyAV reads).
        limits: size, duration and frame limits.
        field: request field named in refusals.
        max_side: when set, frames are downscaled so their longer side is at most this
            (motion extraction does not need 4K frames in memory).

    Raises:
        InvalidInputError: VIDEO_EMPTY, VIDEO_TOO_LARGE, VIDEO_UNRECOGNIZED,
            VIDEO_NO_VIDEO_STREAM, VIDEO_CODEC_UNSUPPORTED, VIDEO_TOO_LONG, VIDEO_TOO_MANY_FRAMES,
            VIDEO_TOO_MANY_PIXELS, VIDEO_DECODED_TOO_LARGE, VIDEO_FRAME_SIZE_CHANGES or
            VIDEO_CORRUPT.
    """
    if not data:
        raise _refuse("VIDEO_EMPTY", "the video is empty (0 bytes)", field)
    if len(data) > limits.max_bytes:
        raise _refuse(
            "VIDEO_TOO_LARGE",
            f"the video is {len(data)} bytes; the limit is {limits.max_bytes}",
            field,
        )
    fmt = _container_of(data)
    if fmt is None:
        raise _refuse(
            "VIDEO_UNRECOGNIZED", "the bytes are not an MP4/MOV, WebM/MKV, AVI or GIF video", field
        )
    try:
        container = av.open(io.BytesIO(data), mode="r", format=fmt)
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise _refuse(
            "VIDEO_UNRECOGNIZED", f"the bytes are not a readable video: {str(exc)[:160]}", field
        ) from None
    with container:
        if not container.streams.video:
            raise _refuse("VIDEO_NO_VIDEO_STREAM", "the file has no video stream", field)
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None:  # a codec FFmpeg has no decoder for (found by fuzzing)
            raise _refuse(
                "VIDEO_CODEC_UNSUPPORTED", "the video stream's codec cannot be decoded", field
            )
        # One decoding thread. FFmpeg's slice-threaded VP8 decoder spins forever on some
        # malformed key frames (an 876-byte WebM found by fuzzing; the GIL is released, so
        # nothing in Python can stop it), and a server already runs one call per core.
        ctx.thread_count = 1
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width * height > limits.max_pixels:
            raise _refuse(
                "VIDEO_TOO_MANY_PIXELS",
                f"frames are {width} x {height}; the limit is {limits.max_pixels} pixels",
                field,
            )
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        if duration > limits.max_seconds:
            raise _refuse(
                "VIDEO_TOO_LONG",
                f"the video is {duration:.1f} s long; the limit is {limits.max_seconds:g} s",
                field,
            )
        if stream.frames and stream.frames > limits.max_frames:
            raise _refuse(
                "VIDEO_TOO_MANY_FRAMES",
                f"the video has {stream.frames} frames; the limit is {limits.max_frames}",
                field,
            )
        scale = 1.0
        if max_side and max(width, height) > max_side:
            scale = max_side / max(width, height)
        frame_bytes = max(1, round(width * scale)) * max(1, round(height * scale)) * 3
        expected = stream.frames or (round(duration * fps) if duration and fps else 0)
        if expected * frame_bytes > limits.max_decoded_bytes:
            raise _refuse(
                "VIDEO_DECODED_TOO_LARGE",
                f"{expected} frames of {width} x {height} would take {expected * frame_bytes} bytes"
                f" decoded; the limit is {limits.max_decoded_bytes}",
                field,
            )
        frames: list[np.ndarray] = []
        decoded_bytes = 0
        try:
            for frame in container.decode(stream):
                if len(frames) >= limits.max_frames:
                    raise _refuse(
                        "VIDEO_TOO_MANY_FRAMES",
                        f"the video has more than {limits.max_frames} frames",
                        field,
                    )
                if frame.width * frame.height > limits.max_pixels:
                    raise _refuse(
                        "VIDEO_TOO_MANY_PIXELS",
                        f"a frame is {frame.width} x {frame.height}; the limit is {limits.max_pixels} pixels",
                        field,
                    )
                if max_side and max(frame.width, frame.height) > max_side:
                    s = max_side / max(frame.width, frame.height)
                    frame = frame.reformat(
                        width=max(2, round(frame.width * s)), height=max(2, round(frame.height * s))
                    )
                arr = frame.to_ndarray(format="rgb24")
                if frames and arr.shape != frames[0].shape:
                    # VP8/VP9/H.264 may change resolution at a key frame (found by fuzzing);
                    # a clip is one size throughout, and no frame is silently rescaled.
                    raise _refuse(
                        "VIDEO_FRAME_SIZE_CHANGES",
                        f"frame {len(frames)} is {frame.width} x {frame.height}; the first"
                        f" frame is {frames[0].shape[1]} x {frames[0].shape[0]}",
                        field,
                    )
                decoded_bytes += arr.nbytes
                if decoded_bytes > limits.max_decoded_bytes:  # headers can lie
                    raise _refuse(
                        "VIDEO_DECODED_TOO_LARGE",
                        f"the decoded frames exceed {limits.max_decoded_bytes} bytes",
                        field,
                    )
                frames.append(arr)
                if fps and len(frames) / fps > limits.max_seconds + 1.0 / fps:
                    raise _refuse(
                        "VIDEO_TOO_LONG",
                        f"the video is longer than {limits.max_seconds:g} s",
                        field,
                    )
        except av.FFmpegError as exc:
            if not frames:
                raise _refuse(
                    "VIDEO_CORRUPT", f"no frame could be decoded: {str(exc)[:160]}", field
                ) from None
            # A damaged tail: keep the frames decoded so far (motion extraction copes).
        if not frames:
            raise _refuse("VIDEO_CORRUPT", "the video stream holds no decodable frame", field)
        if not duration and fps:
            duration = len(frames) / fps
        return DecodedVideo(
            frames=np.stack(frames),
            fps=fps,
            duration_seconds=duration,
            container=container.format.name,
            codec=ctx.name,
        )


def encode_mp4(
    frames: Iterable[np.ndarray], fps: float, crf: int = 20, preset: str = "veryfast"
) -> bytes:
    """Encode RGB frames as MP4: H.264, yuv420p, ``+faststart`` (moov atom first, so a
    product page starts playing before the whole file arrives).

    Args:
        frames: ``H x W x 3`` uint8 arrays of one size; width and height must be even
            (yuv420p halves the chroma planes).
        fps: frame rate.
        crf: x264 constant rate factor (lower is better; 18-23 is visually clean).
        preset: x264 speed/size trade-off.

    Raises:
        ValueError: on odd or changing frame sizes, or no frames (programming errors).
    """
    # Encoded in memory, never through a file: a clip of a shopper is personal data and is
    # not written to disk (nor to /dev/shm, where a crash would leave it behind).
    # +faststart moves the moov atom in front in a second pass that reopens the output by
    # name to read it back; ``io_open`` answers that reopen with a copy of the buffer as it
    # stands then (the whole file, moov last), which FFmpeg reads while it shifts ``buf``.
    buf = io.BytesIO()

    def reopen(url: str, flags: int, options: dict) -> io.BytesIO:
        if flags != 1:  # AVIO_FLAG_READ: the faststart pass is the only reopen expected
            raise OSError(f"unexpected reopen of the MP4 output (flags {flags})")
        return io.BytesIO(buf.getvalue())

    _encode_to(buf, reopen, frames, fps, crf, preset)
    return buf.getvalue()


def _encode_to(
    buf: io.BytesIO,
    reopen: Callable[[str, int, dict], io.BytesIO],
    frames: Iterable[np.ndarray],
    fps: float,
    crf: int,
    preset: str,
) -> None:
    options = {"movflags": "+faststart"}
    with av.open(buf, mode="w", format="mp4", options=options, io_open=reopen) as out:
        stream = None
        for frame in frames:
            if stream is None:
                h, w = frame.shape[:2]
                if w % 2 or h % 2:
                    raise ValueError(f"yuv420p needs even sizes, got {w}x{h}")
                stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height = w, h
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": preset}
            elif frame.shape[:2] != (stream.height, stream.width):
                raise ValueError("all frames must have the same size")
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            ):
                out.mux(packet)
        if stream is None:
            raise ValueError("no frames to encode")
        for packet in stream.encode():
            out.mux(packet)
