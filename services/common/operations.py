"""Long-running operations: Start → id, Watch → progress stream then result, Get, Cancel.

Services with long work (clips, batches) hand a function to :class:`OperationManager`; it
runs on a bounded worker pool, reports progress, honours cancellation between units of
work, keeps finished operations for a TTL, and deduplicates starts by request id. The
service's servicer only converts requests and results.

Security of the ids (an operation's result is a shopper's clip):

* Operation ids are random (:func:`secrets.token_urlsafe`, 144 bits), never derived from
  the client's request id, so they cannot be guessed.
* A request id is bound to a fingerprint of the request's content: a second start with
  the same id and the same content returns the first operation (a safe retry), one with
  other content is refused with ALREADY_EXISTS (reason REQUEST_ID_REUSED), never handed
  someone else's operation.
* With authentication on, every operation belongs to its caller (``owner``): request ids
  are deduplicated per caller, and another caller's operation id answers NOT_FOUND, the
  same as an unknown id, so ids cannot be probed.

With a shared :class:`~services.common.opstore.OperationStore` every replica can answer
Watch, Get and Cancel for an operation that another replica runs (see that module).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.rpc import status_pb2

from drape.common.v1 import common_pb2, operations_pb2
from services.common import context as ctxmod
from services.common.context import CancelToken
from services.common.errors import (
    CancelledError,
    DrapeError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from services.common.interceptors import internal_error, status_proto
from services.common.opstore import (
    KEEPALIVE,
    LOST_AFTER,
    PROGRESS_EVERY,
    OperationStore,
    b64,
    scope_of,
    unb64,
)

log = logging.getLogger("drape.operations")
State = operations_pb2.OperationState
TERMINAL = frozenset(
    {State.OPERATION_STATE_SUCCEEDED, State.OPERATION_STATE_FAILED, State.OPERATION_STATE_CANCELLED}
)


OP_ID_BYTES = 18  # 144 random bits, URL-safe base64: 24 characters
_OP_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def fingerprint(request) -> str:
    """A digest of a request message's content (deterministic serialization), bound to its
    request id at dedupe."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


class AlreadyExistsError(DrapeError):
    """A request id already bound to a request with other content."""

    code = grpc.StatusCode.ALREADY_EXISTS


class OperationHandle:
    """What the work function sees: report progress, check for cancellation."""

    def __init__(self, op: _Op, manager: OperationManager) -> None:
        self._op, self._manager = op, manager
        self.token = op.token

    def progress(self, done: int, total: int | None = None, stage: str | None = None) -> None:
        """Report ``done`` units of ``total`` in ``stage``; wakes every watcher."""
        self._manager._update(self._op, done=done, total=total, stage=stage)

    def check(self, stage: str = "") -> None:
        """Raise :class:`CancelledError` once the operation was cancelled."""
        self.token.check(stage)


