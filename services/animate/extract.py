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

# Rendered pose skeletons (OpenPose / DWPose "body" drawings, the control signal of pose-
# guided video models): 18 COCO keypoints drawn as full-intensity dots in fixed colours
# over limbs drawn at 60 % opacity, on black. Colours in RGB, keypoint order of
# OpenPose's COCO model (nose, neck, right shoulder, elbow, wrist, left shoulder, elbow,
# wrist, right hip, knee, ankle, left hip, knee, ankle, right eye, left eye, right ear,
# left ear).
OPENPOSE_COLOURS = np.array([
    [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
    [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255],
    [0, 0, 255], [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
], np.float32)  # fmt: skip
# MediaPipe index <- OpenPose index, for the keypoints both have.
OPENPOSE_TO_MP = {
    0: 0, 2: 15, 5: 14, 7: 17, 8: 16, 11: 5, 12: 2, 13: 6, 14: 3, 15: 7, 16: 4,
    23: 11, 24: 8, 25: 12, 26: 9, 27: 13, 28: 10,
}  # fmt: skip
SKELETON_BLACK_SHARE = 0.8  # a skeleton drawing is mostly black; camera footage is not


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


OUTLIER_WINDOW = 3  # frames on either side that a pose is judged against
OUTLIER_JUMP = 0.5  # of the torso length: how far the torso may sit from its neighbours'
OUTLIER_SIZE = 0.3  # relative change of the torso length against its neighbours'


def pose_outliers(kp: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Frames whose pose disagrees with the poses around it: a torso more than half its
    length away from the median of its neighbours' (``OUTLIER_WINDOW`` on either side), or
    30 % longer or shorter than theirs. A Hampel-type filter (Hampel 1974): one misread
    frame (a skeleton limb taken for another, a passer-by) makes the body jump for a
    frame; treated as a gap, it is bridged from its neighbours instead.

    Args:
        kp: ``N x 33 x 3`` keypoints.
        found: ``N`` bool, frames with a pose.

    Returns:
        ``N`` bool, the outliers (always a subset of ``found``).
    """
    n = len(kp)
    out = np.zeros(n, bool)
    idx = np.nonzero(found)[0]
    if len(idx) < 2 * OUTLIER_WINDOW + 1:
        return out
    torso = kp[idx][:, [11, 12, 23, 24], :2].astype(np.float64)
    centre = torso.mean(axis=1)
    length = np.linalg.norm(
        (torso[:, 0] + torso[:, 1]) / 2 - (torso[:, 2] + torso[:, 3]) / 2, axis=1
    )
    for k in range(len(idx)):
        lo, hi = max(0, k - OUTLIER_WINDOW), min(len(idx), k + OUTLIER_WINDOW + 1)
        nb = [j for j in range(lo, hi) if j != k]
        c, ln = np.median(centre[nb], axis=0), float(np.median(length[nb]))
        if ln <= 0:
            continue
        jump = float(np.linalg.norm(centre[k] - c)) / ln
        if jump > OUTLIER_JUMP or abs(length[k] / ln - 1.0) > OUTLIER_SIZE:
            out[idx[k]] = True
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


def is_skeleton_video(frames: np.ndarray) -> bool:
    """Whether ``frames`` (a few, ``N x H x W x 3``) are rendered pose skeletons: mostly
    black, the rest strongly saturated colour (the limb and joint palette)."""
    f = frames[:: max(1, len(frames) // 5)][:5].astype(np.int16)
    mx, mn = f.max(-1), f.min(-1)
    black = (mx < 40).mean()
    lit = mx >= 100
    saturated = ((mx - mn) > 0.6 * mx) & lit
    return bool(black >= SKELETON_BLACK_SHARE and lit.any() and saturated.sum() >= 0.5 * lit.sum())


# Limbs as drawn (OpenPose COCO indices, parent first, in the order that finds each child
# from a known parent); limb i is drawn in 0.6 x OPENPOSE_COLOURS[i] of its drawing index.
OPENPOSE_LIMBS = {  # drawing index: (parent, child)
    0: (1, 2), 1: (1, 5), 6: (1, 8), 9: (1, 11), 12: (1, 0),
    2: (2, 3), 3: (3, 4), 4: (5, 6), 5: (6, 7), 7: (8, 9), 8: (9, 10), 10: (11, 12), 11: (12, 13),
    13: (0, 14), 15: (0, 15), 14: (14, 16), 16: (15, 17),
}  # fmt: skip


def _limb_far_end(img: np.ndarray, colour: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    """The end of the limb drawn in ``colour`` that is farther from ``start`` (the limb is
    a long ellipse between its joints: the extremes of its pixels along its main axis)."""
    import cv2

    m = (np.abs(img - colour).max(-1) < 28) & (img.max(-1) < 200)
    n, lab, stats, _c = cv2.connectedComponentsWithStats(m.astype(np.uint8))
    if n < 2:
        return None
    # The limb's piece that reaches nearest the known joint (a crossing limb can cut it).
    best, best_d = 0, np.inf
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] < 6:
            continue
        ys, xs = np.nonzero(lab == i)
        d = np.min(np.hypot(xs - start[0], ys - start[1]))
        if d < best_d:
            best, best_d = i, d
    if best == 0:
        return None
    ys, xs = np.nonzero(lab == best)
    pts = np.stack([xs, ys], 1).astype(np.float64)
    c = pts.mean(0)
    _u, _s, vt = np.linalg.svd(pts - c, full_matrices=False)
    proj = (pts - c) @ vt[0]
    ends = [c + vt[0] * np.percentile(proj, 1), c + vt[0] * np.percentile(proj, 99)]
    return max(ends, key=lambda e: np.hypot(*(e - start)))


def read_skeleton(frame: np.ndarray) -> np.ndarray:
    """The pose drawn in one skeleton frame, as ``33 x 3`` (x, y normalised, visibility).

    The neck is its dot (full intensity; limbs are drawn at 60 %); every other joint is the
    far end of the limb that joins it to a joint already found, refined to its own dot
    nearby. Keypoints MediaPipe has and OpenPose does not (eye corners, mouth, fingers,
    heels, toes) are placed rigidly from the ones it has.
    """
    h, w = frame.shape[:2]
    img = frame.astype(np.float32)
    bright = img.max(-1) >= 170
    op = np.full((18, 3), np.nan, np.float32)
    radius = 0.03 * h

    def dot(k: int, near: np.ndarray | None) -> np.ndarray | None:
        m = bright & (np.abs(img - OPENPOSE_COLOURS[k]).max(-1) < 60)
        ys, xs = np.nonzero(m)
        if near is not None:
            keep = np.hypot(xs - near[0], ys - near[1]) < radius
            ys, xs = ys[keep], xs[keep]
        if len(xs) < 3:
            return None
        if near is None:  # the neck: the densest blob of its colour
            import cv2

            n, lab, stats, cents = cv2.connectedComponentsWithStats(m.astype(np.uint8))
            if n < 2:
                return None
            return cents[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
        return np.array([xs.mean(), ys.mean()])

    neck = dot(1, None)
    if neck is None:
        return np.zeros((33, 3), np.float32)
    op[1] = (*neck, 1.0)
    for i, (par, ch) in OPENPOSE_LIMBS.items():
        if not np.isfinite(op[par, 0]):
            continue
        end = _limb_far_end(img, OPENPOSE_COLOURS[i] * 0.6, op[par, :2])
        if end is None:
            continue
        refined = dot(ch, end)
        op[ch] = (*(refined if refined is not None else end), 1.0)
    return skeleton_to_mediapipe(op, (h, w))


def skeleton_to_mediapipe(op: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``18 x 3`` OpenPose keypoints (pixels, NaN where missing) -> ``33 x 3`` MediaPipe
    keypoints normalised to ``size`` = (height, width)."""
    h, w = size
    out = np.zeros((33, 3), np.float32)
    for mp_i, op_i in OPENPOSE_TO_MP.items():
        if np.isfinite(op[op_i, 0]):
            out[mp_i] = op[op_i]
    have = out[:, 2] > 0

    def at(i):
        return out[i, :2] if have[i] else None

    for eye, (inner, outer) in ((2, (1, 3)), (5, (4, 6))):
        if have[eye]:
            out[inner], out[outer] = out[eye], out[eye]
    if have[0] and have[2] and have[5]:
        eyes = (out[2, :2] + out[5, :2]) / 2
        down = out[0, :2] - eyes
        across = (out[2, :2] - out[5, :2]) * 0.3
        out[9, :2], out[10, :2] = out[0, :2] + down * 0.6 + across, out[0, :2] + down * 0.6 - across
        out[9:11, 2] = 1.0
    for wr, el, fingers in ((15, 13, (17, 19, 21)), (16, 14, (18, 20, 22))):
        if at(wr) is not None and at(el) is not None:
            for f in fingers:
                out[f, :2] = out[wr, :2] + (out[wr, :2] - out[el, :2]) * 0.2
                out[f, 2] = 1.0
    for an, kn, heel, toe in ((27, 25, 29, 31), (28, 26, 30, 32)):
        if at(an) is not None and at(kn) is not None:
            shin = out[an, :2] - out[kn, :2]
            out[heel, :2] = out[an, :2] + shin * 0.08
            out[toe, :2] = out[an, :2] + shin * 0.12 + np.array([0.0, 0.02 * h])
            out[[heel, toe], 2] = 1.0
    out[:, 0] /= w
    out[:, 1] /= h
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
        if name and not NAME_RE.fullmatch(name):
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

    def _model_poses(self, clip, kp, found, token, counts) -> None:
        """MediaPipe Pose (tracking mode) on every frame into ``kp``/``found``; face
        detection on every FACE_EVERY-th frame counts frames with several persons
        (``counts`` = [frames with several, frames checked])."""
        import mediapipe as mp

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
                        counts[1] += 1
                        counts[0] += (
                            int(sum(a >= 0.25 * areas[0] for a in areas) > 1) if areas else 0
                        )
            finally:
                pose.close()
                faces.close()

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
        token = token or CancelToken()
        first, last, out_fps = self.check(video, fps, start, end, name, field)
        clip = video.frames[first:last]
        vfps = video.fps or 25.0
        n = len(clip)
        kp = np.zeros((n, 33, 3), np.float32)
        found = np.zeros(n, bool)
        multi = 0
        if is_skeleton_video(clip):
            # A drawn skeleton is read directly: the pose model sees no person in it.
            for i, frame in enumerate(clip):
                token.check("extract")
                kp[i] = read_skeleton(frame)
                # The torso's four corners make a pose; without them the frame is a gap.
                found[i] = bool((kp[i, [11, 12, 23, 24], 2] > 0).all())
            checked = 0
        else:
            self._model_poses(clip, kp, found, token, counts := [0, 0])
            multi, checked = counts
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
        found &= ~pose_outliers(kp, found)
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
