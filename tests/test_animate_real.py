"""Animate on real photos: layers that overlap (no seams, no holes), arms cut out from
the torso they touch, a plate without the person's outline, motions fitted to what the
photo shows (arms kept still, legs cut by the frame edge), and rendered pose-skeleton
videos as a motion source."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from skimage import data

from services.animate.extract import OPENPOSE_COLOURS, OPENPOSE_LIMBS, MotionExtractor
from services.animate.layers import segment_arms
from services.animate.motions import MotionLibrary
from services.animate.pipeline import AnimatePipeline, ClipOptions, fit_still
from services.animate.render import SkeletalRenderer
from services.animate.retarget import ARM_JOINTS, arms_to_keep_still
from services.animate.synthetic import figure
from services.common.errors import InvalidInputError
from services.common.video import decode_video, encode_mp4

LIB = MotionLibrary()


@pytest.fixture(scope="module")
def astronaut():
    from services.common.analysis.person import PersonAnalyzer

    analyzer = PersonAnalyzer()
    rgb = data.astronaut()
    yield rgb, analyzer.analyze(rgb)
    analyzer.close()


def _seams(cov: np.ndarray) -> np.ndarray:
    closed = cv2.morphologyEx(cov, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    return (closed - cov > 0.3) & (closed > 0.9)


def test_layers_cover_the_person_at_rest_and_leave_no_seam_or_hole_in_motion(astronaut):
    rgb, an = astronaut
    still, pa = fit_still(rgb, an, (256, 384))
    r = SkeletalRenderer(still, pa)
    cov = np.zeros(still.shape[:2], np.float32)
    r.render(r.deform(r.rest, 0.0), coverage=cov)
    # At rest the layers together are the person: nothing of the plate shows through.
    person = pa.mask > 0.5
    assert (cov[person] < pa.mask[person] - 0.05).mean() < 1e-3
    pipe = AnimatePipeline(None)
    opts = ClipOptions(fps=12, preview=None, width=256, height=384)
    played = 0
    for name in ("arms-open", "upper-gestures", "quarter-turn", "idle-sway-upper"):
        # The product's path: the motion fitted to what the photo shows. The astronaut's
        # arms leave the frame, so a motion of the arms alone is refused with its reason.
        try:
            _s, _p, t, _w = pipe.prepare(rgb, an, LIB.get(name), opts, 12, 24)
        except InvalidInputError as exc:
            assert exc.reason == "MOTION_NOT_SUPPORTED_BY_PHOTO" and name == "arms-open"
            continue
        played += 1
        rr = SkeletalRenderer(still, pa, still_arms=t.still_arms, still_legs=t.still_legs)
        rr.render(rr.deform(rr.rest, 0.0), coverage=cov)
        seams0 = cv2.dilate(_seams(cov).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        for f in range(0, 24, 3):
            rr.render(rr.deform(t.points[f], t.params.head[f]), tuple(t.behind[f]), coverage=cov)
            assert (_seams(cov) & ~seams0).sum() <= 3, (name, f)
            quad = t.points[f][[12, 11, 23, 24]]
            c = quad.mean(0)
            trunk = np.zeros(cov.shape, np.uint8)
            cv2.fillPoly(trunk, [np.round(c + (quad - c) * 0.85).astype(np.int32)], 1)
            inside = (trunk > 0) & (np.arange(cov.shape[0])[:, None] < cov.shape[0] - 1)
            assert (cov[inside] >= 0.5).all(), (name, f)  # no hole in the body
    assert played == 3


def test_arms_are_cut_from_the_torso_they_touch():
    img, an = figure(256, 384)
    person = an.mask > 0.5
    arms = segment_arms(img, an, person)
    for side in ("left", "right"):
        truth = an.arms[side] | an.hands[side]
        inter = (arms[side] & truth).sum()
        # Most of the drawn arm, and little of the shirt beside it.
        assert inter > 0.8 * truth.sum(), side
        assert (arms[side] & ~truth).sum() < 0.15 * truth.sum(), side
    assert not (arms["left"] & arms["right"]).any()


def test_background_plate_repaints_past_the_soft_edge(astronaut):
    rgb, an = astronaut
    still, pa = fit_still(rgb, an, (256, 384))
    r = SkeletalRenderer(still, pa)
    hole = SkeletalRenderer.plate_hole(np.clip(pa.mask, 0, 1), pa, r.sw)
    grown = cv2.dilate((pa.mask > 0.02).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert hole[grown].all()
    # Inside the hole the plate is a fill, not the person: it differs from the still there.
    core = pa.mask > 0.99
    assert np.abs(r.background[core].astype(int) - still[core]).mean() > 20


def _hand_on_hip(an):
    """The figure's analysis with its left hand moved onto the hip, elbow out."""
    lm = an.landmarks.copy()
    sw = float(np.linalg.norm(lm[11, :2] - lm[12, :2]))
    lm[13, :2] = lm[11, :2] + [0.45 * sw, 0.55 * sw]
    lm[15, :2] = lm[23, :2] + [0.1 * sw, -0.1 * sw]
    for f in (17, 19, 21):
        lm[f, :2] = lm[15, :2] + [-0.05 * sw, 0.02 * sw]
    return dataclasses.replace(an, landmarks=lm)


