"""ExperimentService over gRPC: Assign, GetExperiment, ReportExposure.

A thin adapter over :mod:`.assignment` and :mod:`.store`.
"""

from __future__ import annotations

import datetime as dt
import logging

import grpc
from google.protobuf import timestamp_pb2

from drape.experiments.v1 import experiment_service_pb2 as pb
from drape.experiments.v1 import experiment_service_pb2_grpc as pb_grpc
from services.common import context as ctxmod
from services.common.errors import InvalidInputError, UnavailableError
from services.common.media import response_meta
from services.common.server import ServiceApp
from services.experiments.assignment import Assigner, Assignment
from services.experiments.definition import Experiment, Recipe
from services.experiments.ingest import EXPOSURE_TOPIC, ExposurePublisher, check_id, to_timestamp
from services.experiments.store import Exposure, Store, open_store

log = logging.getLogger("drape.experiments")

MAX_FUTURE = dt.timedelta(days=1)
_OUTPUT = {
    "": pb.OUTPUT_UNSPECIFIED,
    "still": pb.OUTPUT_STILL,
    "still+clip": pb.OUTPUT_STILL_AND_CLIP,
}
_UNIT = {"shopper": pb.UNIT_KIND_SHOPPER, "session": pb.UNIT_KIND_SESSION}


def recipe_pb(r: Recipe) -> pb.Recipe:
    m = pb.Recipe(
        output=_OUTPUT[r.output],
        tryon_backend=r.tryon_backend,
        motion_template=r.motion_template,
        animate_backend=r.animate_backend,
        roster_id=r.roster_id,
    )
    if r.refine is not None:
        m.refine = r.refine
    return m


def _ts(t: dt.datetime) -> timestamp_pb2.Timestamp:
    return to_timestamp(int(t.timestamp() * 1000))


def definition_pb(e: Experiment) -> pb.ExperimentDefinition:
    m = pb.ExperimentDefinition(
        id=e.id,
        description=e.description,
        unit_kind=_UNIT[e.unit],
        control=e.control,
        attribution_window_seconds=int(e.attribution_window.total_seconds()),
        variants=[
            pb.Variant(name=v.name, weight=v.weight, recipe=recipe_pb(v.recipe)) for v in e.variants
        ],
    )
    if e.start:
        m.start_time.CopyFrom(_ts(e.start))
    if e.stop:
        m.stop_time.CopyFrom(_ts(e.stop))
    return m


def _meta(experiment_id: str, variant: str = ""):
    meta = response_meta("", "")
    meta.experiment.experiment_id = experiment_id
    meta.experiment.variant = variant
    return meta


