"""The one place where exceptions become gRPC status, and where every call is counted,
limited, timed and logged.

Order inside a call: bind the call context (request id, trace id, experiment tags) →
refuse at once if over the concurrency limit → run the handler → map any exception to a
status with ``google.rpc`` details → record metrics and one log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from services.common import context as ctxmod
from services.common import logs as _logs  # noqa: F401 - installs the log record factory
from services.common.budget import ByteBudget, Held, MemoryTrimmer, Refused, budget_deserializer
from services.common.errors import (
    ERROR_DOMAIN,
    DeadlineExceededError,
    DrapeError,
    InternalError,
    ResourceExhaustedError,
    UnavailableError,
)
from services.common.metrics import Metrics

log = logging.getLogger("drape.rpc")

TRACE_HEADER = "x-drape-trace-id"
REQUEST_ID_HEADER = "x-request-id"
# Long-lived or infrastructure calls that must never be refused for capacity.
EXEMPT_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


# The most of an error message, field path or metadata value that goes back to a caller.
# Error replies travel in trailers, which gRPC limits to 8 KiB by default: past that the
# client sees a bare RESOURCE_EXHAUSTED instead of the reason. Validation echoes at most
# 64 characters of a refused value (services.common.validation.shown); this is the net
# under every other message.
MESSAGE_MAX = 1024
FIELD_MAX = 256


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def status_proto(err: DrapeError) -> status_pb2.Status:
    """``google.rpc.Status`` for an error: an ErrorInfo with the reason always, plus a
    BadRequest field violation when the error names a request field. The message, the
    field and metadata values are cut to :data:`MESSAGE_MAX` / :data:`FIELD_MAX`."""
    message = _cap(err.message, MESSAGE_MAX)
    info = error_details_pb2.ErrorInfo(
        reason=err.reason,
        domain=ERROR_DOMAIN,
        metadata={_cap(k, FIELD_MAX): _cap(v, FIELD_MAX) for k, v in err.metadata.items()},
    )
    details = []
    packed = any_pb2.Any()
    packed.Pack(info)
    details.append(packed)
    if err.field:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_cap(err.field, FIELD_MAX), description=message
                )
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        details.append(packed)
    return status_pb2.Status(code=err.code.value[0], message=message, details=details)


def to_grpc_status(err: DrapeError, trace_id: str) -> grpc.Status:
    """A ``grpc.Status`` carrying :func:`status_proto` and the trace id in trailers."""
    proto = status_proto(err)
    return _Status(
        err.code,
        proto.message,
        (("grpc-status-details-bin", proto.SerializeToString()), (TRACE_HEADER, trace_id)),
    )


def internal_error(trace_id: str) -> InternalError:
    """The generic error a caller sees for our own faults."""
    return InternalError(
        "INTERNAL_ERROR",
        f"an internal error occurred; it was logged with trace id {trace_id}",
        metadata={"trace_id": trace_id},
    )


class ConcurrencyLimiter:
    """Admits at most ``limit`` calls at once; never queues."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active = 0
        # Re-entrant: a _Slot dropped by the garbage collector releases from __del__,
        # which may run on a thread that is inside try_acquire.
        self._lock = threading.RLock()

    def try_acquire(self) -> bool:
        with self._lock:
            if self._active >= self.limit:
                return False
            self._active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._active -= 1

    @property
    def active(self) -> int:
        return self._active


