"""Quality proxies of clips on the embedded ``skeletal`` backend, on real photos and on the
synthetic full-body figure (no full-body photo ships with the installed packages).

Per clip (4 s, 24 fps):

* **pose following**: PCK@0.1, the share of keypoints whose pose re-detected on the decoded
  frame (MediaPipe Pose, the model in the wheel, one image at a time) lies within 0.1 x the
  longer side of the person's box in the still of the retargeted target. Keypoints counted:
  those the still shows (visibility >= 0.5, inside the frame) and the motion drives, and
  whose target is inside the frame. Goal >= 0.9.
* **background stability**: mean absolute frame-to-frame change (0-255, all channels) of
  the decoded MP4 outside the person: outside the still's person mask and every frame's
  deformed meshes, each grown by 8 px. Goal <= 1.0.
* **mesh health**: inverted (folded) triangles over the clip. Goal 0.

Writes ``DIR/quality_animate.json`` and a contact sheet ``DIR/quality_animate.png`` (per
clip, frames with the target pose in red/cyan and the re-detected one in green).

Usage::

    python benchmarks/quality_animate.py [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.animate.debug import draw_pose, sheet  # noqa: E402
from services.animate.motions import MotionLibrary  # noqa: E402
from services.animate.pipeline import AnimatePipeline, ClipOptions  # noqa: E402
from services.animate.render import SkeletalRenderer  # noqa: E402
from services.animate.synthetic import figure  # noqa: E402
from services.common.analysis.person import VISIBLE, PersonAnalyzer  # noqa: E402
from services.common.errors import InvalidInputError  # noqa: E402
from services.common.video import decode_video  # noqa: E402

GOALS = {"pck": 0.9, "background_change": 1.0, "inverted_triangles": 0}


def cases(quick: bool):
    astro = data.astronaut()
    hopper = np.asarray(
        Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    )
    fig, fig_an = figure(384, 576)
    out = [
        ("astronaut", astro, None, "upper-gestures", (512, 768)),
        ("astronaut", astro, None, "arms-open", (512, 768)),
        ("astronaut", astro, None, "quarter-turn", (512, 768)),
        ("astronaut", astro, None, "idle-sway-upper", (512, 768)),
        ("grace_hopper", hopper, None, "upper-gestures", (512, 600)),
        ("synthetic_full_body", fig, fig_an, "step-and-pose", (384, 576)),
        ("synthetic_full_body", fig, fig_an, "arm-swing-dance", (384, 576)),
        ("synthetic_full_body", fig, fig_an, "idle-sway", (384, 576)),
    ]
    return out[::2] if quick else out


def detect(pose, frame: np.ndarray) -> np.ndarray | None:
    r = pose.process(np.ascontiguousarray(frame))
    if r.pose_landmarks is None:
        return None
    h, w = frame.shape[:2]
    return np.array([(p.x * w, p.y * h, p.visibility) for p in r.pose_landmarks.landmark])


def support(renderer: SkeletalRenderer, targets, shape) -> np.ndarray:
    """Pixels the person covers in any frame: the still's mask and every deformed mesh."""
    h, w = shape
    cover = (renderer_alpha := np.zeros((h, w), np.uint8))
    for layer in renderer.layers:
        cover |= (layer.alpha > 0).astype(np.uint8)
    for f in range(len(targets.points)):
        for layer, p in zip(
            renderer.layers, renderer.deform(targets.points[f], targets.params.head[f]), strict=True
        ):
            cv2.fillPoly(cover, list(np.round(p[layer.mesh.tri]).astype(np.int32)), 1)
    del renderer_alpha
    return cv2.dilate(cover, np.ones((17, 17), np.uint8)) > 0


