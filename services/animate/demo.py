"""The clip step of ``make demo``: one try-on still animated over gRPC (StartClip, then
WatchClip with progress), written to ``out/clips/`` with its preview, poster and a contact
sheet of frames."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

from drape.animate.v1 import animate_service_pb2 as pb
from drape.animate.v1 import animate_service_pb2_grpc as pb_grpc
from drape.common.v1 import common_pb2, operations_pb2

DEMO_STILL = "grace_hopper_tshirt_stripes.png"
DEMO_MOTION = "upper-gestures"


def animate_demo(channel: grpc.Channel, out: Path) -> bool:
    """Animate one try-on result of the demo; True when the clip came back whole."""
    from services.animate.debug import sheet
    from services.common.video import decode_video

    stills = sorted((out / "tryon").glob("*.png"))
    if not stills:
        print("demo: no try-on still to animate")
        return False
    path = next((p for p in stills if p.name == DEMO_STILL), stills[0])
    stub = pb_grpc.AnimateServiceStub(channel)
    op = stub.StartClip(
        pb.StartClipRequest(
            request_id=f"demo-clip-{path.stem}",
            still=common_pb2.Image(data=path.read_bytes()),
            template_name=DEMO_MOTION,
            fps=24,
            duration_seconds=4.0,
            loop=True,
            output=pb.ClipOutputOptions(poster_frame=True),
            experiment=common_pb2.Experiment(experiment_id="demo", variant="control"),
        ),
        timeout=30,
    )
    final = None
    for msg in stub.WatchClip(operations_pb2.OperationRef(operation_id=op.id), timeout=120):
        p = msg.operation.progress
        print(
            f"\rclip {path.stem}: {p.stage:8} {p.done:3}/{p.total} frames", end="", file=sys.stderr
        )
        final = msg
    print(file=sys.stderr)
    if final is None or final.operation.state != operations_pb2.OPERATION_STATE_SUCCEEDED:
        print(f"demo: clip failed: {final.operation.error.message if final else 'no answer'}")
        return False
    r = final.result
    d = out / "clips"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{path.stem}_{DEMO_MOTION}.mp4").write_bytes(r.clip.data)
    (d / f"{path.stem}_{DEMO_MOTION}.webp").write_bytes(r.preview.data)
    (d / f"{path.stem}_{DEMO_MOTION}_poster.jpg").write_bytes(r.poster.data)
    frames = decode_video(r.clip.data).frames
    idx = np.linspace(0, len(frames) - 1, 8).astype(int)
    Image.fromarray(sheet([frames[i] for i in idx], 8, 240)).save(d / "clip_contact_sheet.png")
    took = sum(t.seconds for t in r.meta.timings)
    print(
        f"clip     {d / (path.stem + '_' + DEMO_MOTION + '.mp4')}: {r.clip.width}x{r.clip.height}"
        f" {r.clip.fps:g} fps {r.clip.frame_count} frames, made in {took:.2f} s"
    )
    return len(frames) == r.clip.frame_count
