"""Person analysis shared by try-on and animate: pose, masks, regions, measurements.

Everything comes from the pretrained models inside the ``mediapipe`` 0.10.21 wheel (pose with
33 landmarks and a person mask, face detection, face mesh) plus geometry and colour
statistics; no parsing model is needed. Coordinates are image pixels, x right, y down.
MediaPipe names sides from the *person's* point of view: for a person facing the camera,
their left shoulder (landmark 11) is on the image's right.

Refusals (``InvalidInputError`` reasons): NO_PERSON_DETECTED, PERSON_TOO_SMALL,
MULTIPLE_PERSONS (only with ``PersonSelection.REFUSE``; by default the most prominent person
is chosen and a MOST_PROMINENT_PERSON_CHOSEN warning is reported), POSE_UNSUPPORTED (seen
from the back, from the side, or not upright).
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from typing import Literal

import cv2
import numpy as np

from services.common.errors import InvalidInputError

# MediaPipe pose landmark indices (BlazePose topology, Bazarevsky et al. 2020).
NOSE = 0
L_EYE, R_EYE = 2, 5
L_EAR, R_EAR = 7, 8
MOUTH_L, MOUTH_R = 9, 10
L_SHOULDER, R_SHOULDER = 11, 12
L_ELBOW, R_ELBOW = 13, 14
L_WRIST, R_WRIST = 15, 16
L_PINKY, R_PINKY = 17, 18
L_INDEX, R_INDEX = 19, 20
L_THUMB, R_THUMB = 21, 22
L_HIP, R_HIP = 23, 24
L_KNEE, R_KNEE = 25, 26
L_ANKLE, R_ANKLE = 27, 28
L_HEEL, R_HEEL = 29, 30
L_FOOT, R_FOOT = 31, 32

# Face-mesh indices of the face oval (the silhouette ring of the 468-point canonical mesh).
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
# Cheek and forehead points: skin, away from eyes, brows, lips and hair.
SKIN_SAMPLE_POINTS = (50, 280, 101, 330, 36, 266, 205, 425, 151, 9, 108, 337)

VISIBLE = 0.5  # landmark visibility above which a joint is taken as seen
MIN_SHOULDER_FRACTION = 0.08  # shoulder width / image width below which a person is too small
MIN_SHOULDER_PX = 40
SECOND_FACE_RATIO = 0.25  # a face this large relative to the largest counts as a person


class PersonSelection(enum.Enum):
    """What to do when a photo shows more than one person."""

    MOST_PROMINENT = "most_prominent"
    REFUSE = "refuse"


Framing = Literal["half", "full"]
Facing = Literal["front", "three_quarter_left", "three_quarter_right"]


@dataclasses.dataclass(frozen=True)
class BodyMeasurements:
    """Widths across the torso (arms excluded) and lengths, in pixels.

    ``hip_width`` and ``leg_length`` are 0 when the hips or ankles are out of frame.
    """

    shoulder_width: float
    chest_width: float
    waist_width: float
    hip_width: float
    torso_length: float
    leg_length: float


@dataclasses.dataclass
class PersonAnalysis:
    """What try-on and animate need to know about the person in a photo.

    Attributes:
        size: ``(height, width)`` of the photo.
        landmarks: ``33 x 4`` array of x, y (pixels), z (relative depth), visibility.
        mask: float32 person alpha in 0..1.
        face: bool mask of the face (face-mesh oval).
        hair: bool mask of the hair.
        skin: bool mask of visible skin (face excluded).
        arms: ``{"left": mask, "right": mask}``, the person's arms (shoulder to wrist).
        hands: ``{"left": mask, "right": mask}``.
        upper_clothes: bool mask of the clothes worn on the upper body now.
        lower_clothes: bool mask of the clothes worn on the lower body now.
        torso: bool mask of the person without the arms (widths across the body).
        framing: "half" (legs out of frame) or "full".
        facing: "front" or a three-quarter turn.
        measurements: body widths and lengths.
        box: person bounding box ``(x0, y0, x1, y1)``.
        persons: how many persons were found (faces of comparable size).
        warnings: ``(reason, message)`` notes for the response.
    """

    size: tuple[int, int]
    landmarks: np.ndarray
    mask: np.ndarray
    face: np.ndarray
    hair: np.ndarray
    skin: np.ndarray
    arms: dict[str, np.ndarray]
    hands: dict[str, np.ndarray]
    upper_clothes: np.ndarray
    lower_clothes: np.ndarray
    torso: np.ndarray
    framing: Framing
    facing: Facing
    measurements: BodyMeasurements
    box: tuple[int, int, int, int]
    persons: int
    warnings: list[tuple[str, str]]

    def point(self, index: int) -> np.ndarray:
        """``(x, y)`` of landmark ``index`` as float array."""
        return self.landmarks[index, :2].copy()

    def visible(self, index: int) -> bool:
        """Whether landmark ``index`` is seen and inside the photo."""
        h, w = self.size
        x, y, _z, v = self.landmarks[index]
        return bool(v >= VISIBLE and 0 <= x < w and 0 <= y < h)


class PersonAnalyzer:
    """Holds the MediaPipe graphs (load once; they are not thread-safe, so calls are
    serialised by a lock).

    Args:
        max_faces: faces the face detector may report (to notice several persons).
    """

    def __init__(self, max_faces: int = 4) -> None:
        import mediapipe as mp

        self._lock = threading.Lock()
        sol = mp.solutions
        # model_complexity=1: the only pose model whose weights ship in the wheel.
        self._pose = sol.pose.Pose(
            static_image_mode=True, model_complexity=1, enable_segmentation=True
        )
        # model_selection=1: the full-range detector, which also finds small, distant faces.
        self._faces = sol.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=0.5
        )
        self._mesh = sol.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=max_faces, refine_landmarks=False
        )

    def close(self) -> None:
        """Release the graphs."""
        for g in (self._pose, self._faces, self._mesh):
            g.close()

    def analyze(
        self,
        rgb: np.ndarray,
        selection: PersonSelection = PersonSelection.MOST_PROMINENT,
        field: str = "person",
    ) -> PersonAnalysis:
        """Analyse the person in an RGB photo.

        Args:
            rgb: ``H x W x 3`` uint8.
            selection: policy when several persons are in the photo.
            field: request field named in refusals.

        Raises:
            InvalidInputError: NO_PERSON_DETECTED, PERSON_TOO_SMALL, MULTIPLE_PERSONS,
                POSE_UNSUPPORTED.
        """
        h, w = rgb.shape[:2]
        rgb = np.ascontiguousarray(rgb[..., :3])
        with self._lock:
            pose = self._pose.process(rgb)
            faces = self._faces.process(rgb)
            mesh = self._mesh.process(rgb)
        if pose.pose_landmarks is None or pose.segmentation_mask is None:
            self._refuse_missing_person(rgb, _face_boxes(faces, w, h), field)
        lm = np.array(
            [(p.x * w, p.y * h, p.z * w, p.visibility) for p in pose.pose_landmarks.landmark],
            np.float32,
        )
        mask = np.clip(pose.segmentation_mask.astype(np.float32), 0, 1)
        if (mask > 0.5).mean() < 0.01:
            raise InvalidInputError(
                "NO_PERSON_DETECTED", "no person was found in the photo", field=field
            )

        warnings: list[tuple[str, str]] = []
        boxes = _face_boxes(faces, w, h)
        persons = _count_persons(boxes)
        if persons > 1:
            if selection is PersonSelection.REFUSE:
                raise InvalidInputError(
                    "MULTIPLE_PERSONS",
                    f"the photo shows {persons} persons; send a photo of one person",
                    field=field,
                    metadata={"persons": str(persons)},
                )
            warnings.append(
                (
                    "MOST_PROMINENT_PERSON_CHOSEN",
                    f"the photo shows {persons} persons; the most prominent one was used",
                )
            )

        check_pose(lm, (h, w), face_found=bool(boxes), field=field)
        face = _face_mask(mesh, boxes, lm, (h, w))
        person = mask > 0.5
        arms, hands = _limb_masks(lm, person, (h, w))
        lab = _lab(rgb)  # once: skin, hair and clothes models all work in Lab
        skin = _skin_mask(lab, face, person, _hand_seed(lab, lm, person, (h, w)))
        # A hand is its skin: the circle around the hand landmarks also takes in the clothes
        # beside it (a hand resting by the hip), which must not be protected as hand.
        near_skin = cv2.dilate(skin.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        for side in hands:
            if (hands[side] & near_skin).sum() > 0.2 * hands[side].sum():
                arms[side] |= hands[side] & ~near_skin
                hands[side] &= near_skin
        hair = _hair_mask(lab, face, person, skin, lm)
        upper, lower = _clothes_masks(lab, person, face, hair, skin, hands, lm, (h, w), arms)
        torso = person & ~arms["left"] & ~arms["right"]
        framing: Framing = (
            "full"
            if all(_visible(lm, i, (h, w)) for i in (L_KNEE, R_KNEE, L_ANKLE, R_ANKLE))
            else "half"
        )
        ys, xs = np.nonzero(person)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        return PersonAnalysis(
            size=(h, w),
            landmarks=lm,
            mask=mask,
            face=face,
            hair=hair,
            skin=skin,
            arms=arms,
            hands=hands,
            upper_clothes=upper,
            lower_clothes=lower,
            torso=torso,
            framing=framing,
            facing=facing_of(lm),
            measurements=measure(lm, torso, (h, w)),
            box=box,
            persons=max(persons, 1),
            warnings=warnings,
        )

    def _refuse_missing_person(self, rgb: np.ndarray, boxes, field: str) -> None:
        """No pose was found. If a face was, the person is probably too small for the pose
        model: look again in a crop around the largest face to tell "too small" (with the
        measured size) from "no person"."""
        h, w = rgb.shape[:2]
        if boxes:
            x, y, bw, bh = max(boxes, key=lambda b: b[2] * b[3])
            side = int(max(bw, bh) * 7)  # head and shoulders and more
            x0 = int(np.clip(x + bw / 2 - side / 2, 0, max(w - 1, 0)))
            y0 = int(np.clip(y - bh, 0, max(h - 1, 0)))
            crop = rgb[y0 : y0 + side, x0 : x0 + side]
            if min(crop.shape[:2]) >= 16:
                scale = 512 / max(crop.shape[:2])
                big = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
                with self._lock:
                    again = self._pose.process(np.ascontiguousarray(big))
                if again.pose_landmarks is not None:
                    lmk = again.pose_landmarks.landmark
                    bh_, bw_ = big.shape[:2]
                    shoulders = (
                        np.hypot(
                            (lmk[L_SHOULDER].x - lmk[R_SHOULDER].x) * bw_,
                            (lmk[L_SHOULDER].y - lmk[R_SHOULDER].y) * bh_,
                        )
                        / scale
                    )
                    raise InvalidInputError(
                        "PERSON_TOO_SMALL",
                        f"the person is too small in the photo (shoulders about {shoulders:.0f} px"
                        f" apart in a {w} x {h} photo); crop the photo to the person",
                        field=field,
                    )
            if bh < 0.1 * h:
                raise InvalidInputError(
                    "PERSON_TOO_SMALL",
                    f"a face {bh:.0f} px tall was found but the person is too small to analyse;"
                    " crop the photo to the person",
                    field=field,
                )
        raise InvalidInputError(
            "NO_PERSON_DETECTED", "no person was found in the photo", field=field
        )


# ---------------------------------------------------------------------------- decisions


def _visible(lm: np.ndarray, i: int, size: tuple[int, int]) -> bool:
    h, w = size
    x, y, _z, v = lm[i]
    return bool(v >= VISIBLE and 0 <= x < w and 0 <= y < h)


def check_pose(lm: np.ndarray, size: tuple[int, int], face_found: bool, field: str = "person"):
    """Refuse persons the geometric try-on cannot dress.

    Args:
        lm: ``33 x 4`` landmarks in pixels.
        size: ``(height, width)``.
        face_found: whether a face was detected (a back view shows none).

    Raises:
        InvalidInputError: PERSON_TOO_SMALL or POSE_UNSUPPORTED, with the reason spelled out.
    """
    h, w = size
    ls, rs = lm[L_SHOULDER, :2], lm[R_SHOULDER, :2]
    if not (_visible(lm, L_SHOULDER, size) and _visible(lm, R_SHOULDER, size)):
        raise InvalidInputError(
            "POSE_UNSUPPORTED", "both shoulders must be visible in the photo", field=field
        )
    shoulder = float(np.linalg.norm(ls - rs))
    if shoulder < max(MIN_SHOULDER_PX, MIN_SHOULDER_FRACTION * w):
        raise InvalidInputError(
            "PERSON_TOO_SMALL",
            f"the person is too small in the photo (shoulders {shoulder:.0f} px apart; at least "
            f"{max(MIN_SHOULDER_PX, MIN_SHOULDER_FRACTION * w):.0f} px needed)",
            field=field,
        )
    mid_s = (ls + rs) / 2
    mid_h = (lm[L_HIP, :2] + lm[R_HIP, :2]) / 2
    axis = mid_h - mid_s
    # Upright: the torso axis points down within 35 degrees of vertical.
    if axis[1] <= 0 or abs(np.degrees(np.arctan2(axis[0], axis[1]))) > 35:
        raise InvalidInputError(
            "POSE_UNSUPPORTED", "the person must stand or sit upright in the photo", field=field
        )
    # Facing away: the person's left shoulder is on the image's left, and no face is seen;
    # or the shoulders and the hips are both clearly mirrored (by over a fifth of the torso
    # length): the back is turned, even where the head looks back over a shoulder and
    # shows a face.
    torso_len = float(np.linalg.norm(axis))
    mirrored = rs[0] - ls[0] > 0.2 * torso_len and lm[R_HIP, 0] > lm[L_HIP, 0]
    if mirrored or (ls[0] < rs[0] and (not face_found or lm[NOSE, 3] < VISIBLE)):
        raise InvalidInputError(
            "POSE_UNSUPPORTED",
            "the person is seen from the back; a front view is needed",
            field=field,
        )
    # Side view: shoulders foreshortened to less than a third of the torso length.
    if shoulder < 0.33 * float(np.linalg.norm(axis)):
        raise InvalidInputError(
            "POSE_UNSUPPORTED",
            "the person is seen from the side; a front view is needed",
            field=field,
        )


def facing_of(lm: np.ndarray) -> Facing:
    """Front, or a three-quarter turn judged from where the nose sits between the shoulders.

    "three_quarter_left" means the person turned towards their own left (the image's right).
    """
    ls, rs, nose = lm[L_SHOULDER, 0], lm[R_SHOULDER, 0], lm[NOSE, 0]
    span = ls - rs
    if abs(span) < 1e-3:
        return "front"
    t = (nose - rs) / span  # 0 at the right shoulder, 1 at the left, 0.5 centred
    if t > 0.68:
        return "three_quarter_left"
    if t < 0.32:
        return "three_quarter_right"
    return "front"


# ---------------------------------------------------------------------------- regions


def _face_boxes(result, w: int, h: int) -> list[tuple[float, float, float, float]]:
    boxes = []
    for det in result.detections or ():
        bb = det.location_data.relative_bounding_box
        boxes.append((bb.xmin * w, bb.ymin * h, bb.width * w, bb.height * h))
    return boxes


def _count_persons(boxes: list[tuple[float, float, float, float]]) -> int:
    """Faces of comparable size to the largest count as persons (a face on a T-shirt print or
    a tiny passer-by far behind does not)."""
    if not boxes:
        return 0
    areas = sorted((b[2] * b[3] for b in boxes), reverse=True)
    return sum(1 for a in areas if a >= SECOND_FACE_RATIO * areas[0])


def _face_mask(mesh, boxes, lm: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The face oval from the mesh of the face nearest the pose's nose; an ellipse from the
    face box (or the ear/eye landmarks) when the mesh found nothing."""
    h, w = size
    out = np.zeros((h, w), np.uint8)
    nose = lm[NOSE, :2]
    if mesh.multi_face_landmarks:
        best, best_d = None, np.inf
        for face in mesh.multi_face_landmarks:
            pts = np.array([(p.x * w, p.y * h) for p in face.landmark], np.float32)
            d = float(np.linalg.norm(pts[1] - nose))  # mesh point 1 is the nose tip
            if d < best_d:
                best, best_d = pts, d
        cv2.fillPoly(out, [np.round(best[list(FACE_OVAL)]).astype(np.int32)], 1)
        return out.astype(bool)
    if boxes:
        x, y, bw, bh = min(
            boxes, key=lambda b: np.hypot(b[0] + b[2] / 2 - nose[0], b[1] + b[3] / 2 - nose[1])
        )
        cv2.ellipse(
            out, (int(x + bw / 2), int(y + bh / 2)), (int(bw / 2), int(bh * 0.6)), 0, 0, 360, 1, -1
        )
        return out.astype(bool)
    ear_span = float(np.linalg.norm(lm[L_EAR, :2] - lm[R_EAR, :2]))
    cx, cy = nose
    cv2.ellipse(
        out, (int(cx), int(cy)), (int(ear_span * 0.55), int(ear_span * 0.75)), 0, 0, 360, 1, -1
    )
    return out.astype(bool)


def _capsule(mask: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> None:
    """Draw a filled capsule (thick segment with round ends) into ``mask``."""
    r = max(1, int(round(radius)))
    cv2.line(
        mask, tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int)), 1, 2 * r, cv2.LINE_8
    )
    for p in (a, b):
        cv2.circle(mask, tuple(np.round(p).astype(int)), r, 1, -1)


