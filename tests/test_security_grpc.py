"""gRPC transport security on loopback with certificates made in the test (``openssl``):
TLS, mTLS, rotation without restart, bearer tokens, and the caller's identity."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import load_settings
from services.common.errors import ConfigError
from services.common.security import caller_identity, client_channel, parse_tokens
from services.common.server import ServiceApp, create_server

# ---------------------------------------------------------------------------- certificates


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: ``(cert, key)``."""
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    return d / f"{name}.pem", d / f"{name}.key"


def make_leaf(
    d: Path, ca: tuple[Path, Path], name: str, cn: str, server: bool
) -> tuple[Path, Path]:
    """A certificate for ``cn`` signed by ``ca`` (server: SAN localhost and 127.0.0.1)."""
    ext = d / f"{name}.ext"
    usage = "serverAuth" if server else "clientAuth"
    san = "DNS:localhost,IP:127.0.0.1" if server else f"DNS:{cn}"
    ext.write_text(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\nsubjectAltName={san}\n")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", str(ext),
        cwd=d,
    )  # fmt: skip
    return d / f"{name}.pem", d / f"{name}.key"


def replace(src: Path, dst: Path) -> None:
    """Rotate ``dst`` to ``src``'s content the way a secret mount does: atomically."""
    tmp = dst.with_suffix(".tmp")
    tmp.write_bytes(src.read_bytes())
    os.replace(tmp, dst)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Two unrelated CAs, server certificates from each, client certificates."""
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "ca")
    other = make_ca(d, "other-ca")
    return {
        "dir": d,
        "ca": ca,
        "other": other,
        "server": make_leaf(d, ca, "server", "localhost", True),
        "server_other": make_leaf(d, other, "server-other", "localhost", True),
        "client": make_leaf(d, ca, "client", "shop-backend", False),
        "client_other": make_leaf(d, other, "client-other", "intruder", False),
    }


# ---------------------------------------------------------------------------- a server


class WhoApp(ServiceApp):
    """``test.Who/Am`` answers the caller's identity (raw bytes, no proto)."""

    name = "who"

    def register(self, server, ctx):
        def am(request, context):
            return caller_identity(context).encode()

        def watch(request, context):
            for _ in range(2):
                yield caller_identity(context).encode()

        handlers = {
            "Am": grpc.unary_unary_rpc_method_handler(am),
            "Watch": grpc.unary_stream_rpc_method_handler(watch),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Who", handlers),)
        )
        return ["test.Who"]


@pytest.fixture
def serve():
    """Factory: ``serve(**setting_overrides) -> port`` of a started server."""
    started = []

    def factory(**overrides):
        settings = load_settings(env={}, metrics_port=-1, **overrides)
        server, port = create_server("127.0.0.1:0", WhoApp(), settings=settings)
        server.start()
        started.append(server)
        return port

    yield factory
    for server in started:
        server.stop(0)


def channel(port: int, **client) -> grpc.Channel:
    return client_channel(
        f"127.0.0.1:{port}",
        load_settings(env={}, **client),
        # Each channel its own connection (and handshake), as separate processes have.
        options=[("grpc.so_reuseport", 0), ("grpc.use_local_subchannel_pool", 1)],
    )


def who(ch: grpc.Channel, timeout: float = 10) -> str:
    return ch.unary_unary("/test.Who/Am")(b"", timeout=timeout).decode()


