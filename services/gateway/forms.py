"""A bounded multipart/form-data reader that keeps every part in memory.

Starlette's own parser spools file parts over 1 MiB to a temporary file on disk; a shopper's
photo must never touch the disk (README "Privacy"), so the gateway reads forms here, on
python-multipart's streaming parser, with its limits checked as the bytes arrive:

- the whole body: at most ``max_bytes`` (DRAPE_GATEWAY_MAX_UPLOAD_BYTES), counted while it
  streams, so a chunked upload is cut off at the limit (413 REQUEST_TOO_LARGE);
- at most :data:`MAX_PARTS` parts, each with at most 8 headers of 4 KiB;
- only the fields the endpoint knows, each at most once; text fields at most
  :data:`TEXT_MAX` bytes of UTF-8.

Every refusal is a :class:`~services.gateway.problems.Problem` with a reason.
"""

from __future__ import annotations

import dataclasses

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from services.common.validation import shown
from services.gateway.problems import Problem

MAX_PARTS = 8
TEXT_MAX = 256
# Per part: python-multipart's limits on the part's headers.
MAX_PART_HEADERS = 8
MAX_PART_HEADER_BYTES = 4096


@dataclasses.dataclass(frozen=True)
class FormSpec:
    """The fields an endpoint reads.

    Attributes:
        files: names read as raw bytes (the photo, a flat-lay, a still).
        texts: names read as short UTF-8 text.
    """

    files: frozenset[str]
    texts: frozenset[str] = frozenset()


class _Collector:
    """python-multipart callbacks that fill ``fields`` and check the limits."""

    def __init__(self, spec: FormSpec) -> None:
        self.spec = spec
        self.fields: dict[str, bytes | str] = {}
        self.parts = 0
        self.ended = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._name_buf, self._value_buf = bytearray(), bytearray()
        self._name: str | None = None
        self._data = bytearray()

    # -- parts and their headers
    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise Problem(400, "FORM_INVALID", f"the form has more than {MAX_PARTS} parts")
        self._headers, self._name, self._data = [], None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name_buf += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value_buf += data[start:end]

    def on_header_end(self) -> None:
        self._headers.append((bytes(self._name_buf).lower(), bytes(self._value_buf)))
        self._name_buf, self._value_buf = bytearray(), bytearray()

    def on_headers_finished(self) -> None:
        disposition = next((v for k, v in self._headers if k == b"content-disposition"), b"")
        kind, options = parse_options_header(disposition)
        raw = options.get(b"name")
        if kind != b"form-data" or raw is None:
            raise Problem(
                400,
                "FORM_INVALID",
                "each part needs a 'Content-Disposition: form-data; name=...' header",
            )
        name = raw.decode("utf-8", "replace")
        if name not in self.spec.files and name not in self.spec.texts:
            known = ", ".join(sorted(self.spec.files | self.spec.texts))
            raise Problem(
                400,
                "FIELD_UNKNOWN",
                f"unknown form field {shown(name)}; this endpoint reads {known}",
                field=name[:64],
            )
        if name in self.fields:
            raise Problem(400, "FIELD_DUPLICATE", f"form field {name!r} is sent twice", name)
        self._name = name

    # -- data
    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._data += data[start:end]
        if self._name in self.spec.texts and len(self._data) > TEXT_MAX:
            raise Problem(
                400,
                "FIELD_TOO_LONG",
                f"form field {self._name!r} is longer than {TEXT_MAX} bytes",
                self._name,
            )

    def on_part_end(self) -> None:
        assert self._name is not None  # on_headers_finished ran or raised
        if self._name in self.spec.texts:
            try:
                self.fields[self._name] = self._data.decode("utf-8")
            except UnicodeDecodeError:
                raise Problem(
                    400, "FIELD_INVALID", f"form field {self._name!r} is not UTF-8", self._name
                ) from None
        else:
            self.fields[self._name] = bytes(self._data)
        self._data = bytearray()

    def on_end(self) -> None:
        self.ended = True

    def callbacks(self) -> dict:
        return {
            name: getattr(self, name)
            for name in (
                "on_part_begin",
                "on_part_data",
                "on_part_end",
                "on_header_field",
                "on_header_value",
                "on_header_end",
                "on_headers_finished",
                "on_end",
            )
        }


def too_large(max_bytes: int) -> Problem:
    """The refusal of a body over the limit."""
    return Problem(
        413,
        "REQUEST_TOO_LARGE",
        f"the request body is larger than {max_bytes} bytes; send a smaller photo",
    )


async def read_form(request: Request, spec: FormSpec, max_bytes: int) -> dict[str, bytes | str]:
    """Read a multipart/form-data body into memory.

    Args:
        request: the request; its body is consumed.
        spec: the fields this endpoint reads.
        max_bytes: the most body bytes read; one more and the read stops.

    Returns:
        field name → bytes (file fields) or str (text fields), for the fields sent.

    Raises:
        Problem: 415 CONTENT_TYPE_UNSUPPORTED, 413 REQUEST_TOO_LARGE, 400 FORM_INVALID,
            FIELD_UNKNOWN, FIELD_DUPLICATE, FIELD_TOO_LONG or FIELD_INVALID.
    """
    mime, params = parse_options_header(request.headers.get("content-type", ""))
    if mime != b"multipart/form-data":
        raise Problem(
            415,
            "CONTENT_TYPE_UNSUPPORTED",
            "send the fields as multipart/form-data",
            headers={"Accept-Post": "multipart/form-data"},
        )
    boundary = params.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 70:  # RFC 2046 §5.1.1
        raise Problem(400, "FORM_INVALID", "the multipart boundary is missing or too long")
    collector = _Collector(spec)
    parser = MultipartParser(
        boundary,
        collector.callbacks(),
        max_header_count=MAX_PART_HEADERS,
        max_header_size=MAX_PART_HEADER_BYTES,
    )
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise too_large(max_bytes)
        if collector.ended:
            continue  # an epilogue after the closing boundary is ignored (RFC 2046)
        try:
            parser.write(chunk)
        except MultipartParseError as exc:
            raise Problem(400, "FORM_INVALID", f"malformed multipart body: {exc}"[:200]) from None
    if not collector.ended:
        raise Problem(400, "FORM_INVALID", "the multipart body ends before its closing boundary")
    return collector.fields
