"""Exposures, orders and returns in and out: Kafka topics (protobuf values, see
``proto/drape/experiments/v1/events.proto``) and CSV imports.

Delivery is at least once: every record is stored idempotently (see :mod:`.store`), and a
consumer commits its offsets only after the store has the records. A record that cannot be
decoded or fails validation is skipped, counted by reason and logged (without its bytes).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from google.protobuf import timestamp_pb2

from drape.experiments.v1 import events_pb2 as ev_pb
from services.common.context import validate_tag
from services.common.errors import InvalidInputError
from services.common.validation import shown
from services.experiments.assignment import check_unit_id
from services.experiments.store import Exposure, Order, Return, Store

log = logging.getLogger("drape.experiments")

EXPOSURE_TOPIC = "experiment.exposure.v1"
ORDER_TOPIC = "commerce.order.v1"
RETURN_TOPIC = "commerce.return.v1"
MAX_LINES = 1000
MAX_QUANTITY = 10_000
CSV_BATCH = 5000
_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")


def check_id(value: str, field: str, reason: str) -> str:
    """``value`` if it is 1-128 printable ASCII characters without spaces, else
    InvalidInputError(reason)."""
    if not _ID_RE.fullmatch(value):
        raise InvalidInputError(
            reason,
            f"{field} must be 1-128 printable ASCII characters without spaces, got {shown(value)}",
            field=field,
        )
    return value


def _quantity(q: int, field: str) -> int:
    if not 1 <= q <= MAX_QUANTITY:
        raise InvalidInputError(
            "QUANTITY_OUT_OF_RANGE", f"{field} must be 1-{MAX_QUANTITY}, got {q}", field=field
        )
    return q


def ts_ms(ts: timestamp_pb2.Timestamp, field: str) -> int:
    """Milliseconds of a set Timestamp, else InvalidInputError(TIME_MISSING)."""
    if ts.seconds == 0 and ts.nanos == 0:
        raise InvalidInputError("TIME_MISSING", f"{field} is not set", field=field)
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def to_timestamp(ms: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def parse_time(text: str, field: str) -> int:
    """Milliseconds since the epoch from RFC 3339 text with a zone, or integer ms.

    Raises:
        InvalidInputError: TIME_INVALID.
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        t = None
    if t is None or t.tzinfo is None:
        raise InvalidInputError(
            "TIME_INVALID",
            f"{field} must be RFC 3339 with a zone (2026-11-28T10:00:00Z) or epoch "
            f"milliseconds, got {shown(text)}",
            field=field,
        )
    return int(t.timestamp() * 1000)


# ---------------------------------------------------------------- protobuf <-> records


def exposure_to_pb(e: Exposure) -> ev_pb.ExposureEvent:
    return ev_pb.ExposureEvent(
        event_id=e.event_id,
        experiment_id=e.experiment_id,
        variant=e.variant,
        unit_id=e.unit_id,
        product_id=e.product_id,
        time=to_timestamp(e.ts_ms),
    )


def exposure_from_pb(m: ev_pb.ExposureEvent) -> Exposure:
    """A validated :class:`Exposure` (raises InvalidInputError naming the field)."""
    return Exposure(
        event_id=check_id(m.event_id, "event_id", "INVALID_EVENT_ID"),
        experiment_id=validate_tag(m.experiment_id, "experiment_id"),
        variant=validate_tag(m.variant, "variant"),
        unit_id=check_unit_id(m.unit_id),
        product_id=check_id(m.product_id, "product_id", "PRODUCT_ID_INVALID"),
        ts_ms=ts_ms(m.time, "time"),
    )


def order_to_pb(o: Order) -> ev_pb.OrderPlaced:
    return ev_pb.OrderPlaced(
        order_id=o.order_id,
        unit_id=o.unit_id,
        time=to_timestamp(o.ts_ms),
        lines=[ev_pb.OrderLine(product_id=p, quantity=q) for p, q in o.lines],
    )


def order_from_pb(m: ev_pb.OrderPlaced) -> Order:
    """A validated :class:`Order`."""
    if not 1 <= len(m.lines) <= MAX_LINES:
        raise InvalidInputError(
            "ORDER_LINES_OUT_OF_RANGE", f"an order has 1-{MAX_LINES} lines, got {len(m.lines)}",
            field="lines",
        )  # fmt: skip
    lines = tuple(
        (
            check_id(line.product_id, f"lines[{i}].product_id", "PRODUCT_ID_INVALID"),
            _quantity(line.quantity, f"lines[{i}].quantity"),
        )
        for i, line in enumerate(m.lines)
    )
    return Order(
        order_id=check_id(m.order_id, "order_id", "INVALID_ORDER_ID"),
        unit_id=check_unit_id(m.unit_id),
        ts_ms=ts_ms(m.time, "time"),
        lines=lines,
    )


