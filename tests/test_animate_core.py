"""Animate, transport-free: the motion library, retargeting (bone lengths kept, first frame
= the still, loops, chaining, framing refusal), the deformation's exact rest pose, mesh
health, a static background, and motion extraction with its refusals."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from services.animate.deform import ArapMesh, Bone, build_mesh, skin_weights
from services.animate.extract import MotionExtractor, fill_gaps, one_euro
from services.animate.motions import Motion, MotionLibrary
from services.animate.pipeline import AnimatePipeline, ClipOptions, fit_still
from services.animate.render import SkeletalRenderer
from services.animate.retarget import bone_lengths, retarget, rigid_bone_mask
from services.animate.synthetic import figure
from services.common.errors import InvalidInputError
from services.common.video import decode_video, encode_mp4

LIB = MotionLibrary()


@pytest.fixture(scope="module")
def astronaut():
    from services.common.analysis.person import PersonAnalyzer

    analyzer = PersonAnalyzer()
    rgb = data.astronaut()
    yield rgb, analyzer.analyze(rgb), analyzer
    analyzer.close()


def test_library_has_the_built_in_motions_as_valid_data():
    names = LIB.names()
    for want in ("idle-sway", "step-and-pose", "arms-open", "quarter-turn", "arm-swing-dance",
                 "upper-gestures"):  # fmt: skip
        assert want in names
    for m in LIB.list():
        assert m.frames.shape[1:] == (33, 3) and np.isfinite(m.frames).all() and m.fps > 0
        if m.loops:  # the last frame flows into the first: a step like any other
            steps = np.abs(np.diff(m.frames[..., :2], axis=0)).max()
            assert np.abs(m.frames[-1, :, :2] - m.frames[0, :, :2]).max() <= 2 * steps + 1e-4
        if m.framing == "upper":
            assert (m.frames[:, 25:, 2] == 0).all()
    assert {m.name for m in LIB.list("upper")} >= {"arms-open", "quarter-turn", "upper-gestures"}
    with pytest.raises(InvalidInputError) as ei:
        LIB.get("moonwalk")
    assert ei.value.reason == "MOTION_NOT_FOUND"
    bad = Motion("x", "", 24, False, "upper", np.full((3, 33, 3), np.nan, np.float32), 10, 10)
    with pytest.raises(InvalidInputError) as ei:
        Motion.from_json(bad.to_json().replace("NaN", "1e999"))
    assert ei.value.reason == "MOTION_INVALID"


@pytest.mark.parametrize("name", sorted(LIB.names()))
def test_retargeting_keeps_bone_lengths_and_starts_at_the_still(name):
    img, an = figure()
    rest = an.landmarks[:, :2].astype(np.float64)
    t = retarget(LIB.get(name), rest, "full", 24, 100)
    rigid = rigid_bone_mask()
    moved = bone_lengths(t.points)[:, rigid]
    assert np.abs(moved - bone_lengths(rest)[rigid]).max() < 1e-6
    assert np.abs(t.points[0] - rest).max() < 1e-9  # no jump at the start
    assert np.abs(t.points - rest).max() > 5  # and it does move
    if LIB.get(name).framing == "full":  # feet back on the still's ground line
        ground = rest[27:33, 1].max()
        assert np.abs(t.points[:, 27:33, 1].max(axis=1) - ground).min() < 1e-6
        assert (t.points[:, 27:33, 1].max(axis=1) <= ground + 1e-6).all()


def test_half_body_still_refuses_full_body_motion_and_loops_and_chains(astronaut):
    _rgb, an, _ = astronaut
    rest = an.landmarks[:, :2].astype(np.float64)
    with pytest.raises(InvalidInputError) as ei:
        retarget(LIB.get("step-and-pose"), rest, an.framing, 24, 48)
    assert ei.value.reason == "MOTION_FRAMING_MISMATCH" and an.framing == "half"
    # 3 s of a 4 s motion, looped: the end is blended back to the start.
    t = retarget(LIB.get("arms-open"), rest, "half", 24, 72, loop=True)
    step = np.abs(np.diff(t.points, axis=0)).max()
    assert np.abs(t.points[-1] - t.points[0]).max() <= step + 1e-6
    unlooped = retarget(LIB.get("arms-open"), rest, "half", 24, 72)
    assert np.abs(unlooped.points[-1] - unlooped.points[0]).max() > 5 * step
    # Chaining: a clip that starts from another's last pose starts exactly there.
    last = unlooped.points[-1]
    nxt = retarget(LIB.get("upper-gestures"), rest, "half", 24, 48, start=last)
    assert np.abs(nxt.points[0] - last).max() < 1e-6
    to_go = np.abs(last - rest).max()
    assert np.abs(np.diff(nxt.points[:12], axis=0)).max() < 0.2 * to_go  # eases in, no jump


def test_deformation_reproduces_the_rest_pose_exactly():
    yy, xx = np.mgrid[0:120, 0:80]
    mask = ((xx - 40) ** 2 / 30**2 + (yy - 60) ** 2 / 55**2) < 1
    v, tri = build_mesh(mask, 10.0)
    bones = [Bone("a", np.array([40.0, 10]), np.array([40.0, 60])),
             Bone("b", np.array([40.0, 60]), np.array([40.0, 110]))]  # fmt: skip
    mesh = ArapMesh(v, tri, skin_weights(v, bones, 8.0))
    ident = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (2, 1, 1))
    assert np.abs(mesh.deform(ident) - v).max() < 1e-9
    assert mesh.inverted(v) == 0 and len(tri) > 40
    # Bend the lower bone 60 degrees about the joint: nothing folds.
    c, s = np.cos(np.radians(60)), np.sin(np.radians(60))
    r = np.array([[c, -s], [s, c]])
    bent = np.stack(
        [ident[0], np.concatenate([r, (np.array([40, 60]) - r @ [40, 60])[:, None]], 1)]
    )
    p = mesh.deform(bent)
    assert mesh.inverted(p) == 0 and np.abs(p - v).max() > 10


def test_rest_frame_is_the_still_and_background_stays_put(astronaut):
    rgb, an, analyzer = astronaut
    still, pa = fit_still(rgb, an, (256, 256))
    r = SkeletalRenderer(still, pa)
    rest = r.rest
    frame = r.render(r.deform(rest, 0.0))
    inside = pa.mask > 0.98
    diff = np.abs(frame.astype(int) - still)[inside].max(axis=1)
    # Identical but for the seams where an arm's feathered edge meets the torso filled
    # behind it (exactness itself is the mesh's, tested above).
    assert (diff <= 2).mean() > 0.9 and np.median(diff) == 0
    t = retarget(LIB.get("upper-gestures"), rest, "half", 24, 48)
    frames = [
        r.render(r.deform(t.points[f], t.params.head[f]), tuple(t.behind[f])) for f in (0, 20, 30)
    ]
    # Away from the person every frame is the same background, pixel for pixel.
    ys, xs = np.nonzero(pa.mask > 0.01)
    box = np.zeros(pa.mask.shape, bool)
    box[max(ys.min() - 20, 0) :, max(xs.min() - 20, 0) : xs.max() + 20] = True
    assert (frames[1][~box] == frames[2][~box]).all() and (~box).sum() > 1000
    assert not (frames[1] == frames[0]).all()


def test_full_body_clip_has_no_inverted_triangles():
    img, an = figure(256, 384)
    clip = AnimatePipeline(None).run(
        img, LIB.get("step-and-pose"), ClipOptions(fps=12, preview=None, contact_shadow=True),
        analysis=an,
    )  # fmt: skip
    assert clip.stats.inverted_triangles == 0 and clip.stats.triangles > 100
    v = decode_video(clip.mp4)
    assert (v.frame_count, v.width, v.height) == (48, 256, 384)


# --------------------------------------------------------------------------- extraction


def _astronaut_video(frames: int = 24, fps: float = 12.0) -> bytes:
    """A real photo moved by a small rotation and shift per frame, as a video."""
    import cv2

    rgb = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(frames):
        a = 6 * np.sin(2 * np.pi * i / frames)
        m = cv2.getRotationMatrix2D((128, 200), a, 1.0)
        m[0, 2] += 8 * np.sin(2 * np.pi * i / frames)
        out.append(cv2.warpAffine(rgb, m, (256, 256), borderMode=cv2.BORDER_REFLECT))
    return encode_mp4(out, fps)


def test_extraction_from_a_video_and_its_refusals():
    ex = MotionExtractor(max_seconds=10.0)
    video = decode_video(_astronaut_video())
    motion, gaps = ex.extract(video, name="sway", fps=12, loop=True)
    assert motion.frame_count == 24 and motion.framing == "upper" and motion.loops
    assert gaps <= 2 and motion.source == "extracted"
    nose_x = motion.frames[:, 0, 0]
    assert nose_x.max() - nose_x.min() > 0.02  # it follows the sway
    blank = decode_video(encode_mp4([np.full((64, 64, 3), 90, np.uint8)] * 6, 12))
    cases = [
        (lambda: ex.extract(blank), "VIDEO_HAS_NO_PERSON"),
        (lambda: MotionExtractor(max_seconds=1.0).extract(video), "VIDEO_TOO_LONG"),
        (lambda: ex.extract(video, start=1.5, end=1.0), "TRIM_OUT_OF_RANGE"),
        (lambda: ex.extract(video, end=99.0), "TRIM_OUT_OF_RANGE"),
        (lambda: ex.extract(video, name="Bad Name"), "NAME_INVALID"),
        (lambda: ex.extract(video, fps=500), "FPS_OUT_OF_RANGE"),
    ]
    for fn, reason in cases:
        with pytest.raises(InvalidInputError) as ei:
            fn()
        assert ei.value.reason == reason


def test_person_lost_and_smoothing_and_gap_filling():
    x = np.zeros((10, 2))
    x[:, 0] = np.arange(10)
    found = np.ones(10, bool)
    found[3:6] = False
    broken = x.copy()
    broken[3:6] = 99
    assert np.allclose(fill_gaps(broken, found), x)
    rng = np.random.default_rng(0)
    noisy = 0.5 + rng.normal(0, 0.01, (200, 1))
    assert one_euro(noisy, 30).std() < 0.5 * noisy.std()
    ramp = np.linspace(0, 1, 60)[:, None]
    assert np.abs(one_euro(ramp, 30)[-1] - 1) < 0.05  # fast movement gets through
    # A video with a person in only a third of the frames cannot be bridged.
    person = decode_video(_astronaut_video(6, 12)).frames
    empty = np.full_like(person[0], 90)
    mixed = decode_video(encode_mp4([*person[:2], *([empty] * 6)], 12))
    with pytest.raises(InvalidInputError) as ei:
        MotionExtractor().extract(mixed)
    assert ei.value.reason == "VIDEO_PERSON_LOST"
