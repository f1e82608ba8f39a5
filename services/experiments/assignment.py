"""Deterministic assignment of units to variants, and a variant's recipe applied to the
requests of the other services.

The bucket of a unit is SHA-256 of ``"<salt>/<experiment_id>/<unit_id>"``, its first 8
bytes read as a big-endian integer and divided by 2**64: uniform in [0, 1), the same on
every replica and after every restart, independent across experiments (the experiment id
is part of the hash). The bucket falls into one variant's share of the cumulative weights.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import hashlib
import itertools
import logging
import re
from pathlib import Path

from services.common.context import validate_tag
from services.common.errors import ConfigError, InvalidInputError
from services.common.validation import shown
from services.experiments.definition import (
    DefinitionError,
    Experiment,
    Recipe,
    Variant,
    load_definitions,
)

log = logging.getLogger("drape.experiments")

_UNIT_RE = re.compile(r"[\x21-\x7e]{1,128}")  # as a request id: printable ASCII, no spaces
_SCALE = float(2**64)


def bucket(experiment_id: str, unit_id: str, salt: str = "") -> float:
    """The unit's position in [0, 1) for one experiment (see the module docstring)."""
    digest = hashlib.sha256(f"{salt}/{experiment_id}/{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def pick(weights: tuple[float, ...], u: float) -> int:
    """Index of the variant whose share of the cumulative ``weights`` holds ``u``."""
    total = sum(weights)
    edges = list(itertools.accumulate(w / total for w in weights))
    return min(bisect.bisect_right(edges, u), len(weights) - 1)


def check_unit_id(value: str, field: str = "unit_id") -> str:
    """Return ``value`` when it is a valid unit id.

    Raises:
        InvalidInputError: INVALID_UNIT_ID unless 1-128 printable ASCII characters without
            spaces.
    """
    if not _UNIT_RE.fullmatch(value):
        raise InvalidInputError(
            "INVALID_UNIT_ID",
            f"{field} must be 1-128 printable ASCII characters without spaces, got {shown(value)}",
            field=field,
        )
    return value


@dataclasses.dataclass(frozen=True)
class Assignment:
    """A unit's variant in one experiment."""

    experiment: Experiment
    unit_id: str
    variant: Variant
    bucket: float


class Assigner:
    """Assigns units to variants of the experiments it knows.

    Args:
        experiments: definitions by id (see :func:`load_definitions`).
    """

    def __init__(self, experiments: dict[str, Experiment] | None = None) -> None:
        self.experiments = dict(experiments or {})

    @classmethod
    def from_settings(cls, settings) -> Assigner:
        """The assigner of ``DRAPE_EXPERIMENTS_FILE`` (empty: no experiments).

        Raises:
            ConfigError: the file is missing or invalid, naming the setting.
        """
        path = getattr(settings, "experiments_file", "")
        if not path:
            return cls({})
        try:
            return cls(load_definitions(Path(path)))
        except DefinitionError as exc:
            raise ConfigError("DRAPE_EXPERIMENTS_FILE", str(exc)) from None

    def get(self, experiment_id: str, field: str = "experiment_id") -> Experiment:
        """The experiment called ``experiment_id``.

        Raises:
            InvalidInputError: INVALID_EXPERIMENT_TAG, EXPERIMENT_NOT_FOUND.
        """
        validate_tag(experiment_id, field)
        exp = self.experiments.get(experiment_id)
        if exp is None:
            raise InvalidInputError(
                "EXPERIMENT_NOT_FOUND",
                f"no experiment {shown(experiment_id)} is defined on this server",
                field=field,
            )
        return exp

    def assign(
        self,
        experiment_id: str,
        unit_id: str,
        now: dt.datetime | None = None,
        *,
        field: str = "experiment_id",
        unit_field: str = "unit_id",
    ) -> Assignment:
        """The unit's variant.

        Raises:
            InvalidInputError: INVALID_EXPERIMENT_TAG, EXPERIMENT_NOT_FOUND, INVALID_UNIT_ID,
                EXPERIMENT_NOT_RUNNING.
        """
        exp = self.get(experiment_id, field)
        check_unit_id(unit_id, unit_field)
        if not exp.running(now):
            when = (
                f"starts {exp.start.isoformat()}"
                if exp.start and (now or dt.datetime.now(dt.UTC)) < exp.start
                else f"stopped {exp.stop.isoformat() if exp.stop else ''}"
            )
            raise InvalidInputError(
                "EXPERIMENT_NOT_RUNNING",
                f"experiment {exp.id!r} is not running: it {when}",
                field=field,
            )
        u = bucket(exp.id, unit_id, exp.salt)
        return Assignment(exp, unit_id, exp.variants[pick(exp.weights, u)], u)


def resolve(assigner: Assigner | None, experiment, field: str = "experiment") -> Recipe | None:
    """The recipe a request's ``drape.common.v1.Experiment`` tags call for, assigning the
    variant when the request carries a unit id and no variant.

    Args:
        assigner: the server's experiments (``None`` or empty: none known).
        experiment: the request's ``Experiment`` message; its ``variant`` is filled in when
            assigned here.
        field: the message's path in the request, for error messages.

    Returns:
        The variant's recipe, or ``None`` when the tags name no known experiment and no
        unit id asks for assignment (plain tags are echoed as before).

    Raises:
        InvalidInputError: INVALID_UNIT_ID, EXPERIMENT_NOT_FOUND (a unit id for an
            experiment this server does not know), EXPERIMENT_NOT_RUNNING,
            VARIANT_MISMATCH (the request names a variant other than the unit's), and
            VARIANT_NOT_FOUND (a known experiment, a variant it does not have).
    """
    exp_id, unit = experiment.experiment_id, experiment.unit_id
    if not exp_id:
        if unit:
            check_unit_id(unit, f"{field}.unit_id")
        return None
    known = assigner is not None and exp_id in assigner.experiments
    if unit:
        if assigner is None:
            assigner = Assigner()
        a = assigner.assign(
            exp_id, unit, field=f"{field}.experiment_id", unit_field=f"{field}.unit_id"
        )
        if experiment.variant and experiment.variant != a.variant.name:
            raise InvalidInputError(
                "VARIANT_MISMATCH",
                f"unit is assigned to variant {a.variant.name!r} of {exp_id!r}, the request "
                f"names {shown(experiment.variant)}",
                field=f"{field}.variant",
            )
        experiment.variant = a.variant.name
        return a.variant.recipe
    if known and experiment.variant:
        v = assigner.experiments[exp_id].variant(experiment.variant)
        if v is None:
            raise InvalidInputError(
                "VARIANT_NOT_FOUND",
                f"experiment {exp_id!r} has no variant {shown(experiment.variant)}",
                field=f"{field}.variant",
            )
        return v.recipe
    return None
