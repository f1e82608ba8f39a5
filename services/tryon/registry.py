"""Registered garments: a garment's analysis made once and reused by every try-on.

``RegisterGarment`` (and the catalog adapter, and ``drape garments register``) analyse a
flat-lay with its hints and keep the :class:`~services.common.analysis.garment.GarmentAnalysis`
under a **garment id**, a content hash (:func:`garment_id`): lowercase hex SHA-256 over
length-prefixed parts ``"drape.garment/1"``, the analysis version, the category, sleeve and
length hints (``""`` when absent) and the flat-lay bytes as sent. Equal inputs on any
replica running the same code give the same id; a change to the analysis code or to the
configured cut-out gives new ids, so a stale analysis is never served (its callers get
``GARMENT_ID_UNKNOWN`` and register again).

The analysis version (:func:`analysis_version`) is a hash of the garment-analysis sources
(every ``services/common/analysis/*.py``) and the configured segmenter: any edit to the
analysis changes it, with nobody having to remember to bump a number.

:class:`GarmentRegistry` keeps analyses in a bounded in-process LRU cache and, optionally,
in an asset store shared by every replica (``DRAPE_GARMENT_STORE``; the file and S3 stores
of :mod:`services.catalog_adapter.store`). Stored layout, beside the catalog's assets
without colliding with them (a merchant id cannot start with ``_``)::

    _garments/{id}.npz    the analysis' arrays (numpy .npz, no pickles)
    _garments/{id}.json   everything else, as JSON; written last, so it marks a complete entry

Serialisation walks :func:`dataclasses.fields` of the analysis generically (arrays at any
depth go to the ``.npz``, tuples, dicts, nested dataclasses and enums are tagged in the
JSON), so fields added to ``GarmentAnalysis`` are stored without changes here.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import enum
import hashlib
import importlib
import io
import json
import re
import threading
from pathlib import Path

import numpy as np

from services.common.analysis import garment as G
from services.common.errors import InvalidInputError
from services.common.validation import shown

ID_PREFIX = "drape.garment/1"
STORE_PREFIX = "_garments"
# A garment id is exactly a SHA-256 in lowercase hex; anything else is refused up front.
GARMENT_ID_RE = re.compile(r"[0-9a-f]{64}")
SLEEVES = ("sleeveless", "short", "long")
LENGTHS = ("cropped", "regular", "long")
_FORMAT = 1  # of the stored JSON


@dataclasses.dataclass(frozen=True)
class Hints:
    """What the caller says a garment is (None: detect it).

    Attributes:
        category: ``"top"``, ``"bottom"``, ``"dress"`` or ``"outerwear"``.
        sleeve: ``"sleeveless"``, ``"short"`` or ``"long"``.
        length: ``"cropped"``, ``"regular"`` or ``"long"`` for the category.
    """

    category: str | None = None
    sleeve: str | None = None
    length: str | None = None


def analysis_version(segmenter: str = "classical") -> str:
    """``"garment/<12 hex>"``: a hash of the garment-analysis sources and the segmenter.

    Args:
        segmenter: the configured cut-out (``"classical"``, or ``"sam:<model ref>"``).
    """
    h = hashlib.sha256()
    root = Path(G.__file__).resolve().parent
    for path in sorted(root.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(segmenter.encode())
    return f"garment/{h.hexdigest()[:12]}"


def garment_id(data: bytes, hints: Hints, version: str) -> str:
    """The content hash naming a garment's analysis (see the module docstring)."""
    h = hashlib.sha256()
    parts = [ID_PREFIX, version, hints.category or "", hints.sleeve or "", hints.length or ""]
    for p in [*(x.encode() for x in parts), data]:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


def check_garment_id(value: str, field: str) -> str:
    """A garment id as sent by a caller.

    Raises:
        InvalidInputError: GARMENT_ID_INVALID naming ``field`` unless ``value`` is exactly 64
            lowercase hex digits.
    """
    if not GARMENT_ID_RE.fullmatch(value):
        raise InvalidInputError(
            "GARMENT_ID_INVALID",
            f"a garment_id is the 64 lowercase hex digits RegisterGarment returned, got "
            f"{shown(value)}",
            field=field,
        )
    return value


def unknown_id(value: str, field: str) -> InvalidInputError:
    """GARMENT_ID_UNKNOWN for a well-formed id that no cache holds."""
    return InvalidInputError(
        "GARMENT_ID_UNKNOWN",
        f"garment_id {value} is not registered here: it was evicted from the cache, "
        "registered with another server that shares no garment store, or under an older "
        "garment-analysis version; register the flat-lay again (RegisterGarment) and use "
        "the id it returns",
        field=field,
    )


# --------------------------------------------------------------------------- serialisation


