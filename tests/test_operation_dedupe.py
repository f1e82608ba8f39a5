"""Operations cannot be taken over through a request id (issue 12, item 6): a request id
is bound to its request's content, operation ids are random, and with authentication on
every operation belongs to its caller. Over real gRPC against the animate service, plus
the operation manager directly."""

from __future__ import annotations

import re

import grpc
import numpy as np
import pytest
from skimage import data

from drape.animate.v1 import animate_service_pb2 as pb
from drape.animate.v1 import animate_service_pb2_grpc as pb_grpc
from drape.common.v1 import common_pb2, operations_pb2
from services.animate.server import AnimateApp
from services.common.config import load_settings
from services.common.errors import NotFoundError
from services.common.operations import AlreadyExistsError, OperationManager

from helpers import error_details, png, serving

S = operations_pb2.OperationState
ASTRONAUT = png(data.astronaut())
ONE_PIXEL = png(np.full((1, 1, 3), 128, np.uint8))
OP_ID = re.compile(r"[A-Za-z0-9_-]{24}")


def clip_request(request_id: str, still: bytes = ASTRONAUT) -> pb.StartClipRequest:
    return pb.StartClipRequest(
        request_id=request_id, still=common_pb2.Image(data=still),
        template_name="idle-sway-upper", fps=8, width=128, height=128, duration_seconds=0.5,
    )  # fmt: skip


def reason(err: grpc.RpcError) -> str:
    return error_details(err)[0]


def finish(stub, op_id: str, metadata=()):
    ref = operations_pb2.OperationRef(operation_id=op_id)
    return list(stub.WatchClip(ref, timeout=120, metadata=metadata))[-1]


# ---------------------------------------------------------------------------- no auth


@pytest.fixture(scope="module")
def open_stub():
    settings = load_settings(env={}, metrics_port=-1, grpc_address="127.0.0.1:0")
    with serving(AnimateApp(settings), settings=settings, ready_timeout=120) as (_s, channel):
        yield pb_grpc.AnimateServiceStub(channel)


def test_reused_request_id_with_other_content_gets_nothing_of_the_first(open_stub):
    victim = open_stub.StartClip(clip_request("order-1234"), timeout=30)
    final = finish(open_stub, victim.id)
    assert final.operation.state == S.OPERATION_STATE_SUCCEEDED
    # An attacker who learnt (or guessed) the request id sends it with a 1x1 still.
    with pytest.raises(grpc.RpcError) as ei:
        open_stub.StartClip(clip_request("order-1234", ONE_PIXEL), timeout=30)
    assert ei.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert reason(ei.value) == "REQUEST_ID_REUSED"
    assert victim.id not in ei.value.details()


def test_a_retry_with_the_same_content_gets_the_same_operation(open_stub):
    first = open_stub.StartClip(clip_request("retry-1"), timeout=30)
    again = open_stub.StartClip(clip_request("retry-1"), timeout=30)
    assert again.id == first.id
    finish(open_stub, first.id)


def test_operation_ids_are_random_not_derived_from_the_request_id(open_stub):
    a = open_stub.StartClip(clip_request("same-prefix-a"), timeout=30)
    b = open_stub.StartClip(clip_request("same-prefix-b"), timeout=30)
    for op in (a, b):
        assert OP_ID.fullmatch(op.id), op.id  # 18 random bytes, URL-safe base64
        assert "same-prefix" not in op.id
    assert a.id != b.id
    finish(open_stub, a.id)
    finish(open_stub, b.id)


# ---------------------------------------------------------------------------- with auth


@pytest.fixture(scope="module")
def auth_stub(tmp_path_factory):
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text("alice:alice-token-0123456789abcdef\nbob:bob-token-0123456789abcdef\n")
    settings = load_settings(
        env={}, metrics_port=-1, grpc_address="127.0.0.1:0", auth_tokens_file=str(tokens)
    )
    with serving(AnimateApp(settings), settings=settings, ready_timeout=120) as (_s, channel):
        yield pb_grpc.AnimateServiceStub(channel)


