"""The catalog adapter end to end: real Tansu brokers, real adapter subprocesses, real
try-on on small stock-model photos. Each test runs its own broker (the outage test restarts
it) and its own asset store."""

from __future__ import annotations

import collections
import http.server
import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drape.catalog.v1 import events_pb2 as ev_pb
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
from services.catalog_adapter.publish import draw_sample_garment, publish, sample_event
from services.catalog_adapter.store import FileStore
from services.common.kafka import TOPIC_ASSET, TOPIC_PRODUCT, TOPIC_PRODUCT_DLQ, TansuBroker

pytestmark = pytest.mark.kafka
MODELS = ("astronaut", "grace-hopper")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def roster(tmp_path_factory) -> Path:
    return small_roster(tmp_path_factory.mktemp("roster"))


@pytest.fixture
def broker():
    b = TansuBroker().start()
    create_topics(b.bootstrap)
    yield b
    b.stop()


@pytest.fixture
def adapters(tmp_path, roster):
    """Factory: ``start(bootstrap, **env) -> AdapterProcess``; all are stopped after the test
    (their logs are printed when the test failed)."""
    started: list[AdapterProcess] = []

    def start(bootstrap: str, **env) -> AdapterProcess:
        a = AdapterProcess(
            bootstrap,
            tmp_path / "store",
            {"DRAPE_CATALOG_ROSTERS_FILE": str(roster), **env},
            tmp_path / f"adapter-{len(started)}.log",
        ).start()
        started.append(a)
        return a

    yield start
    for a in started:
        if a.proc.poll() is None:
            a.terminate(30)
    for a in started:
        print(f"--- {a.log_path.name}\n{a.log_tail()}")


def garments(directory: Path, count: int, first: int = 0) -> list[str]:
    """``count`` different flat-lays (256 px) as file:// URIs."""
    directory.mkdir(parents=True, exist_ok=True)
    uris = []
    for i in range(first, first + count):
        path = directory / f"g{i:04d}.png"
        Image.fromarray(draw_sample_garment(i, 256)).save(path)
        uris.append(path.as_uri())
    return uris


def stills(store: Path) -> list[str]:
    return [k for k in FileStore(store).list() if k.endswith(".png")]


def check_store(store: Path, events, expect_unique_hashes: bool = True) -> None:
    """Exactly one complete still per (event, model) and nothing else."""
    keys = stills(store)
    per_pair = collections.Counter(tuple(k.split("/")[1:3]) for k in keys)
    expected = {(ev.sku, m) for ev in events for m in MODELS}
    assert set(per_pair) == expected
    assert all(n == 1 for n in per_pair.values()), per_pair.most_common(3)
    for k in keys[:4]:  # whole files: they decode to the stock photo's size
        img = Image.open(io.BytesIO((store / k).read_bytes()))
        img.load()
        assert max(img.size) == 256


def check_no_duplicate_work(ready: list[ev_pb.AssetReady]) -> None:
    """Every content hash was announced as newly made at most once."""
    made = collections.Counter(a.content_hash for a in ready if not a.reused)
    assert made and max(made.values()) == 1, made.most_common(3)


