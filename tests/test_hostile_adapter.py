"""Hostile references and stuck jobs in the catalog adapter (issue 12, items 7-11).

SSRF guards are tested with a resolver stub that answers private addresses while
``socket.create_connection`` fails the test if called: the refusal comes before any
connection. Every server these tests talk to listens on loopback; loopback is allowed only
through ``DRAPE_CATALOG_FETCH_ALLOW_NETWORKS``, as an operator would allow an internal
network. Stuck jobs run in real adapter subprocesses on a real (Tansu) broker.
"""

from __future__ import annotations

import http.server
import io
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from drape.catalog.v1 import events_pb2 as ev_pb
from services.catalog_adapter.fetch import (
    MSG_FETCH,
    MSG_READ,
    MSG_REFUSED,
    MSG_SCHEME,
    FetchPolicy,
    ReferenceReader,
)
from services.catalog_adapter.harness import (
    AdapterProcess,
    TopicReader,
    asset_events,
    create_topics,
    small_roster,
    wait_assigned,
    wait_for,
    wait_for_assets,
)
from services.catalog_adapter.jobs import JobRunner
from services.catalog_adapter.publish import draw_sample_garment, sample_event
from services.catalog_adapter.roster import builtin_rosters
from services.catalog_adapter.store import FileStore
from services.common.config import load_settings
from services.common.context import CancelToken
from services.common.errors import (
    ConfigError,
    DeadlineExceededError,
    InvalidInputError,
    UnavailableError,
)

FIELD = "garments[0].image_uri"
LOOPBACK = "127.0.0.0/8,::1/128"


def policy(**env) -> FetchPolicy:
    return FetchPolicy.from_settings(load_settings(env={k.upper(): v for k, v in env.items()}))


def reader(pol: FetchPolicy | None = None, resolve=None, max_bytes=1 << 20) -> ReferenceReader:
    return ReferenceReader(max_bytes, policy=pol or policy(), resolve=resolve)


@pytest.fixture
def no_connections(monkeypatch):
    """Any connection attempt fails the test."""
    calls = []

    def refuse(address, *a, **k):
        calls.append(address)
        raise AssertionError(f"a connection to {address} was attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return calls


def stub(*addresses):
    seen = []

    def resolve(host, port):
        seen.append((host, port))
        return list(addresses)

    resolve.seen = seen
    return resolve


def refused(read, uri, **kw):
    with pytest.raises(InvalidInputError) as ei:
        read(uri, FIELD, **kw)
    assert (ei.value.reason, ei.value.message, ei.value.field) == (
        "GARMENT_FETCH_REFUSED",
        MSG_REFUSED,
        FIELD,
    )
    return ei.value


# ---------------------------------------------------------------------------- item 7: SSRF


@pytest.mark.parametrize(
    "addresses",
    [
        ("127.0.0.1",),
        ("10.0.0.5",),
        ("172.16.3.4",),
        ("192.168.1.1",),
        ("169.254.169.254",),  # cloud metadata
        ("100.64.0.1",),  # carrier-grade NAT
        ("0.0.0.0",),
        ("224.0.0.1",),  # multicast
        ("240.0.0.1",),  # reserved
        ("255.255.255.255",),
        ("::1",),
        ("fe80::1%eth0",),
        ("fc00::1",),
        ("::ffff:169.254.169.254",),  # IPv4-mapped
        ("::ffff:127.0.0.1",),
        ("ff02::1",),
        ("::",),
        ("93.184.216.34", "10.0.0.1"),  # one private answer among public ones
    ],
)
def test_ssrf_names_resolving_to_private_addresses_are_refused_before_connecting(
    addresses, no_connections
):
    resolve = stub(*addresses)
    refused(reader(resolve=resolve), "http://images.example.com/tee.png")
    assert resolve.seen == [("images.example.com", 80)] and not no_connections


@pytest.mark.parametrize(
    "uri",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9000/",
        "http://[::1]/",
        "http://[::ffff:7f00:1]/",
        "https://10.1.2.3/x.png",
        "http://0.0.0.0/",
    ],
)
def test_ssrf_address_literals_are_refused_without_a_lookup(uri, no_connections):
    resolve = stub()
    refused(reader(resolve=resolve), uri)
    assert not resolve.seen and not no_connections


