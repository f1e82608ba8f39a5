"""TryOnService over gRPC: validate up front, decode under limits, run the pipeline, encode.

A thin adapter: everything numeric lives in :mod:`services.tryon.pipeline`.
"""

from __future__ import annotations

import logging
import time

import cv2
import grpc
import numpy as np

from drape.common.v1 import common_pb2
from drape.tryon.v1 import tryon_service_pb2 as pb
from drape.tryon.v1 import tryon_service_pb2_grpc as pb_grpc
from services.common.analysis import person as P
from services.common.analysis.saliency import default_model as default_saliency
from services.common.errors import InvalidInputError
from services.common.images import ImageLimits, decode_image, encode_image
from services.common.interceptors import cancel_token
from services.common.media import FORMAT_ENUM, FORMAT_NAMES, response_meta
from services.common.server import ServiceApp
from services.common.validation import BACKEND_MAX, check_length, shown
from services.tryon import geometric
from services.tryon import hints as H
from services.tryon import registry as R
from services.tryon.person_cache import CachedPersonAnalyzer
from services.tryon.pipeline import GarmentInput, TryOnOptions, TryOnPipeline, check_garments

log = logging.getLogger("drape.tryon")

BACKENDS = ("", geometric.BACKEND)


def _box(x0: int, y0: int, x1: int, y1: int) -> pb.BoundingBox:
    return pb.BoundingBox(x=int(x0), y=int(y0), width=int(x1 - x0), height=int(y1 - y0))


def garment_pb(ga) -> pb.GarmentAnalysis:
    """The contract's ``GarmentAnalysis`` of an analysis."""
    return pb.GarmentAnalysis(
        category=H.CATEGORY_ENUM[ga.category],
        category_from_request=ga.category_source == "request",
        sleeve_length=H.SLEEVE_REPORTED.get(ga.sleeve or "", pb.SLEEVE_LENGTH_UNSPECIFIED),
        garment_length=H.LENGTH_REPORTED.get(
            (ga.category, ga.length), pb.GARMENT_LENGTH_UNSPECIFIED
        ),
        box=_box(*ga.bbox),
        confidence=float(ga.confidence),
    )


def _check_enum(value: int, enum, field: str) -> None:
    if value not in enum.values():
        raise InvalidInputError(
            "OPTION_OUT_OF_RANGE",
            f"{field} {value} is not a {enum.DESCRIPTOR.name} value; expected one of "
            f"{', '.join(f'{n} ({v})' for n, v in enum.items())}",
            field=field,
        )


def validate(request: pb.TryOnRequest, backends: tuple[str, ...] = BACKENDS) -> list[R.Hints]:
    """Checks that need no decoding, run before any heavy work.

    Args:
        request: the call.
        backends: names a request may give (``""`` is the deployment's default).

    Returns:
        Each garment's checked hints, in request order (empty hints for a garment_id).

    Raises:
        InvalidInputError: FIELD_TOO_LONG, BACKEND_UNAVAILABLE, OPTION_OUT_OF_RANGE, NO_GARMENTS,
            TOO_MANY_GARMENTS, GARMENT_SOURCE_MISSING, GARMENT_SOURCE_CONFLICT,
            GARMENT_ID_INVALID, GARMENT_HINT_CONFLICT, GARMENT_HINT_INCOMPLETE,
            GARMENT_CATEGORY_INVALID, GARMENT_SLEEVE_INVALID, GARMENT_LENGTH_INVALID.
    """
    check_length(request.backend, "backend", BACKEND_MAX)
    if request.backend not in backends:
        raise InvalidInputError(
            "BACKEND_UNAVAILABLE",
            f"backend {shown(request.backend)} is not available here; available: "
            f"{', '.join(b for b in backends if b)}",
            field="backend",
        )
    if not 0 <= request.quality <= 100:
        raise InvalidInputError(
            "OPTION_OUT_OF_RANGE", f"quality must be 0-100, got {request.quality}", field="quality"
        )
    _check_enum(request.tuck, pb.TuckStyle, "tuck")
    _check_enum(request.person_selection, pb.PersonSelection, "person_selection")
    _check_enum(request.output_format, common_pb2.ImageFormat, "output_format")
    check_garments(list(request.garments))  # counts only: before decoding anything
    return [check_garment(g, f"garments[{i}]") for i, g in enumerate(request.garments)]