def test_two_adapters_make_exactly_one_asset_per_event_and_model(
    broker, adapters, tmp_path, roster
):
    a, b = adapters(broker.bootstrap), adapters(broker.bootstrap)
    wait_assigned([a, b], timeout=90)
    uris = garments(tmp_path / "garments", 50)
    events = [sample_event(i, uri, prefix="two") for i, uri in enumerate(uris)]
    # Publish through the CLI, as an operator would.
    from google.protobuf import json_format

    events_file = tmp_path / "events.jsonl"
    events_file.write_text(
        "\n".join(json_format.MessageToJson(e, indent=None) for e in events) + "\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "catalog", "publish", str(events_file),
         "--bootstrap", broker.bootstrap],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "published 50 events" in out.stdout

    reader = TopicReader(broker.bootstrap, TOPIC_ASSET)
    expected = {(e.event_id, m) for e in events for m in MODELS}
    # A bound on a hang, not a speed goal: 50 garments, each cut out by the learned model,
    # and 100 stills on two shared cores take a couple of minutes when the suite runs beside.
    ready = wait_for_assets(reader, expected, timeout=300)
    check_store(tmp_path / "store", events)
    check_no_duplicate_work(ready)
    assert len({a.content_hash for a in ready}) == 100
    first = ready[0]
    assert first.asset_uri.startswith("file://") and first.mime_type == "image/png"
    assert first.pipeline_version.startswith("catalog/") and first.backend == "geometric"
    assert first.experiment.variant == "control" and (first.width, first.height) != (0, 0)
    # The still is the stock model wearing the garment, not the stock photo returned.
    still = np.asarray(Image.open(first.asset_uri.removeprefix("file://")).convert("RGB"))
    photo = np.asarray(Image.open(roster.parent / f"{first.model_id}.png").convert("RGB"))
    changed = (np.abs(still.astype(int) - photo).max(axis=2) > 30).mean()
    assert still.shape == photo.shape and 0.05 < changed < 0.7, changed

    # Metrics of both processes account for every event, and the backlog is gone.
    def totals():
        ms = [a.metrics(), b.metrics()]
        return {
            "ok": sum(m.get('drape_catalog_events_processed_total{outcome="ok"}', 0) for m in ms),
            "consumed": sum(m.get("drape_catalog_events_consumed_total", 0) for m in ms),
            "jobs": sum(m.get('drape_catalog_job_duration_seconds_count{outcome="ok"}', 0) for m in ms),
            "made": sum(m.get('drape_catalog_assets_total{kind="still",outcome="created"}', 0) for m in ms),
            "lag": sum(v for m in ms for k, v in m.items() if k.startswith("drape_catalog_consumer_lag")),
        }  # fmt: skip

    t = wait_for(lambda: (t := totals())["ok"] >= 50 and t["lag"] == 0 and t, 30, what="metrics")
    assert t["ok"] == 50 and t["jobs"] == 50 and t["made"] == 100 and t["consumed"] >= 50
    reader.close()
    assert a.terminate() == 0 and b.terminate() == 0  # graceful: drained and left the group


def test_sigkill_mid_batch_then_restart_loses_nothing_and_makes_nothing_twice(
    broker, adapters, tmp_path
):
    a, b = adapters(broker.bootstrap), adapters(broker.bootstrap)
    wait_assigned([a, b], timeout=90)
    uris = garments(tmp_path / "garments", 30)
    events = [sample_event(i, uri, prefix="kill") for i, uri in enumerate(uris)]
    reader = TopicReader(broker.bootstrap, TOPIC_ASSET)
    publish(events, broker.bootstrap)
    # Kill one adapter once the batch is under way but far from done.
    wait_for(lambda: len(asset_events(reader.records + reader.poll())[0]) >= 6, 90, 0.05,
             what="the batch to start")  # fmt: skip
    a.kill()
    assert len(asset_events(reader.records)[0]) < 60
    adapters(broker.bootstrap)  # the restart
    expected = {(e.event_id, m) for e in events for m in MODELS}
    ready = wait_for_assets(reader, expected, timeout=150)
    check_store(tmp_path / "store", events)
    check_no_duplicate_work(ready)
    # A crash mid-write leaves at most a temporary file, never a half asset under its name.
    leftovers = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert all(p.name.endswith((".png", ".json")) or p.name.startswith(".tmp-") for p in leftovers)
    reader.close()


