"""The try-on pipeline: a thin orchestrator over the stages, transport-free.

person photo ─► person analysis ─┐
garment(s) ──► garment analysis ─┴► fit + part warps ─► composite ─► refine (optional)

Each stage is timed; a :class:`CancelToken` is checked between stages so a cancelled or
expired call stops early. Debug images (masks, landmarks, warp grids, the stages side by
side) are produced only when asked for.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import cv2
import numpy as np

from services.common.analysis import garment as G
from services.common.analysis import person as P
from services.common.context import CancelToken
from services.common.errors import InvalidInputError
from services.tryon import geometric
from services.tryon.composite import CompositeResult, composite
from services.tryon.placement import check_placement, check_sleeves

MAX_GARMENTS = 2
UPPER = ("top", "dress", "outerwear")


@dataclasses.dataclass
class GarmentInput:
    """One garment of a request: its decoded flat-lay and optional hints, or the analysis
    made earlier (a registered garment, :mod:`services.tryon.registry`).

    Attributes:
        image: ``H x W x 3|4`` uint8 flat-lay; may be None when ``analysis`` is given.
        category: category hint: ``"top"``, ``"bottom"``, ``"dress"`` or ``"outerwear"``.
        sleeve: sleeve hint: ``"sleeveless"``, ``"short"`` or ``"long"``.
        length: length hint: ``"cropped"``, ``"regular"`` or ``"long"`` (relative to the
            category; see ``proto/drape/tryon/v1/tryon_service.proto`` ``Garment``).
        analysis: the garment's analysis, already made with these hints; when set the
            garment is not analysed again and ``image`` and the hints are not read.
    """

    image: np.ndarray | None
    category: str | None = None
    sleeve: str | None = None
    length: str | None = None
    analysis: G.GarmentAnalysis | None = None


@dataclasses.dataclass
class TryOnOptions:
    """Options of one try-on.

    Attributes:
        refine: run the refiner on the composite.
        selection: policy when the photo shows several persons.
        tuck: "untucked" or "tucked" (outfits: the top's hem over or under the bottom).
        debug: produce debug images.
    """

    refine: bool = True
    selection: P.PersonSelection = P.PersonSelection.MOST_PROMINENT
    tuck: str = "untucked"
    debug: bool = False


@dataclasses.dataclass
class TryOnResult:
    """A try-on still and everything the response reports about it."""

    image: np.ndarray
    garment_alpha: np.ndarray
    person: P.PersonAnalysis
    garments: list[G.GarmentAnalysis]
    timings: dict[str, float]
    warnings: list[tuple[str, str]]
    refined: bool
    backend: str = geometric.BACKEND
    backend_version: str = geometric.VERSION
    debug: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


RefineFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class TryOnPipeline:
    """Try-on on the embedded default (geometric) backend.

    Args:
        analyzer: the person analyzer (holds the pose and face models; load once).
        refine_fn: ``refine_fn(composite, person, garment_alpha, protect) -> image``, the
            refiner called in-process when ``options.refine``; None disables refinement.
    """

    def __init__(
        self,
        analyzer: P.PersonAnalyzer,
        refine_fn: RefineFn | None = None,
        segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.refine_fn = refine_fn
        self.segmenter = segmenter

    def run(
        self,
        person: np.ndarray,
        garments: list[GarmentInput],
        options: TryOnOptions | None = None,
        token: CancelToken | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> TryOnResult:
        """Dress the person in ``garments``.

        Args:
            person: ``H x W x 3`` uint8 RGB shopper photo.
            garments: one garment, or a top and a bottom (an outfit).
            options: see :class:`TryOnOptions`.
            token: checked between stages.
            progress: called with each stage's name as it starts.

        Raises:
            InvalidInputError: NO_GARMENTS, TOO_MANY_GARMENTS, GARMENT_NOT_FOUND,
                GARMENT_CATEGORY_CONFLICT, the person analysis refusals, and
                POSE_UNSUPPORTED for a bottom on a photo whose hips are out of frame,
                GARMENT_CATEGORY_UNCERTAIN when a garment's outline does not settle its
                description and no hint was given, GARMENT_FIT_FAILED when a warped garment
                does not sit where its category belongs on this body.
        """
        options = options or TryOnOptions()
        token = token or CancelToken()
        timings: dict[str, float] = {}
        stage = stage_timer(timings, token, progress)
        check_garments(garments)
        pa, analyses = analyze_inputs(
            self.analyzer, person, garments, options.selection, stage, self.segmenter
        )
        warnings = list(pa.warnings)
        layers = []
        warps = []
        with stage("warp"):
            order = sorted(range(len(analyses)), key=lambda i: analyses[i].category in UPPER)
            for i in order:
                ga = analyses[i]
                lmk = {k: np.asarray(v, np.float64) for k, v in ga.landmarks.items()}
                if ga.category in UPPER:
                    lyr, wp = geometric.dress_top(pa, ga.rgba, ga.mask, lmk, ga.sleeve)
                else:
                    check_hips(pa)
                    lyr, wp = geometric.dress_bottom(pa, ga.rgba, ga.mask, lmk, ga.length)
                # Never draw a garment in the wrong place: its body panel (not the sleeves,
                # which follow the arms) must sit where its category belongs.
                panels = [ly.alpha for ly in lyr if ly.kind != "sleeve"]
                if panels:
                    check_placement(pa, ga.category, np.maximum.reduce(panels), i)
                check_sleeves(pa, {ly.name[-1]: ly.alpha for ly in lyr if ly.kind == "sleeve"}, i)
                layers += lyr
                warps += wp
            if options.tuck == "tucked" and len(analyses) == 2:
                tuck_in(layers, pa)
        with stage("composite"):
            cats = {a.category for a in analyses}
            upper, lower = bool(cats & set(UPPER)), bool(cats - set(UPPER)) or "dress" in cats
            replaces = "both" if upper and lower else ("lower" if lower else "upper")
            comp = composite(person, pa, layers, replaces=replaces)
        image, refined = comp.image, False
        if options.refine and self.refine_fn is not None:
            with stage("refine"):
                image = self.refine_fn(comp.image, person, comp.garment_alpha, comp.protect)
                refined = True
        debug = debug_images(person, pa, analyses, warps, comp, image) if options.debug else {}
        return TryOnResult(
            image=image,
            garment_alpha=comp.garment_alpha,
            person=pa,
            garments=analyses,
            timings=timings,
            warnings=warnings,
            refined=refined,
            debug=debug,
        )


def stage_timer(
    timings: dict[str, float], token: CancelToken, progress: Callable[[str], None] | None
) -> Callable[[str], StageTimer]:
    """``stage(name)``: checks ``token``, reports ``name`` to ``progress`` and times the
    ``with`` block into ``timings``."""

    def stage(name: str) -> StageTimer:
        token.check(name)
        if progress:
            progress(name)
        return StageTimer(timings, name)

    return stage


def analyze_inputs(
    analyzer: P.PersonAnalyzer,
    person: np.ndarray,
    garments: list[GarmentInput],
    selection: P.PersonSelection,
    stage: Callable[[str], StageTimer],
    segmenter: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[P.PersonAnalysis, list[G.GarmentAnalysis]]:
    """Person and garment analysis shared by every try-on backend, each a timed stage;
    a garment's refusal names its place in the request (``garments[i].flat_lay``).

    Raises:
        InvalidInputError: the person and garment analysis refusals,
            GARMENT_CATEGORY_CONFLICT for an outfit that is not one top and one bottom.
    """
    with stage("person"):
        pa = analyzer.analyze(person, selection)
    analyses = []
    for i, g in enumerate(garments):
        with stage(f"garment{i}" if len(garments) > 1 else "garment"):
            if g.analysis is not None:  # registered: analysed once, earlier
                analyses.append(g.analysis)
                continue
            try:
                analyses.append(analyze_garment_input(g, segmenter))
            except InvalidInputError as exc:
                exc.field = f"garments[{i}].{exc.field or 'flat_lay'}".replace(
                    ".garment", ".flat_lay"
                )
                raise
    check_outfit(analyses, pa)
    return pa, analyses


def analyze_garment_input(
    g: GarmentInput, segmenter: Callable[[np.ndarray], np.ndarray] | None = None
) -> G.GarmentAnalysis:
    """The analysis of one garment's flat-lay with its hints (what :func:`analyze_inputs`
    and garment registration run).

    Raises:
        InvalidInputError: the garment analysis refusals (fields ``garment``, ``category``…
            relative to the garment).
    """
    return G.analyze_garment(g.image, g.category, segmenter, sleeve=g.sleeve, length=g.length)


class StageTimer:
    """Times a ``with`` block into ``timings[name]`` (adding up when a stage repeats)."""

    def __init__(self, timings: dict[str, float], name: str) -> None:
        self.timings, self.name = timings, name

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.t0


def check_garments(garments: list[GarmentInput]) -> None:
    """Validate the garment list before any heavy work.

    Raises:
        InvalidInputError: NO_GARMENTS or TOO_MANY_GARMENTS (field ``garments``).
    """
    if not garments:
        raise InvalidInputError("NO_GARMENTS", "at least one garment is needed", field="garments")
    if len(garments) > MAX_GARMENTS:
        raise InvalidInputError(
            "TOO_MANY_GARMENTS",
            f"{len(garments)} garments sent; at most {MAX_GARMENTS} (a top and a bottom)",
            field="garments",
        )


def check_hips(pa: P.PersonAnalysis) -> None:
    """A bottom needs the hips in the photo (the legs may leave the frame lower down: the
    garment is dressed along the pose model's estimate and cut by the frame).

    Raises:
        InvalidInputError: POSE_UNSUPPORTED (field ``person``).
    """
    if not (pa.visible(P.L_HIP) and pa.visible(P.R_HIP)):
        raise InvalidInputError(
            "POSE_UNSUPPORTED",
            "a bottom needs the hips in the photo; this one ends above them "
            "(send a full-body or at least a hip-length photo)",
            field="person",
        )


def tuck_in(layers: list, pa: P.PersonAnalysis) -> None:
    """Tucked outfits: the top ends a little below the bottom's waistband (a slight blouse
    over it is hidden under the band) and the bottom's layers go in front of the top."""
    band = np.zeros(pa.size, np.float32)
    for layer in layers:
        if layer.kind == "lower":
            band = np.maximum(band, layer.alpha)
    if band.max() <= 0:
        return
    inside = band > 0.5
    has = inside.any(axis=0)
    # Per column, the top of the band (a waistband follows the body's tilt).
    top = np.where(has, inside.argmax(axis=0), pa.size[0]).astype(np.float32)
    margin = 0.04 * pa.measurements.torso_length
    rows = np.arange(pa.size[0], dtype=np.float32)[:, None]
    keep = np.clip((top[None, :] + margin - rows) / 2.0 + 0.5, 0.0, 1.0)
    for layer in layers:
        if layer.kind == "torso":
            layer.alpha = layer.alpha * keep
        elif layer.kind == "lower":
            layer.kind = "lower_front"


