"""gRPC status (code + ``google.rpc`` details) → HTTP status and an RFC 9457 problem body.

One mapping for the whole gateway. The reason strings are the services' own (ErrorInfo
reasons, UPPER_SNAKE), so a storefront branches on the same words over HTTP as over gRPC.
Errors that carry no Drape ErrorInfo (the upstream cannot be reached, gRPC's own limits)
get a gateway reason and a generic message: gRPC's text would name internal addresses.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from starlette.responses import Response

from services.common.errors import ERROR_DOMAIN

PROBLEM_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:drape:problem:"

# Short generic titles by HTTP status (RFC 9457 "title": the same for every occurrence).
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    416: "Range not satisfiable",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    501: "Not implemented",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}

# INVALID_ARGUMENT reasons that say the request itself is malformed (400): a missing,
# duplicated or ill-formed field, an option outside its range. Every other
# INVALID_ARGUMENT refuses what was sent (a photo without a person, a garment that does not
# fit): 422.
MALFORMED = frozenset(
    {
        "FIELD_MISSING",
        "FIELD_UNKNOWN",
        "FIELD_DUPLICATE",
        "FIELD_TOO_LONG",
        "FIELD_INVALID",
        "FORM_INVALID",
        "MALFORMED_REQUEST",
        "INVALID_REQUEST_ID",
        "OPTION_OUT_OF_RANGE",
        "GARMENT_ID_INVALID",
        "GARMENT_SOURCE_MISSING",
        "GARMENT_SOURCE_CONFLICT",
        "GARMENT_CATEGORY_INVALID",
        "GARMENT_SLEEVE_INVALID",
        "GARMENT_LENGTH_INVALID",
        "GARMENT_HINT_CONFLICT",
        "GARMENT_HINT_INCOMPLETE",
        "MOTION_MISSING",
        "NAME_INVALID",
        "CLIP_ID_INVALID",
        "INVALID_UNIT_ID",
        "INVALID_EXPERIMENT_TAG",
    }
)
# Reasons that are about size (413), whatever their gRPC code.
TOO_LARGE = frozenset({"IMAGE_TOO_LARGE", "MESSAGE_TOO_LARGE", "REQUEST_TOO_LARGE"})
# INVALID_ARGUMENT reasons about a resource named in the URL path (404).
NOT_FOUND = frozenset({"EXPERIMENT_NOT_FOUND"})

_BY_CODE = {
    grpc.StatusCode.CANCELLED: 409,
    grpc.StatusCode.UNKNOWN: 502,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
# Reason and shopper-safe message of an error without a Drape ErrorInfo.
_BARE = {
    grpc.StatusCode.UNAVAILABLE: ("UPSTREAM_UNAVAILABLE", "the service is unavailable; retry"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (
        "UPSTREAM_TIMEOUT",
        "the service did not answer in time; retry",
    ),
    grpc.StatusCode.CANCELLED: ("CANCELLED", "the call was cancelled"),
    grpc.StatusCode.UNIMPLEMENTED: (
        "NOT_IMPLEMENTED",
        "the service behind the gateway does not offer this call",
    ),
}
_CODES = {c.value[0]: c for c in grpc.StatusCode}


def http_status(code: grpc.StatusCode, reason: str) -> int:
    """The HTTP status of a gRPC ``code`` with ErrorInfo ``reason``."""
    if reason in TOO_LARGE:
        return 413
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        if reason in MALFORMED:
            return 400
        if reason in NOT_FOUND:
            return 404
    return _BY_CODE.get(code, 500)


def problem_type(reason: str) -> str:
    """``urn:drape:problem:no-person-detected`` for ``NO_PERSON_DETECTED``."""
    return TYPE_PREFIX + reason.lower().replace("_", "-")


@dataclasses.dataclass
class Problem(Exception):
    """An error answer: raise it anywhere in a handler, or send :meth:`response`.

    Attributes:
        status: HTTP status.
        reason: UPPER_SNAKE reason (the gRPC ErrorInfo reason where there is one).
        detail: what went wrong, safe to show a storefront's developers.
        field: the form field, path or query parameter at fault, if any.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``, ``Allow``).
    """

    status: int
    reason: str
    detail: str
    field: str | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.detail}"

    def body(self, request_id: str) -> dict[str, Any]:
        """The RFC 9457 problem object."""
        out: dict[str, Any] = {
            "type": problem_type(self.reason),
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
            "reason": self.reason,
        }
        if self.field:
            out["field"] = self.field
        out["request_id"] = request_id
        return out

    def response(self, request_id: str) -> Response:
        """The problem as an ``application/problem+json`` response."""
        headers = dict(self.headers)
        if self.status in (429, 503) and "retry-after" not in {k.lower() for k in headers}:
            headers["Retry-After"] = "1"
        return Response(
            json.dumps(self.body(request_id), ensure_ascii=False),
            status_code=self.status,
            media_type=PROBLEM_TYPE,
            headers=headers,
        )


def _rename(field: str, fields: Mapping[str, str]) -> str:
    """The gateway's name for a gRPC field path: the longest mapped prefix is replaced
    (``person.data`` → ``photo`` with ``{"person": "photo"}``); unmapped paths stay."""
    for prefix in sorted(fields, key=len, reverse=True):
        if field == prefix or field.startswith((prefix + ".", prefix + "[")):
            return fields[prefix]
    return field


def from_status(
    code: grpc.StatusCode,
    message: str,
    details: list | tuple = (),
    fields: Mapping[str, str] | None = None,
) -> Problem:
    """A problem from a gRPC code, its message and ``google.rpc`` details (packed Any).

    Args:
        code: the gRPC status code.
        message: the status message (shown only when a Drape ErrorInfo vouches for it).
        details: ``google.protobuf.Any`` details of the ``google.rpc.Status``.
        fields: gRPC field path prefix → the gateway's form field name.
    """
    reason, field, drape = "", None, False
    for detail in details:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, drape = info.reason, info.domain == ERROR_DOMAIN
        elif detail.Unpack(bad) and bad.field_violations:
            field = bad.field_violations[0].field
    if field is not None:
        field = _rename(field, fields or {})
    if drape and reason:
        return Problem(http_status(code, reason), reason, message or reason, field)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in message:
        # gRPC's own message limit: the upload could never be accepted.
        return Problem(413, "MESSAGE_TOO_LARGE", "the upload is larger than the service accepts")
    bare_reason, text = _BARE.get(code, (code.name, "the service failed to answer; retry"))
    return Problem(http_status(code, bare_reason), bare_reason, text, field)


def from_rpc_error(err: grpc.RpcError, fields: Mapping[str, str] | None = None) -> Problem:
    """A problem from a failed gRPC call (reads ``grpc-status-details-bin``)."""
    from grpc_status import rpc_status

    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    try:
        st = rpc_status.from_call(err)
    except ValueError:  # details that contradict the status: trust neither
        st = None
    if st is None:
        details_fn = getattr(err, "details", None)
        return from_status(code, (details_fn() if details_fn else "") or "", (), fields)
    return from_status(code, st.message, list(st.details), fields)


def from_status_proto(st: status_pb2.Status, fields: Mapping[str, str] | None = None) -> Problem:
    """A problem from a ``google.rpc.Status`` (a failed operation's ``error``)."""
    code = _CODES.get(st.code, grpc.StatusCode.UNKNOWN)
    return from_status(code, st.message, list(st.details), fields)