@pytest.mark.parametrize(
    "uri",
    [
        "http://user:pw@images.example.com/x.png",  # credentials / host confusion
        "http://images.example.com@10.0.0.1/x.png",
        "http://images.example.com\\@10.0.0.1/",
        "http://images.example.com/x y.png",
        "http://images.example.com:99999/",
        "http:///x.png",
        "file:///etc/passwd",  # file:// is off by default
        "file:///proc/self/environ",
        "file:///etc/no-such-file",  # the same answer whether the file exists or not
    ],
)
def test_ssrf_schemes_credentials_and_malformed_urls_are_refused(uri, no_connections):
    resolve = stub("10.0.0.1")
    err = refused(reader(resolve=resolve), uri)
    assert "passwd" not in err.message and not resolve.seen and not no_connections


def test_unknown_schemes_are_not_fetched(no_connections):
    for uri in ["ftp://images.example.com/x.png", "gopher://127.0.0.1:6379/_INFO", "gs://b/k"]:
        with pytest.raises(InvalidInputError) as ei:
            reader(resolve=stub("10.0.0.1"))(uri, FIELD)
        assert (ei.value.reason, ei.value.message) == ("GARMENT_FETCH_FAILED", MSG_SCHEME)
    assert not no_connections


def test_ssrf_host_allow_list_refuses_other_hosts_before_resolving(no_connections):
    pol = policy(drape_catalog_fetch_hosts="images.example.com,*.cdn.example.net")
    resolve = stub("10.0.0.1")
    for uri in [
        "http://evil.example.org/x.png",
        "http://images.example.com.evil.org/x.png",
        "http://cdn.example.net/x.png",  # the apex is not a subdomain
        "http://xcdn.example.net/x.png",
        "http://169.254.169.254/",
    ]:
        refused(reader(pol, resolve), uri)
    assert not resolve.seen
    # An allowed name still has its address checked.
    refused(reader(pol, resolve), "http://a.cdn.example.net/x.png")
    assert resolve.seen == [("a.cdn.example.net", 80)] and not no_connections


def test_ssrf_schemes_setting_turns_plain_http_off(no_connections):
    pol = policy(drape_catalog_fetch_schemes="https")
    refused(reader(pol, stub("93.184.216.34")), "http://images.example.com/x.png")
    refused(reader(pol, stub("93.184.216.34")), "s3://bucket/key")
    assert not no_connections


def test_fetch_settings_refuse_unknown_schemes_and_bad_networks():
    with pytest.raises(ConfigError) as ei:
        load_settings(env={"DRAPE_CATALOG_FETCH_SCHEMES": "https,file"})
    assert ei.value.setting == "DRAPE_CATALOG_FETCH_SCHEMES"
    with pytest.raises(ConfigError) as ei:
        load_settings(env={"DRAPE_CATALOG_FETCH_ALLOW_NETWORKS": "10.0.0.0/8,intranet"})
    assert ei.value.setting == "DRAPE_CATALOG_FETCH_ALLOW_NETWORKS"


# A loopback HTTP server whose answer each test chooses.


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}
    hits: list = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        type(self).hits.append((self.path, self.headers.get("Host")))
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        route(self)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client hanging up mid-answer is what several tests do on purpose


@pytest.fixture
def server():
    _Handler.routes, _Handler.hits = {}, []
    httpd = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def png_bytes(i: int = 3) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(draw_sample_garment(i, 64)).save(buf, "PNG")
    return buf.getvalue()


def _reply(status: int, body: bytes = b"", headers=()):
    def handle(h):
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return handle


