from drape.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GarmentCategory(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GARMENT_CATEGORY_UNSPECIFIED: _ClassVar[GarmentCategory]
    GARMENT_CATEGORY_TOP: _ClassVar[GarmentCategory]
    GARMENT_CATEGORY_BOTTOM: _ClassVar[GarmentCategory]
    GARMENT_CATEGORY_DRESS: _ClassVar[GarmentCategory]
    GARMENT_CATEGORY_OUTERWEAR: _ClassVar[GarmentCategory]

class TuckStyle(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TUCK_STYLE_UNSPECIFIED: _ClassVar[TuckStyle]
    TUCK_STYLE_TUCKED: _ClassVar[TuckStyle]
    TUCK_STYLE_UNTUCKED: _ClassVar[TuckStyle]

class PersonSelection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PERSON_SELECTION_UNSPECIFIED: _ClassVar[PersonSelection]
    PERSON_SELECTION_MOST_PROMINENT: _ClassVar[PersonSelection]
    PERSON_SELECTION_REFUSE_MULTIPLE: _ClassVar[PersonSelection]

class BodyFraming(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BODY_FRAMING_UNSPECIFIED: _ClassVar[BodyFraming]
    BODY_FRAMING_HALF_BODY: _ClassVar[BodyFraming]
    BODY_FRAMING_FULL_BODY: _ClassVar[BodyFraming]

class Facing(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FACING_UNSPECIFIED: _ClassVar[Facing]
    FACING_FRONT: _ClassVar[Facing]
    FACING_THREE_QUARTER: _ClassVar[Facing]
    FACING_PROFILE: _ClassVar[Facing]
    FACING_BACK: _ClassVar[Facing]

class SleeveLength(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SLEEVE_LENGTH_UNSPECIFIED: _ClassVar[SleeveLength]
    SLEEVE_LENGTH_SLEEVELESS: _ClassVar[SleeveLength]
    SLEEVE_LENGTH_SHORT: _ClassVar[SleeveLength]
    SLEEVE_LENGTH_THREE_QUARTER: _ClassVar[SleeveLength]
    SLEEVE_LENGTH_LONG: _ClassVar[SleeveLength]

class GarmentLength(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GARMENT_LENGTH_UNSPECIFIED: _ClassVar[GarmentLength]
    GARMENT_LENGTH_CROPPED: _ClassVar[GarmentLength]
    GARMENT_LENGTH_WAIST: _ClassVar[GarmentLength]
    GARMENT_LENGTH_HIP: _ClassVar[GarmentLength]
    GARMENT_LENGTH_THIGH: _ClassVar[GarmentLength]
    GARMENT_LENGTH_KNEE: _ClassVar[GarmentLength]
    GARMENT_LENGTH_CALF: _ClassVar[GarmentLength]
    GARMENT_LENGTH_ANKLE: _ClassVar[GarmentLength]
    GARMENT_LENGTH_FLOOR: _ClassVar[GarmentLength]
GARMENT_CATEGORY_UNSPECIFIED: GarmentCategory
GARMENT_CATEGORY_TOP: GarmentCategory
GARMENT_CATEGORY_BOTTOM: GarmentCategory
GARMENT_CATEGORY_DRESS: GarmentCategory
GARMENT_CATEGORY_OUTERWEAR: GarmentCategory
TUCK_STYLE_UNSPECIFIED: TuckStyle
TUCK_STYLE_TUCKED: TuckStyle
TUCK_STYLE_UNTUCKED: TuckStyle
PERSON_SELECTION_UNSPECIFIED: PersonSelection
PERSON_SELECTION_MOST_PROMINENT: PersonSelection
PERSON_SELECTION_REFUSE_MULTIPLE: PersonSelection
BODY_FRAMING_UNSPECIFIED: BodyFraming
BODY_FRAMING_HALF_BODY: BodyFraming
BODY_FRAMING_FULL_BODY: BodyFraming
FACING_UNSPECIFIED: Facing
FACING_FRONT: Facing
FACING_THREE_QUARTER: Facing
FACING_PROFILE: Facing
FACING_BACK: Facing
SLEEVE_LENGTH_UNSPECIFIED: SleeveLength
SLEEVE_LENGTH_SLEEVELESS: SleeveLength
SLEEVE_LENGTH_SHORT: SleeveLength
SLEEVE_LENGTH_THREE_QUARTER: SleeveLength
SLEEVE_LENGTH_LONG: SleeveLength
GARMENT_LENGTH_UNSPECIFIED: GarmentLength
GARMENT_LENGTH_CROPPED: GarmentLength
GARMENT_LENGTH_WAIST: GarmentLength
GARMENT_LENGTH_HIP: GarmentLength
GARMENT_LENGTH_THIGH: GarmentLength
GARMENT_LENGTH_KNEE: GarmentLength
GARMENT_LENGTH_CALF: GarmentLength
GARMENT_LENGTH_ANKLE: GarmentLength
GARMENT_LENGTH_FLOOR: GarmentLength

class Garment(_message.Message):
    __slots__ = ("flat_lay", "category", "sleeve", "length", "garment_id")
    FLAT_LAY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SLEEVE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    GARMENT_ID_FIELD_NUMBER: _ClassVar[int]
    flat_lay: _common_pb2.Image
    category: GarmentCategory
    sleeve: SleeveLength
    length: GarmentLength
    garment_id: str
    def __init__(self, flat_lay: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., category: _Optional[_Union[GarmentCategory, str]] = ..., sleeve: _Optional[_Union[SleeveLength, str]] = ..., length: _Optional[_Union[GarmentLength, str]] = ..., garment_id: _Optional[str] = ...) -> None: ...

class DiffusionOptions(_message.Message):
    __slots__ = ("steps", "guidance_scale", "seed")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    steps: int
    guidance_scale: float
    seed: int
    def __init__(self, steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class PersonAnalysis(_message.Message):
    __slots__ = ("box", "framing", "facing", "persons_detected", "confidence")
    BOX_FIELD_NUMBER: _ClassVar[int]
    FRAMING_FIELD_NUMBER: _ClassVar[int]
    FACING_FIELD_NUMBER: _ClassVar[int]
    PERSONS_DETECTED_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    box: BoundingBox
    framing: BodyFraming
    facing: Facing
    persons_detected: int
    confidence: float
    def __init__(self, box: _Optional[_Union[BoundingBox, _Mapping]] = ..., framing: _Optional[_Union[BodyFraming, str]] = ..., facing: _Optional[_Union[Facing, str]] = ..., persons_detected: _Optional[int] = ..., confidence: _Optional[float] = ...) -> None: ...

class GarmentAnalysis(_message.Message):
    __slots__ = ("category", "category_from_request", "sleeve_length", "garment_length", "box", "confidence")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FROM_REQUEST_FIELD_NUMBER: _ClassVar[int]
    SLEEVE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    GARMENT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    category: GarmentCategory
    category_from_request: bool
    sleeve_length: SleeveLength
    garment_length: GarmentLength
    box: BoundingBox
    confidence: float
    def __init__(self, category: _Optional[_Union[GarmentCategory, str]] = ..., category_from_request: bool = ..., sleeve_length: _Optional[_Union[SleeveLength, str]] = ..., garment_length: _Optional[_Union[GarmentLength, str]] = ..., box: _Optional[_Union[BoundingBox, _Mapping]] = ..., confidence: _Optional[float] = ...) -> None: ...

class TryOnRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "person", "garments", "tuck", "backend", "refine", "output_format", "quality", "lossless", "return_garment_mask", "person_selection", "diffusion")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    GARMENTS_FIELD_NUMBER: _ClassVar[int]
    TUCK_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    REFINE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    LOSSLESS_FIELD_NUMBER: _ClassVar[int]
    RETURN_GARMENT_MASK_FIELD_NUMBER: _ClassVar[int]
    PERSON_SELECTION_FIELD_NUMBER: _ClassVar[int]
    DIFFUSION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    person: _common_pb2.Image
    garments: _containers.RepeatedCompositeFieldContainer[Garment]
    tuck: TuckStyle
    backend: str
    refine: bool
    output_format: _common_pb2.ImageFormat
    quality: int
    lossless: bool
    return_garment_mask: bool
    person_selection: PersonSelection
    diffusion: DiffusionOptions
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., person: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., garments: _Optional[_Iterable[_Union[Garment, _Mapping]]] = ..., tuck: _Optional[_Union[TuckStyle, str]] = ..., backend: _Optional[str] = ..., refine: bool = ..., output_format: _Optional[_Union[_common_pb2.ImageFormat, str]] = ..., quality: _Optional[int] = ..., lossless: bool = ..., return_garment_mask: bool = ..., person_selection: _Optional[_Union[PersonSelection, str]] = ..., diffusion: _Optional[_Union[DiffusionOptions, _Mapping]] = ...) -> None: ...

class TryOnResponse(_message.Message):
    __slots__ = ("meta", "image", "garment_mask", "person", "garments", "diffusion_seed", "refined")
    META_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    GARMENT_MASK_FIELD_NUMBER: _ClassVar[int]
    PERSON_FIELD_NUMBER: _ClassVar[int]
    GARMENTS_FIELD_NUMBER: _ClassVar[int]
    DIFFUSION_SEED_FIELD_NUMBER: _ClassVar[int]
    REFINED_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    image: _common_pb2.Image
    garment_mask: _common_pb2.Image
    person: PersonAnalysis
    garments: _containers.RepeatedCompositeFieldContainer[GarmentAnalysis]
    diffusion_seed: int
    refined: bool
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., image: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., garment_mask: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., person: _Optional[_Union[PersonAnalysis, _Mapping]] = ..., garments: _Optional[_Iterable[_Union[GarmentAnalysis, _Mapping]]] = ..., diffusion_seed: _Optional[int] = ..., refined: bool = ...) -> None: ...

class RegisterGarmentRequest(_message.Message):
    __slots__ = ("request_id", "experiment", "flat_lay", "category", "sleeve", "length")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    FLAT_LAY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SLEEVE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    experiment: _common_pb2.Experiment
    flat_lay: _common_pb2.Image
    category: GarmentCategory
    sleeve: SleeveLength
    length: GarmentLength
    def __init__(self, request_id: _Optional[str] = ..., experiment: _Optional[_Union[_common_pb2.Experiment, _Mapping]] = ..., flat_lay: _Optional[_Union[_common_pb2.Image, _Mapping]] = ..., category: _Optional[_Union[GarmentCategory, str]] = ..., sleeve: _Optional[_Union[SleeveLength, str]] = ..., length: _Optional[_Union[GarmentLength, str]] = ...) -> None: ...

class RegisterGarmentResponse(_message.Message):
    __slots__ = ("meta", "garment_id", "analysis", "cached")
    META_FIELD_NUMBER: _ClassVar[int]
    GARMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    meta: _common_pb2.ResponseMeta
    garment_id: str
    analysis: GarmentAnalysis
    cached: bool
    def __init__(self, meta: _Optional[_Union[_common_pb2.ResponseMeta, _Mapping]] = ..., garment_id: _Optional[str] = ..., analysis: _Optional[_Union[GarmentAnalysis, _Mapping]] = ..., cached: bool = ...) -> None: ...
