"""Hostile and unlucky input over real gRPC (issue 12): every case asserts the exact status
code and ErrorInfo reason.

Items covered here: identifiers matched whole (a trailing newline never passes), unknown
enum numbers refused as INVALID_ARGUMENT (never INTERNAL), oversized strings refused with a
reason (never a bare RESOURCE_EXHAUSTED from oversized trailers), and refused fields logged
bounded.

Every case is refused by validation before any model runs, so the try-on and animate
servers here skip loading their models (``_Unloaded``); the tests with loaded models
(``test_tryon_grpc.py``, ``test_animate_grpc.py``) cover the same servicers end to end.
"""

from __future__ import annotations

import io
import logging

import grpc
import numpy as np
import pytest

from drape.animate.v1 import animate_service_pb2 as an_pb
from drape.animate.v1 import animate_service_pb2_grpc as an_grpc
from drape.catalog.v1 import events_pb2 as ev_pb
from drape.common.v1 import common_pb2, media_service_pb2, media_service_pb2_grpc, operations_pb2
from drape.refiner.v1 import refiner_service_pb2 as rf_pb
from drape.refiner.v1 import refiner_service_pb2_grpc as rf_grpc
from drape.tryon.v1 import tryon_service_pb2 as to_pb
from drape.tryon.v1 import tryon_service_pb2_grpc as to_grpc
from services.animate.server import AnimateApp
from services.common.config import load_settings
from services.common.errors import InvalidInputError
from services.common.logs import JsonFormatter
from services.common.media import MediaApp
from services.refiner.server import RefinerApp
from services.tryon import registry as R
from services.tryon.server import TryOnApp

from helpers import error_details, png, serving

INVALID = grpc.StatusCode.INVALID_ARGUMENT
MIB = 1 << 20


class _UnloadedTryOn(TryOnApp):
    """Try-on without its models: only what validation needs (the garment registry)."""

    def load(self) -> None:
        self.registry = R.registry_from_settings(self.settings)

    def warmup(self) -> None:
        pass


class _UnloadedAnimate(AnimateApp):
    """Animate without its person models (every case is refused before they would run)."""

    def load(self) -> None:
        pass

    def warmup(self) -> None:
        pass


@pytest.fixture(scope="module")
def channel():
    settings = load_settings(env={}, metrics_port=-1, grpc_address="127.0.0.1:0")
    apps = (
        _UnloadedTryOn(settings),
        RefinerApp(settings),
        _UnloadedAnimate(settings),
        MediaApp(settings),
    )
    with serving(*apps, settings=settings) as (_server, ch):
        yield ch


@pytest.fixture(scope="module")
def stubs(channel):
    return {
        "tryon": to_grpc.TryOnServiceStub(channel),
        "refiner": rf_grpc.RefinerServiceStub(channel),
        "animate": an_grpc.AnimateServiceStub(channel),
        "media": media_service_pb2_grpc.MediaServiceStub(channel),
    }


PIXEL = png(np.zeros((4, 4, 3), np.uint8))
GARMENT_ID = "0" * 64


def refused(fn, request, code=INVALID) -> tuple[str | None, str | None, str]:
    """Call ``fn(request)``; assert it fails with ``code``; return (reason, field, message)."""
    with pytest.raises(grpc.RpcError) as ei:
        fn(request, timeout=30)
    assert ei.value.code() == code, (ei.value.code(), ei.value.details()[:200])
    reason, field = error_details(ei.value)
    return reason, field, ei.value.details()


# ---------------------------------------------------------------- 1. trailing newlines


def _every_request(rid="", experiment=None):
    """(stub name, method, request) for one request of every method that takes ids."""
    exp = experiment or common_pb2.Experiment()
    return [
        ("tryon", "TryOn", to_pb.TryOnRequest(request_id=rid, experiment=exp)),
        ("tryon", "RegisterGarment", to_pb.RegisterGarmentRequest(request_id=rid, experiment=exp)),
        ("refiner", "Refine", rf_pb.RefineRequest(request_id=rid, experiment=exp)),
        ("animate", "StartClip", an_pb.StartClipRequest(request_id=rid, experiment=exp)),
        ("animate", "ListMotions", an_pb.ListMotionsRequest(request_id=rid, experiment=exp)),
        ("animate", "ExtractMotion", an_pb.ExtractMotionRequest(request_id=rid, experiment=exp)),
        (
            "media",
            "InspectImage",
            media_service_pb2.InspectImageRequest(request_id=rid, experiment=exp),
        ),  # fmt: skip
        (
            "media",
            "InspectVideo",
            media_service_pb2.InspectVideoRequest(request_id=rid, experiment=exp),
        ),  # fmt: skip
    ]


