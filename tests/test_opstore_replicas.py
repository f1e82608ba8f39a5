"""Operation state shared by replicas: two real animate server processes behind one
(S3, moto's server on loopback) operation store. A clip started on one is watched, read,
deduplicated and cancelled through the other; and the same across two managers on a
shared file:// store."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from skimage import data

from drape.animate.v1 import animate_service_pb2 as pb
from drape.animate.v1 import animate_service_pb2_grpc as pb_grpc
from drape.common.v1 import common_pb2, operations_pb2
from services.catalog_adapter.store import FileStore
from services.common.errors import NotFoundError
from services.common.kafka import free_port
from services.common.operations import AlreadyExistsError, OperationManager
from services.common.opstore import OperationStore

from helpers import error_details, png

S = operations_pb2.OperationState
ASTRONAUT = png(data.astronaut())
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Replica:
    """``drape serve animate`` in a child process on a free loopback port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "animate"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("DRAPE_")}, **env,
                 "DRAPE_GRPC_ADDRESS": f"127.0.0.1:{self.port}", "DRAPE_METRICS_PORT": "-1",
                 "DRAPE_DRAIN_DELAY_SECONDS": "0"},
        )  # fmt: skip
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{self.port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        self.stub = pb_grpc.AnimateServiceStub(self.channel)

    def wait_ready(self, timeout: float = 180.0) -> None:
        health = health_pb2_grpc.HealthStub(self.channel)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"replica exited: {self.log.read()[-3000:]!r}")
            try:
                resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
        raise RuntimeError("replica did not become ready")

    def stop(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def replicas(s3_server):
    bucket = s3_server.bucket("drape-operations")
    env = {**s3_server.env(), "DRAPE_OPERATION_STORE": f"s3://{bucket}/replicas"}
    a, b = Replica(env), Replica(env)
    try:
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.stop()
        b.stop()


def clip_request(request_id: str, seconds: float = 0.5, side: int = 128) -> pb.StartClipRequest:
    return pb.StartClipRequest(
        request_id=request_id, still=common_pb2.Image(data=ASTRONAUT),
        template_name="idle-sway-upper", fps=8, width=side, height=side,
        duration_seconds=seconds,
    )  # fmt: skip


def test_watch_and_get_on_the_other_replica(replicas):
    a, b = replicas
    op = a.stub.StartClip(clip_request("replica-1"), timeout=30)
    ref = operations_pb2.OperationRef(operation_id=op.id)
    msgs = list(b.stub.WatchClip(ref, timeout=120))
    final = msgs[-1]
    assert final.operation.state == S.OPERATION_STATE_SUCCEEDED, final.operation.error
    assert final.operation.id == op.id and final.result.clip.data
    assert final.operation.progress.done == final.operation.progress.total == 4
    got_b = b.stub.GetClip(ref, timeout=30)
    got_a = a.stub.GetClip(ref, timeout=30)
    assert got_b.operation.state == S.OPERATION_STATE_SUCCEEDED
    assert got_b.result.clip.data == got_a.result.clip.data == final.result.clip.data
    assert got_b.result == got_a.result  # the whole ClipResult, poster and all


def test_request_ids_are_deduplicated_across_replicas(replicas):
    a, b = replicas
    first = a.stub.StartClip(clip_request("replica-dedupe"), timeout=30)
    again = b.stub.StartClip(clip_request("replica-dedupe"), timeout=30)
    assert again.id == first.id  # a retry that landed elsewhere: the same operation
    with pytest.raises(grpc.RpcError) as ei:
        b.stub.StartClip(clip_request("replica-dedupe", seconds=0.75), timeout=30)
    assert ei.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_details(ei.value)[0] == "REQUEST_ID_REUSED"
    list(b.stub.WatchClip(operations_pb2.OperationRef(operation_id=first.id), timeout=120))


def test_cancel_through_the_other_replica(replicas):
    a, b = replicas
    # Long enough to be running when the cancel arrives: the runner reads cancels that
    # reached the other replica from the store at most once a second, and a 20 s clip of
    # 384 px, its arms kept still, now renders in about that time.
    op = a.stub.StartClip(clip_request("replica-cancel", seconds=30, side=768), timeout=30)
    ref = operations_pb2.OperationRef(operation_id=op.id)
    watched: list = []
    t = threading.Thread(target=lambda: watched.extend(b.stub.WatchClip(ref, timeout=120)))
    t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until B has seen it running
        if b.stub.GetClip(ref, timeout=30).operation.state == S.OPERATION_STATE_RUNNING:
            break
        time.sleep(0.2)
    b.stub.CancelClip(ref, timeout=30)
    t.join(120)
    final = watched[-1].operation
    assert final.state == S.OPERATION_STATE_CANCELLED
    assert final.progress.done < final.progress.total
    assert a.stub.GetClip(ref, timeout=30).operation.state == S.OPERATION_STATE_CANCELLED


def test_unknown_ids_are_not_found_on_every_replica(replicas):
    for r in replicas:
        with pytest.raises(grpc.RpcError) as ei:
            r.stub.GetClip(operations_pb2.OperationRef(operation_id="B" * 24), timeout=30)
        assert ei.value.code() == grpc.StatusCode.NOT_FOUND


def test_managers_share_a_file_store(tmp_path):
    store = OperationStore(FileStore(tmp_path / "ops"))
    codec = {"encode": str.encode, "decode": bytes.decode}
    a = OperationManager(store=store, **codec)
    b = OperationManager(store=OperationStore(FileStore(tmp_path / "ops")), **codec)
    gate = threading.Event()

    def work(handle):
        for i in range(3):
            handle.progress(i + 1, 3, "render")
        gate.wait(10)
        return "the clip"

    op = a.start(work, request_id="r-1", owner="alice", fingerprint="f")
    assert b.start(lambda h: "x", request_id="r-1", owner="alice", fingerprint="f").id == op.id
    with pytest.raises(AlreadyExistsError):
        b.start(lambda h: "x", request_id="r-1", owner="alice", fingerprint="g")
    with pytest.raises(NotFoundError):
        b.get(op.id, "bob")
    for hostile in ("../../../etc/passwd", "a/b", "", "x" * 65, ".", "ops\n"):
        with pytest.raises(NotFoundError):  # never a key, never an INTERNAL
            b.get(hostile, "alice")
    gate.set()
    final, result = list(b.watch(op.id, owner="alice"))[-1]
    assert final.state == S.OPERATION_STATE_SUCCEEDED and result == "the clip"
    assert b.get(op.id, "alice")[1] == "the clip"
    a.shutdown()
    b.shutdown()


def test_an_operation_whose_replica_died_reads_as_lost(tmp_path):
    store = OperationStore(FileStore(tmp_path / "ops"))
    codec = {"encode": str.encode, "decode": bytes.decode}
    reader = OperationManager(store=store, **codec)
    now = time.time()
    # What a replica killed mid-clip leaves: a RUNNING record that nobody writes any more.
    store.save({
        "id": "x" * 24, "request_id": "r", "owner": "", "fingerprint": "f",
        "state": S.OPERATION_STATE_RUNNING, "done": 3, "total": 10, "stage": "render",
        "created": now - 400, "updated": now - 300, "finished": None, "version": 7,
        "started": now - 399, "beat": now - 300, "experiment": None, "error": None,
    })  # fmt: skip
    op, result = reader.get("x" * 24)
    assert op.state == S.OPERATION_STATE_FAILED and result is None
    assert b"OPERATION_LOST" in op.error.details[0].value
    final, _ = list(reader.watch("x" * 24))[-1]  # a watcher is not left waiting for ever
    assert final.state == S.OPERATION_STATE_FAILED
    reader.shutdown()
