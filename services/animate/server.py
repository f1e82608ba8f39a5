"""AnimateService over gRPC: validate up front, run clips as long-running operations.

A thin adapter: StartClip validates and decodes, then hands a work function to the shared
:class:`~services.common.operations.OperationManager`; WatchClip/GetClip/CancelClip are
its watch/get/cancel; ExtractMotion and ListMotions are plain calls.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import grpc
import numpy as np

from drape.animate.v1 import animate_service_pb2 as pb
from drape.animate.v1 import animate_service_pb2_grpc as pb_grpc
from drape.common.v1 import common_pb2
from services.animate.backends import get_backend
from services.animate.extract import MotionExtractor
from services.animate.motions import DEFAULT_MOTION, Motion, MotionLibrary, validate_motion
from services.animate.pipeline import AnimatePipeline, Clip, ClipOptions, check_options
from services.common import context as ctxmod
from services.common.errors import InvalidInputError
from services.common.images import ImageLimits, decode_image
from services.common.interceptors import cancel_token
from services.common.media import FORMAT_ENUM, FORMAT_NAMES, response_meta
from services.common.operations import OperationManager, fingerprint
from services.common.opstore import open_operation_store
from services.common.security import caller_identity
from services.common.server import ServiceApp
from services.common.validation import (
    BACKEND_MAX,
    DESCRIPTION_MAX,
    MIME_TYPE_MAX,
    NAME_MAX,
    OPERATION_ID_MAX,
    check_enum,
    check_length,
    shown,
)
from services.common.video import VideoLimits, decode_video

VIDEO_MAX_SIDE = 640  # motion extraction needs no more than this
_FRAMING = {
    pb.MOTION_FRAMING_UNSPECIFIED: None,
    pb.MOTION_FRAMING_UPPER_BODY: "upper",
    pb.MOTION_FRAMING_FULL_BODY: "full",
}
_FRAMING_ENUM = {"upper": pb.MOTION_FRAMING_UPPER_BODY, "full": pb.MOTION_FRAMING_FULL_BODY}
_SOURCE = {
    "built_in": pb.MOTION_SOURCE_BUILT_IN,
    "deployment": pb.MOTION_SOURCE_DEPLOYMENT,
    "extracted": pb.MOTION_SOURCE_EXTRACTED,
    "request": pb.MOTION_SOURCE_UNSPECIFIED,
}
_PREVIEW = {
    pb.PREVIEW_FORMAT_UNSPECIFIED: "webp",
    pb.PREVIEW_FORMAT_WEBP: "webp",
    pb.PREVIEW_FORMAT_GIF: "gif",
    pb.PREVIEW_FORMAT_NONE: None,
}
_PREVIEW_ENUM = {
    "webp": pb.PREVIEW_FORMAT_WEBP,
    "gif": pb.PREVIEW_FORMAT_GIF,
    None: pb.PREVIEW_FORMAT_NONE,
}


# A template name as sent (services.animate.motions.NAME_RE), matched whole: "$" alone
# would also pass a name with a trailing newline.
_NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")


def check_name(name: str, field: str) -> str:
    """A motion template name a caller sends (empty allowed: the server picks one).

    Raises:
        InvalidInputError: FIELD_TOO_LONG, NAME_INVALID naming ``field``.
    """
    check_length(name, field, NAME_MAX)
    if name and not _NAME_RE.fullmatch(name):
        raise InvalidInputError(
            "NAME_INVALID",
            f"{field} must be 1-64 of a-z, 0-9, '-', '_', got {shown(name)}",
            field=field,
        )
    return name


def check_operation_id(request) -> str:
    """An OperationRef's id, bounded before any lookup.

    Raises:
        InvalidInputError: FIELD_TOO_LONG.
    """
    return check_length(request.operation_id, "operation_id", OPERATION_ID_MAX)


def validate_start(request: pb.StartClipRequest) -> None:
    """Bounds and enums of a StartClip request, before anything else reads it.

    Raises:
        InvalidInputError: FIELD_TOO_LONG, NAME_INVALID, OPTION_OUT_OF_RANGE.
    """
    check_length(request.backend, "backend", BACKEND_MAX)
    check_length(request.template_name, "template_name", NAME_MAX)
    if request.HasField("motion_template"):
        t = request.motion_template
        check_name(t.name, "motion_template.name")
        check_length(t.description, "motion_template.description", DESCRIPTION_MAX)
        check_enum(t.framing, pb.MotionFraming, "motion_template.framing")
    check_length(request.motion_video.mime_type, "motion_video.mime_type", MIME_TYPE_MAX)
    check_enum(request.output.preview_format, pb.PreviewFormat, "output.preview_format")
    check_enum(request.output.poster_format, common_pb2.ImageFormat, "output.poster_format")


def validate_extract(request: pb.ExtractMotionRequest) -> None:
    """Bounds and enums of an ExtractMotion request.

    Raises:
        InvalidInputError: FIELD_TOO_LONG, NAME_INVALID, OPTION_OUT_OF_RANGE.
    """
    check_name(request.name, "name")
    check_length(request.description, "description", DESCRIPTION_MAX)
    check_length(request.video.mime_type, "video.mime_type", MIME_TYPE_MAX)
    check_enum(request.framing, pb.MotionFraming, "framing")


def motion_from_proto(t: pb.MotionTemplate, field: str = "motion_template") -> Motion:
    """A sent template as a :class:`Motion` (validated).

    Raises:
        InvalidInputError: MOTION_INVALID, NAME_INVALID.
    """
    frames = np.zeros((len(t.frames), 33, 3), np.float32)
    for i, f in enumerate(t.frames):
        if len(f.keypoints) != 33:
            raise InvalidInputError(
                "MOTION_INVALID",
                f"frame {i} has {len(f.keypoints)} keypoints; exactly 33 are needed",
                field=f"{field}.frames[{i}].keypoints",
            )
        frames[i] = [(k.x, k.y, k.visibility) for k in f.keypoints]
    framing = _FRAMING.get(t.framing) or (
        "full" if len(frames) and frames[:, 25:29, 2].mean() >= 0.5 else "upper"
    )
    m = Motion(
        name=t.name or "sent", description=t.description, fps=t.fps, loops=t.loops,
        framing=framing, frames=frames, width=t.width, height=t.height, source="request",
    )  # fmt: skip
    validate_motion(m, field)
    return m


def motion_to_proto(m: Motion) -> pb.MotionTemplate:
    out = pb.MotionTemplate(
        name=m.name, description=m.description, fps=m.fps, loops=m.loops,
        framing=_FRAMING_ENUM[m.framing], width=m.width, height=m.height,
    )  # fmt: skip
    for f in m.frames:
        out.frames.add(keypoints=[pb.Keypoint(x=x, y=y, visibility=v) for x, y, v in f.tolist()])
    return out


def motion_info(m: Motion) -> pb.MotionInfo:
    return pb.MotionInfo(
        name=m.name, description=m.description, fps=m.fps, frame_count=m.frame_count,
        duration_seconds=m.duration, loops=m.loops, framing=_FRAMING_ENUM[m.framing],
        source=_SOURCE[m.source], is_default=m.name == DEFAULT_MOTION,
    )  # fmt: skip


def clip_result(clip: Clip, backend, motion_name: str, poster_format: str) -> pb.ClipResult:
    """A finished clip as the contract's ClipResult."""
    meta = response_meta(backend.name, backend.version, clip.timings)
    for reason, message in clip.warnings:
        meta.warnings.add(reason=reason, message=message)
    res = pb.ClipResult(
        meta=meta,
        clip=common_pb2.Video(
            data=clip.mp4, mime_type="video/mp4", width=clip.width, height=clip.height,
            fps=clip.fps, frame_count=clip.frame_count,
        ),
        preview_format=_PREVIEW_ENUM[clip.preview_format],
        motion_name=motion_name,
        last_pose=pb.Pose(
            keypoints=[pb.Keypoint(x=x, y=y, visibility=v) for x, y, v in clip.last_pose.tolist()],
            width=clip.width, height=clip.height,
        ),
    )  # fmt: skip
    if clip.preview is not None:
        fmt = common_pb2.IMAGE_FORMAT_WEBP if clip.preview_format == "webp" else 0
        res.preview.CopyFrom(common_pb2.Image(data=clip.preview, format=fmt))
    if clip.poster is not None:
        res.poster.CopyFrom(
            common_pb2.Image(
                data=clip.poster,
                format=FORMAT_ENUM[poster_format],
                width=clip.width,
                height=clip.height,
            )  # fmt: skip
        )
    return res