@pytest.mark.parametrize("index", range(8))
@pytest.mark.parametrize("rid", ["abc\n", "abc\r\n", "\nabc"])
def test_request_id_with_a_newline_is_refused(stubs, index, rid):
    name, method, req = _every_request(rid=rid)[index]
    reason, field, _ = refused(getattr(stubs[name], method), req)
    assert (reason, field) == ("INVALID_REQUEST_ID", "request_id")


@pytest.mark.parametrize("index", range(8))
@pytest.mark.parametrize(
    "exp, field",
    [
        (common_pb2.Experiment(experiment_id="exp", variant="ctl\n"), "experiment.variant"),
        (common_pb2.Experiment(experiment_id="exp\n", variant="ctl"), "experiment.experiment_id"),
    ],
)
def test_experiment_tag_with_a_newline_is_refused(stubs, index, exp, field):
    name, method, req = _every_request(experiment=exp)[index]
    reason, got_field, _ = refused(getattr(stubs[name], method), req)
    assert (reason, got_field) == ("INVALID_EXPERIMENT_TAG", field)


def test_motion_names_with_a_newline_are_refused(stubs):
    animate = stubs["animate"]
    req = an_pb.StartClipRequest(
        still=common_pb2.Image(data=PIXEL),
        motion_template=an_pb.MotionTemplate(name="wave\n", fps=10, width=8, height=8),
    )
    assert refused(animate.StartClip, req)[:2] == ("NAME_INVALID", "motion_template.name")
    req = an_pb.ExtractMotionRequest(name="wave\n", video=common_pb2.Video(data=b"x"))
    assert refused(animate.ExtractMotion, req)[:2] == ("NAME_INVALID", "name")
    req = an_pb.StartClipRequest(still=common_pb2.Image(data=PIXEL), template_name="idle-sway\n")
    assert refused(animate.StartClip, req)[:2] == ("MOTION_NOT_FOUND", "template_name")


def _event(**kw) -> ev_pb.ProductUpserted:
    ev = ev_pb.ProductUpserted(
        event_id="evt-1",
        merchant_id="acme",
        sku="TEE-1",
        garments=[ev_pb.GarmentRef(image_uri="s3://bucket/tee.png")],
        deliverables=ev_pb.Deliverables(stills=True),
    )
    for key, value in kw.items():
        if key == "motion_template":
            ev.deliverables.motion_template = value
        elif key in ("image_uri", "product_type"):
            setattr(ev.garments[0], key, value)
        elif key == "variant":
            ev.experiment.experiment_id, ev.experiment.variant = "exp", value
        else:
            setattr(ev, key, value)
    return ev


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"merchant_id": "acme\n"}, "merchant_id"),
        ({"sku": "TEE-1\n"}, "sku"),
        ({"roster_id": "studio\n"}, "roster_id"),
        ({"event_id": "evt-1\n"}, "event_id"),
        ({"variant": "ctl\n"}, "experiment.variant"),
        ({"motion_template": "idle-sway\n"}, "deliverables.motion_template"),
    ],
)
def test_catalog_event_identifier_with_a_newline_is_invalid(kw, field):
    from services.catalog_adapter.jobs import validate_event

    validate_event(_event())  # the event without the newline is fine
    with pytest.raises(InvalidInputError) as ei:
        validate_event(_event(**kw))
    assert (ei.value.reason, ei.value.field) == ("INVALID_EVENT", field)


def test_catalog_event_with_thousands_of_bad_garments_lists_a_bounded_number():
    from services.catalog_adapter.jobs import validate_event

    ev = _event()
    for _ in range(5000):
        ev.garments.add(image_uri="ftp://" + "h" * 2000, category=99)
    with pytest.raises(InvalidInputError) as ei:
        validate_event(ev)
    assert (ei.value.reason, ei.value.field) == ("INVALID_EVENT", "garments")
    assert len(ei.value.message) < 4096
    assert len(ei.value.metadata["fields"]) < 1024


def test_store_segment_with_a_newline_never_becomes_a_directory(tmp_path):
    from services.catalog_adapter.store import check_segment

    with pytest.raises(InvalidInputError) as ei:
        check_segment("acme\n", "merchant_id")
    assert ei.value.reason == "INVALID_EVENT"
    assert check_segment("acme", "merchant_id") == "acme"


# ---------------------------------------------------------------- 2. unknown enum values


