"""Fixtures: in-process gRPC servers on port 0 with real channels, and a real Kafka-protocol
broker (Tansu) started once for the test session on a free loopback port."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
# botocore's credential chain would otherwise ask the link-local instance-metadata address
# when a test leaves the keys empty: tests talk to loopback only.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

from services.common.config import load_settings  # noqa: E402
from services.common.kafka import TansuBroker  # noqa: E402
from services.common.server import create_server  # noqa: E402


@pytest.fixture
def make_server():
    """Factory: ``make_server(*apps, **setting_overrides) -> (server, channel)``; the server
    is started and ready, metrics on a free port; everything stops after the test."""
    started = []

    def factory(*apps, wait_ready: bool = True, **overrides):
        overrides.setdefault("metrics_port", 0)
        overrides.setdefault("grpc_address", "127.0.0.1:0")
        settings = load_settings(env={}, **overrides)
        server, port = create_server("127.0.0.1:0", *apps, settings=settings)
        server.start()
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_receive_message_length", 256 * 1024 * 1024),
                ("grpc.max_send_message_length", 256 * 1024 * 1024),
            ],
        )
        started.append((server, channel))
        if wait_ready:
            assert server.wait_ready(30), f"server did not become ready: {server.load_error}"
        return server, channel

    yield factory
    for server, channel in started:
        channel.close()
        server.stop(0)


@pytest.fixture(scope="session")
def kafka_broker():
    """A real Tansu broker on a free port for the whole session."""
    broker = TansuBroker().start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto's server mode) on a free loopback port for the whole session;
    see tests/s3server.py."""
    from s3server import MotoS3

    server = MotoS3().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session: ``initdb`` + ``pg_ctl`` from the Debian
    binaries (``/usr/lib/postgresql/<version>/bin``) in a temporary directory, listening on
    127.0.0.1 only, trust authentication. Yields ``(host, port, user)``; create a database
    per test (``CREATE DATABASE``) to keep tests apart. Run as the ``postgres`` user when
    the tests run as root (initdb refuses root)."""
    import glob
    import os
    import shutil
    import subprocess
    import tempfile

    from services.common.kafka import free_port, wait_for_port

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert bins, "PostgreSQL server binaries are missing: apt-get install postgresql"
    bindir = os.path.dirname(bins[-1])
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as
    # the postgres user.
    root = Path(tempfile.mkdtemp(prefix="drape-pg-"))
    data = root / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*prefix, f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres",
         "--no-sync", "-E", "UTF8"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={root} -c fsync=off"
    subprocess.run(
        [*prefix, f"{bindir}/pg_ctl", "-D", str(data), "-o", opts, "-l", str(root / "log"),
         "-w", "-t", "60", "start"],
        check=True, capture_output=True, timeout=90,
    )  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", port, 30), "PostgreSQL did not listen"
        yield ("127.0.0.1", port, "postgres")
    finally:
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)