def check_garment(g: pb.Garment, path: str) -> R.Hints:
    """One garment of a request: exactly one source, a well-formed id, known hints.

    Raises:
        InvalidInputError: GARMENT_SOURCE_MISSING, GARMENT_SOURCE_CONFLICT (field ``path``),
            GARMENT_ID_INVALID, GARMENT_HINT_CONFLICT and the hint refusals of
            :func:`services.tryon.hints.hints_from_proto`.
    """
    has_flat, has_id = g.HasField("flat_lay"), bool(g.garment_id)
    if not (has_flat or has_id):
        raise InvalidInputError(
            "GARMENT_SOURCE_MISSING",
            f"{path} has neither flat_lay nor garment_id; send exactly one",
            field=path,
        )
    if has_flat and has_id:
        raise InvalidInputError(
            "GARMENT_SOURCE_CONFLICT",
            f"{path} has both flat_lay and garment_id; send exactly one",
            field=path,
        )
    if has_id:
        R.check_garment_id(g.garment_id, f"{path}.garment_id")
        hint = H.any_hint(g.category, g.sleeve, g.length)
        if hint:
            raise InvalidInputError(
                "GARMENT_HINT_CONFLICT",
                f"{path}.{hint} sent with a garment_id: a registered garment keeps the hints "
                "it was registered with; register the flat-lay again with these hints",
                field=f"{path}.{hint}",
            )
        return R.Hints()
    return H.hints_from_proto(g.category, g.sleeve, g.length, f"{path}.")


class TryOnServicer(pb_grpc.TryOnServiceServicer):
    """drape.tryon.v1.TryOnService on the embedded default backend."""

    def __init__(self, app: TryOnApp) -> None:
        self.app = app

    def TryOn(self, request, context):  # noqa: N802 - gRPC method name
        if self.app.experiments is not None:  # a unit id: assign, apply the variant's recipe
            self.app.experiments.apply_tryon(request)
        hints = validate(request, self.app.request_backends)
        pipeline, extra, warnings = self.app.backend_for(request)
        registry = self.app.registry
        t0 = time.perf_counter()
        # Registered garments first: an unknown id is refused before any decoding.
        known = {}
        for i, g in enumerate(request.garments):
            if g.garment_id:
                known[i] = registry.get(g.garment_id)
                if known[i] is None:
                    raise R.unknown_id(g.garment_id, f"garments[{i}].garment_id")
        limits = self.app.image_limits
        person = decode_image(request.person.data, limits, field="person.data").rgb()
        garments, fresh = [], {}
        for i, g in enumerate(request.garments):
            if i in known:
                garments.append(GarmentInput(None, analysis=known[i]))
                continue
            # The same bytes and hints analysed before (in this process) are not analysed
            # again; the flat-lay is not even decoded.
            gid = registry.id_for(g.flat_lay.data, hints[i])
            cached = registry.get(gid, use_store=False)
            if cached is not None:
                garments.append(GarmentInput(None, analysis=cached))
                continue
            img = decode_image(g.flat_lay.data, limits, field=f"garments[{i}].flat_lay.data")
            h = hints[i]
            garments.append(GarmentInput(img.pixels, h.category, h.sleeve, h.length))
            fresh[i] = gid
        decode_s = time.perf_counter() - t0
        options = TryOnOptions(
            refine=request.refine if request.HasField("refine") else True,
            selection=(
                P.PersonSelection.REFUSE
                if request.person_selection == pb.PERSON_SELECTION_REFUSE_MULTIPLE
                else P.PersonSelection.MOST_PROMINENT
            ),
            tuck="tucked" if request.tuck == pb.TUCK_STYLE_TUCKED else "untucked",
        )
        result = pipeline.run(person, garments, options, token=cancel_token(context), **extra)
        if pipeline is self.app.pipeline:  # the diffusion backend cuts out without SAM
            for i, gid in fresh.items():
                registry.put(gid, result.garments[i], persist=False)
        t1 = time.perf_counter()
        fmt = FORMAT_NAMES[request.output_format]
        quality = request.quality or 92
        data = encode_image(result.image, fmt, quality)
        timings = {"decode": decode_s, **result.timings, "encode": time.perf_counter() - t1}
        resp = pb.TryOnResponse(
            image=common_pb2.Image(
                data=data,
                format=FORMAT_ENUM[fmt],
                width=result.image.shape[1],
                height=result.image.shape[0],
            ),
            refined=result.refined,
        )
        if request.return_garment_mask:
            alpha = (np.clip(result.garment_alpha, 0, 1) * 255 + 0.5).astype(np.uint8)
            resp.garment_mask.CopyFrom(
                common_pb2.Image(
                    data=encode_image(np.repeat(alpha[..., None], 3, axis=2), "PNG"),
                    format=common_pb2.IMAGE_FORMAT_PNG,
                    width=alpha.shape[1],
                    height=alpha.shape[0],
                )
            )
        pa = result.person
        resp.person.CopyFrom(
            pb.PersonAnalysis(
                box=_box(*pa.box),
                framing=pb.BODY_FRAMING_FULL_BODY
                if pa.framing == "full"
                else pb.BODY_FRAMING_HALF_BODY,
                facing=pb.FACING_FRONT if pa.facing == "front" else pb.FACING_THREE_QUARTER,
                persons_detected=pa.persons,
                confidence=float(np.mean(pa.landmarks[[P.L_SHOULDER, P.R_SHOULDER], 3])),
            )
        )
        for ga in result.garments:
            resp.garments.append(garment_pb(ga))
        meta = response_meta(result.backend, result.backend_version, timings)
        if hasattr(result, "seed"):  # a diffusion backend ran
            resp.diffusion_seed = result.seed
        for reason, message in [*result.warnings, *warnings]:
            meta.warnings.add(reason=reason, message=message)
        resp.meta.CopyFrom(meta)
        return resp

    def RegisterGarment(self, request, context):  # noqa: N802 - gRPC method name
        if not request.HasField("flat_lay"):
            raise InvalidInputError(
                "GARMENT_SOURCE_MISSING", "flat_lay is required", field="flat_lay"
            )
        hints = H.hints_from_proto(request.category, request.sleeve, request.length)
        reg = R.register_garment(
            self.app.registry,
            request.flat_lay.data,
            hints,
            self.app.image_limits,
            self.app.pipeline.segmenter,
        )
        return pb.RegisterGarmentResponse(
            meta=response_meta("", self.app.registry.version, reg.timings),
            garment_id=reg.garment_id,
            analysis=garment_pb(reg.analysis),
            cached=reg.cached,
        )