def return_to_pb(r: Return) -> ev_pb.ItemReturned:
    return ev_pb.ItemReturned(
        order_id=r.order_id,
        product_id=r.product_id,
        quantity=r.quantity,
        time=to_timestamp(r.ts_ms),
    )


def return_from_pb(m: ev_pb.ItemReturned) -> Return:
    """A validated :class:`Return`."""
    return Return(
        order_id=check_id(m.order_id, "order_id", "INVALID_ORDER_ID"),
        product_id=check_id(m.product_id, "product_id", "PRODUCT_ID_INVALID"),
        quantity=_quantity(m.quantity, "quantity"),
        ts_ms=ts_ms(m.time, "time"),
    )


# ---------------------------------------------------------------- Kafka


class ExposurePublisher:
    """Publishes :class:`Exposure` records on ``experiment.exposure.v1`` (key: unit id)."""

    def __init__(self, bootstrap: str, settings=None, topic: str = EXPOSURE_TOPIC) -> None:
        from kafka import KafkaProducer

        from services.common.kafka import client_config

        self.topic = topic
        self._producer = KafkaProducer(
            acks="all",
            max_block_ms=10000,
            request_timeout_ms=10000,
            delivery_timeout_ms=30000,
            **client_config(settings, bootstrap),
        )

    def publish(self, e: Exposure):
        """Send one exposure; returns the send future."""
        return self._producer.send(
            self.topic, key=e.unit_id.encode(), value=exposure_to_pb(e).SerializeToString()
        )

    def flush(self, timeout: float = 30.0) -> None:
        self._producer.flush(timeout)

    def close(self) -> None:
        self._producer.close(timeout=10)


@dataclasses.dataclass
class IngestStats:
    """Records stored and skipped (by reason) so far."""

    exposures: int = 0
    orders: int = 0
    returns: int = 0
    skipped: Counter = dataclasses.field(default_factory=Counter)


class KafkaIngestor:
    """Consumes exposures, orders and returns into a store.

    Args:
        store: where records go.
        bootstrap: brokers, ``host:port[,…]``.
        group_id: consumer group (one group per store; more processes share the work).
        settings: for SASL credentials (:func:`services.common.kafka.client_config`).
        topics: the three topics, in the order exposures, orders, returns.
    """

    def __init__(
        self,
        store: Store,
        bootstrap: str,
        group_id: str = "drape-experiments",
        settings=None,
        topics: tuple[str, str, str] = (EXPOSURE_TOPIC, ORDER_TOPIC, RETURN_TOPIC),
    ) -> None:
        from kafka import KafkaConsumer

        from services.common.kafka import FAST_GROUP, client_config

        self.store = store
        self.topics = topics
        self.stats = IngestStats()
        self._consumer = KafkaConsumer(
            *topics,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=2000,
            **FAST_GROUP,
            **client_config(settings, bootstrap),
        )

    def _decode(self, topic: str, value: bytes | None):
        exp_t, order_t, _ret_t = self.topics
        try:
            if topic == exp_t:
                return "exposure", exposure_from_pb(ev_pb.ExposureEvent.FromString(value or b""))
            if topic == order_t:
                return "order", order_from_pb(ev_pb.OrderPlaced.FromString(value or b""))
            return "return", return_from_pb(ev_pb.ItemReturned.FromString(value or b""))
        except InvalidInputError as exc:
            reason = exc.reason
        except Exception:  # noqa: BLE001 - an undecodable payload is the producer's fault
            reason = "PAYLOAD_UNDECODABLE"
        self.stats.skipped[reason] += 1
        log.warning("skipped a record of %s", topic, extra={"reason": reason})
        return None, None

    def poll_once(self, timeout: float = 1.0) -> int:
        """Consume what is there (up to one poll), store it, commit; returns records read."""
        batches = self._consumer.poll(timeout_ms=int(timeout * 1000))
        exposures, orders, returns = [], [], []
        n = 0
        for tp, records in batches.items():
            for rec in records:
                n += 1
                kind, item = self._decode(tp.topic, rec.value)
                if kind == "exposure":
                    exposures.append(item)
                elif kind == "order":
                    orders.append(item)
                elif kind == "return":
                    returns.append(item)
        if exposures:
            self.store.add_exposures(exposures)
        if orders:
            self.store.add_orders(orders)
        if returns:
            self.store.add_returns(returns)
        self.stats.exposures += len(exposures)
        self.stats.orders += len(orders)
        self.stats.returns += len(returns)
        if n:
            self._consumer.commit()
        return n

    def run(self, stop: threading.Event, idle_exit: float | None = None) -> IngestStats:
        """Consume until ``stop`` is set (or, with ``idle_exit``, until nothing arrived for
        that many seconds once the group has given this consumer its partitions)."""
        import time

        last = None
        while not stop.is_set():
            if self.poll_once(1.0) or last is None:
                last = time.monotonic() if self._consumer.assignment() else None
            elif idle_exit is not None and time.monotonic() - last >= idle_exit:
                break
        return self.stats

    def close(self) -> None:
        self._consumer.close()


