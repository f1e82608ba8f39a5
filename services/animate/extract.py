"""Motion extraction: a reference video of one person moving -> a motion template.

Pose per frame (MediaPipe Pose in tracking mode, the model in the ``mediapipe`` wheel),
a person count from face detection on a subset of frames, gap filling by interpolation
between the nearest detected frames, a One Euro filter (Casiez, Roussel & Vogel 2012,
"1 Euro Filter: A Simple Speed-based Low-pass Filter for Noisy Input in Interactive
Systems") on every coordinate, trimming and resampling to the template's frame rate.
"""

from __future__ import annotations

import threading

import numpy as np

from services.animate.motions import LEGS, NAME_RE, Motion
from services.common.context import CancelToken
from services.common.errors import InvalidInputError
from services.common.video import DecodedVideo

# One Euro parameters for coordinates normalised to the frame: min cutoff (Hz) sets the
# smoothing when still, beta how quickly it lets fast movement through.
MIN_CUTOFF = 1.5
BETA = 8.0
D_CUTOFF = 1.0
FACE_EVERY = 5  # count persons on every 5th frame (faces do not come and go faster)


def _alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(x: np.ndarray, fps: float) -> np.ndarray:
    """One Euro filter along axis 0 of ``x`` (frames x ...), every column independently."""
    dt = 1.0 / fps
    out = np.empty_like(x)
    out[0] = x[0]
    dx_prev = np.zeros_like(x[0])
    a_d = _alpha(D_CUTOFF, dt)
    for i in range(1, len(x)):
        dx = (x[i] - out[i - 1]) / dt
        dx_hat = a_d * dx + (1 - a_d) * dx_prev
        cutoff = MIN_CUTOFF + BETA * np.abs(dx_hat)
        a = 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt))
        out[i] = a * x[i] + (1 - a) * out[i - 1]
        dx_prev = dx_hat
    return out


