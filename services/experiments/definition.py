"""Experiment definitions: a TOML or JSON file of experiments, validated up front.

A file holds one or more ``[[experiment]]`` tables (TOML) or an ``{"experiment": [...]}``
object (JSON)::

    [[experiment]]
    id = "clip-returns-q4"
    description = "Does the try-on clip lower returns?"
    unit = "shopper"                    # or "session"
    start = 2026-11-01T00:00:00Z        # optional
    stop = 2026-12-31T00:00:00Z         # optional
    attribution_window_hours = 336      # orders count within 14 days of an exposure
    control = "still"                   # optional; the first variant by default
    salt = "2026q4"                     # optional; changing it reshuffles every unit

    [[experiment.variant]]
    name = "still"
    weight = 1
    output = "still"                    # "still" or "still+clip"
    refine = true

    [[experiment.variant]]
    name = "clip"
    weight = 1
    output = "still+clip"
    motion_template = "idle-sway-upper"
    tryon_backend = "geometric"         # also animate_backend, roster_id

Every problem raises :class:`DefinitionError` naming the file, the experiment and the key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from services.common.context import _TAG_RE

MAX_VARIANTS = 16
MAX_EXPERIMENTS = 256
MAX_FILE_BYTES = 1024 * 1024
MAX_WINDOW_HOURS = 24 * 366
OUTPUTS = {"": "", "still": "still", "still+clip": "still+clip"}
UNIT_KINDS = ("shopper", "session")
_RECIPE_KEYS = {
    "output",
    "tryon_backend",
    "refine",
    "motion_template",
    "animate_backend",
    "roster_id",
}
_VARIANT_KEYS = {"name", "weight", "description"} | _RECIPE_KEYS
_EXPERIMENT_KEYS = {
    "id",
    "description",
    "unit",
    "start",
    "stop",
    "attribution_window_hours",
    "control",
    "salt",
    "variant",
}


class DefinitionError(ValueError):
    """An experiment definition is invalid; the message names where."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What Drape makes for units of one variant. Empty values leave the request (or the
    deployment default) in charge.

    Args:
        output: ``"still"``, ``"still+clip"`` or ``""`` (unchanged).
        tryon_backend: try-on backend name, e.g. ``"geometric"``.
        refine: refiner on or off; ``None`` leaves it to the request.
        motion_template: motion template of clips.
        animate_backend: animation backend of clips.
        roster_id: stock-model roster of catalog shots.
    """

    output: Literal["", "still", "still+clip"] = ""
    tryon_backend: str = ""
    refine: bool | None = None
    motion_template: str = ""
    animate_backend: str = ""
    roster_id: str = ""

    def fingerprint(self) -> str:
        """Canonical text of the set fields, for content hashes (stable across releases:
        keys sorted, unset fields left out)."""
        d = {k: v for k, v in dataclasses.asdict(self).items() if v not in ("", None)}
        return json.dumps(d, sort_keys=True, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One arm: a name, an allocation weight and a recipe."""

    name: str
    weight: float
    recipe: Recipe = Recipe()
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A validated experiment definition.

    Args:
        id: experiment id (the experiment tag alphabet).
        variants: 2-16 arms in allocation order.
        unit: ``"shopper"`` or ``"session"``.
        control: name of the control variant.
        start: assignments refused before (UTC), or ``None``.
        stop: assignments refused from (UTC), or ``None``.
        attribution_window: how long after an exposure an order counts.
        salt: mixed into the assignment hash.
        description: one line for people.
    """

    id: str
    variants: tuple[Variant, ...]
    unit: Literal["shopper", "session"] = "shopper"
    control: str = ""
    start: dt.datetime | None = None
    stop: dt.datetime | None = None
    attribution_window: dt.timedelta = dt.timedelta(days=14)
    salt: str = ""
    description: str = ""

    def variant(self, name: str) -> Variant | None:
        """The variant called ``name``, or ``None``."""
        return next((v for v in self.variants if v.name == name), None)

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(v.weight for v in self.variants)

    def running(self, now: dt.datetime | None = None) -> bool:
        """Whether assignments are accepted at ``now`` (UTC; default: the current time)."""
        now = now or dt.datetime.now(dt.UTC)
        return (self.start is None or now >= self.start) and (self.stop is None or now < self.stop)


def _tag(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _TAG_RE.fullmatch(value):
        raise DefinitionError(
            f"{where}: expected 1-64 characters of lowercase letters, digits, '.', '_' or '-' "
            f"starting with a letter or digit, got {value!r:.80}"
        )
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not (1 <= len(value) <= 64) or not value.isprintable():
        raise DefinitionError(f"{where}: expected a name of 1-64 printable characters")
    return value


def _time(value: Any, where: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise DefinitionError(
                f"{where}: expected an RFC 3339 time, got {value!r:.80}"
            ) from None
    if not isinstance(value, dt.datetime):
        raise DefinitionError(f"{where}: expected a date-time, got {type(value).__name__}")
    if value.tzinfo is None:
        raise DefinitionError(f"{where}: give a time zone (e.g. 'Z'), got {value.isoformat()}")
    return value.astimezone(dt.UTC)


def _unknown(d: Mapping, allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise DefinitionError(f"{where}: unknown key(s) {', '.join(map(repr, extra))}")


def parse_recipe(d: Mapping[str, Any], where: str) -> Recipe:
    """A :class:`Recipe` from the recipe keys of a variant table."""
    output = d.get("output", "")
    if output not in OUTPUTS:
        raise DefinitionError(
            f"{where}.output: expected 'still' or 'still+clip', got {output!r:.80}"
        )
    refine = d.get("refine")
    if refine is not None and not isinstance(refine, bool):
        raise DefinitionError(f"{where}.refine: expected true or false, got {refine!r:.80}")
    names = {}
    for key in ("tryon_backend", "motion_template", "animate_backend", "roster_id"):
        v = d.get(key, "")
        if v != "":
            if key == "roster_id":
                _name(v, f"{where}.{key}")
            else:
                _tag(v, f"{where}.{key}")
        names[key] = v
    return Recipe(output=output, refine=refine, **names)


def parse_experiment(d: Any, where: str) -> Experiment:
    """A validated :class:`Experiment` from one decoded table.

    Raises:
        DefinitionError: naming ``where`` and the key at fault.
    """
    if not isinstance(d, Mapping):
        raise DefinitionError(f"{where}: expected a table")
    _unknown(d, _EXPERIMENT_KEYS, where)
    exp_id = _tag(d.get("id"), f"{where}.id")
    where = f"experiment {exp_id!r}"
    unit = d.get("unit", "shopper")
    if unit not in UNIT_KINDS:
        raise DefinitionError(f"{where}.unit: expected 'shopper' or 'session', got {unit!r:.80}")
    raw = d.get("variant")
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_VARIANTS:
        raise DefinitionError(
            f"{where}: expected 2 to {MAX_VARIANTS} [[experiment.variant]] tables"
        )
    variants = []
    for i, v in enumerate(raw):
        vw = f"{where}.variant[{i}]"
        if not isinstance(v, Mapping):
            raise DefinitionError(f"{vw}: expected a table")
        _unknown(v, _VARIANT_KEYS, vw)
        name = _tag(v.get("name"), f"{vw}.name")
        weight = v.get("weight", 1)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or not 0 < weight <= 1e6
        ):
            raise DefinitionError(f"{vw}.weight: expected a number in (0, 1e6], got {weight!r:.80}")
        desc = v.get("description", "")
        if not isinstance(desc, str) or len(desc) > 1024:
            raise DefinitionError(f"{vw}.description: expected at most 1024 characters")
        variants.append(Variant(name, float(weight), parse_recipe(v, vw), desc))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise DefinitionError(f"{where}: variant names repeat: {names}")
    control = d.get("control", names[0])
    if control not in names:
        raise DefinitionError(f"{where}.control: {control!r:.80} is not one of {names}")
    start, stop = _time(d.get("start"), f"{where}.start"), _time(d.get("stop"), f"{where}.stop")
    if start and stop and stop <= start:
        raise DefinitionError(f"{where}: stop {stop.isoformat()} is not after start")
    hours = d.get("attribution_window_hours", 14 * 24)
    if (
        isinstance(hours, bool)
        or not isinstance(hours, (int, float))
        or not 0 < hours <= MAX_WINDOW_HOURS
    ):
        raise DefinitionError(
            f"{where}.attribution_window_hours: expected (0, {MAX_WINDOW_HOURS}], got {hours!r:.80}"
        )
    salt = d.get("salt", "")
    if not isinstance(salt, str) or len(salt) > 128:
        raise DefinitionError(f"{where}.salt: expected a string of at most 128 characters")
    desc = d.get("description", "")
    if not isinstance(desc, str) or len(desc) > 1024:
        raise DefinitionError(f"{where}.description: expected at most 1024 characters")
    return Experiment(
        id=exp_id,
        variants=tuple(variants),
        unit=unit,
        control=control,
        start=start,
        stop=stop,
        attribution_window=dt.timedelta(hours=hours),
        salt=salt,
        description=desc,
    )


def parse_definitions(data: Mapping[str, Any], where: str = "definitions") -> dict[str, Experiment]:
    """Experiments by id from a decoded file (``{"experiment": [...]}``)."""
    if not isinstance(data, Mapping):
        raise DefinitionError(f"{where}: expected a table with 'experiment' entries")
    _unknown(data, {"experiment"}, where)
    raw = data.get("experiment", [])
    if not isinstance(raw, list) or len(raw) > MAX_EXPERIMENTS:
        raise DefinitionError(f"{where}: expected at most {MAX_EXPERIMENTS} [[experiment]] tables")
    out: dict[str, Experiment] = {}
    for i, d in enumerate(raw):
        exp = parse_experiment(d, f"{where}: experiment[{i}]")
        if exp.id in out:
            raise DefinitionError(f"{where}: experiment {exp.id!r} is defined twice")
        out[exp.id] = exp
    return out


def load_definitions(path: str | Path) -> dict[str, Experiment]:
    """Read and validate a TOML (``.toml``) or JSON (any other suffix) definitions file.

    Raises:
        DefinitionError: the file is missing, too large, undecodable or invalid.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DefinitionError(f"{p}: {size} bytes; at most {MAX_FILE_BYTES} are read")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{p}: cannot read ({exc.__class__.__name__}: {exc})") from None
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise DefinitionError(
            f"{p}: not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {exc}"
        ) from None
    return parse_definitions(data, str(p))


def to_dict(exp: Experiment) -> dict[str, Any]:
    """The JSON-able form of ``exp`` (the file format, with times as RFC 3339 text)."""
    variants = []
    for v in exp.variants:
        d: dict[str, Any] = {"name": v.name, "weight": v.weight}
        d.update({k: x for k, x in dataclasses.asdict(v.recipe).items() if x not in ("", None)})
        if v.description:
            d["description"] = v.description
        variants.append(d)
    out: dict[str, Any] = {
        "id": exp.id,
        "unit": exp.unit,
        "control": exp.control,
        "attribution_window_hours": exp.attribution_window.total_seconds() / 3600,
        "salt": exp.salt,
        "description": exp.description,
        "variant": variants,
    }
    for key in ("start", "stop"):
        t = getattr(exp, key)
        if t is not None:
            out[key] = t.isoformat()
    return out


def definitions_from(items: Iterable[Experiment]) -> dict[str, Experiment]:
    """Experiments by id (for code and tests that build definitions directly)."""
    return {e.id: e for e in items}
