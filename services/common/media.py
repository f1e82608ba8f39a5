"""MediaService: the shared decoders behind a gRPC surface, hosted by every server.

A storefront calls InspectImage before spending a try-on call on an upload; operators use
it to see exactly what a service would make of a file. It is also the smallest complete
example of a Drape servicer: validate → transport-free work → response with meta.
"""

from __future__ import annotations

import time

import grpc
import numpy as np

from drape.common.v1 import common_pb2, media_service_pb2, media_service_pb2_grpc
from services.common import context as ctxmod
from services.common.errors import InvalidInputError
from services.common.images import ImageLimits, decode_image, encode_image
from services.common.server import ServiceApp
from services.common.validation import MIME_TYPE_MAX, check_enum, check_length
from services.common.video import VideoLimits, decode_video

# drape.common.v1.ImageFormat -> encoder name; unspecified means PNG (exact garment edges).
FORMAT_NAMES = {
    common_pb2.IMAGE_FORMAT_UNSPECIFIED: "PNG",
    common_pb2.IMAGE_FORMAT_PNG: "PNG",
    common_pb2.IMAGE_FORMAT_JPEG: "JPEG",
    common_pb2.IMAGE_FORMAT_WEBP: "WEBP",
}
FORMAT_ENUM = {
    "PNG": common_pb2.IMAGE_FORMAT_PNG,
    "JPEG": common_pb2.IMAGE_FORMAT_JPEG,
    "WEBP": common_pb2.IMAGE_FORMAT_WEBP,
}


def response_meta(
    backend: str = "",
    backend_version: str = "",
    timings: dict[str, float] | None = None,
    experiment=None,
) -> common_pb2.ResponseMeta:
    """``ResponseMeta`` for the current call: ids and experiment tags echoed."""
    call = ctxmod.current()
    meta = common_pb2.ResponseMeta(backend=backend, backend_version=backend_version)
    if call is not None:
        meta.request_id = call.request_id
        meta.trace_id = call.trace_id
        meta.experiment.experiment_id = call.experiment_id
        meta.experiment.variant = call.variant
    for stage, seconds in (timings or {}).items():
        meta.timings.add(stage=stage, seconds=seconds)
    return meta


class MediaServicer(media_service_pb2_grpc.MediaServiceServicer):
    """Implements drape.common.v1.MediaService with the server's limits."""

    def __init__(
        self, image_limits: ImageLimits, video_limits: VideoLimits, max_message_bytes: int
    ) -> None:
        self.image_limits = image_limits
        self.video_limits = video_limits
        self.max_message_bytes = max_message_bytes

    def InspectImage(self, request, context):  # noqa: N802 - gRPC method name
        check_enum(request.output_format, common_pb2.ImageFormat, "output_format")
        t0 = time.perf_counter()
        img = decode_image(request.image.data, self.image_limits, field="image.data")
        timings = {"decode": time.perf_counter() - t0}
        resp = media_service_pb2.InspectImageResponse(
            source_format=img.source_format,
            source_mode=img.source_mode,
            source_width=img.source_size[0],
            source_height=img.source_size[1],
            exif_orientation=img.exif_orientation,
            width=img.width,
            height=img.height,
            channels=img.pixels.shape[2],
        )
        if request.return_normalized:
            t1 = time.perf_counter()
            fmt = FORMAT_NAMES[request.output_format]
            encoded = encode_image(img.pixels, fmt)
            # Leave room for the rest of the response; refuse with a reason rather than let
            # gRPC fail the send with a bare RESOURCE_EXHAUSTED after the work is done.
            if len(encoded) + 64 * 1024 > self.max_message_bytes:
                raise InvalidInputError(
                    "OUTPUT_TOO_LARGE",
                    f"the normalised {fmt} is {len(encoded)} bytes, over the server's message"
                    f" limit of {self.max_message_bytes}; ask for JPEG or WEBP",
                    field="output_format",
                )
            resp.normalized.data = encoded
            resp.normalized.format = FORMAT_ENUM[fmt]
            resp.normalized.width, resp.normalized.height = img.width, img.height
            timings["encode"] = time.perf_counter() - t1
        resp.meta.CopyFrom(response_meta("pillow", "decode/1", timings))
        return resp

    def InspectVideo(self, request, context):  # noqa: N802
        check_length(request.video.mime_type, "video.mime_type", MIME_TYPE_MAX)
        t0 = time.perf_counter()
        vid = decode_video(request.video.data, self.video_limits, field="video.data", max_side=256)
        return media_service_pb2.InspectVideoResponse(
            meta=response_meta("pyav", "decode/1", {"decode": time.perf_counter() - t0}),
            container=vid.container,
            codec=vid.codec,
            width=vid.width,
            height=vid.height,
            fps=vid.fps,
            frame_count=vid.frame_count,
            duration_seconds=vid.duration_seconds,
        )


class MediaApp(ServiceApp):
    """The MediaService as a :class:`services.common.server.ServiceApp`."""

    name = "media"

    def __init__(self, settings) -> None:
        self.servicer = MediaServicer(
            ImageLimits.from_settings(settings),
            VideoLimits.from_settings(settings),
            settings.max_message_bytes,
        )

    def register(self, server: grpc.Server, ctx) -> list[str]:
        media_service_pb2_grpc.add_MediaServiceServicer_to_server(self.servicer, server)
        return [media_service_pb2.DESCRIPTOR.services_by_name["MediaService"].full_name]

    def load(self) -> None:
        """Nothing to load: Pillow and FFmpeg are linked in."""

    def warmup(self) -> None:
        """Decode one tiny image so codec tables are initialised before the first call."""
        decode_image(encode_image(np.zeros((8, 8, 3), np.uint8)), self.servicer.image_limits)

    def close(self) -> None:
        """Nothing to release."""
