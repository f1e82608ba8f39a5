"""Experiments inside the other services: automatic assignment on TryOn and StartClip
requests that carry a unit id, the variant's recipe changing what is made, the catalog's
content hash, exposures on Kafka and orders/returns ingested from Kafka (real broker)."""

from __future__ import annotations

import threading

import grpc
import pytest
from kafka import KafkaConsumer, KafkaProducer
from skimage import data

from drape.animate.v1 import animate_service_pb2 as apb
from drape.animate.v1 import animate_service_pb2_grpc as apb_grpc
from drape.catalog.v1 import events_pb2 as cat_pb
from drape.common.v1 import common_pb2, operations_pb2
from drape.experiments.v1 import events_pb2 as ev_pb
from drape.experiments.v1 import experiment_service_pb2 as pb
from drape.experiments.v1 import experiment_service_pb2_grpc as pb_grpc
from drape.tryon.v1 import tryon_service_pb2 as tpb
from drape.tryon.v1 import tryon_service_pb2_grpc as tpb_grpc
from services.common.config import load_settings
from services.common.kafka import client_config, ensure_topics
from services.experiments import apply
from services.experiments.assignment import Assigner
from services.experiments.definition import load_definitions
from services.experiments.ingest import (
    EXPOSURE_TOPIC,
    ORDER_TOPIC,
    RETURN_TOPIC,
    KafkaIngestor,
    to_timestamp,
)
from services.experiments.server import ExperimentsApp
from services.experiments.store import SQLiteStore
from services.tryon.flatlays import draw_garment
from services.tryon.server import TryOnApp

from helpers import error_details, png, serving

DEFS = """\
[[experiment]]
id = "refine-ab"
[[experiment.variant]]
name = "refined"
refine = true
[[experiment.variant]]
name = "raw"
refine = false

[[experiment]]
id = "clip-ab"
[[experiment.variant]]
name = "still"
output = "still"
[[experiment.variant]]
name = "clip"
output = "still+clip"
motion_template = "upper-gestures"
roster_id = "studio-b"
"""


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    p = tmp_path_factory.mktemp("exp") / "experiments.toml"
    p.write_text(DEFS)
    return p


@pytest.fixture(scope="module")
def assigner(defs):
    return Assigner(load_definitions(defs))


def unit_in(assigner, exp: str, variant: str) -> str:
    return next(
        f"shopper-{i}"
        for i in range(1000)
        if assigner.assign(exp, f"shopper-{i}").variant.name == variant
    )


def _settings(defs, **kw):
    return load_settings(
        env={}, metrics_port=-1, grpc_address="127.0.0.1:0", experiments_file=str(defs),
        metrics_experiments=("refine-ab", "clip-ab"), **kw,
    )  # fmt: skip


def test_tryon_assigns_the_unit_and_applies_the_recipe(defs, assigner):
    settings = _settings(defs, metrics_variants=("raw",))
    photo = png(data.astronaut())
    tee = png(draw_garment("tshirt", "stripes", (30, 90, 200)).image)
    with serving(TryOnApp(settings), settings=settings) as (server, channel):
        stub = tpb_grpc.TryOnServiceStub(channel)

        def tryon(**exp):
            return stub.TryOn(
                tpb.TryOnRequest(
                    person=common_pb2.Image(data=photo),
                    garments=[tpb.Garment(flat_lay=common_pb2.Image(data=tee))],
                    experiment=common_pb2.Experiment(experiment_id="refine-ab", **exp),
                ),
                timeout=120,
            )

        raw_unit = unit_in(assigner, "refine-ab", "raw")
        r = tryon(unit_id=raw_unit)
        assert r.meta.experiment.variant == "raw" and not r.refined
        r = tryon(unit_id=unit_in(assigner, "refine-ab", "refined"))
        assert r.meta.experiment.variant == "refined" and r.refined
        # The request's own variant must agree with the assignment.
        with pytest.raises(grpc.RpcError) as err:
            tryon(unit_id=raw_unit, variant="refined")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_details(err.value)[0] == "VARIANT_MISMATCH"
        with pytest.raises(grpc.RpcError) as err:
            tryon(unit_id="two words")
        assert error_details(err.value)[0] == "INVALID_UNIT_ID"
        samples = {
            tuple(sorted(s.labels.items())): s.value
            for fam in server.metrics.registry.collect()
            if fam.name == "drape_experiment_assignments"
            for s in fam.samples
            if s.name.endswith("_total")
        }
        assert samples[(("experiment", "refine-ab"), ("variant", "raw"))] == 1
        # "refined" is not on DRAPE_METRICS_VARIANTS: bounded to "other".
        assert samples[(("experiment", "refine-ab"), ("variant", "other"))] == 1


def test_start_clip_follows_the_variant(defs, assigner):
    from services.animate.server import AnimateApp

    settings = _settings(defs, motion_max_seconds=3.0)
    still = png(data.astronaut())
    with serving(AnimateApp(settings), settings=settings) as (_server, channel):
        stub = apb_grpc.AnimateServiceStub(channel)

        def start(unit):
            return stub.StartClip(
                apb.StartClipRequest(
                    still=common_pb2.Image(data=still),
                    experiment=common_pb2.Experiment(experiment_id="clip-ab", unit_id=unit),
                    width=128,
                    height=128,
                    duration_seconds=0.3,
                    output=apb.ClipOutputOptions(preview_format=apb.PREVIEW_FORMAT_NONE),
                ),  # fmt: skip
                timeout=30,
            )

        with pytest.raises(grpc.RpcError) as err:
            start(unit_in(assigner, "clip-ab", "still"))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_details(err.value)[0] == "VARIANT_WITHOUT_CLIP"
        op = start(unit_in(assigner, "clip-ab", "clip"))  # no motion: the recipe's template
        msgs = list(stub.WatchClip(operations_pb2.OperationRef(operation_id=op.id), timeout=120))
        final = msgs[-1]
        assert final.result.motion_name == "upper-gestures", final.operation.error
        assert final.result.meta.experiment.variant == "clip"


