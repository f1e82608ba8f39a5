"""CatalogService batches end to end: a real Tansu broker, the real catalog job (try-on and
refiner in process, on one small stock model), a real ``drape serve catalog`` process for
the crash test and a real adapter process for the dead-letter replay."""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import json_format
from PIL import Image

from drape.catalog.v1 import catalog_service_pb2 as pb
from drape.catalog.v1 import catalog_service_pb2_grpc as pb_grpc
from drape.catalog.v1 import events_pb2 as ev_pb
from drape.common.v1 import operations_pb2
from services.catalog_adapter.harness import (
    AdapterProcess,
    TopicReader,
    create_topics,
    wait_for,
    wait_for_assets,
)
from services.catalog_adapter.publish import draw_sample_garment, sample_event
from services.catalog_adapter.store import FileStore
from services.common.config import load_settings
from services.common.kafka import TOPIC_ASSET, TOPIC_PRODUCT_DLQ, TansuBroker, free_port

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[1]
S = pb.BatchItemState
SUCCEEDED = operations_pb2.OPERATION_STATE_SUCCEEDED


@pytest.fixture(scope="module")
def broker():
    b = TansuBroker().start()
    create_topics(b.bootstrap)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A directory with a one-model roster (160 px), four flat-lays and a blank image."""
    import cv2

    from services.catalog_adapter.roster import builtin_photos

    d = tmp_path_factory.mktemp("batches")
    rgb = builtin_photos()["astronaut"]
    s = 160 / max(rgb.shape[:2])
    small = cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    Image.fromarray(np.ascontiguousarray(small)).save(d / "astronaut.png")
    (d / "rosters.toml").write_text(
        'default_roster = "studio"\n[rosters.studio]\n'
        f'models = [{{ id = "astronaut", image = "{(d / "astronaut.png").as_uri()}" }}]\n'
    )
    for i in range(4):
        Image.fromarray(draw_sample_garment(i, 160)).save(d / f"g{i}.png")
    Image.new("RGB", (160, 160), (255, 255, 255)).save(d / "blank.png")
    return d


def env_settings(world: Path, name: str) -> dict[str, str]:
    return {
        "DRAPE_CATALOG_ASSET_STORE": f"file://{world / name / 'store'}",
        "DRAPE_CATALOG_ROSTERS_FILE": str(world / "rosters.toml"),
        "DRAPE_CATALOG_BATCH_DB": str(world / name / "batches.sqlite"),
        "DRAPE_CATALOG_FETCH_FILE_ROOT": str(world),
        "DRAPE_CATALOG_RETRY_BACKOFF_SECONDS": "0.01",
        "DRAPE_CATALOG_WORKERS": "2",
        "DRAPE_CATALOG_BATCH_MAX_PRODUCTS": "250",
    }


@pytest.fixture(scope="module")
def service(world, broker):
    """An in-process CatalogService (module-wide) publishing to the module's broker."""
    from services.catalog_adapter.batch_server import CatalogApp
    from services.common.server import create_server

    env = {**env_settings(world, "inproc"), "DRAPE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap}
    settings = load_settings(env=env, metrics_port=-1)
    server, port = create_server("127.0.0.1:0", CatalogApp(settings), settings=settings)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        assert server.wait_ready(120), server.load_error
        yield pb_grpc.CatalogServiceStub(channel), world / "inproc" / "store", server, port
    finally:
        channel.close()
        server.stop(0)


def event(i: int, garment: Path, merchant: str, prefix: str, **kw) -> ev_pb.ProductUpserted:
    return sample_event(i, garment.as_uri(), merchant=merchant, prefix=prefix, **kw)


def watch(stub, op_id: str) -> list[pb.WatchBatchResponse]:
    ref = operations_pb2.OperationRef(operation_id=op_id)
    return list(stub.WatchBatch(ref, timeout=300))


def stills(store: Path, merchant: str) -> list[str]:
    return [k for k in FileStore(store).list(f"{merchant}/") if k.endswith(".png")]


def reason_of(err: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    for detail in rpc_status.from_call(err).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return err.code(), info.reason
    return err.code(), ""


def bad_field(err: grpc.RpcError) -> str:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    for detail in rpc_status.from_call(err).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad) and bad.field_violations:
            return bad.field_violations[0].field
    return ""


def test_a_200_sku_batch_with_failures_mixed_in_gives_a_correct_per_sku_report(
    service, world, broker
):
    stub, store, _, _ = service
    jobs_store = FileStore(store)
    expected = {}
    events = []
    for i in range(200):
        kind = ("ok", "missing", "clip", "blank", "stale")[0 if i % 5 else (i // 5) % 5]
        garment = {"missing": world / "nowhere" / f"m{i}.png", "blank": world / "blank.png"}.get(
            kind, world / f"g{i % 4}.png"
        )
        ev = event(i, garment, "acme", "big", clips=kind == "clip")
        if kind == "stale":  # a newer revision of this product was handled already
            ev.revision = 2
            key = f"acme/{ev.sku}/_revision.json"
            jobs_store.put(key, json.dumps({"revision": 3, "event_id": "older"}).encode())
        events.append(ev)
        expected[ev.sku] = kind
    op = stub.StartBatch(pb.StartBatchRequest(request_id="big-batch", products=events,
                                              publish=True))  # fmt: skip
    assert op.progress.total == 200 and op.request_id == "big-batch"
    again = stub.StartBatch(pb.StartBatchRequest(request_id="big-batch", products=events[:3]))
    assert again.id == op.id  # the same request id: the same batch

    msgs = watch(stub, op.id)
    done = [m.progress.succeeded + m.progress.failed + m.progress.skipped_stale for m in msgs]
    assert done == sorted(done) and done[-1] == 200
    assert all(m.progress.total == 200 for m in msgs)
    assert any(m.progress.throughput_per_second > 0 and m.progress.eta_seconds >= 0
               for m in msgs[:-1])  # fmt: skip
    last = msgs[-1]
    assert last.operation.state == SUCCEEDED and last.HasField("result")

    report = stub.GetBatch(operations_pb2.OperationRef(operation_id=op.id)).result
    assert [it.index for it in report.items] == list(range(200))
    assert collections.Counter(it.sku for it in report.items).most_common(1)[0][1] == 1
    counts = collections.Counter(expected.values())
    for it in report.items:
        kind = expected[it.sku]
        if kind == "ok":
            assert it.state == S.BATCH_ITEM_STATE_SUCCEEDED and not it.reason, it
            assert len(it.asset_uris) == 1 and it.created + it.reused == 1
            assert Path(it.asset_uris[0].removeprefix("file://")).is_file()
        elif kind == "missing":
            assert (it.state, it.reason, len(it.asset_uris)) == (
                S.BATCH_ITEM_STATE_FAILED, "GARMENT_FETCH_FAILED", 0), it  # fmt: skip
        elif kind == "blank":
            assert (it.state, it.reason) == (S.BATCH_ITEM_STATE_FAILED, "GARMENT_NOT_FOUND"), it
        elif kind == "clip":  # the still is made, the clip is not (no clip step configured)
            assert (it.state, it.reason) == (S.BATCH_ITEM_STATE_FAILED, "CLIPS_UNAVAILABLE"), it
            assert len(it.asset_uris) == 1 and it.attempts == 1
        else:
            assert it.state == S.BATCH_ITEM_STATE_SKIPPED_STALE and not it.asset_uris, it
    failed = counts["missing"] + counts["blank"] + counts["clip"]
    assert (report.failed, report.skipped_stale, report.processed) == (failed, counts["stale"], 200)
    assert report.created == len(stills(store, "acme")) == counts["ok"] + counts["clip"]
    assert len(report.failures) == failed and len(report.assets) == report.created

    # publish=true: every asset and final failure on catalog.asset.v1, every failed
    # product dead-lettered with its index as the source offset.
    dlq = TopicReader(broker.bootstrap, TOPIC_PRODUCT_DLQ)
    assets = TopicReader(broker.bootstrap, TOPIC_ASSET)
    try:
        ours = lambda recs: [r for r in recs if r.value and b"big-" in r.value]  # noqa: E731
        wait_for(lambda: dlq.poll() is not None and len(ours(dlq.records)) >= failed, 30,
                 what="dead letters")  # fmt: skip
        heads = [dict(r.headers) for r in ours(dlq.records)]
        assert len(heads) == failed
        assert {h["drape-source-topic"] for h in heads} == {b"grpc:CatalogService.StartBatch"}
        by_index = {int(h["drape-source-offset"]): h["drape-dlq-reason"].decode() for h in heads}
        assert by_index == {it.index: it.reason for it in report.items if it.reason}
        ready = wait_for_assets(
            assets, {(it.event_id, "astronaut") for it in report.items if it.asset_uris}, 30
        )
        assert len({a.event_id for a in ready if a.event_id.startswith("big-")}) == report.created
    finally:
        dlq.close()
        assets.close()


def test_dry_run_force_and_changed_since(service, world):
    stub, store, _, _ = service
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    events = []
    for i in range(4):
        ev = event(i, world / f"g{i}.png", "beta", "cs")
        ev.occurred_at.FromDatetime(t0 + dt.timedelta(days=i))
        events.append(ev)
    plan = watch(stub, stub.StartBatch(pb.StartBatchRequest(products=events, dry_run=True)).id)
    res = plan[-1].result
    assert res.dry_run and [it.state for it in res.items] == [S.BATCH_ITEM_STATE_PLANNED] * 4
    assert [(it.created, it.reused) for it in res.items] == [(1, 0)] * 4
    assert not stills(store, "beta")  # a dry run makes nothing

    first = watch(stub, stub.StartBatch(pb.StartBatchRequest(products=events)).id)[-1].result
    assert first.created == 4 and first.failed == 0
    made = {k: (store / k).stat().st_mtime_ns for k in stills(store, "beta")}
    assert len(made) == 4

    # Everything of merchant beta changed since day 2, from what the store recorded.
    since = pb.ChangedSince(merchant_id="beta")
    since.since.FromDatetime(t0 + dt.timedelta(days=2))
    replan = watch(stub, stub.StartBatch(pb.StartBatchRequest(changed_since=since,
                                                              dry_run=True)).id)[-1].result  # fmt: skip
    assert sorted(it.sku for it in replan.items) == ["SKU-0002", "SKU-0003"]
    # The planner agrees with the job: what it would reuse is exactly what was made.
    assert {u.removeprefix("file://") for it in replan.items for u in it.asset_uris} == {
        str(store / k) for k in made if k.split("/")[1] in ("SKU-0002", "SKU-0003")
    }
    assert all((it.created, it.reused) == (0, 1) for it in replan.items)

    rerun = watch(stub, stub.StartBatch(pb.StartBatchRequest(changed_since=since)).id)[-1].result
    assert (rerun.created, rerun.reused) == (0, 2)  # content hashes: nothing remade
    forced = watch(stub, stub.StartBatch(pb.StartBatchRequest(changed_since=since,
                                                              force=True)).id)[-1].result  # fmt: skip
    assert (forced.created, forced.reused) == (2, 0)
    after = {k: (store / k).stat().st_mtime_ns for k in stills(store, "beta")}
    assert after.keys() == made.keys()
    assert [k.split("/")[1] for k in made if after[k] != made[k]] == ["SKU-0002", "SKU-0003"]


def test_start_refusals_unknown_batches_and_cancel(service, world, tmp_path):
    stub, _store, _, _ = service
    good = event(0, world / "g0.png", "gamma", "ref")
    bad_sku = event(1, world / "g0.png", "gamma", "ref")
    bad_sku.sku = "../etc"
    manifest = world / "bad.csv"  # under the fetch policy's file root
    manifest.write_text("merchant_id,sku,image_uri\ngamma,SKU-1,file:///x.png,extra\n")
    cases = {
        "BATCH_EMPTY": pb.StartBatchRequest(),
        "INVALID_EVENT": pb.StartBatchRequest(products=[good, bad_sku]),
        "DUPLICATE_EVENT_ID": pb.StartBatchRequest(products=[good, good]),
        "BATCH_SOURCE_CONFLICT": pb.StartBatchRequest(products=[good], manifest_uri="file:///x"),
        "MANIFEST_INVALID": pb.StartBatchRequest(manifest_uri=manifest.as_uri()),
        "MANIFEST_UNREADABLE": pb.StartBatchRequest(manifest_uri=(tmp_path / "no.csv").as_uri()),
        "BATCH_TOO_LARGE": pb.StartBatchRequest(
            products=[event(i, world / "g0.png", "gamma", "big") for i in range(251)]
        ),
    }
    for reason, req in cases.items():
        with pytest.raises(grpc.RpcError) as ei:
            stub.StartBatch(req)
        assert reason_of(ei.value) == (grpc.StatusCode.INVALID_ARGUMENT, reason), reason
    with pytest.raises(grpc.RpcError) as ei:
        stub.StartBatch(pb.StartBatchRequest(products=[good, bad_sku]))
    assert bad_field(ei.value) == "products[1].sku"
    for call in (stub.GetBatch, stub.CancelBatch):
        with pytest.raises(grpc.RpcError) as ei:
            call(operations_pb2.OperationRef(operation_id="nope"))
        assert reason_of(ei.value) == (grpc.StatusCode.NOT_FOUND, "OPERATION_NOT_FOUND")

    many = [event(i, world / f"g{i % 4}.png", "gamma", "cancel") for i in range(150)]
    op = stub.StartBatch(pb.StartBatchRequest(products=many))
    cancelled = stub.CancelBatch(operations_pb2.OperationRef(operation_id=op.id))
    assert cancelled.state == operations_pb2.OPERATION_STATE_CANCELLED
    last = watch(stub, op.id)[-1]
    assert last.operation.state == operations_pb2.OPERATION_STATE_CANCELLED
    states = collections.Counter(it.state for it in last.result.items)
    assert states[S.BATCH_ITEM_STATE_PENDING] > 0 and sum(states.values()) == 150
    assert stub.CancelBatch(operations_pb2.OperationRef(operation_id=op.id)).state == (
        operations_pb2.OPERATION_STATE_CANCELLED
    )  # idempotent


def test_cli_batch_from_a_csv_manifest_then_status(service, world, tmp_path):
    from services import cli

    _stub, store, server, port = service
    address = f"127.0.0.1:{port}"
    manifest = tmp_path / "shots.csv"
    rows = ["merchant_id,sku,image_uri,product_type,revision"]
    rows += [f"delta,TEE-{i},{(world / f'g{i % 4}.png').as_uri()},T-Shirt,1" for i in range(5)]
    rows.append(f"delta,TEE-X,{(world / 'nowhere.png').as_uri()},T-Shirt,1")
    manifest.write_text("\n".join(rows) + "\n")
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["catalog", "batch", str(manifest), "--server", address, "--quiet"])
    text = out.getvalue()
    assert code == 1, text  # one product failed
    assert "products 6  handled 6  failed 1" in text and "GARMENT_FETCH_FAILED" in text
    assert "delta/TEE-X" in text and "delta/TEE-0" not in text  # failures listed, not successes
    assert len(stills(store, "delta")) == 5

    op_id = _last_batch_id(server)
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["catalog", "status", op_id, "--server", address, "--all"])
    text = out.getvalue()
    assert code == 1 and "SUCCEEDED  6/6 handled, failed 1" in text, text
    assert text.count(" delta/TEE-") == 6  # --all: every product's line
    # A finished batch no longer held in memory is read back from the database.
    app = next(a for a in server.apps if a.name == "catalog")
    with app.batches._cond:
        app.batches._batches.pop(op_id)
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["catalog", "status", op_id, "--server", address]) == 1
    assert "SUCCEEDED  6/6 handled, failed 1" in out.getvalue() and "delta/TEE-X" in out.getvalue()
    out = io.StringIO()
    with redirect_stdout(out):
        code = cli.main(["catalog", "status", "no-such-batch", "--server", address])
    assert code == 1