class _FlakyImages(http.server.BaseHTTPRequestHandler):
    """Serves one flat-lay; answers 503 to its first two requests."""

    body = b""
    hits = 0

    def do_GET(self):  # noqa: N802 - http.server API
        type(self).hits += 1
        if type(self).hits <= 2:
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_poison_events_are_dead_lettered_transient_ones_retried_and_the_batch_goes_on(
    broker, adapters, tmp_path
):
    a = adapters(broker.bootstrap, DRAPE_CATALOG_RETRY_BACKOFF_SECONDS="0.2")
    wait_assigned([a], timeout=90)
    good = garments(tmp_path / "garments", 3)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (256, 256), (255, 255, 255)).save(blank)
    buf = io.BytesIO()
    Image.fromarray(draw_sample_garment(7, 256)).save(buf, "PNG")
    _FlakyImages.body = buf.getvalue()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyImages)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    flaky_uri = f"http://127.0.0.1:{httpd.server_address[1]}/tee.png"

    ok1 = sample_event(1, good[0], prefix="p")
    missing = sample_event(2, (tmp_path / "nope.png").as_uri(), prefix="p")
    not_found = sample_event(3, blank.as_uri(), prefix="p")
    invalid = sample_event(4, good[1], prefix="p")
    invalid.sku = "bad sku/../x"
    clip = sample_event(5, good[1], prefix="p", clips=True)
    flaky = sample_event(6, flaky_uri, prefix="p")
    newer = sample_event(7, good[2], prefix="p")
    newer.revision = 5
    stale = sample_event(7, good[0], prefix="p-stale")
    stale.revision = 4  # same product, older revision, after the newer one: skipped
    ok2 = sample_event(8, good[2], prefix="p")
    garbage = b"\xff\x00not a protobuf\x13\x37"
    batch = [ok1, garbage, missing, not_found, invalid, clip, flaky, newer, stale, ok2]

    from kafka import KafkaProducer

    from services.common.kafka import client_config

    producer = KafkaProducer(acks="all", **client_config(bootstrap=broker.bootstrap))
    sent = {}  # event id (or "garbage") -> (partition, offset, value bytes)
    for ev in batch:
        raw = ev if isinstance(ev, bytes) else ev.SerializeToString()
        key = b"acme/garbage" if isinstance(ev, bytes) else f"{ev.merchant_id}/{ev.sku}".encode()
        md = producer.send(TOPIC_PRODUCT, key=key, value=raw, headers=[("origin", b"test")]).get(10)
        sent["garbage" if isinstance(ev, bytes) else ev.event_id] = (md.partition, md.offset, raw)
    producer.close()

    reader = TopicReader(broker.bootstrap, TOPIC_ASSET)
    expected = {(e.event_id, m) for e in (ok1, clip, flaky, newer, ok2) for m in MODELS}
    wait_for_assets(reader, expected, timeout=120)
    dlq = TopicReader(broker.bootstrap, TOPIC_PRODUCT_DLQ)
    wait_for(lambda: len(dlq.records + dlq.poll()) >= 5, 60, what="5 dead letters")
    time.sleep(1.0)
    dlq.poll()
    by_reason = {}
    for r in dlq.records:
        h = {k: v.decode() for k, v in r.headers}
        assert h["origin"] == "test" and h["drape-source-topic"] == TOPIC_PRODUCT
        assert h["drape-dlq-message"] and h["drape-dlq-failed-at"].endswith("Z")
        by_reason[h["drape-dlq-reason"]] = (int(h["drape-source-partition"]),
                                            int(h["drape-source-offset"]), r.value, h)  # fmt: skip
    assert set(by_reason) == {
        "PAYLOAD_UNDECODABLE", "GARMENT_FETCH_FAILED", "GARMENT_NOT_FOUND", "INVALID_EVENT",
        "CLIPS_UNAVAILABLE",
    }  # fmt: skip
    for reason, source in [
        ("PAYLOAD_UNDECODABLE", "garbage"),
        ("GARMENT_FETCH_FAILED", missing.event_id),
        ("GARMENT_NOT_FOUND", not_found.event_id),
        ("INVALID_EVENT", invalid.event_id),
        ("CLIPS_UNAVAILABLE", clip.event_id),
    ]:
        partition, offset, value, headers = by_reason[reason]
        assert (partition, offset, value) == sent[source], reason  # original bytes, its offset
        assert headers["drape-dlq-attempts"] == "1"  # poison: dead-lettered at once

    reader.poll()
    ready, failed = asset_events(reader.records)
    final = {f.event_id: f for f in failed if f.dead_lettered}
    assert final[not_found.event_id].reason == "GARMENT_NOT_FOUND"
    assert not final[not_found.event_id].retryable and final[not_found.event_id].model_id == ""
    assert final[clip.event_id].reason == "CLIPS_UNAVAILABLE"
    assert final[clip.event_id].kind == ev_pb.ASSET_KIND_CLIP
    assert {f.model_id for f in failed if f.event_id == clip.event_id} == set(MODELS)
    assert invalid.event_id in final  # merchant and sku were readable... the sku was not valid
    # The flaky image was retried with backoff: two retryable failures, then success.
    retried = [f for f in failed if f.event_id == flaky.event_id]
    assert [(f.attempts, f.retryable, f.dead_lettered) for f in retried] == [
        (1, True, False), (2, True, False),
    ]  # fmt: skip
    assert retried[0].reason == "GARMENT_FETCH_FAILED" and _FlakyImages.hits == 3
    # The clip event still made its stills; the stale revision made and announced nothing.
    assert {a.model_id for a in ready if a.event_id == clip.event_id} == set(MODELS)
    assert not [a for a in ready if a.event_id == stale.event_id]
    assert not [f for f in failed if f.event_id == stale.event_id]
    m = wait_for(
        lambda: (
            (m := a.metrics()).get('drape_catalog_events_processed_total{outcome="stale"}') and m
        ),
        20,
        what="stale metric",
    )
    assert m['drape_catalog_events_dead_lettered_total{reason="GARMENT_NOT_FOUND"}'] == 1
    assert m['drape_catalog_job_retries_total{reason="GARMENT_FETCH_FAILED"}'] == 2
    httpd.shutdown()
    reader.close()
    dlq.close()


