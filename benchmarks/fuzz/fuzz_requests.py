"""Fuzz target: request parsing and validation of every service, from raw serialized bytes.

The first byte picks a method (see :data:`METHODS`); the rest is parsed with the generated
message class, as gRPC does before a servicer runs. Then, in process (no network), what a
server does with it before any heavy work:

- the interceptor's checks of ``request_id`` and ``experiment`` (``services.common.context``);
- the real servicer method, with the upload bytes taken out of the request: it then runs
  every check the service makes before decoding, and stops at IMAGE_EMPTY / VIDEO_EMPTY
  where it would decode (decoding has targets of its own: fuzz_images, fuzz_video).
  ExtractMotion instead gets a small drawn-skeleton clip, so the trim, fps, name and framing
  checks and the skeleton reader run on fuzzed options;
- for the catalog adapter, ``ProductUpserted`` parsed from a record value and
  ``validate_event``.

A method that returns instead of refusing is fine when it can (ListMotions, ExtractMotion);
for the others a return means an upload got past a check it should not have (a finding).

    .venv/bin/python benchmarks/fuzz/fuzz_requests.py -max_total_time=600
"""

from __future__ import annotations

import sys
import types

import atheris
from google.protobuf.message import DecodeError

# The skeleton reader (ExtractMotion) stays uninstrumented: see fuzz_video.
with atheris.instrument_imports(include=["services"], exclude=["services.animate.extract"]):
    from services.animate import server as animate_server
    from services.catalog_adapter.jobs import validate_event
    from services.common import context as ctxmod
    from services.common import media
    from services.common.config import Settings
    from services.refiner import server as refiner_server
    from services.tryon import registry as tryon_registry
    from services.tryon import server as tryon_server

import _harness  # noqa: E402 - after the instrumented imports
import fuzz_video  # noqa: E402

from drape.animate.v1 import animate_service_pb2 as animate_pb  # noqa: E402
from drape.catalog.v1 import events_pb2  # noqa: E402
from drape.common.v1 import common_pb2, media_service_pb2, operations_pb2  # noqa: E402
from drape.refiner.v1 import refiner_service_pb2 as refiner_pb  # noqa: E402
from drape.tryon.v1 import tryon_service_pb2 as tryon_pb  # noqa: E402


class _Context:
    """The part of ``grpc.ServicerContext`` the servicers use on these paths: a caller
    that is still there, with a deadline 30 s away."""

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float:
        return 30.0

    def invocation_metadata(self) -> tuple:
        return ()


SETTINGS = Settings()
CTX = _Context()
SKELETON_CLIP = b""  # set by _apps(): a drawn-skeleton clip for ExtractMotion


def _apps():
    """The servicers, built as their apps build them, without loading any model (nothing on
    these paths reaches one)."""
    global SKELETON_CLIP
    tryon_app = tryon_server.TryOnApp(SETTINGS)
    tryon_app.registry = tryon_registry.registry_from_settings(SETTINGS)
    # RegisterGarment hands the cut-out model to register_garment, which refuses the
    # emptied upload before using it.
    tryon_app.pipeline = types.SimpleNamespace(segmenter=None)
    animate_app = animate_server.AnimateApp(SETTINGS)
    # Three small frames: reading a drawn skeleton costs tens of ms a frame.
    frames = fuzz_video.skeleton_frames(3, (60, 90))
    SKELETON_CLIP = fuzz_video._encode(frames, "matroska", "ffv1", "yuv444p")
    return (
        tryon_server.TryOnServicer(tryon_app),
        refiner_server.RefinerServicer(refiner_server.RefinerApp(SETTINGS)),
        animate_server.AnimateServicer(animate_app),
        media.MediaApp(SETTINGS).servicer,
    )


TRYON, REFINER, ANIMATE, MEDIA = _apps()


def _strip(*paths: str):
    """A function that empties the ``bytes`` fields at ``paths`` ("a.b", "list[].c.d")."""

    def clear(msg, parts: list[str]) -> None:
        head, rest = parts[0], parts[1:]
        if head.endswith("[]"):
            for item in getattr(msg, head[:-2]):
                clear(item, rest)
        elif not rest:
            setattr(msg, head, b"")
        elif msg.HasField(head):
            clear(getattr(msg, head), rest)

    def strip(msg) -> None:
        for p in paths:
            clear(msg, p.split("."))

    return strip


def _with_clip(msg) -> None:
    msg.video.data = SKELETON_CLIP


def _drain(stream) -> None:
    for _ in stream:
        pass


# (name, request class, call, prepare, may return normally)
METHODS = [
    ("TryOn", tryon_pb.TryOnRequest, lambda r: TRYON.TryOn(r, CTX),
     _strip("person.data", "garments[].flat_lay.data"), False),
    ("RegisterGarment", tryon_pb.RegisterGarmentRequest,
     lambda r: TRYON.RegisterGarment(r, CTX), _strip("flat_lay.data"), False),
    ("Refine", refiner_pb.RefineRequest, lambda r: REFINER.Refine(r, CTX),
     _strip("composite.data", "original.data", "garment_mask.data", "protect_mask.data"), False),
    ("StartClip", animate_pb.StartClipRequest, lambda r: ANIMATE.StartClip(r, CTX),
     _strip("still.data", "motion_video.data"), False),
    ("WatchClip", operations_pb2.OperationRef, lambda r: _drain(ANIMATE.WatchClip(r, CTX)),
     _strip(), False),
    ("GetClip", operations_pb2.OperationRef, lambda r: ANIMATE.GetClip(r, CTX), _strip(), False),
    ("CancelClip", operations_pb2.OperationRef, lambda r: ANIMATE.CancelClip(r, CTX), _strip(), False),
    ("ListMotions", animate_pb.ListMotionsRequest, lambda r: ANIMATE.ListMotions(r, CTX),
     _strip(), True),
    ("ExtractMotion", animate_pb.ExtractMotionRequest,
     lambda r: ANIMATE.ExtractMotion(r, CTX), _with_clip, True),
    ("InspectImage", media_service_pb2.InspectImageRequest,
     lambda r: MEDIA.InspectImage(r, CTX), _strip("image.data"), False),
    ("InspectVideo", media_service_pb2.InspectVideoRequest,
     lambda r: MEDIA.InspectVideo(r, CTX), _strip("video.data"), False),
    ("ProductUpserted", events_pb2.ProductUpserted, validate_event, _strip(), True),
]  # fmt: skip