@dataclasses.dataclass
class _Op:
    id: str
    request_id: str
    experiment: common_pb2.Experiment
    token: CancelToken | None  # None: a record read from the shared store
    owner: str = ""  # scope_of(caller identity)
    fingerprint: str = ""
    state: int = State.OPERATION_STATE_QUEUED
    done: int = 0
    total: int = 0
    stage: str = "queued"
    error: Any = None  # google.rpc.Status
    result: Any = None
    created: float = dataclasses.field(default_factory=time.time)
    updated: float = dataclasses.field(default_factory=time.time)
    started_mono: float | None = None
    finished: float | None = None
    version: int = 0
    started: float | None = None  # wall clock, for records read by other replicas
    saved_version: int = -1
    saved_at: float = 0.0
    cancel_checked: float = 0.0
    save_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def _ts(t: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


class OperationManager:
    """Registry and worker pool for long-running operations.

    Args:
        max_active: operations queued or running at once in this process; more are refused
            with RESOURCE_EXHAUSTED (reason QUEUE_FULL) rather than queued without bound.
        workers: operations running concurrently (the rest wait, QUEUED).
        ttl_seconds: how long a finished operation stays readable.
        max_finished: finished operations (and their results) kept in this process; past
            it the oldest are dropped before their TTL (they stay readable from ``store``
            when there is one). Bounds the memory that a stream of clips can hold.
        store: the :class:`~services.common.opstore.OperationStore` shared by replicas, or
            None to keep operations in this process only.
        encode, decode: a result to bytes and back (needed with ``store``; e.g. a proto's
            ``SerializeToString`` and ``FromString``).
    """

    def __init__(
        self,
        max_active: int = 8,
        workers: int = 1,
        ttl_seconds: float = 3600.0,
        max_finished: int = 256,
        store: OperationStore | None = None,
        encode: Callable[[Any], bytes] | None = None,
        decode: Callable[[bytes], Any] | None = None,
    ) -> None:
        if store is not None and (encode is None or decode is None):
            raise ValueError("a shared operation store needs encode and decode for results")
        self.max_active = max_active
        self.ttl = ttl_seconds
        self.max_finished = max_finished
        self.store, self._encode, self._decode = store, encode, decode
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drape-op")
        self._ops: dict[str, _Op] = {}
        # (owner scope, request id) -> (operation id, request fingerprint)
        self._by_request: dict[tuple[str, str], tuple[str, str]] = {}
        self._cond = threading.Condition()
        self._closed = threading.Event()
        if store is not None:
            threading.Thread(target=self._keepalive, name="drape-op-keepalive", daemon=True).start()

    # ------------------------------------------------------------------ public API

    def start(
        self,
        work: Callable[[OperationHandle], Any],
        request_id: str = "",
        experiment: common_pb2.Experiment | None = None,
        total: int = 0,
        owner: str = "",
        fingerprint: str = "",
    ) -> operations_pb2.Operation:
        """Run ``work(handle)`` in the background; returns the new operation.

        A start with a ``request_id`` already seen from the same ``owner`` (and not yet
        expired) and the same ``fingerprint`` returns that operation instead of starting a
        second one.

        Args:
            owner: the caller's identity (``security.caller_identity``; "" when
                authentication is off): operations are visible to their owner only.
            fingerprint: a digest of the request's content, bound to ``request_id``.

        Raises:
            ResourceExhaustedError: QUEUE_FULL when ``max_active`` operations are pending.
            AlreadyExistsError: REQUEST_ID_REUSED when ``request_id`` was used for a request
                with other content.
        """
        scope = scope_of(owner)
        key = (scope, request_id)
        with self._cond:
            self._sweep()
            if request_id and key in self._by_request:
                return self._same_request(key, fingerprint, owner)
            active = sum(1 for o in self._ops.values() if o.state not in TERMINAL)
            if active >= self.max_active:
                raise ResourceExhaustedError(
                    "QUEUE_FULL", f"{active} operations are already queued or running; retry later"
                )
            op = _Op(
                id=secrets.token_urlsafe(OP_ID_BYTES),
                request_id=request_id,
                experiment=experiment or common_pb2.Experiment(),
                token=CancelToken(),
                total=total,
                owner=scope,
                fingerprint=fingerprint,
            )
        if self.store is not None:
            self._save(op, force=True)  # the record first: a claim never points at nothing
            if request_id:
                existing = self._claim(op, owner)
                if existing is not None:
                    return existing
        with self._cond:
            if request_id and key in self._by_request:  # a concurrent start of the same id
                if self.store is not None:
                    self.store.forget(op.id)
                return self._same_request(key, fingerprint, owner)
            self._ops[op.id] = op
            if request_id:
                self._by_request[key] = (op.id, fingerprint)
            proto = self._proto(op)
        call = ctxmod.current()
        self._pool.submit(self._run, op, work, call)
        return proto

    def get(self, op_id: str, owner: str = "") -> tuple[operations_pb2.Operation, Any]:
        """Latest state and (once succeeded) the result.

        Raises:
            NotFoundError: OPERATION_NOT_FOUND for unknown or expired ids, and for another
                caller's operation.
        """
        with self._cond:
            op = self._local(op_id, owner)
            if op is not None:
                return self._proto(op), op.result
        op = self._remote(op_id, owner)
        return self._proto(op), self._remote_result(op)

    def cancel(self, op_id: str, owner: str = "") -> operations_pb2.Operation:
        """Ask the operation to stop; a queued one is cancelled at once. Idempotent. An
        operation that another replica runs is asked through the shared store and stops
        within about a second of that replica's next progress report."""
        with self._cond:
            op = self._local(op_id, owner)
            if op is not None:
                if op.state not in TERMINAL:
                    op.token.cancel("cancelled by a Cancel call")
                    if op.state == State.OPERATION_STATE_QUEUED:
                        self._finish(
                            op,
                            State.OPERATION_STATE_CANCELLED,
                            error=CancelledError("CANCELLED", "cancelled before it started"),
                        )
                proto = self._proto(op)
        if op is not None:
            self._save(op, force=True)
            return proto
        op = self._remote(op_id, owner)
        if op.state not in TERMINAL:
            self.store.request_cancel(op.id)
        return self._proto(op)

    def watch(
        self,
        op_id: str,
        token: CancelToken | None = None,
        heartbeat: float = 5.0,
        owner: str = "",
    ) -> Iterator[tuple[operations_pb2.Operation, Any]]:
        """Yield ``(operation, result)`` on every change until the operation ends; the last
        item carries the result (None unless it succeeded).

        Args:
            op_id: the operation.
            token: the watcher's own token (e.g. from its gRPC context): the stream ends
                within ``0.5`` s of it being cancelled, freeing its thread.
            heartbeat: re-send the unchanged state after this many seconds, so a client
                and the proxies between can tell a slow stage from a dead stream.
            owner: the caller's identity (see :meth:`start`).
        """
        with self._cond:
            local = self._local(op_id, owner) is not None
        if not local:
            yield from self._watch_remote(op_id, token, heartbeat, owner)
            return
        seen = -1
        last_sent = 0.0
        while True:
            with self._cond:
                op = self._find(op_id, owner)
                if op.version == seen:
                    self._cond.wait(timeout=min(heartbeat, 0.5))
                    op = self._find(op_id, owner)
                changed = op.version != seen
                seen = op.version
                terminal = op.state in TERMINAL
                result = op.result if op.state == State.OPERATION_STATE_SUCCEEDED else None
                snapshot = (self._proto(op), result)
            now = time.monotonic()
            if changed or terminal or now - last_sent >= heartbeat:
                last_sent = now
                yield snapshot
            if terminal or (token is not None and token.cancelled):
                return

    def shutdown(self, cancel_running: bool = True) -> None:
        """Cancel what runs (when asked) and wait for the workers."""
        self._closed.set()
        if cancel_running:
            with self._cond:
                for op in self._ops.values():
                    if op.state not in TERMINAL:
                        op.token.cancel("the server is shutting down")
        self._pool.shutdown(wait=True, cancel_futures=False)

    # ------------------------------------------------------------------ internals

    def _same_request(self, key: tuple[str, str], fingerprint: str, owner: str):
        op_id, bound = self._by_request[key]
        if bound != fingerprint:
            raise self._reused()
        return self._proto(self._find(op_id, owner))

    @staticmethod
    def _reused() -> AlreadyExistsError:
        return AlreadyExistsError(
            "REQUEST_ID_REUSED",
            "request_id was already used for a request with other content; "
            "send a new request_id for a new request",
            field="request_id",
        )

    def _claim(self, op: _Op, owner: str) -> operations_pb2.Operation | None:
        """Bind the request id in the shared store; the existing operation's proto when
        another start (here or on another replica) holds it, None when ours won."""
        st = self.store
        for _ in range(3):
            if st.claim(op.owner, op.request_id, op.id, op.fingerprint):
                return None
            held = st.claimed(op.owner, op.request_id)
            other = self._record(st.load(held["op"])) if held else None
            if other is not None and self._expired(other):
                other = None
            if other is None:  # the holder expired or never got its record written
                st.reclaim(op.owner, op.request_id, op.id, op.fingerprint)
                return None
            st.forget(op.id)
            if held.get("fingerprint") != op.fingerprint or other.owner != op.owner:
                raise self._reused()
            return self._proto(other)
        return None

    def _local(self, op_id: str, owner: str) -> _Op | None:
        op = self._ops.get(op_id)
        return op if op is not None and op.owner == scope_of(owner) else None

    def _remote(self, op_id: str, owner: str) -> _Op:
        """The record of an operation another replica runs (or ran)."""
        op = None
        # Only ids this module could have made reach the store: a client's "../x" or "a/b"
        # never becomes part of a key.
        if self.store is not None and _OP_ID_RE.fullmatch(op_id):
            op = self._record(self.store.load(op_id))
        if op is None or op.owner != scope_of(owner) or self._expired(op):
            raise self._not_found(op_id)
        return op

    def _remote_result(self, op: _Op) -> Any:
        if op.state != State.OPERATION_STATE_SUCCEEDED:
            return None
        data = self.store.get_result(op.id)
        return None if data is None else self._decode(data)

    def _watch_remote(self, op_id, token, heartbeat, owner):
        seen = -1
        last_sent = 0.0
        while True:
            op = self._remote(op_id, owner)
            terminal = op.state in TERMINAL
            now = time.monotonic()
            if op.version != seen or terminal or now - last_sent >= heartbeat:
                seen, last_sent = op.version, now
                yield self._proto(op), self._remote_result(op) if terminal else None
            if terminal or (token is not None and token.cancelled):
                return
            if token is not None:
                token.wait(0.25)
            else:
                time.sleep(0.25)

    def _expired(self, op: _Op) -> bool:
        return bool(op.finished) and time.time() - op.finished > self.ttl

    def _record(self, rec: dict | None) -> _Op | None:
        """An :class:`_Op` (without a token) from a stored record."""
        if rec is None:
            return None
        try:
            op = _Op(
                id=rec["id"],
                request_id=rec.get("request_id", ""),
                experiment=common_pb2.Experiment.FromString(unb64(rec.get("experiment")) or b""),
                token=None,
                owner=rec.get("owner", ""),
                fingerprint=rec.get("fingerprint", ""),
                state=int(rec["state"]),
                done=int(rec.get("done", 0)),
                total=int(rec.get("total", 0)),
                stage=str(rec.get("stage", "")),
                created=float(rec["created"]),
                updated=float(rec["updated"]),
                finished=rec.get("finished"),
                version=int(rec.get("version", 0)),
                started=rec.get("started"),
            )
            if rec.get("error"):
                op.error = status_pb2.Status.FromString(unb64(rec["error"]))
        except (KeyError, TypeError, ValueError):
            return None
        if op.started is not None:  # elapsed time on this replica's monotonic clock
            op.started_mono = time.monotonic() - (time.time() - op.started)
        beat = float(rec.get("beat", op.updated))
        if op.state not in TERMINAL and time.time() - beat > LOST_AFTER:
            # Its replica stopped writing (killed, partitioned): say so rather than show
            # RUNNING for ever.
            op.state = State.OPERATION_STATE_FAILED
            op.stage = "failed"
            op.finished = beat
            op.error = status_proto(
                UnavailableError("OPERATION_LOST", "the replica running it stopped; start again")
            )
        return op

    def _save(self, op: _Op, force: bool = False) -> None:
        """Write ``op``'s record to the shared store (progress at most every
        :data:`PROGRESS_EVERY` seconds unless ``force``); writes of one operation are
        ordered, and a newer one is never overwritten by an older."""
        if self.store is None:
            return
        with op.save_lock:
            with self._cond:
                if op.version == op.saved_version and not force:
                    return
                now = time.time()
                if not force and now - op.saved_at < PROGRESS_EVERY:
                    return
                rec = {
                    "id": op.id, "request_id": op.request_id, "owner": op.owner,
                    "fingerprint": op.fingerprint, "state": op.state, "done": op.done,
                    "total": op.total, "stage": op.stage, "created": op.created,
                    "updated": op.updated, "finished": op.finished, "version": op.version,
                    "started": op.started, "beat": now,
                    "experiment": b64(op.experiment.SerializeToString()),
                    "error": b64(op.error.SerializeToString()) if op.error is not None else None,
                }  # fmt: skip
                version = op.version
            try:
                self.store.save(rec)
            except DrapeError as exc:  # the local state stays right; readers elsewhere lag
                log.warning("cannot save operation %s: %s", op.id, exc.reason)
                return
            op.saved_version, op.saved_at = version, now

    def _poll_cancel(self, op: _Op) -> None:
        """Honour a Cancel that reached another replica (checked about once a second)."""
        if self.store is None or op.token.cancelled:
            return
        now = time.monotonic()
        if now - op.cancel_checked < 1.0:
            return
        op.cancel_checked = now
        try:
            if self.store.cancel_requested(op.id):
                op.token.cancel("cancelled by a Cancel call")
        except DrapeError as exc:
            log.warning("cannot read cancel requests of %s: %s", op.id, exc.reason)

    def _keepalive(self) -> None:
        while not self._closed.wait(KEEPALIVE / 2):
            with self._cond:
                running = [o for o in self._ops.values() if o.state not in TERMINAL]
            for op in running:
                if time.time() - op.saved_at >= KEEPALIVE:
                    self._save(op, force=True)

    def _run(
        self, op: _Op, work: Callable[[OperationHandle], Any], call: ctxmod.CallContext | None
    ) -> None:
        token = ctxmod.bind(call)
        try:
            self._poll_cancel(op)
            with self._cond:
                if op.state in TERMINAL:
                    return
                if op.token.cancelled:
                    self._finish(
                        op,
                        State.OPERATION_STATE_CANCELLED,
                        error=CancelledError("CANCELLED", "cancelled before it started"),
                    )
                    return
                op.state = State.OPERATION_STATE_RUNNING
                op.started_mono = time.monotonic()
                op.started = time.time()
                op.stage = "running"
                self._touch(op)
            self._save(op, force=True)
            try:
                result = work(OperationHandle(op, self))
                if self.store is not None:  # the result before the record that announces it
                    self.store.put_result(op.id, self._encode(result))
            except CancelledError as exc:
                with self._cond:
                    self._finish(op, State.OPERATION_STATE_CANCELLED, error=exc)
            except DrapeError as exc:
                with self._cond:
                    self._finish(op, State.OPERATION_STATE_FAILED, error=exc)
            except Exception:  # noqa: BLE001 - our fault: logged with the trace id, generic to the caller
                log.exception("operation %s failed", op.id)
                with self._cond:
                    self._finish(
                        op,
                        State.OPERATION_STATE_FAILED,
                        error=internal_error(call.trace_id if call else op.id),
                    )
            else:
                with self._cond:
                    op.result = result
                    op.done = max(op.done, op.total)
                    self._finish(op, State.OPERATION_STATE_SUCCEEDED)
        finally:
            self._save(op, force=True)
            ctxmod.unbind(token)

    def _update(self, op: _Op, done: int, total: int | None, stage: str | None) -> None:
        with self._cond:
            op.done = done
            if total is not None:
                op.total = total
            if stage is not None:
                op.stage = stage
            self._touch(op)
        self._save(op)
        self._poll_cancel(op)

    def _finish(self, op: _Op, state: int, error: DrapeError | None = None) -> None:
        op.state = state
        op.finished = time.time()
        op.stage = {
            State.OPERATION_STATE_SUCCEEDED: "done",
            State.OPERATION_STATE_FAILED: "failed",
        }.get(state, "cancelled")
        if error is not None:
            op.error = status_proto(error)
        self._touch(op)

    def _touch(self, op: _Op) -> None:
        op.updated = time.time()
        op.version += 1
        self._cond.notify_all()

    @staticmethod
    def _not_found(op_id: str) -> NotFoundError:
        # One answer for unknown, expired and someone else's: no oracle for valid ids.
        return NotFoundError(
            "OPERATION_NOT_FOUND",
            f"no operation {op_id[:64]!r} (unknown or expired)",
            field="operation_id",
        )

    def _find(self, op_id: str, owner: str = "") -> _Op:
        op = self._local(op_id, owner)
        if op is None:
            raise self._not_found(op_id)
        return op

    def _sweep(self) -> None:
        now = time.time()
        finished = sorted((o for o in self._ops.values() if o.finished), key=lambda o: o.finished)
        excess = max(len(finished) - self.max_finished, 0)
        for i, op in enumerate(finished):
            if i < excess or now - op.finished > self.ttl:
                del self._ops[op.id]
                if op.request_id:
                    self._by_request.pop((op.owner, op.request_id), None)

    def _proto(self, op: _Op) -> operations_pb2.Operation:
        elapsed = 0.0 if op.started_mono is None else time.monotonic() - op.started_mono
        if op.finished and op.started_mono is not None:
            elapsed = op.finished - op.created
        eta = -1.0
        if op.state == State.OPERATION_STATE_RUNNING and op.total and op.done > 0:
            eta = elapsed / op.done * max(op.total - op.done, 0)
        elif op.state in TERMINAL:
            eta = 0.0
        msg = operations_pb2.Operation(
            id=op.id,
            state=op.state,
            progress=operations_pb2.Progress(
                done=op.done,
                total=op.total,
                stage=op.stage,
                eta_seconds=eta,
                elapsed_seconds=elapsed,
            ),
            create_time=_ts(op.created),
            update_time=_ts(op.updated),
            expire_time=_ts((op.finished or op.created) + self.ttl) if op.finished else None,
            request_id=op.request_id,
            experiment=op.experiment,
        )
        if op.error is not None:
            msg.error.CopyFrom(op.error)
        return msg
