"""The gateway's gRPC side: one channel, bounded worker threads, a deadline on every call.

gRPC's Python calls block, so a unary call runs on a worker thread (``anyio.to_thread``)
under a capacity limiter; a call over the limit is refused at once (429
CONCURRENCY_LIMIT) rather than queued, as the gRPC servers do. A call whose HTTP client
goes away is cancelled upstream (its gRPC future is cancelled, which frees the thread).
A progress stream (WatchClip) gets its own thread that pumps messages into the event loop;
closing the stream cancels the gRPC call, which ends the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from drape.animate.v1 import animate_service_pb2_grpc as animate_grpc
from drape.experiments.v1 import experiment_service_pb2_grpc as experiments_grpc
from drape.tryon.v1 import tryon_service_pb2_grpc as tryon_grpc
from services.common.security import TokenClientInterceptor, client_channel
from services.gateway.problems import Problem, from_rpc_error

log = logging.getLogger("drape.gateway")


@dataclasses.dataclass(frozen=True)
class CallMeta:
    """What one HTTP request passes on to its gRPC calls.

    Attributes:
        request_id: the gateway's request id (also the gRPC ``request_id`` field).
        token: the caller's bearer token to forward; "" for none.
        traceparent: the caller's W3C ``traceparent`` header, if any.
    """

    request_id: str
    token: str = ""
    traceparent: str = ""

    def metadata(self) -> list[tuple[str, str]]:
        md = []
        if self.token:
            md.append(("authorization", f"Bearer {self.token}"))
        if self.traceparent:
            md.append(("traceparent", self.traceparent))
        return md


def busy(what: str) -> Problem:
    return Problem(
        429, "CONCURRENCY_LIMIT", f"the gateway has too many {what} in flight; retry shortly"
    )


class _Cancellable:
    """Runs one gRPC future on a worker thread; :meth:`cancel` stops it from any thread,
    before or after the call started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._future: Any = None
        self._cancelled = False

    def run(self, method: Callable, request: Any, **kw: Any) -> Any:
        with self._lock:
            if self._cancelled:
                raise asyncio.CancelledError
            self._future = method.future(request, **kw)
        return self._future.result()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._future is not None:
                self._future.cancel()


