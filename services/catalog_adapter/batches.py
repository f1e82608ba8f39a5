"""Merchant batches: many product events run through the catalog job, with a per-SKU report.

Transport-free (the gRPC servicer is :mod:`services.catalog_adapter.batch_server`):

* :func:`read_manifest` parses a manifest (JSONL of ``ProductUpserted`` or CSV);
* :func:`record_product` / :func:`changed_products` keep, next to each product's assets in
  the asset store, the last event handled (``{m}/{s}/_product.json``), so "everything of
  merchant M changed since T" can be re-run from the store alone;
* :class:`BatchManager` runs batches on ``DRAPE_CATALOG_WORKERS`` threads with the same
  per-product rules as the Kafka adapter (stale revisions skipped, transient failures
  retried with backoff, final failures reported and, with ``publish``, dead-lettered), and
  persists every batch and every product's outcome in SQLite (``DRAPE_CATALOG_BATCH_DB``).
  A restarted server resumes unfinished batches: products already handled are not run
  again; the one in flight at the crash is, and finds its assets by content hash.

Products of one ``merchant_id/sku`` run in batch order on one lane (revisions stay in
order); different products run in parallel.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import logging
import random
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

from google.protobuf import json_format, timestamp_pb2

from drape.catalog.v1 import catalog_service_pb2 as pb
from drape.catalog.v1 import events_pb2 as ev_pb
from drape.common.v1 import common_pb2, operations_pb2
from services.catalog_adapter.jobs import ADAPTER_VERSION, JobRunner, content_hash, validate_event
from services.catalog_adapter.product_types import garment_hints
from services.catalog_adapter.runners import is_retryable
from services.catalog_adapter.store import check_segment
from services.common import context as ctxmod
from services.common.context import CancelToken
from services.common.errors import (
    CancelledError,
    DrapeError,
    InvalidInputError,
    NotFoundError,
    ResourceExhaustedError,
)
from services.common.interceptors import status_proto
from services.common.media import FORMAT_NAMES

log = logging.getLogger("drape.catalog.batch")

State = operations_pb2.OperationState
Item = pb.BatchItemState
TERMINAL = frozenset(
    {State.OPERATION_STATE_SUCCEEDED, State.OPERATION_STATE_FAILED, State.OPERATION_STATE_CANCELLED}
)
HANDLED = frozenset({Item.BATCH_ITEM_STATE_SUCCEEDED, Item.BATCH_ITEM_STATE_FAILED,
                     Item.BATCH_ITEM_STATE_SKIPPED_STALE, Item.BATCH_ITEM_STATE_PLANNED})  # fmt: skip
PRODUCT_RECORD = "_product.json"
DLQ_SOURCE_TOPIC = "grpc:CatalogService.StartBatch"
MAX_ACTIVE = 16  # batches queued or running at once (more: QUEUE_FULL)
TTL_SECONDS = 7 * 24 * 3600.0  # finished batches stay readable this long
KEEP_FINISHED = 16  # finished batches held in memory (the others are read from the database)
MESSAGE_MAX = 1000
MAX_BACKOFF = 60.0
MANIFEST_MAX_BYTES = 256 << 20
CSV_COLUMNS = ("merchant_id", "sku", "image_uri", "event_id", "product_type", "category",
               "roster_id", "revision", "stills", "clips", "motion_template", "image_uri_2",
               "product_type_2", "category_2")  # fmt: skip
_TRUE = {"1", "true", "yes", "y"}
_FALSE = {"", "0", "false", "no", "n"}


# ---------------------------------------------------------------------- manifests


def _manifest_error(where: str, message: str) -> InvalidInputError:
    return InvalidInputError("MANIFEST_INVALID", f"{where}: {message}"[:MESSAGE_MAX], field=where)


def read_manifest(data: bytes, name: str) -> list[ev_pb.ProductUpserted]:
    """The products of a manifest: CSV when ``name`` ends in ``.csv``, else JSONL.

    CSV has a header row; ``merchant_id``, ``sku`` and ``image_uri`` are required columns,
    the others (:data:`CSV_COLUMNS`) optional. Rows ask for stills unless ``stills`` says
    otherwise; ``event_id`` defaults to ``merchant.sku.rREVISION`` (hashed when too long).

    Raises:
        InvalidInputError: MANIFEST_INVALID naming the line (``manifest line N``).
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _manifest_error("manifest", "not UTF-8 text") from None
    if name.lower().endswith(".csv"):
        return _read_csv(text)
    events = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(json_format.Parse(line, ev_pb.ProductUpserted()))
        except json_format.ParseError as exc:
            raise _manifest_error(f"manifest line {n}", f"not a ProductUpserted: {exc}") from None
    return events


def _flag(value: str, where: str, column: str) -> bool:
    v = (value or "").strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise _manifest_error(where, f"{column} must be true or false, got {value[:32]!r}")


