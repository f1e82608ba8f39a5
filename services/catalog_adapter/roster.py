"""Merchant rosters: the stock-model photos each product is put on.

A rosters file (TOML, named by ``DRAPE_CATALOG_ROSTERS_FILE``)::

    default_roster = "studio"            # for merchants without their own default

    [rosters.studio]
    models = [
      { id = "ava", image = "file:///srv/models/ava.jpg" },
      { id = "ben", image = "file:///srv/models/ben.jpg" },
    ]

    [merchants.acme]
    default_roster = "studio"            # an event with an empty roster_id uses this

Without a file the built-in roster ``default`` has two public-domain photos that ship in
installed packages (scikit-image's astronaut, matplotlib's Grace Hopper). Roster photos are
read and decoded once at start-up; a roster that cannot be loaded stops the adapter with a
message naming the file and the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import tomllib
from collections.abc import Callable

import numpy as np

from services.catalog_adapter.store import check_segment
from services.common.errors import ConfigError, InvalidInputError
from services.common.images import ImageLimits, decode_image, encode_image

BUILTIN_ROSTER = "default"


@dataclasses.dataclass(frozen=True)
class StockModel:
    """One photo of a roster.

    Attributes:
        id: model id, unique in its roster (a path segment of the asset keys).
        rgb: the decoded photo, ``H x W x 3`` uint8.
        encoded: the photo as encoded bytes (sent to a remote try-on service).
        sha256: hex digest of the decoded pixels and their shape: part of every content hash.
    """

    id: str
    rgb: np.ndarray
    encoded: bytes
    sha256: str


def make_model(model_id: str, rgb: np.ndarray, encoded: bytes | None = None) -> StockModel:
    """A :class:`StockModel` from decoded pixels (encoded as PNG when ``encoded`` is None)."""
    rgb = np.ascontiguousarray(rgb[..., :3])
    digest = hashlib.sha256(repr(rgb.shape).encode() + rgb.tobytes()).hexdigest()
    return StockModel(model_id, rgb, encoded or encode_image(rgb, "PNG"), digest)


@dataclasses.dataclass(frozen=True)
class Rosters:
    """Every roster and each merchant's default.

    Attributes:
        rosters: roster id -> its models, in order.
        default_roster: the roster for merchants without a default of their own.
        merchant_defaults: merchant id -> roster id.
    """

    rosters: dict[str, tuple[StockModel, ...]]
    default_roster: str
    merchant_defaults: dict[str, str] = dataclasses.field(default_factory=dict)

    def resolve(self, merchant_id: str, roster_id: str) -> tuple[str, tuple[StockModel, ...]]:
        """``(roster id, models)`` for an event.

        Raises:
            InvalidInputError: ROSTER_NOT_FOUND (field ``roster_id``) for an unknown roster.
        """
        rid = roster_id or self.merchant_defaults.get(merchant_id, self.default_roster)
        models = self.rosters.get(rid)
        if models is None:
            raise InvalidInputError(
                "ROSTER_NOT_FOUND",
                f"roster {rid!r} is not configured; known: {', '.join(sorted(self.rosters))}",
                field="roster_id",
            )
        return rid, models

    def all_models(self) -> list[StockModel]:
        return [m for models in self.rosters.values() for m in models]


def builtin_photos() -> dict[str, np.ndarray]:
    """The public-domain photos of the built-in roster (no shopper's photo)."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = np.asarray(Image.open(fh).convert("RGB"))
    return {"astronaut": data.astronaut(), "grace-hopper": grace}


def builtin_rosters() -> Rosters:
    models = tuple(make_model(k, v) for k, v in builtin_photos().items())
    return Rosters({BUILTIN_ROSTER: models}, BUILTIN_ROSTER)


def load_rosters(
    path: str, read: Callable[[str], bytes], limits: ImageLimits | None = None
) -> Rosters:
    """Read a rosters file and every photo it names.

    Args:
        path: the TOML file.
        read: fetches an image URI's bytes (the adapter's reference reader).
        limits: decoding limits.

    Raises:
        ConfigError: naming ``DRAPE_CATALOG_ROSTERS_FILE`` and the entry at fault.
    """
    env = "DRAPE_CATALOG_ROSTERS_FILE"
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(env, f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(env, f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"default_roster", "rosters", "merchants"})
    if unknown:
        raise ConfigError(env, f"{path}: unknown keys {', '.join(unknown)}")
    rosters: dict[str, tuple[StockModel, ...]] = {}
    for rid, body in (data.get("rosters") or {}).items():
        models = []
        entries = body.get("models") if isinstance(body, dict) else None
        if not entries:
            raise ConfigError(env, f"{path}: roster {rid!r} has no models")
        for i, entry in enumerate(entries):
            where = f"{path}: rosters.{rid}.models[{i}]"
            if not isinstance(entry, dict) or not entry.get("id") or not entry.get("image"):
                raise ConfigError(env, f"{where} needs an id and an image")
            try:
                check_segment(entry["id"], "id")
                raw = read(entry["image"])
                img = decode_image(raw, limits or ImageLimits(), field="image").rgb()
            except InvalidInputError as exc:
                raise ConfigError(env, f"{where}: {exc}") from None
            if any(m.id == entry["id"] for m in models):
                raise ConfigError(env, f"{where}: duplicate model id {entry['id']!r}")
            models.append(make_model(entry["id"], img, raw))
        rosters[rid] = tuple(models)
    if not rosters:
        raise ConfigError(env, f"{path} defines no rosters")
    default = data.get("default_roster") or next(iter(rosters))
    if default not in rosters:
        raise ConfigError(env, f"{path}: default_roster {default!r} is not defined")
    merchants = {}
    for mid, body in (data.get("merchants") or {}).items():
        rid = body.get("default_roster") if isinstance(body, dict) else None
        if rid not in rosters:
            raise ConfigError(env, f"{path}: merchants.{mid}.default_roster {rid!r} is not defined")
        merchants[mid] = rid
    return Rosters(rosters, default, merchants)
