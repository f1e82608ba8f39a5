"""The storefront gateway over real HTTP in front of the real services.

The try-on, animate and experiment services run on an in-process gRPC server (port 0);
the gateway runs in uvicorn on a free loopback port (a thread) and is driven with
``requests`` and, where a test must control the bytes on the wire, a raw socket: the
gallery, a try-on of a real photo, the refusals as RFC 9457 problems, the body limits, a
clip from progress events to the H.264 file and its byte ranges, CORS, bearer tokens,
``drape serve gateway`` and SIGTERM, and schemathesis against the OpenAPI document.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import grpc
import numpy as np
import pytest
import requests
from PIL import Image
from skimage import data

from drape.animate.v1 import animate_service_pb2 as apb
from drape.animate.v1 import animate_service_pb2_grpc as apb_grpc
from drape.common.v1 import common_pb2, operations_pb2
from services.animate.server import AnimateApp
from services.common.config import load_settings
from services.experiments.server import ExperimentsApp
from services.gateway import media
from services.gateway.problems import http_status
from services.gateway.server import ThreadedGateway
from services.tryon.server import TryOnApp

from helpers import serving

ROOT = Path(__file__).resolve().parents[1]
MAX_UPLOAD = 2 * 1024 * 1024
SHOP = "https://shop.example.com"
TOKEN = "storefront-token-0123456789abcdef"
EXPERIMENTS = """\
[[experiment]]
id = "pdp-clip"
[[experiment.variant]]
name = "still"
output = "still"
[[experiment.variant]]
name = "clip"
output = "still+clip"
"""


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


ASTRONAUT = jpeg(data.astronaut())
# A photo with nobody in it: a sky-like vertical gradient over a darker ground.
_ramp = np.linspace(70, 230, 384, dtype=np.uint8)[:, None]
LANDSCAPE = jpeg(np.dstack([np.tile(_ramp, (1, 512))] * 2 + [np.full((384, 512), 240, np.uint8)]))
PROBLEM_KEYS = {"type", "title", "status", "detail", "reason", "request_id"}


def settings_for(tmp: Path, **overrides):
    defs = tmp / "experiments.toml"
    defs.write_text(EXPERIMENTS)
    values = {
        "metrics_port": -1,
        "grpc_address": "127.0.0.1:0",
        "experiments_file": str(defs),
        "experiments_db": f"sqlite:///{tmp / 'experiments.db'}",
        "gateway_max_upload_bytes": MAX_UPLOAD,
        "gateway_cors_origins": (SHOP,),
        "gateway_clip_seconds": 1.0,
        "gateway_clip_fps": 8.0,
        "gateway_clip_max_side": 256,
        **overrides,
    }
    return load_settings(env={}, **values)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(gRPC server, channel, settings) of the real services."""
    settings = settings_for(tmp_path_factory.mktemp("gw"))
    apps = (TryOnApp(settings), AnimateApp(settings), ExperimentsApp(settings))
    with serving(*apps, settings=settings, ready_timeout=180) as (server, channel):
        yield server, channel, settings


@pytest.fixture(scope="module")
def gateway(stack):
    """The started gateway, its gallery registered."""
    _server, channel, settings = stack
    gw = ThreadedGateway(settings, "127.0.0.1:0", channel).start()
    try:
        wait_for(lambda: gw.app.state.gateway.gallery.ready, 120, "the gallery")
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def url(gateway):
    return gateway.url