ENUM_CASES = [
    (
        "tryon",
        "TryOn",
        lambda v: to_pb.TryOnRequest(
            garments=[to_pb.Garment(flat_lay=common_pb2.Image(data=PIXEL), category=v)]
        ),
        "GARMENT_CATEGORY_INVALID",
        "garments[0].category",
    ),  # fmt: skip
    (
        "tryon",
        "TryOn",
        lambda v: to_pb.TryOnRequest(output_format=v),
        "OPTION_OUT_OF_RANGE",
        "output_format",
    ),  # fmt: skip
    (
        "tryon",
        "TryOn",
        lambda v: to_pb.TryOnRequest(tuck=v),
        "OPTION_OUT_OF_RANGE",
        "tuck",
    ),  # fmt: skip
    (
        "tryon",
        "TryOn",
        lambda v: to_pb.TryOnRequest(person_selection=v),
        "OPTION_OUT_OF_RANGE",
        "person_selection",
    ),  # fmt: skip
    (
        "tryon",
        "RegisterGarment",
        lambda v: to_pb.RegisterGarmentRequest(flat_lay=common_pb2.Image(data=PIXEL), sleeve=v),
        "GARMENT_SLEEVE_INVALID",
        "sleeve",
    ),  # fmt: skip
    (
        "refiner",
        "Refine",
        lambda v: rf_pb.RefineRequest(composite=common_pb2.Image(data=PIXEL), output_format=v),
        "OPTION_OUT_OF_RANGE",
        "output_format",
    ),  # fmt: skip
    (
        "animate",
        "StartClip",
        lambda v: an_pb.StartClipRequest(
            template_name="idle-sway",
            still=common_pb2.Image(data=PIXEL),
            output=an_pb.ClipOutputOptions(preview_format=v),
        ),
        "OPTION_OUT_OF_RANGE",
        "output.preview_format",
    ),  # fmt: skip
    (
        "animate",
        "StartClip",
        lambda v: an_pb.StartClipRequest(
            template_name="idle-sway",
            still=common_pb2.Image(data=PIXEL),
            output=an_pb.ClipOutputOptions(poster_format=v),
        ),
        "OPTION_OUT_OF_RANGE",
        "output.poster_format",
    ),  # fmt: skip
    (
        "animate",
        "StartClip",
        lambda v: an_pb.StartClipRequest(
            still=common_pb2.Image(data=PIXEL),
            motion_template=an_pb.MotionTemplate(name="m", framing=v),
        ),
        "OPTION_OUT_OF_RANGE",
        "motion_template.framing",
    ),  # fmt: skip
    (
        "animate",
        "ListMotions",
        lambda v: an_pb.ListMotionsRequest(framing=v),
        "OPTION_OUT_OF_RANGE",
        "framing",
    ),  # fmt: skip
    (
        "animate",
        "ExtractMotion",
        lambda v: an_pb.ExtractMotionRequest(video=common_pb2.Video(data=b"x"), framing=v),
        "OPTION_OUT_OF_RANGE",
        "framing",
    ),  # fmt: skip
    (
        "media",
        "InspectImage",
        lambda v: media_service_pb2.InspectImageRequest(
            image=common_pb2.Image(data=PIXEL), return_normalized=True, output_format=v
        ),
        "OPTION_OUT_OF_RANGE",
        "output_format",
    ),  # fmt: skip
]


@pytest.mark.parametrize("value", [99, -1])
@pytest.mark.parametrize("case", range(len(ENUM_CASES)))
def test_unknown_enum_value_is_invalid_argument(stubs, case, value):
    name, method, make, reason, field = ENUM_CASES[case]
    got = refused(getattr(stubs[name], method), make(value))
    assert got[:2] == (reason, field)


# ---------------------------------------------------------------- 3. oversized strings


BIG = "b" * MIB

