"""Fetching the image references of events (and rosters) under a policy.

An event's ``image_uri`` is chosen by whoever can write to the product topic, so the adapter
fetches it the way a server fetches a URL from the internet:

* **Schemes** (``DRAPE_CATALOG_FETCH_SCHEMES``, default ``https,http,s3``); ``file://`` is
  off unless ``DRAPE_CATALOG_FETCH_FILE_ROOT`` names a directory, and is then confined to it.
* **Hosts** (``DRAPE_CATALOG_FETCH_HOSTS``): exact names or ``*.example.com``; empty: any.
* **Addresses.** The host name is resolved first; every address it resolves to must be
  public (not loopback, private, link-local, CGNAT, multicast, reserved or unspecified;
  IPv4-mapped IPv6 addresses are judged as IPv4), unless it lies in
  ``DRAPE_CATALOG_FETCH_ALLOW_NETWORKS``. The connection then goes to the address that was
  checked (no second look-up, so DNS rebinding cannot swap it). TLS still verifies the name.
* **No redirects** are followed (a 3xx is a failure), so no redirect can lead elsewhere.
* **One deadline** bounds the whole fetch (connect, headers, body): the job's deadline (or
  ``timeout``), enforced by a watchdog that shuts the socket down, so a server sending one
  byte a second is cut at the deadline, not after each slow read. The body is bounded by
  ``max_bytes`` (a larger ``Content-Length`` is refused before reading).
* **Files** are opened component by component from the root with ``O_NOFOLLOW`` after the
  path is resolved (no symlink leads out, even if swapped in meanwhile), with
  ``O_NONBLOCK``; only regular files are read (no FIFOs, devices or directories).
* **Generic messages.** Refusals say ``GARMENT_FETCH_REFUSED`` with one message whatever the
  cause; failures say ``GARMENT_FETCH_FAILED`` without status codes, OS errors or whether a
  file exists, so dead letters and ``JobFailed`` events are no scanning oracle (the adapter's
  own log at DEBUG has the detail).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import ipaddress
import logging
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from services.common.context import CancelToken
from services.common.errors import (
    CancelledError,
    DeadlineExceededError,
    InvalidInputError,
    UnavailableError,
)

log = logging.getLogger("drape.catalog.fetch")

REFUSED = "GARMENT_FETCH_REFUSED"
FAILED = "GARMENT_FETCH_FAILED"
MSG_REFUSED = "the reference is not allowed by this adapter's fetch policy"
MSG_FETCH = "the reference could not be fetched"
MSG_READ = "the reference could not be read"
MSG_SCHEME = "the reference's scheme is not supported (file, s3, http, https)"
KNOWN_SCHEMES = ("file", "s3", "http", "https")
NETWORK_SCHEMES = ("http", "https", "s3")
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_ADDRESSES = 16  # resolved addresses considered per host
_READ_CHUNK = 1 << 16

Resolver = Callable[[str, int], list[str]]


def system_resolve(host: str, port: int) -> list[str]:
    """Addresses of ``host`` for TCP (``socket.getaddrinfo``)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def parse_networks(values, env: str = "DRAPE_CATALOG_FETCH_ALLOW_NETWORKS") -> tuple:
    """CIDR strings as ``ipaddress`` networks.

    Raises:
        ValueError: naming the bad entry.
    """
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise ValueError(f"{env}: {v!r} is not an address or network (CIDR)") from None
    return tuple(out)