def test_motion_is_fitted_to_the_photo_arm_on_hip_kept_still_or_refused():
    img, an = figure(256, 384)
    assert arms_to_keep_still(an.landmarks, an.size) == {}
    akimbo = _hand_on_hip(an)
    keep = arms_to_keep_still(akimbo.landmarks, akimbo.size)
    assert set(keep) == {"left"} and "hip" in keep["left"]
    pipe = AnimatePipeline(None)
    opts = ClipOptions(fps=12, preview=None, width=256, height=384)
    _rgb, _pa, t, warns = pipe.prepare(img, akimbo, LIB.get("upper-gestures"), opts, 12, 48)
    assert [w[0] for w in warns] == ["MOTION_ARM_KEPT_STILL"]
    s, e, wr = ARM_JOINTS["left"]
    rel = t.points[:, [e, wr]] - t.points[:, [s]]
    spine = (t.points[:, 11] + t.points[:, 12]) / 2 - (t.points[:, 23] + t.points[:, 24]) / 2
    # The kept arm turns with the chest only: its angle to the spine never changes.
    ang = np.arctan2(rel[..., 1], rel[..., 0]) - np.arctan2(spine[:, 1], spine[:, 0])[:, None]
    assert np.abs(np.unwrap(ang, axis=0) - ang[0]).max() < 1e-6
    rs, re_, rwr = ARM_JOINTS["right"]
    assert np.abs(t.points[:, rwr] - t.points[0, rwr]).max() > 10  # the other arm moves
    # Without fitting, the same motion lifts the hand off the hip.
    free = dataclasses.replace(opts, fit_motion=False)
    _r, _p, t2, w2 = pipe.prepare(img, akimbo, LIB.get("upper-gestures"), free, 12, 48)
    assert w2 == [] and np.abs(t2.points[:, wr] - t2.points[0, wr]).max() > 10
    # A motion of the arms alone with neither arm movable is refused, with the reason.
    both = dataclasses.replace(akimbo, landmarks=akimbo.landmarks.copy() * [1, 1, 1, 1] + 0)
    both.landmarks[16, :2] = [-50, both.landmarks[16, 1]]  # right wrist out of the frame
    with pytest.raises(InvalidInputError) as ei:
        pipe.prepare(img, both, LIB.get("arms-open"), opts, 12, 24)
    assert ei.value.reason == "MOTION_NOT_SUPPORTED_BY_PHOTO" and "hip" in str(ei.value)


