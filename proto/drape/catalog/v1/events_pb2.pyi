from drape.common.v1 import common_pb2 as _common_pb2
from drape.tryon.v1 import tryon_service_pb2 as _tryon_service_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AssetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ASSET_KIND_UNSPECIFIED: _ClassVar[AssetKind]
    ASSET_KIND_STILL: _ClassVar[AssetKind]
    ASSET_KIND_CLIP: _ClassVar[AssetKind]
    ASSET_KIND_PREVIEW: _ClassVar[AssetKind]
    ASSET_KIND_POSTER: _ClassVar[AssetKind]
ASSET_KIND_UNSPECIFIED: AssetKind
ASSET_KIND_STILL: AssetKind
ASSET_KIND_CLIP: AssetKind
ASSET_KIND_PREVIEW: AssetKind
ASSET_KIND_POSTER: AssetKind

class GarmentRef(_message.Message):
    __slots__ = ("image_uri", "category", "product_type", "sleeve", "length")
    IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SLEEVE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    image_uri: str
    category: _tryon_service_pb2.GarmentCategory
    product_type: str
    sleeve: _tryon_service_pb2.SleeveLength
    length: _tryon_service_pb2.GarmentLength
    def __init__(self, image_uri: _Optional[str] = ..., category: _Optional[_Union[_tryon_service_pb2.GarmentCategory, str]] = ..., product_type: _Optional[str] = ..., sleeve: _Optional[_Union[_tryon_service_pb2.SleeveLength, str]] = ..., length: _Optional[_Union[_tryon_service_pb2.GarmentLength, str]] = ...) -> None: ...

class Deliverables(_message.Message):
    __slots__ = ("stills", "clips", "motion_template", "still_format")
    STILLS_FIELD_NUMBER: _ClassVar[int]
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    MOTION_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    STILL_FORMAT_FIELD_NUMBER: _ClassVar[int]
    stills: bool
    clips: bool
    motion_template: str
    still_format: _common_pb2.ImageFormat
    def __init__(self, stills: bool = ..., clips: bool = ..., motion_template: _Optional[str] = ..., still_format: _Optional[_Union[_common_pb2.ImageFormat, str]] = ...) -> None: ...

class ProductUpserted(_message.Message):
    __slots__ = ("event_id", "merchant_id", "sku", "garments", "roster_id", "deliverables", "experiment", "occurred_at", "revision")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    GARMENTS_FIELD_NUMBER: _ClassVar[int]
    ROSTER_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERABLES_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    merchant_id: str
    sku: str
    garments: _containers.RepeatedCompositeFieldContainer[GarmentRef]
    roster_id: str
    deliverables: Deliverables
    experiment: _common_pb2.Experiment
    occurred_at: _timestamp_pb2.Timestamp
    revision: int
    def __init__(self, event_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., sku: _Optional[str] = ..., garments: _Optional[_Iterable[_Union[GarmentRef, _Mapping]]] = ..., roster_id: _Optional[str] = ..., deliverables: _Optional[_Union[Deliverables, _Mapping]] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., occurred_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class AssetReady(_message.Message):
    __slots__ = ("event_id", "merchant_id", "sku", "model_id", "kind", "asset_uri", "mime_type", "content_hash", "pipeline_version", "experiment", "backend", "created_at", "reused", "revision", "width", "height")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ASSET_URI_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    merchant_id: str
    sku: str
    model_id: str
    kind: AssetKind
    asset_uri: str
    mime_type: str
    content_hash: str
    pipeline_version: str
    experiment: _common_pb2.Experiment
    backend: str
    created_at: _timestamp_pb2.Timestamp
    reused: bool
    revision: int
    width: int
    height: int
    def __init__(self, event_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., sku: _Optional[str] = ..., model_id: _Optional[str] = ..., kind: _Optional[_Union[AssetKind, str]] = ..., asset_uri: _Optional[str] = ..., mime_type: _Optional[str] = ..., content_hash: _Optional[str] = ..., pipeline_version: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., backend: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., reused: bool = ..., revision: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class JobFailed(_message.Message):
    __slots__ = ("event_id", "merchant_id", "sku", "model_id", "reason", "message", "retryable", "attempts", "dead_lettered", "failed_at", "experiment", "kind", "revision")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    merchant_id: str
    sku: str
    model_id: str
    reason: str
    message: str
    retryable: bool
    attempts: int
    dead_lettered: bool
    failed_at: _timestamp_pb2.Timestamp
    experiment: _common_pb2.Experiment
    kind: AssetKind
    revision: int
    def __init__(self, event_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., sku: _Optional[str] = ..., model_id: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., retryable: bool = ..., attempts: _Optional[int] = ..., dead_lettered: bool = ..., failed_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., kind: _Optional[_Union[AssetKind, str]] = ..., revision: _Optional[int] = ...) -> None: ...

class AssetEvent(_message.Message):
    __slots__ = ("asset_ready", "job_failed")
    ASSET_READY_FIELD_NUMBER: _ClassVar[int]
    JOB_FAILED_FIELD_NUMBER: _ClassVar[int]
    asset_ready: AssetReady
    job_failed: JobFailed
    def __init__(self, asset_ready: _Optional[_Union[AssetReady, _Mapping]] = ..., job_failed: _Optional[_Union[JobFailed, _Mapping]] = ...) -> None: ...