def test_an_allowed_name_is_fetched_from_the_checked_address_with_its_host_header(server):
    port = server.server_address[1]
    body = png_bytes()
    _Handler.routes["/tee.png"] = _reply(200, body)
    pol = policy(
        drape_catalog_fetch_hosts="*.cdn.example.net", drape_catalog_fetch_allow_networks=LOOPBACK
    )
    resolve = stub("127.0.0.1")
    got = reader(pol, resolve)(f"http://img.cdn.example.net:{port}/tee.png", FIELD)
    assert got == body
    assert _Handler.hits == [("/tee.png", f"img.cdn.example.net:{port}")]


def test_redirects_are_not_followed_and_statuses_are_not_echoed(server, monkeypatch):
    port = server.server_address[1]
    pol = policy(drape_catalog_fetch_allow_networks=LOOPBACK)
    real = socket.create_connection
    connected = []

    def loopback_only(address, *a, **k):
        connected.append(address[0])
        assert address[0] == "127.0.0.1", f"connection to {address} attempted"
        return real(address, *a, **k)

    monkeypatch.setattr(socket, "create_connection", loopback_only)
    meta = "http://169.254.169.254/latest/meta-data/"
    for status in (301, 302, 303, 307, 308):
        _Handler.routes[f"/r{status}"] = _reply(status, headers=[("Location", meta)])
    for status in (400, 401, 403, 404, 410, 418, 500, 502, 503):
        _Handler.routes[f"/s{status}"] = _reply(status, b"secret page body")
    messages = set()
    for path in sorted(_Handler.routes):
        status = int(path[2:])
        cls = UnavailableError if status >= 500 else InvalidInputError
        with pytest.raises(cls) as ei:
            reader(pol)(f"http://127.0.0.1:{port}{path}", FIELD)
        assert ei.value.reason == "GARMENT_FETCH_FAILED" and ei.value.field == FIELD
        assert str(status) not in ei.value.message
        messages.add(ei.value.message)
    # A closed port reads the same as a 404 or a 500: no scanning oracle in the message.
    with pytest.raises(UnavailableError) as ei:
        reader(pol)("http://127.0.0.1:1/x.png", FIELD)
    messages.add(ei.value.message)
    assert messages == {MSG_FETCH}
    assert set(connected) == {"127.0.0.1"}
    assert len(_Handler.hits) == len(_Handler.routes)  # one request each, no redirect followed


