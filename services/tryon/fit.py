"""Where each garment landmark goes on this body: the fit.

Lengths keep the garment's own proportions (a cropped top stays cropped, a long sleeve
reaches the wrist) scaled by the ratio of the body's shoulder width to the garment's;
widths follow the body's own measurements across the torso plus ease, so one garment drapes
differently on different bodies. Sleeves follow the arm bones from the pose.

Body frame: origin at the middle of the shoulder line, ``down`` along the torso axis
(shoulders to hips), ``across`` perpendicular to it pointing to the image's right. Garment
landmark names use image left/right ("l" = smaller x), matching the flat-lay laid front-up:
the garment's ``*_l`` points go to the side of the person's *right* shoulder.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from services.common.analysis import person as P

EASE = 1.06  # garments sit a little wider than the body they cover
SHOULDER_RISE = 0.06  # the shoulder seam sits above the joint centre, in shoulder widths


@dataclasses.dataclass
class BodyFrame:
    """The torso's coordinate frame in the photo."""

    origin: np.ndarray
    down: np.ndarray
    across: np.ndarray
    shoulder_width: float
    torso_length: float

    def at(self, u: float, v: float) -> np.ndarray:
        """Photo point ``u`` px across and ``v`` px down from the shoulder-line middle."""
        return self.origin + u * self.across + v * self.down

    def uv(self, p: np.ndarray) -> tuple[float, float]:
        d = np.asarray(p, np.float64) - self.origin
        return float(d @ self.across), float(d @ self.down)


def body_frame(pa: P.PersonAnalysis) -> BodyFrame:
    ls, rs = pa.point(P.L_SHOULDER), pa.point(P.R_SHOULDER)
    mid_s = (ls + rs) / 2
    mid_h = (pa.point(P.L_HIP) + pa.point(P.R_HIP)) / 2
    axis = mid_h - mid_s
    length = float(np.linalg.norm(axis))
    down = axis / max(length, 1e-6)
    across = np.array([-down[1], down[0]])  # rotate down by -90 degrees: points image-right
    if across[0] < 0:
        across = -across
    return BodyFrame(mid_s.astype(np.float64), down, across, float(np.linalg.norm(ls - rs)), length)


def _half_width_at(pa: P.PersonAnalysis, frame: BodyFrame, v: float, fallback: float) -> float:
    """Half the torso width (arms excluded) at depth ``v``, from the person mask."""
    c = frame.at(0.0, v)
    h, w = pa.torso.shape
    if not (0 <= c[0] < w and 0 <= c[1] < h) or not pa.torso[int(c[1]), int(c[0])]:
        return fallback
    width = P.width_across(pa.torso, c, frame.across)
    # Loose old clothes inflate the silhouette; never let the fit exceed 1.4x the shoulders.
    if width <= 0.3 * frame.shoulder_width:
        return fallback
    return min(width / 2, 0.7 * frame.shoulder_width)


def top_targets(
    pa: P.PersonAnalysis, lmk: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], float]:
    """Photo positions of a top's (or dress's) landmarks on this person.

    Args:
        pa: the person analysis.
        lmk: garment landmarks (cut-out pixels), at least shoulders, armpits and hem.

    Returns:
        ``(targets, scale)``: landmark name -> photo point, and garment px -> photo px.
    """
    f = body_frame(pa)
    g = {k: np.asarray(v, np.float64) for k, v in lmk.items()}
    g_mid_sh = (g["shoulder_l"] + g["shoulder_r"]) / 2
    g_sw = float(np.linalg.norm(g["shoulder_l"] - g["shoulder_r"]))
    # The garment's shoulder seams land a little outside the joints (set-in sleeves).
    scale = f.shoulder_width * 1.08 / max(g_sw, 1e-6)
    rise = SHOULDER_RISE * f.shoulder_width

    def garment_uv(name: str) -> tuple[float, float]:
        d = g[name] - g_mid_sh
        return float(d[0] * scale), float(d[1] * scale - rise)

    t: dict[str, np.ndarray] = {}
    for name in ("shoulder_l", "shoulder_r", "neck_l", "neck_r", "neck_front"):
        if name in g:
            u, v = garment_uv(name)
            t[name] = f.at(u, v)
    # Armpits and hem: depth from the garment's proportions, width from the body.
    for side, sign in (("l", -1.0), ("r", 1.0)):
        for name, ease in ((f"armpit_{side}", 1.02), (f"hem_{side}", EASE)):
            if name not in g:
                continue
            u_g, v = garment_uv(name)
            half_body = _half_width_at(pa, f, v, abs(u_g) / ease)
            # Halfway between the garment's own cut and the body: a boxy tee stays a
            # little boxy, a fitted one follows the waist; always covering the body.
            u = max(0.5 * abs(u_g) + 0.5 * half_body * ease, half_body * 1.01)
            t[name] = f.at(sign * u, v)
    return t, scale