# ---------------------------------------------------------------- CSV

ORDER_COLUMNS = ("order_id", "unit_id", "time", "product_id", "quantity")
RETURN_COLUMNS = ("order_id", "product_id", "quantity", "time")


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in columns if c not in (reader.fieldnames or ())]
        if missing:
            raise InvalidInputError(
                "CSV_COLUMNS_MISSING",
                f"{path.name}: columns {', '.join(missing)} are missing (need {', '.join(columns)})",
                field=str(path),
            )
        try:
            for row in reader:
                yield reader.line_num, row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidInputError(
                "CSV_INVALID", f"{path.name} line {reader.line_num}: {exc}", field=str(path)
            ) from None


def _int(text: str | None, field: str) -> int:
    try:
        return int((text or "").strip() or "1")
    except ValueError:
        raise InvalidInputError(
            "QUANTITY_OUT_OF_RANGE", f"{field} must be an integer, got {shown(text or '')}",
            field=field,
        ) from None  # fmt: skip


def _batched(items: Iterable, n: int) -> Iterator[list]:
    batch = []
    for x in items:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def import_orders_csv(path: str | Path, store: Store) -> int:
    """Import orders from CSV, one row per order line: order_id, unit_id, time (RFC 3339
    or epoch ms), product_id, quantity (default 1). Returns the rows read.

    Raises:
        InvalidInputError: naming the line (CSV_COLUMNS_MISSING, CSV_INVALID, and the
            reasons of Kafka records); nothing after the bad line is stored.
    """
    p = Path(path)

    def rows():
        for line, r in _rows(p, ORDER_COLUMNS):
            where = f"{p.name} line {line}"
            yield Order(
                order_id=check_id(r["order_id"] or "", f"{where} order_id", "INVALID_ORDER_ID"),
                unit_id=check_unit_id(r["unit_id"] or "", f"{where} unit_id"),
                ts_ms=parse_time(r["time"] or "", f"{where} time"),
                lines=(
                    (
                        check_id(
                            r["product_id"] or "", f"{where} product_id", "PRODUCT_ID_INVALID"
                        ),
                        _quantity(_int(r["quantity"], f"{where} quantity"), f"{where} quantity"),
                    ),
                ),
            )

    n = 0
    for batch in _batched(rows(), CSV_BATCH):
        store.add_orders(batch)
        n += len(batch)
    return n


def import_returns_csv(path: str | Path, store: Store) -> int:
    """Import returns from CSV: order_id, product_id, quantity (default 1), time. Returns
    the rows read (raises like :func:`import_orders_csv`)."""
    p = Path(path)

    def rows():
        for line, r in _rows(p, RETURN_COLUMNS):
            where = f"{p.name} line {line}"
            yield Return(
                order_id=check_id(r["order_id"] or "", f"{where} order_id", "INVALID_ORDER_ID"),
                product_id=check_id(
                    r["product_id"] or "", f"{where} product_id", "PRODUCT_ID_INVALID"
                ),
                quantity=_quantity(_int(r["quantity"], f"{where} quantity"), f"{where} quantity"),
                ts_ms=parse_time(r["time"] or "", f"{where} time"),
            )

    n = 0
    for batch in _batched(rows(), CSV_BATCH):
        store.add_returns(batch)
        n += len(batch)
    return n