def _category(value: str, where: str, column: str) -> int:
    from drape.tryon.v1 import tryon_service_pb2 as tpb

    v = (value or "").strip().upper()
    if not v:
        return 0
    try:
        return tpb.GarmentCategory.Value(f"GARMENT_CATEGORY_{v}")
    except ValueError:
        raise _manifest_error(where, f"{column}: unknown category {value[:32]!r}") from None


def _read_csv(text: str) -> list[ev_pb.ProductUpserted]:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise _manifest_error("manifest line 1", f"unknown columns {unknown[:5]}")
    missing = [c for c in ("merchant_id", "sku", "image_uri") if c not in header]
    if missing:
        raise _manifest_error("manifest line 1", f"missing columns {missing}")
    reader.fieldnames = header
    events = []
    for row in reader:
        where = f"manifest line {reader.line_num}"
        if None in row:
            raise _manifest_error(where, "more values than columns")
        row = {k: (v or "").strip() for k, v in row.items()}
        try:
            revision = int(row.get("revision") or 0)
        except ValueError:
            raise _manifest_error(
                where, f"revision must be an integer, got {row['revision'][:32]!r}"
            ) from None
        ev = ev_pb.ProductUpserted(
            merchant_id=row["merchant_id"],
            sku=row["sku"],
            roster_id=row.get("roster_id", ""),
            revision=revision,
            deliverables=ev_pb.Deliverables(
                stills=_flag(row.get("stills") or "true", where, "stills"),
                clips=_flag(row.get("clips", ""), where, "clips"),
                motion_template=row.get("motion_template", ""),
            ),
        )
        ev.event_id = row.get("event_id") or _default_event_id(ev)
        for suffix in ("", "_2"):
            uri = row.get(f"image_uri{suffix}", "")
            if uri:
                ev.garments.add(
                    image_uri=uri,
                    product_type=row.get(f"product_type{suffix}", ""),
                    category=_category(
                        row.get(f"category{suffix}", ""), where, f"category{suffix}"
                    ),
                )
        events.append(ev)
    return events


def _default_event_id(ev: ev_pb.ProductUpserted) -> str:
    eid = f"{ev.merchant_id}.{ev.sku}.r{ev.revision}"
    if len(eid) > 128 or not eid.isascii() or any(c.isspace() for c in eid):
        eid = "m-" + hashlib.sha256(eid.encode()).hexdigest()[:40]
    return eid


# ---------------------------------------------------------------------- product records


def record_product(store, ev: ev_pb.ProductUpserted) -> None:
    """Remember ``ev`` as the product's latest handled event (``{m}/{s}/_product.json``),
    unless a higher revision is recorded already."""
    key = f"{ev.merchant_id}/{ev.sku}/{PRODUCT_RECORD}"
    if ev.revision > 0:
        raw = store.get(key)
        if raw is not None and json.loads(raw).get("revision", 0) > ev.revision:
            return
    body = {
        "revision": ev.revision,
        "handled_at": _dt.datetime.now(_dt.UTC).isoformat(),
        "event": json_format.MessageToDict(ev),
    }
    store.put(key, json.dumps(body).encode(), "application/json")


def changed_products(store, merchant_id: str, since: float | None) -> list[ev_pb.ProductUpserted]:
    """The recorded events of ``merchant_id`` whose ``occurred_at`` (else the time they were
    handled) is at or after ``since`` (epoch seconds; None: all), by SKU.

    Raises:
        InvalidInputError: INVALID_EVENT when ``merchant_id`` is not a valid id.
    """
    check_segment(merchant_id, "changed_since.merchant_id")
    out = []
    for key in store.list(f"{merchant_id}/"):
        parts = key.split("/")
        if len(parts) != 3 or parts[2] != PRODUCT_RECORD:
            continue
        raw = store.get(key)
        if raw is None:
            continue
        body = json.loads(raw)
        ev = json_format.ParseDict(body["event"], ev_pb.ProductUpserted())
        if ev.HasField("occurred_at"):
            t = ev.occurred_at.ToNanoseconds() / 1e9
        else:
            t = _dt.datetime.fromisoformat(body["handled_at"]).timestamp()
        if since is None or t >= since:
            out.append(ev)
    return out


# ---------------------------------------------------------------------- persistence

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
  id TEXT PRIMARY KEY, request_id TEXT, state INTEGER NOT NULL, created REAL NOT NULL,
  updated REAL NOT NULL, finished REAL, publish INTEGER NOT NULL, force INTEGER NOT NULL,
  dry_run INTEGER NOT NULL, experiment BLOB, error BLOB, total INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_request ON batches(request_id);