class AnimateServicer(pb_grpc.AnimateServiceServicer):
    """drape.animate.v1.AnimateService."""

    def __init__(self, app: AnimateApp) -> None:
        self.app = app

    # ------------------------------------------------------------------ clips

    def StartClip(self, request, context):  # noqa: N802 - gRPC method name
        app, s = self.app, self.app.settings
        if app.experiments is not None:  # a unit id: assign, apply the variant's recipe
            app.experiments.apply_clip(request)
        validate_start(request)
        kind = request.WhichOneof("motion")
        if kind is None:
            raise InvalidInputError(
                "MOTION_MISSING",
                "set one of template_name, motion_template or motion_video",
                field="motion",
            )
        backend = get_backend(request.backend, s.animate_backend, s.animate_request_backends)
        motion = video = None
        if kind == "template_name":
            motion = app.library.get(request.template_name, field="template_name")
        elif kind == "motion_template":
            motion = motion_from_proto(request.motion_template)
        start = None
        if request.HasField("start_from_pose"):
            kps = request.start_from_pose.keypoints
            if len(kps) != 33:
                raise InvalidInputError(
                    "START_POSE_INVALID",
                    f"start_from_pose has {len(kps)} keypoints; exactly 33 are needed",
                    field="start_from_pose.keypoints",
                )
            start = np.array([(k.x, k.y) for k in kps], np.float64)
            if not np.isfinite(start).all():
                raise InvalidInputError(
                    "START_POSE_INVALID", "a start_from_pose coordinate is not finite",
                    field="start_from_pose.keypoints",
                )  # fmt: skip
        out = request.output
        options = ClipOptions(
            fps=request.fps, width=request.width, height=request.height,
            duration=request.duration_seconds, loop=request.loop, start_pose=start,
            contact_shadow=request.background.contact_shadow,
            preview=_PREVIEW[out.preview_format],
            preview_max_side=out.preview_max_side or 480, poster=out.poster_frame,
            poster_format=FORMAT_NAMES[out.poster_format] if out.poster_format else "JPEG",
            max_side=s.animate_max_side, max_fps=s.animate_max_fps,
        )  # fmt: skip
        check_options(options, s.animate_max_seconds)
        if out.preview_max_side < 0:
            raise InvalidInputError(
                "OPTION_OUT_OF_RANGE",
                "preview_max_side must be >= 0",
                field="output.preview_max_side",
            )
        still = decode_image(request.still.data, app.image_limits, field="still.data").rgb()
        if kind == "motion_video":
            video = decode_video(
                request.motion_video.data, app.video_limits, field="motion_video.data",
                max_side=VIDEO_MAX_SIDE,
            )  # fmt: skip
            app.extractor.check(video, 0.0, 0.0, 0.0, "", "motion_video")
        motion_name = motion.name if motion is not None else "extracted"
        total = int(round((options.duration or (motion.duration if motion else 0)) * (
            min(options.fps or (motion.fps if motion else 0), options.max_fps))))  # fmt: skip

        def work(handle):
            m = motion
            if m is None:
                handle.progress(0, total, "extract")
                m, _ = app.extractor.extract(video, token=handle.token, field="motion_video")
            clip = app.pipeline.run(
                still, m, options, token=handle.token,
                progress=lambda d, n, st: handle.progress(d, n, st), backend=backend,
            )  # fmt: skip
            return clip_result(clip, backend, motion_name, options.poster_format)

        call = ctxmod.current()
        return app.operations.start(
            work,
            request_id=call.request_id if call and request.request_id else request.request_id,
            experiment=request.experiment,
            total=total,
            owner=caller_identity(context),
            fingerprint=fingerprint(request),
        )

    def WatchClip(self, request, context):  # noqa: N802
        check_operation_id(request)
        token = cancel_token(context)
        owner = caller_identity(context)
        for op, result in self.app.operations.watch(request.operation_id, token=token, owner=owner):
            msg = pb.WatchClipResponse(operation=op)
            if result is not None:
                msg.result.CopyFrom(result)
            yield msg

    def GetClip(self, request, context):  # noqa: N802
        check_operation_id(request)
        op, result = self.app.operations.get(request.operation_id, caller_identity(context))
        resp = pb.GetClipResponse(meta=response_meta(), operation=op)
        if result is not None:
            resp.result.CopyFrom(result)
        return resp

    def CancelClip(self, request, context):  # noqa: N802
        check_operation_id(request)
        return self.app.operations.cancel(request.operation_id, caller_identity(context))

    # ------------------------------------------------------------------ motions

    def ListMotions(self, request, context):  # noqa: N802
        check_enum(request.framing, pb.MotionFraming, "framing")
        t0 = time.perf_counter()
        motions = self.app.library.list(_FRAMING[request.framing])
        return pb.ListMotionsResponse(
            meta=response_meta(timings={"list": time.perf_counter() - t0}),
            motions=[motion_info(m) for m in motions],
        )

    def ExtractMotion(self, request, context):  # noqa: N802
        app = self.app
        validate_extract(request)
        t0 = time.perf_counter()
        video = decode_video(
            request.video.data, app.video_limits, field="video.data", max_side=VIDEO_MAX_SIDE
        )
        app.extractor.check(
            video, request.fps, request.start_seconds, request.end_seconds, request.name, "video"
        )
        t1 = time.perf_counter()
        motion, interpolated = app.extractor.extract(
            video, name=request.name, description=request.description, fps=request.fps,
            framing=_FRAMING[request.framing], loop=request.make_loop,
            start=request.start_seconds, end=request.end_seconds, token=cancel_token(context),
        )  # fmt: skip
        timings = {"decode": t1 - t0, "extract": time.perf_counter() - t1}
        return pb.ExtractMotionResponse(
            meta=response_meta("", "", timings),
            motion=motion_to_proto(motion),
            interpolated_frames=interpolated,
        )