def main(argv=None) -> int:
    import mediapipe as mp

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    args = ap.parse_args(argv)
    lib = MotionLibrary()
    pipe = AnimatePipeline(PersonAnalyzer())
    pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)
    rows, tiles = [], []
    refused = []
    for name, still, analysis, motion, size in cases(args.quick):
        try:
            clip = pipe.run(
                still, lib.get(motion), ClipOptions(fps=24, width=size[0], height=size[1],
                                                    duration=4.0, preview=None), analysis=analysis,
            )  # fmt: skip
        except InvalidInputError as exc:
            # Motion fitting refuses what the photo cannot play cleanly (the astronaut's
            # arms leave the frame: an arms-only motion has nothing to move). A refusal
            # is an answer, not a clip to score.
            refused.append({"still": name, "motion": motion, "reason": exc.reason})
            print(f"{name:20} {motion:16} refused {exc.reason}")
            continue
        frames = decode_video(clip.mp4).frames
        pa, t = clip.analysis, clip.targets
        h, w = frames.shape[1:3]
        shown = (pa.landmarks[:, 3] >= VISIBLE) & t.moved
        shown &= (pa.landmarks[:, 0] >= 0) & (pa.landmarks[:, 0] < w)
        shown &= (pa.landmarks[:, 1] >= 0) & (pa.landmarks[:, 1] < h)
        box = pa.box
        thr = 0.1 * max(box[2] - box[0], box[3] - box[1])
        hits = total = missed = 0
        for f in range(len(frames)):
            tgt = t.points[f]
            inside = shown & (tgt[:, 0] >= 0) & (tgt[:, 0] < w) & (tgt[:, 1] >= 0) & (tgt[:, 1] < h)
            det = detect(pose, frames[f])
            total += int(inside.sum())
            if det is None:
                missed += 1
                continue
            d = np.linalg.norm(det[:, :2] - tgt, axis=1)
            hits += int((d[inside] <= thr).sum())
            if f % 24 == 12:
                img = draw_pose(frames[f], tgt, shown.astype(float), thickness=2)
                tiles.append(draw_pose(img, det[:, :2], shown.astype(float), (40, 220, 40), 1))
        renderer = SkeletalRenderer(*_fitted(still, analysis, pipe, size))
        outside = ~support(renderer, t, (h, w))
        diffs = np.abs(np.diff(frames.astype(np.int16), axis=0))
        bg_change = float(diffs[:, outside].mean()) if outside.any() else float("nan")
        row = {
            "still": name, "motion": motion, "size": f"{w}x{h}", "frames": len(frames),
            "framing": pa.framing, "pck_0_1": hits / max(total, 1), "keypoints_scored": total,
            "frames_without_detection": missed, "background_change": bg_change,
            "background_pixels": int(outside.sum()),
            "inverted_triangles": clip.stats.inverted_triangles, "triangles": clip.stats.triangles,
        }  # fmt: skip
        rows.append(row)
        print(
            f"{name:20} {motion:16} {pa.framing:4} PCK@0.1 {row['pck_0_1']:.3f} "
            f"({total} kp, {missed} frames undetected)  bg change {bg_change:.3f}  "
            f"inverted {row['inverted_triangles']}"
        )
    pose.close()
    summary = {
        "pck_0_1_mean": float(np.mean([r["pck_0_1"] for r in rows])),
        "pck_0_1_min": float(np.min([r["pck_0_1"] for r in rows])),
        "background_change_max": float(np.max([r["background_change"] for r in rows])),
        "inverted_triangles_total": int(sum(r["inverted_triangles"] for r in rows)),
        "refused": refused,
    }
    print(json.dumps(summary))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality_animate.json").write_text(
        json.dumps(
            {"benchmark": "quality_animate", "goals": GOALS, "summary": summary, "clips": rows},
            indent=2,
        )
        + "\n"  # fmt: skip
    )
    Image.fromarray(sheet(tiles, 8, 240)).save(args.out / "quality_animate.png")
    print(f"wrote {args.out / 'quality_animate.json'} and {args.out / 'quality_animate.png'}")
    return 0


def _fitted(still, analysis, pipe, size):
    from services.animate.pipeline import fit_still

    an = analysis if analysis is not None else pipe.analyzer.analyze(still)
    return fit_still(still, an, size)


if __name__ == "__main__":
    sys.exit(main())