def check_outfit(analyses: list[G.GarmentAnalysis], pa: P.PersonAnalysis) -> None:
    """An outfit is one upper-body and one lower-body garment.

    Raises:
        InvalidInputError: GARMENT_CATEGORY_CONFLICT for two tops, two bottoms, or a dress
            with anything else.
    """
    if len(analyses) == 2:
        cats = sorted(a.category for a in analyses)
        upper = [c for c in cats if c in ("top", "outerwear")]
        if "dress" in cats or len(upper) != 1:
            raise InvalidInputError(
                "GARMENT_CATEGORY_CONFLICT",
                f"an outfit is one top and one bottom; got {' and '.join(cats)}",
                field="garments",
            )


def debug_images(
    person, pa, analyses, warps, comp: CompositeResult, final
) -> dict[str, np.ndarray]:
    """Masks, landmarks, warp grids and the stages side by side, as RGB arrays."""
    out: dict[str, np.ndarray] = {}
    regions = person.copy()
    for mask, colour in (
        (pa.face, (255, 220, 0)), (pa.hair, (160, 0, 255)), (pa.skin, (255, 120, 160)),
        (pa.upper_clothes, (0, 200, 255)), (pa.lower_clothes, (0, 255, 120)),
        (pa.hands["left"] | pa.hands["right"], (255, 255, 255)),
    ):  # fmt: skip
        regions[mask] = (0.4 * regions[mask] + 0.6 * np.array(colour)).astype(np.uint8)
    for x, y, _z, v in pa.landmarks:
        cv2.circle(regions, (int(x), int(y)), 3, (0, 255, 0) if v >= 0.5 else (255, 0, 0), -1)
    out["person_regions"] = regions
    for i, ga in enumerate(analyses):
        g = cv2.cvtColor(ga.rgba, cv2.COLOR_RGBA2RGB)
        for name, (x, y) in ga.landmarks.items():
            cv2.circle(g, (int(x), int(y)), 4, (255, 0, 0), -1)
            cv2.putText(
                g, name, (int(x) + 4, int(y) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1
            )
        out[f"garment{i}_landmarks"] = g
    grid = comp.image.copy()
    for w in warps:
        mx, my = w.warped.map_x, w.warped.map_y
        inside = w.warped.alpha > 0.5
        lines = ((np.mod(mx, 24) < 1.2) | (np.mod(my, 24) < 1.2)) & inside
        grid[lines] = (255, 255, 0)
        for dx, dy in w.dst:
            cv2.circle(grid, (int(dx), int(dy)), 4, (255, 0, 0), -1)
    out["warp_grid"] = grid
    out["garment_mask"] = (np.clip(comp.garment_alpha, 0, 1) * 255).astype(np.uint8)
    h = person.shape[0]
    side = [person, regions, grid, comp.image, final]
    out["stages"] = np.concatenate(
        [cv2.resize(s, (s.shape[1] * h // s.shape[0], h)) for s in side], axis=1
    )
    return out