def test_bodies_over_the_limit_are_refused(server):
    port = server.server_address[1]
    _Handler.routes["/declared"] = _reply(200, b"x" * 5000)

    def chunked(h):  # no Content-Length: counted while reading
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for _ in range(10):
            h.wfile.write(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
        h.wfile.write(b"0\r\n\r\n")

    _Handler.routes["/chunked"] = chunked
    pol = policy(drape_catalog_fetch_allow_networks=LOOPBACK)
    for path in ("/declared", "/chunked"):
        with pytest.raises(InvalidInputError) as ei:
            reader(pol, max_bytes=4096)(f"http://127.0.0.1:{port}{path}", FIELD)
        assert ei.value.reason == "GARMENT_FETCH_FAILED"
        assert ei.value.message == "the reference is larger than 4096 bytes"


# ---------------------------------------------------------------------------- item 8: file://


@pytest.fixture
def root(tmp_path) -> Path:
    r = tmp_path / "root"
    (r / "sub").mkdir(parents=True)
    (r / "sub" / "ok.png").write_bytes(b"png-bytes")
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink(tmp_path / "outside.txt", r / "link-out")
    os.symlink(tmp_path, r / "dir-out")
    os.symlink("/etc/passwd", r / "passwd")
    os.symlink("/dev/zero", r / "zero")
    os.symlink(r / "sub" / "ok.png", r / "link-in")
    os.mkfifo(r / "fifo")
    return r


def test_file_references_are_confined_to_the_root(root, tmp_path):
    read = reader(policy(drape_catalog_fetch_file_root=str(root)))
    assert read((root / "sub" / "ok.png").as_uri(), FIELD) == b"png-bytes"
    assert read((root / "link-in").as_uri(), FIELD) == b"png-bytes"  # a link within
    assert read(f"file://localhost{root}/sub/ok.png", FIELD) == b"png-bytes"
    for uri in [
        "file:///etc/passwd",
        "file:///etc/no-such-file",  # same answer: existence is not revealed
        "file:///proc/self/environ",
        (tmp_path / "outside.txt").as_uri(),
        f"file://{root}/../outside.txt",
        f"file://{root}/%2e%2e/outside.txt",
        f"file://{root}/sub/..%2F..%2Foutside.txt",
        (root / "link-out").as_uri(),
        (root / "dir-out" / "outside.txt").as_uri(),
        (root / "passwd").as_uri(),
        (root / "zero").as_uri(),  # a device, through a link
        f"file://otherhost{root}/sub/ok.png",
        f"file://{root}/sub/ok.png?x=1",
        "file:relative/ok.png",
    ]:
        refused(read, uri)


def test_file_failures_inside_the_root_read_alike_and_a_fifo_never_blocks(root):
    read = reader(policy(drape_catalog_fetch_file_root=str(root)))
    outcome = {}

    def fifo():
        try:
            read((root / "fifo").as_uri(), FIELD)
        except InvalidInputError as exc:
            outcome["fifo"] = exc

    t = threading.Thread(target=fifo, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked (no writer ever comes)"
    errors = [outcome["fifo"]]
    for uri in [(root / "missing.png").as_uri(), (root / "sub").as_uri(), root.as_uri()]:
        with pytest.raises(InvalidInputError) as ei:
            read(uri, FIELD)
        errors.append(ei.value)
    assert {(e.reason, e.message) for e in errors} == {("GARMENT_FETCH_FAILED", MSG_READ)}


def test_file_root_must_be_a_directory(tmp_path):
    with pytest.raises(ValueError, match="DRAPE_CATALOG_FETCH_FILE_ROOT"):
        policy(drape_catalog_fetch_file_root=str(tmp_path / "none"))


# ---------------------------------------------------------------------------- item 9: deadline


class _Drip:
    """Sends one byte every ``interval`` seconds; records whether the client hung up."""

    def __init__(self, interval: float = 0.5, total: int = 120) -> None:
        self.interval, self.total = interval, total
        self.cut = threading.Event()
        self.sent = 0

    def _drip(self, h, data: bytes) -> None:
        try:
            for b in data:
                h.wfile.write(bytes([b]))
                h.wfile.flush()
                self.sent += 1
                time.sleep(self.interval)
        except OSError:
            self.cut.set()

    def body(self, h) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(self.total))
        h.end_headers()
        h.wfile.flush()
        self._drip(h, b"x" * self.total)

    def headers(self, h) -> None:
        self._drip(h, b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * self.total + b"\r\n\r\n")


def test_a_slow_drip_is_cut_at_the_job_deadline_not_per_read(server):
    port = server.server_address[1]
    pol = policy(drape_catalog_fetch_allow_networks=LOOPBACK)
    for name in ("body", "headers"):
        drip = _Drip()
        _Handler.routes[f"/{name}"] = getattr(drip, name)
        with pytest.raises(DeadlineExceededError) as ei:
            reader(pol)(
                f"http://127.0.0.1:{port}/{name}", FIELD, token=CancelToken.with_timeout(1.5)
            )
        assert ei.value.reason == "DEADLINE_EXCEEDED" and ei.value.field == FIELD
        # The connection was closed under the server long before its 120 bytes were out.
        assert drip.cut.wait(10), "the adapter kept the connection open"
        assert drip.sent < drip.total


def test_a_stalled_tls_handshake_is_cut_at_the_deadline():
    """https:// to a loopback port that accepts and never answers the ClientHello."""
    lsock = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(lsock.accept()[0]), daemon=True).start()
    pol = policy(drape_catalog_fetch_allow_networks=LOOPBACK)
    uri = f"https://127.0.0.1:{lsock.getsockname()[1]}/x.png"
    with pytest.raises(DeadlineExceededError) as ei:
        reader(pol)(uri, FIELD, token=CancelToken.with_timeout(1.5))
    assert ei.value.reason == "DEADLINE_EXCEEDED"
    assert accepted and accepted[0].recv(1 << 16, socket.MSG_PEEK)  # the ClientHello came
    for s in (*accepted, lsock):
        s.close()


