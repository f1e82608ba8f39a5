"""HTTP health endpoints of the catalog adapter, served with ``/metrics`` on its metrics port.

The adapter is a Kafka consumer, not a gRPC server, so Kubernetes probes it over HTTP:

- ``/healthz`` (liveness): 200 while the process runs, also while it warms up or drains;
  a probe that fails here gets the pod restarted, which must not happen to a pod that is
  merely busy starting or finishing its jobs.
- ``/readyz`` (readiness): 200 once the asset store, rosters and steps are built and warmed
  and the consumer is about to join the group; 503 ``loading`` before that and 503
  ``draining`` once SIGTERM/SIGINT was received (the rollout waits for a ready pod before it
  stops the next old one).
- ``/metrics``: the Prometheus exposition of the adapter's registry, as before.

Any other path answers 404. The server starts before the slow warm-up, so probes see a live,
unready pod instead of a refused connection.
"""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from services.common.errors import ConfigError
from services.common.metrics import Metrics

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"


class AdapterHealth:
    """The adapter's liveness and readiness, as the HTTP endpoints report them."""

    def __init__(self) -> None:
        self._started = threading.Event()
        self._stopping: threading.Event | None = None

    def started(self, stopping: threading.Event) -> None:
        """Mark start-up done; ``stopping`` is the event set when the adapter drains."""
        self._stopping = stopping
        self._started.set()

    def live(self) -> tuple[bool, str]:
        """``(ok, word)`` of the liveness signal: the process answers, so it is alive."""
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """``(ok, word)`` of the readiness signal: ``loading``, ``draining`` or ``ok``."""
        if not self._started.is_set():
            return False, "loading"
        if self._stopping is not None and self._stopping.is_set():
            return False, "draining"
        return True, "ok"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - probes every few seconds: no log
        pass


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on one port, on a daemon thread.

    Args:
        metrics: whose registry ``/metrics`` exposes.
        health: the signals the probe paths report.
        port: port to bind (0: any free one).
        address: address to bind; an IPv6 literal binds IPv6.

    Raises:
        ConfigError: naming ``DRAPE_METRICS_PORT`` when the port cannot be bound.
    """

    def __init__(self, metrics: Metrics, health: AdapterHealth, port: int, address: str) -> None:
        self.health = health
        self._metrics_app = make_wsgi_app(metrics.registry)

        class Server(_Server):
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

        try:
            self._httpd = make_server(
                address, port, self._app, server_class=Server, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise ConfigError(
                "DRAPE_METRICS_PORT",
                f"cannot serve metrics and health on {address}:{port}: {exc.strerror or exc}",
            ) from None
        self.port = int(self._httpd.server_port)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="drape-health-http", daemon=True
        )
        self._thread.start()
        self._closed = threading.Lock()

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in (LIVENESS_PATH, READINESS_PATH):
            ok, word = (self.health.live if path == LIVENESS_PATH else self.health.ready)()
            status = "200 OK" if ok else "503 Service Unavailable"
            body = f"{word}\n".encode()
            start_response(
                status,
                [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
            )
            return [body]
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        body = b"not found\n"
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [body]

    def close(self) -> None:
        """Stop serving (idempotent)."""
        if self._closed.acquire(blocking=False):
            self._httpd.shutdown()
            self._httpd.server_close()


def start_health_server(metrics: Metrics, health: AdapterHealth, settings) -> HealthServer | None:
    """The adapter's HTTP server on ``DRAPE_METRICS_PORT``; None when that is -1 (off)."""
    if settings.metrics_port < 0:
        return None
    return HealthServer(metrics, health, settings.metrics_port, settings.metrics_address)
