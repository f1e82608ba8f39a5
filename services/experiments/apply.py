"""A variant's recipe applied to the requests of the other services.

When a request's ``drape.common.v1.Experiment`` carries an ``experiment_id`` and a
``unit_id`` but no ``variant``, the serving process assigns the variant itself (the same
deterministic hash as ``ExperimentService.Assign``, so no call to another service), fills
it into the request's tags (echoed in the response, the logs and the metrics), and lets
the recipe fill what the request left unset. What the request set explicitly wins.

- TryOn: ``backend`` (recipe ``tryon_backend``), ``refine``.
- StartClip: ``backend`` (recipe ``animate_backend``), ``template_name`` when no motion is
  given (recipe ``motion_template``); a variant whose output is ``"still"`` refuses clips
  (FAILED_PRECONDITION, VARIANT_WITHOUT_CLIP).
- Catalog events: ``roster_id``, ``deliverables.motion_template``, ``deliverables.clips``
  (from ``output``); the recipe's fingerprint joins the assets' content hash, so variants
  never share an asset made differently.
"""

from __future__ import annotations

import dataclasses
import functools

from services.common import context as ctxmod
from services.common.errors import FailedPreconditionError
from services.experiments.assignment import Assigner, resolve
from services.experiments.definition import Recipe


class RequestAssigner:
    """Automatic assignment inside a serving process.

    Args:
        settings: reads ``experiments_file`` and ``metrics_experiments``.
        metrics: the server's :class:`services.common.metrics.Metrics` (assignments are
            counted by experiment and variant, bounded), or ``None``.
    """

    def __init__(self, settings, metrics=None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.assigner = Assigner()
        if metrics is not None:
            # The metrics object is built by the shared bootstrap; the live-experiment
            # list is an experiments setting.
            metrics.experiments = frozenset(settings.metrics_experiments)

    def load(self) -> None:
        """Read DRAPE_EXPERIMENTS_FILE (a bad file raises ConfigError at start-up)."""
        self.assigner = Assigner.from_settings(self.settings)

    def resolve(self, experiment, field: str = "experiment") -> Recipe | None:
        """The recipe of the request's tags (see :func:`resolve`); rebinds the call context
        so logs and the response echo an assigned variant."""
        assigning = bool(experiment.unit_id and experiment.experiment_id and not experiment.variant)
        recipe = resolve(self.assigner, experiment, field)
        if assigning:
            call = ctxmod.current()
            if call is not None:
                # The interceptor unbinds its own token at the end, which restores what was
                # there before it, so this extra binding needs no cleanup.
                ctxmod.bind(dataclasses.replace(call, variant=experiment.variant))
            if self.metrics is not None:
                self.metrics.assignments.labels(
                    **self.metrics.experiment_labels(experiment.experiment_id, experiment.variant)
                ).inc()
        return recipe

    def apply_tryon(self, request) -> Recipe | None:
        """Assign and apply the recipe to a ``TryOnRequest`` (in place)."""
        recipe = self.resolve(request.experiment)
        if recipe is not None:
            if recipe.tryon_backend and not request.backend:
                request.backend = recipe.tryon_backend
            if recipe.refine is not None and not request.HasField("refine"):
                request.refine = recipe.refine
        return recipe

    def apply_clip(self, request) -> Recipe | None:
        """Assign and apply the recipe to a ``StartClipRequest`` (in place).

        Raises:
            FailedPreconditionError: VARIANT_WITHOUT_CLIP when the unit's variant shows a
                still only.
        """
        recipe = self.resolve(request.experiment)
        if recipe is not None:
            if recipe.output == "still":
                raise FailedPreconditionError(
                    "VARIANT_WITHOUT_CLIP",
                    f"variant {request.experiment.variant!r} of experiment "
                    f"{request.experiment.experiment_id!r} shows a still only; make no clip",
                    field="experiment",
                )
            if recipe.animate_backend and not request.backend:
                request.backend = recipe.animate_backend
            if recipe.motion_template and request.WhichOneof("motion") is None:
                request.template_name = recipe.motion_template
        return recipe


@functools.lru_cache(maxsize=1)
def _process_assigner(path: str) -> Assigner:
    import types

    return Assigner.from_settings(types.SimpleNamespace(experiments_file=path))


_override: list[Assigner] = []


def set_process_assigner(assigner: Assigner | None) -> None:
    """Use ``assigner`` for catalog events in this process (``None``: back to
    DRAPE_EXPERIMENTS_FILE). For embedding and tests."""
    _override[:] = [assigner] if assigner is not None else []


def process_assigner() -> Assigner:
    """The experiments of this process: :func:`set_process_assigner`'s, else
    DRAPE_EXPERIMENTS_FILE's (read once)."""
    if _override:
        return _override[0]
    from services.common.config import load_settings

    return _process_assigner(load_settings().experiments_file)


def catalog_recipe(ev) -> tuple[str, ...]:
    """Assign a catalog ``ProductUpserted`` event's unit, apply the recipe to the event (in
    place) and return the parts it adds to the still's content hash: ``()`` when no
    experiment or an empty recipe, so assets made outside experiments keep their hashes.

    Raises:
        InvalidInputError: as :func:`resolve` (the product's failure).
    """
    exp = ev.experiment
    if not exp.experiment_id or not (exp.unit_id or exp.variant):
        return ()
    recipe = resolve(process_assigner(), exp)
    if recipe is None:
        return ()
    if recipe.roster_id and not ev.roster_id:
        ev.roster_id = recipe.roster_id
    d = ev.deliverables
    if recipe.motion_template and not d.motion_template:
        d.motion_template = recipe.motion_template
    if recipe.output:
        d.clips = recipe.output == "still+clip"
    fp = recipe.fingerprint()
    return () if fp == "{}" else ("recipe", fp)