def _encode(value, arrays: dict[str, np.ndarray]):
    """``value`` as JSON-able data; arrays are moved into ``arrays`` and referenced."""
    if isinstance(value, np.ndarray):
        name = f"a{len(arrays)}"
        arrays[name] = value
        return {"__ndarray__": name}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        cls = type(value)
        return {"__enum__": f"{cls.__module__}:{cls.__qualname__}", "value": value.value}
    if dataclasses.is_dataclass(value):
        cls = type(value)
        return {
            "__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
            "fields": {
                f.name: _encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)
            },
        }
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, arrays) for k, v in value.items()}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    raise TypeError(f"cannot store a {type(value).__name__} in a garment analysis")


def _class(path: str):
    module, _, qualname = path.partition(":")
    if not module.startswith("services."):  # only our own types come back from a store
        raise ValueError(f"refusing to load type {path!r} from a stored analysis")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _decode(value, arrays):
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        return arrays[value["__ndarray__"]]
    if "__tuple__" in value:
        return tuple(_decode(v, arrays) for v in value["__tuple__"])
    if "__items__" in value:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in value["__items__"]}
    if "__enum__" in value:
        return _class(value["__enum__"])(value["value"])
    if "__dataclass__" in value:
        cls = _class(value["__dataclass__"])
        return cls(**{k: _decode(v, arrays) for k, v in value["fields"].items()})
    return {k: _decode(v, arrays) for k, v in value.items()}


def dump_analysis(analysis: G.GarmentAnalysis, **extra) -> tuple[bytes, bytes]:
    """``(npz bytes, json bytes)`` of an analysis; ``extra`` is kept in the JSON (version,
    hints: provenance for people reading the store).

    Raises:
        TypeError: for a field value of a type that cannot be stored.
    """
    arrays: dict[str, np.ndarray] = {}
    doc = {"format": _FORMAT, **extra, "analysis": _encode(analysis, arrays)}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue(), json.dumps(doc, separators=(",", ":")).encode()


def load_analysis(npz: bytes, doc: bytes) -> G.GarmentAnalysis:
    """The analysis :func:`dump_analysis` wrote.

    Raises:
        ValueError: for data in another format, or naming a type outside ``services``.
    """
    meta = json.loads(doc)
    if meta.get("format") != _FORMAT:
        raise ValueError(f"stored garment analysis has format {meta.get('format')!r}")
    with np.load(io.BytesIO(npz), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return _decode(meta["analysis"], arrays)


# --------------------------------------------------------------------------- the registry


class GarmentRegistry:
    """Garment analyses by id: a bounded LRU in this process, then the shared store.

    Analyses are deep-copied on the way in and out, so no caller (a pipeline stage running
    on another thread) can change a cached one.

    Args:
        size: analyses kept in process (least recently used evicted first). An analysis
            holds the cut-out (RGBA crop) and its float mask: about 8 bytes a pixel of the
            garment's box, a few MB for a 1024-pixel flat-lay.
        store: an :class:`~services.catalog_adapter.store.AssetStore` shared by replicas, or
            None (in process only).
        version: the analysis version in every id (:func:`analysis_version`).
    """

    def __init__(self, size: int, store=None, version: str | None = None) -> None:
        if size < 1:
            raise ValueError(f"cache size must be at least 1, got {size}")
        self.size, self.store = size, store
        self.version = version or analysis_version()
        # id -> (analysis, whether it is in the store: a TryOn by flat-lay keeps its analysis
        # here only, and a later RegisterGarment of the same bytes must still store it).
        self._cache: collections.OrderedDict[str, tuple[G.GarmentAnalysis, bool]] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()
        self.hits = self.store_hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    def id_for(self, data: bytes, hints: Hints) -> str:
        """The id of ``data`` analysed with ``hints`` on this registry's version."""
        return garment_id(data, hints, self.version)

    def _key(self, gid: str, ext: str) -> str:
        return f"{STORE_PREFIX}/{gid}.{ext}"

    def get(self, gid: str, use_store: bool = True) -> G.GarmentAnalysis | None:
        """The analysis registered as ``gid`` (a copy), or None when unknown.

        Args:
            gid: a well-formed id (:func:`check_garment_id`).
            use_store: also look in the shared store when the LRU misses (and keep a hit
                in the LRU).

        Raises:
            UnavailableError: ASSET_STORE_FAILED when the store cannot be read.
        """
        with self._lock:
            found = self._cache.get(gid)
            if found is not None:
                self._cache.move_to_end(gid)
                self.hits += 1
                return copy.deepcopy(found[0])
        if use_store and self.store is not None:
            doc = self.store.get(self._key(gid, "json"))
            npz = self.store.get(self._key(gid, "npz")) if doc is not None else None
            if npz is not None:
                analysis = load_analysis(npz, doc)
                self._remember(gid, analysis, True)
                with self._lock:
                    self.store_hits += 1
                return copy.deepcopy(analysis)
        with self._lock:
            self.misses += 1
        return None

    def put(
        self,
        gid: str,
        analysis: G.GarmentAnalysis,
        persist: bool = True,
        hints: Hints | None = None,
    ) -> None:
        """Keep ``analysis`` as ``gid`` (a copy); ``persist`` also writes it to the store.

        Raises:
            UnavailableError: ASSET_STORE_FAILED when the store cannot be written.
        """
        analysis = copy.deepcopy(analysis)
        if persist and self.store is not None:
            npz, doc = dump_analysis(
                analysis,
                garment_id=gid,
                version=self.version,
                hints=dataclasses.asdict(hints or Hints()),
            )
            self.store.put(self._key(gid, "npz"), npz, "application/octet-stream")
            self.store.put(self._key(gid, "json"), doc, "application/json")  # last: complete
        self._remember(gid, analysis, persist and self.store is not None)

    def persisted(self, gid: str) -> bool:
        """Whether ``gid`` is cached here as written to (or read from) the store."""
        with self._lock:
            found = self._cache.get(gid)
        return found is not None and found[1]

    def _remember(self, gid: str, analysis: G.GarmentAnalysis, persisted: bool) -> None:
        with self._lock:
            self._cache[gid] = (analysis, persisted)
            self._cache.move_to_end(gid)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)


