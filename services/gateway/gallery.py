"""The demo gallery: a few garments drawn in code, registered with TryOnService.

The packshots come from :mod:`services.tryon.flatlays` (no files ship with the project);
each is registered once with ``RegisterGarment`` with the category and sleeve a merchant's
product type would give, and its ``garment_id`` (a content hash the service computes) is
what the storefront sends to ``POST /v1/tryon``. The PNGs stay in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
from typing import Any

from PIL import Image

from drape.common.v1 import common_pb2
from drape.tryon.v1 import tryon_service_pb2 as tpb
from services.gateway.problems import Problem

log = logging.getLogger("drape.gateway")

# Packshot canvas (pixels, square).
PACKSHOT_SIDE = 512
# Registration deadline per garment (the analysis takes well under a second on a CPU).
REGISTER_TIMEOUT_S = 60.0


@dataclasses.dataclass
class GalleryItem:
    """One gallery garment: how it is drawn and, once registered, what the service found.

    Attributes:
        name: shown to shoppers.
        kind: a :data:`services.tryon.flatlays.KINDS` entry.
        pattern: the drawn pattern.
        color: main RGB colour.
        category: the hint sent with RegisterGarment (``GARMENT_CATEGORY_*`` name suffix).
        sleeve: the sleeve hint (``SLEEVE_LENGTH_*`` suffix), or "" for none.
    """

    name: str
    kind: str
    pattern: str
    color: tuple[int, int, int]
    category: str
    sleeve: str = ""
    png: bytes = b""
    garment_id: str = ""
    analysis: Any = None

    def describe(self) -> dict[str, Any]:
        """The garment object of the HTTP API (``GET /v1/garments/{id}``)."""
        out: dict[str, Any] = {
            "id": self.garment_id,
            "name": self.name,
            "category": self.category,
            "image_url": f"/v1/garments/{self.garment_id}/image",
        }
        a = self.analysis
        if a is not None:
            out["category"] = tpb.GarmentCategory.Name(a.category).removeprefix("GARMENT_CATEGORY_")
            if a.sleeve_length:
                out["sleeve"] = (
                    tpb.SleeveLength.Name(a.sleeve_length).removeprefix("SLEEVE_LENGTH_").lower()
                )
            if a.garment_length:
                out["length"] = (
                    tpb.GarmentLength.Name(a.garment_length).removeprefix("GARMENT_LENGTH_").lower()
                )
        return out


def default_items() -> list[GalleryItem]:
    """The demo's garments: two tops, a dress, trousers and a skirt."""
    return [
        GalleryItem("Striped tee", "tshirt", "stripes", (30, 90, 200), "TOP", "SHORT"),
        GalleryItem("Checked long sleeve", "longsleeve", "checks", (40, 140, 60), "TOP", "LONG"),
        GalleryItem("Logo dress", "dress", "logo", (180, 30, 60), "DRESS", "SHORT"),
        GalleryItem("Chino trousers", "trousers", "solid", (150, 100, 60), "BOTTOM"),
        GalleryItem("Berry skirt", "skirt", "solid", (160, 30, 60), "BOTTOM"),
    ]


def draw(item: GalleryItem, side: int = PACKSHOT_SIDE) -> bytes:
    """The item's packshot as PNG bytes (seed 0: the same image every start)."""
    from services.tryon.flatlays import draw_garment

    flat = draw_garment(item.kind, item.pattern, item.color, size=(side, side), seed=0)
    buf = io.BytesIO()
    Image.fromarray(flat.image).save(buf, "PNG", optimize=True)
    return buf.getvalue()


class Gallery:
    """The registered demo garments, by id.

    Args:
        items: the garments (default: :func:`default_items`); their PNGs are drawn here.
    """

    def __init__(self, items: list[GalleryItem] | None = None) -> None:
        self.items = items if items is not None else default_items()
        for item in self.items:
            if not item.png:
                item.png = draw(item)
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        """Whether every garment has its id."""
        return all(item.garment_id for item in self.items)

    def get(self, garment_id: str) -> GalleryItem | None:
        return next((i for i in self.items if i.garment_id == garment_id), None)

    def listing(self) -> list[dict[str, Any]]:
        return [item.describe() for item in self.items if item.garment_id]

    async def ensure(self, upstream: Any, meta: Any) -> None:
        """Register every garment not registered yet (once at a time).

        Raises:
            Problem: the first registration's refusal (e.g. 401 with auth on and no
                token, 503 while the service is down).
        """
        if self.ready:
            return
        async with self._lock:
            for item in self.items:
                if not item.garment_id:
                    await self.register(upstream, item, meta)

    async def register(self, upstream: Any, item: GalleryItem, meta: Any) -> str:
        """(Re-)register ``item``; returns its id (a new analysis version gives a new one)."""
        request = tpb.RegisterGarmentRequest(
            flat_lay=common_pb2.Image(data=item.png),
            category=tpb.GarmentCategory.Value("GARMENT_CATEGORY_" + item.category),
            sleeve=tpb.SleeveLength.Value("SLEEVE_LENGTH_" + item.sleeve) if item.sleeve else 0,
        )
        r = await upstream.unary(upstream.tryon.RegisterGarment, request, meta, REGISTER_TIMEOUT_S)
        item.garment_id, item.analysis = r.garment_id, r.analysis
        log.info("gallery garment registered", extra={"garment": item.name, "id": r.garment_id})
        return r.garment_id

    async def reregister(self, upstream: Any, garment_id: str, meta: Any) -> str | None:
        """Register a gallery garment again after the service forgot its id (evicted from
        its cache, or a restarted service without a shared store); None for an id that
        is not the gallery's."""
        item = self.get(garment_id)
        if item is None:
            return None
        async with self._lock:
            return await self.register(upstream, item, meta)


def unavailable(problem: Problem) -> Problem:
    """The gallery's answer when its garments cannot be registered."""
    if problem.status in (401, 403):
        return problem
    return Problem(
        503,
        "GALLERY_UNAVAILABLE",
        f"the demo garments are not registered yet ({problem.reason}); retry shortly",
    )
