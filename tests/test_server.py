"""The shared bootstrap and interceptor on a real server: health lifecycle, reflection,
concurrency limit, error mapping, deadlines, metrics and logs."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from drape.common.v1 import common_pb2, media_service_pb2, media_service_pb2_grpc
from services.common.logs import JsonFormatter

from helpers import PROBE_SERVICE, ProbeApp, call
from helpers import error_details as details


def health_status(channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_not_serving_until_loaded_then_serving(make_server):
    gate = threading.Event()
    server, channel = make_server(ProbeApp(gate=gate), wait_ready=False)
    assert health_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert health_status(channel, PROBE_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    gate.set()
    assert server.wait_ready(10)
    assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
    assert health_status(channel, PROBE_SERVICE) == health_pb2.HealthCheckResponse.SERVING
    drainer = threading.Thread(target=server.drain, kwargs={"grace": 1, "delay": 1.5})
    drainer.start()
    time.sleep(0.3)
    # During the drain delay the server still answers: health says NOT_SERVING so load
    # balancers stop routing here, and new work is turned away with a reason.
    assert health_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert health_status(channel, PROBE_SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as ei:
        call(channel, "Echo", b"late", timeout=5)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert details(ei.value)[0] == "SERVER_DRAINING"
    drainer.join()


def test_failed_load_keeps_not_serving(make_server):
    server, channel = make_server(ProbeApp(fail_load=True), wait_ready=False)
    assert not server.wait_ready(10)
    assert "weights.safetensors" in str(server.load_error)
    assert health_status(channel) == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_services(make_server):
    _server, channel = make_server(ProbeApp())
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {PROBE_SERVICE, "drape.common.v1.MediaService", "grpc.health.v1.Health"} <= names


def test_concurrency_limit_answers_resource_exhausted_at_once(make_server):
    _server, channel = make_server(ProbeApp(), max_concurrent_rpcs=2)
    results: list = []

    def slow():
        results.append(call(channel, "Sleep", b"1.5", timeout=10))

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.4)  # both admitted and sleeping
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        call(channel, "Echo", b"x", timeout=10)
    refused_after = time.monotonic() - t0
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(ei.value)[0] == "CONCURRENCY_LIMIT"
    assert refused_after < 1.0  # refused, not queued behind the 1.5 s calls
    # Health checks are never refused for capacity.
    assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
    for t in threads:
        t.join()
    assert results == [b"slept 1.50", b"slept 1.50"]
    assert call(channel, "Echo", b"after", timeout=5) == b"after"  # slots were released


def test_internal_error_is_generic_and_logged_with_trace_id(make_server, caplog):
    _server, channel = make_server(ProbeApp())
    with caplog.at_level(logging.ERROR, logger="drape.rpc"), pytest.raises(grpc.RpcError) as ei:
        call(channel, "Boom", b"", timeout=5)
    err = ei.value
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in err.details()  # never leak internals to the caller
    assert details(err)[0] == "INTERNAL_ERROR"
    trace = dict(err.trailing_metadata())["x-drape-trace-id"]
    assert trace in err.details()
    logged = [JsonFormatter().format(r) for r in caplog.records]
    assert any(trace in line and "hunter2" in line for line in logged)  # the operator sees it


def test_domain_error_maps_to_invalid_argument_with_field(make_server):
    _server, channel = make_server(ProbeApp())
    with pytest.raises(grpc.RpcError) as ei:
        call(channel, "Invalid", b"", timeout=5)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert details(ei.value) == ("GARMENT_NOT_FOUND", "garments[0].flat_lay")


def test_deadline_is_honoured_on_the_server(make_server):
    import helpers

    server, channel = make_server(ProbeApp(), max_concurrent_rpcs=1)
    helpers.EVENTS.clear()
    with pytest.raises(grpc.RpcError) as ei:
        call(channel, "Sleep", b"5", timeout=0.3)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The handler saw its caller's deadline pass and stopped, instead of sleeping 5 s ...
    helpers.wait_for_event()
    assert helpers.EVENTS and helpers.EVENTS[0][0] == "sleep-stopped"
    assert helpers.EVENTS[0][1] < 1.0
    # ... and its concurrency slot (the only one) is free again.
    time.sleep(0.1)
    assert server.limiter.active == 0
    assert call(channel, "Echo", b"next", timeout=5) == b"next"
    # A call that arrives with its deadline already spent does not start.
    with pytest.raises(grpc.RpcError) as ei:
        call(channel, "Sleep", b"1", timeout=0.0001)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_cancel_token_stops_pipeline_code_at_the_deadline(make_server):
    import helpers

    _server, channel = make_server(ProbeApp())
    helpers.EVENTS.clear()
    with pytest.raises(grpc.RpcError) as ei:
        call(channel, "SleepChecked", b"5", timeout=0.3)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    helpers.wait_for_event()
    assert helpers.EVENTS[0][0] == "checked-stopped" and helpers.EVENTS[0][1] < 0.6


def test_handler_set_code_then_raise_is_internal_and_generic(make_server):
    _server, channel = make_server(ProbeApp())
    with pytest.raises(grpc.RpcError) as ei:
        call(channel, "SetCodeThenRaise", b"", timeout=5)
    assert ei.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in ei.value.details()
    assert details(ei.value)[0] == "INTERNAL_ERROR"


def test_progress_streams_have_their_own_limit(make_server):
    server, channel = make_server(ProbeApp(), max_concurrent_rpcs=1, max_watch_streams=1)
    watch = channel.unary_stream(f"/{PROBE_SERVICE}/WatchCount")
    first = watch(b"100", timeout=30)
    assert next(first) == b"0"  # open and streaming
    # The open stream does not take the one slot for real work ...
    assert call(channel, "Echo", b"work", timeout=5) == b"work"
    # ... but a second stream is over the stream limit.
    with pytest.raises(grpc.RpcError) as ei:
        list(watch(b"3", timeout=5))
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details(ei.value)[0] == "CONCURRENCY_LIMIT"
    first.cancel()  # the client goes away: the slot comes back
    deadline = time.monotonic() + 5
    while server.interceptor.watch_limiter.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(watch(b"3", timeout=5)) == [b"0", b"1", b"2"]


def test_trace_id_from_traceparent_and_request_id_checks(make_server):
    _server, channel = make_server()
    stub = media_service_pb2_grpc.MediaServiceStub(channel)
    from samples import jpeg

    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    resp = stub.InspectImage(
        media_service_pb2.InspectImageRequest(image=common_pb2.Image(data=jpeg())),
        metadata=[("traceparent", f"00-{trace}-00f067aa0ba902b7-01")],
        timeout=5,
    )
    assert resp.meta.trace_id == trace and len(resp.meta.request_id) == 32
    for bad, reason in [("has space", "INVALID_REQUEST_ID"), ("x" * 200, "INVALID_REQUEST_ID")]:
        with pytest.raises(grpc.RpcError) as ei:
            stub.InspectImage(media_service_pb2.InspectImageRequest(request_id=bad), timeout=5)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT and details(ei.value) == (
            reason,
            "request_id",
        )
    with pytest.raises(grpc.RpcError) as ei:
        stub.InspectImage(
            media_service_pb2.InspectImageRequest(
                experiment=common_pb2.Experiment(variant="Robert'); DROP")
            ),
            timeout=5,
        )
    assert details(ei.value) == ("INVALID_EXPERIMENT_TAG", "experiment.variant")


def scrape(server) -> dict[str, float]:
    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_metrics_endpoint_counters_and_histograms_move(make_server):
    server, channel = make_server(ProbeApp(), metrics_variants=("treatment",))
    stub = media_service_pb2_grpc.MediaServiceStub(channel)
    from samples import jpeg

    labels = 'grpc_code="OK",grpc_method="InspectImage",grpc_service="drape.common.v1.MediaService"'
    before = scrape(server)
    exp = common_pb2.Experiment(experiment_id="ab1", variant="treatment")
    for _ in range(3):
        stub.InspectImage(
            media_service_pb2.InspectImageRequest(
                image=common_pb2.Image(data=jpeg()), experiment=exp
            ),
            timeout=5,
        )
    stub.InspectImage(
        media_service_pb2.InspectImageRequest(
            image=common_pb2.Image(data=jpeg()),
            experiment=common_pb2.Experiment(variant="unlisted-arm"),
        ),
        timeout=5,
    )
    with pytest.raises(grpc.RpcError):
        stub.InspectImage(
            media_service_pb2.InspectImageRequest(image=common_pb2.Image(data=b"")), timeout=5
        )
    after = scrape(server)
    assert (
        after[f'drape_rpc_requests_total{{{labels},variant="treatment"}}']
        - before.get(f'drape_rpc_requests_total{{{labels},variant="treatment"}}', 0)
        == 3
    )
    assert (
        after[f'drape_rpc_requests_total{{{labels},variant="other"}}'] == 1
    )  # bounded cardinality
    err_key = 'drape_rpc_errors_total{grpc_code="INVALID_ARGUMENT",grpc_method="InspectImage",grpc_service="drape.common.v1.MediaService",reason="IMAGE_EMPTY"}'
    assert after[err_key] == 1
    count_key = 'drape_rpc_duration_seconds_count{grpc_method="InspectImage",grpc_service="drape.common.v1.MediaService"}'
    assert after[count_key] - before.get(count_key, 0) == 5
    assert (
        'drape_rpc_duration_seconds_bucket{grpc_method="InspectImage",grpc_service="drape.common.v1.MediaService",le="600.0"}'
        in after
    )
    assert (
        'drape_rpc_duration_seconds_bucket{grpc_method="InspectImage",grpc_service="drape.common.v1.MediaService",le="0.005"}'
        in after
    )
    assert (
        after[
            'drape_rpc_in_flight{grpc_method="InspectImage",grpc_service="drape.common.v1.MediaService"}'
        ]
        == 0
    )
    # Per-stage helper: load and warm-up of each app were timed.
    assert after['drape_stage_duration_seconds_count{backend="probe",stage="load"}'] == 1


def test_logs_are_json_with_ids_and_never_image_bytes(make_server):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("drape")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        _server, channel = make_server()
        stub = media_service_pb2_grpc.MediaServiceStub(channel)
        marker = b"SHOPPERPHOTO" * 50
        with pytest.raises(grpc.RpcError):
            stub.InspectImage(
                media_service_pb2.InspectImageRequest(
                    request_id="log-test-1", image=common_pb2.Image(data=marker)
                ),
                timeout=5,
            )
        logging.getLogger("drape.test").info("payload", extra={"image": marker})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    rpc_lines = [ln for ln in lines if ln.get("msg") == "rpc finished"]
    assert rpc_lines and rpc_lines[0]["request_id"] == "log-test-1"
    assert (
        rpc_lines[0]["code"] == "INVALID_ARGUMENT"
        and rpc_lines[0]["reason"] == "IMAGE_UNRECOGNIZED"
    )
    assert len(rpc_lines[0]["trace_id"]) == 32
    assert "SHOPPERPHOTO" not in stream.getvalue()
    assert lines[-1]["image"] == f"<{len(marker)} bytes>"
