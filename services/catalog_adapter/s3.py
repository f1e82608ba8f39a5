"""S3 through botocore/boto3: GET, PUT (multipart for large objects), conditional PUT and
LIST, against AWS or any S3-compatible store.

What botocore brings over a hand-written signer:

* **Credentials from the default chain** when no static keys are configured: environment,
  web identity (EKS IRSA: ``AWS_ROLE_ARN`` + ``AWS_WEB_IDENTITY_TOKEN_FILE``), assumed roles
  and SSO profiles, container and instance metadata. Temporary (STS) credentials are
  refreshed before they expire.
* **Retries** of throttling, 5xx and connection errors with backoff (``standard`` mode).
* **Multipart uploads** above :data:`MULTIPART_THRESHOLD`, parts sent in parallel.

Errors are mapped onto the project's: a request that will fail again (403, missing bucket,
bad request) is :class:`InvalidInputError` ``ASSET_STORE_REFUSED``; anything transient
(network, 5xx after the retries) is :class:`UnavailableError` ``ASSET_STORE_FAILED``. The
messages name the bucket and key and the S3 error code, never the credentials.
"""

from __future__ import annotations

import hashlib
import io
from urllib.parse import urlparse

from services.common.errors import InvalidInputError, UnavailableError

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
# Codes that mean the same request will fail again: not worth a retry by the caller.
_REFUSED = {"400", "403", "404", "AccessDenied", "NoSuchBucket", "InvalidBucketName"}


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
    """The SigV4 ``Authorization`` header value of one request, computed by botocore's
    signer (kept as a function so it can be checked against the published examples of the
    Amazon S3 API reference).

    Args:
        method: HTTP method.
        host: the Host header.
        path: the absolute request path (``/bucket/key``), not yet encoded.
        query: query parameters, not yet encoded.
        headers: headers to sign besides ``host`` (``x-amz-date`` and
            ``x-amz-content-sha256`` among them).
        payload_sha256: lowercase hex SHA-256 of the body.
        amz_date: ``YYYYMMDDTHHMMSSZ``.
        region, access_key, secret_key, service: the credential scope.
    """
    from urllib.parse import quote, urlencode

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"https://{host}{quote(path, safe='/~')}"
    if query:
        url += "?" + urlencode(sorted(query.items()))
    hdrs = {**headers, "x-amz-content-sha256": payload_sha256}
    req = AWSRequest(method=method, url=url, headers=hdrs)
    req.context["timestamp"] = amz_date
    auth = S3SigV4Auth(Credentials(access_key, secret_key), service, region)
    canonical = auth.canonical_request(req)
    signature = auth.signature(auth.string_to_sign(req, canonical), req)
    return (
        f"AWS4-HMAC-SHA256 Credential={auth.scope(req)}, "
        f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(req))}, Signature={signature}"
    )


def _addressing(host: str) -> str:
    # AWS itself: virtual-hosted names (path style is deprecated there); self-hosted and
    # test stores (an IP, a cluster service name) have no per-bucket DNS names.
    return "virtual" if host.endswith(".amazonaws.com") else "path"


