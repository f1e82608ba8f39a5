"""A protobuf catalog event through the real broker (Tansu), consumed by a consumer group."""

from __future__ import annotations

import time
import uuid

import pytest
from google.protobuf import timestamp_pb2
from kafka import KafkaConsumer, KafkaProducer

from drape.catalog.v1 import events_pb2
from drape.common.v1 import common_pb2
from services.common.kafka import FAST_GROUP, TOPIC_PRODUCT, client_config, ensure_topics

pytestmark = pytest.mark.kafka


def test_product_event_round_trip_through_consumer_group(kafka_broker):
    topic = f"{TOPIC_PRODUCT}.test-{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_broker.bootstrap, {topic: 2})
    ensure_topics(kafka_broker.bootstrap, {topic: 2})  # idempotent
    events = []
    for i in range(5):
        ev = events_pb2.ProductUpserted(
            event_id=f"evt-{i}",
            merchant_id="acme",
            sku=f"SKU-{i}",
            experiment=common_pb2.Experiment(experiment_id="returns-q4", variant="control"),
            occurred_at=timestamp_pb2.Timestamp(seconds=1_790_000_000 + i),
        )
        ev.garments.add(image_uri=f"file:///catalog/acme/SKU-{i}.png")
        events.append(ev)

    producer = KafkaProducer(**client_config(bootstrap=kafka_broker.bootstrap), acks="all")
    for ev in events:
        producer.send(
            topic, key=f"{ev.merchant_id}/{ev.sku}".encode(), value=ev.SerializeToString()
        ).get(timeout=10)
    producer.close()

    group = f"drape-test-{uuid.uuid4().hex[:6]}"
    consumer = KafkaConsumer(
        topic,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **FAST_GROUP,
        **client_config(bootstrap=kafka_broker.bootstrap),
    )
    got = {}
    deadline = time.monotonic() + 60
    try:
        while len(got) < len(events) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    ev = events_pb2.ProductUpserted.FromString(rec.value)
                    assert rec.key.decode() == f"{ev.merchant_id}/{ev.sku}"
                    got[ev.event_id] = ev
        consumer.commit()
        committed = sum(consumer.committed(tp) or 0 for tp in consumer.assignment())
    finally:
        consumer.close()
    assert got == {ev.event_id: ev for ev in events}
    assert committed == len(events)  # the group's offsets moved past every event

    # A second member of the same group, started later, sees nothing new: offsets held.
    again = KafkaConsumer(
        topic,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **FAST_GROUP,
        **client_config(bootstrap=kafka_broker.bootstrap),
    )
    try:
        seen = 0
        t_end = time.monotonic() + 8
        while time.monotonic() < t_end:
            seen += sum(len(r) for r in again.poll(timeout_ms=500).values())
            if again.assignment():
                break
        for _ in range(4):
            seen += sum(len(r) for r in again.poll(timeout_ms=250).values())
    finally:
        again.close()
    assert seen == 0
