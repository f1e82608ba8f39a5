"""RefinerService over gRPC: decode under limits, validate, run the classical refiner.

Try-on calls the refiner in-process (``refine=true``); this service is for callers that
composite elsewhere, and for deployments that run the refiner apart.
"""

from __future__ import annotations

import time

import grpc
import numpy as np

from drape.common.v1 import common_pb2
from drape.refiner.v1 import refiner_service_pb2 as pb
from drape.refiner.v1 import refiner_service_pb2_grpc as pb_grpc
from services.common.errors import InvalidInputError
from services.common.images import ImageLimits, decode_image, encode_image
from services.common.interceptors import cancel_token
from services.common.media import FORMAT_ENUM, FORMAT_NAMES, response_meta
from services.common.server import ServiceApp
from services.common.validation import BACKEND_MAX, check_enum, check_length, shown

BACKEND = "classical"
VERSION = "classical/0.1.0"


def _mask(image: common_pb2.Image, limits: ImageLimits, field: str, shape) -> np.ndarray | None:
    """A mask image (any format; the first channel, or alpha when present) as 0..1 floats."""
    if not image.data:
        return None
    img = decode_image(image.data, limits, field=f"{field}.data")
    if img.pixels.shape[:2] != shape:
        raise InvalidInputError(
            "MASK_SIZE_MISMATCH",
            f"{field} is {img.width} x {img.height}; the composite is {shape[1]} x {shape[0]}",
            field=field,
        )
    channel = img.pixels[..., 3] if img.has_alpha else img.pixels[..., 0]
    return channel.astype(np.float32) / 255.0


def validate(request: pb.RefineRequest) -> None:
    """Bounds and enums of a request, before anything else reads it.

    Raises:
        InvalidInputError: FIELD_TOO_LONG (``backend``), OPTION_OUT_OF_RANGE
            (``output_format`` not an ImageFormat).
    """
    check_length(request.backend, "backend", BACKEND_MAX)
    check_enum(request.output_format, common_pb2.ImageFormat, "output_format")


class RefinerServicer(pb_grpc.RefinerServiceServicer):
    """drape.refiner.v1.RefinerService on the classical backend."""

    def __init__(self, app: RefinerApp) -> None:
        self.app = app

    def Refine(self, request, context):  # noqa: N802 - gRPC method name
        from services.refiner.classical import refine

        validate(request)
        if request.backend not in self.app.request_backends:
            raise InvalidInputError(
                "BACKEND_UNAVAILABLE",
                f"backend {shown(request.backend)} is not available here; available: "
                f"{', '.join(b for b in self.app.request_backends if b)}",
                field="backend",
            )
        backend = request.backend or self.app.default_backend
        strength = request.strength if request.HasField("strength") else 1.0
        if not 0.0 <= strength <= 1.0:
            raise InvalidInputError(
                "OPTION_OUT_OF_RANGE", f"strength must be 0-1, got {strength:g}", field="strength"
            )
        if not 0 <= request.quality <= 100:
            raise InvalidInputError(
                "OPTION_OUT_OF_RANGE",
                f"quality must be 0-100, got {request.quality}",
                field="quality",
            )
        t0 = time.perf_counter()
        limits = self.app.image_limits
        comp = decode_image(request.composite.data, limits, field="composite.data").rgb()
        shape = comp.shape[:2]
        original = comp
        if request.original.data:
            original = decode_image(request.original.data, limits, field="original.data").rgb()
            if original.shape != comp.shape:
                raise InvalidInputError(
                    "ORIGINAL_SIZE_MISMATCH",
                    f"the original is {original.shape[1]} x {original.shape[0]}; the composite is"
                    f" {shape[1]} x {shape[0]}",
                    field="original",
                )
        garment = _mask(request.garment_mask, limits, "garment_mask", shape)
        if garment is None:
            garment = np.ones(shape, np.float32)  # unset: the whole image may change
        elif not (garment >= 0.5).any():
            raise InvalidInputError(
                "MASK_EMPTY", "the garment mask has no pixel at or above 128", field="garment_mask"
            )
        protect = _mask(request.protect_mask, limits, "protect_mask", shape)
        protect = None if protect is None else protect >= 0.5
        decode_s = time.perf_counter() - t0
        seed = (
            request.seed
            if request.HasField("seed")
            else int(np.random.default_rng().integers(2**31))
        )
        if backend == "diffusion":  # neural backend (services/refiner/diffusion.py)
            net = self.app.diffusion
            result = net.refine(comp, original, garment, protect, strength, seed,
                                token=cancel_token(context))  # fmt: skip
            version = net.version_label
        else:
            result = refine(comp, original, garment, protect, strength=strength, seed=seed)
            backend, version = BACKEND, VERSION
        t1 = time.perf_counter()
        fmt = FORMAT_NAMES[request.output_format]
        data = encode_image(result.image, fmt, request.quality or 92)
        timings = {"decode": decode_s, **result.stages, "encode": time.perf_counter() - t1}
        return pb.RefineResponse(
            meta=response_meta(backend, version, timings),
            image=common_pb2.Image(
                data=data, format=FORMAT_ENUM[fmt], width=comp.shape[1], height=comp.shape[0]
            ),
            seed=seed,
        )


class RefinerApp(ServiceApp):
    """The refiner service (nothing to load for the classical backend)."""

    name = "refiner"

    def __init__(self, settings) -> None:
        self.image_limits = ImageLimits.from_settings(settings)
        self.settings = settings
        # The default backend and the per-request allow-list; each one named loads at start.
        self.default_backend = settings.refiner_backend
        self.request_backends = ("", settings.refiner_backend, *settings.refiner_request_backends)
        self.diffusion = None

    def load(self) -> None:
        from services.common.errors import ConfigError

        for name in self.request_backends:
            if name not in ("", BACKEND, "diffusion"):
                raise ConfigError("DRAPE_REFINER_REQUEST_BACKENDS", f"unknown backend {name!r}")
        if "diffusion" in self.request_backends:
            # Missing or corrupted weights raise here: health stays NOT_SERVING.
            from services.refiner.diffusion import DiffusionRefiner

            self.diffusion = DiffusionRefiner.from_settings(self.settings)

    def register(self, server: grpc.Server, ctx) -> list[str]:
        pb_grpc.add_RefinerServiceServicer_to_server(RefinerServicer(self), server)
        return [pb.DESCRIPTOR.services_by_name["RefinerService"].full_name]

    def warmup(self) -> None:
        from services.refiner.classical import refine

        rgb = np.full((64, 64, 3), 128, np.uint8)
        alpha = np.zeros((64, 64), np.float32)
        alpha[16:48, 16:48] = 1
        refine(rgb, rgb, alpha, None)
        if self.diffusion is not None:
            self.diffusion.refine(rgb, rgb, alpha, None)
