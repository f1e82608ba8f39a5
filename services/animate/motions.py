"""Motion templates: keypoint sequences stored as data, the built-in library, validation.

A template is a sequence of 33-keypoint poses (MediaPipe Pose order, see
``proto/drape/animate/v1/animate_service.proto``) normalised to a ``width x height`` frame,
with a frame rate, a framing (upper body or full body) and whether it loops. Built-in
templates are JSON files in ``services/animate/motions/`` (written by
:mod:`services.animate.library`); a deployment adds its own in ``DRAPE_ANIMATE_MOTION_DIR``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Literal

import numpy as np

from services.common.errors import InvalidInputError

N_KEYPOINTS = 33
BUILT_IN_DIR = Path(__file__).resolve().parent / "motions"
DEFAULT_MOTION = "idle-sway"
# Always used with fullmatch: "$" alone also passes a name with a trailing newline.
NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")
# Landmarks 23.. (hips and below) are the lower body; an upper-body template leaves
# 25.. (knees, ankles, feet) at visibility 0 but keeps the hips (the torso's root).
LEGS = tuple(range(25, 33))

Framing = Literal["upper", "full"]
Source = Literal["built_in", "deployment", "extracted", "request"]


@dataclasses.dataclass
class Motion:
    """One motion template.

    Attributes:
        name: unique, lowercase letters, digits, ``-`` and ``_``.
        description: one line for people choosing a motion.
        fps: frames per second of ``frames``.
        loops: whether the last frame flows back into the first.
        framing: "upper" (head to hips) or "full" (head to feet).
        frames: ``N x 33 x 3`` float32: x, y normalised to ``width``/``height``, visibility.
        width: width of the frame the keypoints are normalised to.
        height: height of that frame.
        source: where it came from.
    """

    name: str
    description: str
    fps: float
    loops: bool
    framing: Framing
    frames: np.ndarray
    width: int
    height: int
    source: Source = "built_in"

    @property
    def frame_count(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps

    def pixels(self) -> np.ndarray:
        """``N x 33 x 2`` keypoints in the template's own pixels (aspect ratio kept)."""
        return self.frames[..., :2] * np.array([self.width, self.height], np.float32)

    def to_json(self) -> str:
        doc = {
            "name": self.name,
            "description": self.description,
            "fps": self.fps,
            "loops": self.loops,
            "framing": self.framing,
            "width": self.width,
            "height": self.height,
            "frames": np.round(self.frames.astype(np.float64), 4).tolist(),
        }
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, source: Source = "built_in", field: str = "motion") -> Motion:
        """Parse and validate a template file.

        Raises:
            InvalidInputError: MOTION_INVALID when a key is missing or a value is bad.
        """
        try:
            doc = json.loads(text)
            frames = np.asarray(doc["frames"], np.float32)
            motion = cls(
                name=str(doc["name"]),
                description=str(doc.get("description", "")),
                fps=float(doc["fps"]),
                loops=bool(doc.get("loops", False)),
                framing=doc.get("framing", "full"),
                frames=frames,
                width=int(doc["width"]),
                height=int(doc["height"]),
                source=source,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(
                "MOTION_INVALID", f"not a motion template: {str(exc)[:120]}", field=field
            ) from None
        validate_motion(motion, field)
        return motion


def validate_motion(motion: Motion, field: str = "motion_template") -> None:
    """Check a template before any work is done with it.

    Raises:
        InvalidInputError: MOTION_INVALID (no frames, not 33 keypoints, a coordinate that is
            not finite, a bad fps or frame size), NAME_INVALID.
    """
    f = motion.frames
    if f.ndim != 3 or f.shape[0] == 0:
        raise InvalidInputError(
            "MOTION_INVALID", "the motion has no frames", field=f"{field}.frames"
        )
    if f.shape[1] != N_KEYPOINTS or f.shape[2] != 3:
        raise InvalidInputError(
            "MOTION_INVALID",
            f"every frame needs exactly {N_KEYPOINTS} keypoints, got {f.shape[1]}",
            field=f"{field}.frames",
        )
    if not np.isfinite(f).all():
        raise InvalidInputError(
            "MOTION_INVALID", "a keypoint coordinate is not finite", field=f"{field}.frames"
        )
    if not (np.isfinite(motion.fps) and 1 <= motion.fps <= 120):
        raise InvalidInputError(
            "MOTION_INVALID", f"fps must be 1-120, got {motion.fps:g}", field=f"{field}.fps"
        )
    if motion.width <= 0 or motion.height <= 0:
        raise InvalidInputError(
            "MOTION_INVALID",
            f"width and height must be positive, got {motion.width} x {motion.height}",
            field=f"{field}.width",
        )
    if motion.framing not in ("upper", "full"):
        raise InvalidInputError(
            "MOTION_INVALID", f"framing must be upper or full, got {motion.framing!r}", field=field
        )
    if not NAME_RE.fullmatch(motion.name):
        raise InvalidInputError(
            "NAME_INVALID",
            f"name must be 1-64 of a-z, 0-9, '-', '_', got {motion.name[:70]!r}",
            field=f"{field}.name",
        )


class MotionLibrary:
    """The templates a server knows by name: built-ins, then a deployment's directory
    (a deployment file with a built-in's name replaces it).

    Args:
        extra_dir: the deployment's motion directory, or None.
    """

    def __init__(self, extra_dir: Path | None = None) -> None:
        self._motions: dict[str, Motion] = {}
        for path in sorted(BUILT_IN_DIR.glob("*.json")):
            m = Motion.from_json(path.read_text(), "built_in", field=str(path))
            self._motions[m.name] = m
        if extra_dir is not None and Path(extra_dir).is_dir():
            for path in sorted(Path(extra_dir).glob("*.json")):
                m = Motion.from_json(path.read_text(), "deployment", field=str(path))
                self._motions[m.name] = m

    def names(self) -> list[str]:
        return sorted(self._motions)

    def list(self, framing: Framing | None = None) -> list[Motion]:
        """Templates sorted by name, optionally only one framing."""
        return [
            self._motions[n]
            for n in self.names()
            if framing is None or self._motions[n].framing == framing
        ]

    def get(self, name: str, field: str = "template_name") -> Motion:
        """The template called ``name``.

        Raises:
            InvalidInputError: MOTION_NOT_FOUND naming the templates there are.
        """
        m = self._motions.get(name)
        if m is None:
            raise InvalidInputError(
                "MOTION_NOT_FOUND",
                f"no motion template {name[:64]!r}; known: {', '.join(self.names())}",
                field=field,
            )
        return m

    def save(self, motion: Motion, directory: Path) -> Path:
        """Write ``motion`` as ``directory/NAME.json`` and make it known here."""
        validate_motion(motion)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{motion.name}.json"
        path.write_text(motion.to_json())
        self._motions[motion.name] = motion
        return path