def test_legs_cut_by_the_frame_edge_stay_pinned_and_full_body_motions_are_refused():
    img, an = figure(256, 384)
    # Crop just above the ankles: knees seen, feet cut off by the bottom edge.
    cut = int(an.landmarks[[25, 26], 1].max() + 0.6 * (an.landmarks[27, 1] - an.landmarks[25, 1]))
    cut -= cut % 2
    crop = img[:cut]
    lm = an.landmarks.copy()
    lm[27:, 3] = 0.0  # the ankles and feet are outside the photo now
    ca = dataclasses.replace(
        an, size=(cut, 256), landmarks=lm, mask=an.mask[:cut], face=an.face[:cut],
        hair=an.hair[:cut], skin=an.skin[:cut], arms={k: v[:cut] for k, v in an.arms.items()},
        hands={k: v[:cut] for k, v in an.hands.items()}, upper_clothes=an.upper_clothes[:cut],
        lower_clothes=an.lower_clothes[:cut], torso=an.torso[:cut], framing="half",
    )  # fmt: skip
    pipe = AnimatePipeline(None)
    opts = ClipOptions(fps=12, preview=None, width=256, height=cut, duration=2.0)
    with pytest.raises(InvalidInputError) as ei:
        pipe.run(crop, LIB.get("idle-sway"), opts, analysis=ca)
    assert ei.value.reason == "MOTION_FRAMING_MISMATCH"
    rgb, pa, t, _w = pipe.prepare(crop, ca, LIB.get("upper-gestures"), opts, 12, 24)
    assert t.still_legs  # an upper-body motion: the legs are one piece with the torso
    r = SkeletalRenderer(rgb, pa, still_arms=t.still_arms, still_legs=t.still_legs)
    band = slice(cut - 12, cut)  # the legs where the frame edge cuts them
    first = r.render(r.deform(t.points[0], t.params.head[0]), tuple(t.behind[0]))
    # The first frame is the still where the person is (around the outline the plate is
    # repainted a few pixels out, against ghost outlines), to the rounding of two soft
    # edges composited in premultiplied 8-bit colour (a few levels where layers overlap).
    person = cv2.erode((pa.mask > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert np.abs(first[person].astype(int) - rgb[person]).max() <= 6
    moved = False
    for f in range(4, 24, 4):
        frame = r.render(r.deform(t.points[f], t.params.head[f]), tuple(t.behind[f]))
        # Pinned: where the frame edge cuts the legs nothing moves, frame after frame.
        assert np.abs(frame[band].astype(int) - first[band]).max() <= 2, f
        moved |= bool(np.abs(frame.astype(int) - rgb).max() > 40)
    assert moved


def _draw_skeleton(kp18: np.ndarray, size=(480, 720)) -> np.ndarray:
    """An OpenPose/DWPose-style drawing: limbs as ellipses at 60 %, joints as dots."""
    w, h = size
    canvas = np.zeros((h, w, 3), np.uint8)
    for i, (a, b) in OPENPOSE_LIMBS.items():
        pa, pb = kp18[a], kp18[b]
        c = (pa + pb) / 2
        length = float(np.hypot(*(pa - pb)))
        ang = float(np.degrees(np.arctan2(pb[1] - pa[1], pb[0] - pa[0])))
        poly = cv2.ellipse2Poly((int(c[0]), int(c[1])), (int(length / 2), 4), int(ang), 0, 360, 1)
        cv2.fillConvexPoly(canvas, poly, [int(v) for v in OPENPOSE_COLOURS[i]])
    canvas = (canvas * 0.6).astype(np.uint8)
    for k in range(18):
        cv2.circle(
            canvas, tuple(int(v) for v in kp18[k]), 4, [int(v) for v in OPENPOSE_COLOURS[k]], -1
        )
    return canvas


def test_rendered_pose_skeleton_video_is_a_motion_source():
    from services.animate.extract import OPENPOSE_TO_MP

    m = LIB.get("arm-swing-dance")
    px = m.frames[..., :2] * [480, 720]
    frames, truth = [], []
    for f in range(0, min(m.frame_count, 48), 2):
        kp18 = np.zeros((18, 2))
        for mp_i, op_i in OPENPOSE_TO_MP.items():
            kp18[op_i] = px[f, mp_i]
        kp18[1] = (px[f, 11] + px[f, 12]) / 2  # the neck
        frames.append(_draw_skeleton(kp18))
        truth.append(px[f])
    video = decode_video(encode_mp4(frames, 12.0))
    motion, lost = MotionExtractor().extract(video, name="skeleton", fps=12)
    assert lost == 0 and motion.framing == "full" and motion.frame_count == len(frames)
    got = motion.frames[..., :2] * [video.width, video.height]
    joints = [11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
    err = np.linalg.norm(got[:, joints] - np.array(truth)[:, joints], axis=-1)
    # pixels, 720 px high; a crossing of two limbs can mislead a frame or two
    assert np.median(err) < 5 and np.percentile(err, 90) < 20


def _arms_to_sides_touching(an):
    """The figure with both forearms laid against the body (hands on the thighs): its
    mask filled between each arm and the torso, as an arm held against the side is."""
    mask = an.mask.copy()
    lm = an.landmarks
    for e, wr in ((13, 15), (14, 16)):
        pts = np.array([lm[e, :2], lm[wr, :2], [lm[23, 0] * 0.5 + lm[24, 0] * 0.5, lm[wr, 1]],
                        [lm[23, 0] * 0.5 + lm[24, 0] * 0.5, lm[e, 1]]])  # fmt: skip
        cv2.fillConvexPoly(mask, np.round(pts).astype(np.int32), 1.0)
    return dataclasses.replace(an, mask=mask)


def test_limbs_resting_on_the_body_stay_one_piece_with_the_torso():
    from services.animate.layers import limb_contact

    img, an = figure(256, 384)
    free = limb_contact(an.mask > 0.5, an.landmarks, an.framing)
    # The drawn figure's forearms hang clear of the body and its legs stand apart.
    assert free["left"] < 0.15 and free["right"] < 0.15 and free["legs"] < 0.15
    resting = _arms_to_sides_touching(an)
    touch = limb_contact(resting.mask > 0.5, resting.landmarks, resting.framing)
    assert touch["left"] > 0.8 and touch["right"] > 0.8
    pipe = AnimatePipeline(None)
    opts = ClipOptions(fps=12, preview=None, width=256, height=384)
    # An arms-only motion cannot move either arm: refused, with the reason.
    with pytest.raises(InvalidInputError) as ei:
        pipe.prepare(img, resting, LIB.get("arms-open"), opts, 12, 24)
    assert ei.value.reason == "MOTION_NOT_SUPPORTED_BY_PHOTO" and "rests on the body" in str(
        ei.value
    )
    # A motion of the whole upper body plays, the arms kept in the still's pose and drawn
    # as one piece with the torso (no arm layers: no seam can open between them).
    _rgb, pa, t, warns = pipe.prepare(img, resting, LIB.get("upper-gestures"), opts, 12, 24)
    assert {w[0] for w in warns} == {"MOTION_ARM_KEPT_STILL"}
    assert set(t.still_arms) == {"left", "right"}
    r = SkeletalRenderer(_rgb, pa, still_arms=t.still_arms, still_legs=t.still_legs)
    assert [layer.name for layer in r.layers] == ["torso"]
    # Legs together: a full-body motion keeps the feet planted and says so.
    legs = an.mask.copy()
    lm = an.landmarks
    x0, x1 = sorted((lm[25, 0], lm[26, 0]))
    legs[int(lm[23, 1]) : int(lm[27, 1]), int(x0) : int(x1) + 1] = 1.0
    together = dataclasses.replace(an, mask=legs)
    _rgb, _pa, t2, warns2 = pipe.prepare(img, together, LIB.get("step-and-pose"), opts, 12, 24)
    assert "MOTION_LEGS_KEPT_STILL" in {w[0] for w in warns2} and t2.still_legs
    assert np.abs(t2.points[:, 25:] - t2.points[:1, 25:]).max() < 1e-6
    # Free legs stay planted too, for their own reason: turned apart, legs cut out of a
    # photo tear at the crotch. Unfitted (fit_motion off), the feet step.
    _rgb, _pa, t3, warns3 = pipe.prepare(img, an, LIB.get("step-and-pose"), opts, 12, 24)
    why = [m for r, m in warns3 if r == "MOTION_LEGS_KEPT_STILL"]
    assert t3.still_legs and why and "cannot step cleanly" in why[0]
    assert np.abs(t3.points[:, 27:] - t3.points[:1, 27:]).max() < 1e-6
    raw = dataclasses.replace(opts, fit_motion=False)
    _rgb, _pa, t4, warns4 = pipe.prepare(img, an, LIB.get("step-and-pose"), raw, 12, 24)
    assert not t4.still_legs and not warns4
    assert np.abs(t4.points[:, 27:] - t4.points[:1, 27:]).max() > 5  # the feet step


def test_an_arm_far_from_the_motions_start_pose_is_kept_still():
    from services.animate.retarget import arms_off_the_motion

    img, an = figure(256, 384)
    m = LIB.get("arms-open")
    assert arms_off_the_motion(an.landmarks, m) == {}
    raised = an.landmarks.copy()
    for s, e, wr in ((11, 13, 15),):
        up = np.array([0.0, -1.0])
        raised[e, :2] = raised[s, :2] + up * np.linalg.norm(raised[e, :2] - raised[s, :2])
        raised[wr, :2] = raised[e, :2] + up * np.linalg.norm(
            an.landmarks[wr, :2] - an.landmarks[e, :2]
        )
    off = arms_off_the_motion(raised, m)
    assert set(off) == {"left"} and "degrees" in off["left"]


def test_a_misread_frame_of_a_motion_video_is_bridged_not_followed():
    from services.animate.extract import pose_outliers

    m = LIB.get("arm-swing-dance")
    kp = np.concatenate([m.frames[:40, :, :2], np.ones((40, 33, 1), np.float32)], -1).copy()
    found = np.ones(40, bool)
    # A smooth performance has no outliers.
    assert not pose_outliers(kp, found).any()
    # One frame whose body jumps by a torso's length (a limb of the drawing taken for
    # another, a passer-by) is an outlier; so is one whose torso shrinks to half.
    kp[17, :, 1] -= 0.3
    kp[25, [23, 24], 1] = (kp[25, 11, 1] + kp[25, 23, 1]) / 2
    assert np.nonzero(pose_outliers(kp, found))[0].tolist() == [17, 25]
    # Frames already missing are neither judged nor counted.
    found[17] = False
    assert np.nonzero(pose_outliers(kp, found))[0].tolist() == [25]


def test_plate_fill_carries_the_backgrounds_grain_but_not_its_edges():
    from services.animate.render import fill_background

    rng = np.random.default_rng(3)
    h, w = 200, 240
    # Gravel on the left two thirds, a smooth wall on the right; the hole (where the
    # person stood) touches both and the edge between them.
    rgb = np.full((h, w, 3), 200, np.uint8)
    rgb[:, :160] = np.clip(110 + rng.normal(0, 18, (h, 160, 1)), 0, 255).astype(np.uint8)
    hole = np.zeros((h, w), bool)
    cv2.ellipse(hole.view(np.uint8), (150, 100), (40, 70), 0, 0, 360, 1, -1)
    out = fill_background(rgb, hole).astype(np.float32)
    grain = out - cv2.GaussianBlur(out, (0, 0), 2.0)
    inside_gravel = hole.copy()
    inside_gravel[:, 140:] = False
    inside_gravel = cv2.erode(inside_gravel.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    outside_gravel = ~cv2.dilate(hole.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    outside_gravel[:, 150:] = False
    # The fill has the gravel's grain (a plain smooth fill has next to none) ...
    assert grain[inside_gravel].std() > 0.4 * grain[outside_gravel].std()
    # ... and the wall stays a wall: no jagged copy of the gravel's edge inside it.
    inside_wall = hole.copy()
    inside_wall[:, :172] = False
    assert np.abs(out[inside_wall] - 200).max() < 25
    far = ~cv2.dilate(hole.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert (out[far] == rgb[far]).all()  # beyond the hole's soft edge nothing changes


def test_plate_hole_grows_over_the_persons_soft_outline():
    from services.animate.render import person_halo

    h, w = 160, 160
    rgb = np.full((h, w, 3), (90, 140, 90), np.uint8)  # a green backdrop
    cv2.circle(rgb, (80, 80), 44, (200, 60, 60), -1)  # a red sleeve, soft at its edge
    rgb = cv2.GaussianBlur(rgb, (0, 0), 1.5)
    alpha = np.zeros((h, w), np.float32)
    cv2.circle(alpha, (80, 80), 40, 1.0, -1)  # the mask misses the outer 4 px
    hole = alpha > 0.5
    halo = person_halo(rgb, hole, alpha)
    ring = np.zeros((h, w), np.uint8)
    cv2.circle(ring, (80, 80), 43, 1, -1)
    ring = (ring > 0) & ~hole
    assert halo[ring].mean() > 0.5  # the red left outside the mask is found
    plain = np.full((h, w, 3), (90, 140, 90), np.uint8)
    assert not person_halo(plain, hole, alpha).any()  # a clean backdrop has no halo


@pytest.mark.parametrize("gap_top", [None, 265])
def test_seat_reaches_down_to_where_the_legs_part(gap_top):
    from services.animate.render import _crotch

    lm = np.zeros((33, 4), np.float32)
    lm[:, 3] = 1
    lm[23, :2], lm[24, :2] = (220, 220), (180, 220)  # hips 40 px apart
    lm[25, :2], lm[26, :2] = (225, 360), (175, 360)  # knees
    person = np.zeros((480, 400), bool)
    person[100:470, 150:250] = True
    if gap_top is not None:
        person[gap_top:, 197:203] = False  # the legs part 45 px below the hips
    c = _crotch(lm, person)
    want = 220 + (0.7 * 40 if gap_top is None else gap_top - 220)
    assert abs(c[1] - want) <= 2 and abs(c[0] - 200) <= 2


def _head_rolled(motion, degrees: np.ndarray):
    """``motion`` with its face (nose, eyes, ears, mouth) rolled about the nose by
    ``degrees`` per frame."""
    f = motion.frames.copy()
    px = f[..., :2] * [motion.width, motion.height]
    for i, deg in enumerate(degrees):
        a = np.radians(deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        px[i, 1:11] = (px[i, 1:11] - px[i, 0]) @ rot.T + px[i, 0]
    f[..., :2] = px / [motion.width, motion.height]
    return dataclasses.replace(motion, frames=f.astype(np.float32), name="rolled")


def test_head_tilt_is_limited_and_swapped_ears_are_no_roll():
    from services.animate.pipeline import HEAD_TILT_LIMIT
    from services.animate.retarget import retarget

    base = LIB.get("idle-sway-upper")
    n = len(base.frames)
    rest = base.pixels()[0].astype(np.float64)
    # A 40 degree tilt is played at the limit, and the motion says how far it wanted to go.
    tilt = _head_rolled(base, np.linspace(0, 40, n))
    t = retarget(tilt, rest, "half", base.fps, n, head_tilt_limit=HEAD_TILT_LIMIT)
    assert t.head_tilt_wanted > 35
    assert np.degrees(np.abs(t.params.head).max()) <= HEAD_TILT_LIMIT + 3
    # Ears that swap sides (a performer turning round) are no 180 degree roll.
    flip = _head_rolled(base, np.where(np.arange(n) < n // 2, 0.0, 180.0))
    t = retarget(flip, rest, "half", base.fps, n)
    assert np.degrees(np.abs(t.params.head).max()) < 10


def test_a_motion_tilting_the_head_too_far_is_played_smaller_with_a_warning(astronaut):
    rgb, analysis = astronaut
    pipe = AnimatePipeline(None)
    base = LIB.get("idle-sway-upper")
    tilt = _head_rolled(base, np.where(np.arange(len(base.frames)) > 0, 40.0, 0.0))
    *_, warnings = pipe.prepare(rgb, analysis, tilt, ClipOptions(fps=8, height=256), 8, 8)
    assert any(r == "MOTION_AMPLITUDE_LIMITED" and "head" in m for r, m in warnings)
    *_, warnings = pipe.prepare(rgb, analysis, base, ClipOptions(fps=8, height=256), 8, 8)
    assert not any(r == "MOTION_AMPLITUDE_LIMITED" for r, _m in warnings)


def test_fingers_past_the_knuckles_go_with_the_arm():
    img, an = figure(256, 384)
    lm = an.landmarks
    sw = float(np.linalg.norm(lm[11, :2] - lm[12, :2]))
    # Fingers a palm's length past the knuckles the pose marks, which the analysis' hand
    # mask does not hold (thin, spread fingers escape it on real photos).
    knuckles = (lm[19, :2] + lm[17, :2]) / 2
    tips = knuckles + 0.9 * (knuckles - lm[15, :2])
    fingers = np.zeros(an.mask.shape, np.uint8)
    cv2.line(fingers, tuple(np.round(knuckles).astype(int)), tuple(np.round(tips).astype(int)),
             1, max(3, int(0.1 * sw)))  # fmt: skip
    fingers = (fingers > 0) & (an.mask < 0.5) & ~an.hands["left"]
    assert fingers.sum() > 20
    img = img.copy()
    wx, wy = np.round(lm[15, :2]).astype(int)
    img[fingers] = img[wy, wx]  # the hand's own colour
    an = dataclasses.replace(an, mask=np.maximum(an.mask, fingers.astype(np.float32)))
    arms = segment_arms(img, an, an.mask > 0.5)
    assert (arms["left"] & fingers).sum() > 0.8 * fingers.sum()


def test_travel_turn_and_hip_line_of_a_wild_motion_are_limited():
    from services.animate.pipeline import TRAVEL_LIMIT, WIDTH_RANGE
    from services.animate.retarget import _joint, retarget

    base = LIB.get("idle-sway")
    n = len(base.frames)
    px = base.pixels().astype(np.float64)
    torso = np.linalg.norm(_joint(px[0], -2) - _joint(px[0], -1))
    wild = px.copy()
    ramp = np.linspace(0, 1, n)[:, None]
    wild[..., 0] += ramp * 0.6 * torso  # walks 0.6 torso lengths sideways
    # ... while the hip line swings 60 degrees about the mid-hip and the shoulders narrow
    # to a fifth (a model turning round).
    mid = (wild[:, 23] + wild[:, 24]) / 2
    for f in range(n):
        a = np.radians(60) * ramp[f, 0]
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        for j in (23, 24):
            wild[f, j] = mid[f] + rot @ (wild[f, j] - mid[f])
        ms = (wild[f, 11] + wild[f, 12]) / 2
        for j in (11, 12):
            wild[f, j] = ms + (wild[f, j] - ms) * (1 - 0.8 * ramp[f, 0])
    frames = base.frames.copy()
    frames[..., :2] = (wild / [base.width, base.height]).astype(np.float32)
    motion = dataclasses.replace(base, frames=frames, name="wild")
    rest = px[0]
    t = retarget(motion, rest, "full", base.fps, n, travel_limit=TRAVEL_LIMIT,
                 width_range=WIDTH_RANGE, head_tilt_limit=15.0)  # fmt: skip
    assert t.travel_wanted > 0.5 and t.width_wanted[0] < 0.3
    hips = (t.points[:, 23] + t.points[:, 24]) / 2 - (rest[23] + rest[24]) / 2
    assert np.linalg.norm(hips, axis=1).max() <= (TRAVEL_LIMIT + 0.02) * torso
    hip_line = t.points[:, 23] - t.points[:, 24]
    tilt = np.degrees(
        np.arctan2(hip_line[:, 1], hip_line[:, 0]) - np.arctan2(*(rest[23] - rest[24])[::-1])
    )
    assert np.abs((tilt + 180) % 360 - 180).max() <= 15.0 + 4.0  # 15 against the spine
    shoulders = np.linalg.norm(t.points[:, 11] - t.points[:, 12], axis=1)
    assert shoulders.min() >= (WIDTH_RANGE[0] - 0.02) * np.linalg.norm(rest[11] - rest[12])


def test_a_cut_that_lost_the_sleeve_is_not_trusted_however_whole_the_forearm():
    from services.animate.layers import CUT_TRUSTED, arm_cut_share

    img, an = figure(256, 384)
    person = an.mask > 0.5
    arms = {s: (an.arms[s] | an.hands[s]) & person for s in ("left", "right")}
    assert min(arm_cut_share(arms, an.landmarks, person).values()) >= CUT_TRUSTED
    # The left sleeve (the upper arm's top two thirds) went to the torso.
    lm = an.landmarks
    lost = arms["left"].copy()
    lost[: int(lm[11, 1] + 0.66 * (lm[13, 1] - lm[11, 1]))] = False
    share = arm_cut_share({"left": lost, "right": arms["right"]}, lm, person)
    assert share["left"] < CUT_TRUSTED <= share["right"]


def test_plate_repaints_past_every_hands_knuckles():
    # A V sign's fingertips reach past the knuckles thinner than any mask: the plate is
    # repainted there for every hand, kept-still ones too (they ride on the swaying chest).
    _img, an = figure(256, 384)
    sw = float(np.linalg.norm(an.landmarks[11, :2] - an.landmarks[12, :2]))
    hole = SkeletalRenderer.plate_hole(np.clip(an.mask, 0, 1), an, sw)
    lm = an.landmarks
    for wr, idx, pky in ((15, 19, 17), (16, 20, 18)):
        knuckles = (lm[idx, :2] + lm[pky, :2]) / 2
        tip = np.round(knuckles + 1.3 * (knuckles - lm[wr, :2])).astype(int)
        assert hole[tip[1], tip[0]]


def test_a_fragment_cut_off_the_torso_moves_with_the_limb_it_touches():
    from services.animate.render import _adopt_fragments

    torso = np.zeros((100, 100), bool)
    torso[40:90, 30:70] = True  # the body
    arm = np.zeros_like(torso)
    arm[10:40, 70:76] = True  # a raised forearm and hand
    tip = np.zeros_like(torso)
    tip[2:10, 77:80] = True  # a fingertip beyond the arm's cut, left to the torso
    parts = _adopt_fragments({"torso": torso | tip, "arm_right": arm.copy()})
    assert parts["arm_right"][tip].all() and not parts["torso"][tip].any()
    assert (parts["torso"] == torso).all()