def test_the_job_deadline_bounds_the_fetch_inside_a_job(server, tmp_path):
    """Through :meth:`JobRunner.attempt`: the drip makes the product's attempt fail with
    DEADLINE_EXCEEDED (retryable) by the job's deadline."""
    port = server.server_address[1]
    drip = _Drip()
    _Handler.routes["/tee.png"] = drip.body
    read = reader(policy(drape_catalog_fetch_allow_networks=LOOPBACK))
    jobs = JobRunner(FileStore(tmp_path / "store"), builtin_rosters(), None, None, read)
    ev = sample_event(1, f"http://127.0.0.1:{port}/tee.png")
    jobs.rosters.resolve(ev.merchant_id, ev.roster_id)  # the roster photos loaded first
    result = jobs.attempt(ev, CancelToken.with_timeout(3))
    [(model, kind, exc)] = result.failures
    assert (model, kind, exc.reason) == ("", ev_pb.ASSET_KIND_UNSPECIFIED, "DEADLINE_EXCEEDED")
    assert _Handler.hits and drip.cut.wait(10)


# ------------------------------------------------- items 9-11: stuck jobs in real processes


@pytest.fixture
def broker():
    from services.common.kafka import TansuBroker

    b = TansuBroker().start()
    create_topics(b.bootstrap)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def roster(tmp_path_factory) -> Path:
    return small_roster(tmp_path_factory.mktemp("roster"))


@pytest.fixture
def adapter(tmp_path, roster):
    started: list[AdapterProcess] = []

    def start(bootstrap: str, **env) -> AdapterProcess:
        a = AdapterProcess(
            bootstrap,
            tmp_path / "store",
            {
                "DRAPE_CATALOG_ROSTERS_FILE": str(roster),
                "DRAPE_CATALOG_CLIP_RUNNER": "services.catalog_adapter.harness:stuck_clip_runner",
                "DRAPE_CATALOG_WORKERS": "1",
                **env,
            },
            tmp_path / f"adapter-{len(started)}.log",
        ).start()
        started.append(a)
        return a

    yield start
    for a in started:
        if a.proc.poll() is None:
            a.kill()
        print(f"--- {a.log_path.name}\n{a.log_tail()}")


def _publish(bootstrap: str, events, partition: int | None = None) -> list:
    """Send ``events`` in order (to ``partition`` when given); their (partition, offset)."""
    from kafka import KafkaProducer

    from services.common.kafka import TOPIC_PRODUCT, client_config

    producer = KafkaProducer(acks="all", **client_config(bootstrap=bootstrap))
    out = []
    for ev in events:
        key = f"{ev.merchant_id}/{ev.sku}".encode()
        md = producer.send(
            TOPIC_PRODUCT, key=key, value=ev.SerializeToString(), partition=partition
        ).get(10)
        out.append((md.partition, md.offset))
    producer.close()
    return out


def _product(tmp_path: Path, i: int, clips: bool) -> ev_pb.ProductUpserted:
    """Event ``i`` of one product (same key, so one partition, in order)."""
    path = tmp_path / "garments" / f"g{i}.png"
    path.parent.mkdir(exist_ok=True)
    Image.fromarray(draw_sample_garment(i, 256)).save(path)
    ev = sample_event(i, path.as_uri(), prefix="stuck", clips=clips)
    ev.sku, ev.revision = "SKU-STUCK", i + 1
    return ev


