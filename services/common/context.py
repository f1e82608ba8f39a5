"""Per-call context (request id, trace id, experiment tags) and cancellation.

Pipeline code reads :func:`current` for log correlation and receives a :class:`CancelToken`
to check between stages; neither needs gRPC, so numeric code stays transport-free.
"""

from __future__ import annotations

import contextvars
import dataclasses
import re
import threading
import time
import uuid
from collections.abc import Callable

from services.common.errors import CancelledError, DeadlineExceededError, InvalidInputError
from services.common.validation import shown

# Always used with fullmatch: ``$`` alone also matches before a final newline ("abc\n").
_TAG_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_REQUEST_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces
_TRACEPARENT_RE = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


@dataclasses.dataclass(frozen=True)
class CallContext:
    """Who a piece of work is for; carried in a context variable for logs and metrics."""

    request_id: str
    trace_id: str
    experiment_id: str = ""
    variant: str = ""
    method: str = ""


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "drape_call", default=None
)


def current() -> CallContext | None:
    """The context of the call being served on this thread, if any."""
    return _current.get()


def bind(ctx: CallContext | None) -> contextvars.Token:
    """Make ``ctx`` the current call context; undo with :func:`unbind`."""
    return _current.set(ctx)


def unbind(token: contextvars.Token) -> None:
    _current.reset(token)


def new_id() -> str:
    """A fresh 32-hex-digit id (request and trace ids)."""
    return uuid.uuid4().hex


def validate_request_id(value: str, field: str = "request_id") -> str:
    """Return ``value`` or a fresh id when empty.

    Raises:
        InvalidInputError: INVALID_REQUEST_ID for ids with spaces, control characters or
            more than 128 characters.
    """
    if not value:
        return new_id()
    if not _REQUEST_ID_RE.fullmatch(value):
        raise InvalidInputError(
            "INVALID_REQUEST_ID",
            f"request_id must be 1-128 printable ASCII characters without spaces, got "
            f"{shown(value)}",
            field=field,
        )
    return value


def validate_tag(value: str, field: str) -> str:
    """Check an experiment id or variant.

    Raises:
        InvalidInputError: INVALID_EXPERIMENT_TAG when ``value`` is not 1-64 characters of
            lowercase letters, digits, ``.``, ``_`` and ``-``.
    """
    if value and not _TAG_RE.fullmatch(value):
        raise InvalidInputError(
            "INVALID_EXPERIMENT_TAG",
            f"{field} must be 1-64 characters of a-z, 0-9, '.', '_', '-', got {shown(value)}",
            field=field,
        )
    return value


def trace_id_from(metadata: dict[str, str]) -> str:
    """Trace id from W3C ``traceparent`` or ``x-drape-trace-id`` metadata, else a new one."""
    tp = metadata.get("traceparent", "")
    m = _TRACEPARENT_RE.fullmatch(tp.strip().lower())
    if m:
        return m.group(1)
    given = metadata.get("x-drape-trace-id", "").strip().lower()
    if re.fullmatch(r"[0-9a-f]{16,32}", given):
        return given
    return new_id()


class CancelToken:
    """Tells long work to stop: on cancel, or when a deadline passes.

    Args:
        deadline: ``time.monotonic()`` value after which :meth:`check` raises, or None.
        is_active: callable returning False once the caller went away (e.g. a gRPC
            context's ``is_active``).
    """

    def __init__(self, deadline: float | None = None, is_active: Callable[[], bool] | None = None):
        self._deadline = deadline
        self._is_active = is_active
        self._event = threading.Event()
        self._reason = ""

    @classmethod
    def with_timeout(cls, seconds: float | None) -> CancelToken:
        return cls(None if seconds is None else time.monotonic() + seconds)

    def cancel(self, reason: str = "cancelled") -> None:
        self._reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if self._event.is_set():
            return True
        if self._is_active is not None and not self._is_active():
            self._reason = self._reason or "the caller went away"
            return True
        return False

    def remaining(self) -> float | None:
        """Seconds left before the deadline, None without one."""
        return None if self._deadline is None else self._deadline - time.monotonic()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when cancelled meanwhile."""
        return self._event.wait(seconds)

    def check(self, stage: str = "") -> None:
        """Raise if the work should stop; call between stages and per frame.

        Raises:
            CancelledError: CANCELLED when cancelled or the caller went away.
            DeadlineExceededError: DEADLINE_EXCEEDED once the deadline passed.
        """
        where = f" during {stage}" if stage else ""
        if self.cancelled:
            raise CancelledError("CANCELLED", f"the work was cancelled{where}: {self._reason}")
        rem = self.remaining()
        if rem is not None and rem <= 0:
            raise DeadlineExceededError("DEADLINE_EXCEEDED", f"the deadline passed{where}")
