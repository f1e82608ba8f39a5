from drape.common.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RefineRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "composite", "garment_mask", "protect_mask", "original", "backend", "strength", "output_format", "quality", "lossless", "seed")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    COMPOSITE_FIELD_NUMBER: _ClassVar[int]
    GARMENT_MASK_FIELD_NUMBER: _ClassVar[int]
    PROTECT_MASK_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    LOSSLESS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    composite: _common_pb2.Image
    garment_mask: _common_pb2.Image
    protect_mask: _common_pb2.Image
    original: _common_pb2.Image
    backend: str
    strength: float
    output_format: _common_pb2.ImageFormat
    quality: int
    lossless: bool
    seed: int
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., composite: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., garment_mask: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., protect_mask: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., original: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., backend: _Optional[str] = ..., strength: _Optional[float] = ..., output_format: _Optional[_Union[_common_pb2.ImageFormat, str]] = ..., quality: _Optional[int] = ..., lossless: bool = ..., seed: _Optional[int] = ...) -> None: ...

class RefineResponse(_message.Message):
    __slots__ = ("meta", "image", "seed")
    META_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    image: _common_pb2.Image
    seed: int
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., seed: _Optional[int] = ...) -> None: ...
