"""Structured logs: one JSON object a line, with the call's request and trace ids.

Never log request payloads: :func:`safe` replaces bytes (images, clips) with their length,
so a careless ``extra={"image": data}`` cannot leak a shopper photo into the logs.

Every field of a line is bounded (:func:`clip`): ids and tags are logged even when the call
is refused for them, so an 8 MiB request id must not become an 8 MiB log line.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any

from services.common import context

_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {
    "message",
    "asctime",
    "drape_call",
}
_base_factory = logging.getLogRecordFactory()


def _record_factory(*args, **kwargs) -> logging.LogRecord:
    # Capture the call context when the record is made, not when it is formatted: handlers
    # may format later, on another thread (queues, pytest's caplog).
    record = _base_factory(*args, **kwargs)
    record.drape_call = context.current()
    return record


if getattr(_base_factory, "__name__", "") != "_record_factory":
    logging.setLogRecordFactory(_record_factory)


# Bounds of one log line's parts, in characters.
ID_MAX = 128  # request ids (the longest valid one is 128) and trace ids
TAG_MAX = 64  # experiment ids and variants (the longest valid one is 64)
FIELD_MAX = 500  # any other field's string value, and a dict key
ITEMS_MAX = 32  # entries of a logged list or dict
MSG_MAX = 4000  # the formatted message
EXC_MAX = 16000  # a formatted traceback


def clip(text: str, limit: int = FIELD_MAX) -> str:
    """``text`` cut to ``limit`` characters, marked with ``…(+N)`` when cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit})"


def safe(value: Any) -> Any:
    """A loggable version of ``value``: bytes become ``"<N bytes>"``, strings and
    containers are bounded (:data:`FIELD_MAX` characters, :data:`ITEMS_MAX` items),
    recursively."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        out = {clip(str(k)): safe(v) for k, v in list(value.items())[:ITEMS_MAX]}
        if len(value) > ITEMS_MAX:
            out["…"] = f"+{len(value) - ITEMS_MAX} more"
        return out
    if isinstance(value, (list, tuple)):
        out = [safe(v) for v in value[:ITEMS_MAX]]
        if len(value) > ITEMS_MAX:
            out.append(f"…+{len(value) - ITEMS_MAX} more")
        return out
    if value is None or isinstance(value, (int, float, bool)):
        return value
    return clip(value if isinstance(value, str) else str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with the current call's ids."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": clip(record.getMessage(), MSG_MAX),
        }
        call = getattr(record, "drape_call", None) or context.current()
        if call is not None:
            out["request_id"] = clip(call.request_id, ID_MAX)
            out["trace_id"] = clip(call.trace_id, ID_MAX)
            if call.experiment_id:
                out["experiment"] = clip(call.experiment_id, TAG_MAX)
            if call.variant:
                out["variant"] = clip(call.variant, TAG_MAX)
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[clip(key)] = safe(value)
        if record.exc_info:
            out["exc"] = clip(self.formatException(record.exc_info), EXC_MAX)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A line for people: time, level, ids, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        call = getattr(record, "drape_call", None) or context.current()
        ids = f" [{call.request_id[:12]} {call.trace_id[:8]}]" if call else ""
        extras = {
            clip(k): safe(v)
            for k, v in record.__dict__.items()
            if k not in _STD_ATTRS and not k.startswith("_")
        }
        tail = " " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else ""
        msg = clip(record.getMessage(), MSG_MAX)
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname[0]}{ids} {record.name}: {msg}{tail}"
        if record.exc_info:
            line += "\n" + clip(self.formatException(record.exc_info), EXC_MAX)
        return line


def configure_logging(level: str = "INFO", fmt: str = "json", stream=None) -> None:
    """Route the root logger to ``stream`` (stderr) in the chosen format. Idempotent."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_drape", False):
            root.removeHandler(h)
    handler._drape = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter that would drown the service's own lines.
    for noisy in ("kafka", "absl"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
