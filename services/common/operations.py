"""Long-running operations: Start → id, Watch → progress stream then result, Get, Cancel.

Services with long work (clips, batches) hand a function to :class:`OperationManager`; it
runs on a bounded worker pool, reports progress, honours cancellation between units of
work, keeps finished operations for a TTL, and deduplicates starts by request id. The
service's servicer only converts requests and results.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from google.protobuf import timestamp_pb2

from drape.common.v1 import common_pb2, operations_pb2
from services.common import context as ctxmod
from services.common.context import CancelToken
from services.common.errors import (
    CancelledError,
    DrapeError,
    NotFoundError,
    ResourceExhaustedError,
)
from services.common.interceptors import internal_error, status_proto

log = logging.getLogger("drape.operations")
State = operations_pb2.OperationState
TERMINAL = frozenset(
    {State.OPERATION_STATE_SUCCEEDED, State.OPERATION_STATE_FAILED, State.OPERATION_STATE_CANCELLED}
)


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
    token: CancelToken
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


def _ts(t: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


class OperationManager:
    """In-process registry and worker pool for long-running operations.

    Args:
        max_active: operations queued or running at once; more are refused with
            RESOURCE_EXHAUSTED (reason QUEUE_FULL) rather than queued without bound.
        workers: operations running concurrently (the rest wait, QUEUED).
        ttl_seconds: how long a finished operation stays readable.
    """

    def __init__(self, max_active: int = 8, workers: int = 1, ttl_seconds: float = 3600.0) -> None:
        self.max_active = max_active
        self.ttl = ttl_seconds
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drape-op")
        self._ops: dict[str, _Op] = {}
        self._by_request: dict[str, str] = {}
        self._cond = threading.Condition()

    # ------------------------------------------------------------------ public API

    def start(
        self,
        work: Callable[[OperationHandle], Any],
        request_id: str = "",
        experiment: common_pb2.Experiment | None = None,
        total: int = 0,
    ) -> operations_pb2.Operation:
        """Run ``work(handle)`` in the background; returns the new operation.

        A start with a ``request_id`` already seen (and not yet expired) returns that
        operation instead of starting a second one.

        Raises:
            ResourceExhaustedError: QUEUE_FULL when ``max_active`` operations are pending.
        """
        with self._cond:
            self._sweep()
            if request_id and request_id in self._by_request:
                return self._proto(self._ops[self._by_request[request_id]])
            active = sum(1 for o in self._ops.values() if o.state not in TERMINAL)
            if active >= self.max_active:
                raise ResourceExhaustedError(
                    "QUEUE_FULL", f"{active} operations are already queued or running; retry later"
                )
            op = _Op(
                id=uuid.uuid4().hex,
                request_id=request_id,
                experiment=experiment or common_pb2.Experiment(),
                token=CancelToken(),
                total=total,
            )
            self._ops[op.id] = op
            if request_id:
                self._by_request[request_id] = op.id
            proto = self._proto(op)
        call = ctxmod.current()
        self._pool.submit(self._run, op, work, call)
        return proto

    def get(self, op_id: str) -> tuple[operations_pb2.Operation, Any]:
        """Latest state and (once succeeded) the result.

        Raises:
            NotFoundError: OPERATION_NOT_FOUND for unknown or expired ids.
        """
        with self._cond:
            op = self._find(op_id)
            return self._proto(op), op.result

    def cancel(self, op_id: str) -> operations_pb2.Operation:
        """Ask the operation to stop; a queued one is cancelled at once. Idempotent."""
        with self._cond:
            op = self._find(op_id)
            if op.state not in TERMINAL:
                op.token.cancel("cancelled by a Cancel call")
                if op.state == State.OPERATION_STATE_QUEUED:
                    self._finish(
                        op,
                        State.OPERATION_STATE_CANCELLED,
                        error=CancelledError("CANCELLED", "cancelled before it started"),
                    )
            return self._proto(op)

    def watch(
        self, op_id: str, token: CancelToken | None = None, heartbeat: float = 5.0
    ) -> Iterator[tuple[operations_pb2.Operation, Any]]:
        """Yield ``(operation, result)`` on every change until the operation ends; the last
        item carries the result (None unless it succeeded).

        Args:
            op_id: the operation.
            token: the watcher's own token (e.g. from its gRPC context): the stream ends
                within ``0.5`` s of it being cancelled, freeing its thread.
            heartbeat: re-send the unchanged state after this many seconds, so a client
                and the proxies between can tell a slow stage from a dead stream.
        """
        seen = -1
        last_sent = 0.0
        while True:
            with self._cond:
                op = self._find(op_id)
                if op.version == seen:
                    self._cond.wait(timeout=min(heartbeat, 0.5))
                    op = self._find(op_id)
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
        if cancel_running:
            with self._cond:
                for op in self._ops.values():
                    if op.state not in TERMINAL:
                        op.token.cancel("the server is shutting down")
        self._pool.shutdown(wait=True, cancel_futures=False)

    # ------------------------------------------------------------------ internals

    def _run(
        self, op: _Op, work: Callable[[OperationHandle], Any], call: ctxmod.CallContext | None
    ) -> None:
        token = ctxmod.bind(call)
        try:
            with self._cond:
                if op.state in TERMINAL:
                    return
                op.state = State.OPERATION_STATE_RUNNING
                op.started_mono = time.monotonic()
                op.stage = "running"
                self._touch(op)
            try:
                result = work(OperationHandle(op, self))
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
            ctxmod.unbind(token)

    def _update(self, op: _Op, done: int, total: int | None, stage: str | None) -> None:
        with self._cond:
            op.done = done
            if total is not None:
                op.total = total
            if stage is not None:
                op.stage = stage
            self._touch(op)

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

    def _find(self, op_id: str) -> _Op:
        op = self._ops.get(op_id)
        if op is None:
            raise NotFoundError(
                "OPERATION_NOT_FOUND",
                f"no operation {op_id[:64]!r} (unknown or expired)",
                field="operation_id",
            )
        return op

    def _sweep(self) -> None:
        now = time.time()
        for op_id in [
            i for i, o in self._ops.items() if o.finished and now - o.finished > self.ttl
        ]:
            op = self._ops.pop(op_id)
            if op.request_id:
                self._by_request.pop(op.request_id, None)

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