ALICE = (("authorization", "Bearer alice-token-0123456789abcdef"),)
BOB = (("authorization", "Bearer bob-token-0123456789abcdef"),)


def test_another_callers_operation_is_not_found(auth_stub):
    op = auth_stub.StartClip(clip_request("alice-1"), timeout=30, metadata=ALICE)
    final = finish(auth_stub, op.id, ALICE)
    assert final.operation.state == S.OPERATION_STATE_SUCCEEDED and final.result.clip.data
    ref = operations_pb2.OperationRef(operation_id=op.id)
    unknown = operations_pb2.OperationRef(operation_id="A" * 24)
    for call in (auth_stub.GetClip, auth_stub.CancelClip):
        with pytest.raises(grpc.RpcError) as mine:
            call(ref, timeout=30, metadata=BOB)
        with pytest.raises(grpc.RpcError) as none:
            call(unknown, timeout=30, metadata=BOB)
        # The same answer as for an id that does not exist: no oracle for valid ids.
        assert mine.value.code() == none.value.code() == grpc.StatusCode.NOT_FOUND
        assert reason(mine.value) == reason(none.value) == "OPERATION_NOT_FOUND"
    with pytest.raises(grpc.RpcError) as ei:
        list(auth_stub.WatchClip(ref, timeout=30, metadata=BOB))
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    # Still there for its owner.
    got = auth_stub.GetClip(ref, timeout=30, metadata=ALICE)
    assert got.operation.state == S.OPERATION_STATE_SUCCEEDED and got.result.clip.data


def test_request_ids_are_scoped_to_the_caller(auth_stub):
    alice = auth_stub.StartClip(clip_request("shared-id"), timeout=30, metadata=ALICE)
    bob = auth_stub.StartClip(clip_request("shared-id", ONE_PIXEL), timeout=30, metadata=BOB)
    assert bob.id != alice.id  # Bob's own operation, not a view of Alice's
    final = finish(auth_stub, bob.id, BOB)
    assert final.operation.state == S.OPERATION_STATE_FAILED  # 1x1: no person in it
    assert not final.HasField("result")
    finish(auth_stub, alice.id, ALICE)


# ---------------------------------------------------------------------------- manager


def test_manager_binds_request_ids_to_content_and_owner():
    m = OperationManager()
    a = m.start(lambda h: "alice's clip", request_id="r", owner="alice", fingerprint="f1")
    assert m.start(lambda h: "x", request_id="r", owner="alice", fingerprint="f1").id == a.id
    with pytest.raises(AlreadyExistsError) as ei:
        m.start(lambda h: "x", request_id="r", owner="alice", fingerprint="f2")
    assert ei.value.reason == "REQUEST_ID_REUSED"
    b = m.start(lambda h: "bob's clip", request_id="r", owner="bob", fingerprint="f2")
    assert b.id != a.id
    list(m.watch(a.id, owner="alice"))
    assert m.get(a.id, "alice")[1] == "alice's clip"
    for call in (m.get, m.cancel):
        with pytest.raises(NotFoundError):
            call(a.id, "bob")
    with pytest.raises(NotFoundError):
        list(m.watch(a.id, owner="bob"))
    with pytest.raises(NotFoundError):
        m.get(a.id)  # "" (no auth) is not a master key either
    m.shutdown()


def test_finished_operations_kept_in_memory_are_bounded():
    m = OperationManager(max_finished=2)
    ops = [m.start(lambda h, i=i: f"clip {i}") for i in range(4)]
    for op in ops:
        list(m.watch(op.id))
    m.start(lambda h: "one more")  # a start sweeps: only the two newest finished stay
    for op in ops[:2]:
        with pytest.raises(NotFoundError):
            m.get(op.id)
    assert [m.get(op.id)[1] for op in ops[2:]] == ["clip 2", "clip 3"]
    m.shutdown()
