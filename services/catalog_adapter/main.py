"""Process entry of the catalog adapter: ``drape catalog run`` / ``python -m
services.catalog_adapter``.

Builds the asset store, rosters and steps from the settings, warms the still step on every
roster photo (so the first product is not slow and a bad roster stops start-up), serves
``/metrics``, then consumes until SIGTERM/SIGINT and drains. After a signal the process
ends within ``DRAPE_GRACE_PERIOD_SECONDS``: once the orderly shutdown is done it exits at
once (``os._exit``, skipping the interpreter's slow teardown), and a backstop timer ends it
``BACKSTOP_SLACK`` after the grace period if a shutdown step hangs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading

from services.catalog_adapter.fetch import FetchPolicy
from services.catalog_adapter.health import AdapterHealth, start_health_server
from services.catalog_adapter.jobs import JobRunner
from services.catalog_adapter.roster import builtin_rosters, load_rosters
from services.catalog_adapter.runners import (
    ReferenceReader,
    load_clip_runner,
    make_still_runner,
)
from services.catalog_adapter.store import open_store, s3_client_from_settings
from services.common.config import load_settings
from services.common.errors import ConfigError
from services.common.images import ImageLimits
from services.common.logs import configure_logging
from services.common.metrics import Metrics

log = logging.getLogger("drape.catalog")
BACKSTOP_SLACK = 0.5  # seconds past the grace period before a hung shutdown is cut short


def build_jobs(settings) -> JobRunner:
    """The job runner described by ``settings`` (store, rosters, still and clip steps),
    warmed up.

    Raises:
        ConfigError: naming the setting when the store, a roster or a step is unusable.
    """
    try:
        store = open_store(settings.catalog_asset_store, settings)
    except (ValueError, OSError) as exc:
        raise ConfigError("DRAPE_CATALOG_ASSET_STORE", str(exc)) from None
    s3 = s3_client_from_settings(settings)
    try:
        policy = FetchPolicy.from_settings(settings)
    except ValueError as exc:
        env, _, message = str(exc).partition(": ")
        raise ConfigError(env, message) from None
    # Events' references are fetched under the policy; the operator's rosters are trusted.
    reader = ReferenceReader(settings.max_image_bytes, s3=s3, policy=policy)
    roster_reader = ReferenceReader(settings.max_image_bytes, s3=s3)
    limits = ImageLimits.from_settings(settings)
    if settings.catalog_rosters_file:
        rosters = load_rosters(settings.catalog_rosters_file, roster_reader, limits)
    else:
        rosters = builtin_rosters()
    stills = make_still_runner(settings)
    stills.warm(rosters.all_models())
    clips = load_clip_runner(settings.catalog_clip_runner, settings)
    return JobRunner(store, rosters, stills, clips, reader)


def _flush_logs() -> None:
    for h in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            h.flush()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _arm_backstop(grace: float) -> None:
    """End the process ``BACKSTOP_SLACK`` after the grace period even if an orderly shutdown
    step hangs (offsets of finished work are committed as it goes; nothing else is)."""

    def fire() -> None:
        log.error("shutdown overran DRAPE_GRACE_PERIOD_SECONDS; exiting now")
        _flush_logs()
        os._exit(1)

    timer = threading.Timer(grace + BACKSTOP_SLACK, fire)
    timer.daemon = True
    timer.start()


def run_adapter(settings=None, bootstrap: str | None = None) -> int:
    """Run one adapter process until SIGTERM/SIGINT; returns the exit status."""
    from services.catalog_adapter.adapter import CatalogAdapter

    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    log.info("settings", extra={"settings": settings.redacted()})
    metrics = Metrics(service="catalog_adapter", variants=settings.metrics_variants)
    # /metrics, /healthz, /readyz: up before the warm-up, so probes see live but not ready.
    health = AdapterHealth()
    http = start_health_server(metrics, health, settings)
    if http is not None:
        log.info("metrics", extra={"metrics_port": http.port})
    try:
        jobs = build_jobs(settings)
    except BaseException:
        if http is not None:
            http.close()
        raise
    adapter = CatalogAdapter(settings, jobs, metrics, bootstrap=bootstrap)
    health.started(adapter.stop_event)

    signalled = []

    def on_signal(signum, _frame):
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        if not adapter.stop_event.is_set():
            signalled.append(signum)
            _arm_backstop(settings.grace_period_seconds)
        adapter.stop_event.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    try:
        code = adapter.run()
    finally:
        if http is not None:
            http.close()
        metrics.close()
        close = getattr(jobs.stills, "close", None)
        if close:
            close()
    if signalled:
        # Everything is handed over: done work committed, the group left, the producer
        # flushed. The interpreter's own teardown (the try-on libraries' C++ objects) takes
        # seconds, and an abandoned attempt's thread cannot be joined: end the process now,
        # within the grace period.
        _flush_logs()
        os._exit(code)
    return code
