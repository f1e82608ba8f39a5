"""Request memory (issue 12 item 5): the message limit follows the image and video limits,
a request over its method's limit or over the process's byte budget is refused before it
is parsed, a call over the concurrency limit is refused before its message is read, and
every refusal gives its bytes back. RSS over storms is measured by
``benchmarks/soak_memory.py``, not asserted here.
"""

from __future__ import annotations

import gc
import threading
import time

import grpc
import pytest

from drape.animate.v1 import animate_service_pb2 as A
from drape.common.v1 import common_pb2, media_service_pb2, media_service_pb2_grpc, operations_pb2
from drape.tryon.v1 import tryon_service_pb2 as T
from services.common import budget as B
from services.common.config import load_settings
from services.common.errors import ConfigError
from services.common.interceptors import ConcurrencyLimiter, _Slot
from services.common.server import ServiceApp, create_server

from helpers import error_details

MiB = 1024 * 1024
HOLD = "drape.test.Hold"
SMALL = {"max_message_bytes": 4 * MiB, "max_image_bytes": MiB, "max_video_bytes": MiB}


class HoldApp(ServiceApp):
    """Raw-bytes handlers: ``Hold`` keeps its request until ``release`` is set."""

    name = "hold"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def register(self, server, ctx) -> list[str]:
        def hold(request: bytes, context) -> bytes:
            self.entered.release()
            self.release.wait(20)
            return str(len(request)).encode()

        ident = {"request_deserializer": None, "response_serializer": None}
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    HOLD, {"Hold": grpc.unary_unary_rpc_method_handler(hold, **ident)}
                ),
            )
        )
        return [HOLD]


def _hold(channel, payload: bytes, **kw):
    return channel.unary_unary(f"/{HOLD}/Hold")(payload, timeout=30, **kw)


def _background(fn, *args):
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except grpc.RpcError as err:
            out["error"] = err

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


# ---------------------------------------------------------------------- limits, no server


def test_method_limits_follow_the_image_and_video_limits():
    s = load_settings(env={}, max_message_bytes=512 * MiB)
    image, video = s.max_image_bytes, s.max_video_bytes
    lim = B.REQUEST_SLACK

    def limit(cls):
        return B.method_limit(cls.FromString, s, default=-1)

    assert limit(media_service_pb2.InspectImageRequest) == image + lim
    assert limit(media_service_pb2.InspectVideoRequest) == video + lim
    # A person and at most two garments.
    assert limit(T.TryOnRequest) == 3 * image + lim
    # A still and a motion video (members of a oneof all counted: an upper bound).
    assert limit(A.StartClipRequest) == image + video + lim
    assert limit(operations_pb2.OperationRef) == lim
    assert B.method_limit(None, s, default=123) == 123  # raw-bytes handler


def test_method_limits_are_capped_by_the_message_limit():
    s = load_settings(env={})  # 64 MiB
    assert B.method_limit(T.TryOnRequest.FromString, s, default=-1) == 64 * MiB


def test_repeated_media_bound_matches_the_pipeline():
    from services.tryon.pipeline import MAX_GARMENTS

    assert B.REPEATED_MEDIA["drape.tryon.v1.TryOnRequest.garments"] == MAX_GARMENTS


def test_server_message_limit_is_the_largest_request_of_its_services():
    s = load_settings(env={}, max_image_bytes=2 * MiB, max_video_bytes=3 * MiB)
    assert B.server_receive_limit([], s) == 3 * MiB + B.REQUEST_SLACK  # media: a video
    assert B.server_receive_limit(["tryon"], s) == 6 * MiB + B.REQUEST_SLACK
    assert B.server_receive_limit(["animate"], s) == 5 * MiB + B.REQUEST_SLACK
    # An app whose requests are not known keeps the configured limit.
    assert B.server_receive_limit(["hold"], s) == s.max_message_bytes


def test_budget_below_the_message_limit_is_a_config_error():
    s = load_settings(env={}, max_inflight_bytes=8 * MiB, metrics_port=-1)
    with pytest.raises(ConfigError) as ei:
        create_server("127.0.0.1:0", settings=s)  # media: 48 MiB videos
    assert ei.value.setting == "DRAPE_MAX_INFLIGHT_BYTES"