def test_catalog_events_take_the_variant_recipe_into_the_content_hash(defs, assigner):
    from services.catalog_adapter.jobs import content_hash

    apply.set_process_assigner(assigner)
    try:
        ev = cat_pb.ProductUpserted(merchant_id="m", sku="s")
        assert apply.catalog_recipe(ev) == ()  # outside experiments: hashes unchanged
        ev.experiment.experiment_id = "clip-ab"
        ev.experiment.unit_id = unit_in(assigner, "clip-ab", "clip")
        parts = apply.catalog_recipe(ev)
        assert parts and ev.experiment.variant == "clip"
        assert ev.roster_id == "studio-b" and ev.deliverables.clips
        assert ev.deliverables.motion_template == "upper-gestures"
        ev2 = cat_pb.ProductUpserted(merchant_id="m", sku="s")
        ev2.experiment.experiment_id = "clip-ab"
        ev2.experiment.unit_id = unit_in(assigner, "clip-ab", "still")
        parts2 = apply.catalog_recipe(ev2)
        assert not ev2.deliverables.clips and parts2 != parts
        assert content_hash("still", "x", *parts) != content_hash("still", "x", *parts2)
        # Applying twice (a retried attempt) gives the same parts.
        assert apply.catalog_recipe(ev) == parts
        bad = cat_pb.ProductUpserted(merchant_id="m", sku="s")
        bad.experiment.experiment_id = "unknown-exp"
        bad.experiment.unit_id = "u1"
        with pytest.raises(Exception, match="no experiment"):
            apply.catalog_recipe(bad)
    finally:
        apply.set_process_assigner(None)


@pytest.mark.kafka
def test_exposures_on_kafka_and_orders_returns_ingested(
    kafka_broker, defs, assigner, make_server, tmp_path
):
    boot = kafka_broker.bootstrap
    topics = {f"{t}-it": 1 for t in (EXPOSURE_TOPIC, ORDER_TOPIC, RETURN_TOPIC)}
    ensure_topics(boot, topics)
    exp_t, order_t, ret_t = topics
    store = SQLiteStore(tmp_path / "k.db")
    settings = _settings(defs, kafka_bootstrap_servers=boot, experiments_publish_exposures=True)
    app = ExperimentsApp(settings, store=store, exposure_topic=exp_t)
    _server, channel = make_server(app, kafka_bootstrap_servers=boot)
    stub = pb_grpc.ExperimentServiceStub(channel)
    unit = unit_in(assigner, "clip-ab", "clip")
    stub.ReportExposure(
        pb.ReportExposureRequest(
            request_id="x-1",
            experiment=common_pb2.Experiment(experiment_id="clip-ab", unit_id=unit),
            product_id="sku-1",
            time=to_timestamp(1_790_000_000_000),
        ),  # fmt: skip
        timeout=30,
    )
    consumer = KafkaConsumer(
        exp_t, auto_offset_reset="earliest", consumer_timeout_ms=15000, **client_config(None, boot)
    )
    rec = next(iter(consumer))
    consumer.close()
    e = ev_pb.ExposureEvent.FromString(rec.value)
    assert (e.unit_id, e.variant, e.product_id, e.event_id) == (unit, "clip", "sku-1", "x-1")
    assert rec.key == unit.encode()

    producer = KafkaProducer(**client_config(None, boot))
    order = ev_pb.OrderPlaced(
        order_id="o-1", unit_id=unit, time=to_timestamp(1_790_000_000_000 + 3_600_000),
        lines=[ev_pb.OrderLine(product_id="sku-1", quantity=1)],
    )  # fmt: skip
    producer.send(order_t, order.SerializeToString())
    producer.send(order_t, order.SerializeToString())  # at least once: a duplicate
    producer.send(order_t, b"\xff\xff not protobuf")
    producer.send(order_t, ev_pb.OrderPlaced(order_id="o-2", unit_id=unit).SerializeToString())
    ret = ev_pb.ItemReturned(
        order_id="o-1", product_id="sku-1", quantity=1,
        time=to_timestamp(1_790_000_000_000 + 86_400_000),
    )  # fmt: skip
    producer.send(ret_t, ret.SerializeToString())
    producer.flush(30)
    producer.close()
    ing = KafkaIngestor(store, boot, "exp-it", topics=(exp_t, order_t, ret_t))
    stats = ing.run(threading.Event(), idle_exit=3.0)
    ing.close()
    assert (stats.exposures, stats.orders, stats.returns) == (1, 2, 1)
    assert stats.skipped == {"PAYLOAD_UNDECODABLE": 1, "ORDER_LINES_OUT_OF_RANGE": 1}
    assert store.exposure_counts("clip-ab") == {"clip": (1, 1)}  # the Kafka copy deduplicated
    assert store.attributed_orders("clip-ab", 86_400_000) == [
        ("o-1", "clip", 1_790_000_000_000 + 3_600_000, True)
    ]
    store.close()
