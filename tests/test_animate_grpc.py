"""AnimateService over a real gRPC channel: a clip of a real photo (frame count, rate and
size of the decoded MP4, preview, poster, progress), chaining, cancelling, the refusals
with their reasons, ListMotions and ExtractMotion."""

from __future__ import annotations

import io
import threading
import time

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from PIL import Image
from skimage import data

from drape.animate.v1 import animate_service_pb2 as pb
from drape.animate.v1 import animate_service_pb2_grpc as pb_grpc
from drape.common.v1 import common_pb2, operations_pb2
from services.animate.server import AnimateApp
from services.common.config import load_settings
from services.common.video import decode_video, encode_mp4

from helpers import error_details, png, serving

S = operations_pb2.OperationState


ASTRONAUT = png(data.astronaut())


@pytest.fixture(scope="module")
def stub():
    settings = load_settings(
        env={}, metrics_port=-1, grpc_address="127.0.0.1:0", motion_max_seconds=3.0
    )
    with serving(AnimateApp(settings), settings=settings, ready_timeout=120) as (_s, channel):
        yield pb_grpc.AnimateServiceStub(channel)


def finish(stub, op):
    msgs = list(stub.WatchClip(operations_pb2.OperationRef(operation_id=op.id), timeout=120))
    return msgs


def test_clip_of_a_real_photo(stub):
    request = pb.StartClipRequest(
        request_id="clip-1",
        still=common_pb2.Image(data=ASTRONAUT),
        template_name="upper-gestures",
        fps=20,
        width=320,
        height=480,
        duration_seconds=1.5,
        output=pb.ClipOutputOptions(poster_frame=True),
        experiment=common_pb2.Experiment(experiment_id="clips", variant="control"),
    )  # fmt: skip
    op = stub.StartClip(request, timeout=30)
    assert op.state in (S.OPERATION_STATE_QUEUED, S.OPERATION_STATE_RUNNING)
    again = stub.StartClip(request, timeout=30)
    assert again.id == op.id  # a retry (same request_id, same content) is idempotent
    msgs = finish(stub, op)
    final = msgs[-1]
    assert final.operation.state == S.OPERATION_STATE_SUCCEEDED, final.operation.error
    stages = {m.operation.progress.stage for m in msgs}
    assert "render" in stages
    dones = [m.operation.progress.done for m in msgs if m.operation.progress.stage == "render"]
    assert dones == sorted(dones) and final.operation.progress.total == 30
    r = final.result
    v = decode_video(r.clip.data)
    assert (v.frame_count, v.width, v.height) == (30, 320, 480) and abs(v.fps - 20) < 1e-6
    assert v.codec == "h264" and r.clip.mime_type == "video/mp4" and r.clip.frame_count == 30
    assert r.clip.data[4:8] == b"ftyp" and r.clip.data.find(b"moov") < r.clip.data.find(b"mdat")
    assert r.preview_format == pb.PREVIEW_FORMAT_WEBP and r.preview.data[8:12] == b"WEBP"
    poster = Image.open(io.BytesIO(r.poster.data))
    assert poster.format == "JPEG" and poster.size == (320, 480)
    assert r.meta.backend == "skeletal" and {"render", "encode", "retarget"} <= {
        t.stage for t in r.meta.timings
    }
    assert r.motion_name == "upper-gestures" and len(r.last_pose.keypoints) == 33
    # The clip moves: the frames differ, the background beside the person does not.
    f = v.frames.astype(int)
    assert np.abs(f[15] - f[0]).mean() > 0.5
    assert np.abs(f[15, :40, 280:] - f[0, :40, 280:]).mean() < 1.0
    got = stub.GetClip(operations_pb2.OperationRef(operation_id=op.id), timeout=10)
    assert got.operation.state == S.OPERATION_STATE_SUCCEEDED and got.result.clip.data

    # Chaining: the next clip starts where this one ended.
    op2 = stub.StartClip(
        pb.StartClipRequest(
            still=common_pb2.Image(data=ASTRONAUT),
            # (Not arms-open: it moves only the arms, which this photo cuts off at the
            # forearms, and is refused with MOTION_NOT_SUPPORTED_BY_PHOTO.)
            template_name="idle-sway-upper",
            fps=20,
            width=320,
            height=480,
            duration_seconds=0.5,
            start_from_pose=r.last_pose,
            output=pb.ClipOutputOptions(preview_format=pb.PREVIEW_FORMAT_NONE),
        ),  # fmt: skip
        timeout=30,
    )
    r2 = finish(stub, op2)[-1].result
    first = decode_video(r2.clip.data).frames[0].astype(int)
    assert np.abs(first - f[-1]).mean() < 3.0  # no jump (x264 noise aside)
    assert not r2.preview.data and r2.preview_format == pb.PREVIEW_FORMAT_NONE


