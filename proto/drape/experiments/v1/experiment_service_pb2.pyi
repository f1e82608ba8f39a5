from drape.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UnitKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNIT_KIND_UNSPECIFIED: _ClassVar[UnitKind]
    UNIT_KIND_SHOPPER: _ClassVar[UnitKind]
    UNIT_KIND_SESSION: _ClassVar[UnitKind]

class Output(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_UNSPECIFIED: _ClassVar[Output]
    OUTPUT_STILL: _ClassVar[Output]
    OUTPUT_STILL_AND_CLIP: _ClassVar[Output]
UNIT_KIND_UNSPECIFIED: UnitKind
UNIT_KIND_SHOPPER: UnitKind
UNIT_KIND_SESSION: UnitKind
OUTPUT_UNSPECIFIED: Output
OUTPUT_STILL: Output
OUTPUT_STILL_AND_CLIP: Output

class Recipe(_message.Message):
    __slots__ = ("output", "tryon_backend", "refine", "motion_template", "animate_backend", "roster_id")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    TRYON_BACKEND_FIELD_NUMBER: _ClassVar[int]
    REFINE_FIELD_NUMBER: _ClassVar[int]
    MOTION_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    ANIMATE_BACKEND_FIELD_NUMBER: _ClassVar[int]
    ROSTER_ID_FIELD_NUMBER: _ClassVar[int]
    output: Output
    tryon_backend: str
    refine: bool
    motion_template: str
    animate_backend: str
    roster_id: str
    def __init__(self, output: _Optional[_Union[Output, str]] = ..., tryon_backend: _Optional[str] = ..., refine: bool = ..., motion_template: _Optional[str] = ..., animate_backend: _Optional[str] = ..., roster_id: _Optional[str] = ...) -> None: ...

class Variant(_message.Message):
    __slots__ = ("name", "weight", "recipe")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: float
    recipe: Recipe
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[float] = ..., recipe: _Optional[_Union[Recipe, _Mapping]] = ...) -> None: ...

class ExperimentDefinition(_message.Message):
    __slots__ = ("id", "description", "unit_kind", "variants", "control", "start_time", "stop_time", "attribution_window_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UNIT_KIND_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    CONTROL_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    STOP_TIME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    description: str
    unit_kind: UnitKind
    variants: _containers.RepeatedCompositeFieldContainer[Variant]
    control: str
    start_time: _timestamp_pb2.Timestamp
    stop_time: _timestamp_pb2.Timestamp
    attribution_window_seconds: int
    def __init__(self, id: _Optional[str] = ..., description: _Optional[str] = ..., unit_kind: _Optional[_Union[UnitKind, str]] = ..., variants: _Optional[_Iterable[_Union[Variant, _Mapping]]] = ..., control: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., stop_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., attribution_window_seconds: _Optional[int] = ...) -> None: ...

class AssignRequest(_message.Message):
    __slots__ = ("request_id", "experiment")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ...) -> None: ...

class AssignResponse(_message.Message):
    __slots__ = ("meta", "variant", "recipe", "bucket")
    META_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    variant: str
    recipe: Recipe
    bucket: float
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., variant: _Optional[str] = ..., recipe: _Optional[_Union[Recipe, _Mapping]] = ..., bucket: _Optional[float] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("request_id", "experiment")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ...) -> None: ...

class GetExperimentResponse(_message.Message):
    __slots__ = ("meta", "experiment", "running")
    META_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    experiment: ExperimentDefinition
    running: bool
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., experiment: _Optional[_Union[ExperimentDefinition, _Mapping]] = ..., running: bool = ...) -> None: ...

class ReportExposureRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "product_id", "time")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    product_id: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., product_id: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportExposureResponse(_message.Message):
    __slots__ = ("meta", "variant", "event_id", "duplicate")
    META_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    variant: str
    event_id: str
    duplicate: bool
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., variant: _Optional[str] = ..., event_id: _Optional[str] = ..., duplicate: bool = ...) -> None: ...