@pytest.mark.kafka
def test_an_abandoned_job_frees_its_worker(broker, adapter, tmp_path):
    """One worker; the first event's clip step never ends and ignores cancellation. It is
    abandoned at the job deadline (DEADLINE_EXCEEDED, dead-lettered) and the next event of
    the same partition is done by the same single worker meanwhile."""
    from services.common.kafka import TOPIC_ASSET, TOPIC_PRODUCT_DLQ

    a = adapter(
        broker.bootstrap,
        DRAPE_CATALOG_JOB_TIMEOUT_SECONDS="4",
        DRAPE_CATALOG_MAX_ATTEMPTS="1",
    )
    wait_assigned([a], timeout=90)
    stuck, after = _product(tmp_path, 0, clips=True), _product(tmp_path, 1, clips=False)
    _publish(broker.bootstrap, [stuck, after])
    reader = TopicReader(broker.bootstrap, TOPIC_ASSET)
    wait_for_assets(reader, {(after.event_id, m) for m in ("astronaut", "grace-hopper")}, 90)
    _, failed = asset_events(reader.records)
    final = [f for f in failed if f.event_id == stuck.event_id and f.dead_lettered]
    assert [f.reason for f in final] == ["DEADLINE_EXCEEDED"]
    dlq = TopicReader(broker.bootstrap, TOPIC_PRODUCT_DLQ)
    wait_for(lambda: dlq.poll() or dlq.records, 20, what="the dead letter")
    headers = {k: v.decode() for k, v in dlq.records[0].headers}
    assert headers["drape-dlq-reason"] == "DEADLINE_EXCEEDED"
    m = wait_for(
        lambda: (m := a.metrics()).get("drape_catalog_attempts_abandoned_total") and m,
        20,
        what="the abandoned metric",
    )
    assert m["drape_catalog_attempts_abandoned_total"] == 1
    assert m["drape_catalog_attempt_threads"] == 1  # the stuck one, still sleeping
    reader.close()
    dlq.close()


@pytest.mark.kafka
def test_a_stuck_job_shows_as_lag_and_sigterm_ends_within_the_grace_period(
    broker, adapter, tmp_path
):
    """Partition 0: one event, done. Partition 1: a job stuck in a step that ignores
    cancellation (job timeout far away) and three events waiting behind it, the first records
    of that partition. /metrics shows lag 4 on partition 1 (item 11: it read 0, nothing there
    being done yet); SIGTERM with a 3 s grace period ends the process (item 10) having
    committed partition 0's event and nothing on partition 1."""
    from kafka import KafkaConsumer, TopicPartition

    from services.common.kafka import TOPIC_ASSET, TOPIC_PRODUCT, client_config

    group = "hostile-stuck"
    a = adapter(
        broker.bootstrap,
        DRAPE_CATALOG_JOB_TIMEOUT_SECONDS="600",
        DRAPE_GRACE_PERIOD_SECONDS="3",
        DRAPE_CATALOG_GROUP_ID=group,
    )
    wait_assigned([a], timeout=90)
    first = _product(tmp_path, 0, clips=False)
    first.sku = "SKU-DONE"
    [(_, off0)] = _publish(broker.bootstrap, [first], partition=0)
    reader = TopicReader(broker.bootstrap, TOPIC_ASSET)
    wait_for_assets(reader, {(first.event_id, m) for m in ("astronaut", "grace-hopper")}, 90)
    reader.close()
    rest = [_product(tmp_path, 1, clips=True)] + [_product(tmp_path, i, False) for i in (2, 3, 4)]
    sent = _publish(broker.bootstrap, rest, partition=1)
    assert [o for _, o in sent] == [0, 1, 2, 3]
    label = 'drape_catalog_consumer_lag{partition="1"}'
    m = wait_for(
        lambda: (
            (m := a.metrics()).get(label, 0) >= 4 and m.get("drape_catalog_jobs_in_flight") and m
        ),
        60,
        what="lag 4 behind the stuck job",
    )
    assert m[label] == 4 and m["drape_catalog_jobs_in_flight"] == 1
    assert m['drape_catalog_consumer_lag{partition="0"}'] == 0

    # 3 s grace; before the fix it was still alive 30 s after SIGTERM (then SIGKILL: -9).
    code = a.terminate(25)
    assert code == 0, a.log_tail()
    consumer = KafkaConsumer(
        group_id=group, enable_auto_commit=False, **client_config(bootstrap=broker.bootstrap)
    )
    committed = [consumer.committed(TopicPartition(TOPIC_PRODUCT, p)) for p in (0, 1)]
    consumer.close()
    assert committed == [off0 + 1, None]  # the stuck job and those behind it replay
