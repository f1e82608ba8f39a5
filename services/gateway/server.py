"""Running the gateway: ``drape serve gateway`` (uvicorn, until SIGTERM) and an in-thread
server for ``make serve`` and the tests.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets requests in flight finish
for up to DRAPE_GRACE_PERIOD_SECONDS (open progress streams are then cut), runs the
application's shutdown (the gRPC channel closes) and exits 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from typing import Any

import uvicorn

from services.common.errors import ConfigError
from services.common.logs import configure_logging

log = logging.getLogger("drape.gateway")

# Connections served at once (uvicorn answers 503 beyond): each holds at most one body of
# DRAPE_GATEWAY_MAX_UPLOAD_BYTES, so this bounds the gateway's memory for uploads.
MAX_CONNECTIONS = 64
KEEP_ALIVE_S = 5


def split_address(address: str) -> tuple[str, int]:
    """``("::", 8080)`` for ``"[::]:8080"``, ``("0.0.0.0", 8080)`` for ``"0.0.0.0:8080"``."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def bind(address: str) -> socket.socket:
    """A listening socket on ``address`` (port 0: any free port).

    Raises:
        ConfigError: naming DRAPE_GATEWAY_ADDRESS when it cannot be bound.
    """
    host, port = split_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            "DRAPE_GATEWAY_ADDRESS", f"cannot listen on {address!r}: {exc.strerror}"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class _PlainUvicornRecords(logging.Filter):
    """Drops the ANSI-coloured copy of the message that uvicorn attaches to its records
    (``color_message``), which the JSON and text formatters would print as a field."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


def _config(app: Any, settings: Any) -> uvicorn.Config:
    uv_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _PlainUvicornRecords) for f in uv_log.filters):
        uv_log.addFilter(_PlainUvicornRecords())
    return uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,  # the process' own logging (JSON lines)
        access_log=False,  # the gateway logs each request itself, without query strings
        server_header=False,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=int(settings.grace_period_seconds) or 1,
    )


def run_gateway(settings: Any) -> int:
    """Serve the gateway on DRAPE_GATEWAY_ADDRESS until SIGTERM/SIGINT.

    Returns:
        The exit status: 0 after a clean shutdown, 1 when the application failed to start.

    Raises:
        ConfigError: an address that cannot be bound, a bad tokens file.
    """
    from services.gateway.app import create_app

    configure_logging(settings.log_level, settings.log_format)
    log.info("settings", extra={"settings": settings.redacted()})
    if not settings.auth_tokens_file:
        log.warning(
            "gateway without authentication (DRAPE_AUTH_TOKENS_FILE empty): any caller that "
            "reaches the port is served"
        )
    log.warning(
        "the gateway serves plain HTTP: put it behind a proxy or ingress that terminates TLS "
        "before photos and tokens cross a network"
    )
    app = create_app(settings)
    sock = bind(settings.gateway_address)
    host, port = sock.getsockname()[:2]
    log.info(
        "gateway listening",
        extra={"address": f"{host}:{port}", "upstream": settings.gateway_upstream},
    )
    server = uvicorn.Server(_config(app, settings))
    # uvicorn handles SIGTERM/SIGINT while it serves (graceful shutdown), then restores
    # the handlers it found and raises the signal again; these record it, so that a
    # shutdown asked for by a signal exits 0 instead of being killed by it.
    received: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    server.run(sockets=[sock])
    log.info(
        "gateway stopped",
        extra={"signal": signal.Signals(received[0]).name if received else ""},
    )
    return 0 if server.started else 1


class ThreadedGateway:
    """The gateway served by uvicorn on a thread of this process (``make serve``, tests).

    Args:
        settings: the gateway's settings.
        address: where to listen (default DRAPE_GATEWAY_ADDRESS; port 0: a free port).
        channel: a gRPC channel to the services (default: one to DRAPE_GATEWAY_UPSTREAM).
    """

    def __init__(self, settings: Any, address: str | None = None, channel: Any = None) -> None:
        from services.gateway.app import create_app

        self.app = create_app(settings, channel)
        self.sock = bind(address or settings.gateway_address)
        self.host, self.port = self.sock.getsockname()[:2]
        self.server = uvicorn.Server(_config(self.app, settings))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="drape-gateway"
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ThreadedGateway:
        """Start serving; returns once uvicorn accepts connections.

        Raises:
            RuntimeError: when it did not start within ``timeout`` seconds.
        """
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop as on SIGTERM (requests in flight finish first) and wait."""
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
