from drape.common.v1 import common_pb2 as _common_pb2
from drape.common.v1 import operations_pb2 as _operations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MotionFraming(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MOTION_FRAMING_UNSPECIFIED: _ClassVar[MotionFraming]
    MOTION_FRAMING_UPPER_BODY: _ClassVar[MotionFraming]
    MOTION_FRAMING_FULL_BODY: _ClassVar[MotionFraming]

class MotionSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MOTION_SOURCE_UNSPECIFIED: _ClassVar[MotionSource]
    MOTION_SOURCE_BUILT_IN: _ClassVar[MotionSource]
    MOTION_SOURCE_DEPLOYMENT: _ClassVar[MotionSource]
    MOTION_SOURCE_EXTRACTED: _ClassVar[MotionSource]

class PreviewFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREVIEW_FORMAT_UNSPECIFIED: _ClassVar[PreviewFormat]
    PREVIEW_FORMAT_NONE: _ClassVar[PreviewFormat]
    PREVIEW_FORMAT_WEBP: _ClassVar[PreviewFormat]
    PREVIEW_FORMAT_GIF: _ClassVar[PreviewFormat]
MOTION_FRAMING_UNSPECIFIED: MotionFraming
MOTION_FRAMING_UPPER_BODY: MotionFraming
MOTION_FRAMING_FULL_BODY: MotionFraming
MOTION_SOURCE_UNSPECIFIED: MotionSource
MOTION_SOURCE_BUILT_IN: MotionSource
MOTION_SOURCE_DEPLOYMENT: MotionSource
MOTION_SOURCE_EXTRACTED: MotionSource
PREVIEW_FORMAT_UNSPECIFIED: PreviewFormat
PREVIEW_FORMAT_NONE: PreviewFormat
PREVIEW_FORMAT_WEBP: PreviewFormat
PREVIEW_FORMAT_GIF: PreviewFormat

class Keypoint(_message.Message):
    __slots__ = ("x", "y", "visibility")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    visibility: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., visibility: _Optional[float] = ...) -> None: ...

