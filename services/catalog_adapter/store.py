"""The asset store: where stills and clips land, keyed by path, written atomically.

Two implementations behind one small interface (:class:`AssetStore`):

* :class:`FileStore` (default): a directory tree. Every write goes to a temporary name in
  the target directory, is fsynced, then renamed over the final name (``os.replace`` is
  atomic on POSIX), and the directory is fsynced: a crash at any moment leaves either the
  old file, the new file, or a stray ``.tmp-*`` file that readers never list.
* :class:`S3Store`: AWS S3 or any S3-compatible object store through
  :mod:`services.catalog_adapter.s3` (botocore: the default credential chain, retries,
  multipart uploads). A PUT is atomic by the S3 contract: an object is visible whole or not
  at all, so no rename is needed.

Keys are ``/``-separated relative paths made only of checked segments (see
:func:`check_segment`), so a merchant id can never climb out of the store.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from services.common.errors import InvalidInputError, UnavailableError
from services.common.validation import shown

# Matched whole (fullmatch): "$" alone also passes "acme\n", a directory name with a newline.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TMP_PREFIX = ".tmp-"


def check_segment(value: str, field: str) -> str:
    """A path segment from an event (merchant id, SKU, model id) that is safe in a key.

    Raises:
        InvalidInputError: INVALID_EVENT naming ``field`` when ``value`` is empty, longer than
            128 characters, or has characters other than letters, digits, ``.``, ``_``, ``-``
            (or starts with one of the last three).
    """
    if not _SEGMENT_RE.fullmatch(value or ""):
        raise InvalidInputError(
            "INVALID_EVENT",
            f"{field} must be 1-128 characters of A-Z, a-z, 0-9, '.', '_', '-' starting with a "
            f"letter or digit, got {shown(value or '')}",
            field=field,
        )
    return value


class AssetStore(Protocol):
    """What the adapter needs from a store."""

    def uri(self, key: str) -> str:
        """The URI under which ``key`` is announced (``file:///…`` or ``s3://…``)."""

    def get(self, key: str) -> bytes | None:
        """The object's bytes, None when absent.

        Raises:
            UnavailableError: ASSET_STORE_FAILED when the store cannot be read (transient).
        """

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Write ``data`` under ``key`` atomically (readers see all of it or none).

        Raises:
            UnavailableError: ASSET_STORE_FAILED (transient).
        """

    def put_if_absent(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        """Write ``data`` under ``key`` only when no object is there (atomic test-and-set:
        of two replicas racing, exactly one wins). True when written.

        Raises:
            UnavailableError: ASSET_STORE_FAILED (transient).
        """

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when absent."""

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted; temporary files are never listed."""


class FileStore:
    """Assets in a local (or mounted network) directory.

    Args:
        root: the store's directory; created when missing.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or p.startswith(TMP_PREFIX) for p in parts):
            raise ValueError(f"bad asset key {key!r}")
        return self.root.joinpath(*parts)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UnavailableError(
                "ASSET_STORE_FAILED", f"cannot read {key}: {exc.strerror or exc}"
            ) from None

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self._write(key, data, exclusive=False)

    def put_if_absent(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        return self._write(key, data, exclusive=True)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise UnavailableError(
                "ASSET_STORE_FAILED", f"cannot delete {key}: {exc.strerror or exc}"
            ) from None

    def _write(self, key: str, data: bytes, exclusive: bool) -> bool:
        path = self._path(key)
        tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{uuid.uuid4().hex[:12]}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)  # the bytes are on disk before the name points at them
            finally:
                os.close(fd)
            if exclusive:
                # link() fails when the name exists: the complete file appears or nothing.
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
                finally:
                    tmp.unlink(missing_ok=True)
            else:
                os.replace(tmp, path)
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)  # and the rename itself survives a power cut
            finally:
                os.close(dfd)
            return True
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise UnavailableError(
                "ASSET_STORE_FAILED", f"cannot write {key}: {exc.strerror or exc}"
            ) from None

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix if prefix else self.root
        if not base.exists():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if not name.startswith(TMP_PREFIX):
                    out.append(Path(dirpath, name).relative_to(self.root).as_posix())
        return sorted(out)


class S3Store:
    """Assets in an S3-compatible bucket under a key prefix.

    Args:
        client: a :class:`services.catalog_adapter.s3.S3Client`.
        bucket: the bucket.
        prefix: key prefix without leading or trailing ``/`` (may be empty).
    """

    def __init__(self, client, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def get(self, key: str) -> bytes | None:
        return self.client.get_object(self.bucket, self._key(key))

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(self.bucket, self._key(key), data, content_type)

    def put_if_absent(self, key: str, data: bytes, content_type: str = "application/json") -> bool:
        return self.client.put_object_if_absent(self.bucket, self._key(key), data, content_type)

    def delete(self, key: str) -> None:
        self.client.delete_object(self.bucket, self._key(key))

    def list(self, prefix: str = "") -> list[str]:
        keys = self.client.list_objects(self.bucket, self._key(prefix))
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[cut:] for k in keys)


def s3_client_from_settings(settings):
    """An :class:`~services.catalog_adapter.s3.S3Client` from the ``catalog_s3_*`` settings,
    or None when no endpoint is configured. Without an access key the client takes its
    credentials from botocore's default chain (IRSA web identity, STS roles, environment,
    instance metadata)."""
    if not settings.catalog_s3_endpoint:
        return None
    from services.catalog_adapter.s3 import S3Client

    return S3Client(
        settings.catalog_s3_endpoint,
        settings.catalog_s3_region,
        settings.catalog_s3_access_key,
        settings.catalog_s3_secret_key,
    )


def open_store(uri: str, settings=None) -> AssetStore:
    """The store named by ``uri``: ``file://PATH`` (``file://out/assets`` is relative to the
    working directory, ``file:///srv/assets`` absolute) or ``s3://BUCKET/PREFIX``.

    Raises:
        ValueError: for another scheme, or s3:// without an endpoint in ``settings``.
    """
    if uri.startswith("file://"):
        rest = uri[len("file://") :]
        return FileStore(unquote(rest) or ".")
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        client = s3_client_from_settings(settings) if settings is not None else None
        if client is None:
            raise ValueError("an s3:// asset store needs DRAPE_CATALOG_S3_ENDPOINT")
        return S3Store(client, parsed.netloc, parsed.path)
    raise ValueError(f"unsupported asset store {uri!r}: expected file:// or s3://")
