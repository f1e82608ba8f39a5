"""Bounds on what a caller sends, and how a refused value is shown back.

Every string field of every request is bounded before use (the limits are in the proto
field comments), every enum field is checked against its enum (protobuf keeps unknown
numbers in proto3 open enums, so ``99`` arrives as ``99``), and a refused value is echoed
only as its first :data:`ECHO_CHARS` characters: an error reply travels in gRPC trailers,
which are limited to a few KiB, and a long echo would turn a clear INVALID_ARGUMENT into a
bare RESOURCE_EXHAUSTED on the client.
"""

from __future__ import annotations

from services.common.errors import InvalidInputError

# How much of a refused value an error message repeats.
ECHO_CHARS = 64

# Field limits shared by several services (documented in the protos).
BACKEND_MAX = 64  # backend names: "geometric", "classical", "diffusion", ...
NAME_MAX = 64  # motion template names
DESCRIPTION_MAX = 1024  # free-text descriptions kept with a motion template
OPERATION_ID_MAX = 128  # operation ids (servers issue 32 hex digits)
MIME_TYPE_MAX = 255  # RFC 6838: type and subtype are at most 127 characters each


def shown(value: str, limit: int = ECHO_CHARS) -> str:
    """``value`` as it may appear in an error message: its ``repr``, cut after ``limit``
    characters with an ellipsis and the full length.

    Args:
        value: the caller's value (any length).
        limit: characters of it to repeat.

    Returns:
        e.g. ``'abc'`` or ``'aaaa…' (1048576 characters)``.
    """
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"


def check_length(value: str, field: str, limit: int) -> str:
    """Refuse a string longer than ``limit`` characters before anything else uses it.

    Raises:
        InvalidInputError: FIELD_TOO_LONG naming ``field``, with ``limit`` in the metadata.
    """
    if len(value) > limit:
        raise InvalidInputError(
            "FIELD_TOO_LONG",
            f"{field} is {len(value)} characters; at most {limit} are accepted",
            field=field,
            metadata={"limit": str(limit)},
        )
    return value


def check_enum(value: int, enum, field: str, reason: str = "OPTION_OUT_OF_RANGE") -> int:
    """Refuse a number that is not a value of ``enum`` (a generated protobuf enum wrapper).

    Raises:
        InvalidInputError: ``reason`` (OPTION_OUT_OF_RANGE) naming ``field`` and the values.
    """
    if value not in enum.values():
        raise InvalidInputError(
            reason,
            f"{field} {value} is not a {enum.DESCRIPTOR.name} value; expected one of "
            f"{', '.join(f'{n} ({v})' for n, v in enum.items())}",
            field=field,
        )
    return value
