"""Clip artefacts on real shopper photos: every person of the devset x every applicable
built-in motion, plus motions extracted from the devset's videos, on the ``skeletal``
backend.

Per clip (frames rendered straight from the renderer, before H.264, so the codec neither
hides nor adds anything):

* **limb stretch**: the pose is re-detected (MediaPipe Pose, one image at a time) on every
  frame and on the first frame (the still); per limb bone (upper arm, forearm, thigh,
  shin) seen in both, ``|length / still length - expected|`` where the expected ratio is
  the target's (1: retargeting keeps image-space lengths), less the detector's own noise
  on that bone: the largest length change it reports on rigidly moved copies of the first
  frame (4 px shifts, 2 degree turns), which keep every length. A bone whose noise alone
  reaches the goal is not measured, and is counted (``bones_unmeasurable``). 95th
  percentile over frames and bones; ``stretch_raw_p95`` keeps the figure without the
  noise floor. Goal <= 0.12.
* **holes**: pixels of the body's core (the shoulder-hip quadrilateral and a thin core
  along every limb bone the photo shows, each where the still shows person at least 4 % of
  a shoulder width inside its outline, carried into the frame by its bone's motion) where the background plate shows through (composite
  person alpha < 0.5). Any frame. Goal 0 (a clip fails above 25 px).
* **seams**: thin dips of the composite alpha inside the person (grey closing 5 x 5 minus
  the alpha > 0.3 where the closing is > 0.9): lines or speckles of background between
  parts. Counted above the still's own (concave corners of the silhouette); a gap within
  3 px of both legs is the legs parting (separate limbs), not a seam. Goal 0 (a clip
  fails above 30 px in a frame).
* **ghosting**: (a) mean change against the still far from the person (more than 12 px
  beyond the person, its frame's coverage and the plate's repainted area) in every frame
  (goal 0); (b) halo: pixels of the background plate next to the repainted hole that
  look like the person's edge rather than the background around them, and that a frame
  leaves: the person more than 3 px further from them than in the first frame (goal 0; a
  clip fails above 40 px).

Contact sheets (8 frames per clip, one PNG per person, a row per clip) go to
``OUT/animate_real/``; look at them. A summary table and ``OUT/quality_animate_real.json``.

Usage::

    python benchmarks/quality_animate_real.py --data ../shared/devset [--persons p05,p12]
        [--limit N] [--motions arms-open,...] [--fps 12] [--seconds 4] [--no-videos]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality_animate import detect  # noqa: E402

from services.animate.debug import sheet  # noqa: E402
from services.animate.extract import MotionExtractor  # noqa: E402
from services.animate.motions import Motion, MotionLibrary  # noqa: E402
from services.animate.pipeline import AnimatePipeline, ClipOptions  # noqa: E402
from services.animate.render import SkeletalRenderer, person_halo  # noqa: E402
from services.common.analysis.person import PersonAnalyzer  # noqa: E402
from services.common.errors import InvalidInputError  # noqa: E402
from services.common.video import decode_video  # noqa: E402

LIMB_BONES = ((11, 13), (13, 15), (12, 14), (14, 16), (23, 25), (25, 27), (24, 26), (26, 28))
GOALS = {"stretch_p95": 0.12, "hole_px": 25, "seam_px": 30, "ghost_px": 40}
# Rigid moves of the first frame that measure the detector's own noise (dx, dy px, degrees):
# they keep every bone's length, so whatever length change the detector reports on them is
# noise, not stretch.
NOISE_MOVES = ((4, 0, 0), (-4, 0, 0), (0, 4, 0), (0, -4, 0), (0, 0, 2), (0, 0, -2))


def detector_noise(pose, frame: np.ndarray, ref: np.ndarray | None) -> dict:
    """Per limb bone, the largest relative length change the detector reports between the
    first frame and rigidly moved copies of it (:data:`NOISE_MOVES`, edges replicated).
    A bone the detector loses on any copy, or whose noise alone reaches the goal, gets an
    infinite floor: its length cannot be measured on this photo (counted, not hidden)."""
    floor = {bone: 0.0 for bone in LIMB_BONES}
    if ref is None:
        return {bone: np.inf for bone in LIMB_BONES}
    h, w = frame.shape[:2]
    for dx, dy, deg in NOISE_MOVES:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
        m[:, 2] += (dx, dy)
        moved = cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        det = detect(pose, moved)
        for a, b in LIMB_BONES:
            l0 = np.linalg.norm(ref[a, :2] - ref[b, :2])
            if det is None or min(det[a, 2], det[b, 2]) < 0.5 or l0 < 1:
                floor[(a, b)] = np.inf
                continue
            change = abs(np.linalg.norm(det[a, :2] - det[b, :2]) / l0 - 1)
            floor[(a, b)] = max(floor[(a, b)], change)
    return {k: (v if v < GOALS["stretch_p95"] else np.inf) for k, v in floor.items()}


SHEET_FRAMES = 8


def extracted_motions(data: Path, cache: Path, log) -> tuple[list[Motion], list[dict]]:
    """Motions from the devset's videos (cached as JSON under ``cache``), and refusals."""
    cache.mkdir(parents=True, exist_ok=True)
    out, rows = [], []
    extractor = MotionExtractor()
    for video in sorted((data / "motions").glob("*.mp4")):
        name = video.stem.lower().replace("_", "-")[:64]
        path = cache / f"{name}.json"
        t0 = time.perf_counter()
        try:
            if path.exists():
                motion = Motion.from_json(path.read_text(), "extracted")
                lost = -1
            else:
                v = decode_video(video.read_bytes())
                motion, lost = extractor.extract(v, name=name, fps=24)
                path.write_text(motion.to_json())
            out.append(motion)
            rows.append({"video": video.name, "motion": name, "framing": motion.framing,
                         "frames": motion.frame_count, "interpolated": lost,
                         "seconds": round(time.perf_counter() - t0, 2)})  # fmt: skip
            log(f"motion {video.name}: {motion.framing}, {motion.frame_count} frames")
        except InvalidInputError as exc:
            rows.append({"video": video.name, "refused": exc.reason, "message": str(exc)})
            log(f"motion {video.name}: refused {exc.reason}: {exc}")
    return out, rows


