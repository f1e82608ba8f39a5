from drape.common.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InspectImageRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "image", "return_normalized", "output_format")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    RETURN_NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    image: _common_pb2.Image
    return_normalized: bool
    output_format: _common_pb2.ImageFormat
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., return_normalized: bool = ..., output_format: _Optional[_Union[_common_pb2.ImageFormat, str]] = ...) -> None: ...

class InspectImageResponse(_message.Message):
    __slots__ = ("meta", "source_format", "source_mode", "source_width", "source_height", "exif_orientation", "width", "height", "channels", "normalized")
    META_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_MODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    EXIF_ORIENTATION_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    NORMALIZED_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    source_format: str
    source_mode: str
    source_width: int
    source_height: int
    exif_orientation: int
    width: int
    height: int
    channels: int
    normalized: _common_pb2.Image
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., source_format: _Optional[str] = ..., source_mode: _Optional[str] = ..., source_width: _Optional[int] = ..., source_height: _Optional[int] = ..., exif_orientation: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., channels: _Optional[int] = ..., normalized: _Optional[_Union[_common_pb2.Image, _Mapping]] = ...) -> None: ...

class InspectVideoRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "video")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    video: _common_pb2.Video
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., video: _Optional[_Union[_common_pb2.Video, _Mapping]] = ...) -> None: ...

class InspectVideoResponse(_message.Message):
    __slots__ = ("meta", "container", "codec", "width", "height", "fps", "frame_count", "duration_seconds")
    META_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    container: str
    codec: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration_seconds: float
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., container: _Optional[str] = ..., codec: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[float] = ..., frame_count: _Optional[int] = ..., duration_seconds: _Optional[float] = ...) -> None: ...
