"""Garment hints between the contract's enums and the analysis' words.

The contract (``drape.tryon.v1``) names a garment's length on a body scale (CROPPED, WAIST,
HIP, THIGH, KNEE, CALF, ANKLE, FLOOR); the analysis tells three classes relative to the
category, ``"cropped"``, ``"regular"`` and ``"long"``. :data:`LENGTH_HINT` maps the first
onto the second per category, and :data:`LENGTH_REPORTED` maps the analysis back for the
response (each class to a typical point of its range, so a hint survives the round trip):

==========  ======================  ==============  ======================
category    cropped                 regular         long
==========  ======================  ==============  ======================
top         CROPPED, WAIST          HIP             THIGH and longer
outerwear   CROPPED, WAIST          HIP, THIGH      KNEE and longer
bottom      CROPPED to THIGH        KNEE, CALF      ANKLE, FLOOR
dress       CROPPED to THIGH        KNEE            CALF and longer
==========  ======================  ==============  ======================

Sleeves: SLEEVELESS -> ``"sleeveless"``, SHORT -> ``"short"``, THREE_QUARTER and LONG ->
``"long"`` (a three-quarter sleeve is drawn along the forearm like a long one).

Transport-free: these are protobuf enum numbers, not gRPC.
"""

from __future__ import annotations

from drape.tryon.v1 import tryon_service_pb2 as pb
from services.common.errors import InvalidInputError
from services.tryon.registry import Hints

CATEGORY = {
    pb.GARMENT_CATEGORY_UNSPECIFIED: None,
    pb.GARMENT_CATEGORY_TOP: "top",
    pb.GARMENT_CATEGORY_BOTTOM: "bottom",
    pb.GARMENT_CATEGORY_DRESS: "dress",
    pb.GARMENT_CATEGORY_OUTERWEAR: "outerwear",
}
CATEGORY_ENUM = {v: k for k, v in CATEGORY.items() if v}
SLEEVE_HINT = {
    pb.SLEEVE_LENGTH_UNSPECIFIED: None,
    pb.SLEEVE_LENGTH_SLEEVELESS: "sleeveless",
    pb.SLEEVE_LENGTH_SHORT: "short",
    pb.SLEEVE_LENGTH_THREE_QUARTER: "long",
    pb.SLEEVE_LENGTH_LONG: "long",
}
SLEEVE_REPORTED = {
    "sleeveless": pb.SLEEVE_LENGTH_SLEEVELESS,
    "short": pb.SLEEVE_LENGTH_SHORT,
    "long": pb.SLEEVE_LENGTH_LONG,
}

_SCALE = (
    pb.GARMENT_LENGTH_CROPPED, pb.GARMENT_LENGTH_WAIST, pb.GARMENT_LENGTH_HIP,
    pb.GARMENT_LENGTH_THIGH, pb.GARMENT_LENGTH_KNEE, pb.GARMENT_LENGTH_CALF,
    pb.GARMENT_LENGTH_ANKLE, pb.GARMENT_LENGTH_FLOOR,
)  # fmt: skip


def _classes(regular_from: int, long_from: int) -> dict[int, str]:
    """Scale values below ``regular_from`` are cropped, from ``long_from`` on long."""
    return {
        v: "cropped" if v < regular_from else ("regular" if v < long_from else "long")
        for v in _SCALE
    }


