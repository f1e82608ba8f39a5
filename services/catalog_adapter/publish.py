"""Sample product events, ``drape catalog publish EVENTS.jsonl`` and
``drape catalog replay-dlq`` (dead letters back onto the product topic).

An events file has one ``ProductUpserted`` a line in protobuf's JSON form, e.g.::

    {"eventId": "evt-1", "merchantId": "acme", "sku": "TEE-1",
     "garments": [{"imageUri": "file:///srv/catalog/tee.png"}],
     "deliverables": {"stills": true}, "revision": "1"}

:func:`write_samples` draws garment flat-lays (tops and dresses, which the embedded try-on
supports today) into a directory and writes such a file referencing them.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path

from google.protobuf import json_format

from drape.catalog.v1 import events_pb2 as ev_pb
from drape.common.v1 import common_pb2
from services.common.errors import InvalidInputError
from services.common.kafka import TOPIC_PRODUCT, client_config

SAMPLE_KINDS = ("tshirt", "longsleeve", "tank", "dress", "jacket")
SAMPLE_COLORS = ((30, 90, 200), (200, 40, 40), (40, 140, 60), (230, 180, 30), (120, 60, 160))
SAMPLE_PATTERNS = ("stripes", "solid", "checks", "logo", "solid")
# What a merchant would call each sample kind (GarmentRef.product_type -> hints).
SAMPLE_PRODUCT_TYPES = {
    "tshirt": "T-Shirt", "longsleeve": "Long Sleeve Top", "tank": "Tank Top", "dress": "Dress",
    "jacket": "Jacket",
}  # fmt: skip


def read_events(path: str | Path) -> list[ev_pb.ProductUpserted]:
    """Parse an events file.

    Raises:
        InvalidInputError: INVALID_EVENT naming the line that is not a ProductUpserted.
    """
    events = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(json_format.Parse(line, ev_pb.ProductUpserted()))
        except json_format.ParseError as exc:
            raise InvalidInputError(
                "INVALID_EVENT", f"{path}:{n}: not a ProductUpserted: {exc}", field=f"line {n}"
            ) from None
    return events


def publish(events, bootstrap: str, settings=None, topic: str = TOPIC_PRODUCT) -> int:
    """Send ``events`` (messages, or raw bytes for tests of bad payloads) keyed by
    ``merchant_id/sku``; waits for every acknowledgement. Returns how many were sent."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", **client_config(settings, bootstrap))
    sent = 0
    try:
        for ev in events:
            if isinstance(ev, (bytes, bytearray)):
                key, value = b"raw", bytes(ev)
            else:
                key, value = f"{ev.merchant_id}/{ev.sku}".encode(), ev.SerializeToString()
            # One record per produce request: the Tansu test broker cannot serve a fetch that
            # starts in the middle of a multi-record batch (a consumer that paused a
            # partition re-fetches from such an offset and would get nothing). Real Kafka
            # brokers can; this tool is for samples, so the cost does not matter.
            producer.send(topic, key=key, value=value).get(timeout=30)
            sent += 1
    finally:
        producer.close()
    return sent


def sample_event(
    i: int,
    image_uri: str,
    merchant: str = "acme",
    stills: bool = True,
    clips: bool = False,
    prefix: str = "sample",
) -> ev_pb.ProductUpserted:
    """Product event number ``i`` referencing one garment image."""
    ev = ev_pb.ProductUpserted(
        event_id=f"{prefix}-{i:04d}",
        merchant_id=merchant,
        sku=f"SKU-{i:04d}",
        deliverables=ev_pb.Deliverables(stills=stills, clips=clips),
        experiment=common_pb2.Experiment(experiment_id="catalog-demo", variant="control"),
        revision=1,
    )
    ev.occurred_at.GetCurrentTime()
    ev.garments.add(image_uri=image_uri)
    return ev