def reason_of(err: grpc.RpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason
    return ""


def health(ch: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(ch)
    return stub.Check(health_pb2.HealthCheckRequest(service="liveness"), timeout=10).status


def tls_server(pki, mutual: bool = False, **more):
    cert, key = pki["server"]
    kw = {"tls_cert_file": str(cert), "tls_key_file": str(key)}
    if mutual:
        kw["tls_client_ca_file"] = str(pki["ca"][0])
    return {**kw, **more}


# ---------------------------------------------------------------------------- TLS


def test_tls_handshake_and_identity_empty_without_authentication(serve, pki):
    port = serve(**tls_server(pki))
    with channel(port, client_ca_file=str(pki["ca"][0])) as ch:
        assert who(ch) == ""  # TLS only: the caller is not authenticated


def test_tls_refuses_a_client_that_trusts_another_ca(serve, pki):
    port = serve(**tls_server(pki))
    ch = channel(port, client_ca_file=str(pki["other"][0]))
    with ch, pytest.raises(grpc.RpcError) as err:
        who(ch, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_server_refuses_plaintext_client(serve, pki):
    port = serve(**tls_server(pki))
    with channel(port) as ch, pytest.raises(grpc.RpcError) as err:
        who(ch, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_server_name_override(serve, pki):
    # The certificate names localhost and 127.0.0.1; a client that must check another name
    # fails, and the override setting is what it checks.
    port = serve(**tls_server(pki))
    ca = str(pki["ca"][0])
    ch = channel(port, client_ca_file=ca, client_tls_server_name="drape.example")
    with ch, pytest.raises(grpc.RpcError):
        who(ch, timeout=5)
    with channel(port, client_ca_file=ca, client_tls_server_name="localhost") as ch:
        assert who(ch) == ""


# ---------------------------------------------------------------------------- mTLS


def test_mtls_client_certificate_names_the_caller(serve, pki):
    port = serve(**tls_server(pki, mutual=True))
    cert, key = pki["client"]
    with channel(
        port, client_ca_file=str(pki["ca"][0]), client_cert_file=str(cert), client_key_file=str(key)
    ) as ch:
        assert who(ch) == "shop-backend"


def test_mtls_refuses_a_client_without_certificate(serve, pki):
    port = serve(**tls_server(pki, mutual=True))
    ch = channel(port, client_ca_file=str(pki["ca"][0]))
    with ch, pytest.raises(grpc.RpcError) as err:
        who(ch, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_refuses_a_certificate_from_another_ca(serve, pki):
    port = serve(**tls_server(pki, mutual=True))
    cert, key = pki["client_other"]
    with (
        channel(
            port,
            client_ca_file=str(pki["ca"][0]),
            client_cert_file=str(cert),
            client_key_file=str(key),
        ) as ch,
        pytest.raises(grpc.RpcError) as err,
    ):
        who(ch, timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_health_port_for_probes_beside_mtls(pki):
    # Kubernetes' gRPC probes cannot speak TLS: DRAPE_HEALTH_PORT serves health alone in
    # plaintext, following the server's readiness, while every other service stays behind
    # mTLS.
    settings = load_settings(env={}, metrics_port=-1, health_port=0, **tls_server(pki, True))
    server, port = create_server("127.0.0.1:0", WhoApp(), settings=settings)
    server.start()
    try:
        assert server.wait_ready(30)
        with grpc.insecure_channel(f"127.0.0.1:{server.health_port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            ready = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert ready.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as err:
                who(ch)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # health only
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
            with pytest.raises(grpc.RpcError) as err:
                next(watch)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED  # no long-lived calls
            # Draining: NOT_SERVING while the delay lets load balancers notice.
            threading.Thread(target=server.drain, kwargs={"grace": 0, "delay": 3}).start()
            server.draining.wait(10)
            ready = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert ready.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        server.stop(0)


# ---------------------------------------------------------------------------- rotation


def test_server_certificate_rotation_without_restart(serve, pki, tmp_path, caplog):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    replace(pki["server"][0], cert)
    replace(pki["server"][1], key)
    port = serve(tls_cert_file=str(cert), tls_key_file=str(key))
    new_ca = str(pki["other"][0])
    with channel(port, client_ca_file=new_ca) as ch, pytest.raises(grpc.RpcError):
        who(ch, timeout=5)  # the server still shows the first CA's certificate
    # A half-done rotation (new certificate, old key) is not taken: handshakes go on with
    # the old pair.
    replace(pki["server_other"][0], cert)
    with caplog.at_level(logging.WARNING, logger="drape.security"):
        for _ in range(3):  # new connections, each a handshake
            with channel(port, client_ca_file=str(pki["ca"][0])) as ch:
                assert who(ch) == ""
    half = [r for r in caplog.records if "cannot be used yet" in r.getMessage()]
    assert len(half) == 1  # said once, not at every handshake
    replace(pki["server_other"][1], key)  # rotation complete
    with channel(port, client_ca_file=new_ca) as ch:
        assert who(ch) == ""
    with channel(port, client_ca_file=str(pki["ca"][0])) as ch, pytest.raises(grpc.RpcError):
        who(ch, timeout=5)


def test_client_certificate_rotation_without_new_channel(serve, pki, tmp_path):
    port = serve(**tls_server(pki, mutual=True))
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    replace(pki["client_other"][0], cert)  # not trusted by the server
    replace(pki["client_other"][1], key)
    ch = channel(
        port, client_ca_file=str(pki["ca"][0]), client_cert_file=str(cert), client_key_file=str(key)
    )
    call = ch.unary_unary("/test.Who/Am")  # made once, like a stub
    with pytest.raises(grpc.RpcError):
        call(b"", timeout=5)
    replace(pki["client"][0], cert)
    replace(pki["client"][1], key)
    assert call(b"", timeout=10) == b"shop-backend"
    assert ch.generation == 1
    ch.close()


def test_client_ca_rotation_picked_up_by_the_server(serve, pki, tmp_path):
    client_ca = tmp_path / "client-ca.pem"
    replace(pki["other"][0], client_ca)
    port = serve(**tls_server(pki, tls_client_ca_file=str(client_ca)))
    cert, key = pki["client"]
    kw = {"client_ca_file": str(pki["ca"][0]), "client_cert_file": str(cert)}
    with channel(port, client_key_file=str(key), **kw) as ch, pytest.raises(grpc.RpcError):
        who(ch, timeout=5)
    replace(pki["ca"][0], client_ca)
    with channel(port, client_key_file=str(key), **kw) as ch:
        assert who(ch) == "shop-backend"


# ---------------------------------------------------------------------------- tokens


def write_tokens(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


GOOD = "s3cret-token-of-shop-0123456789"
OTHER = "another-token-for-the-batch-job-42"


@pytest.fixture
def token_server(serve, tmp_path):
    tokens = tmp_path / "tokens"
    write_tokens(tokens, f"# callers\nshop:{GOOD}\n\nbatch:{OTHER}\n")
    small = {"max_message_bytes": 1 << 20, "max_image_bytes": 1 << 19, "max_video_bytes": 1 << 19}
    return serve(auth_tokens_file=str(tokens), **small), tokens


def token_channel(port: int, tmp_path: Path, token: str) -> grpc.Channel:
    f = tmp_path / f"client-token-{abs(hash(token))}"
    f.write_text(token + "\n")
    return channel(port, client_token_file=str(f))


def test_token_ok_names_the_caller(token_server, tmp_path):
    port, _ = token_server
    with token_channel(port, tmp_path, GOOD) as ch:
        assert who(ch) == "shop"
    with token_channel(port, tmp_path, OTHER) as ch:
        assert who(ch) == "batch"


def test_token_names_the_caller_in_streams_too(token_server, tmp_path):
    port, _ = token_server
    with token_channel(port, tmp_path, GOOD) as ch:
        assert list(ch.unary_stream("/test.Who/Watch")(b"", timeout=10)) == [b"shop", b"shop"]


def test_token_refusals_are_counted(tmp_path):
    tokens = tmp_path / "tokens"
    write_tokens(tokens, f"shop:{GOOD}\n")
    settings = load_settings(env={}, metrics_port=-1, auth_tokens_file=str(tokens))
    server, port = create_server("127.0.0.1:0", WhoApp(), settings=settings)
    server.start()
    try:
        with channel(port) as ch, pytest.raises(grpc.RpcError):
            who(ch)
    finally:
        server.stop(0)
    labels = {
        "grpc_service": "(unauthenticated)",
        "grpc_method": "(any)",
        "grpc_code": "UNAUTHENTICATED",
    }
    value = server.metrics.registry.get_sample_value(
        "drape_rpc_errors_total", {**labels, "reason": "TOKEN_MISSING"}
    )
    assert value == 1


def test_token_missing_is_unauthenticated_with_reason(token_server):
    port, _ = token_server
    with channel(port) as ch, pytest.raises(grpc.RpcError) as err:
        who(ch)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(err.value) == "TOKEN_MISSING"


@pytest.mark.parametrize("header", [f"Bearer {GOOD}x", f"Basic {GOOD}", "Bearer", GOOD[:-1]])
def test_token_wrong_is_unauthenticated_with_reason(token_server, header):
    port, _ = token_server
    with channel(port) as ch, pytest.raises(grpc.RpcError) as err:
        ch.unary_unary("/test.Who/Am")(b"", timeout=10, metadata=[("authorization", header)])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(err.value) == "TOKEN_INVALID"


def test_health_needs_no_token(token_server):
    port, _ = token_server
    with channel(port) as ch:
        assert health(ch) == health_pb2.HealthCheckResponse.SERVING


def test_unknown_method_without_token_is_unauthenticated(token_server):
    # No probing for which methods exist without a token.
    port, _ = token_server
    with channel(port) as ch, pytest.raises(grpc.RpcError) as err:
        ch.unary_unary("/test.Nope/Nothing")(b"", timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_unauthenticated_body_is_refused_before_it_is_read(token_server):
    # 2 MiB is over the server's 1 MiB message limit: had the body been received, the call
    # would end RESOURCE_EXHAUSTED; refused from the headers, it ends UNAUTHENTICATED.
    port, _ = token_server
    with channel(port) as ch, pytest.raises(grpc.RpcError) as err:
        who_call = ch.unary_unary("/test.Who/Am")
        who_call(b"x" * (2 << 20), timeout=10, metadata=[("authorization", "Bearer nope")])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_tokens_file_reloaded_on_change(token_server, tmp_path):
    port, tokens = token_server
    ch = token_channel(port, tmp_path, OTHER)
    assert who(ch) == "batch"
    new = "rotated-token-for-the-batch-job-43"
    write_tokens(tokens, f"shop:{GOOD}\nbatch:{new}\n")
    with pytest.raises(grpc.RpcError) as err:
        who(ch)  # the old token is gone
    assert reason_of(err.value) == "TOKEN_INVALID"
    # The client re-reads its token file too: the same channel works after it changes.
    client_file = next(tmp_path.glob("client-token-*"))
    write_tokens(client_file, new)
    assert who(ch) == "batch"
    # A broken edit keeps the tokens already loaded: nobody is locked out by a typo.
    write_tokens(tokens, "batch no colon here\n")
    assert who(ch) == "batch"
    ch.close()


def test_tokens_and_mtls_together_token_names_the_caller(serve, pki, tmp_path):
    tokens = tmp_path / "tokens"
    write_tokens(tokens, f"shop:{GOOD}\n")
    port = serve(**tls_server(pki, mutual=True, auth_tokens_file=str(tokens)))
    cert, key = pki["client"]
    token = tmp_path / "token"
    token.write_text(f"shop:{GOOD}\n")  # a name:token line works as a client token file
    with channel(
        port,
        client_ca_file=str(pki["ca"][0]),
        client_cert_file=str(cert),
        client_key_file=str(key),
        client_token_file=str(token),
    ) as ch:
        assert who(ch) == "shop"
        assert health(ch) == health_pb2.HealthCheckResponse.SERVING


# ---------------------------------------------------------------------------- bad settings


def test_missing_certificate_file_is_a_config_error(pki, tmp_path):
    settings = load_settings(
        env={}, tls_cert_file=str(tmp_path / "nope.pem"), tls_key_file=str(pki["server"][1])
    )
    with pytest.raises(ConfigError) as err:
        create_server("127.0.0.1:0", settings=settings)
    assert err.value.setting == "DRAPE_TLS_CERT_FILE"


def test_certificate_and_key_that_do_not_match_is_a_config_error(pki):
    settings = load_settings(
        env={}, tls_cert_file=str(pki["server"][0]), tls_key_file=str(pki["client"][1])
    )
    with pytest.raises(ConfigError) as err:
        create_server("127.0.0.1:0", settings=settings)
    assert err.value.setting == "DRAPE_TLS_KEY_FILE"


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"tls_cert_file": "a.pem"}, "DRAPE_TLS_KEY_FILE"),
        ({"tls_client_ca_file": "ca.pem"}, "DRAPE_TLS_CLIENT_CA_FILE"),
        ({"client_cert_file": "c.pem"}, "DRAPE_CLIENT_KEY_FILE"),
    ],
)
def test_incomplete_tls_settings_are_refused(overrides, setting):
    with pytest.raises(ConfigError) as err:
        load_settings(env={}, **overrides)
    assert err.value.setting == setting


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("shop:short\n", "line 1"),
        ("# c\nshop\n", "line 2"),
        (f"shop:{GOOD}\nshop:{OTHER}\n", "appears twice"),
        (f"shop:{GOOD}\nbatch:{GOOD}\n", "used twice"),
        ("# only a comment\n", "no token"),
        (f"sh op:{GOOD}\n", "line 1"),
    ],
)
def test_bad_tokens_file_is_refused_without_echoing_tokens(text, fragment):
    with pytest.raises(ConfigError) as err:
        parse_tokens(text, "tokens")
    assert fragment in str(err.value)
    assert GOOD not in str(err.value) and OTHER not in str(err.value)


def test_missing_tokens_file_is_a_config_error(tmp_path):
    settings = load_settings(env={}, auth_tokens_file=str(tmp_path / "none"))
    with pytest.raises(ConfigError) as err:
        create_server("127.0.0.1:0", settings=settings)
    assert err.value.setting == "DRAPE_AUTH_TOKENS_FILE"


# ---------------------------------------------------------------------------- the project's clients


def test_project_clients_use_the_client_settings(serve, pki, tmp_path):
    # The catalog adapter's TryOnService client and the CLI's `--server` channel both
    # take TLS, mTLS and the token from DRAPE_CLIENT_*.
    from services.catalog_adapter.runners import make_still_runner
    from services.tryon.cli import channel as cli_channel

    tokens = tmp_path / "tokens"
    write_tokens(tokens, f"adapter:{GOOD}\n")
    port = serve(**tls_server(pki, mutual=True, auth_tokens_file=str(tokens)))
    token = tmp_path / "token"
    token.write_text(GOOD)
    cert, key = pki["client"]
    settings = load_settings(
        env={
            "DRAPE_CATALOG_PIPELINE": "grpc",
            "DRAPE_CATALOG_TRYON_ADDRESS": f"127.0.0.1:{port}",
            "DRAPE_CLIENT_CA_FILE": str(pki["ca"][0]),
            "DRAPE_CLIENT_CERT_FILE": str(cert),
            "DRAPE_CLIENT_KEY_FILE": str(key),
            "DRAPE_CLIENT_TOKEN_FILE": str(token),
        }
    )
    runner = make_still_runner(settings)
    try:
        assert who(runner.channel) == "adapter"
    finally:
        runner.channel.close()
    with cli_channel(f"127.0.0.1:{port}", settings) as ch:
        assert who(ch) == "adapter"