LENGTH_HINT: dict[str, dict[int, str]] = {
    "top": _classes(pb.GARMENT_LENGTH_HIP, pb.GARMENT_LENGTH_THIGH),
    "outerwear": _classes(pb.GARMENT_LENGTH_HIP, pb.GARMENT_LENGTH_KNEE),
    "bottom": _classes(pb.GARMENT_LENGTH_KNEE, pb.GARMENT_LENGTH_ANKLE),
    "dress": _classes(pb.GARMENT_LENGTH_KNEE, pb.GARMENT_LENGTH_CALF),
}
# Regular tops end at the hip, long ones mid-thigh; a regular dress reaches the knee, a
# long one the ankle; long trousers the ankle.
LENGTH_REPORTED = {
    ("top", "cropped"): pb.GARMENT_LENGTH_CROPPED,
    ("top", "regular"): pb.GARMENT_LENGTH_HIP,
    ("top", "long"): pb.GARMENT_LENGTH_THIGH,
    ("outerwear", "cropped"): pb.GARMENT_LENGTH_WAIST,
    ("outerwear", "regular"): pb.GARMENT_LENGTH_HIP,
    ("outerwear", "long"): pb.GARMENT_LENGTH_KNEE,
    ("dress", "cropped"): pb.GARMENT_LENGTH_THIGH,
    ("dress", "regular"): pb.GARMENT_LENGTH_KNEE,
    ("dress", "long"): pb.GARMENT_LENGTH_ANKLE,
    ("bottom", "cropped"): pb.GARMENT_LENGTH_THIGH,
    ("bottom", "regular"): pb.GARMENT_LENGTH_KNEE,
    ("bottom", "long"): pb.GARMENT_LENGTH_ANKLE,
}


def hints_from_proto(category: int, sleeve: int, length: int, prefix: str = "") -> Hints:
    """The analysis' hints from the contract's enum values, checked.

    Args:
        category, sleeve, length: ``GarmentCategory``, ``SleeveLength`` and ``GarmentLength``
            numbers (0: no hint). Numbers outside the enums arrive from any client built
            on a newer or hand-made schema and are refused, never guessed.
        prefix: field path of the garment (``"garments[0]."``), for the violations.

    Raises:
        InvalidInputError: GARMENT_CATEGORY_INVALID, GARMENT_SLEEVE_INVALID or
            GARMENT_LENGTH_INVALID for a number outside its enum; GARMENT_HINT_CONFLICT for
            a sleeve hint on a BOTTOM; GARMENT_HINT_INCOMPLETE for a length hint without a
            category hint (its meaning depends on the category).
    """
    for value, table, reason, name, enum in (
        (category, CATEGORY, "GARMENT_CATEGORY_INVALID", "category", pb.GarmentCategory),
        (sleeve, SLEEVE_HINT, "GARMENT_SLEEVE_INVALID", "sleeve", pb.SleeveLength),
        (length, {0: None, **LENGTH_HINT["top"]}, "GARMENT_LENGTH_INVALID", "length",
         pb.GarmentLength),
    ):  # fmt: skip
        if value not in table:
            raise InvalidInputError(
                reason,
                f"{name} {value} is not a {enum.DESCRIPTOR.name} value; expected one of "
                f"{', '.join(f'{n} ({v})' for n, v in enum.items())}",
                field=f"{prefix}{name}",
            )
    cat = CATEGORY[category]
    if cat == "bottom" and sleeve:
        raise InvalidInputError(
            "GARMENT_HINT_CONFLICT",
            f"a sleeve hint ({pb.SleeveLength.Name(sleeve)}) for a BOTTOM: bottoms have no "
            "sleeves; drop one of the two hints",
            field=f"{prefix}sleeve",
        )
    if length and cat is None:
        raise InvalidInputError(
            "GARMENT_HINT_INCOMPLETE",
            f"a length hint ({pb.GarmentLength.Name(length)}) needs a category hint: a "
            "garment length means a different length class for tops, bottoms and dresses",
            field=f"{prefix}length",
        )
    return Hints(
        category=cat,
        sleeve=SLEEVE_HINT[sleeve],
        length=LENGTH_HINT[cat][length] if length else None,
    )


def any_hint(category: int, sleeve: int, length: int) -> str | None:
    """The name of the first hint set, or None."""
    for name, value in (("category", category), ("sleeve", sleeve), ("length", length)):
        if value:
            return name
    return None