class ExperimentServicer(pb_grpc.ExperimentServiceServicer):
    """drape.experiments.v1.ExperimentService."""

    def __init__(self, app: ExperimentsApp) -> None:
        self.app = app

    def _assign(self, request, now: dt.datetime | None = None) -> Assignment:
        """The unit's assignment (stored the first time), checked against the request's
        variant."""
        tags = request.experiment
        a = self.app.assigner.assign(
            tags.experiment_id,
            tags.unit_id,
            now,
            field="experiment.experiment_id",
            unit_field="experiment.unit_id",
        )
        if tags.variant and tags.variant != a.variant.name:
            raise InvalidInputError(
                "VARIANT_MISMATCH",
                f"unit is assigned to variant {a.variant.name!r}, the request names "
                f"{tags.variant!r:.80}",
                field="experiment.variant",
            )
        ms = int((now.timestamp() if now else dt.datetime.now(dt.UTC).timestamp()) * 1000)
        if self.app.store.record_assignment(a.experiment.id, a.unit_id, a.variant.name, ms):
            self.app.metrics.assignments.labels(
                **self.app.metrics.experiment_labels(a.experiment.id, a.variant.name)
            ).inc()
        return a

    def Assign(self, request, context):  # noqa: N802 - gRPC method name
        a = self._assign(request)
        return pb.AssignResponse(
            meta=_meta(a.experiment.id, a.variant.name),
            variant=a.variant.name,
            recipe=recipe_pb(a.variant.recipe),
            bucket=a.bucket,
        )

    def GetExperiment(self, request, context):  # noqa: N802
        exp = self.app.assigner.get(request.experiment.experiment_id, "experiment.experiment_id")
        return pb.GetExperimentResponse(
            meta=_meta(exp.id), experiment=definition_pb(exp), running=exp.running()
        )

    def ReportExposure(self, request, context):  # noqa: N802
        # Validate everything before anything is stored or published.
        self.app.assigner.get(request.experiment.experiment_id, "experiment.experiment_id")
        check_id(request.product_id, "product_id", "PRODUCT_ID_INVALID")
        now = dt.datetime.now(dt.UTC)
        when = now
        if request.HasField("time"):
            t = request.time
            if not 0 < t.seconds < 253402300800 or not 0 <= t.nanos < 10**9:
                raise InvalidInputError(
                    "EXPOSURE_TIME_INVALID", "time is outside 1970-9999", field="time"
                )
            when = t.ToDatetime(dt.UTC)
            if when > now + MAX_FUTURE:
                raise InvalidInputError(
                    "EXPOSURE_TIME_INVALID",
                    f"time {when.isoformat()} is more than a day in the future",
                    field="time",
                )
        a = self._assign(request, when)
        call = ctxmod.current()
        event_id = request.request_id or (call.request_id if call else ctxmod.new_id())
        e = Exposure(
            event_id=event_id,
            experiment_id=a.experiment.id,
            variant=a.variant.name,
            unit_id=a.unit_id,
            product_id=request.product_id,
            ts_ms=int(when.timestamp() * 1000),
        )
        if self.app.publisher is not None:
            # Published before it is stored: a failed publish stores nothing, so the
            # caller's retry (same request_id) publishes again; consumers dedup on event_id.
            try:
                self.app.publisher.publish(e).get(timeout=15)
            except Exception as exc:  # noqa: BLE001 - the broker, not the caller
                raise UnavailableError(
                    "EXPOSURE_PUBLISH_FAILED",
                    f"the exposure could not be published ({exc.__class__.__name__}); retry",
                ) from None
        fresh = self.app.store.add_exposure(e)
        if fresh:
            self.app.metrics.exposures.labels(
                **self.app.metrics.experiment_labels(e.experiment_id, e.variant)
            ).inc()
        return pb.ReportExposureResponse(
            meta=_meta(a.experiment.id, a.variant.name),
            variant=a.variant.name,
            event_id=event_id,
            duplicate=not fresh,
        )


class ExperimentsApp(ServiceApp):
    """The experiment service: definitions from DRAPE_EXPERIMENTS_FILE, the store at
    DRAPE_EXPERIMENTS_DB, exposures optionally published on Kafka.

    Args:
        settings: the process settings.
        store: a store to use instead of opening DRAPE_EXPERIMENTS_DB (tests, the demo).
        assigner: definitions to use instead of reading DRAPE_EXPERIMENTS_FILE.
        exposure_topic: where exposures are published (with
            DRAPE_EXPERIMENTS_PUBLISH_EXPOSURES).
    """

    name = "experiments"

    def __init__(
        self,
        settings,
        store: Store | None = None,
        assigner: Assigner | None = None,
        exposure_topic: str = EXPOSURE_TOPIC,
    ) -> None:
        self.exposure_topic = exposure_topic
        self.settings = settings
        self.store = store
        self._own_store = store is None
        self.assigner = assigner
        self.publisher: ExposurePublisher | None = None
        self.metrics = None

    def register(self, server: grpc.Server, ctx) -> list[str]:
        self.metrics = ctx.metrics
        # The metrics object is built by the shared bootstrap; the live-experiment list is
        # this service's setting.
        ctx.metrics.experiments = frozenset(self.settings.metrics_experiments)
        pb_grpc.add_ExperimentServiceServicer_to_server(ExperimentServicer(self), server)
        return [pb.DESCRIPTOR.services_by_name["ExperimentService"].full_name]

    def load(self) -> None:
        if self.assigner is None:
            self.assigner = Assigner.from_settings(self.settings)
        if self.store is None:
            self.store = open_store(self.settings.experiments_db)
        if self.settings.experiments_publish_exposures:
            try:
                self.publisher = ExposurePublisher(
                    self.settings.kafka_bootstrap_servers, self.settings, self.exposure_topic
                )
            except Exception as exc:  # noqa: BLE001 - a start-up error naming the setting
                from services.common.errors import ConfigError

                raise ConfigError(
                    "DRAPE_KAFKA_BOOTSTRAP_SERVERS",
                    f"cannot reach the brokers for exposures: {exc.__class__.__name__}: {exc}",
                ) from None
        log.info("experiments loaded", extra={"experiments": len(self.assigner.experiments)})

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
        if self.store is not None and self._own_store:
            self.store.close()
