"""The bundled Tansu broker keeping its log in S3 (``--storage-engine s3://…``, on moto's
server on loopback): records and committed group offsets survive a broker killed with
SIGKILL and started again, with nothing re-published."""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from s3server import ACCESS_KEY, REGION, SECRET_KEY

from services.common.kafka import (
    client_config,
    ensure_topics,
    free_port,
    tansu_binary,
    wait_for_port,
)

pytestmark = pytest.mark.kafka
TOPIC = "durable.events.v1"


class DurableBroker:
    """Tansu on a fixed loopback port with its storage in an S3 bucket."""

    def __init__(self, s3_endpoint: str, bucket: str) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.s3_endpoint, self.bucket = s3_endpoint, bucket
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> DurableBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in kill()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            RUST_LOG="warn", AWS_ENDPOINT=self.s3_endpoint, AWS_ALLOW_HTTP="true",
            AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION,
        )  # fmt: skip
        self.proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", f"s3://{self.bucket}/"],
            stdout=subprocess.DEVNULL, stderr=self._log, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"tansu exited: {self._log.read()[-2000:]!r}")
            if wait_for_port("127.0.0.1", self.port, 0.2):
                return self
        self.kill()
        raise RuntimeError("tansu did not listen")

    def kill(self) -> None:
        """SIGKILL: no shutdown path runs, so only what already reached S3 survives."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        self.proc = None


@pytest.fixture
def broker(s3_server):
    # A new bucket each time: the S3 server lives for the whole session, and the broker's
    # log must start empty.
    b = DurableBroker(s3_server.endpoint, s3_server.bucket(f"drape-tansu-{secrets.token_hex(4)}"))
    yield b.start()
    b.kill()


def produce(bootstrap: str, values: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(**client_config(bootstrap=bootstrap), acks="all", linger_ms=0)
    try:
        for v in values:
            producer.send(TOPIC, value=v, key=v).get(timeout=30)  # acknowledged, one by one
    finally:
        producer.close(timeout=10)


def consume(bootstrap: str, want: int, group: str | None = None, timeout: float = 30.0):
    """``(offset, value)`` of the records of partition 0: from ``group``'s committed offset
    (committing what was read), or from the start without a group. Reads ``want``, then
    waits a little longer to catch any record beyond them."""
    tp = TopicPartition(TOPIC, 0)
    consumer = KafkaConsumer(
        **client_config(bootstrap=bootstrap), group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )  # fmt: skip
    consumer.assign([tp])  # no group membership to join: a fixed partition
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    settle = None
    try:
        while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
            for records in consumer.poll(timeout_ms=300).values():
                got += [(r.offset, r.value) for r in records]
            if len(got) >= want and settle is None:
                settle = time.monotonic() + 1.5
        if group is not None and got:
            consumer.commit()
    finally:
        consumer.close()
    return got


def test_records_and_offsets_survive_a_killed_broker(broker):
    ensure_topics(broker.bootstrap, {TOPIC: 1}, timeout=30)
    sent = [f"event-{i}".encode() for i in range(12)]
    produce(broker.bootstrap, sent)
    assert consume(broker.bootstrap, len(sent)) == list(enumerate(sent))
    # The adapters' group has done five (kafka-python fetches ahead, so the offset is
    # committed through the offsets API rather than by reading exactly five).
    tp = TopicPartition(TOPIC, 0)
    committer = KafkaConsumer(**client_config(bootstrap=broker.bootstrap), group_id="adapters")
    committer.assign([tp])
    committer.commit({tp: OffsetAndMetadata(5, "", -1)})
    assert committer.committed(tp) == 5
    committer.close()

    broker.kill()
    broker.start()  # same address, same bucket; nothing is published again

    # A reader without a group reads the whole log back: every record, once, in order, at
    # the same offsets.
    replay = consume(broker.bootstrap, len(sent))
    assert [v for _o, v in replay] == sent
    assert [o for o, _v in replay] == list(range(len(sent)))
    # The group that had committed resumes where it stopped.
    rest = consume(broker.bootstrap, len(sent) - 5, group="adapters")
    assert rest == [(o, sent[o]) for o in range(5, len(sent))]
    # And the log goes on after the restart rather than starting over.
    produce(broker.bootstrap, [b"after-restart"])
    tail = consume(broker.bootstrap, 1, group="adapters")
    assert tail == [(len(sent), b"after-restart")]
