"""Animation backends behind one interface.

A backend turns a still, its person analysis (in clip pixels) and the retargeted target
poses into frames. ``skeletal`` (the embedded default) deforms cut-out meshes on the CPU; a
diffusion backend (AnimateAnyone-style, GPU, operator weights) can register under another
name with the same :class:`Backend` shape and is chosen with ``StartClipRequest.backend`` /
``DRAPE_ANIMATE_BACKEND``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from services.animate.retarget import Targets
from services.common.analysis.person import PersonAnalysis
from services.common.context import CancelToken
from services.common.errors import InvalidInputError

Progress = Callable[[int, int, str], None]


@dataclasses.dataclass
class RenderOptions:
    """What every backend honours.

    Attributes:
        contact_shadow: soft shadow under the feet (full-body stills).
        seed: for stochastic backends; the skeletal one is deterministic.
    """

    contact_shadow: bool = False
    seed: int = 0


@dataclasses.dataclass
class RenderStats:
    """Filled in by a backend while it renders (for timings and quality checks)."""

    setup_seconds: float = 0.0
    deform_seconds: float = 0.0
    draw_seconds: float = 0.0
    inverted_triangles: int = 0
    triangles: int = 0


class Backend(Protocol):
    """An animation backend.

    ``render`` yields one ``H x W x 3`` uint8 frame per target pose, in order, checking
    ``token`` before each frame (a cancelled clip stops within one frame) and calling
    ``progress(done, total, "render")`` after each.
    """

    name: str
    version: str

    def render(
        self,
        still: np.ndarray,
        analysis: PersonAnalysis,
        targets: Targets,
        options: RenderOptions,
        token: CancelToken,
        progress: Progress,
        stats: RenderStats,
    ) -> Iterator[np.ndarray]: ...


class SkeletalBackend:
    """Cut-out layers deformed by skinning refined as-rigid-as-possible (CPU)."""

    name = "skeletal"
    version = "skeletal/0.1.0"

    def render(self, still, analysis, targets, options, token, progress, stats):
        from services.animate.render import SkeletalRenderer

        t0 = time.perf_counter()
        renderer = SkeletalRenderer(
            still, analysis, contact_shadow=options.contact_shadow,
            still_arms=targets.still_arms, still_legs=targets.still_legs,
            arm_cut=targets.arm_cut,
        )  # fmt: skip
        stats.setup_seconds += time.perf_counter() - t0
        stats.triangles = sum(len(layer.mesh.tri) for layer in renderer.layers)
        n = len(targets.points)
        for f in range(n):
            token.check("render")
            t1 = time.perf_counter()
            pos = renderer.deform(targets.points[f], float(targets.params.head[f]))
            stats.inverted_triangles += sum(
                layer.mesh.inverted(p) for layer, p in zip(renderer.layers, pos, strict=True)
            )
            t2 = time.perf_counter()
            frame = renderer.render(pos, tuple(targets.behind[f]), targets.points[f])
            stats.deform_seconds += t2 - t1
            stats.draw_seconds += time.perf_counter() - t2
            yield frame
            progress(f + 1, n, "render")


BACKENDS: dict[str, Callable[[], Backend]] = {"skeletal": SkeletalBackend}


def get_backend(name: str, default: str, allowed: tuple[str, ...]) -> Backend:
    """The backend a request names (empty: the deployment's default).

    Raises:
        InvalidInputError: BACKEND_UNAVAILABLE when the name is unknown, not installed, or
            not on the deployment's per-request allow-list.
    """
    chosen = name or default
    if chosen not in BACKENDS or (name and name not in allowed):
        avail = ", ".join(b for b in BACKENDS if b in allowed) or default
        raise InvalidInputError(
            "BACKEND_UNAVAILABLE",
            f"backend {chosen[:40]!r} is not available here; available: {avail}",
            field="backend",
        )
    return BACKENDS[chosen]()