def _limb_masks(lm: np.ndarray, person: np.ndarray, size: tuple[int, int]):
    """Arm and hand regions: capsules along the pose's bones, clipped to the person mask.

    Radii scale with the shoulder width (anthropometric ratios: upper-arm breadth about
    0.17, forearm 0.14 of biacromial breadth).
    """
    h, w = size
    sw = float(np.linalg.norm(lm[L_SHOULDER, :2] - lm[R_SHOULDER, :2]))
    arms, hands = {}, {}
    for side, (s, e, wr, idx, pky) in {
        "left": (L_SHOULDER, L_ELBOW, L_WRIST, L_INDEX, L_PINKY),
        "right": (R_SHOULDER, R_ELBOW, R_WRIST, R_INDEX, R_PINKY),
    }.items():
        arm = np.zeros((h, w), np.uint8)
        _capsule(arm, lm[s, :2], lm[e, :2], 0.17 * sw)
        _capsule(arm, lm[e, :2], lm[wr, :2], 0.14 * sw)
        hand = np.zeros((h, w), np.uint8)
        # Only a hand the pose model actually sees is a region (a hand hidden behind a held
        # object has a guessed position, and protecting a guess protects the wrong pixels).
        if lm[wr, 3] >= VISIBLE and min(lm[idx, 3], lm[pky, 3]) >= 0.3:
            centre = (lm[wr, :2] + lm[idx, :2] + lm[pky, :2]) / 3
            size_h = max(float(np.linalg.norm(lm[idx, :2] - lm[wr, :2])) * 1.5, 0.12 * sw)
            cv2.circle(hand, tuple(np.round(centre).astype(int)), int(size_h), 1, -1)
        hands[side] = (hand > 0) & person
        arms[side] = (arm > 0) & person & ~hands[side]
    return arms, hands


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _colour_model(lab: np.ndarray, sel: np.ndarray):
    """Mean and inverse covariance (regularised) of the Lab colours under ``sel``."""
    px = lab[sel].reshape(-1, 3).astype(np.float64)
    mean = px.mean(axis=0)
    cov = np.cov(px.T) + np.diag([4.0, 2.0, 2.0])  # floor: a few JND in L, a and b
    return mean, np.linalg.inv(cov)