def test_broker_outage_is_survived_without_restarting_the_adapters(tmp_path, adapters):
    broker = TansuBroker().start()
    try:
        create_topics(broker.bootstrap)
        a, b = adapters(broker.bootstrap), adapters(broker.bootstrap)
        wait_assigned([a, b], timeout=90)
        uris = garments(tmp_path / "garments", 24)
        before = [sample_event(i, uris[i], prefix="pre") for i in range(8)]
        publish(before, broker.bootstrap)
        reader = TopicReader(broker.bootstrap, TOPIC_ASSET)
        wait_for_assets(reader, {(e.event_id, m) for e in before for m in MODELS}, 90)
        reader.close()
        rebalances = [a.rebalances(), b.rebalances()]

        broker.stop()  # the outage: in-memory log, so it comes back empty
        time.sleep(4)
        assert a.proc.poll() is None and b.proc.poll() is None
        broker.start()  # same address
        create_topics(broker.bootstrap)
        # The adapters reconnect and rejoin on their own (new assignments).
        wait_assigned([a, b], timeout=90, min_rebalances=[r + 1 for r in rebalances])
        assert a.proc.poll() is None and b.proc.poll() is None  # never restarted

        after = [sample_event(i, uris[i], prefix="post") for i in range(8, 24)]
        publish(after, broker.bootstrap)
        reader = TopicReader(broker.bootstrap, TOPIC_ASSET)
        ready = wait_for_assets(reader, {(e.event_id, m) for e in after for m in MODELS}, 120)
        reader.close()
        check_store(tmp_path / "store", before + after)
        post = [r for r in ready if r.event_id.startswith("post")]
        check_no_duplicate_work(post)
        assert all(not r.reused for r in post)  # new products: made, each exactly once
    finally:
        broker.stop()
