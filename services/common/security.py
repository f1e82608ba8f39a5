"""Transport security and caller authentication for every gRPC server and client.

What lives here:

- :func:`caller_identity`: who is calling, for code that scopes data to its caller.
- TLS and mTLS credentials from files, re-read when the files change (servers on every
  new connection, clients before each call), so certificates rotate without a restart.
- Bearer-token authentication: a server interceptor checking ``authorization: Bearer
  <token>`` against a file of ``name:token`` lines (re-read on change), and a client
  interceptor that sends the token read from a file.
"""

from __future__ import annotations

import collections
import contextvars
import hashlib
import hmac
import logging
import os
import re
import ssl
import threading
from collections.abc import Callable
from typing import Any

import grpc

from services.common.errors import ConfigError, DrapeError

log = logging.getLogger("drape.security")

# The most of a credentials file read (certificate bundles, token files).
MAX_FILE_BYTES = 1 << 20

# The principal bound by the token interceptor for the duration of one call.
_PRINCIPAL: contextvars.ContextVar[str] = contextvars.ContextVar("drape_principal", default="")


def peer_certificate_identity(context: Any) -> str:
    """The verified client certificate's common name (else its first subject alternative
    name) of an mTLS call; "" without a verified client certificate.

    gRPC fills ``x509_common_name`` / ``x509_subject_alternative_name`` in the auth
    context only when the peer presented a certificate that the server verified against
    its client CA (``DRAPE_TLS_CLIENT_CA_FILE``).
    """
    try:
        auth = context.auth_context() or {}
    except (AttributeError, NotImplementedError, ValueError):
        return ""
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for value in auth.get(key) or ():
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if text:
                return text
    return ""


def caller_identity(context: Any) -> str:
    """The authenticated principal of the current call; "" when authentication is off.

    With bearer tokens on (``DRAPE_AUTH_TOKENS_FILE``) it is the token's name from the
    tokens file; otherwise, with mTLS on (``DRAPE_TLS_CLIENT_CA_FILE``), the client
    certificate's common name (else first subject alternative name). Call it from the
    handler's thread (servicer code), where the interceptor bound the principal.

    Args:
        context: the call's ``grpc.ServicerContext``.

    Returns:
        The principal, or "" for an unauthenticated deployment.
    """
    principal = _PRINCIPAL.get()
    if principal:
        return principal
    return peer_certificate_identity(context)


# ---------------------------------------------------------------------------- files


def _stamp(paths: tuple[str, ...]) -> tuple | None:
    """What changes when any of ``paths`` is rewritten or replaced (a Kubernetes secret
    swaps a symlink: the inode changes); None when one cannot be read."""
    out = []
    for p in paths:
        if not p:
            continue
        try:
            st = os.stat(p)
        except OSError:
            return None
        out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _read(path: str, setting: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """A credentials file's bytes.

    Raises:
        ConfigError: naming ``setting`` when the file is missing, unreadable or too big.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ConfigError(setting, f"{path} is larger than {limit} bytes")
    if not data.strip():
        raise ConfigError(setting, f"{path} is empty")
    return data


def _check_pem(path: str, setting: str, what: str) -> bytes:
    data = _read(path, setting)
    if b"-----BEGIN " not in data:
        raise ConfigError(setting, f"{path} is not PEM ({what} expected)")
    return data


def _check_pair(cert_file: str, key_file: str, setting: str) -> None:
    """Refuse a certificate and key that do not belong together (or do not parse)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(
            setting, f"{cert_file} and {key_file} are not a certificate and its key: {exc}"
        ) from None


def _check_ca(path: str, setting: str) -> bytes:
    data = _check_pem(path, setting, "CA certificates")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cadata=data.decode("ascii", "replace"))
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(setting, f"{path} holds no usable CA certificate: {exc}") from None
    return data


# ---------------------------------------------------------------------------- server TLS