def _interceptor_checks(req) -> None:
    """What ``services.common.interceptors`` checks of every request before the servicer."""
    ctxmod.validate_request_id(getattr(req, "request_id", ""))
    if "experiment" in req.DESCRIPTOR.fields_by_name and req.HasField("experiment"):
        ctxmod.validate_tag(req.experiment.experiment_id, "experiment.experiment_id")
        ctxmod.validate_tag(req.experiment.variant, "experiment.variant")


def one_input(data: bytes) -> None:
    """Parse ``data[1:]`` as the request of method ``data[0]`` and run it; raise only on a
    finding (see :mod:`_harness`)."""
    if not data:
        return
    name, cls, call, prepare, may_return = METHODS[data[0] % len(METHODS)]
    try:
        req = cls.FromString(data[1:])
    except DecodeError:
        return  # gRPC refuses a body it cannot parse before any servicer runs
    if name != "ProductUpserted" and _harness.refused(_interceptor_checks, req) is not None:
        return
    prepare(req)
    if _harness.refused(call, req) is None and not may_return:
        raise _harness.Finding(f"{name} returned for a request whose upload was removed")


def seeds() -> list[bytes]:
    """Well-formed requests of every method (made here), each behind its method byte."""
    index = {name: i for i, (name, *_rest) in enumerate(METHODS)}
    img = common_pb2.Image(data=b"\x89PNG", format=common_pb2.IMAGE_FORMAT_PNG)
    exp = common_pb2.Experiment(experiment_id="exp-1", variant="ctl")
    kp = [animate_pb.Keypoint(x=0.5, y=0.1 + k / 40, visibility=1.0) for k in range(33)]
    msgs = [
        ("TryOn", tryon_pb.TryOnRequest(
            request_id="req-1", experiment=exp, person=img, quality=90,
            garments=[tryon_pb.Garment(flat_lay=img, category=1)])),
        ("TryOn", tryon_pb.TryOnRequest(
            person=img, backend="geometric", tuck=1,
            garments=[tryon_pb.Garment(garment_id="0" * 64), tryon_pb.Garment(flat_lay=img)])),
        ("RegisterGarment", tryon_pb.RegisterGarmentRequest(flat_lay=img, category=1, sleeve=1)),
        ("Refine", refiner_pb.RefineRequest(
            composite=img, original=img, garment_mask=img, strength=0.5, seed=3, quality=80)),
        ("StartClip", animate_pb.StartClipRequest(
            still=img, template_name="idle-sway", duration_seconds=2.0, fps=12, width=256,
            height=256, start_from_pose=animate_pb.Pose(keypoints=kp),
            output=animate_pb.ClipOutputOptions(preview_format=1, poster_frame=True, poster_format=2))),
        ("StartClip", animate_pb.StartClipRequest(
            still=img, motion_template=animate_pb.MotionTemplate(
                name="sent", fps=12, framing=1, width=256, height=256,
                frames=[animate_pb.PoseFrame(keypoints=kp)] * 3))),
        ("StartClip", animate_pb.StartClipRequest(
            still=img, motion_video=common_pb2.Video(data=b"\0\0\0\x18ftyp", mime_type="video/mp4"))),
        ("WatchClip", operations_pb2.OperationRef(operation_id="0" * 32)),
        ("GetClip", operations_pb2.OperationRef(operation_id="0" * 32)),
        ("CancelClip", operations_pb2.OperationRef(operation_id="0" * 32)),
        ("ListMotions", animate_pb.ListMotionsRequest(framing=2)),
        ("ExtractMotion", animate_pb.ExtractMotionRequest(
            name="mine", description="d", fps=12, framing=2, make_loop=True, start_seconds=0.1,
            end_seconds=0.4)),
        ("InspectImage", media_service_pb2.InspectImageRequest(
            image=img, return_normalized=True, output_format=2)),
        ("InspectVideo", media_service_pb2.InspectVideoRequest(
            video=common_pb2.Video(data=b"\x1a\x45\xdf\xa3", mime_type="video/webm"))),
        ("ProductUpserted", events_pb2.ProductUpserted(
            event_id="ev-1", merchant_id="acme", sku="sku-1", revision=2,
            garments=[events_pb2.GarmentRef(image_uri="s3://b/k.png", product_type="t-shirt")],
            deliverables=events_pb2.Deliverables(stills=True, clips=True,
                                                 motion_template="idle-sway"),
            experiment=exp)),
    ]  # fmt: skip
    return [bytes([index[name]]) + m.SerializeToString() for name, m in msgs]


if __name__ == "__main__":
    sys.exit(_harness.main("requests", one_input, seeds))
