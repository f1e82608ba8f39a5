"""The steps a catalog job calls: fetch a reference, make a still, make a clip.

* :class:`ReferenceReader` (:mod:`services.catalog_adapter.fetch`) fetches garment and roster
  images by URI, under a policy: ``file://``, ``s3://`` (through the configured S3
  endpoint) and ``http(s)://``.
* :class:`EmbeddedStillRunner` runs try-on and the refiner in this process, with the person
  analysis of each roster photo cached (roster photos are few and reused by every product)
  and each product's garment registered once (:mod:`services.tryon.registry`: by content
  hash, in process and in ``DRAPE_GARMENT_STORE`` when set).
* :class:`GrpcStillRunner` calls ``drape.tryon.v1.TryOnService`` (which refines in-process
  on its side) when the services are deployed apart: ``RegisterGarment`` once per product
  garment, then ``TryOn`` by ``garment_id`` per stock model (with the flat-lay instead when
  the replica answering does not know the id: ``GARMENT_ID_UNKNOWN``).
* The clip step is a hook: :func:`load_clip_runner` imports ``module:factory`` from
  ``DRAPE_CATALOG_CLIP_RUNNER``; ``factory(settings)`` returns an object with ``backend``,
  ``version`` and ``make_clip(still_png, model, motion_template, token) -> list[ClipAsset]``.
  Until one is configured, :class:`NoClipRunner` fails clip requests with
  ``CLIPS_UNAVAILABLE`` (FAILED_PRECONDITION; not retryable, so the event is dead-lettered
  and can be replayed once clips are available, its stills being reused).

Error classes decide retries: :class:`InvalidInputError` and
:class:`FailedPreconditionError` are final; :class:`UnavailableError`,
:class:`ResourceExhaustedError`, :class:`DeadlineExceededError` and anything unexpected are
retried with backoff.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import importlib
import threading
from typing import Protocol

import numpy as np

from services.catalog_adapter.fetch import ReferenceReader
from services.catalog_adapter.roster import StockModel
from services.common.context import CancelToken
from services.common.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidInputError,
    ResourceExhaustedError,
    UnavailableError,
)
from services.common.images import ImageLimits, decode_image, encode_image

FORMAT_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
FORMAT_EXT = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


def is_retryable(exc: BaseException) -> bool:
    """Whether another attempt might succeed."""
    return not isinstance(exc, (InvalidInputError, FailedPreconditionError))


@dataclasses.dataclass(frozen=True)
class GarmentSpec:
    """A product's garment: the fetched bytes, optional hints (the analysis' words: category
    "top", sleeve "short", length "long"…) and, once registered, its garment id."""

    data: bytes
    category: str | None = None
    sleeve: str | None = None
    length: str | None = None
    garment_id: str | None = None

    @property
    def hints(self):
        from services.tryon.registry import Hints

        return Hints(self.category, self.sleeve, self.length)


@dataclasses.dataclass(frozen=True)
class MadeAsset:
    """An encoded asset a step produced."""

    kind: int  # drape.catalog.v1.AssetKind
    data: bytes
    mime: str
    ext: str
    width: int = 0
    height: int = 0


class CachingAnalyzer:
    """A :class:`~services.common.analysis.person.PersonAnalyzer` that remembers its last
    ``size`` results by photo content: roster photos are analysed once, not per product.

    Results are deep-copied on the way out so no caller can change a cached analysis.
    """

    def __init__(self, analyzer, size: int = 64) -> None:
        self.analyzer, self.size = analyzer, size
        self._cache: collections.OrderedDict[tuple, object] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def analyze(self, rgb: np.ndarray, selection=None, field: str = "person"):
        from services.common.analysis.person import PersonSelection

        selection = selection or PersonSelection.MOST_PROMINENT
        rgb = np.ascontiguousarray(rgb)
        key = (rgb.shape, hashlib.sha256(rgb.tobytes()).digest(), selection, field)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                return copy.deepcopy(self._cache[key])
        result = self.analyzer.analyze(rgb, selection, field=field)
        with self._lock:
            self.misses += 1
            self._cache[key] = result
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return copy.deepcopy(result)

    def close(self) -> None:
        self.analyzer.close()


class StillRunner(Protocol):
    backend: str
    version: str

    def warm(self, models: list[StockModel]) -> None:
        """Prepare for these roster photos (load models, cache analyses)."""

    def register(self, garment: GarmentSpec, field: str, token: CancelToken) -> GarmentSpec:
        """Analyse ``garment`` once (by content hash); the spec with its ``garment_id``.
        Refusals name fields under ``field`` (``garments[0]``)."""

    def make_still(
        self, model: StockModel, garments: list[GarmentSpec], fmt: str, token: CancelToken
    ) -> MadeAsset:
        """Dress ``model`` in ``garments`` (by ``garment_id`` where registered); the still
        encoded as ``fmt``."""


class EmbeddedStillRunner:
    """Try-on (geometric) and the classical refiner in this process; registered garments in
    ``registry`` (default: an in-process one of 64)."""

    def __init__(self, limits: ImageLimits, registry=None) -> None:
        from services.common.analysis.person import PersonAnalyzer
        from services.refiner import server as refiner
        from services.tryon import geometric
        from services.tryon.pipeline import TryOnPipeline
        from services.tryon.registry import GarmentRegistry
        from services.tryon.server import make_refine_fn

        self.limits = limits
        self.registry = registry or GarmentRegistry(64)
        self.registrations = 0  # garments analysed anew (not found by content hash)
        self.backend = geometric.BACKEND
        self.version = f"{geometric.VERSION}+{refiner.VERSION}"
        self.analyzer = CachingAnalyzer(PersonAnalyzer())
        self.pipeline = TryOnPipeline(self.analyzer, refine_fn=make_refine_fn())

    def warm(self, models: list[StockModel]) -> None:
        from services.common.errors import ConfigError

        for m in models:
            try:
                self.analyzer.analyze(m.rgb)
            except InvalidInputError as exc:
                raise ConfigError(
                    "DRAPE_CATALOG_ROSTERS_FILE", f"stock model {m.id!r} is unusable: {exc}"
                ) from None

    def register(self, garment: GarmentSpec, field: str, token: CancelToken) -> GarmentSpec:
        return dataclasses.replace(garment, garment_id=self._register(garment, field).garment_id)

    def _register(self, garment: GarmentSpec, field: str):
        from services.tryon.registry import register_garment

        reg = register_garment(
            self.registry, garment.data, garment.hints, self.limits, field=f"{field}.image_uri"
        )
        if not reg.cached:
            self.registrations += 1
        return reg

    def make_still(
        self, model: StockModel, garments: list[GarmentSpec], fmt: str, token: CancelToken
    ) -> MadeAsset:
        from services.tryon.pipeline import GarmentInput, TryOnOptions

        inputs = []
        for i, g in enumerate(garments):
            if g.garment_id:
                # Evicted since registration (a busy adapter): registering again is a
                # lookup when another replica stored it, else one more analysis.
                found = self.registry.get(g.garment_id)
                if found is None:
                    found = self._register(g, f"garments[{i}]").analysis
                inputs.append(GarmentInput(None, analysis=found))
                continue
            img = decode_image(g.data, self.limits, field=f"garments[{i}].image_uri")
            inputs.append(GarmentInput(img.pixels, g.category, g.sleeve, g.length))
        result = self.pipeline.run(model.rgb, inputs, TryOnOptions(refine=True), token=token)
        h, w = result.image.shape[:2]
        return MadeAsset(
            1, encode_image(result.image, fmt), FORMAT_MIME[fmt], FORMAT_EXT[fmt], w, h
        )

    def close(self) -> None:
        self.analyzer.close()


class GrpcStillRunner:
    """``TryOnService/TryOn`` on a remote server (the refiner runs there, in-process).

    Args:
        address: ``host:port``.
        timeout: seconds per call when the job's token has no deadline.
    """

    backend = "tryon-grpc"

    def __init__(
        self,
        address: str,
        timeout: float = 120.0,
        max_message_bytes: int = 64 << 20,
        settings=None,
    ):
        import grpc

        from drape.tryon.v1 import tryon_service_pb2_grpc
        from services.common.security import client_channel

        self.address, self.timeout = address, timeout
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        # TLS, mTLS and the bearer token from DRAPE_CLIENT_* (files re-read on change).
        self.channel = (
            client_channel(address, settings, options)
            if settings is not None
            else grpc.insecure_channel(address, options=options)
        )
        self.stub = tryon_service_pb2_grpc.TryOnServiceStub(self.channel)
        # The content hash needs the version before any call; the remote backend reports
        # its own in each response (kept in the asset metadata).
        from services.tryon import geometric

        self.version = f"grpc:{geometric.VERSION}"

    def warm(self, models: list[StockModel]) -> None:
        import grpc

        try:
            grpc.channel_ready_future(self.channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            from services.common.errors import ConfigError

            raise ConfigError(
                "DRAPE_CATALOG_TRYON_ADDRESS", f"no TryOnService answers at {self.address}"
            ) from None

    def _timeout(self, token: CancelToken) -> float:
        remaining = token.remaining()
        return self.timeout if remaining is None else max(remaining, 0.001)

    @staticmethod
    def _call_tags():
        from drape.common.v1 import common_pb2
        from services.common import context

        call = context.current()  # the product event: its id and experiment travel along
        experiment = common_pb2.Experiment(
            experiment_id=call.experiment_id if call else "", variant=call.variant if call else ""
        )
        return call, experiment

    @staticmethod
    def _hint_enums(g: GarmentSpec) -> dict:
        from services.tryon import hints as H

        return {
            "category": H.CATEGORY_ENUM.get(g.category or "", 0),
            "sleeve": H.SLEEVE_REPORTED.get(g.sleeve or "", 0),
            # A class's typical point on the body scale maps back onto the same class.
            "length": H.LENGTH_REPORTED.get((g.category, g.length), 0),
        }

    def register(self, garment: GarmentSpec, field: str, token: CancelToken) -> GarmentSpec:
        import grpc

        from drape.common.v1 import common_pb2
        from drape.tryon.v1 import tryon_service_pb2 as pb

        call, experiment = self._call_tags()
        req = pb.RegisterGarmentRequest(
            request_id=f"{call.request_id}.{field}.register"[:128] if call else "",
            experiment=experiment,
            flat_lay=common_pb2.Image(data=garment.data),
            **self._hint_enums(garment),
        )
        try:
            resp = self.stub.RegisterGarment(req, timeout=self._timeout(token))
        except grpc.RpcError as err:
            exc = rpc_error(err)
            exc.field = f"{field}.{exc.field or 'image_uri'}".replace(".flat_lay", ".image_uri")
            raise exc from None
        return dataclasses.replace(garment, garment_id=resp.garment_id)

    def make_still(
        self, model: StockModel, garments: list[GarmentSpec], fmt: str, token: CancelToken
    ) -> MadeAsset:
        import grpc

        from drape.common.v1 import common_pb2
        from drape.tryon.v1 import tryon_service_pb2 as pb
        from services.common.media import FORMAT_ENUM

        def garment(g: GarmentSpec, by_id: bool) -> pb.Garment:
            if by_id and g.garment_id:
                return pb.Garment(garment_id=g.garment_id)
            return pb.Garment(flat_lay=common_pb2.Image(data=g.data), **self._hint_enums(g))

        call, experiment = self._call_tags()
        req = pb.TryOnRequest(
            request_id=f"{call.request_id}.{model.id}"[:128] if call else "",
            experiment=experiment,
            person=common_pb2.Image(data=model.encoded),
            garments=[garment(g, True) for g in garments],
            output_format=FORMAT_ENUM[fmt],
        )
        try:
            try:
                resp = self.stub.TryOn(req, timeout=self._timeout(token))
            except grpc.RpcError as err:
                if rpc_error(err).reason != "GARMENT_ID_UNKNOWN":
                    raise
                # A replica that shares no garment store with the one that registered (or
                # evicted it): the flat-lays themselves, which any replica can analyse.
                del req.garments[:]
                req.garments.extend(garment(g, False) for g in garments)
                resp = self.stub.TryOn(req, timeout=self._timeout(token))
        except grpc.RpcError as err:
            raise rpc_error(err) from None
        return MadeAsset(
            1, resp.image.data, FORMAT_MIME[fmt], FORMAT_EXT[fmt], resp.image.width,
            resp.image.height,
        )  # fmt: skip

    def close(self) -> None:
        self.channel.close()


def rpc_error(err) -> Exception:
    """A remote service's failure as the matching Drape error (so retries classify it)."""
    import grpc
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    reason, field = "", None
    st = rpc_status.from_call(err)
    for detail in st.details if st else ():
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad) and bad.field_violations:
            field = bad.field_violations[0].field
    code, message = err.code(), err.details() or ""
    by_code = {
        grpc.StatusCode.INVALID_ARGUMENT: (InvalidInputError, "INVALID_ARGUMENT"),
        grpc.StatusCode.FAILED_PRECONDITION: (FailedPreconditionError, "FAILED_PRECONDITION"),
        grpc.StatusCode.RESOURCE_EXHAUSTED: (ResourceExhaustedError, "RESOURCE_EXHAUSTED"),
        grpc.StatusCode.UNAVAILABLE: (UnavailableError, "SERVICE_UNAVAILABLE"),
        grpc.StatusCode.DEADLINE_EXCEEDED: (DeadlineExceededError, "DEADLINE_EXCEEDED"),
    }
    cls, default = by_code.get(code, (InternalError, "INTERNAL"))
    return cls(reason or default, f"try-on service: {message}", field=field)