OVERSIZED_CASES = [
    ("tryon", "TryOn", to_pb.TryOnRequest(backend=BIG), "FIELD_TOO_LONG", "backend"),
    ("refiner", "Refine", rf_pb.RefineRequest(backend=BIG), "FIELD_TOO_LONG", "backend"),
    ("animate", "StartClip", an_pb.StartClipRequest(backend=BIG), "FIELD_TOO_LONG", "backend"),
    (
        "animate",
        "StartClip",
        an_pb.StartClipRequest(template_name=BIG),
        "FIELD_TOO_LONG",
        "template_name",
    ),  # fmt: skip
    (
        "animate",
        "StartClip",
        an_pb.StartClipRequest(motion_template=an_pb.MotionTemplate(name=BIG)),
        "FIELD_TOO_LONG",
        "motion_template.name",
    ),  # fmt: skip
    (
        "animate",
        "StartClip",
        an_pb.StartClipRequest(motion_template=an_pb.MotionTemplate(name="m", description=BIG)),
        "FIELD_TOO_LONG",
        "motion_template.description",
    ),  # fmt: skip
    (
        "animate",
        "StartClip",
        an_pb.StartClipRequest(motion_video=common_pb2.Video(mime_type=BIG)),
        "FIELD_TOO_LONG",
        "motion_video.mime_type",
    ),  # fmt: skip
    ("animate", "ExtractMotion", an_pb.ExtractMotionRequest(name=BIG), "FIELD_TOO_LONG", "name"),
    (
        "animate",
        "ExtractMotion",
        an_pb.ExtractMotionRequest(description=BIG),
        "FIELD_TOO_LONG",
        "description",
    ),  # fmt: skip
    (
        "animate",
        "GetClip",
        operations_pb2.OperationRef(operation_id=BIG),
        "FIELD_TOO_LONG",
        "operation_id",
    ),  # fmt: skip
    (
        "animate",
        "CancelClip",
        operations_pb2.OperationRef(operation_id=BIG),
        "FIELD_TOO_LONG",
        "operation_id",
    ),  # fmt: skip
    (
        "media",
        "InspectVideo",
        media_service_pb2.InspectVideoRequest(video=common_pb2.Video(mime_type=BIG)),
        "FIELD_TOO_LONG",
        "video.mime_type",
    ),  # fmt: skip
    ("tryon", "TryOn", to_pb.TryOnRequest(request_id=BIG), "INVALID_REQUEST_ID", "request_id"),
    (
        "tryon",
        "TryOn",
        to_pb.TryOnRequest(experiment=common_pb2.Experiment(variant=BIG)),
        "INVALID_EXPERIMENT_TAG",
        "experiment.variant",
    ),  # fmt: skip
    (
        "tryon",
        "TryOn",
        to_pb.TryOnRequest(garments=[to_pb.Garment(garment_id=BIG)]),
        "GARMENT_ID_INVALID",
        "garments[0].garment_id",
    ),  # fmt: skip
]


@pytest.mark.parametrize("case", range(len(OVERSIZED_CASES)))
def test_a_mebibyte_string_is_refused_with_a_reason_and_not_echoed(stubs, case):
    name, method, req, reason, field = OVERSIZED_CASES[case]
    got_reason, got_field, message = refused(getattr(stubs[name], method), req)
    assert (got_reason, got_field) == (reason, field)
    assert len(message) < 1024


def test_watch_with_a_mebibyte_operation_id_is_refused(stubs):
    stream = stubs["animate"].WatchClip(operations_pb2.OperationRef(operation_id=BIG), timeout=30)
    with pytest.raises(grpc.RpcError) as ei:
        next(stream)
    assert ei.value.code() == INVALID
    assert error_details(ei.value) == ("FIELD_TOO_LONG", "operation_id")


def test_an_unknown_backend_is_echoed_bounded(stubs):
    name = "x" * 64  # within the limit, not a backend
    reason, field, message = refused(stubs["tryon"].TryOn, to_pb.TryOnRequest(backend=name))
    assert (reason, field) == ("BACKEND_UNAVAILABLE", "backend")
    assert name in message


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"image_uri": "s3://b/" + "a" * 4096}, "garments[0].image_uri"),
        ({"product_type": "t" * 4096}, "garments[0].product_type"),
        ({"motion_template": "m" * 4096}, "deliverables.motion_template"),
        ({"merchant_id": "m" * MIB}, "merchant_id"),
        ({"event_id": "e" * MIB}, "event_id"),
    ],
)
def test_catalog_event_oversized_strings_are_invalid_and_not_echoed(kw, field):
    from services.catalog_adapter.jobs import validate_event

    with pytest.raises(InvalidInputError) as ei:
        validate_event(_event(**kw))
    assert (ei.value.reason, ei.value.field) == ("INVALID_EVENT", field)
    assert len(ei.value.message) < 1024


def test_error_reply_is_capped_even_when_a_message_is_not():
    from services.common.interceptors import MESSAGE_MAX, status_proto

    err = InvalidInputError("SOME_REASON", "y" * MIB, field="f" * MIB, metadata={"k": "v" * MIB})
    proto = status_proto(err)
    assert len(proto.message) <= MESSAGE_MAX
    assert len(proto.SerializeToString()) < 4096


