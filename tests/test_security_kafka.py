"""Kafka transport security: the client configuration for SSL, SASL_PLAINTEXT and SASL_SSL
with PLAIN and SCRAM, and TLS end to end on loopback.

The bundled Tansu 0.6.0 broker has no working TLS listener (``--cert`` starts none) and
its ``--authentication`` needs SCRAM users that only an authenticated client can create,
so SASL cannot be exercised against it. TLS is: a TLS front on loopback (Python's ``ssl``
with a certificate made in the test) relays to the broker, which advertises the front, so
every client connection runs through a verified TLS handshake.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError
from test_security_grpc import make_ca, make_leaf

from services.common.config import load_settings
from services.common.errors import ConfigError
from services.common.kafka import TansuBroker, client_config, ensure_topics

# ---------------------------------------------------------------------------- configuration


def cfg(**env: str) -> dict:
    return client_config(load_settings(env={f"DRAPE_KAFKA_{k.upper()}": v for k, v in env.items()}))


def test_plaintext_by_default():
    assert cfg()["security_protocol"] == "PLAINTEXT"
    assert "sasl_mechanism" not in cfg()


def test_username_alone_keeps_the_old_sasl_plaintext():
    c = cfg(sasl_username="u", sasl_password="p")
    assert c["security_protocol"] == "SASL_PLAINTEXT"
    assert (c["sasl_mechanism"], c["sasl_plain_username"], c["sasl_plain_password"]) == (
        "PLAIN",
        "u",
        "p",
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_with_each_mechanism(tmp_path, mechanism):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    c = cfg(
        sasl_username="drape",
        sasl_password="pw",
        sasl_mechanism=mechanism,
        ssl_ca_file=str(ca),
    )
    assert c["security_protocol"] == "SASL_SSL"  # auto: a username and a CA file
    assert c["sasl_mechanism"] == mechanism
    assert c["ssl_cafile"] == str(ca)
    assert c["ssl_check_hostname"] is True
    # kafka-python accepts the whole configuration (it validates names and mechanisms).
    from kafka.net.sasl import get_sasl_mechanism

    assert get_sasl_mechanism(mechanism) is not None


def test_ssl_with_client_certificate_and_no_hostname_check(tmp_path):
    files = {}
    for name in ("ca", "cert", "key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text("x")
    c = cfg(
        security_protocol="SSL",
        ssl_ca_file=str(files["ca"]),
        ssl_cert_file=str(files["cert"]),
        ssl_key_file=str(files["key"]),
        ssl_check_hostname="false",
    )
    assert c["security_protocol"] == "SSL"
    assert (c["ssl_cafile"], c["ssl_certfile"], c["ssl_keyfile"]) == tuple(
        str(files[n]) for n in ("ca", "cert", "key")
    )
    assert c["ssl_check_hostname"] is False
    assert "sasl_mechanism" not in c


def test_explicit_sasl_ssl_with_system_roots():
    c = cfg(security_protocol="SASL_SSL", sasl_username="u", sasl_password="p")
    assert c["security_protocol"] == "SASL_SSL"
    assert "ssl_cafile" not in c


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"security_protocol": "SASL_SSL"}, "DRAPE_KAFKA_SASL_USERNAME"),
        ({"sasl_username": "u"}, "DRAPE_KAFKA_SASL_PASSWORD"),
        ({"ssl_cert_file": "c.pem"}, "DRAPE_KAFKA_SSL_KEY_FILE"),
        ({"sasl_mechanism": "GSSAPI"}, "DRAPE_KAFKA_SASL_MECHANISM"),
        ({"security_protocol": "TLS"}, "DRAPE_KAFKA_SECURITY_PROTOCOL"),
    ],
)
def test_incomplete_kafka_security_is_refused(env, setting):
    with pytest.raises(ConfigError) as err:
        cfg(**env)
    assert err.value.setting == setting


def test_missing_ca_file_and_tls_files_on_plaintext_are_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        cfg(security_protocol="SSL", ssl_ca_file=str(tmp_path / "none.pem"))
    assert err.value.setting == "DRAPE_KAFKA_SSL_CA_FILE"
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError) as err:
        cfg(security_protocol="PLAINTEXT", ssl_ca_file=str(ca))
    assert err.value.setting == "DRAPE_KAFKA_SECURITY_PROTOCOL"


def test_kafka_password_never_printed():
    s = load_settings(
        env={"DRAPE_KAFKA_SASL_USERNAME": "u", "DRAPE_KAFKA_SASL_PASSWORD": "hunter2-secret"}
    )
    assert "hunter2-secret" not in str(s.redacted())


# ---------------------------------------------------------------------------- TLS end to end


class TlsFront:
    """Terminates TLS on a loopback port and relays each connection to ``target``."""

    def __init__(self, cert, key) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.target = 0
        self.handshakes = 0
        self.failures = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, target: int) -> TlsFront:
        self.target = target
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._relay, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _relay(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.failures += 1
            conn.close()
            return
        self.handshakes += 1
        with tls, socket.create_connection(("127.0.0.1", self.target), timeout=10) as up:
            tls.settimeout(None)
            up.settimeout(None)
            while not self._stop.is_set():
                ready = [tls] if tls.pending() else select.select([tls, up], [], [], 0.2)[0]
                try:
                    for src, dst in ((tls, up), (up, tls)):
                        if src in ready:
                            data = src.recv(65536)
                            if not data:
                                return
                            dst.sendall(data)
                except (OSError, ssl.SSLError):
                    return

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    d = tmp_path_factory.mktemp("kafka-pki")
    ca = make_ca(d, "kafka-ca")
    other = make_ca(d, "other-ca")
    cert, key = make_leaf(d, ca, "broker", "localhost", True)
    front = TlsFront(cert, key)
    broker = TansuBroker(advertised_port=front.port).start()
    front.start(broker.port)
    try:
        yield {"front": front, "broker": broker, "ca": str(ca[0]), "other": str(other[0])}
    finally:
        front.stop()
        broker.stop()


def tls_settings(ca: str, **more: str):
    env = {"DRAPE_KAFKA_SECURITY_PROTOCOL": "SSL", "DRAPE_KAFKA_SSL_CA_FILE": ca, **more}
    return load_settings(env=env)


def test_kafka_over_tls_produces_and_consumes(tls_broker):
    front = tls_broker["front"]
    bootstrap = f"127.0.0.1:{front.port}"
    settings = tls_settings(tls_broker["ca"])
    topic = f"tls-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {topic: 1}, settings=settings)
    producer = KafkaProducer(acks="all", **client_config(settings, bootstrap))
    try:
        producer.send(topic, b"over tls").get(timeout=20)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic,
        auto_offset_reset="earliest",
        consumer_timeout_ms=20000,
        **client_config(settings, bootstrap),
    )
    try:
        got = next(iter(consumer)).value
    finally:
        consumer.close()
    assert got == b"over tls"
    assert front.handshakes >= 2  # every connection went through a TLS handshake


def test_kafka_tls_refuses_a_broker_from_another_ca(tls_broker):
    front = tls_broker["front"]
    before = front.failures
    settings = tls_settings(tls_broker["other"])
    with pytest.raises(KafkaError):
        producer = KafkaProducer(
            max_block_ms=3000,
            bootstrap_timeout_ms=3000,
            **client_config(settings, f"127.0.0.1:{front.port}"),
        )
        with contextlib.closing(producer):
            producer.send("never", b"x").get(timeout=5)
    assert front.failures > before  # refused in the handshake, nothing sent


def test_kafka_plaintext_client_gets_nothing_from_a_tls_port(tls_broker):
    front = tls_broker["front"]
    with pytest.raises(KafkaError):
        producer = KafkaProducer(
            max_block_ms=3000,
            bootstrap_timeout_ms=3000,
            **client_config(None, f"127.0.0.1:{front.port}"),
        )
        with contextlib.closing(producer):
            producer.send("never", b"x").get(timeout=5)