class S3Client:
    """One S3 endpoint through a thread-safe botocore client.

    Args:
        endpoint: ``https://host[:port]`` (``http://`` for a local store); empty for AWS's
            regional endpoint.
        region: signing region.
        access_key, secret_key: static credentials; both empty uses botocore's default
            credential chain (IRSA, STS roles, environment, instance metadata).
        timeout: seconds to connect and seconds per read.
        max_attempts: tries per request, retries included (botocore ``standard`` mode).
        multipart_threshold: objects this large or larger are uploaded in parts.
    """

    def __init__(
        self,
        endpoint: str = "",
        region: str = "us-east-1",
        access_key: str = "",
        secret_key: str = "",
        timeout: float = 30.0,
        max_attempts: int = 5,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        host = "s3.amazonaws.com"
        if endpoint:
            parsed = urlparse(endpoint)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(
                    f"S3 endpoint must be http(s)://host[:port], got {parsed.scheme or '?'}://…"
                )
            host = parsed.hostname or ""
            endpoint = f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}"
        if bool(access_key) != bool(secret_key):
            raise ValueError("set both the S3 access key and secret key, or neither")
        session = boto3.session.Session(
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            region_name=region or "us-east-1",
        )
        config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": _addressing(host)},
            max_pool_connections=16,
            # Checksums only where S3 requires them: several S3-compatible stores refuse
            # the trailing CRC32 botocore sends by default since 1.36.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client = session.client("s3", endpoint_url=endpoint or None, config=config)
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(MULTIPART_CHUNK, 5 * 1024 * 1024),
            max_concurrency=4,
            use_threads=True,
        )

    # ------------------------------------------------------------------ errors

    @staticmethod
    def _raise(exc: Exception, what: str):
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            msg = f"S3 {what}: HTTP {status} {code}".strip()
            if code in _REFUSED or status in (400, 403, 404):
                raise InvalidInputError("ASSET_STORE_REFUSED", msg) from None
            raise UnavailableError("ASSET_STORE_FAILED", msg) from None
        # BotoCoreError: connection refused or reset, timeouts, no credentials found.
        raise UnavailableError(
            "ASSET_STORE_FAILED", f"S3 {what} failed: {type(exc).__name__}"
        ) from None

    @staticmethod
    def _missing(exc: Exception) -> bool:
        from botocore.exceptions import ClientError

        if not isinstance(exc, ClientError):
            return False
        code = str(exc.response.get("Error", {}).get("Code", ""))
        return code in ("NoSuchKey", "404", "NotFound")

    # ------------------------------------------------------------------ objects

    def get_object(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes | None:
        """The object's bytes, None when it does not exist.

        Args:
            max_bytes: read at most this many bytes plus one (a caller's size check then
                refuses the object without holding all of it).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self.client.get_object(Bucket=bucket, Key=key)
            body = resp["Body"]
            try:
                return body.read(max_bytes + 1) if max_bytes is not None else body.read()
            finally:
                body.close()
        except (ClientError, BotoCoreError) as exc:
            if self._missing(exc):
                return None
            self._raise(exc, f"GET {bucket}/{key}")

    def put_object(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        """Store ``data``; atomic (S3 never shows a partly written object, multipart
        included: the object appears when the upload completes)."""
        from botocore.exceptions import BotoCoreError, ClientError
        from s3transfer.exceptions import S3UploadFailedError

        try:
            self.client.upload_fileobj(
                io.BytesIO(data), bucket, key,
                ExtraArgs={"ContentType": content_type}, Config=self.transfer,
            )  # fmt: skip
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, f"PUT {bucket}/{key}")
        except S3UploadFailedError as exc:
            raise UnavailableError(
                "ASSET_STORE_FAILED", f"S3 PUT {bucket}/{key}: multipart upload failed"
            ) from exc

    def put_object_if_absent(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> bool:
        """Store ``data`` only when ``key`` does not exist (``If-None-Match: *``); True when
        written, False when the key was already there. For small records (one request)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type, IfNoneMatch="*"
            )
            return True
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError):
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    return False
            self._raise(exc, f"PUT {bucket}/{key}")

    def delete_object(self, bucket: str, key: str) -> None:
        """Remove ``key`` (no error when it is absent)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, f"DELETE {bucket}/{key}")

    def list_objects(self, bucket: str, prefix: str = "", page_size: int = 1000) -> list[str]:
        """Every key under ``prefix`` (ListObjectsV2, all pages of ``page_size`` keys)."""
        from botocore.exceptions import BotoCoreError, ClientError

        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size}
            ):
                keys += [o["Key"] for o in page.get("Contents", [])]
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, f"LIST {bucket}/{prefix}")
        return keys

    def create_bucket(self, bucket: str) -> None:
        """Create ``bucket`` (for tests and first set-up; no error when it is ours)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.create_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                self._raise(exc, f"CREATE {bucket}")
        except BotoCoreError as exc:
            self._raise(exc, f"CREATE {bucket}")