def arm_path(pa: P.PersonAnalysis, side: str) -> list[np.ndarray]:
    """Shoulder, elbow and wrist of the arm on image side ``side`` ("l" or "r")."""
    # Image-left arm belongs to the person's right side for a front view.
    s, e, w = (
        (P.R_SHOULDER, P.R_ELBOW, P.R_WRIST)
        if side == "l"
        else (P.L_SHOULDER, P.L_ELBOW, P.L_WRIST)
    )
    return [
        pa.point(s).astype(np.float64),
        pa.point(e).astype(np.float64),
        pa.point(w).astype(np.float64),
    ]


def _along(path: list[np.ndarray], distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Point at ``distance`` along a polyline, and the unit direction there (extrapolates
    past the end)."""
    for a, b in zip(path[:-1], path[1:], strict=False):
        seg = float(np.linalg.norm(b - a))
        d = (b - a) / max(seg, 1e-6)
        if distance <= seg or b is path[-1]:
            return a + d * distance, d
        distance -= seg
    return path[-1], (path[-1] - path[-2]) / max(float(np.linalg.norm(path[-1] - path[-2])), 1e-6)


def sleeve_targets(
    pa: P.PersonAnalysis,
    lmk: dict[str, np.ndarray],
    torso_targets: dict[str, np.ndarray],
    scale: float,
    side: str,
    to_wrist: bool = False,
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Control points for one sleeve: the root (shoulder seam to armpit) stays glued to the
    torso panel; the cuff goes along the arm at the garment's sleeve length; long sleeves
    also bend at the elbow. With ``to_wrist`` (a long sleeve) the cuff lands on the wrist
    whatever the flat-lay's proportions: long sleeves are cut to the arm.

    Returns:
        ``(names, garment_points, photo_points)``.
    """
    g = {k: np.asarray(v, np.float64) for k, v in lmk.items()}
    sh, ap = g[f"shoulder_{side}"], g[f"armpit_{side}"]
    top, bot = g[f"cuff_{side}_top"], g[f"cuff_{side}_bottom"]
    cuff_mid = (top + bot) / 2
    root_mid = (sh + ap) / 2
    length = float(np.linalg.norm(cuff_mid - root_mid)) * scale
    path = arm_path(pa, side)
    root_photo = (torso_targets[f"shoulder_{side}"] + torso_targets[f"armpit_{side}"]) / 2
    path = [root_photo, *path[1:]]
    if to_wrist:
        length = sum(float(np.linalg.norm(path[i + 1] - path[i])) for i in range(2))
    cuff_c, direction = _along(path, length)
    normal = np.array([-direction[1], direction[0]])
    # "top" is the sleeve's outer edge (away from the torso).
    frame = body_frame(pa)
    centre_u = frame.origin
    if np.dot(normal, cuff_c - centre_u) < 0:
        normal = -normal
    arm_r = 0.14 * frame.shoulder_width
    half_cuff = max(float(np.linalg.norm(top - bot)) * scale / 2, arm_r * 1.15)
    names = [f"shoulder_{side}", f"armpit_{side}", f"cuff_{side}_top", f"cuff_{side}_bottom"]
    src = [sh, ap, top, bot]
    dst = [
        torso_targets[f"shoulder_{side}"],
        torso_targets[f"armpit_{side}"],
        cuff_c + normal * half_cuff,
        cuff_c - normal * half_cuff,
    ]
    upper = float(np.linalg.norm(path[1] - path[0]))
    if length > upper * 1.15:  # the sleeve reaches past the elbow: bend it there
        t = upper / length
        for a, b, sgn in ((sh, top, 1.0), (ap, bot, -1.0)):
            src.append(a + (b - a) * t)
            _e, d_e = _along(path, upper)
            n_e = np.array([-d_e[1], d_e[0]])
            if np.dot(n_e, path[1] - centre_u) < 0:
                n_e = -n_e
            dst.append(path[1] + sgn * n_e * (arm_r * 1.25))
        names += [f"elbow_{side}_top", f"elbow_{side}_bottom"]
    return names, np.array(src), np.array(dst)


# ------------------------------------------------------------------------------ bottoms

WAIST_RISE = 0.16  # a mid-rise waistband sits this far above the hip joints, in torso lengths
CROTCH_DROP = 0.10  # the crotch sits this far below the hip joints, in leg lengths
BOTTOM_EASE = 1.04


def leg_path(pa: P.PersonAnalysis, side: str) -> list[np.ndarray]:
    """Hip, knee and ankle of the leg on image side ``side`` ("l" or "r")."""
    h, k, a = (P.R_HIP, P.R_KNEE, P.R_ANKLE) if side == "l" else (P.L_HIP, P.L_KNEE, P.L_ANKLE)
    return [
        pa.point(h).astype(np.float64),
        pa.point(k).astype(np.float64),
        pa.point(a).astype(np.float64),
    ]


def _leg_length(pa: P.PersonAnalysis) -> float:
    """Hip-to-ankle length; from the pose model's estimate where the ankles are out of frame
    (it still places them), else 1.45 torso lengths (adult proportions)."""
    if pa.measurements.leg_length > 0:
        return pa.measurements.leg_length
    est = np.mean([sum(np.linalg.norm(p[i + 1] - p[i]) for i in range(2)) for p in
                   (leg_path(pa, "l"), leg_path(pa, "r"))])  # fmt: skip
    return (
        float(est)
        if est > 0.8 * pa.measurements.torso_length
        else 1.45 * pa.measurements.torso_length
    )


def _leg_half_width(
    pa: P.PersonAnalysis, centre: np.ndarray, normal: np.ndarray, cap: float
) -> float:
    """Half the leg's width through ``centre`` across ``normal``, from the person mask; legs
    pressed together (one run across both) or out of frame fall back to ``cap``."""
    h, w = pa.size
    if (
        not (0 <= centre[0] < w and 0 <= centre[1] < h)
        or pa.mask[int(centre[1]), int(centre[0])] < 0.5
    ):
        return cap
    return min(P.width_across(pa.mask > 0.5, centre, normal) / 2, cap)


def bottom_targets(
    pa: P.PersonAnalysis, lmk: dict[str, np.ndarray], length: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """Photo positions of a bottom's landmarks (and of the seam points the part warps add).

    The waistband sits a little above the hip joints, as wide as the body there plus ease;
    the crotch a little below them. Full-length trousers end at the ankles whatever the
    flat-lay's proportions (trousers are bought by inseam); shorts and skirts keep the
    garment's own length, scaled by the waist. Each leg follows its hip-knee-ankle bones and
    bends at the knee; openings are at least as wide as the leg there.

    Args:
        pa: the person analysis (hips in frame).
        lmk: the garment's landmarks (cut-out pixels), plus ``hip_l``/``hip_r`` (outer edge
            at the crotch row) for trousers and shorts.
        length: the garment's length class ("cropped", "regular", "long").

    Returns:
        ``(targets, sources, scale)``: point name -> photo point; point name -> cut-out
        point (the landmarks plus the seam points added here: ``side_*`` on a skirt's
        sides at hip level, ``knee_*_out``/``knee_*_in`` on long legs); garment px -> photo px.
    """
    f = body_frame(pa)
    g = {k: np.asarray(v, np.float64) for k, v in lmk.items()}
    mid_hip = (pa.point(P.L_HIP) + pa.point(P.R_HIP)) / 2
    leg_len = _leg_length(pa)
    v_hip = f.uv(mid_hip)[1]
    v_waist = v_hip - WAIST_RISE * f.torso_length
    half_waist = _half_width_at(pa, f, v_waist, 0.45 * f.shoulder_width) * BOTTOM_EASE
    g_waist = float(np.linalg.norm(g["waist_r"] - g["waist_l"]))
    scale = 2 * half_waist / max(g_waist, 1e-6)
    g_waist_mid = (g["waist_l"] + g["waist_r"]) / 2
    t: dict[str, np.ndarray] = {
        "waist_l": f.at(-half_waist, v_waist),
        "waist_r": f.at(half_waist, v_waist),
    }
    v_crotch = v_hip + CROTCH_DROP * leg_len
    half_hip = max(_half_width_at(pa, f, v_crotch, 1.1 * half_waist), half_waist) * BOTTOM_EASE
    half_hip = min(half_hip, 0.8 * f.shoulder_width)
    if "crotch" not in g:  # a skirt: an A-line from the waist over the hips to the hem
        g_len = float(np.mean([g["hem_l"][1], g["hem_r"][1]]) - g_waist_mid[1]) * scale
        v_hem = min(v_waist + g_len, v_hip + 1.02 * leg_len)
        g_half_hem = float(np.linalg.norm(g["hem_r"] - g["hem_l"])) / 2 * scale
        half_hem = max(g_half_hem, half_hip * 1.02)
        t["hem_l"], t["hem_r"] = f.at(-half_hem, v_hem), f.at(half_hem, v_hem)
        frac = (v_crotch - v_waist) / max(v_hem - v_waist, 1e-6)
        if 0 < frac < 1:
            for side, sign in (("l", -1.0), ("r", 1.0)):
                g["side_" + side] = g[f"waist_{side}"] + frac * (
                    g[f"hem_{side}"] - g[f"waist_{side}"]
                )
                half = max(half_hip, half_waist + frac * (half_hem - half_waist))
                t["side_" + side] = f.at(sign * half, v_crotch)
        return t, g, scale
    t["crotch"] = f.at(f.uv(mid_hip)[0], v_crotch)
    for side, sign in (("l", -1.0), ("r", 1.0)):
        t[f"hip_{side}"] = f.at(f.uv(mid_hip)[0] + sign * half_hip, v_crotch)
        path = leg_path(pa, side)
        # The leg starts at the crotch row, midway between the outer hip and the crotch.
        root = (t[f"hip_{side}"] + t["crotch"]) / 2
        path = [root, *path[1:]]
        full = sum(float(np.linalg.norm(path[i + 1] - path[i])) for i in range(2))
        g_root = (g[f"hip_{side}"] + g["crotch"]) / 2
        g_hem = (g[f"leg_{side}_out"] + g[f"leg_{side}_in"]) / 2
        want = float(np.linalg.norm(g_hem - g_root)) * scale
        # Full-length trousers break over the shoe, a little below the ankle joint.
        reach = full + 0.05 * leg_len if length == "long" else min(want, full * 1.02)
        c, d = _along(path, reach)
        n = np.array([-d[1], d[0]])
        if np.dot(n, c - t["crotch"]) < 0:
            n = -n  # n points away from the body's midline
        g_half = float(np.linalg.norm(g[f"leg_{side}_out"] - g[f"leg_{side}_in"])) / 2 * scale
        half = max(g_half, 1.12 * _leg_half_width(pa, c, n, 0.5 * half_hip))
        t[f"leg_{side}_out"], t[f"leg_{side}_in"] = c + n * half, c - n * half
        thigh = float(np.linalg.norm(path[1] - path[0]))
        if reach > thigh * 1.15:  # past the knee: bend there
            frac = thigh / reach
            knee, dk = _along(path, thigh)
            nk = np.array([-dk[1], dk[0]])
            if np.dot(nk, knee - t["crotch"]) < 0:
                nk = -nk
            g_knee_half = (1 - frac) * float(
                np.linalg.norm(g[f"hip_{side}"] - g["crotch"])
            ) / 2 + frac * g_half / scale
            khalf = max(g_knee_half * scale, 1.12 * _leg_half_width(pa, knee, nk, 0.5 * half_hip))
            for edge, a, b, sgn in (("out", f"hip_{side}", f"leg_{side}_out", 1.0),
                                    ("in", "crotch", f"leg_{side}_in", -1.0)):  # fmt: skip
                g[f"knee_{side}_{edge}"] = g[a] + frac * (g[b] - g[a])
                t[f"knee_{side}_{edge}"] = knee + sgn * nk * khalf
    return t, g, scale