@pytest.fixture(scope="module")
def garments(url):
    r = requests.get(f"{url}/v1/garments", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["garments"]


@pytest.fixture(scope="module")
def still(url, garments):
    """A try-on still of the astronaut in the gallery's tee (bytes, JPEG)."""
    r = tryon(url, ASTRONAUT, garment_id=garments[0]["id"])
    assert r.status_code == 200, r.text
    return base64.b64decode(r.json()["still"]["data"])


def wait_for(condition, seconds: float, what: str) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``seconds`` (a bound
    against hanging, not a speed assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds} s"
        time.sleep(0.05)


def tryon(url: str, photo: bytes | None, headers: dict | None = None, **fields):
    """POST /v1/tryon as multipart/form-data (text fields as parts without a filename)."""
    files = {"photo": ("photo.jpg", photo, "image/jpeg")} if photo is not None else {}
    for name, value in fields.items():
        if name == "flat_lay":
            files[name] = ("flat_lay.png", value, "image/png")
        else:
            files[name] = (None, value)
    return requests.post(f"{url}/v1/tryon", files=files, headers=headers, timeout=180)


def assert_problem(r: requests.Response, status: int, reason: str, field: str | None = None):
    """``r`` is an RFC 9457 problem with this status, reason and field."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) >= PROBLEM_KEYS, body
    assert body["status"] == status and body["reason"] == reason, body
    assert body["type"] == "urn:drape:problem:" + reason.lower().replace("_", "-")
    assert body["title"] and body["detail"]
    assert body["request_id"] == r.headers["x-request-id"]
    assert body.get("field") == field, body
    return body


def sse_events(response: requests.Response) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a text/event-stream body, in order."""
    events, name, lines = [], None, []
    for raw in response.iter_lines(decode_unicode=True):
        if raw == "":
            if lines:
                events.append((name or "message", json.loads("\n".join(lines))))
            name, lines = None, []
        elif raw.startswith("event:"):
            name = raw[6:].strip()
        elif raw.startswith("data:"):
            lines.append(raw[5:].strip())
    return events


def raw_exchange(url: str, head: bytes, body_chunks=(), timeout: float = 30) -> tuple[int, bytes]:
    """Send ``head`` (request line and headers) and ``body_chunks`` on one connection, then
    read the answer; returns (status, body)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            sock.sendall(chunk)
        answer = b""
        while b"\r\n\r\n" not in answer:
            part = sock.recv(65536)
            assert part, f"connection closed without an answer: {answer!r}"
            answer += part
        head_bytes, _, rest = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head_bytes).group(1))
        while len(rest) < length:
            part = sock.recv(65536)
            if not part:
                break
            rest += part
    return int(head_bytes.split()[1]), rest[:length]


# ----------------------------------------------------------------------------- health


def test_health_readiness_and_openapi(url):
    assert requests.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
    r = requests.get(f"{url}/readyz", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ready"}
    doc = requests.get(f"{url}/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.1")
    import schemathesis
    from jsonschema import Draft202012Validator

    loaded = schemathesis.openapi.from_dict(doc)
    operations = set()
    for result in loaded.get_all_operations():
        op = result.ok()
        operations.add(f"{op.method.upper()} {op.path}")
    assert {"POST /v1/tryon", "POST /v1/clips", "GET /v1/clips/{clip_id}/events"} <= operations
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)  # each is a valid JSON Schema
    assert "securitySchemes" not in doc["components"]  # tokens are off here


def test_readyz_is_503_when_the_services_are_down(stack):
    _server, _channel, settings = stack
    down = load_settings(env={}, gateway_upstream=f"127.0.0.1:{free_port()}")
    gw = ThreadedGateway(down, "127.0.0.1:0").start()
    try:
        assert_problem(requests.get(f"{gw.url}/readyz", timeout=30), 503, "UPSTREAM_NOT_SERVING")
        assert requests.get(f"{gw.url}/healthz", timeout=10).status_code == 200
        assert_problem(
            requests.get(f"{gw.url}/v1/motions", timeout=30), 503, "UPSTREAM_UNAVAILABLE"
        )
    finally:
        gw.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- gallery


def test_gallery_lists_gets_and_serves_packshots(url, garments):
    assert len(garments) == 5
    assert {g["category"] for g in garments} == {"TOP", "DRESS", "BOTTOM"}
    for g in garments:
        assert re.fullmatch(r"[0-9a-f]{64}", g["id"])
        assert g["image_url"] == f"/v1/garments/{g['id']}/image"
        one = requests.get(f"{url}/v1/garments/{g['id']}", timeout=10)
        assert one.status_code == 200 and one.json() == g
        png = requests.get(url + g["image_url"], timeout=10)
        assert png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (512, 512)
    tee = garments[0]
    assert (tee["category"], tee["sleeve"]) == ("TOP", "short")
    assert_problem(
        requests.get(f"{url}/v1/garments/{'0' * 64}", timeout=10), 404, "GARMENT_ID_UNKNOWN", "id"
    )
    assert_problem(
        requests.get(f"{url}/v1/garments/not-an-id/image", timeout=10),
        400,
        "GARMENT_ID_INVALID",
        "id",
    )


# ----------------------------------------------------------------------------- try-on


def test_tryon_dresses_a_real_photo_in_a_gallery_garment(url, garments):
    r = tryon(url, ASTRONAUT, garment_id=garments[0]["id"], headers={"X-Request-Id": "pdp-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["request_id"] == "pdp-1" == r.headers["x-request-id"]
    assert body["still"]["content_type"] == "image/jpeg"
    still = Image.open(io.BytesIO(base64.b64decode(body["still"]["data"])))
    assert still.format == "JPEG" and still.size == (body["width"], body["height"]) == (512, 512)
    assert isinstance(body["warnings"], list)
    # The garment is on the torso; the face above it is the photo's own.
    out = np.asarray(still.convert("RGB"), np.float32)
    src = data.astronaut().astype(np.float32)
    assert np.abs(out[330:480, 150:380] - src[330:480, 150:380]).mean() > 20
    assert np.abs(out[60:180, 180:300] - src[60:180, 180:300]).mean() < 8
    assert r.headers["cache-control"] == "no-store"


def test_tryon_with_a_flat_lay_and_a_category_hint(url, gateway):
    tee = gateway.app.state.gateway.gallery.items[0].png
    r = tryon(url, ASTRONAUT, flat_lay=tee, category="top")
    assert r.status_code == 200, r.text
    assert r.json()["width"] == 512


def test_a_photo_without_a_person_is_refused(url, garments):
    r = tryon(url, LANDSCAPE, garment_id=garments[0]["id"])
    body = assert_problem(r, 422, "NO_PERSON_DETECTED", "photo")
    assert "person" in body["detail"]


def test_bad_forms_get_a_reason(url, garments):
    gid = garments[0]["id"]
    assert_problem(tryon(url, None, garment_id=gid), 400, "FIELD_MISSING", "photo")
    assert_problem(tryon(url, ASTRONAUT), 400, "GARMENT_SOURCE_MISSING", "garment_id")
    assert_problem(
        tryon(url, ASTRONAUT, garment_id=gid, flat_lay=b"x"),
        400,
        "GARMENT_SOURCE_CONFLICT",
        "garment_id",
    )
    assert_problem(
        tryon(url, ASTRONAUT, garment_id=gid, category="top"),
        400,
        "GARMENT_HINT_CONFLICT",
        "category",
    )
    assert_problem(
        tryon(url, ASTRONAUT, flat_lay=b"x", category="hat"),
        400,
        "GARMENT_CATEGORY_INVALID",
        "category",
    )
    assert_problem(tryon(url, ASTRONAUT, garment_id="abc"), 400, "GARMENT_ID_INVALID", "garment_id")
    assert_problem(tryon(url, ASTRONAUT, garment_id="a" * 300), 400, "FIELD_TOO_LONG", "garment_id")
    assert_problem(tryon(url, ASTRONAUT, colour="red"), 400, "FIELD_UNKNOWN", "colour")
    assert_problem(tryon(url, b"not an image", garment_id=gid), 422, "IMAGE_UNRECOGNIZED", "photo")
    two = [("photo", ("a.jpg", ASTRONAUT)), ("photo", ("b.jpg", ASTRONAUT))]
    r = requests.post(f"{url}/v1/tryon", files=two, data={"garment_id": gid}, timeout=30)
    assert_problem(r, 400, "FIELD_DUPLICATE", "photo")
    r = requests.post(f"{url}/v1/tryon", json={"garment_id": gid}, timeout=30)
    assert_problem(r, 415, "CONTENT_TYPE_UNSUPPORTED")
    truncated = b'--XyZ\r\nContent-Disposition: form-data; name="garment_id"\r\n\r\n' + gid.encode()
    r = requests.post(
        f"{url}/v1/tryon",
        data=truncated,
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
        timeout=30,
    )
    assert_problem(r, 400, "FORM_INVALID")


def test_a_declared_oversize_body_is_refused_before_it_is_read(url):
    # Only the head is sent: an answer proves the gateway did not wait for the body.
    head = (
        b"POST /v1/tryon HTTP/1.1\r\nHost: gw\r\n"
        b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
        + f"Content-Length: {MAX_UPLOAD + 1}\r\n\r\n".encode()
    )
    status, body = raw_exchange(url, head)
    assert status == 413 and json.loads(body)["reason"] == "REQUEST_TOO_LARGE"


def test_a_chunked_body_is_cut_off_at_the_limit(url):
    head = (
        b"POST /v1/tryon HTTP/1.1\r\nHost: gw\r\n"
        b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    preamble = b'--XyZ\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'
    filler = MAX_UPLOAD + 1 - len(preamble)
    chunks = [preamble] + [b"\xff" * 65536] * (filler // 65536) + [b"\xff" * (filler % 65536)]
    # One byte over the limit, and the body never ends: only counting stops the read.
    wire = [b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c]
    status, body = raw_exchange(url, head, wire)
    assert status == 413 and json.loads(body)["reason"] == "REQUEST_TOO_LARGE"


def test_uploads_held_at_once_are_bounded(stack):
    _server, channel, settings = stack
    one = load_settings(env={}, gateway_max_concurrent_calls=1, gateway_max_upload_bytes=MAX_UPLOAD)
    gw = ThreadedGateway(one, "127.0.0.1:0", channel).start()
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            # A body that is still arriving holds the only upload slot...
            slow.sendall(
                b"POST /v1/tryon HTTP/1.1\r\nHost: gw\r\n"
                b"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 5000\r\n\r\n"
                b'--XyZ\r\nContent-Disposition: form-data; name="photo"\r\n\r\n'
            )
            wait_for(lambda: gw.app.state.gateway.uploads == 1, 30, "the slow upload's start")
            # ...so the next is refused before its body is read, with a time to retry.
            r = tryon(gw.url, ASTRONAUT, garment_id="0" * 64)
            assert_problem(r, 429, "CONCURRENCY_LIMIT")
            assert r.headers["retry-after"] == "1"
        wait_for(lambda: gw.app.state.gateway.uploads == 0, 30, "the slot's release")
        assert_problem(tryon(gw.url, None, garment_id="0" * 64), 400, "FIELD_MISSING", "photo")
    finally:
        gw.stop()


# ----------------------------------------------------------------------------- clips


def test_a_clip_from_progress_events_to_the_video(url, still, stack):
    r = requests.post(f"{url}/v1/clips", files={"still": ("still.jpg", still)}, timeout=60)
    assert r.status_code == 202, r.text
    clip = r.json()
    cid = clip["id"]
    assert r.headers["location"] == clip["status_url"] == f"/v1/clips/{cid}"
    assert clip["events_url"] == f"/v1/clips/{cid}/events"
    with requests.get(url + clip["events_url"], stream=True, timeout=120) as ev:
        assert ev.status_code == 200
        assert ev.headers["content-type"].startswith("text/event-stream")
        events = sse_events(ev)
    names = [name for name, _ in events]
    assert names[-1] == "done" and names.count("done") == 1 and "error" not in names
    progress = [d["progress"] for name, d in events if name == "progress"]
    assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] == 1.0
    assert {d["stage"] for name, d in events if name == "progress"} >= {"render", "done"}
    done = events[-1][1]
    assert done["video_url"] == clip["video_url"] and done["poster_url"] == clip["poster_url"]

    status = requests.get(url + clip["status_url"], timeout=30).json()
    assert (status["state"], status["progress"], status["error"]) == ("SUCCEEDED", 1.0, None)

    video = requests.get(url + clip["video_url"], timeout=60)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.headers["accept-ranges"] == "bytes"
    with av.open(io.BytesIO(video.content)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(frames) == 8  # 1 s at 8 fps
    assert max(frames[0].shape[:2]) <= 256 and frames[0].shape[0] == 256  # portrait-square still
    size = len(video.content)

    part = requests.get(url + clip["video_url"], headers={"Range": "bytes=0-99"}, timeout=30)
    assert part.status_code == 206 and part.content == video.content[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{size}"
    tail = requests.get(url + clip["video_url"], headers={"Range": "bytes=-10"}, timeout=30)
    assert tail.status_code == 206 and tail.content == video.content[-10:]
    beyond = requests.get(url + clip["video_url"], headers={"Range": f"bytes={size}-"}, timeout=30)
    assert_problem(beyond, 416, "RANGE_NOT_SATISFIABLE")
    assert beyond.headers["content-range"] == f"bytes */{size}"

    poster = requests.get(url + clip["poster_url"], timeout=30)
    assert poster.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(poster.content)).size == frames[0].shape[1::-1]


def test_a_clip_the_service_refuses_ends_with_an_error_event(url):
    r = requests.post(f"{url}/v1/clips", files={"still": ("s.jpg", LANDSCAPE)}, timeout=60)
    assert r.status_code == 202, r.text  # the person is looked for inside the operation
    clip = r.json()
    with requests.get(url + clip["events_url"], stream=True, timeout=120) as ev:
        events = sse_events(ev)
    name, problem = events[-1]
    assert name == "error" and "done" not in [n for n, _ in events]
    assert set(problem) >= PROBLEM_KEYS
    assert (problem["status"], problem["reason"]) == (422, "NO_PERSON_DETECTED")
    assert_problem(
        requests.get(url + clip["video_url"], timeout=30), 422, "NO_PERSON_DETECTED", "still"
    )
    status = requests.get(url + clip["status_url"], timeout=30).json()
    assert status["state"] == "FAILED" and status["error"]["reason"] == "NO_PERSON_DETECTED"


def test_clip_refusals(url, still):
    unknown = "A" * 24
    for suffix in ("", "/events", "/video", "/poster"):
        assert_problem(
            requests.get(f"{url}/v1/clips/{unknown}{suffix}", timeout=30),
            404,
            "OPERATION_NOT_FOUND",
            "id",
        )
    assert_problem(
        requests.get(f"{url}/v1/clips/bad%20id", timeout=30), 400, "CLIP_ID_INVALID", "id"
    )
    r = requests.post(
        f"{url}/v1/clips",
        files={"still": ("s.jpg", still)},
        data={"motion": "moonwalk"},
        timeout=30,
    )
    assert_problem(r, 422, "MOTION_NOT_FOUND", "motion")
    r = requests.post(f"{url}/v1/clips", files={"motion": (None, "idle-sway-upper")}, timeout=30)
    assert_problem(r, 400, "FIELD_MISSING", "still")


def test_a_running_clip_is_not_ready_and_a_closed_stream_ends_its_watch(url, gateway, still, stack):
    server, channel, _settings = stack
    # A clip long enough to be still running after the events stream is closed.
    animate = apb_grpc.AnimateServiceStub(channel)
    op = animate.StartClip(
        apb.StartClipRequest(
            still=common_pb2.Image(data=still), template_name="idle-sway-upper",
            fps=24, width=512, height=512, duration_seconds=20,
        ),
        timeout=30,
    )  # fmt: skip
    ref = operations_pb2.OperationRef(operation_id=op.id)
    try:
        upstream = gateway.app.state.gateway.upstream
        with requests.get(f"{url}/v1/clips/{op.id}/events", stream=True, timeout=60) as ev:
            lines = ev.iter_lines(decode_unicode=True)
            assert next(lines) == "event: progress"
            assert upstream.open_streams == 1
            assert server.interceptor.watch_limiter.active == 1
            assert_problem(
                requests.get(f"{url}/v1/clips/{op.id}/video", timeout=30), 409, "CLIP_NOT_READY"
            )
        # The client left: the gateway cancels its WatchClip call and its thread ends.
        wait_for(lambda: upstream.open_streams == 0, 30, "the stream's release")
        wait_for(lambda: server.interceptor.watch_limiter.active == 0, 30, "the upstream cancel")
        wait_for(
            lambda: not any(t.name == "drape-gw-watch" for t in threading.enumerate()),
            30,
            "the watch thread's end",
        )
        state = animate.GetClip(ref, timeout=30).operation.state
        assert state in (
            operations_pb2.OPERATION_STATE_QUEUED,
            operations_pb2.OPERATION_STATE_RUNNING,
        )
    finally:
        animate.CancelClip(ref, timeout=30)


def test_motions_and_experiment_assignment(url):
    motions = requests.get(f"{url}/v1/motions", timeout=30).json()["motions"]
    names = {m["name"]: m for m in motions}
    assert names["idle-sway-upper"]["default"] is True
    assert names["idle-sway-upper"]["duration_s"] == 4.0
    assert names["idle-sway-upper"]["framing"] == "UPPER_BODY"
    a = requests.get(
        f"{url}/v1/experiments/pdp-clip/assignment", params={"unit": "s-1"}, timeout=30
    )
    assert a.status_code == 200, a.text
    body = a.json()
    assert body["experiment"] == "pdp-clip" and body["unit"] == "s-1"
    assert body["variant"] in ("still", "clip")
    again = requests.get(f"{url}/v1/experiments/pdp-clip/assignment?unit=s-1", timeout=30)
    assert again.json() == body  # deterministic
    assert_problem(
        requests.get(f"{url}/v1/experiments/pdp-clip/assignment", timeout=30),
        400,
        "FIELD_MISSING",
        "unit",
    )
    assert_problem(
        requests.get(f"{url}/v1/experiments/nope/assignment?unit=s-1", timeout=30),
        404,
        "EXPERIMENT_NOT_FOUND",
        "name",
    )


# ----------------------------------------------------------------------------- CORS


def test_cors_allows_the_storefront_origin_only(url):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = requests.options(f"{url}/v1/tryon", headers={"Origin": SHOP, **preflight}, timeout=10)
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == SHOP
    assert "POST" in ok.headers["access-control-allow-methods"]
    other = requests.options(
        f"{url}/v1/tryon", headers={"Origin": "https://evil.example", **preflight}, timeout=10
    )
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    r = requests.get(f"{url}/v1/motions", headers={"Origin": SHOP}, timeout=30)
    assert r.headers["access-control-allow-origin"] == SHOP
    assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
    r = requests.get(f"{url}/v1/motions", headers={"Origin": "https://evil.example"}, timeout=30)
    assert "access-control-allow-origin" not in r.headers


# ----------------------------------------------------------------------------- auth


def test_bearer_tokens_at_the_gateway_and_forwarded(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text(f"shop:{TOKEN}\n")
    settings = settings_for(tmp_path, auth_tokens_file=str(tokens))
    # The services check the token too: only a forwarded token gets an answer there.
    apps = (TryOnApp(settings), AnimateApp(settings))
    with serving(*apps, settings=settings, ready_timeout=180) as (_server, channel):
        gw = ThreadedGateway(settings, "127.0.0.1:0", channel).start()
        try:
            url = gw.url
            assert_problem(requests.get(f"{url}/v1/motions", timeout=30), 401, "TOKEN_MISSING")
            r = requests.get(
                f"{url}/v1/motions",
                headers={"Authorization": "Bearer wrong-token-0123456789"},
                timeout=30,
            )
            body = assert_problem(r, 401, "TOKEN_INVALID")
            assert r.headers["www-authenticate"].startswith("Bearer")
            assert TOKEN not in json.dumps(body)
            good = {"Authorization": f"Bearer {TOKEN}"}
            assert requests.get(f"{url}/v1/motions", headers=good, timeout=30).status_code == 200
            # With no gateway token of its own, the first caller's token registers the gallery.
            garments = requests.get(f"{url}/v1/garments", headers=good, timeout=120)
            assert garments.status_code == 200 and len(garments.json()["garments"]) == 5
            r = tryon(url, ASTRONAUT, headers=good, garment_id=garments.json()["garments"][0]["id"])
            assert r.status_code == 200, r.text
            for open_path in ("/healthz", "/readyz", "/openapi.json", "/demo/config.json"):
                assert requests.get(url + open_path, timeout=30).status_code == 200, open_path
            doc = requests.get(f"{url}/openapi.json", timeout=30).json()
            assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
            assert requests.get(f"{url}/demo/config.json", timeout=10).json()["auth"] is True
            # Refused before the body: the head alone gets the 401.
            head = (
                b"POST /v1/tryon HTTP/1.1\r\nHost: gw\r\n"
                b"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 1000000\r\n\r\n"
            )
            status, body = raw_exchange(url, head)
            assert status == 401 and json.loads(body)["reason"] == "TOKEN_MISSING"
        finally:
            gw.stop()


# ----------------------------------------------------------------------------- serving


def test_drape_serve_gateway_stops_cleanly_on_sigterm(tmp_path):
    env = {
        **os.environ,
        "DRAPE_GATEWAY_UPSTREAM": f"127.0.0.1:{free_port()}",  # nothing there: still serves
        "DRAPE_LOG_FORMAT": "json",
    }
    env.pop("DRAPE_AUTH_TOKENS_FILE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "gateway", "--address", "127.0.0.1:0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        address = None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("msg") == "gateway listening":
                    address = record["address"]
                    break
            assert time.monotonic() < deadline, "no 'gateway listening' line"
        assert address, "the gateway did not start"
        r = requests.get(f"http://{address}/healthz", timeout=10)
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("code", "reason", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "NO_PERSON_DETECTED", 422),
        (grpc.StatusCode.INVALID_ARGUMENT, "FIELD_TOO_LONG", 400),
        (grpc.StatusCode.INVALID_ARGUMENT, "IMAGE_TOO_LARGE", 413),
        (grpc.StatusCode.INVALID_ARGUMENT, "EXPERIMENT_NOT_FOUND", 404),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "MESSAGE_TOO_LARGE", 413),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "QUEUE_FULL", 429),
        (grpc.StatusCode.NOT_FOUND, "OPERATION_NOT_FOUND", 404),
        (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", 401),
        (grpc.StatusCode.PERMISSION_DENIED, "FORBIDDEN", 403),
        (grpc.StatusCode.FAILED_PRECONDITION, "BACKEND_UNAVAILABLE", 409),
        (grpc.StatusCode.CANCELLED, "CANCELLED", 409),
        (grpc.StatusCode.UNAVAILABLE, "UPSTREAM_UNAVAILABLE", 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", 504),
        (grpc.StatusCode.INTERNAL, "INTERNAL_ERROR", 500),
    ],
)
def test_grpc_status_to_http(code, reason, status):
    assert http_status(code, reason) == status


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=900-5000", (900, 999)),
        ("bytes=1000-", False),
        ("bytes=-0", False),
        ("bytes=5-2", None),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=x-y", None),
    ],
)
def test_range_header(header, expected):
    assert media.parse_range(header, 1000) == expected


def test_clip_size_keeps_the_aspect_ratio_and_is_even():
    portrait = jpeg(np.zeros((601, 400, 3), np.uint8))
    assert media.clip_size(portrait, 256) == (170, 256)
    assert media.clip_size(portrait, 1000) == (400, 600)
    assert media.clip_size(b"not an image", 256) == (0, 0)


# ----------------------------------------------------------------------------- schemathesis


def test_schemathesis_finds_nothing(gateway, tmp_path):
    """schemathesis against the running gateway: every check (no 5xx, statuses, media
    types, headers and bodies as documented, schema-violating requests refused, unknown
    methods answered 405), a few cases per operation; the benchmark runs many more."""
    import logging

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fuzz_gateway

    from services.gateway.openapi import openapi_document

    counter = fuzz_gateway.StatusCounter(
        list(openapi_document(gateway.app.state.gateway.settings)["paths"])
    )
    gw_log = logging.getLogger("drape.gateway")
    level = gw_log.level
    gw_log.setLevel(logging.INFO)
    gw_log.addHandler(counter)
    try:
        rc, output = fuzz_gateway.run_schemathesis(
            gateway.url,
            tmp_path / "report.json",
            max_examples=5,
            max_time=None,
            seed=7,
            extra=["--phases", "coverage,fuzzing"],
            timeout=280,
            garments=[g.garment_id for g in gateway.app.state.gateway.gallery.items],
        )
    finally:
        gw_log.removeHandler(counter)
        gw_log.setLevel(level)
    report = json.loads((tmp_path / "report.json").read_text())
    assert rc == 0 and not report["failures"] and not report["errors"], output[-4000:]
    ops = report["operations"]
    assert ops["tested"] == ops["selected"] == ops["total"] >= 15 and not ops["errored"], ops
    statuses = counter.table()
    assert sum(sum(c.values()) for c in statuses.values()) >= 100
    assert not [s for c in statuses.values() for s in c if int(s) >= 500], statuses