class AnimateApp(ServiceApp):
    """The animate service: person models and motion library load once; clips run on a
    bounded operation pool (one clip at a time per process: a clip uses both cores)."""

    name = "animate"

    def __init__(self, settings, analyzer=None) -> None:
        self.settings = settings
        self.image_limits = ImageLimits.from_settings(settings)
        self.video_limits = VideoLimits.from_settings(settings)
        self._analyzer = analyzer
        self.pipeline: AnimatePipeline | None = None
        self.library = MotionLibrary(
            Path(settings.animate_motion_dir) if settings.animate_motion_dir else None
        )
        self.extractor = MotionExtractor(
            settings.motion_max_seconds, settings.motion_max_lost_share, settings.animate_max_fps
        )
        self.operations = OperationManager(
            max_active=settings.max_operations,
            workers=1,
            ttl_seconds=settings.operation_ttl_seconds,
            # Shared by replicas when DRAPE_OPERATION_STORE is set: any replica answers
            # Watch/Get/Cancel; results travel as serialized ClipResult messages.
            store=open_operation_store(settings.operation_store, settings),
            encode=lambda result: result.SerializeToString(),
            decode=pb.ClipResult.FromString,
        )
        self.experiments = None  # automatic experiment assignment (services/experiments)

    def register(self, server: grpc.Server, ctx) -> list[str]:
        pb_grpc.add_AnimateServiceServicer_to_server(AnimateServicer(self), server)
        from services.experiments.apply import RequestAssigner

        self.experiments = RequestAssigner(self.settings, ctx.metrics)
        return [pb.DESCRIPTOR.services_by_name["AnimateService"].full_name]

    def load(self) -> None:
        from services.common.analysis.person import PersonAnalyzer

        s = self.settings
        if self.experiments is not None:
            self.experiments.load()
        if "diffusion" in (s.animate_backend, *s.animate_request_backends):
            # Loads and checks the operator's weights; a missing or corrupted file raises
            # here, naming it, and health stays NOT_SERVING.
            from services.animate import diffusion

            diffusion.register(s)
        self.pipeline = AnimatePipeline(self._analyzer or PersonAnalyzer())

    def warmup(self) -> None:
        from skimage import data

        opts = ClipOptions(duration=0.25, width=128, height=128, preview=None)
        self.pipeline.run(data.astronaut(), self.library.get("idle-sway-upper"), opts)

    def close(self) -> None:
        self.operations.shutdown()
        if self.pipeline is not None and self._analyzer is None:
            self.pipeline.analyzer.close()
