from drape.catalog.v1 import events_pb2 as _events_pb2
from drape.common.v1 import common_pb2 as _common_pb2
from drape.common.v1 import operations_pb2 as _operations_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StartBatchRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "products", "publish", "force")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    products: _containers.RepeatedCompositeFieldContainer[_events_pb2.ProductUpserted]
    publish: bool
    force: bool
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., products: _Optional[_Iterable[_Union[_events_pb2.ProductUpserted, _Mapping]]] = ..., publish: bool = ..., force: bool = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("processed", "created", "reused", "failed", "dead_lettered", "skipped_stale", "assets", "failures")
    PROCESSED_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_STALE_FIELD_NUMBER: _ClassVar[int]
    ASSETS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    processed: int
    created: int
    reused: int
    failed: int
    dead_lettered: int
    skipped_stale: int
    assets: _containers.RepeatedCompositeFieldContainer[_events_pb2.AssetReady]
    failures: _containers.RepeatedCompositeFieldContainer[_events_pb2.JobFailed]
    def __init__(self, processed: _Optional[int] = ..., created: _Optional[int] = ..., reused: _Optional[int] = ..., failed: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., skipped_stale: _Optional[int] = ..., assets: _Optional[_Iterable[_Union[_events_pb2.AssetReady, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[_events_pb2.JobFailed, _Mapping]]] = ...) -> None: ...

class WatchBatchResponse(_message.Message):
    __slots__ = ("operation", "result")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    operation: _operations_pb2.Operation
    result: BatchResult
    def __init__(self, operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ..., result: _Optional[_Union[BatchResult, _Mapping]] = ...) -> None: ...

class GetBatchResponse(_message.Message):
    __slots__ = ("meta", "operation", "result")
    META_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    operation: _operations_pb2.Operation
    result: BatchResult
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., operation: _Optional[_Union[_operations_pb2.Operation, _Mapping]] = ..., result: _Optional[_Union[BatchResult, _Mapping]] = ...) -> None: ...
