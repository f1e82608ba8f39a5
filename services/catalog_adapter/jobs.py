"""The idempotent job: one product event in, one still (and clip) per stock model out.

Transport-free: :class:`JobRunner` knows the asset store, the rosters and the steps, not
Kafka. Every asset's key is a content hash (:func:`content_hash`) of what made it: the
garment bytes and hints, the stock model's pixels, the step's version and the options.
Each product's garments are registered once (:meth:`StillRunner.register`, a content hash
of the garment) before the first still is made, and every stock model is dressed by id.
An asset whose metadata file already exists is reused, never made again; the metadata file
is written after the asset itself, so it marks a complete asset.

Store layout (``{m}/{s}/{model}/`` = merchant, SKU, stock model)::

    {m}/{s}/{model}/{hash}.png        the still (or .jpg/.webp)
    {m}/{s}/{model}/{hash}.json       its metadata: kind, mime, size, backend, created_at
    {m}/{s}/{model}/{hash}.mp4 …      clip assets, same scheme
    {m}/{s}/_revision.json            highest product revision handled (stale check)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import re

from google.protobuf import timestamp_pb2

from drape.catalog.v1 import events_pb2 as ev_pb
from services import common
from services.catalog_adapter.product_types import garment_hints
from services.catalog_adapter.roster import Rosters, StockModel
from services.catalog_adapter.runners import GarmentSpec, MadeAsset
from services.catalog_adapter.store import AssetStore, check_segment
from services.common.context import CancelToken, validate_tag
from services.common.errors import DrapeError, InvalidInputError
from services.common.media import FORMAT_NAMES
from services.common.validation import shown
from services.experiments.apply import catalog_recipe

log = logging.getLogger("drape.catalog")

ADAPTER_VERSION = f"catalog/{common.__version__}"
REFERENCE_SCHEMES = ("file://", "s3://", "http://", "https://")
MAX_GARMENTS = 2
# Bounds of an event's strings (documented in proto/drape/catalog/v1/events.proto); every
# pattern is matched whole (fullmatch), so a trailing newline never passes.
_EVENT_ID_RE = re.compile(r"[\x21-\x7e]{1,128}")  # as a request_id: printable, no spaces
_MOTION_NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")  # as a motion template name
URI_MAX = 2048
PRODUCT_TYPE_MAX = 128
MAX_REPORTED = 16  # problems an INVALID_EVENT lists


def content_hash(*parts: bytes | str | int) -> str:
    """Lowercase hex SHA-256 over length-prefixed parts (no two part lists collide)."""
    h = hashlib.sha256()
    for p in parts:
        b = p if isinstance(p, bytes) else str(p).encode()
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()


def validate_event(ev: ev_pb.ProductUpserted) -> None:
    """Checks that need no I/O, run before anything else.

    Raises:
        InvalidInputError: INVALID_EVENT listing every bad field (the first one in ``field``).
    """
    bad: list[tuple[str, str]] = []
    if not _EVENT_ID_RE.fullmatch(ev.event_id):
        bad.append(("event_id", "required, 1-128 printable ASCII characters without spaces"))
    for name in ("merchant_id", "sku"):
        try:
            check_segment(getattr(ev, name), name)
        except InvalidInputError as exc:
            bad.append((name, exc.message))
    if not ev.garments:
        bad.append(("garments", "at least one garment is required"))
    elif len(ev.garments) > MAX_GARMENTS:
        bad.append(("garments", f"at most {MAX_GARMENTS} garments (a top and a bottom)"))
    for i, g in enumerate(ev.garments):
        if len(g.image_uri) > URI_MAX:
            bad.append((f"garments[{i}].image_uri", f"at most {URI_MAX} characters"))
        elif not g.image_uri.startswith(REFERENCE_SCHEMES):
            bad.append(
                (
                    f"garments[{i}].image_uri",
                    f"must start with one of {', '.join(REFERENCE_SCHEMES)}",
                )
            )
        if len(g.product_type) > PRODUCT_TYPE_MAX:
            bad.append((f"garments[{i}].product_type", f"at most {PRODUCT_TYPE_MAX} characters"))
            continue
        try:
            garment_hints(g, f"garments[{i}].")
        except InvalidInputError as exc:
            bad.append((exc.field, exc.message))
    d = ev.deliverables
    if d.motion_template and not _MOTION_NAME_RE.fullmatch(d.motion_template):
        bad.append(
            (
                "deliverables.motion_template",
                f"1-64 of a-z, 0-9, '-', '_', got {shown(d.motion_template)}",
            )
        )
    if not (d.stills or d.clips):
        bad.append(("deliverables", "ask for stills, clips or both"))
    if d.still_format not in FORMAT_NAMES:
        bad.append(("deliverables.still_format", f"unknown format {d.still_format}"))
    if ev.roster_id:
        try:
            check_segment(ev.roster_id, "roster_id")
        except InvalidInputError as exc:
            bad.append(("roster_id", exc.message))
    for name in ("experiment_id", "variant"):
        try:
            validate_tag(getattr(ev.experiment, name), f"experiment.{name}")
        except InvalidInputError as exc:
            bad.append((f"experiment.{name}", exc.message))
    if bad:
        # An event with thousands of bad garments must not make a dead letter of megabytes.
        more = f"; and {len(bad) - MAX_REPORTED} more" if len(bad) > MAX_REPORTED else ""
        raise InvalidInputError(
            "INVALID_EVENT",
            "; ".join(f"{f}: {m}" for f, m in bad[:MAX_REPORTED]) + more,
            field=bad[0][0],
            metadata={"fields": ",".join(f for f, _ in bad[:MAX_REPORTED])},
        )


@dataclasses.dataclass
class AttemptResult:
    """What one attempt at a product achieved.

    Attributes:
        ready: AssetReady of every asset announced (made or reused), in order.
        failures: (model_id, kind, error) of each model/asset that failed; model_id is empty
            when the failure concerns the whole product (a garment, the roster).
        done_models: models whose assets are all done (not retried again).
        created: assets made anew in this attempt.
    """

    ready: list[ev_pb.AssetReady] = dataclasses.field(default_factory=list)
    failures: list[tuple[str, int, DrapeError | Exception]] = dataclasses.field(
        default_factory=list
    )
    done_models: set[str] = dataclasses.field(default_factory=set)
    created: int = 0


def _now() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


class JobRunner:
    """Makes (or reuses) the assets of product events.

    Args:
        store: the asset store.
        rosters: the rosters.
        stills: the still step (:mod:`services.catalog_adapter.runners`).
        clips: the clip step.
        read: ``read(uri, field, token=token) -> bytes`` for garment references (the
            :class:`~services.catalog_adapter.fetch.ReferenceReader` of the events' fetch
            policy; the fetch ends by the job's deadline).
    """

    def __init__(self, store: AssetStore, rosters: Rosters, stills, clips, read) -> None:
        self.store, self.rosters, self.stills, self.clips, self.read = (
            store, rosters, stills, clips, read,
        )  # fmt: skip

    # ------------------------------------------------------------------ revisions

    def _revision_key(self, ev) -> str:
        return f"{ev.merchant_id}/{ev.sku}/_revision.json"

    def is_stale(self, ev: ev_pb.ProductUpserted) -> bool:
        """True when a higher revision of the product was already handled."""
        if ev.revision <= 0:
            return False
        raw = self.store.get(self._revision_key(ev))
        return raw is not None and json.loads(raw).get("revision", 0) > ev.revision

    def record_revision(self, ev: ev_pb.ProductUpserted) -> None:
        """Remember ``ev.revision`` as handled (products are handled in order per partition,
        so no two writers race on one product)."""
        if ev.revision > 0 and not self.is_stale(ev):
            body = json.dumps({"revision": ev.revision, "event_id": ev.event_id}).encode()
            self.store.put(self._revision_key(ev), body, "application/json")

    # ------------------------------------------------------------------ assets

    def _meta(self, key: str) -> dict | None:
        raw = self.store.get(key + ".json")
        return None if raw is None else json.loads(raw)

    def _save(self, base: str, asset: MadeAsset, backend: str, version: str) -> dict:
        self.store.put(f"{base}.{asset.ext}", asset.data, asset.mime)
        meta = {
            "kind": asset.kind,
            "mime": asset.mime,
            "ext": asset.ext,
            "width": asset.width,
            "height": asset.height,
            "backend": backend,
            "pipeline_version": version,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(),
        }
        # Written last: its presence means the asset is complete.
        self.store.put(base + ".json", json.dumps(meta).encode(), "application/json")
        return meta

    def _ready(self, ev, model: StockModel, chash: str, base: str, meta: dict, reused: bool):
        created = timestamp_pb2.Timestamp()
        created.FromDatetime(_dt.datetime.fromisoformat(meta["created_at"]))
        return ev_pb.AssetReady(
            event_id=ev.event_id,
            merchant_id=ev.merchant_id,
            sku=ev.sku,
            model_id=model.id,
            kind=meta["kind"],
            asset_uri=self.store.uri(f"{base}.{meta['ext']}"),
            mime_type=meta["mime"],
            content_hash=chash,
            pipeline_version=meta["pipeline_version"],
            experiment=ev.experiment,
            backend=meta["backend"],
            created_at=created,
            reused=reused,
            revision=ev.revision,
            width=meta["width"],
            height=meta["height"],
        )

    def attempt(
        self,
        ev: ev_pb.ProductUpserted,
        token: CancelToken,
        skip_models: set[str] | frozenset[str] = frozenset(),
        force: bool = False,
    ) -> AttemptResult:
        """One attempt at every model of the event's roster not in ``skip_models``.

        Never raises for a product's own failures: they are returned in ``failures``.
        """
        out = AttemptResult()
        try:
            # An experiment variant may set the roster, motion and clips; its recipe joins
            # the content hash (empty outside experiments: existing hashes unchanged).
            recipe_parts = catalog_recipe(ev)
            _rid, models = self.rosters.resolve(ev.merchant_id, ev.roster_id)
            garments = []
            for i, g in enumerate(ev.garments):
                token.check("fetch")
                hints = garment_hints(g, f"garments[{i}].")
                data = self.read(g.image_uri, f"garments[{i}].image_uri", token=token)
                garments.append(GarmentSpec(data, hints.category, hints.sleeve, hints.length))
        except Exception as exc:  # noqa: BLE001 - reported as the product's failure
            out.failures.append(("", ev_pb.ASSET_KIND_UNSPECIFIED, exc))
            return out
        d = ev.deliverables
        fmt = FORMAT_NAMES.get(d.still_format, "PNG")
        garment_parts: list[bytes | str] = []
        for g in garments:
            garment_parts += [hashlib.sha256(g.data).hexdigest(), g.category or ""]
            garment_parts += [g.sleeve or "", g.length or ""]
        registered: list[GarmentSpec] = []

        def register() -> list[GarmentSpec]:
            # Once per product, and only when a still is to be made (reused stills need no
            # analysis): every model is then dressed by garment id.
            if not registered:
                for i, g in enumerate(garments):
                    token.check("register")
                    registered.append(self.stills.register(g, f"garments[{i}]", token))
            return registered

        for model in models:
            if model.id in skip_models:
                continue
            kind = ev_pb.ASSET_KIND_STILL
            try:
                token.check("still")
                version = f"{ADAPTER_VERSION}+{self.stills.version}"
                still_hash = content_hash(
                    "still", *garment_parts, model.sha256, version, fmt, "refine=1", *recipe_parts
                )
                base = f"{ev.merchant_id}/{ev.sku}/{model.id}/{still_hash}"
                meta = None if force else self._meta(base)
                reused = meta is not None
                if meta is None:
                    try:
                        specs = register()
                    except Exception as exc:  # noqa: BLE001 - the garment: the whole product
                        out.failures.append(("", ev_pb.ASSET_KIND_UNSPECIFIED, exc))
                        return out
                    asset = self.stills.make_still(model, specs, fmt, token)
                    meta = self._save(base, asset, self.stills.backend, version)
                    out.created += 1
                if d.stills:
                    out.ready.append(self._ready(ev, model, still_hash, base, meta, reused))
                if d.clips:
                    kind = ev_pb.ASSET_KIND_CLIP
                    self._clips(ev, model, still_hash, base, meta, token, force, out)
                out.done_models.add(model.id)
            except Exception as exc:  # noqa: BLE001 - reported per model
                field = getattr(exc, "field", "") or ""
                if isinstance(exc, InvalidInputError) and field.startswith("garments"):
                    # The garment itself is at fault: every model would fail the same way.
                    out.failures.append(("", ev_pb.ASSET_KIND_UNSPECIFIED, exc))
                    return out
                out.failures.append((model.id, kind, exc))
        return out

    def _clips(self, ev, model, still_hash, still_base, still_meta, token, force, out) -> None:
        motion = ev.deliverables.motion_template
        version = f"{ADAPTER_VERSION}+{self.clips.version}"
        clip_hash = content_hash("clip", still_hash, version, motion)
        base = f"{ev.merchant_id}/{ev.sku}/{model.id}/{clip_hash}"
        # One metadata file lists the clip step's assets (clip, preview, poster).
        index = None if force else self._meta(base)
        if index is None:
            still = self.store.get(f"{still_base}.{still_meta['ext']}")
            made = self.clips.make_clip(still, model, motion, token)
            index = {"assets": []}
            for i, asset in enumerate(made):
                sub = f"{base}-{i}"
                index["assets"].append(
                    {"base": sub, **self._save(sub, asset, self.clips.backend, version)}
                )
            self.store.put(base + ".json", json.dumps(index).encode(), "application/json")
            out.created += len(made)
            reused = False
        else:
            reused = True
        for entry in index["assets"]:
            out.ready.append(self._ready(ev, model, clip_hash, entry["base"], entry, reused))