class ServerTls:
    """Server credentials from PEM files, re-read when they change.

    gRPC asks :meth:`_fetch` for the certificate configuration at every new connection's
    handshake; it costs a ``stat`` per file, and a new pair is loaded only after the files
    changed and the certificate and key match (a half-written rotation keeps the old pair
    and is retried at the next handshake).

    Args:
        cert_file: the server's certificate chain (PEM), ``DRAPE_TLS_CERT_FILE``.
        key_file: its private key (PEM), ``DRAPE_TLS_KEY_FILE``.
        client_ca_file: CA bundle that client certificates must chain to; set, every
            client must present one (mTLS), ``DRAPE_TLS_CLIENT_CA_FILE``.

    Raises:
        ConfigError: naming the setting whose file is missing or invalid.
    """

    def __init__(self, cert_file: str, key_file: str, client_ca_file: str = "") -> None:
        self.cert_file, self.key_file, self.client_ca_file = cert_file, key_file, client_ca_file
        self._paths = (cert_file, key_file, client_ca_file)
        self._lock = threading.Lock()
        self.reloads = 0
        self._stamp = _stamp(self._paths)
        self._bad_stamp: tuple | None = None
        self._config = self._load()

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca_file)

    def _load(self):
        cert = _check_pem(self.cert_file, "DRAPE_TLS_CERT_FILE", "a certificate")
        key = _check_pem(self.key_file, "DRAPE_TLS_KEY_FILE", "a private key")
        _check_pair(self.cert_file, self.key_file, "DRAPE_TLS_KEY_FILE")
        ca = _check_ca(self.client_ca_file, "DRAPE_TLS_CLIENT_CA_FILE") if self.mutual else None
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    def _fetch(self):
        # Called by gRPC on its own threads; must never raise.
        stamp = _stamp(self._paths)
        if stamp is None or stamp in (self._stamp, self._bad_stamp):
            return None
        with self._lock:
            if stamp in (self._stamp, self._bad_stamp):
                return None
            try:
                config = self._load()
            except ConfigError as exc:
                self._bad_stamp = stamp  # said once per state of the files, not per handshake
                log.warning(
                    "TLS files changed but cannot be used yet; keeping the old ones: %s", exc
                )
                return None
            self._stamp, self._config = stamp, config
            self.reloads += 1
        log.info("TLS certificate reloaded", extra={"cert_file": self.cert_file})
        return config

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that pick up rotated files at the next handshake."""
        return grpc.dynamic_ssl_server_credentials(
            self._config, self._fetch, require_client_authentication=self.mutual
        )


def server_tls(settings: Any) -> ServerTls | None:
    """The server's TLS from settings; None when ``DRAPE_TLS_CERT_FILE`` is empty."""
    if not settings.tls_cert_file:
        return None
    return ServerTls(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)


# ---------------------------------------------------------------------------- tokens


class UnauthenticatedError(DrapeError):
    """The caller did not prove who it is (UNAUTHENTICATED)."""

    code = grpc.StatusCode.UNAUTHENTICATED


_TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
# Tokens are compared as opaque strings; the floor keeps guessable ones out.
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 512
MAX_TOKENS = 10_000


def parse_tokens(text: str, where: str, setting: str = "DRAPE_AUTH_TOKENS_FILE") -> dict[str, str]:
    """``{token: name}`` from ``name:token`` lines (``#`` comments and blank lines skipped).

    Raises:
        ConfigError: naming the line of a malformed entry, a short or duplicate token, or
            a duplicate name; the token itself is never shown.
    """
    tokens: dict[str, str] = {}
    names: set[str] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        name, token = name.strip(), token.strip()
        if not sep or not _TOKEN_NAME_RE.fullmatch(name):
            raise ConfigError(
                setting,
                f"{where} line {n}: expected name:token with a name of letters, digits, "
                "'.', '_', '@' or '-' (at most 64)",
            )
        if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS or not token.isprintable():
            raise ConfigError(
                setting,
                f"{where} line {n}: the token of {name!r} must be {MIN_TOKEN_CHARS} to "
                f"{MAX_TOKEN_CHARS} printable characters",
            )
        if " " in token:
            raise ConfigError(setting, f"{where} line {n}: the token of {name!r} has a space")
        if name in names:
            raise ConfigError(setting, f"{where} line {n}: name {name!r} appears twice")
        if token in tokens:
            raise ConfigError(setting, f"{where} line {n}: the token of {name!r} is used twice")
        names.add(name)
        tokens[token] = name
        if len(tokens) > MAX_TOKENS:
            raise ConfigError(setting, f"{where}: more than {MAX_TOKENS} tokens")
    if not tokens:
        raise ConfigError(setting, f"{where} holds no token")
    return tokens