def _last_batch_id(server) -> str:
    app = next(a for a in server.apps if a.name == "catalog")
    batches = app.batches._batches
    return max(batches.values(), key=lambda b: b.created).id


# ---------------------------------------------------------------------- processes


class ServeProcess:
    """``python -m services.cli serve catalog`` on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "DRAPE_GRPC_ADDRESS": f"127.0.0.1:{self.port}",
                    "DRAPE_METRICS_PORT": "-1", "DRAPE_LOG_FORMAT": "text"}  # fmt: skip
        self.log_path = log_path
        self.proc = None

    def start(self) -> ServeProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "catalog"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=self._log,
        )  # fmt: skip
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        health = health_pb2_grpc.HealthStub(self.channel)

        def serving():
            try:
                st = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
            except grpc.RpcError:
                return False
            return st == health_pb2.HealthCheckResponse.SERVING

        wait_for(serving, 120, interval=0.2, what="drape serve catalog to be SERVING")
        self.stub = pb_grpc.CatalogServiceStub(self.channel)
        return self

    def stop(self, kill: bool = False) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
        self.proc.wait(30)
        self._log.close()


def test_a_server_killed_mid_batch_resumes_it_after_restart_without_duplicates(world, tmp_path):
    env = env_settings(world, "crash")
    first = ServeProcess(env, tmp_path / "serve-1.log").start()
    second = None
    try:
        events = [event(i, world / f"g{i % 4}.png", "acme", "crash") for i in range(40)]
        op = first.stub.StartBatch(pb.StartBatchRequest(request_id="crash", products=events))
        ref = operations_pb2.OperationRef(operation_id=op.id)
        done = wait_for(lambda: (first.stub.GetBatch(ref).operation.progress.done >= 8
                                 and first.stub.GetBatch(ref).operation.progress.done),
                        120, interval=0.05, what="the batch to get going")  # fmt: skip
        first.stop(kill=True)  # SIGKILL: no drain, nothing saved on the way out
        assert done < 40, "the batch ended before the kill: the test tested nothing"
        store = world / "crash" / "store"
        before = {k: (store / k).stat().st_mtime_ns for k in stills(store, "acme")}

        second = ServeProcess(env, tmp_path / "serve-2.log").start()
        msgs = list(second.stub.WatchBatch(ref, timeout=300))
        last = msgs[-1]
        assert last.operation.state == SUCCEEDED and last.operation.id == op.id
        items = last.result.items
        assert [it.sku for it in items] == [ev.sku for ev in events]  # each once, in order
        assert all(it.state == S.BATCH_ITEM_STATE_SUCCEEDED for it in items)
        assert all(it.created + it.reused == 1 and len(it.asset_uris) == 1 for it in items)
        keys = stills(store, "acme")
        per_sku = collections.Counter(k.split("/")[1] for k in keys)
        assert len(per_sku) == 40 and set(per_sku.values()) == {1}  # nothing made twice
        assert {k: (store / k).stat().st_mtime_ns for k in before} == before  # not remade
        # Only products in flight at the kill (one per lane) may find their still made.
        assert last.result.created + last.result.reused == 40 and last.result.reused <= 2
        again = second.stub.StartBatch(pb.StartBatchRequest(request_id="crash", products=events))
        assert again.id == op.id and again.state == SUCCEEDED  # the request id survives too
    finally:
        for p in (first, second):
            if p is not None and p.proc.poll() is None:
                p.stop()
        for p in (first, second):
            if p is not None:
                print(f"--- {p.log_path.name}\n{p.log_path.read_text()[-3000:]}")


def test_replayed_dead_letters_make_their_assets_once_the_cause_is_fixed(
    service, world, broker, tmp_path
):
    from services import cli

    stub, _store, _, _ = service
    fixed_dir = world / "fixed"
    events = [event(i, fixed_dir / f"late{i}.png", "epsilon", "late") for i in range(3)]
    events.append(event(3, world / "g0.png", "epsilon", "late"))
    since = dt.datetime.now(dt.UTC) - dt.timedelta(milliseconds=5)
    res = watch(stub, stub.StartBatch(pb.StartBatchRequest(products=events, publish=True)).id)
    assert res[-1].result.failed == 3

    # The fix: the flat-lays arrive where the events point.
    fixed_dir.mkdir(exist_ok=True)
    for i in range(3):
        Image.fromarray(draw_sample_garment(i + 1, 160)).save(fixed_dir / f"late{i}.png")
    adapter_store = tmp_path / "adapter-store"
    adapter = AdapterProcess(
        broker.bootstrap, adapter_store,
        {"DRAPE_CATALOG_ROSTERS_FILE": str(world / "rosters.toml"),
         "DRAPE_CATALOG_FETCH_FILE_ROOT": str(world),
         "DRAPE_CATALOG_GROUP_ID": "replay-test"},
        tmp_path / "adapter.log",
    ).start()  # fmt: skip
    assets = TopicReader(broker.bootstrap, TOPIC_ASSET)
    try:
        out = io.StringIO()
        args = ["catalog", "replay-dlq", "--bootstrap", broker.bootstrap,
                "--reason", "GARMENT_FETCH_FAILED", "--since", since.isoformat()]  # fmt: skip
        with redirect_stdout(out):
            assert cli.main([*args, "--dry-run"]) == 0
        assert "would replay 3 of" in out.getvalue(), out.getvalue()
        with redirect_stdout(out):
            assert cli.main(args) == 0
        assert "replayed 3 of" in out.getvalue(), out.getvalue()
        ready = wait_for_assets(assets, {(ev.event_id, "astronaut") for ev in events[:3]}, 120)
        made = [a for a in ready if a.event_id in {ev.event_id for ev in events[:3]}]
        assert {a.sku for a in made} == {"SKU-0000", "SKU-0001", "SKU-0002"}
        assert all(Path(a.asset_uri.removeprefix("file://")).is_file() for a in made)
        future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
        out = io.StringIO()
        with redirect_stdout(out):
            assert cli.main(["catalog", "replay-dlq", "--bootstrap", broker.bootstrap,
                             "--since", future, "--dry-run"]) == 0  # fmt: skip
        assert "would replay 0 of" in out.getvalue()
    finally:
        assets.close()
        adapter.terminate(30)
        print(f"--- adapter\n{adapter.log_tail()}")


def test_manifests_parse_jsonl_and_csv_and_name_the_bad_line():
    from services.catalog_adapter.batches import read_manifest
    from services.common.errors import InvalidInputError

    ev = sample_event(1, "file:///g.png")
    jsonl = (json.dumps(json_format.MessageToDict(ev)) + "\n\n").encode()
    assert read_manifest(jsonl, "m.jsonl") == [ev]
    csv_text = ("merchant_id,sku,image_uri,product_type,revision,clips,image_uri_2,category_2\n"
                "acme,TEE-1,file:///a.png,t-shirt,3,yes,file:///b.png,bottom\n")  # fmt: skip
    (row,) = read_manifest(csv_text.encode(), "m.CSV")
    assert (row.event_id, row.revision, row.deliverables.stills, row.deliverables.clips) == (
        "acme.TEE-1.r3", 3, True, True)  # fmt: skip
    assert [g.image_uri for g in row.garments] == ["file:///a.png", "file:///b.png"]
    assert row.garments[0].product_type == "t-shirt" and row.garments[1].category == 2
    bad = {
        "m.jsonl": b'{"sku": "A"}\n{"nope": 1}\n',
        "a.csv": b"merchant_id,sku\nacme,A\n",
        "b.csv": b"merchant_id,sku,image_uri,colour\n",
        "c.csv": b"merchant_id,sku,image_uri,revision\nacme,A,file:///a.png,two\n",
        "d.csv": b"merchant_id,sku,image_uri,clips\nacme,A,file:///a.png,maybe\n",
        "e.jsonl": b"\xff\xfe",
    }
    lines = {"m.jsonl": "manifest line 2", "c.csv": "manifest line 2", "d.csv": "manifest line 2"}
    for name, data in bad.items():
        with pytest.raises(InvalidInputError) as ei:
            read_manifest(data, name)
        assert ei.value.reason == "MANIFEST_INVALID", name
        if name in lines:
            assert ei.value.field == lines[name], (name, ei.value.field)
