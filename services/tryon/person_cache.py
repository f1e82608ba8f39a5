"""A small per-process cache of person analyses, keyed by the photo's pixels.

A shopper tries several garments on one photo: each call sends the same photo, and its
person analysis (pose, face and the colour masks, about a third of a still's time on one
core) comes out the same every time. The cache keys on a BLAKE2b digest of the decoded
pixels (with their shape, the selection policy and the refusal field), not on the encoded
bytes, so it needs nothing from the transport and serves the try-on pipelines of every
backend alike. Bounded (least recently used goes first); refusals are not cached.
"""

from __future__ import annotations

import collections
import hashlib
import threading

import numpy as np

from services.common.analysis import person as P


class CachedPersonAnalyzer:
    """A :class:`~services.common.analysis.person.PersonAnalyzer` with an LRU in front.

    The cached :class:`~services.common.analysis.person.PersonAnalysis` is shared between
    calls: the pipeline only reads it (it copies ``warnings`` before adding to them).

    Args:
        analyzer: the analyzer that does the work on a miss.
        size: analyses kept (0 keeps none: every call is analysed).
    """

    def __init__(self, analyzer: P.PersonAnalyzer, size: int = 8) -> None:
        self.analyzer = analyzer
        self.size = size
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[bytes, P.PersonAnalysis] = collections.OrderedDict()

    def analyze(
        self,
        rgb: np.ndarray,
        selection: P.PersonSelection = P.PersonSelection.MOST_PROMINENT,
        field: str = "person",
    ) -> P.PersonAnalysis:
        """:meth:`PersonAnalyzer.analyze`, answered from the cache when the same pixels
        were analysed with the same selection before. Raises what it raises."""
        if self.size <= 0:
            return self.analyzer.analyze(rgb, selection, field)
        key = _key(rgb, selection, field)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return hit
            self.misses += 1
        # Outside the lock: two calls with one new photo may both analyse it (the result is
        # the same); holding the lock would serialise every miss behind it.
        pa = self.analyzer.analyze(rgb, selection, field)
        with self._lock:
            self._entries[key] = pa
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return pa

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        """Release the analyzer's graphs and forget the entries."""
        with self._lock:
            self._entries.clear()
        self.analyzer.close()


def _key(rgb: np.ndarray, selection: P.PersonSelection, field: str) -> bytes:
    # A cryptographic digest: a collision would hand one shopper another's analysis.
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{rgb.shape}|{rgb.dtype}|{selection.name}|{field}".encode())
    h.update(np.ascontiguousarray(rgb).data)
    return h.digest()