class TokenFile:
    """The accepted bearer tokens, from a file of ``name:token`` lines, re-read on change.

    A Kubernetes Secret mounted as a volume is such a file. A change that does not parse
    keeps the tokens already loaded (logged), so a typo never locks every caller out.

    Raises:
        ConfigError: at construction, when the file is missing or invalid.
    """

    def __init__(self, path: str, setting: str = "DRAPE_AUTH_TOKENS_FILE") -> None:
        self.path, self.setting = path, setting
        self._lock = threading.Lock()
        self._stamp = _stamp((path,))
        self._tokens = self._load()
        self.reloads = 0

    def _load(self) -> dict[bytes, tuple[bytes, str]]:
        text = _read(self.path, self.setting).decode("utf-8", "replace")
        tokens = parse_tokens(text, self.path, self.setting)
        return {_digest(t.encode()): (t.encode(), name) for t, name in tokens.items()}

    def _current(self) -> dict[bytes, tuple[bytes, str]]:
        stamp = _stamp((self.path,))
        if stamp is not None and stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self._tokens = self._load()
                        self.reloads += 1
                        log.info("auth tokens reloaded", extra={"count": len(self._tokens)})
                    except ConfigError as exc:
                        log.error("auth tokens file changed but is invalid; kept the old: %s", exc)
                    self._stamp = stamp
        return self._tokens

    def check(self, presented: str) -> str:
        """The name of ``presented``'s token; "" when it matches none.

        The entry is found by the SHA-256 of the presented token (one look-up however many
        tokens there are; its timing tells about a hash, not about the token), then the
        token itself is compared with :func:`hmac.compare_digest`.
        """
        given = presented.encode("utf-8", "replace")
        entry = self._current().get(_digest(given))
        if entry is not None and hmac.compare_digest(given, entry[0]):
            return entry[1]
        return ""


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


# Services reachable without a token: probes must see health.
AUTH_EXEMPT_SERVICES = frozenset({"grpc.health.v1.Health"})
# The (service, method) metric labels of calls refused for want of a valid token.
REFUSED_LABELS = ("(unauthenticated)", "(any)")