def test_a_motion_the_photo_cannot_show_is_refused(stub):
    op = stub.StartClip(
        pb.StartClipRequest(
            still=common_pb2.Image(data=ASTRONAUT),
            template_name="arms-open",
            fps=10,
            width=320,
            height=480,
            duration_seconds=0.5,
        ),  # fmt: skip
        timeout=30,
    )
    final = finish(stub, op)[-1].operation
    assert final.state == S.OPERATION_STATE_FAILED
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in final.error.details)
    assert info.reason == "MOTION_NOT_SUPPORTED_BY_PHOTO" and "arm" in final.error.message


def test_cancel_stops_the_work(stub):
    op = stub.StartClip(
        pb.StartClipRequest(
            still=common_pb2.Image(data=ASTRONAUT),
            template_name="upper-gestures",
            fps=30,
            width=512,
            height=512,
            duration_seconds=20,
        ),  # fmt: skip
        timeout=30,
    )
    stream = stub.WatchClip(operations_pb2.OperationRef(operation_id=op.id), timeout=120)
    for msg in stream:
        if msg.operation.progress.stage == "render" and msg.operation.progress.done >= 3:
            break
    cancelled = stub.CancelClip(operations_pb2.OperationRef(operation_id=op.id), timeout=10)
    assert cancelled.id == op.id
    final = finish(stub, op)[-1].operation
    assert final.state == S.OPERATION_STATE_CANCELLED
    stopped = final.progress.done
    assert stopped < 600
    time.sleep(0.3)
    later = stub.GetClip(operations_pb2.OperationRef(operation_id=op.id), timeout=10).operation
    assert later.progress.done <= stopped + 1  # at most the frame in flight
    with pytest.raises(grpc.RpcError) as ei:
        stub.GetClip(operations_pb2.OperationRef(operation_id="nope"), timeout=10)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(ei.value)[0] == "OPERATION_NOT_FOUND"


def _bad_template(**kw) -> pb.MotionTemplate:
    t = pb.MotionTemplate(name="mine", fps=24, width=100, height=100)
    f = t.frames.add()
    f.keypoints.extend([pb.Keypoint(x=0.5, y=0.5, visibility=1)] * kw.get("n", 33))
    if kw.get("nan"):
        f.keypoints[3].x = float("nan")
    return t


STILL = common_pb2.Image(data=ASTRONAUT)


@pytest.mark.parametrize(
    "request_kw, reason, field",
    [
        ({"still": STILL}, "MOTION_MISSING", "motion"),
        ({"still": STILL, "template_name": "moonwalk"}, "MOTION_NOT_FOUND", "template_name"),
        ({"still": STILL, "motion_template": _bad_template(n=17)}, "MOTION_INVALID", None),
        ({"still": STILL, "motion_template": _bad_template(nan=True)}, "MOTION_INVALID", None),
        ({"still": STILL, "template_name": "arms-open",
          "start_from_pose": pb.Pose(keypoints=[pb.Keypoint()] * 5)}, "START_POSE_INVALID", None),
        ({"still": STILL, "template_name": "arms-open", "fps": 500}, "FPS_OUT_OF_RANGE", "fps"),
        ({"still": STILL, "template_name": "arms-open", "width": 321}, "SIZE_OUT_OF_RANGE", "width"),
        ({"still": STILL, "template_name": "arms-open", "height": 99999}, "SIZE_OUT_OF_RANGE",
         "height"),
        ({"still": STILL, "template_name": "arms-open", "duration_seconds": 999},
         "DURATION_OUT_OF_RANGE", "duration_seconds"),
        ({"still": STILL, "template_name": "arms-open", "backend": "diffusion"},
         "BACKEND_UNAVAILABLE", "backend"),
        ({"still": common_pb2.Image(data=b"not an image"), "template_name": "arms-open"},
         "IMAGE_UNRECOGNIZED", "still.data"),
        ({"still": STILL, "motion_video": common_pb2.Video(data=b"\x00" * 64)},
         "VIDEO_UNRECOGNIZED", "motion_video.data"),
    ],
)  # fmt: skip
def test_start_refusals(stub, request_kw, reason, field):
    with pytest.raises(grpc.RpcError) as ei:
        stub.StartClip(pb.StartClipRequest(**request_kw), timeout=30)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    got_reason, got_field = error_details(ei.value)
    assert got_reason == reason
    if field:
        assert got_field == field


