"""The animate pipeline: analyse the still, fit it to the clip size, retarget the motion,
render frames with a backend, and encode the MP4, the preview and the poster.

Frames stream from the backend straight into the H.264 encoder, so memory holds the
still's layers, a frame or two and the (small) preview frames, never the whole clip.
"""

from __future__ import annotations

import contextvars
import dataclasses
import io
import queue
import threading
import time
from collections.abc import Callable
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from services.animate.backends import Backend, RenderOptions, RenderStats, SkeletalBackend
from services.animate.layers import CUT_TRUSTED, arm_cut_share, limb_contact, segment_arms
from services.animate.motions import Motion
from services.animate.retarget import (
    ARM_JOINTS,
    Targets,
    arms_off_the_motion,
    arms_to_keep_still,
    legs_touch,
    retarget,
)
from services.common.analysis.person import PersonAnalysis, PersonAnalyzer
from services.common.context import CancelToken
from services.common.errors import InvalidInputError
from services.common.images import encode_image
from services.common.video import encode_mp4

# Largest tilt of the head (and swing of the neck) against the chest, degrees: further, the
# head cut out of a photo opens a wedge at the neck.
HEAD_TILT_LIMIT = 15.0
# How far the hips may travel from the still's place, in torso lengths: about as far as the
# built-in sways go (further, a person cut from a photo uncovers the repainted plate and
# leaves their own cast shadow behind), and how far a turn
# may narrow or widen the shoulders and hips (a full turn squeezes the photo to a sliver).
TRAVEL_LIMIT = 0.08
WIDTH_RANGE = (0.75, 1.15)
PREVIEW_MAX_FPS = 8.0  # a preview is a glance: fewer frames keep it small and quick
Progress = Callable[[int, int, str], None]


@dataclasses.dataclass
class ClipOptions:
    """How to make the clip (the contract's StartClipRequest, transport-free).

    Attributes:
        fps: clip frame rate; 0 for the motion's.
        width: clip width (even); 0 derives it from height and the still.
        height: clip height (even); 0 derives it.
        duration: seconds; 0 for one pass of the motion.
        loop: make the last frame flow into the first.
        start_pose: ``33 x 2`` pose in normalised clip coordinates to start from (chaining).
        contact_shadow: soft shadow under the feet (full-body stills).
        preview: "webp", "gif" or None.
        preview_max_side: longest side of the preview.
        poster: also return a poster frame.
        poster_format: "JPEG", "PNG" or "WEBP".
        max_side: the server's largest clip side.
        max_fps: the server's highest frame rate.
        crf: x264 quality (lower is better).
        fit_motion: fit the motion to the photo: arms the photo cannot move cleanly (not
            shown whole, resting on the body, not told apart from the clothes, posed far
            from the motion's start) keep their pose with a warning (MOTION_ARM_KEPT_STILL);
            a motion of those arms alone is refused (MOTION_NOT_SUPPORTED_BY_PHOTO); legs
            that touch, or a hand resting beside a thigh, keep the feet planted
            (MOTION_LEGS_KEPT_STILL); head tilt, travel and turns are
            clamped (one MOTION_AMPLITUDE_LIMITED naming each).
    """

    fps: float = 0.0
    width: int = 0
    height: int = 0
    duration: float = 0.0
    loop: bool = False
    start_pose: np.ndarray | None = None
    contact_shadow: bool = False
    preview: Literal["webp", "gif"] | None = "webp"
    preview_max_side: int = 480
    poster: bool = False
    poster_format: str = "JPEG"
    max_side: int = 1920
    max_fps: float = 60.0
    crf: int = 20
    fit_motion: bool = True


@dataclasses.dataclass
class Clip:
    """A finished clip and what was learnt making it.

    Attributes:
        mp4: H.264 yuv420p MP4 bytes (faststart).
        width, height, fps, frame_count: of the clip.
        preview: animated WebP/GIF bytes, or None.
        preview_format: "webp", "gif" or None.
        poster: encoded poster frame, or None.
        last_pose: ``33 x 3`` normalised x, y and visibility of the last frame's pose.
        targets: the retargeted poses (clip pixels).
        analysis: the person analysis in clip pixels.
        timings: seconds per stage.
        stats: the backend's render statistics.
        warnings: ``(reason, message)`` notes.
    """

    mp4: bytes
    width: int
    height: int
    fps: float
    frame_count: int
    preview: bytes | None
    preview_format: str | None
    poster: bytes | None
    last_pose: np.ndarray
    targets: Targets
    analysis: PersonAnalysis
    timings: dict[str, float]
    stats: RenderStats
    warnings: list[tuple[str, str]]


