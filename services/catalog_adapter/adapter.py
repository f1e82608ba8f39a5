"""The Kafka side of the catalog adapter: consume product events, run jobs, publish results,
dead-letter what cannot be done, commit offsets only once the outputs are durable.

Threads: the main thread owns the consumer (kafka-python consumers are not thread-safe);
jobs run on a small pool; the producer is shared (it is thread-safe). Per partition, records
are handled one at a time and in order (events of one product share a partition); different
partitions run in parallel up to ``DRAPE_CATALOG_WORKERS``. The main thread keeps polling
(heartbeats, rebalances) however long a job takes; a partition whose queue reaches
``MAX_QUEUED`` records is paused, so it never holds more than that.

Offsets: a record's offset is committed after its job ended *and* every output it produced
(asset files, AssetReady/JobFailed events, the dead letter) was acknowledged by the store
and the broker (``acks=all``). A crash before that replays the record; the replay finds the
assets by content hash and re-announces them (``reused=true``) instead of making them again.

Rebalances: when partitions are revoked the listener waits (without blocking heartbeats) for
their running jobs, commits what finished, and hands back the rest (cancelled, not
committed). When membership is lost (e.g. a broker restart) nothing can be committed; the
running jobs are cancelled and handed back.

Shutdown (SIGTERM/SIGINT): stop taking records, let running jobs finish within
``DRAPE_GRACE_PERIOD_SECONDS`` less a reserve, cancel the rest (handed back, not committed),
commit what is done and leave the group, all within the grace period whatever the jobs are
doing: workers and attempts are daemon threads nothing waits for beyond it.

Stuck jobs: each attempt runs in its own thread and ends by the job's deadline
(``DRAPE_CATALOG_JOB_TIMEOUT_SECONDS``; the fetch honours it too). An attempt still running
``ABANDON_SLACK`` seconds after it is abandoned: its worker goes on (DEADLINE_EXCEEDED,
retried, then dead-lettered) and the attempt's token is cancelled. At most
``DRAPE_CATALOG_WORKERS + MAX_ABANDONED`` attempt threads exist at once; past that, an attempt
waits for one to end (within its own deadline).

Lag (``drape_catalog_consumer_lag``) counts every record not done: waiting in the queue or
running count, so a stuck job shows as lag.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import random
import threading
import time
from concurrent.futures import Future

from google.protobuf.message import DecodeError
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener

from drape.catalog.v1 import events_pb2 as ev_pb
from services.catalog_adapter.batches import record_product
from services.catalog_adapter.jobs import AttemptResult, JobRunner, validate_event
from services.catalog_adapter.runners import is_retryable
from services.common import context as ctxmod
from services.common.context import CancelToken
from services.common.errors import (
    CancelledError,
    DeadlineExceededError,
    DrapeError,
    InvalidInputError,
)
from services.common.kafka import (
    FAST_GROUP,
    TOPIC_ASSET,
    TOPIC_PRODUCT,
    TOPIC_PRODUCT_DLQ,
    client_config,
)
from services.common.metrics import LATENCY_BUCKETS, Metrics

log = logging.getLogger("drape.catalog")

# Dead-letter headers (documented in proto/drape/catalog/v1/events.proto).
H_REASON = "drape-dlq-reason"
H_MESSAGE = "drape-dlq-message"
H_TOPIC = "drape-source-topic"
H_PARTITION = "drape-source-partition"
H_OFFSET = "drape-source-offset"
H_ATTEMPTS = "drape-dlq-attempts"
H_FAILED_AT = "drape-dlq-failed-at"
H_EVENT_TYPE = "drape-event-type"
MAX_BACKOFF = 60.0
MAX_QUEUED = 256  # records held per partition before it is paused
HANDOFF_SECONDS = 20.0  # how long a revoked partition's running job may take to finish
ABANDON_SLACK = 1.0  # after the job deadline, how long an attempt may take to notice it
MAX_ABANDONED = 16  # abandoned attempt threads still alive before new attempts wait
SHUTDOWN_RESERVE = 3.0  # of the grace period, kept for cancelling, committing and closing


class CatalogMetrics:
    """The adapter's metric families, on a :class:`Metrics` registry."""

    def __init__(self, metrics: Metrics) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        r = metrics.registry
        self.base = metrics
        self.consumed = Counter(
            "drape_catalog_events_consumed", "Product records taken from the topic.", registry=r
        )
        self.processed = Counter(
            "drape_catalog_events_processed",
            "Product records handled to the end, by outcome (ok, stale, failed).",
            ["outcome"],
            registry=r,
        )
        self.failed = Counter(
            "drape_catalog_events_failed",
            "Product records with a final failure, by reason.",
            ["reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "drape_catalog_events_dead_lettered",
            "Records written to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.retries = Counter(
            "drape_catalog_job_retries",
            "Attempts retried after a transient failure, by reason.",
            ["reason"],
            registry=r,
        )
        self.assets = Counter(
            "drape_catalog_assets",
            "Assets announced, by kind and whether made or reused.",
            ["kind", "outcome"],
            registry=r,
        )
        self.publish_errors = Counter(
            "drape_catalog_publish_errors",
            "Failed sends to the broker (each is retried).",
            registry=r,
        )
        self.lag = Gauge(
            "drape_catalog_consumer_lag",
            "Records in the partition not yet done by this consumer (waiting in its queue "
            "or running included).",
            ["partition"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "drape_catalog_job_duration_seconds",
            "Wall time of one product record, retries included, by outcome.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "drape_catalog_jobs_in_flight", "Product records being worked on.", registry=r
        )
        self.assigned = Gauge(
            "drape_catalog_assigned_partitions",
            "Partitions of the product topic assigned to this consumer.",
            registry=r,
        )
        self.rebalances = Counter(
            "drape_catalog_rebalances", "Partition assignments received.", registry=r
        )
        self.abandoned = Counter(
            "drape_catalog_attempts_abandoned",
            "Attempts still running past the job deadline, left behind (DEADLINE_EXCEEDED).",
            registry=r,
        )
        self.attempt_threads = Gauge(
            "drape_catalog_attempt_threads",
            "Attempt threads alive, abandoned ones included.",
            registry=r,
        )


class _HandBack(Exception):
    """The job was cancelled (shutdown, revocation): its record is not committed."""


@dataclasses.dataclass
class _Part:
    """One assigned partition's state (guarded by the adapter's lock)."""

    queue: list = dataclasses.field(default_factory=list)
    running: Future | None = None
    running_offset: int = -1
    token: CancelToken | None = None
    done_offset: int | None = None  # next offset to commit
    committed: int | None = None


def _header(value) -> bytes:
    return str(value).encode()


def _now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CatalogAdapter:
    """One adapter process's consumer, producer and job pool.

    Args:
        settings: :class:`services.common.config.Settings`.
        jobs: the :class:`JobRunner`.
        metrics: where the adapter's metrics go.
        bootstrap: broker list overriding the settings.
    """

    def __init__(
        self, settings, jobs: JobRunner, metrics: Metrics, bootstrap: str | None = None
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.metrics = CatalogMetrics(metrics)
        self.bootstrap = bootstrap or settings.kafka_bootstrap_servers
        self.stop_event = threading.Event()
        self._lock = threading.RLock()
        self._parts: dict = {}
        # Attempt threads (running and abandoned) are bounded by this semaphore.
        self._attempt_slots = threading.BoundedSemaphore(settings.catalog_workers + MAX_ABANDONED)
        self._attempts_alive = 0
        self._consumer = None
        self._producer = None
        self._last_lag = 0.0
        self._rewind: dict = {}  # revoked partition -> first record not handled
        self._seek_pending: dict = {}  # reassigned partition -> where to resume

    # ------------------------------------------------------------------ clients

    def _connect(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        common = client_config(self.settings, self.bootstrap)
        # Short reconnect backoff and metadata age: after a broker outage the clients find
        # it (and re-created topics) within seconds, not the defaults' 30 s / 5 min.
        net = {"reconnect_backoff_max_ms": 2000, "metadata_max_age_ms": 5000}
        self._producer = KafkaProducer(
            acks="all",
            enable_idempotence=False,  # dedup is by content hash; a restarted broker would
            # not know the producer id and refuse its sequence numbers
            max_block_ms=10000,
            request_timeout_ms=10000,
            delivery_timeout_ms=30000,
            linger_ms=0,
            **net,
            **common,
        )
        self._consumer = KafkaConsumer(
            group_id=self.settings.catalog_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=64,
            **{**FAST_GROUP, **net},
            **common,
        )
        self._consumer.subscribe([TOPIC_PRODUCT], listener=_Listener(self))

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        """Consume until :attr:`stop_event` is set; then drain and close. Returns 0."""
        self._connect()
        log.info(
            "catalog adapter consuming",
            extra={"topic": TOPIC_PRODUCT, "group": self.settings.catalog_group_id},
        )
        try:
            while not self.stop_event.is_set():
                self._step(poll_ms=100)
        finally:
            self._shutdown()
        return 0

    def _step(self, poll_ms: int) -> None:
        self._collect()
        self._commit()
        self._pause_resume()
        try:
            batches = self._consumer.poll(timeout_ms=poll_ms)
        except Exception as exc:  # noqa: BLE001 - the client recovers; keep polling
            log.warning("poll failed: %s", exc)
            time.sleep(0.2)
            return
        with self._lock:
            rewind, self._seek_pending = self._seek_pending, {}
            for tp, offset in rewind.items():
                # A partition we kept through a rebalance keeps its fetch position (kafka-
                # python preserves it), which is past the records we dropped at revocation:
                # go back to the first record not handled.
                try:
                    self._consumer.seek(tp, offset)
                except Exception as exc:  # noqa: BLE001 - gone again: its next owner resumes
                    log.warning("seek failed: %s", exc)
                batches.pop(tp, None)  # fetched from the old position
            for tp, records in batches.items():
                st = self._parts.get(tp)
                if st is None:
                    continue
                st.queue.extend(records)
                self.metrics.consumed.inc(len(records))
        self._start_jobs()
        if time.monotonic() - self._last_lag > 2.0 and not self.stop_event.is_set():
            self._update_lag()

    def _start_jobs(self) -> None:
        with self._lock:
            running = sum(1 for st in self._parts.values() if st.running is not None)
            for _tp, st in self._parts.items():
                if running >= self.settings.catalog_workers or self.stop_event.is_set():
                    break
                if st.running is None and st.queue:
                    record = st.queue.pop(0)
                    st.token = CancelToken()
                    st.running_offset = record.offset
                    st.running = _spawn("catalog-job", self._process, record, st.token)
                    running += 1

    def _collect(self) -> None:
        with self._lock:
            for tp, st in self._parts.items():
                fut = st.running
                if fut is None or not fut.done():
                    continue
                st.running = None
                if fut.result() == "done":
                    st.done_offset = st.running_offset + 1
                else:  # handed back: replay it (and what followed) later
                    st.queue.clear()
                    try:
                        self._consumer.seek(tp, st.running_offset)
                    except Exception as exc:  # noqa: BLE001
                        log.warning("seek failed: %s", exc)

    def _commit(self, timeout_ms: int | None = None) -> None:
        with self._lock:
            offsets = self._pending_offsets(self._parts)
        if not offsets:
            return
        try:
            self._consumer.commit(offsets, timeout_ms=timeout_ms)
        except Exception as exc:  # noqa: BLE001 - retried on the next step
            log.warning("offset commit failed (retried): %s", exc)
            return
        with self._lock:
            for tp, om in offsets.items():
                if tp in self._parts:
                    self._parts[tp].committed = om.offset

    @staticmethod
    def _pending_offsets(parts) -> dict:
        from kafka.structs import OffsetAndMetadata

        return {
            tp: OffsetAndMetadata(st.done_offset, "", -1)
            for tp, st in parts.items()
            if st.done_offset is not None and st.done_offset != st.committed
        }

    def _pause_resume(self) -> None:
        # Records already fetched are taken into the queue rather than left in the client's
        # buffer: pausing drops that buffer, and re-fetching from the middle of a batch is
        # something the Tansu test broker cannot do. So a partition is paused only when its
        # queue is long (memory stays bounded); polling goes on either way.
        with self._lock:
            busy = [tp for tp, st in self._parts.items() if len(st.queue) >= MAX_QUEUED]
            idle = [tp for tp, st in self._parts.items() if len(st.queue) < MAX_QUEUED]
        try:
            if self.stop_event.is_set():
                busy, idle = busy + idle, []
            if busy:
                self._consumer.pause(*busy)
            if idle and not self.stop_event.is_set():
                self._consumer.resume(*idle)
        except Exception as exc:  # noqa: BLE001 - assignment changed under us
            log.debug("pause/resume: %s", exc)
        with self._lock:
            self.metrics.in_flight.set(sum(1 for st in self._parts.values() if st.running))

    def _update_lag(self) -> None:
        self._last_lag = time.monotonic()
        with self._lock:
            tps = list(self._parts)
        if not tps:
            return
        try:
            ends = self._consumer.end_offsets(tps, timeout_ms=2000)
        except Exception:  # noqa: BLE001 - broker away: keep the last values
            return
        for tp in tps:
            with self._lock:
                st = self._parts.get(tp)
                base = None if st is None else _first_not_done(st)
            if base is None:
                try:
                    base = self._consumer.position(tp, timeout_ms=1000)
                except Exception:  # noqa: BLE001
                    continue
            if tp in ends and base is not None:
                self.metrics.lag.labels(partition=str(tp.partition)).set(max(ends[tp] - base, 0))

    def _shutdown(self) -> None:
        """Finish or hand back running jobs, commit, leave the group: within the grace
        period, whatever the jobs are doing (a stuck one is cancelled and handed back)."""
        grace = self.settings.grace_period_seconds
        deadline = time.monotonic() + grace
        reserve = min(SHUTDOWN_RESERVE, grace / 2)
        with self._lock:
            for st in self._parts.values():
                st.queue.clear()  # not started: simply not committed, replayed elsewhere
        log.info("draining catalog jobs", extra={"grace_seconds": grace})
        while time.monotonic() < deadline - reserve:
            with self._lock:
                if not any(st.running for st in self._parts.values()):
                    break
            self._step(poll_ms=50)
        with self._lock:
            for st in self._parts.values():
                if st.token is not None and st.running is not None:
                    st.token.cancel("shutting down")
        # Cancelled workers hand back within a poll of their attempt; none is waited for
        # past half the reserve (a daemon thread: the process exits without it).
        t_end = deadline - reserve / 2
        while time.monotonic() < t_end:
            with self._lock:
                if not any(st.running and not st.running.done() for st in self._parts.values()):
                    break
            time.sleep(0.02)
        self._collect()
        self._commit(timeout_ms=_ms(deadline - time.monotonic(), reserve / 4))
        try:
            self._consumer.close(
                autocommit=False, timeout_ms=_ms(deadline - time.monotonic(), reserve / 4)
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("consumer close: %s", exc)
        try:
            self._producer.close(timeout=max(deadline - time.monotonic(), 0.1))
        except Exception as exc:  # noqa: BLE001
            log.warning("producer close: %s", exc)
        log.info("catalog adapter stopped")

    # ------------------------------------------------------------------ rebalances

    def on_assigned(self, assigned) -> None:
        with self._lock:
            for tp in assigned:
                self._parts.setdefault(tp, _Part())
            self._seek_pending = {tp: o for tp, o in self._rewind.items() if tp in assigned}
            self._rewind = {}
            self.metrics.assigned.set(len(self._parts))
        self.metrics.rebalances.inc()
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )

    def take_revoked(self, revoked, lost: bool) -> dict:
        """Forget ``revoked``; cancel their running jobs; return offsets still to commit."""
        with self._lock:
            parts = {tp: self._parts.pop(tp) for tp in list(revoked) if tp in self._parts}
            for tp, st in parts.items():
                first = st.queue[0].offset if st.queue else None
                if st.running is not None and not st.running.done():
                    st.token.cancel("partition revoked")
                    first = st.running_offset
                elif st.running is not None and st.running.result() == "done":
                    st.done_offset = st.running_offset + 1
                elif st.running is not None:  # handed back
                    first = st.running_offset
                if first is not None and not lost:
                    self._rewind[tp] = first
            self.metrics.assigned.set(len(self._parts))
        for tp in parts:
            with contextlib.suppress(KeyError):
                self.metrics.lag.remove(str(tp.partition))
        return {} if lost else self._pending_offsets(parts)

    def running_in(self, tps) -> bool:
        with self._lock:
            return any(
                self._parts[tp].running is not None and not self._parts[tp].running.done()
                for tp in tps
                if tp in self._parts
            )

    # ------------------------------------------------------------------ one record

    def _process(self, record, token: CancelToken) -> str:
        """Handle one record to the end; returns "done" (commit it) or "handback"."""
        t0 = time.perf_counter()
        outcome = "failed"
        try:
            outcome = self._handle(record, token)
            return "done"
        except _HandBack:
            outcome = "handback"
            return "handback"
        except Exception:  # noqa: BLE001 - a bug must not kill the worker; replay the record
            log.exception("catalog job crashed; the record will be replayed")
            outcome = "handback"
            token.wait(1.0)
            return "handback"
        finally:
            self.metrics.job_seconds.labels(outcome=outcome).observe(time.perf_counter() - t0)

    def _handle(self, record, token: CancelToken) -> str:
        try:
            ev = ev_pb.ProductUpserted.FromString(record.value or b"")
        except DecodeError as exc:
            self._dead_letter(
                record, "PAYLOAD_UNDECODABLE", f"not a ProductUpserted: {exc}", 1, token
            )
            self.metrics.failed.labels(reason="PAYLOAD_UNDECODABLE").inc()
            self.metrics.processed.labels(outcome="failed").inc()
            return "failed"
        call = ctxmod.CallContext(
            request_id=ev.event_id or f"{record.topic}/{record.partition}/{record.offset}",
            trace_id=ctxmod.new_id(),
            experiment_id=ev.experiment.experiment_id,
            variant=ev.experiment.variant,
            method="catalog.product",
        )
        bound = ctxmod.bind(call)
        try:
            return self._handle_event(record, ev, token)
        finally:
            ctxmod.unbind(bound)

    def _handle_event(self, record, ev, token: CancelToken) -> str:
        try:
            validate_event(ev)
        except InvalidInputError as exc:
            self._final_failure(record, ev, [("", 0, exc)], 1, token)
            return "failed"
        if self.jobs.is_stale(ev):
            log.info("stale revision skipped", extra={"revision": ev.revision})
            self.metrics.processed.labels(outcome="stale").inc()
            return "stale"
        attempts, skip = 0, set()
        backoff = self.settings.catalog_retry_backoff_seconds
        while True:
            attempts += 1
            job_token = _linked(token, self.settings.catalog_job_timeout_seconds)
            result = self._attempt(ev, token, job_token, skip)
            for ready in result.ready:
                self._publish_event(ev, ev_pb.AssetEvent(asset_ready=ready), token)
                kind = ev_pb.AssetKind.Name(ready.kind).removeprefix("ASSET_KIND_").lower()
                self.metrics.assets.labels(
                    kind=kind, outcome="reused" if ready.reused else "created"
                ).inc()
            skip |= result.done_models
            if not result.failures:
                self.jobs.record_revision(ev)
                record_product(self.jobs.store, ev)  # for batches of "changed since T"
                self.metrics.processed.labels(outcome="ok").inc()
                log.info(
                    "product done",
                    extra={
                        "assets": len(result.ready),
                        "assets_created": result.created,
                        "attempts": attempts,
                    },
                )
                return "ok"
            if token.cancelled or any(isinstance(e, CancelledError) for _, _, e in result.failures):
                raise _HandBack()
            final = [f for f in result.failures if not is_retryable(f[2])]
            if final or attempts >= self.settings.catalog_max_attempts:
                self._final_failure(record, ev, final or result.failures, attempts, token)
                self.jobs.record_revision(ev)
                record_product(self.jobs.store, ev)
                return "failed"
            for model_id, kind, exc in result.failures:
                reason = _reason(exc)
                self.metrics.retries.labels(reason=reason).inc()
                self._publish_event(
                    ev,
                    ev_pb.AssetEvent(
                        job_failed=self._job_failed(ev, model_id, kind, exc, attempts, False)
                    ),
                    token,
                )
            delay = min(backoff * 2 ** (attempts - 1), MAX_BACKOFF) * random.uniform(0.8, 1.2)
            log.warning(
                "transient failure, retrying",
                extra={
                    "reason": _reason(result.failures[0][2]),
                    "attempt": attempts,
                    "delay_s": round(delay, 2),
                },
            )
            if token.wait(delay):
                raise _HandBack()

    def _attempt(self, ev, token: CancelToken, job_token: CancelToken, skip) -> AttemptResult:
        """One attempt in its own thread, waited for until the job's deadline plus
        ``ABANDON_SLACK``; past that it is abandoned (its token cancelled) and reported as
        DEADLINE_EXCEEDED, so no event holds a worker longer than the job timeout.

        Raises:
            _HandBack: when ``token`` (shutdown, revocation) is cancelled meanwhile.
        """
        while not self._attempt_slots.acquire(timeout=0.05):
            if token.cancelled:
                raise _HandBack()
            if job_token.remaining() <= 0:
                return _deadline_result("earlier attempts past their deadline still run")
        done, box = threading.Event(), {}

        def run() -> None:
            try:
                box["result"] = self.jobs.attempt(ev, job_token, skip_models=skip)
            except BaseException as exc:  # noqa: BLE001 - handed to the worker
                box["error"] = exc
            finally:
                with self._lock:
                    self._attempts_alive -= 1
                    self.metrics.attempt_threads.set(self._attempts_alive)
                self._attempt_slots.release()
                done.set()

        with self._lock:
            self._attempts_alive += 1
            self.metrics.attempt_threads.set(self._attempts_alive)
        threading.Thread(target=run, name="catalog-attempt", daemon=True).start()
        give_up = time.monotonic() + max(job_token.remaining(), 0) + ABANDON_SLACK
        while not done.wait(0.05):
            if token.cancelled:
                job_token.cancel("handed back")
                raise _HandBack()
            if time.monotonic() > give_up:
                job_token.cancel("abandoned past the job deadline")
                self.metrics.abandoned.inc()
                log.error("attempt abandoned: still running past the job deadline")
                return _deadline_result("the job did not end by its deadline")
        if "error" in box:
            raise box["error"]
        return box["result"]

    # ------------------------------------------------------------------ outputs

    def _job_failed(self, ev, model_id, kind, exc, attempts, dead) -> ev_pb.JobFailed:
        msg = (
            exc.message if isinstance(exc, DrapeError) else "internal error (see the adapter logs)"
        )
        jf = ev_pb.JobFailed(
            event_id=ev.event_id,
            merchant_id=ev.merchant_id,
            sku=ev.sku,
            model_id=model_id,
            reason=_reason(exc),
            message=msg,
            retryable=is_retryable(exc),
            attempts=attempts,
            dead_lettered=dead,
            experiment=ev.experiment,
            kind=kind,
            revision=ev.revision,
        )
        jf.failed_at.GetCurrentTime()
        return jf

    def _final_failure(self, record, ev, failures, attempts, token) -> None:
        """Publish a JobFailed per failure (dead_lettered) and dead-letter the record."""
        for _model, _kind, exc in failures:
            if not isinstance(exc, DrapeError):
                log.error("job failed unexpectedly", exc_info=exc)
        reason = _reason(failures[0][2])
        if ev.merchant_id and ev.sku:
            for model_id, kind, exc in failures:
                jf = self._job_failed(ev, model_id, kind, exc, attempts, True)
                self._publish_event(ev, ev_pb.AssetEvent(job_failed=jf), token)
        first = failures[0][2]
        message = first.message if isinstance(first, DrapeError) else "internal error"
        self._dead_letter(record, reason, message, attempts, token)
        self.metrics.failed.labels(reason=reason).inc()
        self.metrics.processed.labels(outcome="failed").inc()
        log.warning("product dead-lettered", extra={"reason": reason, "attempts": attempts})

    def _dead_letter(self, record, reason, message, attempts, token) -> None:
        headers = list(record.headers or []) + [
            (H_REASON, _header(reason)),
            (H_MESSAGE, _header(message[:1000])),
            (H_TOPIC, _header(record.topic)),
            (H_PARTITION, _header(record.partition)),
            (H_OFFSET, _header(record.offset)),
            (H_ATTEMPTS, _header(attempts)),
            (H_FAILED_AT, _header(_now_rfc3339())),
        ]
        self._send(TOPIC_PRODUCT_DLQ, record.key, record.value, headers, token)
        self.metrics.dead_lettered.labels(reason=reason).inc()

    def _publish_event(self, ev, event: ev_pb.AssetEvent, token) -> None:
        kind = event.WhichOneof("event")
        self._send(
            TOPIC_ASSET,
            f"{ev.merchant_id}/{ev.sku}".encode(),
            event.SerializeToString(),
            [(H_EVENT_TYPE, kind.encode())],
            token,
        )

    def _send(self, topic, key, value, headers, token: CancelToken) -> None:
        """Send and wait for the broker's acknowledgement; retry until it comes or the job
        is cancelled (then the record is handed back, not committed)."""
        delay = 0.2
        while True:
            try:
                self._producer.send(topic, key=key, value=value, headers=headers).get(timeout=15)
                return
            except Exception as exc:  # noqa: BLE001 - KafkaError and timeouts: retried
                self.metrics.publish_errors.inc()
                log.warning("publish to %s failed (retrying): %s", topic, exc)
            if token.wait(delay):
                raise _HandBack()
            delay = min(delay * 2, 5.0)


def _reason(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, DrapeError) else "INTERNAL"


def _deadline_result(message: str) -> AttemptResult:
    exc = DeadlineExceededError("DEADLINE_EXCEEDED", message)
    return AttemptResult(failures=[("", ev_pb.ASSET_KIND_UNSPECIFIED, exc)])


def _first_not_done(st: _Part) -> int | None:
    """Offset of the partition's first record not done: the running one, else the first
    waiting, else the next to commit (None: ask the consumer's position)."""
    if st.running is not None:
        return st.running_offset
    if st.queue:
        return st.queue[0].offset
    return st.done_offset


def _ms(seconds: float, floor: float) -> int:
    return int(max(seconds, floor) * 1000)


def _spawn(name: str, fn, *args) -> Future:
    """``fn(*args)`` on a new daemon thread (nothing joins it at exit, unlike a pool's
    workers: a stuck job cannot hold the process past its grace period)."""
    fut: Future = Future()

    def run() -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return fut


def _linked(parent: CancelToken, seconds: float) -> CancelToken:
    """A token with its own deadline that is also cancelled with ``parent``."""
    child = CancelToken(deadline=time.monotonic() + seconds, is_active=lambda: not parent.cancelled)
    return child


class _Listener(AsyncConsumerRebalanceListener):
    """Rebalance listener (async: it waits for running jobs without blocking heartbeats)."""

    def __init__(self, adapter: CatalogAdapter) -> None:
        self.adapter = adapter

    async def on_partitions_revoked(self, revoked) -> None:
        await self._give_up(revoked, lost=False)

    async def on_partitions_lost(self, lost) -> None:
        await self._give_up(lost, lost=True)

    async def on_partitions_assigned(self, assigned) -> None:
        self.adapter.on_assigned(assigned)

    async def _give_up(self, tps, lost: bool) -> None:
        if not lost:
            deadline = time.monotonic() + HANDOFF_SECONDS
            while self.adapter.running_in(tps) and time.monotonic() < deadline:
                await _loop_sleep(0.05)
        offsets = self.adapter.take_revoked(tps, lost)
        if offsets:
            try:
                await self.adapter._consumer.commit_async(offsets)
            except Exception as exc:  # noqa: BLE001 - replayed by the next owner (reused)
                log.warning("commit on revocation failed: %s", exc)


async def _loop_sleep(seconds: float) -> None:
    """Sleep on kafka-python's own event loop (the IO thread that runs the listener), so
    heartbeats continue meanwhile. kafka-python 3.0 (locked) exposes no public sleep."""
    from kafka.net.selector import KernelEvent

    await KernelEvent("_sleep", seconds)
