"""Structured logs: one JSON object a line, with the call's request and trace ids.

Never log request payloads: :func:`safe` replaces bytes (images, clips) with their length,
so a careless ``extra={"image": data}`` cannot leak a shopper photo into the logs.
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


def safe(value: Any) -> Any:
    """A loggable version of ``value``: bytes become ``"<N bytes>"``, recursively."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {str(k): safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    text = str(value)
    return text if len(text) <= 500 else text[:500] + "..."


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with the current call's ids."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _dt.datetime.fromtimestamp(record.created, _dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call = getattr(record, "drape_call", None) or context.current()
        if call is not None:
            out["request_id"] = call.request_id
            out["trace_id"] = call.trace_id
            if call.experiment_id:
                out["experiment"] = call.experiment_id
            if call.variant:
                out["variant"] = call.variant
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = safe(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """A line for people: time, level, ids, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        call = getattr(record, "drape_call", None) or context.current()
        ids = f" [{call.request_id[:12]} {call.trace_id[:8]}]" if call else ""
        extras = {
            k: safe(v)
            for k, v in record.__dict__.items()
            if k not in _STD_ATTRS and not k.startswith("_")
        }
        tail = " " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else ""
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname[0]}{ids} {record.name}: {record.getMessage()}{tail}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
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