class _Slot:
    """A place under a :class:`ConcurrencyLimiter` taken when a call arrives, before its
    request is read; given back when the call ends, or when gRPC drops the call without
    running the handler (the caller went away before sending its message)."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: ConcurrencyLimiter) -> None:
        self._limiter: ConcurrencyLimiter | None = limiter

    def release(self) -> None:
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release()

    def __del__(self) -> None:
        self.release()


class _Call:
    """Bookkeeping of one call across the handler's lifetime."""

    def __init__(
        self,
        icpt: DrapeInterceptor,
        service: str,
        method: str,
        context: grpc.ServicerContext,
        slot: _Slot | None = None,
    ):
        self.icpt, self.service, self.method, self.context = icpt, service, method, context
        # Taken on arrival by DrapeInterceptor.intercept_service (None for exempt services).
        self.slot = slot
        self.t0 = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self.reason = ""
        self.ctx: ctxmod.CallContext | None = None
        self.token = None
        self.admitted = False
        self.variant = ""
        # Watch streams of long-running operations are cheap and long-lived: they get their
        # own limit so that a few open progress streams never starve the real work.
        watch = method.startswith("Watch")
        self.limiter = icpt.watch_limiter if watch else icpt.limiter
        self.kind = "progress streams" if watch else "calls"

    def begin(self, request: Any | None) -> None:
        md = {
            k.lower(): v
            for k, v in (self.context.invocation_metadata() or ())
            if isinstance(v, str)
        }
        trace_id = ctxmod.trace_id_from(md)
        self.context.set_trailing_metadata(((TRACE_HEADER, trace_id),))
        # Bind a provisional context first so that even a refused request id is logged.
        self.ctx = ctxmod.CallContext(
            request_id="", trace_id=trace_id, method=f"{self.service}/{self.method}"
        )
        self.token = ctxmod.bind(self.ctx)
        rid = getattr(request, "request_id", "") if request is not None else ""
        rid = rid or md.get(REQUEST_ID_HEADER, "")
        exp_id = variant = ""
        if request is not None and _has_field(request, "experiment"):
            exp_id = request.experiment.experiment_id
            variant = request.experiment.variant
        self.ctx = ctxmod.CallContext(
            request_id=rid or ctxmod.new_id(),
            trace_id=trace_id,
            experiment_id=exp_id,
            variant=variant,
            method=self.ctx.method,
        )
        ctxmod.unbind(self.token)
        self.token = ctxmod.bind(self.ctx)
        self.variant = variant
        self.icpt.metrics.in_flight.labels(self.service, self.method).inc()
        if self.service not in EXEMPT_SERVICES:
            ctxmod.validate_request_id(rid)
            ctxmod.validate_tag(exp_id, "experiment.experiment_id")
            ctxmod.validate_tag(variant, "experiment.variant")
            rem = self.context.time_remaining()
            if rem is not None and rem <= 0:
                raise DeadlineExceededError(
                    "DEADLINE_EXCEEDED", "the deadline passed before the call started"
                )
            if self.icpt.draining.is_set():
                raise UnavailableError(
                    "SERVER_DRAINING", "the server is shutting down; retry on another replica"
                )
            if self.slot is None:
                raise self.over_limit()
            self.admitted = True

    def over_limit(self) -> ResourceExhaustedError:
        """The refusal of a call that found no free place under its limit."""
        return ResourceExhaustedError(
            "CONCURRENCY_LIMIT",
            f"the server is serving its limit of {self.limiter.limit} {self.kind}; retry with backoff",
            metadata={"limit": str(self.limiter.limit)},
        )

    def fail(self, exc: BaseException) -> None:
        """Turn ``exc`` into the call's status (aborts, i.e. raises)."""
        ctx = self.ctx
        trace_id = ctx.trace_id if ctx else ctxmod.new_id()
        if isinstance(exc, DrapeError) and not isinstance(exc, InternalError):
            err = exc
        else:
            # An abort by the handler itself already set the code: keep it.
            # grpc's context.abort() sets the code, then raises a bare Exception(); anything
            # else is a fault of ours, even if the handler had called set_code() first.
            existing = _context_code(self.context)
            aborted = type(exc) is Exception and not exc.args
            if aborted and existing not in (None, grpc.StatusCode.OK):
                self.code = existing
                self.reason = "HANDLER_ABORT"
                raise exc
            if isinstance(exc, InternalError):
                log.error("internal error: %s", exc, extra={"reason": exc.reason})
            else:
                log.exception("unhandled exception in %s/%s", self.service, self.method)
            err = internal_error(trace_id)
        self.code, self.reason = err.code, err.reason
        self.context.abort_with_status(to_grpc_status(err, trace_id))

    def end(self) -> None:
        m = self.icpt.metrics
        elapsed = time.perf_counter() - self.t0
        if self.slot is not None:
            self.slot.release()
        m.in_flight.labels(self.service, self.method).dec()
        code = self.code.name
        m.requests.labels(self.service, self.method, code, m.variant_label(self.variant)).inc()
        m.duration.labels(self.service, self.method).observe(elapsed)
        if self.code != grpc.StatusCode.OK:
            m.errors.labels(self.service, self.method, code, self.reason or code).inc()
        if self.service not in EXEMPT_SERVICES:
            level = (
                logging.ERROR
                if self.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
                else logging.INFO
            )
            log.log(
                level,
                "rpc finished",
                extra={
                    "rpc": f"{self.service}/{self.method}",
                    "code": code,
                    "reason": self.reason,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
        if self.token is not None:
            ctxmod.unbind(self.token)
            self.token = None


def _has_field(msg: Any, name: str) -> bool:
    try:
        return msg.HasField(name)
    except (ValueError, AttributeError):
        return False


def _context_code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    try:
        return context.code()
    except (AttributeError, NotImplementedError):
        return None


class DrapeInterceptor(grpc.ServerInterceptor):
    """Maps errors, limits concurrency and request bytes, records metrics and logs, for
    every handler.

    A call takes its place under the concurrency limit when it arrives, before gRPC reads
    its request: a call over the limit (or arriving while the server drains) is refused
    without its message ever being read, so a storm of large bodies costs the server
    almost nothing. An admitted unary request is checked against its method's size limit
    and the process's byte budget as soon as it is read, before it is parsed
    (:func:`services.common.budget.budget_deserializer`).

    Args:
        metrics: where RED metrics go.
        limiter: shared concurrency limit.
        draining: set once the server stops accepting work.
        watch_limiter: concurrency limit of Watch* progress streams.
        budget: request bytes held at once; None: not counted, no per-method limits.
        request_limit: a handler's request deserializer -> most bytes its request may have.
        trimmer: told when large requests go away.
    """

    def __init__(
        self,
        metrics: Metrics,
        limiter: ConcurrencyLimiter,
        draining: threading.Event,
        watch_limiter: ConcurrencyLimiter | None = None,
        budget: ByteBudget | None = None,
        request_limit: Callable[[Any], int] | None = None,
        trimmer: MemoryTrimmer | None = None,
    ) -> None:
        self.metrics = metrics
        self.limiter = limiter
        self.watch_limiter = watch_limiter or ConcurrencyLimiter(max(16, 4 * limiter.limit))
        self.draining = draining
        self.budget = budget
        self.request_limit = request_limit
        self.trimmer = trimmer
        self._limits: dict[str, int] = {}

    def intercept_service(
        self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails
    ):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full = handler_call_details.method.lstrip("/")
        service, _, method = full.partition("/")
        deserializer = handler.request_deserializer
        slot = None
        if service not in EXEMPT_SERVICES:
            limiter = self.watch_limiter if method.startswith("Watch") else self.limiter
            if not self.draining.is_set() and limiter.try_acquire():
                slot = _Slot(limiter)
            else:
                return self._refusal(handler, service, method)
            if self.budget is not None and not handler.request_streaming:
                limit = self._limits.get(full)
                if limit is None:
                    limit = self._limits[full] = (
                        self.request_limit(deserializer)
                        if self.request_limit is not None
                        else self.budget.limit
                    )
                deserializer = budget_deserializer(
                    deserializer,
                    method=full,
                    limit=limit,
                    budget=self.budget,
                    trimmer=self.trimmer,
                )
        kw = {
            "request_deserializer": deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, service, method, slot=slot), **kw
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, service, method, True, slot), **kw
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, service, method, False, slot), **kw
            )
        return grpc.stream_stream_rpc_method_handler(
            self._stream(handler.stream_stream, service, method, False, slot), **kw
        )

    def _refusal(self, handler, service: str, method: str):
        """A handler that refuses the call without reading its request: registered as
        request-streaming, so gRPC runs it before any message arrives (a unary handler
        would first wait for, and hold, the whole message)."""

        def refuse(_request_iterator, context):
            call = _Call(self, service, method, context)
            try:
                call.begin(None)  # SERVER_DRAINING, or CONCURRENCY_LIMIT (no slot)
                raise call.over_limit()
            except BaseException as exc:  # noqa: BLE001 - mapped, never leaked
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                call.fail(exc)
            finally:
                call.end()

        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse, **kw)
        return grpc.stream_unary_rpc_method_handler(refuse, **kw)

    def _unary(
        self,
        behavior: Callable,
        service: str,
        method: str,
        unary_request: bool = True,
        slot: _Slot | None = None,
    ) -> Callable:
        def wrapper(request, context):
            call = _Call(self, service, method, context, slot)
            held = request if isinstance(request, Held) else None
            try:
                if isinstance(request, Refused):
                    call.begin(None)
                    raise request.error
                if held is not None:
                    request = held.message
                call.begin(request if unary_request else None)
                return behavior(request, context)
            except BaseException as exc:  # noqa: BLE001 - mapped, never leaked
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                call.fail(exc)
            finally:
                call.end()
                if held is not None:
                    held.release()

        return wrapper

    def _stream(
        self,
        behavior: Callable,
        service: str,
        method: str,
        unary_request: bool,
        slot: _Slot | None = None,
    ) -> Callable:
        def wrapper(request, context) -> Iterator:
            call = _Call(self, service, method, context, slot)
            held = request if isinstance(request, Held) else None
            try:
                if isinstance(request, Refused):
                    call.begin(None)
                    raise request.error
                if held is not None:
                    request = held.message
                call.begin(request if unary_request else None)
                yield from behavior(request, context)
            except GeneratorExit:
                call.code, call.reason = grpc.StatusCode.CANCELLED, "CLIENT_CANCELLED"
                raise
            except BaseException as exc:  # noqa: BLE001
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                call.fail(exc)
            finally:
                call.end()
                if held is not None:
                    held.release()

        return wrapper


def cancel_token(context: grpc.ServicerContext) -> ctxmod.CancelToken:
    """A :class:`CancelToken` for pipeline code from a gRPC context: cancelled when the
    caller goes away, expired at the caller's deadline. Servicers hand it to transport-free
    code, which calls ``token.check(stage)`` between stages and per frame."""
    remaining = context.time_remaining()
    deadline = None if remaining is None else time.monotonic() + remaining
    return ctxmod.CancelToken(deadline=deadline, is_active=context.is_active)
