from drape.catalog.v1 import events_pb2 as _events_pb2
from drape.common.v1 import common_pb2 as _common_pb2
from drape.common.v1 import operations_pb2 as _operations_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchItemState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_ITEM_STATE_UNSPECIFIED: _ClassVar[BatchItemState]
    BATCH_ITEM_STATE_PENDING: _ClassVar[BatchItemState]
    BATCH_ITEM_STATE_SUCCEEDED: _ClassVar[BatchItemState]
    BATCH_ITEM_STATE_FAILED: _ClassVar[BatchItemState]
    BATCH_ITEM_STATE_SKIPPED_STALE: _ClassVar[BatchItemState]
    BATCH_ITEM_STATE_PLANNED: _ClassVar[BatchItemState]
BATCH_ITEM_STATE_UNSPECIFIED: BatchItemState
BATCH_ITEM_STATE_PENDING: BatchItemState
BATCH_ITEM_STATE_SUCCEEDED: BatchItemState
BATCH_ITEM_STATE_FAILED: BatchItemState
BATCH_ITEM_STATE_SKIPPED_STALE: BatchItemState
BATCH_ITEM_STATE_PLANNED: BatchItemState

class StartBatchRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "products", "publish", "force", "manifest_uri", "changed_since", "dry_run")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_URI_FIELD_NUMBER: _ClassVar[int]
    CHANGED_SINCE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    products: _containers.RepeatedCompositeFieldContainer[_events_pb2.ProductUpserted]
    publish: bool
    force: bool
    manifest_uri: str
    changed_since: ChangedSince
    dry_run: bool
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., products: _Optional[_Iterable[_Union[_events_pb2.ProductUpserted, _Mapping]]] = ..., publish: bool = ..., force: bool = ..., manifest_uri: _Optional[str] = ..., changed_since: _Optional[_Union[ChangedSince, _Mapping]] = ..., dry_run: bool = ...) -> None: ...

class ChangedSince(_message.Message):
    __slots__ = ("merchant_id", "since")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    since: _timestamp_pb2.Timestamp
    def __init__(self, merchant_id: _Optional[str] = ..., since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("index", "event_id", "merchant_id", "sku", "state", "asset_uris", "created", "reused", "attempts", "reason", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SKU_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ASSET_URIS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    merchant_id: str
    sku: str
    state: BatchItemState
    asset_uris: _containers.RepeatedScalarFieldContainer[str]
    created: int
    reused: int
    attempts: int
    reason: str
    message: str
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., merchant_id: _Optional[str] = ..., sku: _Optional[str] = ..., state: _Optional[_Union[BatchItemState, str]] = ..., asset_uris: _Optional[_Iterable[str]] = ..., created: _Optional[int] = ..., reused: _Optional[int] = ..., attempts: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class BatchProgress(_message.Message):
    __slots__ = ("total", "succeeded", "failed", "skipped_stale", "created", "reused", "throughput_per_second", "eta_seconds", "dry_run")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_STALE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    total: int
    succeeded: int
    failed: int
    skipped_stale: int
    created: int
    reused: int
    throughput_per_second: float
    eta_seconds: float
    dry_run: bool
    def __init__(self, total: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., skipped_stale: _Optional[int] = ..., created: _Optional[int] = ..., reused: _Optional[int] = ..., throughput_per_second: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., dry_run: bool = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("processed", "created", "reused", "failed", "dead_lettered", "skipped_stale", "assets", "failures", "items", "dry_run")
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_STALE_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    processed: int
    created: int
    reused: int
    failed: int
    dead_lettered: int
    skipped_stale: int
    assets: _containers.RepeatedCompositeFieldContainer[_events_pb2.AssetReady]
    failures: _containers.RepeatedCompositeFieldContainer[_events_pb2.JobFailed]
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    dry_run: bool
    def __init__(self, processed: _Optional[int] = ..., created: _Optional[int] = ..., reused: _Optional[int] = ..., failed: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., skipped_stale: _Optional[int] = ..., assets: _Optional[_Iterable[_Union[_events_pb2.AssetReady, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[_events_pb2.JobFailed, _Mapping]]] = ..., items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., dry_run: bool = ...) -> None: ...

class WatchBatchResponse(_message.Message):
    __slots__ = ("operation", "result", "progress")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    operation: _operations_pb2.Operation
    result: BatchResult
    progress: BatchProgress
    def __init__(self, operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ..., result: _Optional[_Union[BatchResult, _Mapping]] = ..., progress: _Optional[_Union[BatchProgress, _Mapping]] = ...) -> None: ...

class GetBatchResponse(_message.Message):
    __slots__ = ("meta", "operation", "result", "progress")
    META_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    operation: _operations_pb2.Operation
    result: BatchResult
    progress: BatchProgress
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ..., result: _Optional[_Union[BatchResult, _Mapping]] = ..., progress: _Optional[_Union[BatchProgress, _Mapping]] = ...) -> None: ...