CREATE TABLE IF NOT EXISTS items (
  batch_id TEXT NOT NULL, idx INTEGER NOT NULL, event BLOB NOT NULL, report BLOB,
  outputs BLOB, PRIMARY KEY (batch_id, idx)
);
"""


class BatchDB:
    """Batches and their products in one SQLite file (WAL; one writer: this process).

    Args:
        path: the database file; its directory is created.
    """

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def insert(self, b: _Batch, events: list[ev_pb.ProductUpserted]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (b.id, b.request_id or None, b.state, b.created, b.updated, None, b.publish,
                 b.force, b.dry_run, b.experiment.SerializeToString(), None, len(events)),
            )  # fmt: skip
            self._db.executemany(
                "INSERT INTO items (batch_id, idx, event) VALUES (?,?,?)",
                ((b.id, i, ev.SerializeToString()) for i, ev in enumerate(events)),
            )
            self._db.execute("COMMIT")

    def save_batch(self, b: _Batch) -> None:
        err = b.error.SerializeToString() if b.error is not None else None
        with self._lock:
            self._db.execute(
                "UPDATE batches SET state=?, updated=?, finished=?, error=? WHERE id=?",
                (b.state, b.updated, b.finished, err, b.id),
            )

    def save_item(self, batch_id: str, report: pb.BatchItem, outputs: pb.BatchResult) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE items SET report=?, outputs=? WHERE batch_id=? AND idx=?",
                (report.SerializeToString(), zlib.compress(outputs.SerializeToString(), 1),
                 batch_id, report.index),
            )  # fmt: skip

    def load_unfinished(self, now: float) -> Iterator[tuple[tuple, list]]:
        """Every unfinished batch with its item rows, oldest first; batches finished more
        than :data:`TTL_SECONDS` ago are deleted on the way."""
        with self._lock:
            old = [r[0] for r in self._db.execute(
                "SELECT id FROM batches WHERE finished IS NOT NULL AND finished < ?",
                (now - TTL_SECONDS,),
            )]  # fmt: skip
            for bid in old:
                self._db.execute("DELETE FROM items WHERE batch_id=?", (bid,))
                self._db.execute("DELETE FROM batches WHERE id=?", (bid,))
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM batches WHERE finished IS NULL ORDER BY created"
            )]  # fmt: skip
        for bid in ids:
            found = self.load_one(bid)
            if found is not None:
                yield found

    def load_one(self, batch_id: str) -> tuple[tuple, list] | None:
        """One batch's row and item rows, None when unknown."""
        with self._lock:
            row = self._db.execute("SELECT * FROM batches WHERE id=?", (batch_id,)).fetchone()
            if row is None:
                return None
            items = self._db.execute(
                "SELECT event, report, outputs FROM items WHERE batch_id=? ORDER BY idx",
                (batch_id,),
            ).fetchall()
        return row, items

    def find_request(self, request_id: str) -> str | None:
        """The batch started with ``request_id``, None when none is kept."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM batches WHERE request_id=? ORDER BY created DESC LIMIT 1",
                (request_id,),
            ).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


# ---------------------------------------------------------------------- batches


@dataclasses.dataclass
class _Batch:
    id: str
    request_id: str
    experiment: common_pb2.Experiment
    publish: bool
    force: bool
    dry_run: bool
    events: list
    reports: list  # pb.BatchItem per product
    outputs: list  # pb.BatchResult (assets, failures) per product, None until handled
    state: int = State.OPERATION_STATE_QUEUED
    created: float = dataclasses.field(default_factory=time.time)
    updated: float = dataclasses.field(default_factory=time.time)
    finished: float | None = None
    error: object = None  # google.rpc.Status
    token: CancelToken = dataclasses.field(default_factory=CancelToken)
    cancel_requested: bool = False
    run_started: float | None = None  # monotonic, this process
    run_ended: float | None = None
    handled_at_start: int = 0
    version: int = 0

    def counts(self) -> dict[int, int]:
        c: dict[int, int] = {}
        for r in self.reports:
            c[r.state] = c.get(r.state, 0) + 1
        return c


def _ts(t: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


class BatchManager:
    """Runs, persists and reports batches.

    Args:
        jobs: the :class:`JobRunner` (store, rosters, still and clip steps).
        settings: :class:`services.common.config.Settings` (workers, attempts, backoff,
            job timeout, Kafka).
        db: the :class:`BatchDB`.
        producer_factory: ``() -> KafkaProducer``, called once the first batch with
            ``publish`` runs; default: one for ``settings.kafka_bootstrap_servers``.
    """

    def __init__(self, jobs: JobRunner, settings, db: BatchDB, producer_factory=None) -> None:
        self.jobs, self.settings, self.db = jobs, settings, db
        self._producer_factory = producer_factory or self._default_producer
        self._producer = None
        self._batches: dict[str, _Batch] = {}
        self._by_request: dict[str, str] = {}
        self._queue: list[str] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> int:
        """Load the unfinished batches and start the runner; they are queued again (in
        creation order). Finished batches stay in the database and are read on demand.
        Returns how many were resumed."""
        resumed = 0
        for row, items in self.db.load_unfinished(time.time()):
            b = _from_rows(row, items)
            self._batches[b.id] = b
            if b.request_id:
                self._by_request[b.request_id] = b.id
            b.state = State.OPERATION_STATE_QUEUED
            self._queue.append(b.id)
            resumed += 1
        if resumed:
            log.info("batches resumed", extra={"batches": resumed})
        self._thread = threading.Thread(target=self._loop, name="catalog-batches", daemon=True)
        self._thread.start()
        return resumed

    def close(self, timeout: float = 30.0) -> None:
        """Stop: the running batch's products in flight are handed back (the batch stays
        unfinished in the database and resumes at the next start)."""
        with self._cond:
            self._stopping = True
            for b in self._batches.values():
                if b.state not in TERMINAL:
                    b.token.cancel("the server is shutting down")
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except Exception as exc:  # noqa: BLE001
                log.warning("producer close: %s", exc)
        self.db.close()

    # ------------------------------------------------------------------ public API

    def start(
        self,
        events: list[ev_pb.ProductUpserted],
        request_id: str = "",
        experiment: common_pb2.Experiment | None = None,
        publish: bool = False,
        force: bool = False,
        dry_run: bool = False,
    ) -> operations_pb2.Operation:
        """Validate ``events`` (all or nothing) and queue them as a batch.

        Raises:
            InvalidInputError: BATCH_EMPTY, BATCH_TOO_LARGE, INVALID_EVENT (field
                ``products[i]...``), DUPLICATE_EVENT_ID.
            ResourceExhaustedError: QUEUE_FULL.
        """
        with self._cond:
            if request_id:
                known = self._by_request.get(request_id) or self.db.find_request(request_id)
                if known is not None:
                    return self._proto(self._find(known))
        experiment = experiment or common_pb2.Experiment()
        check_events(events, self.settings.catalog_batch_max_products)
        events = [_with_experiment(ev, experiment) for ev in events]
        with self._cond:
            if request_id and request_id in self._by_request:
                return self._proto(self._batches[self._by_request[request_id]])
            active = sum(1 for b in self._batches.values() if b.state not in TERMINAL)
            if active >= MAX_ACTIVE:
                raise ResourceExhaustedError(
                    "QUEUE_FULL", f"{active} batches are already queued or running; retry later"
                )
            b = _Batch(
                uuid.uuid4().hex, request_id, experiment, publish, force, dry_run, events,
                [_pending(i, ev) for i, ev in enumerate(events)], [None] * len(events),
            )  # fmt: skip
            self.db.insert(b, events)
            self._batches[b.id] = b
            if request_id:
                self._by_request[request_id] = b.id
            self._queue.append(b.id)
            self._cond.notify_all()
            log.info(
                "batch queued",
                extra={"batch": b.id, "products": len(events), "dry_run": dry_run,
                       "force": force, "publish": publish},
            )  # fmt: skip
            return self._proto(b)

    def get(self, batch_id: str):
        """``(Operation, BatchProgress, BatchResult or None)`` of a batch.

        Raises:
            NotFoundError: OPERATION_NOT_FOUND.
        """
        with self._cond:
            b = self._find(batch_id)
            return self._snapshot(b)

    def cancel(self, batch_id: str) -> operations_pb2.Operation:
        """Stop a batch at once (CANCELLED): products handled keep their outcome, those in
        flight finish (their outcome is still recorded), the rest stay PENDING."""
        with self._cond:
            b = self._find(batch_id)
            if b.state not in TERMINAL:
                b.cancel_requested = True
                b.token.cancel("cancelled by CancelBatch")
                if b.id in self._queue:
                    self._queue.remove(b.id)
                self._finish(b, State.OPERATION_STATE_CANCELLED)
            return self._proto(b)

    def watch(self, batch_id: str, token: CancelToken | None = None, interval: float = 0.25,
              heartbeat: float = 5.0):  # fmt: skip
        """Yield :meth:`get`'s triple at most every ``interval`` seconds while it changes
        (and every ``heartbeat`` seconds regardless) until the batch ends."""
        seen, last = -1, 0.0
        while True:
            with self._cond:
                b = self._find(batch_id)
                if b.version == seen and b.state not in TERMINAL:
                    self._cond.wait(timeout=0.5)
                changed = b.version != seen
                terminal = b.state in TERMINAL
                now = time.monotonic()
                send = terminal or (changed and now - last >= interval) or now - last >= heartbeat
                snap = self._snapshot(b) if send else None
                if send:
                    seen = b.version
            if snap is not None:
                last = now
                yield snap
            if terminal or (token is not None and token.cancelled):
                return
            if not send and changed:
                time.sleep(min(interval, 0.05))

    # ------------------------------------------------------------------ reports

    def _find(self, batch_id: str) -> _Batch:
        b = self._batches.get(batch_id)
        if b is None and batch_id:
            found = self.db.load_one(batch_id)
            if found is not None and found[0][5] is not None:  # finished: read on demand
                b = self._batches[batch_id] = _from_rows(*found)
                self._evict()
        if b is None:
            raise NotFoundError(
                "OPERATION_NOT_FOUND",
                f"no batch {batch_id[:64]!r} (unknown or expired)",
                field="operation_id",
            )
        return b

    def _progress(self, b: _Batch) -> pb.BatchProgress:
        c = b.counts()
        handled = sum(c.get(s, 0) for s in HANDLED)
        created = sum(r.created for r in b.reports)
        reused = sum(r.reused for r in b.reports)
        rate, eta = 0.0, -1.0
        if b.run_started is not None:
            dt = (b.run_ended or time.monotonic()) - b.run_started
            ran = handled - b.handled_at_start
            if dt > 0 and ran > 0:
                rate = ran / dt
                eta = (len(b.reports) - handled) / rate
        if b.state in TERMINAL:
            eta = 0.0
        return pb.BatchProgress(
            total=len(b.reports),
            succeeded=c.get(Item.BATCH_ITEM_STATE_SUCCEEDED, 0)
            + c.get(Item.BATCH_ITEM_STATE_PLANNED, 0),
            failed=c.get(Item.BATCH_ITEM_STATE_FAILED, 0),
            skipped_stale=c.get(Item.BATCH_ITEM_STATE_SKIPPED_STALE, 0),
            created=created, reused=reused, throughput_per_second=rate, eta_seconds=eta,
            dry_run=b.dry_run,
        )  # fmt: skip

    def _proto(self, b: _Batch, progress: pb.BatchProgress | None = None):
        progress = progress or self._progress(b)
        done = progress.succeeded + progress.failed + progress.skipped_stale
        elapsed = (b.finished or time.time()) - b.created
        stage = {
            State.OPERATION_STATE_QUEUED: "queued",
            State.OPERATION_STATE_RUNNING: "dry-run" if b.dry_run else "running",
            State.OPERATION_STATE_SUCCEEDED: "done",
            State.OPERATION_STATE_FAILED: "failed",
        }.get(b.state, "cancelled")
        op = operations_pb2.Operation(
            id=b.id,
            state=b.state,
            progress=operations_pb2.Progress(
                done=done, total=progress.total, stage=stage, eta_seconds=progress.eta_seconds,
                elapsed_seconds=elapsed,
            ),
            create_time=_ts(b.created),
            update_time=_ts(b.updated),
            request_id=b.request_id,
            experiment=b.experiment,
        )  # fmt: skip
        if b.finished:
            op.expire_time.CopyFrom(_ts(b.finished + TTL_SECONDS))
        if b.error is not None:
            op.error.CopyFrom(b.error)
        return op

    def _result(self, b: _Batch) -> pb.BatchResult:
        c = b.counts()
        res = pb.BatchResult(
            processed=sum(c.get(s, 0) for s in HANDLED),
            created=sum(r.created for r in b.reports),
            reused=sum(r.reused for r in b.reports),
            failed=c.get(Item.BATCH_ITEM_STATE_FAILED, 0),
            dead_lettered=c.get(Item.BATCH_ITEM_STATE_FAILED, 0),
            skipped_stale=c.get(Item.BATCH_ITEM_STATE_SKIPPED_STALE, 0),
            items=b.reports,
            dry_run=b.dry_run,
        )
        for out in b.outputs:
            if out is not None:
                res.assets.extend(out.assets)
                res.failures.extend(out.failures)
        return res

    def _snapshot(self, b: _Batch):
        progress = self._progress(b)
        result = None
        if b.state in (State.OPERATION_STATE_SUCCEEDED, State.OPERATION_STATE_CANCELLED):
            result = self._result(b)
        return self._proto(b, progress), progress, result

    # ------------------------------------------------------------------ running

    def _touch(self, b: _Batch) -> None:
        b.updated = time.time()
        b.version += 1
        self._cond.notify_all()

    def _finish(self, b: _Batch, state: int, error: DrapeError | None = None) -> None:
        b.state = state
        b.finished = time.time()
        b.run_ended = time.monotonic()
        if error is not None:
            b.error = status_proto(error)
        elif state == State.OPERATION_STATE_CANCELLED:
            b.error = status_proto(CancelledError("CANCELLED", "cancelled by CancelBatch"))
        self._touch(b)
        self.db.save_batch(b)
        log.info("batch ended", extra={"batch": b.id, "state": State.Name(state)})
        self._evict()

    def _evict(self) -> None:
        """Keep at most :data:`KEEP_FINISHED` finished batches in memory (oldest go first;
        the database still has them)."""
        done = sorted((x for x in self._batches.values() if x.state in TERMINAL),
                      key=lambda x: x.finished or 0)  # fmt: skip
        for old in done[: max(len(done) - KEEP_FINISHED, 0)]:
            del self._batches[old.id]
            if old.request_id and self._by_request.get(old.request_id) == old.id:
                del self._by_request[old.request_id]

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait(1.0)
                if self._stopping:
                    return
                b = self._batches[self._queue.pop(0)]
                if b.state in TERMINAL:
                    continue
                b.state = State.OPERATION_STATE_RUNNING
                b.run_started = time.monotonic()
                b.handled_at_start = sum(1 for r in b.reports if r.state in HANDLED)
                self._touch(b)
                self.db.save_batch(b)
            try:
                self._run(b)
            except Exception:  # noqa: BLE001 - our fault: the batch fails, the server lives
                log.exception("batch %s crashed", b.id)
                with self._cond:
                    from services.common.errors import InternalError

                    if b.state not in TERMINAL:
                        self._finish(b, State.OPERATION_STATE_FAILED,
                                     InternalError("INTERNAL", "the batch crashed (see the server log)"))  # fmt: skip
                continue
            with self._cond:
                if b.cancel_requested:
                    continue  # CancelBatch already ended it
                if self._stopping or b.token.cancelled:
                    return  # shutting down: stays RUNNING in the database, resumed later
                self._finish(b, State.OPERATION_STATE_SUCCEEDED)

    def _run(self, b: _Batch) -> None:
        lanes = max(1, self.settings.catalog_workers)
        todo: list[list[int]] = [[] for _ in range(lanes)]
        for i, r in enumerate(b.reports):
            if r.state not in HANDLED:
                key = f"{r.merchant_id}/{r.sku}".encode()
                todo[zlib.crc32(key) % lanes].append(i)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._lane, args=(b, idx, errors),
                             name=f"catalog-batch-{n}", daemon=True)
            for n, idx in enumerate(todo) if idx
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:  # the database failed: the batch cannot go on as a whole
            raise errors[0]

    def _lane(self, b: _Batch, indexes: list[int], errors: list) -> None:
        try:
            self._lane_items(b, indexes)
        except BaseException as exc:  # noqa: BLE001 - handed to _run, which fails the batch
            b.token.cancel("a lane failed")
            errors.append(exc)

    def _lane_items(self, b: _Batch, indexes: list[int]) -> None:
        for i in indexes:
            if b.token.cancelled:
                return
            ev = b.events[i]
            call = ctxmod.CallContext(
                request_id=ev.event_id, trace_id=ctxmod.new_id(),
                experiment_id=ev.experiment.experiment_id, variant=ev.experiment.variant,
                method="catalog.batch",
            )  # fmt: skip
            bound = ctxmod.bind(call)
            try:
                if b.dry_run:
                    report, outputs = self._plan(i, ev)
                else:
                    report, outputs = self._handle(b, i, ev)
            except _HandBack:
                return
            except Exception as exc:  # noqa: BLE001 - e.g. the store failed recording it
                if not isinstance(exc, DrapeError):
                    log.exception("batch product failed unexpectedly")
                report, outputs = _pending(i, ev), pb.BatchResult()
                report.state = Item.BATCH_ITEM_STATE_FAILED
                report.reason = exc.reason if isinstance(exc, DrapeError) else "INTERNAL"
                report.message = (exc.message if isinstance(exc, DrapeError)
                                  else "internal error (see the server log)")[:MESSAGE_MAX]  # fmt: skip
            finally:
                ctxmod.unbind(bound)
            self.db.save_item(b.id, report, outputs)
            with self._cond:
                b.reports[i] = report
                b.outputs[i] = outputs
                self._touch(b)

    # ------------------------------------------------------------------ one product

    def _handle(self, b: _Batch, i: int, ev: ev_pb.ProductUpserted):
        """Run one product to its end, as the Kafka adapter does."""
        report = _pending(i, ev)
        out = pb.BatchResult()
        if self.jobs.is_stale(ev):
            report.state = Item.BATCH_ITEM_STATE_SKIPPED_STALE
            return report, out
        attempts, skip = 0, set()
        backoff = self.settings.catalog_retry_backoff_seconds
        while True:
            attempts += 1
            job_token = CancelToken(
                deadline=time.monotonic() + self.settings.catalog_job_timeout_seconds,
                is_active=lambda: not b.token.cancelled,
            )
            result = self.jobs.attempt(ev, job_token, skip_models=skip, force=b.force)
            for ready in result.ready:
                out.assets.append(ready)
                report.asset_uris.append(ready.asset_uri)
                if b.publish:
                    self._publish(b, ev, ev_pb.AssetEvent(asset_ready=ready))
            report.created += result.created
            report.reused = sum(1 for a in out.assets if a.reused)
            skip |= result.done_models
            report.attempts = attempts
            if not result.failures:
                report.state = Item.BATCH_ITEM_STATE_SUCCEEDED
                self._record(ev)
                return report, out
            if b.token.cancelled or any(
                isinstance(e, CancelledError) for _, _, e in result.failures
            ):
                raise _HandBack()
            final = [f for f in result.failures if not is_retryable(f[2])]
            if final or attempts >= self.settings.catalog_max_attempts:
                failures = final or result.failures
                for model_id, kind, exc in failures:
                    jf = job_failed(ev, model_id, kind, exc, attempts, b.publish)
                    out.failures.append(jf)
                    if b.publish:
                        self._publish(b, ev, ev_pb.AssetEvent(job_failed=jf))
                report.state = Item.BATCH_ITEM_STATE_FAILED
                report.reason = out.failures[0].reason
                report.message = out.failures[0].message[:MESSAGE_MAX]
                if b.publish:
                    self._dead_letter(b, i, ev, report, attempts)
                self._record(ev)
                return report, out
            for model_id, kind, exc in result.failures:
                if b.publish:
                    jf = job_failed(ev, model_id, kind, exc, attempts, False)
                    self._publish(b, ev, ev_pb.AssetEvent(job_failed=jf))
            delay = min(backoff * 2 ** (attempts - 1), MAX_BACKOFF) * random.uniform(0.8, 1.2)
            if b.token.wait(delay):
                raise _HandBack()

    def _record(self, ev) -> None:
        self.jobs.record_revision(ev)
        record_product(self.jobs.store, ev)

    def _plan(self, i: int, ev: ev_pb.ProductUpserted):
        """Dry run of one product: what would be made and what reused."""
        report = _pending(i, ev)
        out = pb.BatchResult()
        try:
            if self.jobs.is_stale(ev):
                report.state = Item.BATCH_ITEM_STATE_SKIPPED_STALE
                return report, out
            plan = plan_product(self.jobs, ev)
        except Exception as exc:  # noqa: BLE001 - reported as the product's failure
            report.state = Item.BATCH_ITEM_STATE_FAILED
            report.reason = exc.reason if isinstance(exc, DrapeError) else "INTERNAL"
            report.message = (exc.message if isinstance(exc, DrapeError) else "internal error")[
                :MESSAGE_MAX
            ]
            return report, out
        report.state = Item.BATCH_ITEM_STATE_PLANNED
        report.created = plan["create"]
        report.reused = len(plan["reuse"])
        report.asset_uris.extend(plan["reuse"])
        return report, out

    # ------------------------------------------------------------------ Kafka outputs

    def _default_producer(self):
        from kafka import KafkaProducer

        from services.common.kafka import client_config

        return KafkaProducer(
            acks="all", max_block_ms=10000, request_timeout_ms=10000, linger_ms=0,
            **client_config(self.settings, self.settings.kafka_bootstrap_servers),
        )  # fmt: skip

    def _send(self, b: _Batch, topic: str, key: bytes, value: bytes, headers) -> None:
        delay = 0.2
        while True:
            try:
                if self._producer is None:
                    with self._cond:
                        if self._producer is None:
                            self._producer = self._producer_factory()
                self._producer.send(topic, key=key, value=value, headers=headers).get(timeout=15)
                return
            except Exception as exc:  # noqa: BLE001 - KafkaError and timeouts: retried
                log.warning("publish to %s failed (retrying): %s", topic, exc)
            if b.token.wait(delay):
                raise _HandBack()
            delay = min(delay * 2, 5.0)

    def _publish(self, b: _Batch, ev, event: ev_pb.AssetEvent) -> None:
        from services.catalog_adapter.adapter import H_EVENT_TYPE
        from services.common.kafka import TOPIC_ASSET

        kind = event.WhichOneof("event")
        self._send(b, TOPIC_ASSET, f"{ev.merchant_id}/{ev.sku}".encode(),
                   event.SerializeToString(), [(H_EVENT_TYPE, kind.encode())])  # fmt: skip

    def _dead_letter(self, b: _Batch, i: int, ev, report: pb.BatchItem, attempts: int) -> None:
        from services.catalog_adapter import adapter as A
        from services.common.kafka import TOPIC_PRODUCT_DLQ

        now = _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        headers = [
            (A.H_REASON, report.reason.encode()),
            (A.H_MESSAGE, report.message.encode()),
            (A.H_TOPIC, DLQ_SOURCE_TOPIC.encode()),
            (A.H_PARTITION, b"-1"),
            (A.H_OFFSET, str(i).encode()),
            (A.H_ATTEMPTS, str(attempts).encode()),
            (A.H_FAILED_AT, now.encode()),
        ]
        self._send(b, TOPIC_PRODUCT_DLQ, f"{ev.merchant_id}/{ev.sku}".encode(),
                   ev.SerializeToString(), headers)  # fmt: skip


def _from_rows(row: tuple, items: list) -> _Batch:
    """A :class:`_Batch` from its database rows."""
    (bid, request_id, state, created, updated, finished, publish, force, dry_run,
     experiment, error, _total) = row  # fmt: skip
    events = [ev_pb.ProductUpserted.FromString(e) for e, _r, _o in items]
    reports, outputs = [], []
    for i, (ev, (_e, report, out)) in enumerate(zip(events, items, strict=True)):
        reports.append(pb.BatchItem.FromString(report) if report else _pending(i, ev))
        outputs.append(pb.BatchResult.FromString(zlib.decompress(out)) if out else None)
    b = _Batch(
        bid, request_id or "", common_pb2.Experiment.FromString(experiment or b""),
        bool(publish), bool(force), bool(dry_run), events, reports, outputs, state, created,
        updated, finished,
    )  # fmt: skip
    if error:
        from google.rpc import status_pb2

        b.error = status_pb2.Status.FromString(error)
    return b


class _HandBack(Exception):
    """The batch was cancelled or the server stops: the product stays PENDING."""


def _pending(i: int, ev: ev_pb.ProductUpserted) -> pb.BatchItem:
    return pb.BatchItem(index=i, event_id=ev.event_id, merchant_id=ev.merchant_id, sku=ev.sku,
                        state=Item.BATCH_ITEM_STATE_PENDING)  # fmt: skip


def _with_experiment(ev: ev_pb.ProductUpserted, experiment) -> ev_pb.ProductUpserted:
    if experiment.experiment_id and not ev.experiment.experiment_id:
        ev = ev_pb.ProductUpserted.FromString(ev.SerializeToString())
        ev.experiment.CopyFrom(experiment)
    return ev


def check_events(events: list[ev_pb.ProductUpserted], max_products: int) -> None:
    """All-or-nothing validation of a batch.

    Raises:
        InvalidInputError: BATCH_EMPTY, BATCH_TOO_LARGE, INVALID_EVENT (field
            ``products[i].…``), DUPLICATE_EVENT_ID.
    """
    if not events:
        raise InvalidInputError("BATCH_EMPTY", "the batch has no products", field="products")
    if len(events) > max_products:
        raise InvalidInputError(
            "BATCH_TOO_LARGE",
            f"{len(events)} products; at most {max_products} per batch "
            "(DRAPE_CATALOG_BATCH_MAX_PRODUCTS): split the manifest",
            field="products",
        )
    seen: dict[str, int] = {}
    for i, ev in enumerate(events):
        try:
            validate_event(ev)
        except InvalidInputError as exc:
            raise InvalidInputError(
                exc.reason, f"products[{i}]: {exc.message}"[:MESSAGE_MAX],
                field=f"products[{i}].{exc.field}" if exc.field else f"products[{i}]",
            ) from None  # fmt: skip
        if ev.event_id in seen:
            raise InvalidInputError(
                "DUPLICATE_EVENT_ID",
                f"products[{i}] and products[{seen[ev.event_id]}] share event_id "
                f"{ev.event_id[:64]!r}",
                field=f"products[{i}].event_id",
            )
        seen[ev.event_id] = i


def job_failed(ev, model_id: str, kind: int, exc, attempts: int, dead: bool) -> ev_pb.JobFailed:
    """The JobFailed of one failure (as the adapter publishes it)."""
    jf = ev_pb.JobFailed(
        event_id=ev.event_id, merchant_id=ev.merchant_id, sku=ev.sku, model_id=model_id,
        reason=exc.reason if isinstance(exc, DrapeError) else "INTERNAL",
        message=(exc.message if isinstance(exc, DrapeError)
                 else "internal error (see the server logs)")[:MESSAGE_MAX],
        retryable=is_retryable(exc), attempts=attempts, dead_lettered=dead,
        experiment=ev.experiment, kind=kind, revision=ev.revision,
    )  # fmt: skip
    jf.failed_at.GetCurrentTime()
    return jf


def plan_product(jobs: JobRunner, ev: ev_pb.ProductUpserted) -> dict:
    """What :meth:`JobRunner.attempt` would do for ``ev``, without doing it: the roster is
    resolved and the garments fetched (so their failures show), then every still's (and
    clip's) content hash is looked up in the store. Mirrors the hashing of
    :mod:`services.catalog_adapter.jobs` (a test checks the two agree).

    Returns:
        ``{"create": assets to make, "reuse": URIs of assets that exist}``.

    Raises:
        DrapeError: the product's failure (ROSTER_NOT_FOUND, GARMENT_FETCH_FAILED, …).
    """
    _rid, models = jobs.rosters.resolve(ev.merchant_id, ev.roster_id)
    parts: list[str] = []
    for i, g in enumerate(ev.garments):
        hints = garment_hints(g, f"garments[{i}].")
        data = jobs.read(g.image_uri, f"garments[{i}].image_uri")
        parts += [hashlib.sha256(data).hexdigest(), hints.category or ""]
        parts += [hints.sleeve or "", hints.length or ""]
    d = ev.deliverables
    fmt = FORMAT_NAMES.get(d.still_format, "PNG")
    create, reuse = 0, []
    for model in models:
        version = f"{ADAPTER_VERSION}+{jobs.stills.version}"
        still_hash = content_hash("still", *parts, model.sha256, version, fmt, "refine=1")
        base = f"{ev.merchant_id}/{ev.sku}/{model.id}/{still_hash}"
        meta = jobs._meta(base)
        if meta is None:
            create += 1
        elif d.stills:
            reuse.append(jobs.store.uri(f"{base}.{meta['ext']}"))
        if d.clips:
            cversion = f"{ADAPTER_VERSION}+{jobs.clips.version}"
            clip_hash = content_hash("clip", still_hash, cversion, d.motion_template)
            index = jobs._meta(f"{ev.merchant_id}/{ev.sku}/{model.id}/{clip_hash}")
            if index is None:
                create += 1
            else:
                reuse += [jobs.store.uri(f"{e['base']}.{e['ext']}") for e in index["assets"]]
    return {"create": create, "reuse": reuse}