def fill_gaps(frames: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Frames without a pose get one interpolated linearly between the nearest frames with
    one (held at the ends)."""
    idx = np.nonzero(found)[0]
    out = frames.copy()
    t = np.arange(len(frames))
    flat = frames[idx].reshape(len(idx), -1)
    for c in range(flat.shape[1]):
        out.reshape(len(frames), -1)[:, c] = np.interp(t, idx, flat[:, c])
    return out


def make_loop(frames: np.ndarray, fps: float, seconds: float = 0.5) -> np.ndarray:
    """Cross-fade the last ``seconds`` towards the first frame, so that the frame after the
    last would be the first."""
    n = len(frames)
    e = min(max(2, int(round(seconds * fps))), n - 1)
    out = frames.copy()
    x = (np.arange(e) + 1) / (e + 1)
    w = (x * x * (3 - 2 * x))[:, None, None]
    out[n - e :] = frames[n - e :] * (1 - w) + frames[0][None] * w
    return out


class MotionExtractor:
    """Extracts templates from videos (builds its models per call: the tracking state of a
    pose graph belongs to one video).

    Args:
        max_seconds: longest trimmed video accepted (VIDEO_TOO_LONG).
        max_lost_share: largest share of frames without a person that can be bridged.
        max_fps: highest template frame rate.
    """

    def __init__(
        self, max_seconds: float = 20.0, max_lost_share: float = 0.5, max_fps: float = 60.0
    ):
        self.max_seconds = max_seconds
        self.max_lost_share = max_lost_share
        self.max_fps = max_fps
        self._lock = threading.Lock()

    def check(
        self, video: DecodedVideo, fps: float, start: float, end: float, name: str, field: str
    ) -> tuple[int, int, float]:
        """Refusals that need no model; returns ``(first, last + 1, template fps)``.

        Raises:
            InvalidInputError: TRIM_OUT_OF_RANGE, VIDEO_TOO_LONG, FPS_OUT_OF_RANGE,
                NAME_INVALID.
        """
        if name and not NAME_RE.match(name):
            raise InvalidInputError(
                "NAME_INVALID",
                f"name must be 1-64 of a-z, 0-9, '-', '_', got {name[:70]!r}",
                field="name",
            )
        if not (np.isfinite(fps) and (fps == 0 or 1 <= fps <= self.max_fps)):
            raise InvalidInputError(
                "FPS_OUT_OF_RANGE", f"fps must be 0 or 1-{self.max_fps:g}, got {fps:g}", field="fps"
            )
        vfps = video.fps or 25.0
        length = video.frame_count / vfps
        end = end or length
        if (
            not (np.isfinite(start) and np.isfinite(end))
            or start < 0
            or end > length + 1e-3
            or end <= start
        ):
            raise InvalidInputError(
                "TRIM_OUT_OF_RANGE",
                f"start {start:g} s / end {end:g} s must lie in the video's 0-{length:.2f} s,"
                " end after start",
                field="end_seconds" if end <= start or end > length else "start_seconds",
            )
        if end - start > self.max_seconds:
            raise InvalidInputError(
                "VIDEO_TOO_LONG",
                f"the motion part of the video is {end - start:.1f} s; the limit is "
                f"{self.max_seconds:g} s (trim it with start/end)",
                field=field,
            )
        first = int(np.floor(start * vfps))
        last = max(first + 1, min(video.frame_count, int(np.ceil(end * vfps))))
        return first, last, min(fps or vfps, self.max_fps)

    def extract(
        self,
        video: DecodedVideo,
        name: str = "",
        description: str = "",
        fps: float = 0.0,
        framing: str | None = None,
        loop: bool = False,
        start: float = 0.0,
        end: float = 0.0,
        token: CancelToken | None = None,
        field: str = "video",
    ) -> tuple[Motion, int]:
        """Extract a template; returns it and the number of interpolated frames.

        Raises:
            InvalidInputError: those of :meth:`check`, VIDEO_HAS_NO_PERSON,
                VIDEO_PERSON_LOST, VIDEO_MULTIPLE_PERSONS.
        """
        import mediapipe as mp

        token = token or CancelToken()
        first, last, out_fps = self.check(video, fps, start, end, name, field)
        clip = video.frames[first:last]
        vfps = video.fps or 25.0
        n = len(clip)
        kp = np.zeros((n, 33, 3), np.float32)
        found = np.zeros(n, bool)
        multi, checked = 0, 0
        with self._lock:
            pose = mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1)
            faces = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=0.5
            )
            try:
                for i, frame in enumerate(clip):
                    token.check("extract")
                    r = pose.process(np.ascontiguousarray(frame))
                    if r.pose_landmarks is not None:
                        kp[i] = [(p.x, p.y, p.visibility) for p in r.pose_landmarks.landmark]
                        found[i] = True
                    if i % FACE_EVERY == 0:
                        d = faces.process(np.ascontiguousarray(frame)).detections or []
                        areas = sorted(
                            (x.location_data.relative_bounding_box.width
                             * x.location_data.relative_bounding_box.height for x in d),
                            reverse=True,
                        )  # fmt: skip
                        checked += 1
                        multi += int(sum(a >= 0.25 * areas[0] for a in areas) > 1) if areas else 0
            finally:
                pose.close()
                faces.close()
        if not found.any():
            raise InvalidInputError(
                "VIDEO_HAS_NO_PERSON", "no person was found in any frame of the video", field=field
            )
        lost = 1.0 - found.mean()
        if lost > self.max_lost_share:
            raise InvalidInputError(
                "VIDEO_PERSON_LOST",
                f"no person in {lost:.0%} of the frames (at most {self.max_lost_share:.0%} can be"
                " bridged)",
                field=field,
            )
        if checked and multi > checked / 2:
            raise InvalidInputError(
                "VIDEO_MULTIPLE_PERSONS",
                "more than one person is in most of the video; send a video of one person",
                field=field,
            )
        kp = fill_gaps(kp, found)
        kp[..., :2] = one_euro(kp[..., :2].astype(np.float64), vfps).astype(np.float32)
        # Resample to the template's rate.
        m = max(1, int(round(n / vfps * out_fps)))
        pos = np.minimum(np.arange(m) * vfps / out_fps, n - 1)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        f = (pos - i0)[:, None, None]
        frames = kp[i0] * (1 - f) + kp[i1] * f
        if framing is None:
            legs_seen = frames[:, [25, 26, 27, 28], 2].mean() >= 0.5
            framing = "full" if legs_seen else "upper"
        if framing == "upper":
            frames[:, list(LEGS), :] = 0.0
        if loop and len(frames) > 2:
            frames = make_loop(frames, out_fps)
        motion = Motion(
            name=name or "extracted",
            description=description or "extracted from a video",
            fps=float(out_fps),
            loops=bool(loop),
            framing=framing,
            frames=frames.astype(np.float32),
            width=video.width,
            height=video.height,
            source="extracted",
        )
        return motion, int((~found).sum())