def _bearer(metadata: Any) -> str | None:
    """The token of the ``authorization: Bearer`` header; None when there is none, ""
    when it is malformed."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            if isinstance(value, bytes):
                return ""
            scheme, _, token = value.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class TokenAuthInterceptor(grpc.ServerInterceptor):
    """Refuses calls without a valid bearer token (UNAUTHENTICATED, reason
    ``TOKEN_MISSING`` or ``TOKEN_INVALID``) before the request body is read, and binds the
    token's name for :func:`caller_identity` while the handler runs. The health service
    stays open so that probes work.

    Args:
        tokens: the accepted tokens.
        metrics: counts refusals of known methods (optional).
        exempt: full service names that need no token.
    """

    def __init__(
        self,
        tokens: TokenFile,
        metrics: Any = None,
        exempt: frozenset[str] = AUTH_EXEMPT_SERVICES,
    ) -> None:
        self.tokens, self.metrics, self.exempt = tokens, metrics, exempt

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails):
        service, _, method = details.method.lstrip("/").partition("/")
        if service in self.exempt:
            return continuation(details)
        token = _bearer(details.invocation_metadata)
        if token is None:
            return self._refuse(
                continuation,
                details,
                UnauthenticatedError(
                    "TOKEN_MISSING",
                    "this server requires a bearer token: send 'authorization: Bearer <token>'",
                ),
            )
        name = self.tokens.check(token) if token else ""
        if not name:
            return self._refuse(
                continuation,
                details,
                UnauthenticatedError("TOKEN_INVALID", "the bearer token is not valid"),
            )
        handler = continuation(details)
        if handler is None:
            return None
        return _bind_principal(handler, name)

    def _refuse(self, continuation: Callable, details: grpc.HandlerCallDetails, err):
        # The method is not looked up (it may not exist; the next interceptors would take
        # capacity for it): refusals are counted under one bounded label pair.
        if self.metrics is not None:
            m = self.metrics
            m.requests.labels(*REFUSED_LABELS, "UNAUTHENTICATED", m.variant_label("")).inc()
            m.errors.labels(*REFUSED_LABELS, "UNAUTHENTICATED", err.reason).inc()
        log.info(
            "rpc refused",
            extra={"rpc": details.method[:128], "code": "UNAUTHENTICATED", "reason": err.reason},
        )
        status = _status_of(err)

        # A stream-request handler aborts without reading the request: an unauthenticated
        # caller never gets a message of up to DRAPE_MAX_MESSAGE_BYTES buffered.
        def refuse(_requests, context):
            context.abort_with_status(status)

        return grpc.stream_unary_rpc_method_handler(refuse)


def _status_of(err: DrapeError) -> grpc.Status:
    from services.common import context as ctxmod
    from services.common.interceptors import to_grpc_status

    return to_grpc_status(err, ctxmod.new_id())


def _bind_principal(handler: grpc.RpcMethodHandler, name: str) -> grpc.RpcMethodHandler:
    """``handler`` with :data:`_PRINCIPAL` set to ``name`` while it runs (and reset after:
    the worker thread serves other callers next)."""

    def unary(behavior):
        def run(request, context):
            token = _PRINCIPAL.set(name)
            try:
                return behavior(request, context)
            finally:
                _PRINCIPAL.reset(token)

        return run

    def stream(behavior):
        def run(request, context):
            token = _PRINCIPAL.set(name)
            try:
                yield from behavior(request, context)
            finally:
                _PRINCIPAL.reset(token)

        return run

    kw = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary(handler.unary_unary), **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary(handler.stream_unary), **kw)
    return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **kw)


def server_interceptors(settings: Any, metrics: Any = None) -> list[grpc.ServerInterceptor]:
    """Interceptors to put first on a server: the token check when
    ``DRAPE_AUTH_TOKENS_FILE`` is set, else none.

    Raises:
        ConfigError: when the tokens file is missing or invalid.
    """
    if not settings.auth_tokens_file:
        return []
    return [TokenAuthInterceptor(TokenFile(settings.auth_tokens_file), metrics)]


# ---------------------------------------------------------------------------- clients


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class TokenClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call, the token read from a file
    (its first non-comment line; a ``name:token`` line works too) and re-read on change.

    Raises:
        ConfigError: at construction, when the file is missing or holds no token.
    """

    def __init__(self, path: str, setting: str = "DRAPE_CLIENT_TOKEN_FILE") -> None:
        self.path, self.setting = path, setting
        self._stamp = _stamp((path,))
        self._token = self._load()

    def _load(self) -> str:
        text = _read(self.path, self.setting).decode("utf-8", "replace")
        for raw in text.splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                token = line.rpartition(":")[2].strip() if ":" in line else line
                if token and token.isprintable() and len(token) <= MAX_TOKEN_CHARS:
                    return token
                break
        raise ConfigError(self.setting, f"{self.path} holds no usable token")

    def token(self) -> str:
        stamp = _stamp((self.path,))
        if stamp is not None and stamp != self._stamp:
            try:
                self._token = self._load()
            except ConfigError as exc:
                log.error("client token file changed but is invalid; kept the old: %s", exc)
            self._stamp = stamp
        return self._token

    def _details(self, d: grpc.ClientCallDetails) -> _CallDetails:
        md = [(k, v) for k, v in (d.metadata or ()) if k.lower() != "authorization"]
        md.append(("authorization", f"Bearer {self.token()}"))
        return _CallDetails(
            d.method,
            d.timeout,
            md,
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


class ClientTls:
    """Channel credentials from PEM files (CA bundle, and for mTLS a certificate and key).

    Args:
        ca_file: CA bundle the server's certificate must chain to; "" for the system roots.
        cert_file: the client certificate chain (mTLS); "" for none.
        key_file: its private key.
    """

    def __init__(self, ca_file: str = "", cert_file: str = "", key_file: str = "") -> None:
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.paths = (ca_file, cert_file, key_file)

    def stamp(self) -> tuple | None:
        return _stamp(self.paths)

    def credentials(self) -> grpc.ChannelCredentials:
        """Fresh credentials from the files as they are now.

        Raises:
            ConfigError: naming the setting whose file is missing or invalid.
        """
        ca = _check_ca(self.ca_file, "DRAPE_CLIENT_CA_FILE") if self.ca_file else None
        key = cert = None
        if self.cert_file:
            cert = _check_pem(self.cert_file, "DRAPE_CLIENT_CERT_FILE", "a certificate")
            key = _check_pem(self.key_file, "DRAPE_CLIENT_KEY_FILE", "a private key")
            _check_pair(self.cert_file, self.key_file, "DRAPE_CLIENT_KEY_FILE")
        return grpc.ssl_channel_credentials(ca, key, cert)


class _Callable:
    """A multi-callable that resolves to the owner's current channel at each call."""

    def __init__(self, owner: ReloadingChannel, kind: str, args: tuple, kwargs: dict) -> None:
        self._owner, self._kind, self._args, self._kwargs = owner, kind, args, kwargs
        self._cache: tuple[int, Any] = (-1, None)

    def _target(self):
        gen, channel = self._owner._current()
        if self._cache[0] != gen:
            self._cache = (gen, getattr(channel, self._kind)(*self._args, **self._kwargs))
        return self._cache[1]

    def __call__(self, *args, **kwargs):
        return self._target()(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self._target(), name)


class ReloadingChannel(grpc.Channel):
    """A channel that reconnects with new credentials once its TLS files change.

    Before each call it compares the files' stamps (a ``stat`` each); after a change it
    opens a new channel for the next calls and closes the one before the previous (calls
    still running on the previous channel finish). Stubs made once keep working. The
    bearer token, if any, is re-read by :class:`TokenClientInterceptor` on the same
    connection.
    """

    def __init__(
        self,
        address: str,
        options: list,
        tls: ClientTls | None,
        token_file: str,
        server_name: str = "",
    ) -> None:
        self.address, self.options = address, list(options)
        if server_name:
            self.options.append(("grpc.ssl_target_name_override", server_name))
        self.tls, self.token_file = tls, token_file
        self._lock = threading.Lock()
        self._gen = 0
        self._retired: grpc.Channel | None = None
        self._stamp = self._files_stamp()
        self._channel = self._open()

    def _files_stamp(self) -> tuple | None:
        # The token needs no new connection: TokenClientInterceptor re-reads its file.
        return self.tls.stamp() if self.tls else ()

    def _open(self) -> grpc.Channel:
        if self.tls is not None:
            channel = grpc.secure_channel(
                self.address, self.tls.credentials(), options=self.options
            )
        else:
            channel = grpc.insecure_channel(self.address, options=self.options)
        if self.token_file:
            channel = grpc.intercept_channel(channel, TokenClientInterceptor(self.token_file))
        return channel

    def _current(self) -> tuple[int, grpc.Channel]:
        stamp = self._files_stamp()
        if stamp is not None and stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        fresh = self._open()
                    except ConfigError as exc:
                        log.error(
                            "client TLS files changed but cannot be used; kept the old: %s", exc
                        )
                    else:
                        if self._retired is not None:
                            self._retired.close()
                        self._retired, self._channel = self._channel, fresh
                        self._gen += 1
                        log.info("client credentials reloaded", extra={"address": self.address})
                    self._stamp = stamp
        return self._gen, self._channel

    @property
    def generation(self) -> int:
        """How many times the credentials were reloaded."""
        return self._current()[0]

    def subscribe(self, callback, try_to_connect=False):
        self._current()[1].subscribe(callback, try_to_connect=try_to_connect)

    def unsubscribe(self, callback):
        self._current()[1].unsubscribe(callback)

    def unary_unary(self, *args, **kwargs):
        return _Callable(self, "unary_unary", args, kwargs)

    def unary_stream(self, *args, **kwargs):
        return _Callable(self, "unary_stream", args, kwargs)

    def stream_unary(self, *args, **kwargs):
        return _Callable(self, "stream_unary", args, kwargs)

    def stream_stream(self, *args, **kwargs):
        return _Callable(self, "stream_stream", args, kwargs)

    def close(self):
        with self._lock:
            if self._retired is not None:
                self._retired.close()
                self._retired = None
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def client_channel(address: str, settings: Any, options: list | tuple = ()) -> grpc.Channel:
    """A channel to a Drape server with the client security the settings ask for.

    Plain ``grpc.insecure_channel`` when none is set; otherwise a :class:`ReloadingChannel`
    with TLS (``DRAPE_CLIENT_TLS`` or any ``DRAPE_CLIENT_*_FILE``), mTLS
    (``DRAPE_CLIENT_CERT_FILE`` / ``DRAPE_CLIENT_KEY_FILE``) and a bearer token
    (``DRAPE_CLIENT_TOKEN_FILE``).

    Raises:
        ConfigError: naming the setting whose file is missing or invalid.
    """
    tls_on = settings.client_tls or settings.client_ca_file or settings.client_cert_file
    if not tls_on and not settings.client_token_file:
        return grpc.insecure_channel(address, options=list(options))
    tls = (
        ClientTls(settings.client_ca_file, settings.client_cert_file, settings.client_key_file)
        if tls_on
        else None
    )
    return ReloadingChannel(
        address, list(options), tls, settings.client_token_file, settings.client_tls_server_name
    )


def startup_warnings(settings: Any) -> list[str]:
    """What a server's log should say about its transport security at start-up."""
    out = []
    if not settings.tls_cert_file:
        out.append(
            "gRPC without TLS (DRAPE_TLS_CERT_FILE empty): calls, images and any bearer "
            "token travel in clear text; use it on a trusted network only"
        )
    if not settings.auth_tokens_file and not settings.tls_client_ca_file:
        out.append(
            "gRPC without authentication (DRAPE_AUTH_TOKENS_FILE and DRAPE_TLS_CLIENT_CA_FILE "
            "empty): any caller that reaches the port is served"
        )
    return out


def health_listener(settings: Any, health_servicer: Any, address: str) -> tuple[Any, int] | None:
    """A plaintext listener serving only ``grpc.health.v1.Health/Check`` on ``DRAPE_HEALTH_PORT``, so
    that Kubernetes' built-in gRPC probes (which cannot speak TLS) still reach health when
    the main port requires TLS or mTLS. It shares the main server's health servicer; None
    when the setting is -1.

    Returns:
        ``(server, port)``: the unstarted gRPC server and its bound port.

    Raises:
        ConfigError: naming ``DRAPE_HEALTH_PORT`` when the port cannot be bound.
    """
    from concurrent import futures

    from grpc_health.v1 import health_pb2

    if settings.health_port < 0:
        return None
    host = address.rpartition(":")[0]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="drape-health"),
        options=[("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=32,
    )
    # Check only: a Watch stream is long-lived, and a few held open by anyone who reaches
    # this port would use up its call limit and fail the probes.
    check = grpc.unary_unary_rpc_method_handler(
        health_servicer.Check,
        request_deserializer=health_pb2.HealthCheckRequest.FromString,
        response_serializer=health_pb2.HealthCheckResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("grpc.health.v1.Health", {"Check": check}),)
    )
    where = f"{host}:{settings.health_port}"
    try:
        port = server.add_insecure_port(where)
    except RuntimeError as exc:
        raise ConfigError("DRAPE_HEALTH_PORT", f"cannot listen on {where}: {exc}") from None
    if port == 0:
        raise ConfigError("DRAPE_HEALTH_PORT", f"cannot listen on {where}")
    return server, port