class TryOnApp(ServiceApp):
    """The try-on service: loads the person-analysis models once, warms up on a real photo
    that ships with scikit-image (not a shopper's)."""

    name = "tryon"

    def __init__(self, settings) -> None:
        self.settings = settings
        self.image_limits = ImageLimits.from_settings(settings)
        self.pipeline: TryOnPipeline | None = None
        # Neural backends (see README "Neural backends"): the default and the per-request
        # allow-list decide which backends load at start-up.
        self.default_backend = settings.tryon_backend
        self.request_backends = ("", settings.tryon_backend, *settings.tryon_request_backends)
        self.diffusion = None
        # Registered garments (RegisterGarment, Garment.garment_id): opened in load().
        self.registry: R.GarmentRegistry | None = None
        self.experiments = None  # automatic experiment assignment (services/experiments)

    def register(self, server: grpc.Server, ctx) -> list[str]:
        pb_grpc.add_TryOnServiceServicer_to_server(TryOnServicer(self), server)
        ctx.metrics.registry.register(_GarmentCacheCollector(self))
        from services.experiments.apply import RequestAssigner

        self.experiments = RequestAssigner(self.settings, ctx.metrics)
        return [pb.DESCRIPTOR.services_by_name["TryOnService"].full_name]

    def load(self) -> None:
        for name in self.request_backends:
            if name not in BACKENDS and name != "diffusion":
                from services.common.errors import ConfigError

                raise ConfigError(
                    "DRAPE_TRYON_REQUEST_BACKENDS", f"unknown try-on backend {name!r}"
                )
        self.registry = R.registry_from_settings(self.settings)
        if self.experiments is not None:
            self.experiments.load()
        # The learned garment cut-out: a missing or corrupted model file (its SHA-256 is
        # checked) stops start-up here and health stays NOT_SERVING.
        default_saliency()
        # Calls already run side by side (up to max_concurrent_rpcs, about one per core):
        # OpenCV's own pool on top of them oversubscribes the cores and lowers throughput.
        if self.settings.opencv_threads > 0:
            cv2.setNumThreads(self.settings.opencv_threads)
        # The same photo with another garment skips the person analysis (see person_cache).
        analyzer = CachedPersonAnalyzer(
            P.PersonAnalyzer(), size=self.settings.tryon_person_cache_size
        )
        self.pipeline = TryOnPipeline(
            analyzer, refine_fn=make_refine_fn(), segmenter=load_segmenter(self.settings)
        )
        if "diffusion" in self.request_backends:
            # A missing or corrupted model directory raises here: health stays NOT_SERVING.
            from services.tryon.diffusion import DiffusionTryOnPipeline

            self.diffusion = DiffusionTryOnPipeline.from_settings(
                self.settings, self.pipeline.analyzer, make_refine_fn()
            )

    def backend_for(self, request: pb.TryOnRequest):
        """``(pipeline, extra run() arguments, extra warnings)`` for a validated request."""
        name = request.backend or self.default_backend
        has_options = request.HasField("diffusion")
        if name != "diffusion":
            ignored = [
                ("DIFFUSION_OPTIONS_IGNORED", f"the {name} backend has no diffusion options")
            ]
            return self.pipeline, {}, ignored if has_options else []
        from services.tryon.diffusion import DiffusionParams, check_params

        d = request.diffusion
        params = DiffusionParams(
            steps=d.steps or None,
            guidance=d.guidance_scale if d.HasField("guidance_scale") else None,
            seed=d.seed if d.HasField("seed") else None,
        )
        check_params(params, self.diffusion.max_steps)  # before decoding anything
        return self.diffusion, {"diffusion": params}, []

    def warmup(self) -> None:
        from skimage import data

        from services.tryon.flatlays import draw_garment

        tee = [GarmentInput(draw_garment("tshirt").image)]
        try:
            self.pipeline.run(data.astronaut(), tee)
        except InvalidInputError as exc:
            # Code paths and caches are warm either way; a configured segmenter may cut
            # the drawn warm-up garment differently and refuse it, which is no start-up fault.
            log.warning("try-on warm-up input refused: %s", exc)
        if self.diffusion is not None:
            from services.tryon.diffusion import DiffusionParams

            self.diffusion.run(data.astronaut(), tee, diffusion=DiffusionParams(steps=2, seed=0))

    def close(self) -> None:
        if self.pipeline is not None:
            self.pipeline.analyzer.close()