def address_blocked(addr: str) -> bool:
    """True for an address no event may make the adapter connect to (by default)."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_unspecified
    )


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    """What references may be fetched.

    Attributes:
        schemes: of ``http``, ``https``, ``s3``, ``file``.
        hosts: allowed host names (lowercase; ``*.example.com`` for subdomains); empty: any.
        allow_networks: networks exempt from the address refusal.
        file_root: the directory ``file://`` is confined to (resolved); None with ``file``
            in ``schemes``: any file (trusted references only, e.g. the operator's rosters).
        check_addresses: refuse non-public addresses (off only for trusted references).
        detailed_errors: failures name the URI and the cause (trusted references only: for
            events they would be a scanning oracle).
    """

    schemes: frozenset = frozenset(NETWORK_SCHEMES)
    hosts: tuple = ()
    allow_networks: tuple = ()
    file_root: str | None = None
    check_addresses: bool = True
    detailed_errors: bool = False

    @classmethod
    def from_settings(cls, settings) -> FetchPolicy:
        """The policy for event references (``DRAPE_CATALOG_FETCH_*``).

        Raises:
            ValueError: naming the setting when a value is unusable.
        """
        schemes = set(settings.catalog_fetch_schemes)
        root = None
        if settings.catalog_fetch_file_root:
            root = os.path.realpath(settings.catalog_fetch_file_root)
            if not os.path.isdir(root):
                raise ValueError(f"DRAPE_CATALOG_FETCH_FILE_ROOT: {root} is not a directory")
            schemes.add("file")
        return cls(
            schemes=frozenset(schemes),
            hosts=tuple(h.lower().rstrip(".") for h in settings.catalog_fetch_hosts),
            allow_networks=parse_networks(settings.catalog_fetch_allow_networks),
            file_root=root,
        )

    @classmethod
    def trusted(cls) -> FetchPolicy:
        """Operator-written references (rosters): any scheme, host, address and file; still
        one deadline, no redirects, bounded size, regular files only."""
        return cls(
            frozenset({*NETWORK_SCHEMES, "file"}), check_addresses=False, detailed_errors=True
        )

    def host_allowed(self, host: str) -> bool:
        if not self.hosts:
            return True
        host = host.lower().rstrip(".")
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False

    def address_allowed(self, addr: str) -> bool:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
        for candidate in {ip, getattr(ip, "ipv4_mapped", None) or ip}:
            if any(candidate.version == n.version and candidate in n for n in self.allow_networks):
                return True
        return not self.check_addresses or not address_blocked(addr)


class _Deadline:
    """The fetch's one deadline (the job token's, capped by a timeout) and its watchdog."""

    def __init__(self, token: CancelToken | None, timeout: float, field: str) -> None:
        self.token, self.field = token, field
        self.at = time.monotonic() + timeout
        rem = token.remaining() if token is not None else None
        if rem is not None:
            self.at = min(self.at, time.monotonic() + rem)
        self.fired = False
        self._done = threading.Event()

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def check(self) -> None:
        """Raise CANCELLED or DEADLINE_EXCEEDED when the fetch must stop."""
        if self.token is not None and self.token.cancelled:
            raise CancelledError(
                "CANCELLED", "the job was cancelled while fetching", field=self.field
            )
        if self.fired or self.remaining() <= 0:
            raise DeadlineExceededError(
                "DEADLINE_EXCEEDED",
                "the job's deadline passed while fetching the reference",
                field=self.field,
            )

    def watch(self, sock: socket.socket) -> None:
        """Shut :attr:`sock` (``sock``, or what replaced it: the TLS socket) down at the
        deadline or on cancellation, which wakes any blocked read or handshake."""
        self.sock = sock

        def run():
            while not self._done.wait(0.05):
                if self.remaining() <= 0 or (self.token is not None and self.token.cancelled):
                    self.fired = True
                    with contextlib.suppress(OSError):
                        self.sock.shutdown(socket.SHUT_RDWR)
                    return

        threading.Thread(target=run, name="fetch-watchdog", daemon=True).start()

    def close(self) -> None:
        self._done.set()


class ReferenceReader:
    """Reads image references of events and rosters under a :class:`FetchPolicy`.

    Args:
        max_bytes: largest object accepted.
        s3: an :class:`~services.catalog_adapter.s3.S3Client` for ``s3://`` references.
        timeout: seconds one fetch may take at most (the job's deadline can cut it shorter).
        policy: what may be fetched; None: :meth:`FetchPolicy.trusted` (operator-written
            references only; events get :meth:`FetchPolicy.from_settings`).
        resolve: ``resolve(host, port) -> [address, ...]`` (tests pass a stub).
    """

    def __init__(
        self,
        max_bytes: int,
        s3=None,
        timeout: float = 30.0,
        policy: FetchPolicy | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        self.max_bytes, self.s3, self.timeout = max_bytes, s3, timeout
        self.policy = policy or FetchPolicy.trusted()
        self.resolve = resolve or system_resolve

    def __call__(
        self, uri: str, field: str = "image_uri", token: CancelToken | None = None
    ) -> bytes:
        """The referenced bytes.

        Raises:
            InvalidInputError: GARMENT_FETCH_REFUSED (not allowed by the policy) or
                GARMENT_FETCH_FAILED (can never be read: unknown scheme, missing, HTTP 4xx,
                too large).
            UnavailableError: GARMENT_FETCH_FAILED for transient failures (network, 5xx).
            DeadlineExceededError: DEADLINE_EXCEEDED when the deadline cut the fetch.
            CancelledError: CANCELLED when the job was cancelled meanwhile.
        """
        deadline = _Deadline(token, self.timeout, field)
        deadline.check()
        if any(c <= " " or c in "\x7f\\" for c in uri):
            raise self._refused(field, uri, "control character, space or backslash")
        try:
            parts = urlsplit(uri)
            port = parts.port
        except ValueError:
            raise self._refused(field, uri, "unparsable") from None
        scheme = parts.scheme.lower()
        if scheme not in KNOWN_SCHEMES:
            raise self._failed(field, uri, "unknown scheme", False, MSG_SCHEME)
        if scheme not in self.policy.schemes:
            raise self._refused(field, uri, f"scheme {scheme!r} off")
        if scheme == "file":
            data = self._file(parts, uri, field, deadline)
        elif scheme == "s3":
            data = self._s3(uri, field)
        else:
            data = self._http(parts, port, uri, field, deadline)
        if len(data) > self.max_bytes:
            raise self._too_large(field)
        return data

    # ------------------------------------------------------------------ errors

    @staticmethod
    def _refused(field: str, uri: str, why: str) -> InvalidInputError:
        log.debug("reference refused", extra={"uri": uri[:200], "why": why, "field": field})
        return InvalidInputError(REFUSED, MSG_REFUSED, field=field)

    def _read_bounded(self, read, field: str, deadline) -> bytes:
        """Chunks from ``read()`` until it returns none, within the deadline and at most
        ``max_bytes`` in all (beyond: the too-large refusal)."""
        chunks, size = [], 0
        while True:
            deadline.check()
            chunk = read()
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large(field)
            chunks.append(chunk)

    def _too_large(self, field: str) -> InvalidInputError:
        return InvalidInputError(
            FAILED, f"the reference is larger than {self.max_bytes} bytes", field=field
        )

    def _failed(self, field: str, uri: str, why: str, transient: bool, message: str = MSG_FETCH):
        log.debug("reference failed", extra={"uri": uri[:200], "why": why, "field": field})
        if self.policy.detailed_errors:  # the operator's own references: say why
            message = f"cannot read {uri[:200]}: {why[:200]}"
        cls = UnavailableError if transient else InvalidInputError
        return cls(FAILED, message, field=field)

    # ------------------------------------------------------------------ s3

    def _s3(self, uri: str, field: str) -> bytes:
        if self.s3 is None:
            raise self._failed(field, uri, "no S3 endpoint configured", False)
        bucket, _, key = uri[len("s3://") :].partition("/")
        try:
            data = self.s3.get_object(bucket, key)
        except InvalidInputError as exc:
            raise self._failed(field, uri, exc.message, False) from None
        except UnavailableError as exc:
            raise self._failed(field, uri, exc.message, True) from None
        if data is None:
            raise self._failed(field, uri, "no such object", False)
        return data

    # ------------------------------------------------------------------ file

    def _file(self, parts, uri: str, field: str, deadline: _Deadline) -> bytes:
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise self._refused(field, uri, "file:// with a host, query or fragment")
        path = unquote(parts.path)
        if "\x00" in path or not path.startswith("/"):
            raise self._refused(field, uri, "not an absolute path")
        real = os.path.realpath(path)
        root = self.policy.file_root
        if root is not None and not (real == root or real.startswith(root.rstrip("/") + "/")):
            raise self._refused(field, uri, "outside DRAPE_CATALOG_FETCH_FILE_ROOT")
        fd = -1
        try:
            fd = _open_beneath(root or "/", os.path.relpath(real, root or "/"))
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError("not a regular file")
            return self._read_bounded(lambda: os.read(fd, _READ_CHUNK), field, deadline)
        except OSError as exc:
            # One message whether the file is missing, unreadable or not a regular file.
            raise self._failed(field, uri, exc.strerror or str(exc), False, MSG_READ) from None
        finally:
            if fd >= 0:
                os.close(fd)

    # ------------------------------------------------------------------ http(s)

    def _http(self, parts, port, uri: str, field: str, deadline: _Deadline) -> bytes:
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        if not host or parts.username is not None or parts.password is not None:
            raise self._refused(field, uri, "no host, or credentials in the URL")
        if not self.policy.host_allowed(host):
            raise self._refused(field, uri, "host not in DRAPE_CATALOG_FETCH_HOSTS")
        port = port or DEFAULT_PORTS[scheme]
        try:
            addrs = [str(ipaddress.ip_address(host))]  # a literal: no look-up
        except ValueError:
            try:
                addrs = list(dict.fromkeys(self.resolve(host, port)))[:MAX_ADDRESSES]
            except (OSError, UnicodeError) as exc:
                raise self._failed(field, uri, f"resolution: {exc}", True) from None
        if not addrs:
            raise self._failed(field, uri, "no address", True)
        # Every address must pass (a name resolving to one public and one private address
        # is refused), and the connection goes to a checked address, not a new look-up.
        if not all(self.policy.address_allowed(a) for a in addrs):
            raise self._refused(field, uri, f"address not allowed: {addrs}")
        deadline.check()
        sock = None
        try:
            try:
                sock = socket.create_connection(
                    (addrs[0], port), timeout=max(deadline.remaining(), 0.001)
                )
            except OSError as exc:
                raise self._failed(field, uri, f"connect: {exc}", True) from None
            deadline.watch(sock)
            return self._exchange(sock, scheme, host, port, parts, uri, field, deadline)
        except (OSError, http.client.HTTPException) as exc:
            deadline.check()
            raise self._failed(field, uri, f"{type(exc).__name__}: {exc}", True) from None
        finally:
            deadline.close()
            if sock is not None:
                sock.close()

    def _exchange(self, sock, scheme, host, port, parts, uri, field, deadline) -> bytes:
        if scheme == "https":
            sock = ssl.create_default_context().wrap_socket(
                sock, server_hostname=host, do_handshake_on_connect=False
            )
            deadline.sock = sock  # the watchdog now shuts the TLS socket down
        conn = http.client.HTTPConnection(host, port, timeout=deadline.remaining())
        conn.sock = sock
        resp = None
        try:
            if scheme == "https":
                sock.do_handshake()
            resp = self._request(conn, scheme, host, port, parts)
            return self._body(resp, uri, field, deadline)
        finally:
            # The response's file holds the socket open: close both, so the server sees
            # the connection end now (a shutdown alone leaves a sender writing on).
            if resp is not None:
                resp.close()
            conn.close()

    @staticmethod
    def _request(conn, scheme, host, port, parts) -> http.client.HTTPResponse:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = host if ":" not in host else f"[{host}]"
        if port != DEFAULT_PORTS[scheme]:
            host_header += f":{port}"
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host_header)
        conn.putheader("Accept", "image/*")
        conn.putheader("User-Agent", "drape-catalog-adapter")
        conn.putheader("Connection", "close")
        conn.endheaders()
        return conn.getresponse()

    def _body(self, resp, uri, field, deadline) -> bytes:
        deadline.check()
        if resp.status != 200:
            # Redirects are not followed; the status stays in the adapter's debug log.
            transient = resp.status >= 500 or resp.status in (408, 429)
            raise self._failed(field, uri, f"HTTP {resp.status}", transient)
        length = resp.getheader("Content-Length")
        if length and length.strip().isdigit() and int(length) > self.max_bytes:
            raise self._too_large(field)
        body = self._read_bounded(lambda: resp.read1(_READ_CHUNK), field, deadline)
        deadline.check()  # a watchdog shutdown reads as end of body: not a whole body
        return body


def _open_beneath(root: str, rel: str) -> int:
    """``root/rel`` opened read-only without following any symlink on the way (each
    component with ``O_NOFOLLOW`` relative to its parent), non-blocking (a FIFO does not
    wait for a writer)."""
    flags_dir = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise OSError("not a file beneath the root")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            nxt = os.open(name, flags_dir, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(
            parts[-1], os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
        )
    finally:
        os.close(fd)