def _mahalanobis(
    lab: np.ndarray, mean: np.ndarray, inv: np.ndarray, where: np.ndarray | None = None
) -> np.ndarray:
    """Mahalanobis distance of each pixel's Lab colour to a model, computed only ``where``
    (elsewhere +inf): whitening by the Cholesky factor of the inverse covariance turns it
    into a plain Euclidean norm, in float32."""
    out = np.full(lab.shape[:2], np.inf, np.float32)
    sel = np.ones(lab.shape[:2], bool) if where is None else where
    rows = np.flatnonzero(sel.any(axis=1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(sel[rows[0] : rows[-1] + 1].any(axis=0))
    box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    white = np.linalg.cholesky(inv)  # inv = L L^T, so d^T inv d = |L^T d|^2
    # Dense over the box of ``where`` with OpenCV's per-pixel affine transform: gathering
    # and scattering the selected pixels with NumPy cost more than the maths itself.
    # L^T (x - mean) = L^T x - L^T mean: one 3 x 4 matrix.
    affine = np.hstack([white.T, -(white.T @ mean)[:, None]]).astype(np.float32)
    sub = np.ascontiguousarray(lab[box], dtype=np.float32)
    z = cv2.transform(sub, affine)
    np.multiply(z, z, out=z)
    d2 = cv2.transform(z, np.ones((1, 3), np.float32))
    out[box] = np.where(sel[box], np.sqrt(d2.reshape(d2.shape[:2])), np.inf)
    return out


def _skin_mask(
    lab: np.ndarray, face: np.ndarray, person: np.ndarray, fallback: np.ndarray | None = None
) -> np.ndarray:
    """Skin outside the face, from a colour model of the face's inner skin.

    The face oval eroded by a third of its size is mostly cheeks, nose and forehead skin;
    its Lab distribution gives the person's own skin tone (no fixed skin-colour range that
    works for some complexions only). Where the face is out of frame (a photo cropped at
    the chin), ``fallback`` seeds the model instead: the palms (see :func:`_hand_seed`).
    """
    if face.sum() >= 50:
        size = int(np.sqrt(face.sum()) * 0.18) | 1
        inner = cv2.erode(face.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
        if inner.sum() < 30:
            inner = face
    elif fallback is not None and fallback.sum() >= 30:
        inner = fallback
    else:
        return np.zeros_like(person)
    mean, inv = _colour_model(lab, inner)
    skin = _mahalanobis(lab, mean, inv, person & ~face) < 3.0
    skin = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    return skin


def _hand_seed(
    lab: np.ndarray, lm: np.ndarray, person: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Skin seed from the palms, for photos without a face: a small disc at the middle of
    each seen hand (between wrist, index and pinky), inside the person, keeping the pixels
    near the discs' median colour (a cuff or a held object at the disc's rim drops out).
    Hands are the body part most often bare in any outfit."""
    h, w = size
    disc = np.zeros((h, w), np.uint8)
    for wr, idx, pky in ((L_WRIST, L_INDEX, L_PINKY), (R_WRIST, R_INDEX, R_PINKY)):
        if min(lm[wr, 3], lm[idx, 3], lm[pky, 3]) < VISIBLE:
            continue
        centre = (lm[wr, :2] + lm[idx, :2] + lm[pky, :2]) / 3
        r = 0.5 * float(np.linalg.norm(lm[idx, :2] - lm[wr, :2]))
        if r >= 2:
            cv2.circle(disc, tuple(np.round(centre).astype(int)), int(r), 1, -1)
    seed = (disc > 0) & person
    if seed.sum() < 30:
        return np.zeros((h, w), bool)
    med = np.median(lab[seed], axis=0)
    return seed & (np.linalg.norm(lab - med, axis=-1) < 15.0)


def _hair_mask(lab, face, person, skin, lm) -> np.ndarray:
    """Hair: person pixels in the head-and-shoulders zone, not face and not skin, whose
    colour matches the pixels just above the face (the hairline)."""
    h, w = person.shape
    if face.sum() < 50:
        return np.zeros_like(person)
    ys, xs = np.nonzero(face)
    fx0, fx1, fy0, fy1 = xs.min(), xs.max(), ys.min(), ys.max()
    fh, fw = fy1 - fy0, fx1 - fx0
    # Seeds: a band above the face oval's top, within the person mask.
    seed = np.zeros_like(person)
    y0 = max(0, int(fy0 - 0.35 * fh))
    seed[y0 : max(y0 + 1, int(fy0 + 0.05 * fh)), int(fx0 + 0.15 * fw) : int(fx1 - 0.15 * fw)] = True
    seed &= person & ~face & ~skin
    if seed.sum() < 20:
        return np.zeros_like(person)
    # The band above the face also catches a little backdrop, a hat brim or a forehead
    # the skin model missed: fit the hair's colour on the band's main mode (the pixels
    # nearest its median colour), or the model grows wide enough to take a white shirt
    # for hair.
    dist = np.linalg.norm(lab[seed] - np.median(lab[seed], axis=0), axis=1)
    core = np.zeros_like(seed)
    core[seed] = dist <= max(8.0, float(np.percentile(dist, 70)))
    mean, inv = _colour_model(lab, core if core.sum() >= 20 else seed)
    zone = np.zeros_like(person)
    shoulder_y = min(lm[L_SHOULDER, 1], lm[R_SHOULDER, 1])
    bottom = shoulder_y + 0.6 * fh  # hair past the shoulders
    # Long hair falls over the shoulders onto the chest, down to about half the torso.
    # Only looked for there when the chest itself is not hair-coloured: dark hair over a
    # dark top cannot be told apart by colour, and taking the top for hair would keep it
    # in front of the new garment.
    torso_len = float((lm[L_HIP, 1] + lm[R_HIP, 1]) / 2 - shoulder_y)
    mid = (lm[L_SHOULDER, :2] + lm[R_SHOULDER, :2]) / 2
    chest = np.zeros_like(person)
    cx, cy = int(mid[0]), int(mid[1] + 0.25 * torso_len)
    r = max(2, int(0.25 * fw))
    chest[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r] = True
    chest &= person & ~skin
    # Extended when hardly any of the chest would pass for hair.
    if (
        torso_len > 0
        and chest.sum() >= 20
        and (_mahalanobis(lab, mean, inv, chest)[chest] < 3.5).mean() < 0.1
    ):
        bottom = max(bottom, shoulder_y + 0.5 * torso_len)
    zone[
        : max(int(min(h, bottom)), 1), max(0, int(fx0 - 0.8 * fw)) : min(w, int(fx1 + 0.8 * fw))
    ] = True
    hair = _mahalanobis(lab, mean, inv, person & zone & ~face & ~skin) < 3.5
    # Keep what is connected to the seeds: same-coloured clothes far from the head are not hair.
    n, labels = cv2.connectedComponents(hair.astype(np.uint8))
    keep = np.unique(labels[seed & hair])
    return np.isin(labels, keep[keep > 0])


def _clothes_masks(lab, person, face, hair, skin, hands, lm, size, arms=None):
    """Upper and lower clothes worn now: person pixels that are not face, hair, skin or
    hands, split at the hip line and grown from a colour model seeded on the torso.

    The hip joints are where tops often end, not where they always do: a cropped top ends
    above them and high-waisted trousers start above them; a long top's hem and a sleeve
    on a hanging arm reach below them. So when the lower clothes are a different fabric
    from the top (a colour model seeded on the thighs against one seeded on the chest), the
    pixels where a top can end and the sleeves go with the fabric they are nearer to. What
    the row split gets wrong shows after a try-on: an old sleeve or hem below a shorter new
    top, or the top of the trousers replaced by skin.
    """
    h, w = size
    covered = person & ~face & ~hair & ~skin & ~hands["left"] & ~hands["right"]
    shoulder_y = float(min(lm[L_SHOULDER, 1], lm[R_SHOULDER, 1]))
    hip_y = float((lm[L_HIP, 1] + lm[R_HIP, 1]) / 2)
    torso_len = max(hip_y - shoulder_y, 1.0)
    chin_y = (
        float(np.nonzero(face.any(axis=1))[0].max())
        if face.any()
        else shoulder_y - 0.2 * (hip_y - shoulder_y)
    )
    rows = np.arange(h)[:, None]
    upper = covered & (rows > chin_y) & (rows < hip_y + 0.05 * (hip_y - shoulder_y))
    lower = covered & (rows >= hip_y - 0.05 * (hip_y - shoulder_y))
    # Torso seed: the middle of the chest, between the shoulders.
    mid = (lm[L_SHOULDER, :2] + lm[R_SHOULDER, :2] + lm[L_HIP, :2] + lm[R_HIP, :2]) / 4
    sw = float(abs(lm[L_SHOULDER, 0] - lm[R_SHOULDER, 0]))
    seed = np.zeros_like(person)
    cy = int(min(h - 1, (shoulder_y + mid[1]) / 2))
    cx = int(np.clip(mid[0], 0, w - 1))
    r = max(3, int(0.12 * sw))
    seed[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r] = True
    seed &= upper
    if seed.sum() < 20:
        return upper, lower
    up_mean, up_inv = _colour_model(lab, seed)
    similar = _mahalanobis(lab, up_mean, up_inv, upper) < 4.0
    # Keep the connected part of the candidate region that touches the seed, plus
    # everything clearly like the seed's colour (prints and stripes differ in colour
    # but sit inside the connected region anyway).
    n, labels = cv2.connectedComponents(upper.astype(np.uint8))
    keep = np.unique(labels[seed])
    upper = (np.isin(labels, keep[keep > 0])) | (upper & similar)

    lo_seed = _thigh_seed(lm, (h, w), sw) & lower & ~upper
    if arms is not None:
        lo_seed &= ~(arms["left"] | arms["right"])
    if lo_seed.sum() < 20:
        return upper, lower
    lo_mean, lo_inv = _colour_model(lab, lo_seed)
    # Distinct fabrics: each model's mean is far from the other under the other's spread.
    distinct = (
        min(
            float(_mahalanobis(lo_mean[None, None], up_mean, up_inv)[0, 0]),
            float(_mahalanobis(up_mean[None, None], lo_mean, lo_inv)[0, 0]),
        )
        > 4.0
    )
    if not distinct:
        return upper, lower
    # Where a top can end and a bottom begin: from a crop top's hem (under the bust) to a
    # tunic's (half a torso below the hip joints); and the sleeves, wherever the arms hang.
    # There, each pixel goes with the fabric its colour is nearer to, where it is clearly
    # one of the two (a print unlike both keeps the split at the hip line).
    rows_band = (rows > shoulder_y + 0.45 * torso_len) & (rows < hip_y + 0.5 * torso_len)
    contested = covered & rows_band
    if arms is not None:
        contested |= covered & (arms["left"] | arms["right"]) & (rows > shoulder_y)
    d_up = _mahalanobis(lab, up_mean, up_inv, contested)
    d_lo = _mahalanobis(lab, lo_mean, lo_inv, contested)
    clear = contested & (np.minimum(d_up, d_lo) < 6.0)
    up_pick, lo_pick = clear & (d_up <= d_lo), clear & (d_lo < d_up)
    # What moves must join its garment: the top's part connected to the chest seed, the
    # bottom's to the thigh seed (a same-coloured object elsewhere does not move).
    up_pick &= _joined((upper & ~lo_pick) | up_pick, seed)
    lo_pick &= _joined((lower & ~up_pick) | lo_pick, lo_seed)
    # The two overlap about the hip line by the split; a pixel clearly of one fabric
    # leaves the other.
    return (upper & ~lo_pick) | up_pick, (lower & ~up_pick) | lo_pick


def _joined(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected components of ``mask`` that touch ``seed``."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8))
    keep = np.unique(labels[seed & mask])
    return np.isin(labels, keep[keep > 0])


def _thigh_seed(lm: np.ndarray, size: tuple[int, int], sw: float) -> np.ndarray:
    """Squares a third of the way from each hip joint to its knee: the bottoms' fabric in
    nearly any outfit (trousers, shorts, a skirt), clear of the hands and the top's hem."""
    h, w = size
    seed = np.zeros((h, w), bool)
    r = max(2, int(0.07 * sw))
    for hip, knee in ((L_HIP, L_KNEE), (R_HIP, R_KNEE)):
        x, y = lm[hip, :2] + 0.35 * (lm[knee, :2] - lm[hip, :2])
        if 0 <= x < w and 0 <= y < h:
            xi, yi = int(x), int(y)
            seed[max(0, yi - r) : yi + r, max(0, xi - r) : xi + r] = True
    return seed


# ---------------------------------------------------------------------------- measurements


def width_across(mask: np.ndarray, centre: np.ndarray, direction: np.ndarray) -> float:
    """Length of the run of ``mask`` through ``centre`` along unit ``direction``."""
    h, w = mask.shape
    total = 0.0
    for sign in (1.0, -1.0):
        t = 0.0
        while True:
            p = centre + sign * (t + 1.0) * direction
            x, y = int(round(p[0])), int(round(p[1]))
            if not (0 <= x < w and 0 <= y < h) or not mask[y, x]:
                break
            t += 1.0
        total += t
    return total + 1.0


def measure(lm: np.ndarray, torso: np.ndarray, size) -> BodyMeasurements:
    """Body widths from the torso mask (the person mask without the arms) across the torso axis, and lengths
    from the landmarks. Chest, waist and hip sit at 25 %, 60 % and 100 % of the way from the
    shoulder line to the hip line (hip landmarks mark the hip joints, roughly at the widest
    part of the pelvis)."""
    ls, rs = lm[L_SHOULDER, :2], lm[R_SHOULDER, :2]
    lh, rh = lm[L_HIP, :2], lm[R_HIP, :2]
    mid_s, mid_h = (ls + rs) / 2, (lh + rh) / 2
    axis = mid_h - mid_s
    length = float(np.linalg.norm(axis))
    across = np.array([axis[1], -axis[0]], np.float32) / max(length, 1e-6)

    def width_at(t: float) -> float:
        c = mid_s + t * axis
        h, w = size
        if not (0 <= c[0] < w and 0 <= c[1] < h) or not torso[int(c[1]), int(c[0])]:
            return 0.0
        return width_across(torso, c, across)

    hips_in = _visible(lm, L_HIP, size) and _visible(lm, R_HIP, size)
    ankles_in = _visible(lm, L_ANKLE, size) and _visible(lm, R_ANKLE, size)
    leg = 0.0
    if ankles_in:
        leg = float(
            (
                np.linalg.norm(lh - lm[L_KNEE, :2])
                + np.linalg.norm(lm[L_KNEE, :2] - lm[L_ANKLE, :2])
                + np.linalg.norm(rh - lm[R_KNEE, :2])
                + np.linalg.norm(lm[R_KNEE, :2] - lm[R_ANKLE, :2])
            )
            / 2
        )
    return BodyMeasurements(
        shoulder_width=float(np.linalg.norm(ls - rs)),
        chest_width=width_at(0.25),
        waist_width=width_at(0.6),
        hip_width=width_at(1.0) if hips_in else 0.0,
        torso_length=length,
        leg_length=leg,
    )
