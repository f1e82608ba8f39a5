"""One exception hierarchy for every service, mapped to gRPC status in one place.

A pipeline raises the subclass that says *whose* fault it is; the interceptor
(:mod:`services.common.interceptors`) turns it into a status code plus ``google.rpc``
details. Reasons are stable UPPER_SNAKE strings a client can branch on.
"""

from __future__ import annotations

import re

import grpc

_REASON_RE = re.compile(r"[A-Z][A-Z0-9_]*[A-Z0-9]")  # fullmatch: "$" passes "X\n"

# The ErrorInfo.domain of every Drape error.
ERROR_DOMAIN = "drape.ai"


class DrapeError(Exception):
    """Base of every error a Drape service raises on purpose.

    Args:
        reason: stable UPPER_SNAKE code, e.g. ``"IMAGE_TOO_LARGE"``.
        message: human-readable explanation; it reaches the caller, so it must not contain
            secrets or personal data.
        field: the request field at fault (a path such as ``"person.data"``), if any.
        metadata: extra key/value facts for ``ErrorInfo.metadata`` (strings only).
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        field: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if not _REASON_RE.fullmatch(reason):
            raise ValueError(f"reason must be UPPER_SNAKE, got {reason!r}")
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.field = field
        self.metadata = {k: str(v) for k, v in (metadata or {}).items()}

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"{self.reason}{where}: {self.message}"


class InvalidInputError(DrapeError):
    """The caller sent something we will never accept (INVALID_ARGUMENT).

    Retrying the same request gives the same answer; the catalog adapter dead-letters
    events that fail this way at once.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT


class ResourceExhaustedError(DrapeError):
    """We are at capacity right now (RESOURCE_EXHAUSTED); retry later with backoff."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotFoundError(DrapeError):
    """A named thing (operation id, motion template, model) does not exist (NOT_FOUND)."""

    code = grpc.StatusCode.NOT_FOUND


class FailedPreconditionError(DrapeError):
    """The request is valid but the system is not in a state to run it
    (FAILED_PRECONDITION), e.g. a backend the deployment does not allow per request."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class UnavailableError(DrapeError):
    """The service cannot serve now (UNAVAILABLE): loading, draining, a dependency down."""

    code = grpc.StatusCode.UNAVAILABLE


class CancelledError(DrapeError):
    """The caller cancelled, or an operation was cancelled (CANCELLED)."""

    code = grpc.StatusCode.CANCELLED


class DeadlineExceededError(DrapeError):
    """The caller's deadline passed before the work finished (DEADLINE_EXCEEDED)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class InternalError(DrapeError):
    """Our own fault (INTERNAL). The caller sees only a generic message and a trace id."""

    code = grpc.StatusCode.INTERNAL


class ConfigError(Exception):
    """A setting is missing or invalid; raised at start-up, naming the setting."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