def test_dropped_slot_and_held_request_give_their_share_back():
    limiter = ConcurrencyLimiter(1)
    assert limiter.try_acquire()
    slot = _Slot(limiter)
    del slot  # gRPC dropped a call whose handler never ran
    gc.collect()
    assert limiter.active == 0
    budget = B.ByteBudget(10)
    deser = B.budget_deserializer(None, method="m", limit=10, budget=budget)
    held = deser(b"12345678")
    assert isinstance(held, B.Held) and budget.used == 8
    refused = deser(b"123")
    assert isinstance(refused, B.Refused) and refused.error.reason == "IN_FLIGHT_BYTES_LIMIT"
    del held
    gc.collect()
    assert budget.used == 0
    assert deser(b"x" * 11).error.reason == "MESSAGE_TOO_LARGE"
    assert budget.used == 0


def test_trimmer_trims_once_enough_went_away():
    trimmer = B.MemoryTrimmer(threshold=MiB, interval=0.01)
    if not trimmer.available:
        pytest.skip("not glibc: no malloc_trim")  # the server runs without trimming there
    trimmer.note(MiB // 2)
    assert trimmer._thread is None
    trimmer.note(MiB)
    deadline = time.monotonic() + 5
    while trimmer.trims == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    trimmer.close()
    assert trimmer.trims >= 1


# ---------------------------------------------------------------------- real servers


def _inspect(channel, data: bytes, **kw):
    stub = media_service_pb2_grpc.MediaServiceStub(channel)
    return stub.InspectImage(
        media_service_pb2.InspectImageRequest(image=common_pb2.Image(data=data)),
        timeout=30,
        **kw,
    )


def test_request_over_its_method_limit_is_refused_before_parsing(make_server):
    # The server's message limit is the video limit + 4 MiB (InspectVideo); an
    # InspectImage request may carry one image: 1 MiB + 4 MiB.
    server, channel = make_server(
        max_image_bytes=MiB, max_video_bytes=4 * MiB, max_message_bytes=64 * MiB
    )
    assert server.receive_limit == 8 * MiB
    with pytest.raises(grpc.RpcError) as ei:
        _inspect(channel, b"\x00" * (6 * MiB))
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(ei.value) == ("MESSAGE_TOO_LARGE", None)
    assert "accepts at most 5242880" in ei.value.details()
    assert server.interceptor.budget.peak == 0  # never admitted, never parsed
    assert server.interceptor.budget.used == 0


def test_request_over_the_server_limit_is_refused_by_grpc(make_server):
    server, channel = make_server(
        max_image_bytes=MiB, max_video_bytes=MiB, max_message_bytes=64 * MiB
    )
    assert server.receive_limit == 5 * MiB  # not the configured 64 MiB
    with pytest.raises(grpc.RpcError) as ei:
        _inspect(channel, b"\x00" * (6 * MiB))
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in ei.value.details()


def test_bytes_that_are_no_request_are_malformed_not_internal(make_server):
    _, channel = make_server()
    fn = channel.unary_unary("/drape.common.v1.MediaService/InspectImage")
    with pytest.raises(grpc.RpcError) as ei:
        fn(b"\xff" * 64, timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(ei.value) == ("MALFORMED_REQUEST", None)


def test_byte_budget_refuses_a_call_while_others_hold_it(make_server):
    app = HoldApp()
    server, channel = make_server(
        app,
        max_concurrent_rpcs=4,
        max_inflight_bytes=3 * MiB,
        **SMALL | {"max_message_bytes": 2 * MiB},
    )
    first, out1 = _background(_hold, channel, b"a" * (2 * MiB))
    assert app.entered.acquire(timeout=10)
    try:
        assert server.interceptor.budget.used == 2 * MiB
        with pytest.raises(grpc.RpcError) as ei:
            _hold(channel, b"b" * (2 * MiB - 100))
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_details(ei.value) == ("IN_FLIGHT_BYTES_LIMIT", None)
        assert "retry with backoff" in ei.value.details()
        # What still fits is admitted.
        small, out2 = _background(_hold, channel, b"c" * (512 * 1024))
        assert app.entered.acquire(timeout=10)
    finally:
        app.release.set()
    first.join(10)
    small.join(10)
    assert out1["value"] == str(2 * MiB).encode()
    assert out2["value"] == str(512 * 1024).encode()
    assert server.interceptor.budget.used == 0
    # With the budget free again, the refused size goes through.
    assert _hold(channel, b"b" * (2 * MiB - 100)) == str(2 * MiB - 100).encode()


def test_call_over_the_concurrency_limit_is_refused_before_its_message_is_read(make_server):
    app = HoldApp()
    server, channel = make_server(app, max_concurrent_rpcs=1, **SMALL)
    first, out = _background(_hold, channel, b"a" * 1000)
    assert app.entered.acquire(timeout=10)
    try:
        with pytest.raises(grpc.RpcError) as ei:
            _hold(channel, b"b" * (3 * MiB), metadata=(("x-request-id", "over-1"),))
        assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_details(ei.value) == ("CONCURRENCY_LIMIT", None)
        # Its 3 MiB never reached the byte budget: only the first call's 1000 bytes did.
        assert server.interceptor.budget.peak == 1000
    finally:
        app.release.set()
    first.join(10)
    assert out["value"] == b"1000"
    assert server.limiter.active == 0 and server.interceptor.budget.used == 0
    assert _hold(channel, b"b" * (3 * MiB)) == str(3 * MiB).encode()


def test_draining_server_refuses_without_reading(make_server):
    app = HoldApp()
    server, channel = make_server(app, **SMALL)
    server.draining.set()
    with pytest.raises(grpc.RpcError) as ei:
        _hold(channel, b"b" * (3 * MiB))
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(ei.value) == ("SERVER_DRAINING", None)
    assert server.interceptor.budget.peak == 0
    server.draining.clear()


def test_storm_of_refusals_leaves_nothing_held(make_server):
    server, channel = make_server(max_image_bytes=MiB, max_concurrent_rpcs=2)
    results: list[str] = []

    def one():
        try:
            _inspect(channel, b"\x00" * (2 * MiB))
            results.append("OK")
        except grpc.RpcError as err:
            results.append(f"{err.code().name}/{error_details(err)[0]}")

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 16
    assert set(results) <= {
        "INVALID_ARGUMENT/IMAGE_TOO_LARGE",
        "RESOURCE_EXHAUSTED/CONCURRENCY_LIMIT",
    }
    assert server.interceptor.budget.used == 0
    assert server.limiter.active == 0


def test_catalog_batches_keep_the_configured_message_limit():
    from drape.catalog.v1 import catalog_service_pb2 as C

    s = load_settings(env={})
    # Products, not images: a batch of thousands inline needs more than the 4 MiB slack.
    assert B.method_limit(C.StartBatchRequest.FromString, s, default=-1) == s.max_message_bytes
    assert B.server_receive_limit(["catalog"], s) == s.max_message_bytes


def test_a_handler_looked_up_and_dropped_gives_its_slot_back():
    """An outer interceptor (the token check) may ask for our handler only to learn that
    the method exists; the slot taken for it must come back without any call running."""
    from services.common.interceptors import DrapeInterceptor
    from services.common.metrics import Metrics

    limiter = ConcurrencyLimiter(1)
    icpt = DrapeInterceptor(
        Metrics(service="t"), limiter, threading.Event(), budget=B.ByteBudget(MiB)
    )

    class Details:
        method = "/drape.test.Hold/Hold"
        invocation_metadata = ()

    handler = grpc.unary_unary_rpc_method_handler(lambda r, c: r)
    gc.disable()  # released by reference counting, at once, not by a later collection
    try:
        for _ in range(3):
            got = icpt.intercept_service(lambda _d: handler, Details())
            assert got.unary_unary is not None and limiter.active == 1
            del got
            assert limiter.active == 0
    finally:
        gc.enable()
