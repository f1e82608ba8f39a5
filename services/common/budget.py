"""How many request bytes a server holds at once, and how big one request may be.

gRPC reads a whole request message before any handler can look at it, so the size of what a
server holds is set by three things, all bounded here:

* **The message limit** (``grpc.max_receive_message_length``) of a server is the largest
  request its services accept: the images and videos a request can carry at their limits
  (``DRAPE_MAX_IMAGE_BYTES``, ``DRAPE_MAX_VIDEO_BYTES``) plus :data:`REQUEST_SLACK` for
  everything else, capped by ``DRAPE_MAX_MESSAGE_BYTES`` (:func:`server_receive_limit`).
* **Per method**, a request over its own limit (:func:`method_limit`: an InspectImage
  request can carry one image, a TryOn request a person and two garments) is refused with
  RESOURCE_EXHAUSTED ``MESSAGE_TOO_LARGE`` before it is parsed.
* **A process-wide byte budget** (:class:`ByteBudget`, ``DRAPE_MAX_INFLIGHT_BYTES``): the
  wire bytes of every admitted request count against it from the moment they are read
  until the call ends; a request that would exceed it is refused with RESOURCE_EXHAUSTED
  ``IN_FLIGHT_BYTES_LIMIT`` before it is parsed.

A refused request is dropped at once (nothing keeps a reference to its bytes), and after
large requests :class:`MemoryTrimmer` asks glibc to hand freed memory back to the system
(``malloc_trim``): without it the heap of a process that received a storm of 40 MiB
bodies stayed about a gigabyte above its baseline (``benchmarks/soak_memory.py``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.protobuf import descriptor_pool

from services.common.errors import DrapeError, InvalidInputError, ResourceExhaustedError

log = logging.getLogger("drape.budget")

MiB = 1024 * 1024

# Room in a request for everything that is not an image or a video: ids, experiment tags,
# options, bounded strings (FIELD_TOO_LONG limits are at most a few KiB), and an inline
# motion template (1800 frames x 33 keypoints at about 20 bytes each is ~1.2 MiB).
REQUEST_SLACK = 4 * MiB

IMAGE_MESSAGE = "drape.common.v1.Image"
VIDEO_MESSAGE = "drape.common.v1.Video"

# Repeated fields that can carry images or videos, and how many elements a request may
# have (more are refused by the service before any work). Kept in step with
# services.tryon.pipeline.MAX_GARMENTS by a test.
REPEATED_MEDIA = {"drape.tryon.v1.TryOnRequest.garments": 2}

# Requests whose size is set by a count of items, not by images or videos: they may use
# the whole configured message limit (DRAPE_MAX_MESSAGE_BYTES). A batch's products are
# bounded by DRAPE_CATALOG_BATCH_MAX_PRODUCTS once parsed.
AT_MESSAGE_LIMIT = frozenset({"drape.catalog.v1.StartBatchRequest"})

# The proto file of each ServiceApp by name (``drape/<name>/v1/<name>_service.proto``, the
# layout rule), apart from the MediaService, which lives with the common messages.
MEDIA_PROTO = "drape/common/v1/media_service.proto"


# --------------------------------------------------------------------------- limits


def _media_bytes(
    desc: _descriptor.Descriptor, image: int, video: int, seen: frozenset[str] = frozenset()
) -> int:
    """Most image and video bytes one message of type ``desc`` can carry (every member of
    a oneof counted: an upper bound)."""
    if desc.full_name == IMAGE_MESSAGE:
        return image
    if desc.full_name == VIDEO_MESSAGE:
        return video
    if desc.full_name in seen:  # a recursive message: no media found down this path
        return 0
    total = 0
    for field in desc.fields:
        if field.message_type is None:
            continue
        inner = _media_bytes(field.message_type, image, video, seen | {desc.full_name})
        if not inner:
            continue
        if field.label == _descriptor.FieldDescriptor.LABEL_REPEATED:
            count = REPEATED_MEDIA.get(field.full_name)
            if count is None:
                raise ValueError(
                    f"{field.full_name} repeats images or videos without a bound on their "
                    "number: add it to services.common.budget.REPEATED_MEDIA"
                )
            inner *= count
        total += inner
    return total


def request_limit(
    desc: _descriptor.Descriptor, image_bytes: int, video_bytes: int, cap: int
) -> int:
    """Largest acceptable request of type ``desc``: its images and videos at their limits
    plus :data:`REQUEST_SLACK`, at most ``cap`` (the configured message limit; all of it
    for the requests in :data:`AT_MESSAGE_LIMIT`)."""
    if desc.full_name in AT_MESSAGE_LIMIT:
        return cap
    return min(cap, _media_bytes(desc, image_bytes, video_bytes) + REQUEST_SLACK)


def method_limit(deserializer: Callable | None, settings: Any, default: int) -> int:
    """The request limit of a handler, from the message class behind its deserializer
    (``XRequest.FromString``); ``default`` for raw-bytes handlers."""
    cls = getattr(deserializer, "__self__", None)
    desc = getattr(cls, "DESCRIPTOR", None)
    if not isinstance(desc, _descriptor.Descriptor):
        return default
    return request_limit(
        desc, settings.max_image_bytes, settings.max_video_bytes, settings.max_message_bytes
    )


def service_files(app_names: Iterable[str]) -> list[str] | None:
    """Proto files of the apps hosted (the MediaService always); None when one app has
    no file where the layout puts it (its requests are then not known)."""
    pool = descriptor_pool.Default()
    files = [MEDIA_PROTO]
    for name in app_names:
        if name == "media":
            continue
        path = f"drape/{name}/v1/{name}_service.proto"
        try:
            pool.FindFileByName(path)
        except KeyError:
            return None
        files.append(path)
    return files


def server_receive_limit(app_names: Iterable[str], settings: Any) -> int:
    """The message limit of a server hosting ``app_names``: the largest request of any of
    their methods (:func:`request_limit`), or ``DRAPE_MAX_MESSAGE_BYTES`` when some app's
    requests are not known."""
    files = service_files(app_names)
    if files is None:
        return settings.max_message_bytes
    pool = descriptor_pool.Default()
    largest = min(settings.max_message_bytes, REQUEST_SLACK)
    for path in files:
        for service in pool.FindFileByName(path).services_by_name.values():
            for method in service.methods:
                largest = max(
                    largest,
                    request_limit(
                        method.input_type,
                        settings.max_image_bytes,
                        settings.max_video_bytes,
                        settings.max_message_bytes,
                    ),
                )
    return largest


# --------------------------------------------------------------------------- budget


class ByteBudget:
    """Counts the request bytes a process holds; admits a request only while the total
    stays within ``limit``. Never queues: the caller refuses what does not fit.

    Args:
        limit: most bytes held at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self.peak = 0
        self.refused = 0
        # Re-entrant: Held.__del__ releases, and may run on a thread inside try_acquire.
        self._lock = threading.RLock()

    def try_acquire(self, nbytes: int) -> bool:
        """Count ``nbytes`` in if they fit; False (nothing counted) when they do not."""
        with self._lock:
            if self._used + nbytes > self.limit:
                self.refused += 1
                return False
            self._used += nbytes
            self.peak = max(self.peak, self._used)
            return True

    def release(self, nbytes: int) -> None:
        """Count ``nbytes`` out again."""
        with self._lock:
            self._used -= nbytes

    @property
    def used(self) -> int:
        """Bytes held now."""
        return self._used


