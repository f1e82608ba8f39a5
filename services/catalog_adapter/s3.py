"""A minimal S3-compatible client: GET, PUT and LIST (v2) objects, signed with AWS
Signature Version 4, over ``requests``. Path-style addressing
(``https://ENDPOINT/BUCKET/KEY``), which AWS and the self-hosted S3-compatible stores
accept.

Signing follows the published algorithm ("Authenticating Requests: Using the Authorization
Header (AWS Signature Version 4)", Amazon S3 API reference): a canonical request, a string
to sign over its SHA-256, and an HMAC-SHA256 key derived from the secret, the date, the
region and the service. :func:`sign` is pure so it can be checked against the worked
examples in that reference.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import hmac
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlparse

from services.common.errors import InvalidInputError, UnavailableError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign(
    method: str,
    host: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload_sha256: str,
    amz_date: str,
    region: str,
    access_key: str,
    secret_key: str,
    service: str = "s3",
) -> str:
    """The ``Authorization`` header value of one request.

    Args:
        method: HTTP method.
        host: the Host header (``bucket.s3.amazonaws.com`` or ``endpoint:port``).
        path: the absolute, not yet encoded request path (``/bucket/key``).
        query: query parameters, not yet encoded.
        headers: headers to sign besides ``host`` (``x-amz-date`` and
            ``x-amz-content-sha256`` must be among them), any case.
        payload_sha256: lowercase hex SHA-256 of the body.
        amz_date: ``YYYYMMDDTHHMMSSZ``.
        region, access_key, secret_key, service: the credential scope.
    """
    hdrs = {"host": host, **{k.lower(): " ".join(str(v).split()) for k, v in headers.items()}}
    names = sorted(hdrs)
    canonical = "\n".join(
        [
            method,
            quote(path, safe="/~"),
            "&".join(
                f"{quote(k, safe='~')}={quote(str(v), safe='~')}" for k, v in sorted(query.items())
            ),
            "".join(f"{n}:{hdrs[n]}\n" for n in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret_key).encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )


class S3Client:
    """Signed requests to one S3-compatible endpoint.

    Args:
        endpoint: ``https://host[:port]`` (``http://`` for a local store).
        region: signing region.
        access_key, secret_key: credentials; both empty sends unsigned requests (public
            buckets).
        timeout: seconds per request.
    """

    def __init__(
        self,
        endpoint: str,
        region: str = "us-east-1",
        access_key: str = "",
        secret_key: str = "",
        timeout: float = 30.0,
    ) -> None:
        import requests

        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"S3 endpoint must be http(s)://host[:port], got {endpoint!r}")
        self.base = f"{parsed.scheme}://{parsed.netloc}"
        self.host = parsed.netloc
        self.region, self.access_key, self.secret_key = region, access_key, secret_key
        self.timeout = timeout
        self.session = requests.Session()

    def _request(
        self,
        method: str,
        bucket: str,
        key: str = "",
        query: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ):
        import requests

        query = query or {}
        path = f"/{bucket}/{key}" if key else f"/{bucket}"
        digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        amz_date = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        hdrs = {"x-amz-date": amz_date, "x-amz-content-sha256": digest, **(headers or {})}
        if self.access_key:
            hdrs["Authorization"] = sign(
                method, self.host, path, query, {k: v for k, v in hdrs.items()}, digest,
                amz_date, self.region, self.access_key, self.secret_key,
            )  # fmt: skip
        url = self.base + quote(path, safe="/~")
        try:
            return self.session.request(
                method, url, params=query, data=body or None, headers=hdrs, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise UnavailableError(
                "ASSET_STORE_FAILED", f"S3 {method} {bucket}/{key} failed: {exc}"
            ) from None

    @staticmethod
    def _check(resp, what: str) -> None:
        if resp.status_code < 300:
            return
        code = ""
        with contextlib.suppress(ET.ParseError):
            code = ET.fromstring(resp.content).findtext("Code") or ""
        msg = f"S3 {what}: HTTP {resp.status_code} {code}".strip()
        if resp.status_code in (400, 403, 404):  # the same request will fail again
            raise InvalidInputError("ASSET_STORE_REFUSED", msg)
        raise UnavailableError("ASSET_STORE_FAILED", msg)

    def get_object(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes, None when it does not exist."""
        resp = self._request("GET", bucket, key)
        if resp.status_code == 404:
            return None
        self._check(resp, f"GET {bucket}/{key}")
        return resp.content

    def put_object(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        """Store ``data`` (atomic: S3 never shows a partly written object)."""
        resp = self._request("PUT", bucket, key, body=data, headers={"content-type": content_type})
        self._check(resp, f"PUT {bucket}/{key}")

    def list_objects(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (ListObjectsV2, following continuation tokens)."""
        keys: list[str] = []
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            resp = self._request("GET", bucket, query=query)
            self._check(resp, f"LIST {bucket}/{prefix}")
            root = ET.fromstring(resp.content)
            ns = _S3_NS if root.tag.startswith(_S3_NS) else ""
            keys += [c.findtext(f"{ns}Key") for c in root.iter(f"{ns}Contents")]
            token = root.findtext(f"{ns}NextContinuationToken") or ""
            if root.findtext(f"{ns}IsTruncated") != "true" or not token:
                return keys