@pytest.mark.parametrize(
    "still, motion, reason",
    [
        (ASTRONAUT, "step-and-pose", "MOTION_FRAMING_MISMATCH"),  # full-body motion, half still
        (png(np.full((256, 256, 3), 200, np.uint8)), "arms-open", "NO_PERSON_DETECTED"),
    ],
)
def test_refusals_inside_the_operation(stub, still, motion, reason):
    op = stub.StartClip(
        pb.StartClipRequest(still=common_pb2.Image(data=still), template_name=motion), timeout=30
    )
    final = finish(stub, op)[-1].operation
    assert final.state == S.OPERATION_STATE_FAILED and final.error.code == 3
    assert reason.encode() in final.error.details[0].value


def test_list_motions(stub):
    resp = stub.ListMotions(pb.ListMotionsRequest(), timeout=10)
    names = [m.name for m in resp.motions]
    assert names == sorted(names) and len(names) >= 6
    assert sum(m.is_default for m in resp.motions) == 1
    assert all(m.source == pb.MOTION_SOURCE_BUILT_IN and m.frame_count > 0 for m in resp.motions)
    upper = stub.ListMotions(pb.ListMotionsRequest(framing=pb.MOTION_FRAMING_UPPER_BODY))
    assert upper.motions and all(m.framing == pb.MOTION_FRAMING_UPPER_BODY for m in upper.motions)
    assert len(upper.motions) < len(resp.motions)


def _video(frames: int, person: bool = True) -> bytes:
    import cv2

    rgb = cv2.resize(data.astronaut(), (192, 192), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(frames):
        m = cv2.getRotationMatrix2D((96, 150), 5 * np.sin(i / 3), 1.0)
        out.append(cv2.warpAffine(rgb, m, (192, 192)) if person else np.full_like(rgb, 80))
    return encode_mp4(out, 12)


def test_extract_motion_and_use_it(stub):
    resp = stub.ExtractMotion(
        pb.ExtractMotionRequest(
            video=common_pb2.Video(data=_video(18)), name="my-sway", make_loop=True
        ),  # fmt: skip
        timeout=60,
    )
    m = resp.motion
    assert m.name == "my-sway" and len(m.frames) == 18 and m.loops and abs(m.fps - 12) < 1e-6
    assert m.framing == pb.MOTION_FRAMING_UPPER_BODY and resp.interpolated_frames <= 2
    # The extracted template drives a clip.
    op = stub.StartClip(
        pb.StartClipRequest(still=STILL, motion_template=m, width=128, height=128), timeout=30
    )
    final = finish(stub, op)[-1]
    assert final.operation.state == S.OPERATION_STATE_SUCCEEDED
    assert decode_video(final.result.clip.data).frame_count == 18


@pytest.mark.parametrize(
    "kw, reason",
    [
        ({"video": common_pb2.Video(data=_video(6, person=False))}, "VIDEO_HAS_NO_PERSON"),
        ({"video": common_pb2.Video(data=_video(48))}, "VIDEO_TOO_LONG"),  # 4 s > 3 s
        ({"video": common_pb2.Video(data=_video(6)), "name": "No Spaces"}, "NAME_INVALID"),
        ({"video": common_pb2.Video(data=_video(6)), "start_seconds": 2.0}, "TRIM_OUT_OF_RANGE"),
        ({"video": common_pb2.Video(data=b"")}, "VIDEO_EMPTY"),
    ],
)
def test_extract_refusals(stub, kw, reason):
    with pytest.raises(grpc.RpcError) as ei:
        stub.ExtractMotion(pb.ExtractMotionRequest(**kw), timeout=60)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(ei.value)[0] == reason


def test_queue_threading_is_not_starved(stub):
    """Two clips at once: both finish (one runs, the other waits QUEUED)."""
    ops = [
        stub.StartClip(pb.StartClipRequest(still=STILL, template_name="idle-sway-upper",
                                           width=96, height=96, duration_seconds=0.5))
        for _ in range(2)
    ]  # fmt: skip
    results = {}

    def watch(o):
        results[o.id] = finish(stub, o)[-1].operation.state

    threads = [threading.Thread(target=watch, args=(o,)) for o in ops]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert list(results.values()) == [S.OPERATION_STATE_SUCCEEDED] * 2