class _GarmentCacheCollector:
    """``drape_garment_cache_lookups_total{outcome}`` (hit: in process; store_hit; miss) and
    ``drape_garment_cache_entries``, read from the registry at scrape time."""

    def __init__(self, app: TryOnApp) -> None:
        self.app = app

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        reg = self.app.registry
        lookups = CounterMetricFamily(
            "drape_garment_cache_lookups",
            "Registered-garment lookups by outcome (hit: in process; store_hit: shared store).",
            labels=["outcome"],
        )
        entries = GaugeMetricFamily(
            "drape_garment_cache_entries", "Garment analyses held in process."
        )
        if reg is not None:
            for outcome, n in (("hit", reg.hits), ("store_hit", reg.store_hits),
                               ("miss", reg.misses)):  # fmt: skip
                lookups.add_metric([outcome], n)
            entries.add_metric([], len(reg))
        yield lookups
        yield entries


def load_segmenter(settings):
    """The garment cut-out the settings ask for: None for the classical one, else SAM's
    ``segment`` (verified and loaded here; a missing or corrupted model raises, naming the
    path, and health stays NOT_SERVING)."""
    if settings.garment_segmenter != "sam":
        return None
    from services.neural import garment_sam
    from services.neural.repository import ModelRef, open_model
    from services.neural.sam import KIND

    name = "DRAPE_GARMENT_SAM_MODEL"
    ref = ModelRef.parse(settings.garment_sam_model, name)
    model = open_model(settings.model_dir, ref, KIND, garment_sam.REQUIRED, name)
    return garment_sam.load(model, settings.neural_runtime, settings.ort_providers).segment


def make_refine_fn():
    """The classical refiner as a pipeline ``refine_fn``, called in-process (``refine=true``);
    None when the refiner is not installed."""
    try:
        from services.refiner.classical import refine
    except ImportError:  # the refiner stage is optional for the pipeline
        return None

    def refine_fn(comp, person, alpha, protect):
        # Restore from the composite, not the photo: outside the garment the composite
        # deliberately differs from the photo where the old garment was removed. The
        # protected pixels (face, hair, hands) are already the photo's own there.
        return refine(comp, comp, alpha, protect).image

    return refine_fn
