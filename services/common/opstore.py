"""Operation state that every replica reads: records, results, cancel requests and
request-id claims in an asset store (``file://`` on a shared volume, or ``s3://``).

Behind a load balancer a StartClip lands on one replica and its Watch, Get or Cancel on
any other. The replica that runs an operation writes its record here on every state
change (progress at most every :data:`PROGRESS_EVERY` seconds, plus a keep-alive), and its
result before the record that says SUCCEEDED; the others read it. Layout under
``operations/``::

    ops/<id>.json        the record (state, progress, owner, times, error)
    ops/<id>.result      the serialized result, written before the SUCCEEDED record
    ops/<id>.cancel      a Cancel that reached another replica; the runner polls for it
    requests/<h>.json    the claim of a request id: {"op": id, "fingerprint": sha256}

A claim is written with a conditional PUT (``If-None-Match: *`` on S3, ``link()`` on a
file store), so of two replicas started with the same request id exactly one runs it.

The store is not swept: expired records read as absent, and deleting them is the store's
job (an S3 lifecycle rule on the ``operations/`` prefix, or a cron on the volume).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Any

PREFIX = "operations"
PROGRESS_EVERY = 0.5  # seconds between progress writes of one operation
KEEPALIVE = 10.0  # seconds between writes of a running operation that reports nothing
LOST_AFTER = 120.0  # a queued or running record not written for this long: its replica died


def scope_of(identity: str) -> str:
    """The owner scope stored with an operation: a digest of the caller's identity (the
    identity itself never reaches the store), "" when authentication is off."""
    if not identity:
        return ""
    return hashlib.sha256(b"drape-owner\0" + identity.encode()).hexdigest()[:32]


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


class OperationStore:
    """Operation records in an :class:`~services.catalog_adapter.store.AssetStore`.

    Args:
        store: the asset store shared by every replica.
    """

    def __init__(self, store) -> None:
        self.store = store

    @staticmethod
    def _op(op_id: str, suffix: str) -> str:
        return f"{PREFIX}/ops/{op_id}.{suffix}"

    @staticmethod
    def _claim_key(scope: str, request_id: str) -> str:
        h = hashlib.sha256(f"{scope}\0{request_id}".encode()).hexdigest()
        return f"{PREFIX}/requests/{h}.json"

    # ------------------------------------------------------------------ records

    def save(self, record: dict[str, Any]) -> None:
        """Write an operation's record (whole; readers never see a partial one)."""
        data = json.dumps(record, separators=(",", ":")).encode()
        self.store.put(self._op(record["id"], "json"), data, "application/json")

    def load(self, op_id: str) -> dict[str, Any] | None:
        """The record, None when absent or unreadable."""
        raw = self.store.get(self._op(op_id, "json"))
        if raw is None:
            return None
        try:
            rec = json.loads(raw)
        except ValueError:
            return None
        return rec if isinstance(rec, dict) and rec.get("id") == op_id else None

    def put_result(self, op_id: str, data: bytes) -> None:
        self.store.put(self._op(op_id, "result"), data, "application/octet-stream")

    def get_result(self, op_id: str) -> bytes | None:
        return self.store.get(self._op(op_id, "result"))

    # ------------------------------------------------------------------ cancel

    def request_cancel(self, op_id: str) -> None:
        self.store.put(self._op(op_id, "cancel"), str(time.time()).encode(), "text/plain")

    def cancel_requested(self, op_id: str) -> bool:
        return self.store.get(self._op(op_id, "cancel")) is not None

    # ------------------------------------------------------------------ request ids

    def claim(self, scope: str, request_id: str, op_id: str, fingerprint: str) -> bool:
        """Bind ``request_id`` (within ``scope``) to ``op_id``; False when already bound."""
        doc = json.dumps({"op": op_id, "fingerprint": fingerprint, "at": time.time()}).encode()
        return self.store.put_if_absent(self._claim_key(scope, request_id), doc)

    def claimed(self, scope: str, request_id: str) -> dict[str, Any] | None:
        """The claim of ``request_id``: ``{"op": id, "fingerprint": ...}``, or None."""
        raw = self.store.get(self._claim_key(scope, request_id))
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("op"), str) else None

    def reclaim(self, scope: str, request_id: str, op_id: str, fingerprint: str) -> None:
        """Overwrite the claim of an expired operation's request id."""
        doc = json.dumps({"op": op_id, "fingerprint": fingerprint, "at": time.time()}).encode()
        self.store.put(self._claim_key(scope, request_id), doc, "application/json")

    def forget(self, op_id: str) -> None:
        """Remove an operation that never ran (lost a request-id race)."""
        self.store.delete(self._op(op_id, "json"))


def open_operation_store(uri: str, settings=None) -> OperationStore | None:
    """The shared operation store at ``uri`` (``file://PATH`` or ``s3://BUCKET/PREFIX``), or
    None for ``""``: operations stay in the process (one replica)."""
    if not uri:
        return None
    from services.catalog_adapter.store import open_store

    return OperationStore(open_store(uri, settings))
