"""A probe service for server-library tests: generic handlers on raw bytes, so the tests
exercise the real bootstrap and interceptor without depending on any service's proto.

Run as a script it serves the probe with :func:`services.common.server.serve` (used by the
SIGTERM test, which needs a real process to signal).
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.errors import InvalidInputError  # noqa: E402
from services.common.server import ServiceApp  # noqa: E402

PROBE_SERVICE = "drape.test.Probe"


def png(pixels) -> bytes:
    """An RGB(A) array as PNG bytes (what a client uploads)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


@contextlib.contextmanager
def storefront(**overrides):
    """The services a storefront calls (try-on, refiner, animate) on one in-process gRPC
    server, with the default settings but ``overrides`` (metrics off, free ports), and the
    gateway in front of them on a free loopback port; yields ``(settings, channel,
    gateway)``."""
    from services.animate.server import AnimateApp
    from services.common.config import load_settings
    from services.gateway.server import ThreadedGateway
    from services.refiner.server import RefinerApp
    from services.tryon.server import TryOnApp

    settings = load_settings(env={}, metrics_port=-1, grpc_address="127.0.0.1:0", **overrides)
    apps = (TryOnApp(settings), RefinerApp(settings), AnimateApp(settings))
    with serving(*apps, settings=settings, ready_timeout=180) as (_server, channel):
        gateway = ThreadedGateway(settings, "127.0.0.1:0", channel).start()
        try:
            yield settings, channel, gateway
        finally:
            gateway.stop(10)


@contextlib.contextmanager
def serving(*apps, settings, ready_timeout: float = 120):
    """A started server for ``apps`` on a free port and a channel to it, ready; stopped on
    exit. For module-scoped fixtures (``conftest.make_server`` is per test)."""
    from services.common.server import create_server

    server, port = create_server("127.0.0.1:0", *apps, settings=settings)
    server.start()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 256 << 20)]
    )
    try:
        assert server.wait_ready(ready_timeout), server.load_error
        yield server, channel
    finally:
        channel.close()
        server.stop(0)


# What handlers noticed, for tests that check the server side of a call.
EVENTS: list[tuple[str, float]] = []


def wait_for_event(timeout: float = 3.0) -> None:
    """Wait until a handler has recorded an event (it runs on a server thread)."""
    deadline = time.monotonic() + timeout
    while not EVENTS and time.monotonic() < deadline:
        time.sleep(0.02)


def _sleep(request: bytes, context) -> bytes:
    """Sleep for float(request) seconds, checking the caller is still there."""
    seconds = float(request.decode() or 0)
    t0 = time.monotonic()
    while time.monotonic() < t0 + seconds:
        if not context.is_active():
            EVENTS.append(("sleep-stopped", time.monotonic() - t0))
            return b"gone"
        time.sleep(0.01)
    return b"slept %.2f" % seconds


def _sleep_checked(request: bytes, context) -> bytes:
    """Like Sleep, but through the pipeline-side CancelToken (no gRPC in the loop)."""
    from services.common.interceptors import cancel_token

    token = cancel_token(context)
    t0 = time.monotonic()
    try:
        while time.monotonic() < t0 + float(request.decode() or 0):
            token.check("sleep")
            time.sleep(0.01)
    finally:
        EVENTS.append(("checked-stopped", time.monotonic() - t0))
    return b"done"


def _block(request: bytes, context) -> bytes:
    """Sleep for float(request) seconds ignoring cancellation (a badly behaved handler)."""
    time.sleep(float(request.decode() or 0))
    return b"blocked"


def _set_code_then_raise(request: bytes, context) -> bytes:
    context.set_code(grpc.StatusCode.NOT_FOUND)
    raise RuntimeError("secret db password hunter2")


def _watch_count(request: bytes, context):
    """Stream int(request) items, one every 50 ms (a progress stream)."""
    for i in range(int(request.decode() or 0)):
        time.sleep(0.05)
        yield str(i).encode()


def _boom(request: bytes, context) -> bytes:
    raise RuntimeError("secret internal detail: db password is hunter2")


def _invalid(request: bytes, context) -> bytes:
    raise InvalidInputError(
        "GARMENT_NOT_FOUND", "no garment in the image", field="garments[0].flat_lay"
    )


def _echo(request: bytes, context) -> bytes:
    return request


class ProbeApp(ServiceApp):
    """Test service. ``gate``, when given, holds ``load`` until it is set."""

    name = "probe"

    def __init__(self, gate: threading.Event | None = None, fail_load: bool = False) -> None:
        self.gate = gate
        self.fail_load = fail_load

    def register(self, server: grpc.Server, ctx) -> list[str]:
        ident = {"request_deserializer": None, "response_serializer": None}
        handlers = {
            "Sleep": grpc.unary_unary_rpc_method_handler(_sleep, **ident),
            "Boom": grpc.unary_unary_rpc_method_handler(_boom, **ident),
            "Invalid": grpc.unary_unary_rpc_method_handler(_invalid, **ident),
            "Echo": grpc.unary_unary_rpc_method_handler(_echo, **ident),
            "Block": grpc.unary_unary_rpc_method_handler(_block, **ident),
            "SleepChecked": grpc.unary_unary_rpc_method_handler(_sleep_checked, **ident),
            "SetCodeThenRaise": grpc.unary_unary_rpc_method_handler(_set_code_then_raise, **ident),
            "WatchCount": grpc.unary_stream_rpc_method_handler(_watch_count, **ident),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(PROBE_SERVICE, handlers),)
        )
        return [PROBE_SERVICE]

    def load(self) -> None:
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail_load:
            raise FileNotFoundError("models/probe/1/weights.safetensors is missing")


def error_details(err: grpc.RpcError) -> tuple[str | None, str | None]:
    """``(ErrorInfo reason, BadRequest field)`` of a failed call; None where absent.

    Also checks what every Drape error must carry: the ErrorInfo domain, and a description
    on each field violation.
    """
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    st = rpc_status.from_call(err)
    reason = field = None
    for detail in st.details if st else ():
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
            assert info.domain == "drape.ai"
        elif detail.Unpack(bad):
            field = bad.field_violations[0].field
            assert bad.field_violations[0].description
    return reason, field


def call(channel: grpc.Channel, method: str, payload: bytes = b"", **kw):
    """Invoke a probe method with raw bytes; returns the response bytes."""
    fn = channel.unary_unary(f"/{PROBE_SERVICE}/{method}")
    return fn(payload, **kw)


if __name__ == "__main__":
    from services.common.config import load_settings
    from services.common.server import exit_now, serve

    exit_now(serve(ProbeApp(), settings=load_settings()))