class Held:
    """A parsed request whose wire bytes count against a :class:`ByteBudget` until
    :meth:`release` (called when the call ends; also when the object is dropped, in case
    gRPC never ran the handler, e.g. the caller cancelled first)."""

    __slots__ = ("message", "nbytes", "_budget", "_trimmer")

    def __init__(self, budget: ByteBudget, nbytes: int, trimmer: MemoryTrimmer | None) -> None:
        self.message: Any = None
        self.nbytes = nbytes
        self._budget: ByteBudget | None = budget
        self._trimmer = trimmer

    def release(self) -> None:
        """Give the bytes back to the budget (once) and drop the message."""
        budget, self._budget = self._budget, None
        self.message = None
        if budget is not None:
            budget.release(self.nbytes)
            if self._trimmer is not None:
                self._trimmer.note(self.nbytes)

    def __del__(self) -> None:
        self.release()


class Refused:
    """A request refused before it was parsed: only the reason is kept, not its bytes."""

    __slots__ = ("error",)

    def __init__(self, error: DrapeError) -> None:
        self.error = error


def budget_deserializer(
    deserializer: Callable[[bytes], Any] | None,
    *,
    method: str,
    limit: int,
    budget: ByteBudget,
    trimmer: MemoryTrimmer | None = None,
) -> Callable[[bytes], Held | Refused]:
    """Wrap a unary request's deserializer: refuse a request over ``limit`` or over the
    ``budget`` before parsing it, parse the rest, and hand the handler a :class:`Held`.

    gRPC calls the deserializer as soon as the message is read (on its polling thread), so
    a refusal frees the bytes at once instead of after a worker thread gets to the call.
    An unparsable message becomes INVALID_ARGUMENT ``MALFORMED_REQUEST`` (gRPC would answer
    INTERNAL, blaming itself).
    """

    def deserialize(raw: bytes) -> Held | Refused:
        nbytes = len(raw)
        if nbytes > limit:
            if trimmer is not None:
                trimmer.note(nbytes)
            return Refused(
                ResourceExhaustedError(
                    "MESSAGE_TOO_LARGE",
                    f"the request is {nbytes} bytes; {method} accepts at most {limit} "
                    "(its images and videos at their size limits, plus "
                    f"{REQUEST_SLACK // MiB} MiB for the rest)",
                    metadata={"limit": str(limit), "size": str(nbytes)},
                )
            )
        if not budget.try_acquire(nbytes):
            if trimmer is not None:
                trimmer.note(nbytes)
            return Refused(
                ResourceExhaustedError(
                    "IN_FLIGHT_BYTES_LIMIT",
                    f"the server holds {budget.used} of its {budget.limit} bytes of requests "
                    f"in flight and this one is {nbytes}; retry with backoff",
                    metadata={"limit": str(budget.limit), "size": str(nbytes)},
                )
            )
        held = Held(budget, nbytes, trimmer)
        try:
            held.message = raw if deserializer is None else deserializer(raw)
        except Exception:  # noqa: BLE001 - any parse failure is the caller's bytes
            held.release()
            return Refused(
                InvalidInputError(
                    "MALFORMED_REQUEST",
                    f"the request is not a valid {method} request message",
                )
            )
        return held

    return deserialize


