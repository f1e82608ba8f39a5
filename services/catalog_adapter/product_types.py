"""A merchant's product type as garment hints (``GarmentRef.product_type``).

Only what a product type says for certain is hinted: a "shirt" is a top but may have short
or long sleeves, so it hints the category only; "t-shirt" also hints short sleeves. Types
not in the table give no hints, and the garment is detected. Lengths are on the
contract's body scale (see ``drape.tryon.v1.Garment`` for how they map onto the analysis'
classes per category).

Keys are normalised by :func:`normalise`: lower case, ``-``, ``_`` and ``/`` as spaces,
runs of spaces as one, a plural ``s`` kept as written (both forms are listed where used).
"""

from __future__ import annotations

import re

from drape.catalog.v1 import events_pb2 as ev_pb
from drape.tryon.v1 import tryon_service_pb2 as pb
from services.tryon import hints as H
from services.tryon.registry import Hints

TOP, BOTTOM, DRESS, OUTER = (
    pb.GARMENT_CATEGORY_TOP, pb.GARMENT_CATEGORY_BOTTOM, pb.GARMENT_CATEGORY_DRESS,
    pb.GARMENT_CATEGORY_OUTERWEAR,
)  # fmt: skip
NONE, SHORT, LONG = pb.SLEEVE_LENGTH_SLEEVELESS, pb.SLEEVE_LENGTH_SHORT, pb.SLEEVE_LENGTH_LONG
CROPPED, HIP, THIGH, KNEE, CALF, ANKLE, FLOOR = (
    pb.GARMENT_LENGTH_CROPPED, pb.GARMENT_LENGTH_HIP, pb.GARMENT_LENGTH_THIGH,
    pb.GARMENT_LENGTH_KNEE, pb.GARMENT_LENGTH_CALF, pb.GARMENT_LENGTH_ANKLE,
    pb.GARMENT_LENGTH_FLOOR,
)  # fmt: skip

# product type -> (category, sleeve, length); 0 = no hint.
PRODUCT_TYPES: dict[str, tuple[int, int, int]] = {
    # tops
    "t shirt": (TOP, SHORT, 0), "tshirt": (TOP, SHORT, 0), "tee": (TOP, SHORT, 0),
    "long sleeve t shirt": (TOP, LONG, 0), "long sleeve top": (TOP, LONG, 0),
    "polo": (TOP, SHORT, 0), "polo shirt": (TOP, SHORT, 0),
    "tank top": (TOP, NONE, 0), "tank": (TOP, NONE, 0), "vest top": (TOP, NONE, 0),
    "camisole": (TOP, NONE, 0), "cami": (TOP, NONE, 0),
    "crop top": (TOP, 0, CROPPED),
    "shirt": (TOP, 0, 0), "blouse": (TOP, 0, 0), "top": (TOP, 0, 0),
    "sweater": (TOP, LONG, 0), "jumper": (TOP, LONG, 0), "pullover": (TOP, LONG, 0),
    "sweatshirt": (TOP, LONG, 0), "hoodie": (TOP, LONG, 0), "turtleneck": (TOP, LONG, 0),
    # outerwear
    "cardigan": (OUTER, LONG, 0), "jacket": (OUTER, LONG, 0), "blazer": (OUTER, LONG, 0),
    "denim jacket": (OUTER, LONG, 0), "bomber jacket": (OUTER, LONG, 0),
    "coat": (OUTER, LONG, KNEE), "trench coat": (OUTER, LONG, KNEE), "parka": (OUTER, LONG, 0),
    "gilet": (OUTER, NONE, 0),
    # bottoms
    "trousers": (BOTTOM, 0, ANKLE), "pants": (BOTTOM, 0, ANKLE), "jeans": (BOTTOM, 0, ANKLE),
    "chinos": (BOTTOM, 0, ANKLE), "leggings": (BOTTOM, 0, ANKLE), "joggers": (BOTTOM, 0, ANKLE),
    "shorts": (BOTTOM, 0, THIGH), "bermuda shorts": (BOTTOM, 0, KNEE),
    "skirt": (BOTTOM, 0, 0), "mini skirt": (BOTTOM, 0, THIGH), "midi skirt": (BOTTOM, 0, CALF),
    "maxi skirt": (BOTTOM, 0, ANKLE),
    # dresses
    "dress": (DRESS, 0, 0), "mini dress": (DRESS, 0, THIGH), "midi dress": (DRESS, 0, CALF),
    "maxi dress": (DRESS, 0, FLOOR), "shirt dress": (DRESS, 0, 0),
    "slip dress": (DRESS, NONE, 0), "t shirt dress": (DRESS, SHORT, 0),
    "jumpsuit": (DRESS, 0, ANKLE),
}  # fmt: skip


def normalise(product_type: str) -> str:
    """The table key of a product type as a merchant wrote it."""
    return re.sub(r"\s+", " ", re.sub(r"[-_/]", " ", product_type.lower())).strip()


def hint_enums(ref: ev_pb.GarmentRef) -> tuple[int, int, int]:
    """``(category, sleeve, length)`` enum numbers of a garment reference: its own fields
    where set, else its product type's (see the module docstring); 0 where neither says."""
    t_cat, t_sleeve, t_length = PRODUCT_TYPES.get(normalise(ref.product_type), (0, 0, 0))
    if ref.category and ref.category != t_cat:
        t_sleeve = t_length = 0  # the product type described another kind of garment
    return (ref.category or t_cat, ref.sleeve or t_sleeve, ref.length or t_length)


def garment_hints(ref: ev_pb.GarmentRef, prefix: str) -> Hints:
    """The analysis' hints of a garment reference, checked.

    Raises:
        InvalidInputError: the refusals of :func:`services.tryon.hints.hints_from_proto`
            (fields under ``prefix``).
    """
    return H.hints_from_proto(*hint_enums(ref), prefix=prefix)