class Pose(_message.Message):
    __slots__ = ("keypoints", "width", "height")
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    keypoints: _containers.RepeatedCompositeFieldContainer[Keypoint]
    width: int
    height: int
    def __init__(self, keypoints: _Optional[_Iterable[_Union[Keypoint, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class PoseFrame(_message.Message):
    __slots__ = ("keypoints",)
    KEYPOINTS_FIELD_NUMBER: _ClassVar[int]
    keypoints: _containers.RepeatedCompositeFieldContainer[Keypoint]
    def __init__(self, keypoints: _Optional[_Iterable[_Union[Keypoint, _Mapping]]] = ...) -> None: ...

class MotionTemplate(_message.Message):
    __slots__ = ("name", "description", "fps", "loops", "framing", "frames", "width", "height")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    LOOPS_FIELD_NUMBER: _ClassVar[int]
    FRAMING_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    fps: float
    loops: bool
    framing: MotionFraming
    frames: _containers.RepeatedCompositeFieldContainer[PoseFrame]
    width: int
    height: int
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., fps: _Optional[float] = ..., loops: bool = ..., framing: _Optional[_Union[MotionFraming, str]] = ..., frames: _Optional[_Iterable[_Union[PoseFrame, _Mapping]]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class MotionInfo(_message.Message):
    __slots__ = ("name", "description", "fps", "frame_count", "duration_seconds", "loops", "framing", "source", "is_default")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOOPS_FIELD_NUMBER: _ClassVar[int]
    FRAMING_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    fps: float
    frame_count: int
    duration_seconds: float
    loops: bool
    framing: MotionFraming
    source: MotionSource
    is_default: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., fps: _Optional[float] = ..., frame_count: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., loops: bool = ..., framing: _Optional[_Union[MotionFraming, str]] = ..., source: _Optional[_Union[MotionSource, str]] = ..., is_default: bool = ...) -> None: ...

class BackgroundOptions(_message.Message):
    __slots__ = ("contact_shadow",)
    CONTACT_SHADOW_FIELD_NUMBER: _ClassVar[int]
    contact_shadow: bool
    def __init__(self, contact_shadow: bool = ...) -> None: ...

class ClipOutputOptions(_message.Message):
    __slots__ = ("preview_format", "preview_max_side", "poster_frame", "poster_format")
    PREVIEW_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_MAX_SIDE_FIELD_NUMBER: _ClassVar[int]
    POSTER_FRAME_FIELD_NUMBER: _ClassVar[int]
    POSTER_FORMAT_FIELD_NUMBER: _ClassVar[int]
    preview_format: PreviewFormat
    preview_max_side: int
    poster_frame: bool
    poster_format: _common_pb2.ImageFormat
    def __init__(self, preview_format: _Optional[_Union[PreviewFormat, str]] = ..., preview_max_side: _Optional[int] = ..., poster_frame: bool = ..., poster_format: _Optional[_Union[_common_pb2.ImageFormat, str]] = ...) -> None: ...

class StartClipRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "still", "template_name", "motion_template", "motion_video", "fps", "width", "height", "duration_seconds", "loop", "start_from_pose", "background", "backend", "output")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    STILL_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_NAME_FIELD_NUMBER: _ClassVar[int]
    MOTION_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    MOTION_VIDEO_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOOP_FIELD_NUMBER: _ClassVar[int]
    START_FROM_POSE_FIELD_NUMBER: _ClassVar[int]
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    still: _common_pb2.Image
    template_name: str
    motion_template: MotionTemplate
    motion_video: _common_pb2.Video
    fps: float
    width: int
    height: int
    duration_seconds: float
    loop: bool
    start_from_pose: Pose
    background: BackgroundOptions
    backend: str
    output: ClipOutputOptions
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., still: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., template_name: _Optional[str] = ..., motion_template: _Optional[_Union[MotionTemplate, _Mapping]] = ..., motion_video: _Optional[_Union[_common_pb2.Video, _Mapping]] = ..., fps: _Optional[float] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., loop: bool = ..., start_from_pose: _Optional[_Union[Pose, _Mapping]] = ..., background: _Optional[_Union[BackgroundOptions, _Mapping]] = ..., backend: _Optional[str] = ..., output: _Optional[_Union[ClipOutputOptions, _Mapping]] = ...) -> None: ...

class ClipResult(_message.Message):
    __slots__ = ("meta", "clip", "preview", "poster", "last_pose", "preview_format", "motion_name")
    META_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    POSTER_FIELD_NUMBER: _ClassVar[int]
    LAST_POSE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FORMAT_FIELD_NUMBER: _ClassVar[int]
    MOTION_NAME_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    clip: _common_pb2.Video
    preview: _common_pb2.Image
    poster: _common_pb2.Image
    last_pose: Pose
    preview_format: PreviewFormat
    motion_name: str
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., clip: _Optional[_Union[_common_pb2.Video, _Mapping]] = ..., preview: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., poster: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., last_pose: _Optional[_Union[Pose, _Mapping]] = ..., preview_format: _Optional[_Union[PreviewFormat, str]] = ..., motion_name: _Optional[str] = ...) -> None: ...

class WatchClipResponse(_message.Message):
    __slots__ = ("operation", "result")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    operation: _operations_pb2.Operation
    result: ClipResult
    def __init__(self, operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ..., result: _Optional[_Union[ClipResult, _Mapping]] = ...) -> None: ...

class GetClipResponse(_message.Message):
    __slots__ = ("meta", "operation", "result")
    META_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    operation: _operations_pb2.Operation
    result: ClipResult
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ..., result: _Optional[_Union[ClipResult, _Mapping]] = ...) -> None: ...

class ListMotionsRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "framing")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    FRAMING_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    framing: MotionFraming
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., framing: _Optional[_Union[MotionFraming, str]] = ...) -> None: ...

class ListMotionsResponse(_message.Message):
    __slots__ = ("meta", "motions")
    META_FIELD_NUMBER: _ClassVar[int]
    MOTIONS_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    motions: _containers.RepeatedCompositeFieldContainer[MotionInfo]
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., motions: _Optional[_Iterable[_Union[MotionInfo, _Mapping]]] = ...) -> None: ...

class ExtractMotionRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "video", "name", "description", "fps", "framing", "make_loop", "start_seconds", "end_seconds")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FRAMING_FIELD_NUMBER: _ClassVar[int]
    MAKE_LOOP_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    video: _common_pb2.Video
    name: str
    description: str
    fps: float
    framing: MotionFraming
    make_loop: bool
    start_seconds: float
    end_seconds: float
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., video: _Optional[_Union[_common_pb2.Video, _Mapping]] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., fps: _Optional[float] = ..., framing: _Optional[_Union[MotionFraming, str]] = ..., make_loop: bool = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ...) -> None: ...

class ExtractMotionResponse(_message.Message):
    __slots__ = ("meta", "motion", "interpolated_frames")
    META_FIELD_NUMBER: _ClassVar[int]
    MOTION_FIELD_NUMBER: _ClassVar[int]
    INTERPOLATED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    motion: MotionTemplate
    interpolated_frames: int
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., motion: _Optional[_Union[MotionTemplate, _Mapping]] = ..., interpolated_frames: _Optional[int] = ...) -> None: ...
