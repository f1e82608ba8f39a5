"""Long-running operations: progress, result, idempotent start, cancel, failure mapping,
bounded queue."""

from __future__ import annotations

import threading
import time

import pytest

from drape.common.v1 import operations_pb2
from services.common.errors import InvalidInputError, NotFoundError, ResourceExhaustedError
from services.common.operations import OperationManager

S = operations_pb2.OperationState


def frames(n: int, delay: float = 0.02):
    def work(handle):
        for i in range(n):
            handle.check("render")
            time.sleep(delay)
            handle.progress(i + 1, n, "render")
        return f"clip of {n} frames"

    return work


def test_watch_streams_progress_then_result():
    m = OperationManager()
    op = m.start(frames(5), request_id="r-1")
    updates = list(m.watch(op.id))
    last_op, result = updates[-1]
    assert last_op.state == S.OPERATION_STATE_SUCCEEDED and result == "clip of 5 frames"
    dones = [o.progress.done for o, _ in updates if o.state == S.OPERATION_STATE_RUNNING]
    assert dones == sorted(dones)  # watchers see snapshots: never backwards
    assert last_op.progress.done == 5 and last_op.progress.total == 5
    assert any(o.progress.total == 5 and o.progress.eta_seconds >= 0 for o, _ in updates[:-1])
    assert m.get(op.id)[1] == "clip of 5 frames"
    m.shutdown()


def test_same_request_id_returns_same_operation():
    m = OperationManager()
    a = m.start(frames(3), request_id="same")
    b = m.start(frames(3), request_id="same")
    assert a.id == b.id
    assert m.start(frames(1)).id != a.id
    m.shutdown()


def test_cancel_stops_work_within_one_unit():
    m = OperationManager()
    op = m.start(frames(1000, delay=0.01))
    time.sleep(0.1)
    m.cancel(op.id)
    final, _ = list(m.watch(op.id))[-1]
    assert final.state == S.OPERATION_STATE_CANCELLED
    assert final.progress.done < 1000
    stopped_at = final.progress.done
    time.sleep(0.1)
    assert m.get(op.id)[0].progress.done == stopped_at  # nothing ran after cancel
    m.shutdown()


def test_failures_are_mapped():
    m = OperationManager()

    def bad(_h):
        raise InvalidInputError(
            "VIDEO_HAS_NO_PERSON", "no person in any frame", field="motion_video"
        )

    def broken(_h):
        raise ZeroDivisionError("internal detail")

    op = m.start(bad)
    final, _ = list(m.watch(op.id))[-1]
    assert final.state == S.OPERATION_STATE_FAILED and final.error.code == 3  # INVALID_ARGUMENT
    assert b"VIDEO_HAS_NO_PERSON" in final.error.details[0].value
    op = m.start(broken)
    final, _ = list(m.watch(op.id))[-1]
    assert final.error.code == 13 and "internal detail" not in final.error.message
    with pytest.raises(NotFoundError):
        m.get("nope")
    m.shutdown()


def test_queue_is_bounded():
    m = OperationManager(max_active=2, workers=1)
    gate = threading.Event()
    m.start(lambda h: gate.wait(5))
    m.start(lambda h: gate.wait(5))
    with pytest.raises(ResourceExhaustedError) as ei:
        m.start(lambda h: None)
    assert ei.value.reason == "QUEUE_FULL"
    gate.set()
    m.shutdown()


def test_finished_operations_expire():
    m = OperationManager(ttl_seconds=0.05)
    op = m.start(frames(1), request_id="exp")
    list(m.watch(op.id))
    time.sleep(0.1)
    m.start(frames(1))  # sweeps
    with pytest.raises(NotFoundError):
        m.get(op.id)
    m.shutdown()


def test_watch_sends_heartbeats_and_stops_for_a_gone_watcher():
    from services.common.context import CancelToken

    m = OperationManager()
    gate = threading.Event()
    op = m.start(lambda h: gate.wait(10))
    token = CancelToken()
    stream = m.watch(op.id, token=token, heartbeat=0.3)
    t0 = time.monotonic()
    times = []
    for _ in range(3):
        next(stream)
        times.append(time.monotonic() - t0)
    assert times[-1] < 2.0  # unchanged state was re-sent, not held back until a change
    token.cancel()
    rest = list(stream)  # ends on its own once the watcher is gone
    assert len(rest) <= 1
    gate.set()
    m.shutdown()