# ---------------------------------------------------------------- 4. bounded log lines


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("drape")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_refused_calls_with_8_mib_ids_add_a_bounded_amount_to_the_log(stubs, log_stream):
    huge = "r" * (8 * MIB)
    for req in (
        media_service_pb2.InspectImageRequest(request_id=huge),
        media_service_pb2.InspectImageRequest(experiment=common_pb2.Experiment(variant=huge)),
        media_service_pb2.InspectImageRequest(
            experiment=common_pb2.Experiment(experiment_id=huge, variant=huge), request_id=huge
        ),
    ):
        reason, _field, _msg = refused(stubs["media"].InspectImage, req)
        assert reason in ("INVALID_REQUEST_ID", "INVALID_EXPERIMENT_TAG")
    written = log_stream.getvalue()
    assert written.count("rpc finished") == 3  # the refusals were logged ...
    assert len(written.encode()) < 3 * 2048  # ... each in a bounded line


def test_every_logged_field_is_bounded():
    from services.common import context as ctxmod
    from services.common.logs import TextFormatter

    record = logging.LogRecord("drape.x", logging.INFO, __file__, 1, "m" * MIB, (), None)
    record.field = "f" * MIB
    record.items = ["i" * MIB] * 1000
    record.drape_call = ctxmod.CallContext(
        request_id="r" * MIB, trace_id="t" * MIB, experiment_id="e" * MIB, variant="v" * MIB
    )
    assert len(JsonFormatter().format(record)) < 64 * 1024
    assert len(TextFormatter().format(record)) < 64 * 1024


# ---------------------------------------------------------------- leftovers of item 1


def _motion(name: str):
    from services.animate.motions import Motion

    frames = np.zeros((2, 33, 3), np.float32)
    return Motion(
        name=name, description="", fps=10, loops=False, framing="upper", frames=frames,
        width=8, height=8, source="test",
    )  # fmt: skip


@pytest.mark.parametrize("name", ["wave\n", "wave\r\n", "\nwave", "wave "])
def test_motion_template_name_is_matched_whole(name):
    """A template from a deployment's directory or an SDK user goes through
    validate_motion, not only through the server's own name check."""
    from services.animate.motions import validate_motion

    with pytest.raises(InvalidInputError) as ei:
        validate_motion(_motion(name), "motion")
    assert (ei.value.reason, ei.value.field) == ("NAME_INVALID", "motion.name")
    validate_motion(_motion("wave"), "motion")  # the same name without it passes


@pytest.mark.parametrize("name", ["wave\n", "wave\r\n"])
def test_extracted_motion_name_is_matched_whole(name):
    from services.animate.extract import MotionExtractor

    with pytest.raises(InvalidInputError) as ei:
        MotionExtractor(30.0, 0.5, 60.0).check(None, 0, 0, 0, name, "video")
    assert (ei.value.reason, ei.value.field) == ("NAME_INVALID", "name")


# ---------------------------------------------------------------- 5. request memory


# One of every unary method; "\xff" * 64 is no protobuf message (wire type 7).
GARBAGE_CASES = [
    "/drape.tryon.v1.TryOnService/TryOn",
    "/drape.tryon.v1.TryOnService/RegisterGarment",
    "/drape.refiner.v1.RefinerService/Refine",
    "/drape.animate.v1.AnimateService/StartClip",
    "/drape.animate.v1.AnimateService/ExtractMotion",
    "/drape.animate.v1.AnimateService/ListMotions",
    "/drape.animate.v1.AnimateService/GetClip",
    "/drape.animate.v1.AnimateService/CancelClip",
    "/drape.common.v1.MediaService/InspectImage",
    "/drape.common.v1.MediaService/InspectVideo",
]


@pytest.mark.parametrize("method", GARBAGE_CASES)
def test_bytes_that_are_no_request_are_malformed_not_internal(channel, method):
    reason, field, message = refused(channel.unary_unary(method), b"\xff" * 64)
    assert (reason, field) == ("MALFORMED_REQUEST", None)
    assert method.lstrip("/") in message


def test_watch_with_garbage_bytes_is_malformed(channel):
    fn = channel.unary_stream("/drape.animate.v1.AnimateService/WatchClip")
    with pytest.raises(grpc.RpcError) as ei:
        list(fn(b"\xff" * 64, timeout=30))
    assert ei.value.code() == INVALID
    assert error_details(ei.value) == ("MALFORMED_REQUEST", None)


def test_image_request_over_its_method_limit_is_refused_before_parsing(stubs):
    # 40 MiB: over the 32 MiB image limit, under this server's 64 MiB message limit (a
    # TryOn request may carry three images), over InspectImage's 36 MiB.
    req = media_service_pb2.InspectImageRequest(image=common_pb2.Image(data=bytes(40 * MIB)))
    reason, field, message = refused(
        stubs["media"].InspectImage, req, grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert (reason, field) == ("MESSAGE_TOO_LARGE", None)
    assert f"accepts at most {36 * MIB}" in message