def draw_sample_garment(i: int, size: int = 384):
    """Garment ``i`` of the sample catalog (every one different), as an RGB array."""
    from services.tryon.flatlays import draw_garment

    k = len(SAMPLE_KINDS)
    return draw_garment(
        SAMPLE_KINDS[i % k],
        SAMPLE_PATTERNS[(i // k) % len(SAMPLE_PATTERNS)],
        SAMPLE_COLORS[(i // 2) % len(SAMPLE_COLORS)],
        size=(size, size),
        seed=i,
    ).image


def write_samples(
    out_dir: str | Path, count: int = 10, size: int = 384, prefix: str = "sample"
) -> Path:
    """Draw ``count`` flat-lays into ``out_dir`` and write ``sample_events.jsonl`` there.

    Returns:
        The events file.
    """
    from PIL import Image

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(count):
        path = out / f"garment-{i:04d}.png"
        Image.fromarray(draw_sample_garment(i, size)).save(path)
        ev = sample_event(i, path.as_uri(), prefix=prefix)
        ev.garments[0].product_type = SAMPLE_PRODUCT_TYPES[SAMPLE_KINDS[i % len(SAMPLE_KINDS)]]
        lines.append(json.dumps(json_format.MessageToDict(ev)))
    events = out / "sample_events.jsonl"
    events.write_text("\n".join(lines) + "\n")
    return events


# Headers the adapter adds when it dead-letters a record (dropped again on replay).
_DLQ_HEADERS = frozenset({"drape-dlq-reason", "drape-dlq-message", "drape-source-topic",
                          "drape-source-partition", "drape-source-offset",
                          "drape-dlq-attempts", "drape-dlq-failed-at"})  # fmt: skip
H_REPLAYED_FROM = "drape-replayed-from"


def read_dead_letters(bootstrap: str, settings=None, max_records: int = 100_000,
                      timeout_s: float = 30.0) -> list:  # fmt: skip
    """Every record of ``catalog.product.v1.dlq`` from the beginning up to its current end
    (no consumer group: nothing is committed), at most ``max_records``."""
    from kafka import KafkaConsumer, TopicPartition

    from services.common.kafka import TOPIC_PRODUCT_DLQ

    consumer = KafkaConsumer(enable_auto_commit=False, **client_config(settings, bootstrap))
    try:
        parts = consumer.partitions_for_topic(TOPIC_PRODUCT_DLQ) or set()
        tps = [TopicPartition(TOPIC_PRODUCT_DLQ, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while len(records) < max_records and time.monotonic() < deadline:
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for recs in consumer.poll(timeout_ms=500).values():
                records.extend(
                    r for r in recs if r.offset < ends[TopicPartition(r.topic, r.partition)]
                )
        return records[:max_records]
    finally:
        consumer.close()


def dead_letter_filter(reason: str | None = None, since: _dt.datetime | None = None):
    """``keep(record) -> bool`` for dead letters of ``reason`` failed at or after ``since``."""

    def keep(record) -> bool:
        h = {k: v.decode(errors="replace") for k, v in record.headers or []}
        if reason and h.get("drape-dlq-reason") != reason:
            return False
        if since is not None:
            try:
                failed = _dt.datetime.fromisoformat(
                    h.get("drape-dlq-failed-at", "").replace("Z", "+00:00")
                )
            except ValueError:
                return False
            if failed < since:
                return False
        return True

    return keep


def replay_dead_letters(records, bootstrap: str, settings=None, topic: str = TOPIC_PRODUCT) -> int:
    """Re-publish dead letters to ``topic`` (the product topic): the original key and value,
    the original headers without the dead-letter ones, plus ``drape-replayed-from``
    (``dlq/PARTITION/OFFSET``). Content hashes make a replay of something already fixed and
    made a re-announcement, not new work. Returns how many were sent."""
    from kafka import KafkaProducer

    producer = KafkaProducer(acks="all", **client_config(settings, bootstrap))
    sent = 0
    try:
        for r in records:
            headers = [(k, v) for k, v in r.headers or [] if k not in _DLQ_HEADERS]
            headers.append((H_REPLAYED_FROM, f"dlq/{r.partition}/{r.offset}".encode()))
            producer.send(topic, key=r.key, value=r.value, headers=headers).get(timeout=30)
            sent += 1
    finally:
        producer.close()
    return sent