class WatchStream:
    """One server stream pumped by its own thread into an asyncio queue.

    Use :meth:`next` to read; always :meth:`close` (cancels the call; the thread ends).
    """

    _END = object()

    def __init__(self, upstream: Upstream, call: Any, fields: Mapping[str, str] | None) -> None:
        self._upstream = upstream
        self._call = call
        self._fields = fields
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._closed = False
        self.thread = threading.Thread(target=self._pump, name="drape-gw-watch", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> None:
        # RuntimeError: the event loop is closed, nobody reads any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _pump(self) -> None:
        try:
            for msg in self._call:
                self._put(msg)
        except grpc.RpcError as err:
            if not self._closed:
                self._put(err)
        except Exception:  # noqa: BLE001 - reported to the reader, never lost in a thread
            log.exception("watch stream failed")
            self._put(Problem(502, "UPSTREAM_FAILED", "the progress stream failed"))
        finally:
            self._put(self._END)

    async def next(self, timeout: float) -> Any:
        """The next message; None at the end of the stream.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds (send a keep-alive).
            Problem: the call failed (its status mapped).
        """
        item = await asyncio.wait_for(self._queue.get(), timeout)
        if item is self._END:
            self._queue.put_nowait(item)  # stays at the end for later reads
            return None
        if isinstance(item, Problem):
            raise item
        if isinstance(item, grpc.RpcError):
            if item.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise Problem(
                    504,
                    "EVENTS_TIMEOUT",
                    "the progress stream reached its longest duration; read the clip's "
                    "status instead",
                )
            raise from_rpc_error(item, self._fields)
        return item

    def close(self) -> None:
        """Cancel the gRPC call (idempotent); the pumping thread then ends."""
        if not self._closed:
            self._closed = True
            self._call.cancel()
            self._upstream._stream_closed()


class Upstream:
    """The gRPC services behind the gateway.

    Args:
        settings: the gateway's settings (upstream address, client TLS, limits).
        channel: an existing channel to use (tests); by default one to
            ``DRAPE_GATEWAY_UPSTREAM`` with the client security of the settings. When the
            gateway checks bearer tokens itself (``DRAPE_AUTH_TOKENS_FILE``), each call
            carries its caller's token, so the channel adds none of its own.
    """

    def __init__(self, settings: Any, channel: grpc.Channel | None = None) -> None:
        self.settings = settings
        self.forward_tokens = bool(settings.auth_tokens_file)
        self._own_channel = channel is None
        if channel is None:
            channel_settings = (
                dataclasses.replace(settings, client_token_file="")
                if self.forward_tokens
                else settings
            )
            channel = client_channel(
                settings.gateway_upstream,
                channel_settings,
                options=[
                    ("grpc.max_receive_message_length", settings.max_message_bytes),
                    ("grpc.max_send_message_length", settings.max_message_bytes),
                ],
            )
        self.channel = channel
        # The gateway's own token (start-up work such as registering the gallery) when it
        # forwards callers' tokens; else the channel already sends DRAPE_CLIENT_TOKEN_FILE.
        self._own_token = (
            TokenClientInterceptor(settings.client_token_file)
            if self.forward_tokens and settings.client_token_file
            else None
        )
        self.tryon = tryon_grpc.TryOnServiceStub(channel)
        self.animate = animate_grpc.AnimateServiceStub(channel)
        self.experiments = experiments_grpc.ExperimentServiceStub(channel)
        self.health = health_pb2_grpc.HealthStub(channel)
        self._calls: anyio.CapacityLimiter | None = None
        self.open_streams = 0

    def own_meta(self, request_id: str) -> CallMeta:
        """Call metadata for the gateway's own calls (no HTTP caller)."""
        return CallMeta(request_id, self._own_token.token() if self._own_token else "")

    def caller_meta(self, request_id: str, token: str, traceparent: str = "") -> CallMeta:
        """Call metadata of an HTTP caller: its token is forwarded when tokens are on."""
        return CallMeta(request_id, token if self.forward_tokens else "", traceparent[:128])

    @property
    def calls(self) -> anyio.CapacityLimiter:
        # Made on first use: a limiter belongs to the running event loop.
        if self._calls is None:
            self._calls = anyio.CapacityLimiter(self.settings.gateway_max_concurrent_calls)
        return self._calls

    async def unary(
        self,
        method: Callable,
        request: Any,
        meta: CallMeta,
        timeout: float,
        fields: Mapping[str, str] | None = None,
    ) -> Any:
        """Run one unary call on a worker thread with a deadline.

        Raises:
            Problem: 429 CONCURRENCY_LIMIT when every worker is busy, else the call's
                status mapped (field paths renamed through ``fields``).
        """
        return await self.run_blocking(self._unary, method, request, meta, timeout, fields)

    def _unary(self, method, request, meta, timeout, fields, runner: _Cancellable):
        try:
            return runner.run(method, request, timeout=timeout, metadata=meta.metadata())
        except grpc.RpcError as err:
            raise from_rpc_error(err, fields) from None

    async def run_blocking(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args, runner)`` on a worker thread under the call limit; a cancelled
        caller cancels the gRPC call that ``runner`` runs.

        Raises:
            Problem: 429 CONCURRENCY_LIMIT when every worker is busy.
        """
        limiter = self.calls
        if limiter.available_tokens < 1:
            raise busy("calls")
        runner = _Cancellable()
        try:
            return await anyio.to_thread.run_sync(
                fn, *args, runner, abandon_on_cancel=True, limiter=limiter
            )
        finally:
            runner.cancel()  # a no-op after a finished call; stops an abandoned one

    def watch_clip(
        self,
        request: Any,
        meta: CallMeta,
        timeout: float,
        fields: Mapping[str, str] | None = None,
    ) -> WatchStream:
        """Open a WatchClip stream (a thread of its own until :meth:`WatchStream.close`).

        Raises:
            Problem: 429 CONCURRENCY_LIMIT at DRAPE_GATEWAY_MAX_EVENT_STREAMS open streams.
        """
        if self.open_streams >= self.settings.gateway_max_event_streams:
            raise busy("progress streams")
        call = self.animate.WatchClip(request, timeout=timeout, metadata=meta.metadata())
        self.open_streams += 1
        try:
            return WatchStream(self, call, fields)
        except BaseException:
            call.cancel()
            self.open_streams -= 1
            raise

    def _stream_closed(self) -> None:
        self.open_streams -= 1

    async def serving(self, timeout: float = 2.0) -> bool:
        """Whether the upstream's gRPC health says SERVING (overall service "")."""

        def check(runner: _Cancellable) -> bool:
            try:
                r = runner.run(
                    self.health.Check, health_pb2.HealthCheckRequest(service=""), timeout=timeout
                )
            except grpc.RpcError:
                return False
            return r.status == health_pb2.HealthCheckResponse.SERVING

        return await self.run_blocking(check)

    def close(self) -> None:
        if self._own_channel:
            self.channel.close()