class ClipRunner(Protocol):
    backend: str
    version: str

    def make_clip(
        self, still_png: bytes, model: StockModel, motion_template: str, token: CancelToken
    ) -> list[MadeAsset]:
        """The clip (kind CLIP) and optionally its preview and poster, from the still."""


class NoClipRunner:
    """The clip step before an animate runner is configured."""

    backend = ""
    version = "none"

    def make_clip(self, still_png, model, motion_template, token) -> list[MadeAsset]:
        raise FailedPreconditionError(
            "CLIPS_UNAVAILABLE",
            "clips are not available in this deployment (no DRAPE_CATALOG_CLIP_RUNNER "
            "configured); the stills were made",
            field="deliverables.clips",
        )


def load_clip_runner(spec: str, settings) -> ClipRunner:
    """The clip step named by ``module:factory`` (``factory(settings)``), or
    :class:`NoClipRunner` for an empty spec.

    Raises:
        ConfigError: when the factory cannot be imported.
    """
    if not spec:
        return NoClipRunner()
    from services.common.errors import ConfigError

    module, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr or "make_clip_runner")
    except (ImportError, AttributeError) as exc:
        raise ConfigError("DRAPE_CATALOG_CLIP_RUNNER", f"cannot load {spec!r}: {exc}") from None
    return factory(settings)


def make_still_runner(settings) -> StillRunner:
    """The still step chosen by ``DRAPE_CATALOG_PIPELINE``."""
    if settings.catalog_pipeline == "grpc":
        return GrpcStillRunner(
            settings.catalog_tryon_address,
            max_message_bytes=settings.max_message_bytes,
            settings=settings,
        )
    from services.tryon.registry import registry_from_settings

    # The embedded pipeline cuts garments out classically (no SAM in the adapter).
    registry = registry_from_settings(settings, segmenter="classical")
    return EmbeddedStillRunner(ImageLimits.from_settings(settings), registry)


__all__ = [
    "CachingAnalyzer",
    "ClipRunner",
    "EmbeddedStillRunner",
    "GarmentSpec",
    "GrpcStillRunner",
    "MadeAsset",
    "NoClipRunner",
    "ReferenceReader",
    "encode_image",
    "is_retryable",
    "load_clip_runner",
    "make_still_runner",
]