def _capsule(mask, a, b, r):
    r = max(1, int(round(r)))
    a, b = tuple(int(v) for v in np.round(a)), tuple(int(v) for v in np.round(b))
    cv2.line(mask, a, b, 1, 2 * r)


def body_core(
    rest: np.ndarray,
    target: np.ndarray,
    person: np.ndarray,
    shown: np.ndarray,
    sw: float,
    merged: frozenset = frozenset(),
) -> np.ndarray:
    """Pixels that are body in this frame: the shoulder-hip quadrilateral shrunk a little
    and a thin core along each limb bone the still shows, each taken where the still shows
    person and carried into the frame by its bone's motion (the chest's affine, each limb
    bone's rotation). Cut by the still's own mask, the core never counts background of the
    photo itself: the gap between a hand on the hip and a narrow waist, or the side of an
    arm whose landmarks sit on its edge. Bones in ``merged`` (limbs kept still, drawn as one
    piece with the torso and moved by its skinning, not by their bone) have no core of
    their own: they cannot come apart from the torso, and the seam measure watches them."""
    from services.animate.render import LIMBS, bone_transforms

    h, w = person.shape
    tf = bone_transforms(rest, target, 0.0)
    m = np.zeros((h, w), np.uint8)
    quad = rest[[12, 11, 23, 24]]
    c = quad.mean(0)
    cv2.fillPoly(m, [np.round(c + (quad - c) * 0.85).astype(np.int32)], 1)
    out = cv2.warpAffine(m & person, tf["chest"], (w, h), flags=cv2.INTER_NEAREST)
    for name, (a, b) in LIMBS.items():
        if shown[a] and shown[b] and name not in merged:
            # Leave the joints out: the core of a bone between its ends.
            pa, pb = rest[a] + 0.15 * (rest[b] - rest[a]), rest[b] - 0.15 * (rest[b] - rest[a])
            m = np.zeros((h, w), np.uint8)
            _capsule(m, pa, pb, 0.025 * sw)
            out |= cv2.warpAffine(m & person, tf[name], (w, h), flags=cv2.INTER_NEAREST)
    return out > 0