@dataclasses.dataclass
class Registered:
    """What :func:`register_garment` returns.

    Attributes:
        garment_id: the id to try the garment on by.
        analysis: its analysis (a copy).
        cached: True when the id was known (in process or in the store) and nothing was
            analysed.
        timings: seconds per stage (``decode``, ``garment``, ``store``).
    """

    garment_id: str
    analysis: G.GarmentAnalysis
    cached: bool
    timings: dict[str, float]


def register_garment(
    registry: GarmentRegistry,
    data: bytes,
    hints: Hints,
    limits,
    segmenter=None,
    field: str = "flat_lay",
) -> Registered:
    """Analyse an encoded flat-lay once and keep its analysis under its content hash.

    Args:
        registry: where the analysis is kept (and looked up first).
        data: the flat-lay as encoded bytes (what the id hashes).
        hints: the caller's hints, checked (:func:`services.tryon.hints.hints_from_proto`).
        limits: :class:`~services.common.images.ImageLimits` for decoding.
        segmenter: the configured cut-out, as for the pipeline.
        field: the flat-lay's field, for refusals (``flat_lay.data`` for decoding).

    Raises:
        InvalidInputError: the image refusals (field ``{field}.data``) and the garment
            analysis refusals (GARMENT_NOT_FOUND on ``field``, GARMENT_CATEGORY_CONFLICT on
            ``category``…).
        UnavailableError: ASSET_STORE_FAILED when the shared store fails.
    """
    import time

    from services.common.images import decode_image
    from services.tryon.pipeline import GarmentInput, analyze_garment_input

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    gid = registry.id_for(data, hints)
    found = registry.get(gid)
    timings["lookup"] = time.perf_counter() - t0
    if found is not None:
        if registry.store is not None and not registry.persisted(gid):
            # Known from a TryOn by flat-lay, which keeps analyses in process only.
            registry.put(gid, found, persist=True, hints=hints)
        return Registered(gid, found, True, timings)
    t0 = time.perf_counter()
    img = decode_image(data, limits, field=f"{field}.data")
    timings["decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = GarmentInput(img.pixels, hints.category, hints.sleeve, hints.length)
    try:
        analysis = analyze_garment_input(g, segmenter)
    except InvalidInputError as exc:
        if exc.field in (None, "", "garment"):
            exc.field = field
        raise
    timings["garment"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    registry.put(gid, analysis, persist=True, hints=hints)
    timings["store"] = time.perf_counter() - t0
    return Registered(gid, analysis, False, timings)


def open_garment_store(uri: str, settings=None):
    """The shared garment store named by ``uri`` (``file://PATH`` or ``s3://BUCKET/PREFIX``,
    S3 through the ``catalog_s3_*`` settings), or None for ``""``.

    Raises:
        ValueError: for another scheme, or s3:// without an endpoint.
    """
    if not uri:
        return None
    from services.catalog_adapter.store import open_store

    return open_store(uri, settings)


def registry_from_settings(settings, segmenter: str | None = None) -> GarmentRegistry:
    """The registry the settings describe (``garment_cache_size``, ``garment_store``).

    Raises:
        ConfigError: DRAPE_GARMENT_STORE when the store cannot be opened.
    """
    from services.common.errors import ConfigError

    try:
        store = open_garment_store(settings.garment_store, settings)
    except (ValueError, OSError) as exc:
        raise ConfigError("DRAPE_GARMENT_STORE", str(exc)) from None
    return GarmentRegistry(
        settings.garment_cache_size, store, analysis_version(segmenter or segmenter_name(settings))
    )


def segmenter_name(settings) -> str:
    """The cut-out the settings configure, as it enters the analysis version."""
    if settings.garment_segmenter == "sam":
        return f"sam:{settings.garment_sam_model}"
    return settings.garment_segmenter
