"""Server bootstrap shared by every service: ``create_server(address) -> (server, port)``.

A :class:`DrapeServer` carries the standard ``grpc.health.v1`` health service (NOT_SERVING
until every app has loaded and warmed up, NOT_SERVING again while draining), server
reflection, the MediaService, raised message-size limits, the concurrency-limiting and
error-mapping interceptor, and a Prometheus endpoint. :func:`serve` adds the process
lifecycle: settings printed once, SIGTERM → drain → exit.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import budget, security
from services.common.config import Settings, load_settings
from services.common.errors import ConfigError
from services.common.interceptors import ConcurrencyLimiter, DrapeInterceptor
from services.common.logs import configure_logging
from services.common.metrics import Metrics

log = logging.getLogger("drape.server")

# grpc.health.v1 service name of the liveness signal: SERVING for as long as the process runs,
# also while it loads or drains (a Kubernetes livenessProbe asks for it, so a loading or
# draining pod is unready, not killed). "" and every hosted service follow load and drain
# (the readiness signal). NOT_SERVING only when start-up failed.
LIVENESS_SERVICE = "liveness"


class ServiceApp:
    """One service's part of a server: its servicers and its model lifecycle.

    Subclasses override :meth:`register` (add servicers, return their full service names),
    and :meth:`load` / :meth:`warmup` for heavy start-up work, which runs after the port is
    bound, so health probes see NOT_SERVING instead of connection refused.
    """

    name = "app"

    def register(self, server: grpc.Server, ctx: DrapeServer) -> list[str]:
        """Add servicers to ``server``; return their full names (``pkg.Service``)."""
        raise NotImplementedError

    def load(self) -> None:
        """Load models (once). Raise to keep the server NOT_SERVING."""

    def warmup(self) -> None:
        """Run one representative request so the first real one is not slow."""

    def close(self) -> None:
        """Release resources after the server stopped."""


class DrapeServer:
    """A gRPC server with Drape's lifecycle. Build it with :func:`create_server`."""

    def __init__(
        self,
        grpc_server: grpc.Server,
        apps: Sequence[ServiceApp],
        settings: Settings,
        metrics: Metrics,
        limiter: ConcurrencyLimiter,
        draining: threading.Event,
    ) -> None:
        self.grpc = grpc_server
        self.apps = list(apps)
        self.settings = settings
        self.metrics = metrics
        self.limiter = limiter
        self.draining = draining
        self.health = health.HealthServicer(experimental_non_blocking=True)
        self.service_names: list[str] = []
        self.metrics_port: int | None = None
        self.ready = threading.Event()
        self.load_error: BaseException | None = None
        self._loader: threading.Thread | None = None
        self._stopped = threading.Event()
        self._drain_lock = threading.Lock()
        self._health_lock = threading.Lock()
        self._closing = False

    # ------------------------------------------------------------------ lifecycle

    def _set_health(self, status: int) -> None:
        """Set the readiness signal ("" and every hosted service); once draining, it stays
        NOT_SERVING (a late end of loading must not flip it back)."""
        with self._health_lock:
            if status == health_pb2.HealthCheckResponse.SERVING and self.draining.is_set():
                return
            for name in ["", *self.service_names]:
                self.health.set(name, status)

    def start(self) -> None:
        """Start serving (health NOT_SERVING), then load and warm up every app in the
        background; health flips to SERVING when all are done."""
        if self.settings.metrics_port >= 0 and self.metrics_port is None:
            try:
                self.metrics_port = self.metrics.serve(
                    self.settings.metrics_port, self.settings.metrics_address
                )
            except OSError as exc:
                raise ConfigError(
                    "DRAPE_METRICS_PORT",
                    f"cannot serve metrics on {self.settings.metrics_address}:"
                    f"{self.settings.metrics_port}: {exc.strerror or exc}",
                ) from None
        self.grpc.start()
        if getattr(self, "health_listener", None) is not None:
            self.health_listener.start()  # plaintext health for probes (DRAPE_HEALTH_PORT)
        self._loader = threading.Thread(target=self._load, name="drape-load", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        t0 = time.perf_counter()
        try:
            for app in self.apps:
                with self.metrics.stage("load", app.name):
                    app.load()
                with self.metrics.stage("warmup", app.name):
                    app.warmup()
        except BaseException as exc:  # noqa: BLE001 - reported, health stays NOT_SERVING
            self.load_error = exc
            self.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
            log.error("start-up failed; health stays NOT_SERVING: %s", exc, exc_info=exc)
            return
        if not self.draining.is_set():
            self._set_health(health_pb2.HealthCheckResponse.SERVING)
            self.ready.set()
            log.info(
                "serving",
                extra={
                    "load_seconds": round(time.perf_counter() - t0, 3),
                    "services": self.service_names,
                },
            )

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until SERVING; False on timeout or when loading failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if self.load_error is not None:
                return False
            if deadline is not None and time.monotonic() > deadline:
                return False
        return True

    def drain(self, grace: float | None = None, delay: float = 0.0) -> threading.Event:
        """Stop accepting calls, let in-flight ones finish within ``grace`` seconds.

        Health turns NOT_SERVING at once and new work is refused with UNAVAILABLE
        (SERVER_DRAINING); for ``delay`` seconds the server still answers (health checks
        see NOT_SERVING, so load balancers stop routing here), then gRPC stops accepting
        connections. Returns an event set once every call has ended (or was cancelled at
        the end of the grace).
        """
        grace = self.settings.grace_period_seconds if grace is None else grace
        self.draining.set()
        self.ready.clear()
        # Every service NOT_SERVING, and stays so; the liveness signal stays SERVING.
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        log.info(
            "draining",
            extra={
                "grace_seconds": grace,
                "delay_seconds": delay,
                "in_flight": self.limiter.active,
            },
        )
        if delay > 0:
            time.sleep(delay)
        done = self.grpc.stop(grace)
        with self._drain_lock:
            first, self._closing = not self._closing, True
        if first:
            threading.Thread(target=self._after_stop, args=(done,), daemon=True).start()
        return done

    def _after_stop(self, done: threading.Event) -> None:
        done.wait()
        if getattr(self, "health_listener", None) is not None:
            self.health_listener.stop(0)
        for app in self.apps:
            try:
                app.close()
            except Exception:  # noqa: BLE001
                log.exception("closing %s failed", app.name)
        self.metrics.close()
        trimmer = getattr(self, "trimmer", None)
        if trimmer is not None:
            trimmer.close()
        self._stopped.set()

    def stop(self, grace: float | None = 0) -> None:
        """Drain with ``grace`` and wait until everything is closed."""
        self.drain(grace).wait()
        self._stopped.wait(5)


def create_server(
    address: str,
    *apps: ServiceApp,
    settings: Settings | None = None,
    metrics: Metrics | None = None,
) -> tuple[DrapeServer, int]:
    """Build a server bound to ``address`` (``"127.0.0.1:0"`` picks a free port).

    Args:
        address: host:port to bind.
        apps: the services to host; the MediaService is always added.
        settings: limits and ports; defaults from the environment.
        metrics: metric families; a fresh registry by default.

    Returns:
        ``(server, port)``: the unstarted :class:`DrapeServer` and the bound port.
    """
    from services.common.media import MediaApp

    settings = settings or load_settings()
    metrics = metrics or Metrics(
        service=apps[0].name if apps else "media", variants=settings.metrics_variants
    )
    limiter = ConcurrencyLimiter(settings.max_concurrent_rpcs)
    draining = threading.Event()
    # Request memory (services.common.budget). gRPC reads a whole message before a handler
    # sees it; the message limit is the largest request these services accept (their
    # images and videos at their limits + 4 MiB, at most DRAPE_MAX_MESSAGE_BYTES). A call
    # takes its concurrency slot on arrival, and only a call holding one has its request
    # read: at most max_concurrent_rpcs requests (+ max_watch_streams of 4 MiB) are read
    # at once, so the worst case is max_concurrent_rpcs x message limit (4 x 64 MiB by
    # default), of which admitted requests hold at most DRAPE_MAX_INFLIGHT_BYTES; calls
    # over the limit are refused without their message being read.
    receive_limit = budget.server_receive_limit([app.name for app in apps], settings)
    if settings.max_inflight_bytes < receive_limit:
        raise ConfigError(
            "DRAPE_MAX_INFLIGHT_BYTES",
            f"{settings.max_inflight_bytes} is below this server's message limit of "
            f"{receive_limit} bytes; its largest requests could never be admitted",
        )
    trimmer = budget.MemoryTrimmer()
    interceptor = DrapeInterceptor(
        metrics,
        limiter,
        draining,
        ConcurrencyLimiter(settings.max_watch_streams),
        budget=budget.ByteBudget(settings.max_inflight_bytes),
        request_limit=lambda deser: budget.method_limit(deser, settings, receive_limit),
        trimmer=trimmer,
    )
    # Threads: the admitted calls, plus room to *refuse* extra calls quickly and to answer
    # health checks while every worker is busy. gRPC's own cap stops unbounded queueing
    # even if someone floods faster than refusals complete; a queued call holds no request
    # (it is read only once a thread runs an admitted call).
    workers = settings.max_concurrent_rpcs + settings.max_watch_streams + 8
    grpc_server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drape-rpc"),
        interceptors=[*security.server_interceptors(settings, metrics), interceptor],
        options=[
            ("grpc.max_receive_message_length", receive_limit),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=workers * 4,
    )
    server = DrapeServer(
        grpc_server, [*apps, MediaApp(settings)], settings, metrics, limiter, draining
    )
    server.interceptor = interceptor
    server.receive_limit = receive_limit
    server.trimmer = trimmer
    for app in server.apps:
        server.service_names.extend(app.register(grpc_server, server))
    health_pb2_grpc.add_HealthServicer_to_server(server.health, grpc_server)
    server.health_listener, server.health_port = security.health_listener(
        settings, server.health, address
    ) or (None, None)
    server._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
    server.health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [
            *server.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        grpc_server,
    )
    try:
        tls = security.server_tls(settings)  # TLS/mTLS from files, re-read on change
        if tls is None:
            port = grpc_server.add_insecure_port(address)
        else:
            port = grpc_server.add_secure_port(address, tls.credentials())
    except RuntimeError as exc:  # grpc raises RuntimeError("Failed to bind ...")
        raise ConfigError("DRAPE_GRPC_ADDRESS", f"cannot listen on {address!r}: {exc}") from None
    if port == 0:
        raise ConfigError("DRAPE_GRPC_ADDRESS", f"cannot listen on {address!r}")
    return server, port


def serve(*apps: ServiceApp, settings: Settings | None = None) -> int:
    """Run a server until SIGTERM/SIGINT; the process entry point of every service.

    Returns the exit status: 0 after a clean drain, 1 when start-up failed.
    """
    settings = settings or load_settings(type(settings) if settings else Settings)
    configure_logging(settings.log_level, settings.log_format)
    log.info("settings", extra={"settings": settings.redacted()})
    for warning in security.startup_warnings(settings):
        log.warning(warning)
    server, port = create_server(settings.grpc_address, *apps, settings=settings)
    stop = threading.Event()

    def on_signal(signum, _frame):
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    log.info(
        "listening",
        extra={"port": port, "metrics_port": server.metrics_port, "services": server.service_names},
    )
    while not stop.wait(0.2):
        if server.load_error is not None:
            server.stop(0)
            return 1
    server.drain(delay=settings.drain_delay_seconds).wait()
    server._stopped.wait(5)
    log.info("stopped")
    return 0


def exit_now(code: int) -> None:
    """End the process at once with ``code`` after flushing logs and stdio.

    After a drain, a handler that ignored cancellation may still run on a worker thread;
    a normal interpreter exit would join it and outlive the grace period.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
