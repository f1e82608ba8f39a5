"""Liveness apart from readiness, as the Kubernetes probes in deploy/k8s use them.

gRPC servers: the ``liveness`` health service stays SERVING while a server loads and while it
drains (a liveness probe must not kill a busy pod); ``""`` and every hosted service follow load
and drain. The catalog adapter: ``/healthz`` and ``/readyz`` on its metrics port.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.catalog_adapter.health import AdapterHealth, HealthServer
from services.catalog_adapter.main import run_adapter
from services.common.config import load_settings
from services.common.errors import ConfigError
from services.common.metrics import Metrics
from services.common.server import LIVENESS_SERVICE

from helpers import PROBE_SERVICE, ProbeApp

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def status(channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_liveness_stays_serving_while_loading_and_draining(make_server):
    gate = threading.Event()
    server, channel = make_server(ProbeApp(gate=gate), wait_ready=False)
    # Loading: unready, alive.
    assert status(channel, "") == NOT_SERVING
    assert status(channel, PROBE_SERVICE) == NOT_SERVING
    assert status(channel, LIVENESS_SERVICE) == SERVING
    gate.set()
    assert server.wait_ready(10)
    assert status(channel, "") == SERVING
    assert status(channel, PROBE_SERVICE) == SERVING
    assert status(channel, LIVENESS_SERVICE) == SERVING
    # SIGTERM's drain: during the drain delay (the endpoint-removal window) the server is
    # unready and still alive.
    drainer = threading.Thread(target=server.drain, kwargs={"grace": 1, "delay": 2.0})
    drainer.start()
    wait_until(lambda: status(channel, "") == NOT_SERVING, "readiness to drop")
    assert status(channel, PROBE_SERVICE) == NOT_SERVING
    assert status(channel, LIVENESS_SERVICE) == SERVING
    # A late end of loading cannot make a draining server ready again.
    server._set_health(SERVING)
    assert status(channel, "") == NOT_SERVING
    assert status(channel, PROBE_SERVICE) == NOT_SERVING
    assert status(channel, LIVENESS_SERVICE) == SERVING
    drainer.join(10)


def test_liveness_fails_when_start_up_failed(make_server):
    server, channel = make_server(ProbeApp(fail_load=True), wait_ready=False)
    assert not server.wait_ready(10)
    assert status(channel, LIVENESS_SERVICE) == NOT_SERVING
    assert status(channel, "") == NOT_SERVING


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_adapter_health_endpoints_follow_start_up_and_drain():
    metrics = Metrics(service="catalog_adapter")
    metrics.requests.labels("s", "m", "OK", "none").inc()
    health = AdapterHealth()
    server = HealthServer(metrics, health, 0, "127.0.0.1")
    try:
        assert get(server.port, "/healthz") == (200, "ok\n")
        assert get(server.port, "/readyz") == (503, "loading\n")
        stopping = threading.Event()
        health.started(stopping)
        assert get(server.port, "/readyz") == (200, "ok\n")
        code, text = get(server.port, "/metrics")
        assert code == 200 and 'drape_build_info{service="catalog_adapter"' in text
        assert "drape_rpc_requests_total" in text
        assert get(server.port, "/elsewhere")[0] == 404
        stopping.set()
        assert get(server.port, "/readyz") == (503, "draining\n")
        assert get(server.port, "/healthz") == (200, "ok\n")
    finally:
        server.close()
        server.close()  # idempotent


def test_adapter_health_port_in_use_is_a_config_error():
    metrics = Metrics(service="catalog_adapter")
    first = HealthServer(metrics, AdapterHealth(), 0, "127.0.0.1")
    try:
        with pytest.raises(ConfigError) as ei:
            HealthServer(metrics, AdapterHealth(), first.port, "127.0.0.1")
        assert "DRAPE_METRICS_PORT" in str(ei.value)
    finally:
        first.close()


def test_adapter_start_up_failure_frees_the_health_port(tmp_path):
    """run_adapter serves /healthz before building its jobs, and closes it when that fails."""
    probe = HealthServer(Metrics(), AdapterHealth(), 0, "127.0.0.1")
    port = probe.port
    probe.close()
    settings = load_settings(
        env={},
        metrics_port=port,
        metrics_address="127.0.0.1",
        catalog_asset_store=f"file://{tmp_path / 'assets'}",
        catalog_rosters_file=str(tmp_path / "missing-rosters.toml"),
        log_format="text",
    )
    with pytest.raises(ConfigError) as ei:
        run_adapter(settings, bootstrap="127.0.0.1:1")
    assert "DRAPE_CATALOG_ROSTERS_FILE" in str(ei.value)
    again = HealthServer(Metrics(), AdapterHealth(), port, "127.0.0.1")  # port is free again
    again.close()


@pytest.mark.kafka
def test_adapter_process_is_live_then_ready_then_stops(kafka_broker, tmp_path):
    from services.catalog_adapter.harness import AdapterProcess, create_topics, small_roster

    create_topics(kafka_broker.bootstrap)
    roster = small_roster(tmp_path / "roster")
    adapter = AdapterProcess(
        kafka_broker.bootstrap,
        tmp_path / "store",
        {"DRAPE_CATALOG_ROSTERS_FILE": str(roster)},
        tmp_path / "adapter.log",
    ).start()
    try:
        seen: list[tuple[int, str]] = []

        def ready() -> bool:
            try:
                live = get(adapter.metrics_port, "/healthz")
            except OSError:
                return False  # not listening yet
            assert live == (200, "ok\n"), adapter.log_tail()
            seen.append(get(adapter.metrics_port, "/readyz"))
            return seen[-1][0] == 200

        wait_until(ready, "the adapter to be ready", timeout=120)
        # Every answer before ready said why it was not.
        assert all(s == (503, "loading\n") for s in seen[:-1]), seen
        assert adapter.terminate(40) == 0, adapter.log_tail()
    finally:
        if adapter.proc.poll() is None:
            adapter.kill()
