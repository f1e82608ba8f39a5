"""Small pure helpers of the clip endpoints: byte ranges, clip size, the result cache.

Nothing here touches gRPC or the network.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from collections import OrderedDict

# Clip results kept for the video and poster endpoints (a browser fetches a video in
# several range requests): a few clips, for a few minutes, never beyond their operation.
CACHE_ENTRIES = 8
CACHE_BYTES = 64 * 1024 * 1024
CACHE_SECONDS = 300.0


def parse_range(header: str, size: int) -> tuple[int, int] | None | bool:
    """The byte range a ``Range`` header asks for, of a representation of ``size`` bytes.

    Returns:
        ``(first, last)`` inclusive for one satisfiable range; None when the header is to
        be ignored (absent, malformed, another unit or several ranges: RFC 9110 §14.2 lets
        a server answer those with the whole body); False when the single range cannot be
        satisfied (416).
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash or len(first_s) > 19 or len(last_s) > 19:
        return None
    if not (first_s.isdigit() or first_s == "") or not (last_s.isdigit() or last_s == ""):
        return None
    if first_s == "":
        if last_s == "":
            return None
        suffix = int(last_s)  # the last N bytes
        if suffix == 0 or size == 0:
            return False
        return max(0, size - suffix), size - 1
    first = int(first_s)
    if last_s and int(last_s) < first:
        return None  # invalid syntax: ignored
    if first >= size:
        return False
    last = int(last_s) if last_s else size - 1
    return first, min(last, size - 1)


def clip_size(still: bytes, max_side: int) -> tuple[int, int]:
    """Even clip width and height for ``still`` with its longest side at most ``max_side``
    (the still's aspect ratio, after its EXIF orientation); ``(0, 0)`` when the bytes are not
    an image PIL recognises from its header (the service then refuses them with a reason).
    Reads the header only, never the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(still)) as img:
            width, height = img.size
            try:
                orientation = img.getexif().get(0x0112, 1)
            except Exception:  # noqa: BLE001 - a broken EXIF block changes nothing here
                orientation = 1
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return 0, 0
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if width < 2 or height < 2:
        return 0, 0
    scale = min(1.0, max_side / max(width, height))

    def even(n: float) -> int:
        return max(2, int(round(n * scale / 2)) * 2)

    return even(width), even(height)


@dataclasses.dataclass
class ClipFiles:
    """A finished clip's bytes."""

    video: bytes
    poster: bytes
    warnings: list[dict[str, str]]
    expires: float  # time.monotonic() after which the entry is dropped

    @property
    def size(self) -> int:
        return len(self.video) + len(self.poster)


class ClipCache:
    """A small LRU of finished clips, by (caller, operation id); bounded in entries, bytes
    and time. Thread-safe."""

    def __init__(
        self,
        entries: int = CACHE_ENTRIES,
        max_bytes: int = CACHE_BYTES,
        seconds: float = CACHE_SECONDS,
    ) -> None:
        self.entries, self.max_bytes, self.seconds = entries, max_bytes, seconds
        self._items: OrderedDict[tuple[str, str], ClipFiles] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> ClipFiles | None:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple[str, str], files: ClipFiles, ttl: float | None = None) -> None:
        """Keep ``files`` for at most the cache's time and ``ttl`` (the operation's own
        remaining lifetime, when known)."""
        if files.size > self.max_bytes:
            return
        limit = self.seconds if ttl is None else max(0.0, min(self.seconds, ttl))
        files.expires = time.monotonic() + limit
        with self._lock:
            self._items[key] = files
            self._items.move_to_end(key)
            self._expire(time.monotonic())
            while len(self._items) > self.entries or self._bytes() > self.max_bytes:
                self._items.popitem(last=False)

    def _bytes(self) -> int:
        return sum(f.size for f in self._items.values())

    def _expire(self, now: float) -> None:
        for key in [k for k, f in self._items.items() if f.expires <= now]:
            del self._items[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