def seam_pixels(cov: np.ndarray) -> np.ndarray:
    closed = cv2.morphologyEx(cov, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return (closed - cov > 0.3) & (closed > 0.9)


def between_legs(renderer, positions: list[np.ndarray]) -> np.ndarray | None:
    """Pixels within 3 px of both leg layers in this frame: a thin gap there is the two
    legs parting (they are separate limbs, joined only at the pelvis, which covers the
    seat), not a seam between parts. None when the legs are no layers of their own."""
    legs = [i for i, layer in enumerate(renderer.layers) if layer.name.startswith("leg_")]
    if len(legs) != 2:
        return None
    h, w = renderer.size
    near = []
    for i in legs:
        cov = np.zeros((h, w), np.float32)
        renderer._draw(np.zeros((h, w, 3), np.uint8), renderer.layers[i], positions[i], cov)
        near.append(cv2.dilate((cov > 0.3).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0)
    return near[0] & near[1]


def halo_map(still: np.ndarray, hole: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Plate pixels just outside the repainted hole that look like the person's edge (a
    ghost outline left behind), judged against the local background and person colours:
    the renderer's own test (:func:`person_halo`), here around the hole it finally
    repainted, after growing it by that test twice."""
    return person_halo(still, hole, alpha)


def run_clip(renderer, targets, still_rgb, pa, pose, halo, plate) -> tuple[dict, list[np.ndarray]]:
    h, w = still_rgb.shape[:2]
    sw = renderer.sw
    n = len(targets.points)
    cov = np.zeros((h, w), np.float32)
    ref = None
    ratios, raw, hole_max, seam_max, ghost_max, far_change = [], [], 0, 0, 0, 0.0
    seam0 = None
    dist0 = None
    inframe = (pa.landmarks[:, 0] >= 0) & (pa.landmarks[:, 0] < w)
    inframe &= (pa.landmarks[:, 1] >= 0) & (pa.landmarks[:, 1] < h)
    shown = inframe & (pa.landmarks[:, 3] >= 0.5)
    person0 = pa.mask > 0.02
    # The core keeps 4 % of a shoulder width inside the silhouette: where skinning blends
    # two bones across a joint the outline moves a few pixels off either bone's rigid
    # motion, which is not background showing through the body.
    k = 2 * max(2, int(round(0.04 * sw))) + 1
    merged = frozenset(
        [f"{b}_{s}" for s in renderer.still_arms for b in ("upper", "fore")]
        + ([f"{b}_{s}" for s in ("left", "right") for b in ("thigh", "shin")]
           if renderer.still_legs else [])
    )  # fmt: skip
    person_core = cv2.erode(
        (pa.mask > 0.5).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    picks = set(np.linspace(0, n - 1, SHEET_FRAMES).round().astype(int).tolist())
    tiles = []
    worst = {"hole": -1, "seam": -1}
    for f in range(n):
        pos = renderer.deform(targets.points[f], float(targets.params.head[f]))
        frame = renderer.render(pos, tuple(targets.behind[f]), targets.points[f], coverage=cov)
        tgt = targets.points[f]
        det = detect(pose, frame)
        if f == 0:
            ref = det
            floor = detector_noise(pose, frame, ref)
        if det is not None and ref is not None:
            for a, b in LIMB_BONES:
                ok = (
                    shown[a] and shown[b] and min(det[a, 2], det[b, 2], ref[a, 2], ref[b, 2]) >= 0.5
                )
                inside = all(0 <= tgt[j, 0] < w and 0 <= tgt[j, 1] < h for j in (a, b))
                if not (ok and inside):
                    continue
                l0 = np.linalg.norm(ref[a, :2] - ref[b, :2])
                expected = np.linalg.norm(tgt[a] - tgt[b]) / max(
                    np.linalg.norm(renderer.rest[a] - renderer.rest[b]), 1e-6
                )
                if l0 > 0.1 * sw and np.isfinite(floor[(a, b)]):
                    change = abs(np.linalg.norm(det[a, :2] - det[b, :2]) / l0 - expected)
                    raw.append(change)
                    ratios.append(max(0.0, change - floor[(a, b)]))
        core = body_core(renderer.rest, tgt, person_core, shown, sw, merged)
        holes = int((core & (cov < 0.5)).sum())
        seams = seam_pixels(cov)
        legs_apart = between_legs(renderer, pos)
        if legs_apart is not None:
            seams &= ~legs_apart
        if seam0 is None:
            seam0 = cv2.dilate(seams.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        seam_n = int((seams & ~seam0).sum()) if f else 0
        # An outline in the plate is a ghost once the person has left it: at rest it lies
        # beside the person (it is what the photo shows there), so a halo pixel counts
        # when the person is more than 3 px further from it than in the first frame.
        dist = cv2.distanceTransform((cov <= 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        if dist0 is None:
            dist0 = dist
        ghost = int((halo & (cov < 0.5) & (dist > dist0 + 3)).sum())
        near = cv2.dilate(
            ((cov > 0.02) | person0 | plate).astype(np.uint8), np.ones((25, 25), np.uint8)
        )
        far = near == 0
        if far.any():
            far_change = max(
                far_change, float(np.abs(frame[far].astype(int) - still_rgb[far]).mean())
            )
        if holes > hole_max:
            hole_max, worst["hole"] = holes, f
        if seam_n > seam_max:
            seam_max, worst["seam"] = seam_n, f
        ghost_max = max(ghost_max, ghost)
        if f in picks:
            tiles.append(frame)
    stretch = float(np.percentile(ratios, 95)) if ratios else float("nan")
    return {
        "frames": n, "stretch_p95": stretch, "stretch_max": float(max(ratios, default=np.nan)),
        "stretch_raw_p95": float(np.percentile(raw, 95)) if raw else float("nan"),
        "noise_floor_max": float(max((v for v in floor.values() if np.isfinite(v)), default=0)),
        "bones_unmeasurable": int(sum(not np.isfinite(v) for v in floor.values())),
        "bone_samples": len(ratios), "hole_px": hole_max, "hole_frame": worst["hole"],
        "seam_px": seam_max, "seam_frame": worst["seam"], "ghost_px": ghost_max,
        "far_change": far_change,
    }, tiles  # fmt: skip


def failures(row: dict) -> list[str]:
    out = []
    if not (row["stretch_p95"] <= GOALS["stretch_p95"]) and row["bone_samples"]:
        out.append("stretch")
    for k in ("hole_px", "seam_px", "ghost_px"):
        if row[k] > GOALS[k]:
            out.append(k[:-3])
    if row["far_change"] > 0:
        out.append("far_change")
    return out


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def main(argv=None) -> int:
    import mediapipe as mp

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the devset folder")
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    ap.add_argument("--persons", default="", help="comma-separated file-name prefixes")
    ap.add_argument("--limit", type=int, default=0, help="at most this many persons")
    ap.add_argument("--motions", default="", help="comma-separated motion names (default all)")
    ap.add_argument("--fps", type=float, default=12.0)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--height", type=int, default=768)
    ap.add_argument("--no-videos", action="store_true", help="skip the extracted motions")
    args = ap.parse_args(argv)
    log = print
    lib = MotionLibrary()
    motions = lib.list()
    video_rows: list[dict] = []
    if not args.no_videos:
        extracted, video_rows = extracted_motions(args.data, args.out / "motions_extracted", log)
        motions = motions + extracted
    if args.motions:
        keep = set(args.motions.split(","))
        motions = [m for m in motions if m.name in keep]
    persons = sorted((args.data / "persons").glob("*.jpg"))
    if args.persons:
        pre = tuple(args.persons.split(","))
        persons = [p for p in persons if p.name.startswith(pre)]
    if args.limit:
        persons = persons[: args.limit]
    sheets = args.out / "animate_real"
    sheets.mkdir(parents=True, exist_ok=True)
    analyzer = PersonAnalyzer()
    pipe = AnimatePipeline(analyzer)
    pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)
    rows = []
    for path in persons:
        still = np.asarray(Image.open(path).convert("RGB"))
        try:
            analysis = analyzer.analyze(still)
        except InvalidInputError as exc:
            rows.append({"person": path.stem, "refused": exc.reason, "message": str(exc)})
            log(f"{path.stem:36} refused {exc.reason}")
            continue
        tiles = []
        renderers: dict = {}
        for motion in motions:
            opts = ClipOptions(fps=args.fps, height=args.height, preview=None)
            frames = int(round(min(args.seconds, motion.duration) * args.fps))
            try:
                rgb, pa, targets, warns = pipe.prepare(
                    still, analysis, motion, opts, args.fps, frames
                )
            except InvalidInputError as exc:
                rows.append({"person": path.stem, "motion": motion.name, "refused": exc.reason,
                             "message": str(exc)})  # fmt: skip
                continue
            t0 = time.perf_counter()
            key = (targets.still_arms, targets.still_legs)
            if key not in renderers:
                r = SkeletalRenderer(
                    rgb, pa, still_arms=targets.still_arms, still_legs=targets.still_legs,
                    arm_cut=targets.arm_cut,
                )  # fmt: skip
                # The plate this renderer repainted: ghosting is judged beyond it.
                plate = r.plate
                renderers[key] = (r, halo_map(rgb, plate, pa.mask), plate)
            renderer, halo, plate = renderers[key]
            row, frames_shown = run_clip(renderer, targets, rgb, pa, pose, halo, plate)
            row.update(person=path.stem, motion=motion.name, framing=pa.framing,
                       warnings=[w[0] for w in warns], seconds=round(time.perf_counter() - t0, 2))  # fmt: skip
            row["failures"] = failures(row)
            rows.append(row)
            log(
                f"{path.stem:36} {motion.name:34} stretch p95 {row['stretch_p95']:.3f} "
                f"holes {row['hole_px']:4d} seams {row['seam_px']:4d} ghost {row['ghost_px']:4d} "
                f"far {row['far_change']:.3g} {' '.join(row['failures']) or 'ok'}"
                + (f" [{','.join(row['warnings'])}]" if warns else "")
            )
            tag = f"{motion.name} {'FAIL ' + ','.join(row['failures']) if row['failures'] else ''}"
            tiles += [label(frames_shown[0], tag)] + frames_shown[1:]
        if tiles:
            Image.fromarray(sheet(tiles, SHEET_FRAMES, 300)).save(sheets / f"{path.stem}.png")
    pose.close()
    clips = [r for r in rows if "stretch_p95" in r]
    summary = {
        "clips": len(clips),
        "clips_failing": sum(bool(r["failures"]) for r in clips),
        "stretch_p95_max": float(np.nanmax([r["stretch_p95"] for r in clips])) if clips else None,
        "holes_failing": sum("hole" in r["failures"] for r in clips),
        "seams_failing": sum("seam" in r["failures"] for r in clips),
        "ghost_failing": sum("ghost" in r["failures"] for r in clips),
        "stretch_failing": sum("stretch" in r["failures"] for r in clips),
        "refused": [f"{r['person']} {r.get('motion', '')} {r['refused']}" for r in rows if "refused" in r],
    }  # fmt: skip
    print(json.dumps({k: v for k, v in summary.items() if k != "refused"}))
    (args.out / "quality_animate_real.json").write_text(
        json.dumps(
            {
                "benchmark": "quality_animate_real",
                "goals": GOALS,
                "summary": summary,
                "videos": video_rows,
                "clips": rows,
            },
            indent=2,
            default=float,
        )
        + "\n"  # fmt: skip
    )
    print(f"wrote {args.out / 'quality_animate_real.json'} and sheets in {sheets}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