# --------------------------------------------------------------------------- trimming


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


class MemoryTrimmer:
    """Returns freed heap to the system after large requests went away.

    glibc keeps freed memory in its arenas (one per thread that allocated, up to 8 per
    core) and raises its mmap threshold after freeing a large block, so later large blocks
    come from the heap and stay resident after they are freed. ``malloc_trim(0)`` walks
    every arena and gives free pages back. It runs on one background thread, at most once
    per ``interval`` seconds, once ``threshold`` bytes of requests went away since the
    last run, so a storm costs one trim per interval, not one per call.

    Args:
        threshold: bytes released before a trim is worth it.
        interval: least seconds between two trims.
    """

    def __init__(self, threshold: int = 16 * MiB, interval: float = 1.0) -> None:
        self.threshold = threshold
        self.interval = interval
        self.trims = 0
        self._fn = _load_malloc_trim()
        self._pending = 0
        self._lock = threading.RLock()  # note() may run from Held.__del__
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        """Whether this C library has ``malloc_trim``."""
        return self._fn is not None

    def note(self, nbytes: int) -> None:
        """Record that ``nbytes`` of request data went away."""
        if self._fn is None or self._closed:
            return
        with self._lock:
            self._pending += nbytes
            if self._pending < self.threshold:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="drape-trim", daemon=True)
                self._thread.start()
        self._wake.set()

    def trim_now(self) -> bool:
        """Trim at once; False where ``malloc_trim`` is missing."""
        if self._fn is None:
            return False
        with self._lock:
            self._pending = 0
        self._fn(0)
        self.trims += 1
        return True

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            # Let the call that noted the bytes finish dropping them (gRPC frees a
            # request after the handler returns), and gather a storm into one trim.
            time.sleep(self.interval)
            try:
                self.trim_now()
            except Exception:  # noqa: BLE001 - trimming is an optimisation only
                log.exception("malloc_trim failed")
                return

    def close(self) -> None:
        """Stop the background thread."""
        self._closed = True
        self._wake.set()