def clip_size(still_hw: tuple[int, int], width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` of the clip: as asked, or derived from the still's aspect ratio
    (even, capped at ``max_side``)."""
    sh, sw = still_hw

    def even(x: float) -> int:
        return max(2, int(round(x / 2)) * 2)

    if width and height:
        return width, height
    if width:
        return width, min(even(width * sh / sw), max_side - max_side % 2)
    if height:
        return min(even(height * sw / sh), max_side - max_side % 2), height
    scale = min(1.0, max_side / max(sh, sw))
    return even(sw * scale), even(sh * scale)


def fit_still(rgb: np.ndarray, analysis: PersonAnalysis, size: tuple[int, int]):
    """Scale and centre-crop the still (and its analysis) to ``size`` = (width, height),
    covering the frame; returns ``(rgb, analysis)`` in clip pixels."""
    w, h = size
    sh, sw = rgb.shape[:2]
    s = max(w / sw, h / sh)
    nw, nh = max(w, int(round(sw * s))), max(h, int(round(sh * s)))
    x0, y0 = (nw - w) // 2, (nh - h) // 2
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    out = cv2.resize(rgb, (nw, nh), interpolation=interp)[y0 : y0 + h, x0 : x0 + w]

    def fit(m: np.ndarray) -> np.ndarray:
        if m.dtype == bool:
            r = cv2.resize(m.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
        else:
            r = cv2.resize(m, (nw, nh), interpolation=cv2.INTER_LINEAR)
        return r[y0 : y0 + h, x0 : x0 + w]

    lm = analysis.landmarks.copy()
    lm[:, 0] = lm[:, 0] * (nw / sw) - x0
    lm[:, 1] = lm[:, 1] * (nh / sh) - y0
    lm[:, 2] *= nw / sw
    scaled = dataclasses.replace(
        analysis,
        size=(h, w),
        landmarks=lm,
        mask=fit(analysis.mask.astype(np.float32)),
        face=fit(analysis.face),
        hair=fit(analysis.hair),
        skin=fit(analysis.skin),
        arms={k: fit(v) for k, v in analysis.arms.items()},
        hands={k: fit(v) for k, v in analysis.hands.items()},
        upper_clothes=fit(analysis.upper_clothes),
        lower_clothes=fit(analysis.lower_clothes),
        torso=fit(analysis.torso),
    )
    return np.ascontiguousarray(out), scaled


def _ahead(frames, token: CancelToken, depth: int = 3):
    """Iterate ``frames`` on a worker thread, a few frames ahead of the consumer: rendering
    (NumPy/OpenCV, which release the GIL) overlaps with H.264 encoding on the caller's
    thread. Errors (cancellation included) are re-raised in the consumer; a consumer that
    stops early stops the producer within one frame."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for f in frames:
                while not stop.is_set():
                    try:
                        q.put(f, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    ctx = contextvars.copy_context()
    worker = threading.Thread(target=ctx.run, args=(produce,), name="drape-render", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(5)


def encode_preview(frames: list[np.ndarray], fps: float, fmt: str) -> bytes:
    """Animated WebP (lossy, fastest method) or GIF (adaptive palette), looping."""
    imgs = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    ms = int(round(1000 / fps))
    if fmt == "gif":
        pal = [im.convert("P", palette=Image.Palette.ADAPTIVE, colors=255) for im in imgs]
        pal[0].save(buf, "GIF", save_all=True, append_images=pal[1:], duration=ms, loop=0)
    else:
        imgs[0].save(
            buf, "WEBP", save_all=True, append_images=imgs[1:], duration=ms, loop=0,
            quality=70, method=0,
        )  # fmt: skip
    return buf.getvalue()


@dataclasses.dataclass
class MotionFit:
    """What a motion may move on one photo (:func:`fit_motion`).

    Attributes:
        still_arms: arms kept in the still's pose, one piece with the torso.
        still_legs: the feet stay planted (the motion plays its upper-body variant).
        arm_cut: the arms cut out of the still, where judging them needed the cut.
        warnings: ``(reason, message)`` for what the clip will not do as asked.
    """

    still_arms: tuple[str, ...] = ()
    still_legs: bool = False
    arm_cut: dict[str, np.ndarray] | None = None
    warnings: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def fit_motion(rgb: np.ndarray, pa: PersonAnalysis, motion: Motion) -> MotionFit:
    """Decide which limbs ``motion`` may move on this photo (still and analysis in clip
    pixels): only what the renderer can move cleanly; the rest keeps the still's pose.

    Raises:
        InvalidInputError: MOTION_NOT_SUPPORTED_BY_PHOTO for a motion of the arms alone
            where neither moved arm can move.
    """
    h, w = rgb.shape[:2]
    person = pa.mask > 0.5
    fit = MotionFit()
    contact = limb_contact(person, pa.landmarks, pa.framing)
    resting = arms_to_keep_still(pa.landmarks, (h, w), contact)
    moves = _arms_moved(motion)
    free = [s for s in ("left", "right") if s not in resting]
    if free:
        # Only an arm that the cut tells apart from the body can move: else the hand
        # would leave its sleeve behind on the torso.
        fit.arm_cut = segment_arms(rgb, pa, person)
        share = arm_cut_share(fit.arm_cut, pa.landmarks, person)
        for s in free:
            if share[s] < CUT_TRUSTED:
                resting[s] = (
                    "the photo does not tell the arm apart from the clothes beside it"
                    f" (the cut holds {share[s]:.0%} of its sleeve or forearm)"
                )
    off = {s: r for s, r in arms_off_the_motion(pa.landmarks, motion).items()
           if s in moves and s not in resting}  # fmt: skip
    keep = {s: r for s, r in (resting | off).items() if s in moves}
    if keep and len(keep) == len(moves) and motion.framing == "upper" and _only_arms(motion):
        raise InvalidInputError(
            "MOTION_NOT_SUPPORTED_BY_PHOTO",
            f"motion {motion.name!r} moves only the arms, and on this photo "
            + "; ".join(f"the {s} arm cannot move: {r}" for s, r in keep.items()),
            field="template_name",
        )
    for side, reason in keep.items():
        fit.warnings.append(
            ("MOTION_ARM_KEPT_STILL", f"the person's {side} arm is kept still: {reason}")
        )
    # Every resting arm stays one piece with the torso, also where the motion barely
    # moves it (a sway would otherwise slide the arm over the clothes).
    fit.still_arms = tuple(sorted(set(resting) | set(off)))
    if motion.framing == "full" and pa.framing == "full":
        hip_y = float(pa.landmarks[[23, 24], 1].mean())
        on_thigh = [s for s in resting if pa.landmarks[ARM_JOINTS[s][2], 1] > hip_y]
        why = ""
        if legs_touch(contact):
            why = (f"the legs touch each other in the photo ({contact['legs']:.0%} of their"
                   " length), so a step would tear them apart")  # fmt: skip
        elif on_thigh:
            why = (f"the {' and '.join(on_thigh)} hand rests beside the thigh, so a step"
                   " would drag it along")  # fmt: skip
        else:
            # Free legs too: turned apart, legs cut out of a photo bow, tear the trousers
            # open at the crotch and uncover a smear of repainted background between
            # them (every devset photo with free legs showed it).
            why = ("legs cut out of a photo cannot step cleanly (the trousers tear open at"
                   " the crotch and the background between them smears)")  # fmt: skip
        if why:
            fit.still_legs = True
            fit.warnings.append((
                "MOTION_LEGS_KEPT_STILL",
                f"{why}: the feet stay planted and the upper body performs {motion.name!r}",
            ))  # fmt: skip
    return fit


def _played_smaller(targets) -> list[str]:
    """What the motion asked beyond what a photo cut into layers plays cleanly, each with
    its limit (:data:`HEAD_TILT_LIMIT`, :data:`TRAVEL_LIMIT`, :data:`WIDTH_RANGE`); legs
    never step under fitting (they stay planted, see :func:`fit_motion`)."""
    out = []
    if targets.head_tilt_wanted > HEAD_TILT_LIMIT:
        out.append(
            f"it tilts the head up to {targets.head_tilt_wanted:.0f} degrees, played to"
            f" {HEAD_TILT_LIMIT:.0f}"
        )
    if targets.travel_wanted > TRAVEL_LIMIT:
        out.append(
            f"it moves the hips {targets.travel_wanted:.2f} torso lengths, played within"
            f" {TRAVEL_LIMIT:.2f}"
        )
    lo, hi = targets.width_wanted
    if lo < WIDTH_RANGE[0] or hi > WIDTH_RANGE[1]:
        out.append(
            f"it turns the body to {lo:.2f}-{hi:.2f} of the photo's width (a photo shows"
            f" one side only), played to {WIDTH_RANGE[0]:.2f}-{WIDTH_RANGE[1]:.2f}"
        )
    return out


class AnimatePipeline:
    """Still + motion -> clip, on a backend.

    Args:
        analyzer: the person analysis (load once, shared with try-on where hosted together).
        backend: the default backend.
    """

    def __init__(self, analyzer: PersonAnalyzer, backend: Backend | None = None) -> None:
        self.analyzer = analyzer
        self.backend = backend or SkeletalBackend()

    def prepare(
        self,
        still: np.ndarray,
        analysis: PersonAnalysis,
        motion: Motion,
        options: ClipOptions,
        fps: float,
        frames: int,
    ) -> tuple[np.ndarray, PersonAnalysis, Targets, list[tuple[str, str]]]:
        """Fit the still to the clip size, fit the motion to what the photo shows and
        retarget it: ``(still in clip pixels, its analysis, targets, warnings)``.

        Raises:
            InvalidInputError: MOTION_FRAMING_MISMATCH, MOTION_NOT_SUPPORTED_BY_PHOTO.
        """
        w, h = clip_size(still.shape[:2], options.width, options.height, options.max_side)
        rgb, pa = fit_still(still, analysis, (w, h))
        start = None
        if options.start_pose is not None:
            start = np.asarray(options.start_pose, np.float64)[:, :2] * [w, h]
        fit = fit_motion(rgb, pa, motion) if options.fit_motion else MotionFit()
        warnings = list(fit.warnings)
        targets = retarget(
            motion, pa.landmarks[:, :2], pa.framing, fps, frames, loop=options.loop, start=start,
            still_arms=fit.still_arms, still_legs=fit.still_legs,
            head_tilt_limit=HEAD_TILT_LIMIT if options.fit_motion else None,
            travel_limit=TRAVEL_LIMIT if options.fit_motion else None,
            width_range=WIDTH_RANGE if options.fit_motion else None,
        )  # fmt: skip
        targets.arm_cut = fit.arm_cut
        smaller = _played_smaller(targets) if options.fit_motion else []
        if smaller:
            # One warning, naming every limit that bit: what a photo cut into layers can
            # play cleanly.
            warnings.append((
                "MOTION_AMPLITUDE_LIMITED",
                f"{motion.name!r} is played smaller on this photo: " + "; ".join(smaller),
            ))  # fmt: skip
        return rgb, pa, targets, warnings

    def run(
        self,
        still: np.ndarray,
        motion: Motion,
        options: ClipOptions | None = None,
        token: CancelToken | None = None,
        progress: Progress | None = None,
        backend: Backend | None = None,
        analysis: PersonAnalysis | None = None,
    ) -> Clip:
        """Make a clip of the person in ``still`` performing ``motion``.

        Args:
            still: ``H x W x 3`` uint8 RGB.
            motion: the template.
            options: size, rate, length, looping, chaining, outputs.
            token: checked between stages and before every frame.
            progress: ``(done, total, stage)`` callback.
            backend: overrides the pipeline's default backend.
            analysis: a ready analysis of ``still`` (skips the person models; used for
                synthetic test figures the pose model cannot read).

        Raises:
            InvalidInputError: the analysis refusals (NO_PERSON_DETECTED, ...),
                MOTION_FRAMING_MISMATCH.
            CancelledError / DeadlineExceededError: from ``token``.
        """
        options = options or ClipOptions()
        token = token or CancelToken()
        backend = backend or self.backend
        timings: dict[str, float] = {}
        fps = min(options.fps or motion.fps, options.max_fps)
        seconds = options.duration or motion.duration
        frames = max(1, int(round(seconds * fps)))

        def report(done: int, total: int, stage: str) -> None:
            if progress is not None:
                progress(done, total, stage)

        report(0, frames, "analyse")
        t = time.perf_counter()
        if analysis is None:
            analysis = self.analyzer.analyze(still, field="still")
        timings["analyse"] = time.perf_counter() - t
        token.check("analyse")
        t = time.perf_counter()
        report(0, frames, "retarget")
        rgb, pa, targets, fit_warnings = self.prepare(still, analysis, motion, options, fps, frames)
        w, h = rgb.shape[1], rgb.shape[0]
        timings["retarget"] = time.perf_counter() - t
        token.check("retarget")

        stats = RenderStats()
        step = max(1, int(np.ceil(fps / PREVIEW_MAX_FPS)))
        pside = min(options.preview_max_side or 480, max(w, h))
        ps = pside / max(w, h)
        previews: list[np.ndarray] = []
        poster_at = frames // 2
        poster: list[np.ndarray] = []

        def stream():
            for i, frame in enumerate(
                backend.render(
                    rgb,
                    pa,
                    targets,
                    RenderOptions(options.contact_shadow),
                    token,
                    lambda d, n, s: report(d, n, s),
                    stats,
                )  # fmt: skip
            ):
                if options.preview and i % step == 0:
                    previews.append(
                        cv2.resize(
                            frame,
                            (max(2, round(w * ps)), max(2, round(h * ps))),
                            interpolation=cv2.INTER_AREA,
                        )  # fmt: skip
                    )
                if i == poster_at:
                    poster.append(frame)
                yield frame

        t = time.perf_counter()
        mp4 = encode_mp4(_ahead(stream(), token), fps, crf=options.crf)
        total = time.perf_counter() - t
        timings["render"] = stats.setup_seconds + stats.deform_seconds + stats.draw_seconds
        timings["encode"] = max(total - timings["render"], 0.0)
        token.check("encode")
        t = time.perf_counter()
        preview = encode_preview(previews, fps / step, options.preview) if options.preview else None
        poster_bytes = encode_image(poster[0], options.poster_format) if options.poster else None
        timings["preview"] = time.perf_counter() - t
        warnings = list(pa.warnings) + fit_warnings
        if options.contact_shadow and pa.framing != "full":
            warnings.append(
                ("CONTACT_SHADOW_IGNORED", "the still shows no feet; no contact shadow drawn")
            )
        last = np.zeros((33, 3), np.float32)
        last[:, 0] = targets.points[-1, :, 0] / w
        last[:, 1] = targets.points[-1, :, 1] / h
        last[:, 2] = np.where(targets.moved, pa.landmarks[:, 3], 0.0)
        report(frames, frames, "done")
        return Clip(
            mp4=mp4, width=w, height=h, fps=fps, frame_count=frames, preview=preview,
            preview_format=options.preview, poster=poster_bytes, last_pose=last,
            targets=targets, analysis=pa, timings=timings, stats=stats, warnings=warnings,
        )  # fmt: skip


def _arms_moved(motion: Motion) -> set[str]:
    """Arms whose angles the template changes noticeably (over 10 degrees)."""
    px = motion.pixels().astype(np.float64)
    out = set()
    for side, (s, e, wr) in ARM_JOINTS.items():
        for a, b in ((s, e), (e, wr)):
            v = px[:, b] - px[:, a]
            ang = np.unwrap(np.arctan2(v[:, 1], v[:, 0]))
            if np.abs(ang - ang[0]).max() > np.radians(10):
                out.add(side)
    return out


def _only_arms(motion: Motion) -> bool:
    """Whether the template moves the arms and little else (the shoulders' midpoint, width
    and line stay within 5 % of the shoulder width and 5 degrees)."""
    px = motion.pixels().astype(np.float64)
    sw = np.linalg.norm(px[0, 11] - px[0, 12])
    mid = (px[:, 11] + px[:, 12]) / 2
    v = px[:, 11] - px[:, 12]
    ang = np.unwrap(np.arctan2(v[:, 1], v[:, 0]))
    width = np.linalg.norm(v, axis=1)
    return bool(
        np.abs(mid - mid[0]).max() < 0.05 * sw
        and np.abs(ang - ang[0]).max() < np.radians(5)
        and np.abs(width - sw).max() < 0.05 * sw
    )


def check_options(options: ClipOptions, max_seconds: float) -> None:
    """Validate sizes, rate and length before any work.

    Raises:
        InvalidInputError: FPS_OUT_OF_RANGE, SIZE_OUT_OF_RANGE, DURATION_OUT_OF_RANGE.
    """
    if not (np.isfinite(options.fps) and (options.fps == 0 or 1 <= options.fps <= options.max_fps)):
        raise InvalidInputError(
            "FPS_OUT_OF_RANGE",
            f"fps must be 0 (the motion's) or 1-{options.max_fps:g}, got {options.fps:g}",
            field="fps",
        )
    for name, v in (("width", options.width), ("height", options.height)):
        if v < 0 or v % 2 or v > options.max_side or (0 < v < 16):
            raise InvalidInputError(
                "SIZE_OUT_OF_RANGE",
                f"{name} must be 0 or an even number of pixels 16-{options.max_side}, got {v}",
                field=name,
            )
    if not (np.isfinite(options.duration) and 0 <= options.duration <= max_seconds):
        raise InvalidInputError(
            "DURATION_OUT_OF_RANGE",
            f"duration_seconds must be 0-{max_seconds:g}, got {options.duration:g}",
            field="duration_seconds",
        )
