"""Quality of the try-on still on real photos: the proxies of ARCHITECTURE.md, measured.

There is no paired ground truth (nobody photographed the astronaut in our T-shirt), so the
"Quality is measured, not assumed" table is computed with proxies on the real photos that
ship inside installed packages (``skimage.data.astronaut()``, 512 x 512, and matplotlib's
``sample_data/grace_hopper.jpg``, 512 x 600), dressed in garments drawn in code by
:mod:`services.tryon.flatlays`:

* **pose preservation**: PCK@0.05 of the pose re-detected (a separate ``PersonAnalyzer``)
  on the output still against the input's landmarks, over the landmarks visible in the
  input (visibility >= 0.5, inside the image); a landmark is correct when it lies within
  0.05 x the larger image side of the input's. The same re-detection on the *input* gives
  the detector's own noise floor (``pck_input_redetect``).
* **identity preservation**: PSNR between input and output (RGB, peak 255) over pixels
  outside the garment (``garment_alpha < 0.01``) and outside the pixels the composite
  deliberately changed to remove the old garment (``CompositeResult.cleared``). Two
  numbers: over all such pixels, and over face + hair + hands + background far from the
  person (person mask >= 0.5 dilated by 5 % of the larger side, complemented); the goal
  (>= 40 dB) applies to the second. Identical pixels give an infinite PSNR, reported as 99.
* **garment colour fidelity**: CIEDE2000 between the flat-lay's colours and the rendered
  garment's after dividing the composite's shading map out (see ``COLOUR_METHOD``).
* **garment coverage**: IoU of ``garment_alpha > 0.5`` with the expected body region (see
  ``COVERAGE_METHOD``).

Bottoms (trousers, skirt) are refused on these half-body photos (POSE_UNSUPPORTED: the hips
are out of frame); they are recorded as refused with the reason, not counted in the
aggregate. No full-body photo ships in any installed package, so every garment also runs on
the full-body studio figure of :mod:`services.tryon.figures` (a real face on a drawn body);
its rows are aggregated separately (``aggregate_figure``) and never mixed into the real
photos' figures.

The composite's masks (``cleared``, ``protect``, ``shading``) are not part of
``TryOnResult``; the benchmark wraps ``services.tryon.pipeline.composite`` in its own
process to keep the last one (pipeline code is unchanged).

Usage::

    python benchmarks/quality_tryon.py [--quick] [--out DIR]

Writes ``DIR/quality_tryon.json`` and the contact sheet ``DIR/quality_tryon.png``
(default ``out/bench``). ``--quick`` uses fewer garments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import skimage.data
from skimage.color import deltaE_ciede2000, rgb2lab

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_common import describe_machine  # noqa: E402

from services.common.analysis import person as P  # noqa: E402
from services.common.errors import InvalidInputError  # noqa: E402
from services.tryon import pipeline as pipeline_mod  # noqa: E402
from services.tryon.figures import draw_figure  # noqa: E402
from services.tryon.flatlays import draw_garment  # noqa: E402
from services.tryon.pipeline import GarmentInput, TryOnOptions, TryOnPipeline  # noqa: E402
from services.tryon.server import make_refine_fn  # noqa: E402

GOALS = {
    "pck": (">=", 0.98),
    "psnr_identity_db": (">=", 40.0),
    "delta_e00": ("<=", 6.0),
    "coverage_iou": (">=", 0.8),
}
PCK_THRESHOLD = 0.05
PSNR_CAP = 99.0
FAR_FRACTION = 0.05  # person mask dilated by this fraction of the larger image side

# (id, kind, pattern, colour, colour2, seed): solid, stripes, checks, a printed logo; short
# and long sleeves, tank, dress, jacket; then the two bottoms the backend refuses here.
GARMENTS = [
    ("tshirt_solid_red", "tshirt", "solid", (200, 40, 40), None, 0),
    ("tshirt_stripes_navy", "tshirt", "stripes", (30, 50, 110), None, 1),
    ("longsleeve_checks_green", "longsleeve", "checks", (40, 130, 70), None, 2),
    ("tshirt_logo_black", "tshirt", "logo", (25, 25, 30), (245, 245, 240), 3),
    ("longsleeve_solid_mustard", "longsleeve", "solid", (215, 165, 40), None, 4),
    ("tank_solid_teal", "tank", "solid", (20, 140, 150), None, 5),
    ("dress_solid_blue", "dress", "solid", (50, 90, 190), None, 6),
    ("jacket_solid_olive", "jacket", "solid", (95, 105, 55), None, 7),
    ("trousers_solid_grey", "trousers", "solid", (90, 90, 95), None, 8),
    ("skirt_checks_plum", "skirt", "checks", (120, 40, 90), None, 9),
]
QUICK_GARMENTS = {
    "tshirt_stripes_navy",
    "tshirt_logo_black",
    "jacket_solid_olive",
    "skirt_checks_plum",
}

POSE_METHOD = (
    "PCK@0.05: a fresh PersonAnalyzer (not the pipeline's) re-detects the 33 MediaPipe "
    "landmarks on the output still; over the landmarks visible in the input (visibility >= "
    "0.5 and inside the image), the fraction within 0.05 x max(image width, height) pixels "
    "of the input's landmark (the pipeline's own analysis of the input). "
    "pck_input_redetect is the same with the re-detection run on the input: the floor."
)
IDENTITY_METHOD = (
    "PSNR (RGB, peak 255) between input and output. psnr_outside_db: over pixels with "
    "garment_alpha < 0.01 and not in CompositeResult.cleared (the old garment deliberately "
    "replaced by skin or background fill). psnr_identity_db (the goal's): the same pixels "
    "restricted to face | hair | hands (input analysis) | background far from the person "
    "(not in the person mask >= 0.5 dilated by 5% of the larger side). Zero error is "
    f"reported as {PSNR_CAP} dB (identical) with *_identical = true. "
    "psnr_outside_with_cleared_db adds the cleared pixels back (information only)."
)
COLOUR_METHOD = (
    "Flat-lay side: the drawn garment's true mask eroded by 3 px; its pixels converted to "
    "CIELAB (skimage rgb2lab) and clustered with cv2.kmeans (k=3 for solid, 4 for patterns; "
    "Lab Euclidean, fixed seed). Rendered side: output pixels with garment_alpha > 0.9, not "
    "face/hair/hands, divided by the composite's multiplicative shading map "
    "(CompositeResult.shading, captured in-process), converted to Lab. Each rendered pixel "
    "is assigned to the flat-lay centre with the smallest CIEDE2000. delta_e00 (the goal's): "
    "mean CIEDE2000 of rendered pixels to their assigned centre. delta_e00_clusters: "
    "CIEDE2000 between each centre and the mean Lab of the rendered pixels assigned to it, "
    "averaged with the rendered shares as weights. delta_e00_global: CIEDE2000 between the "
    "overall mean Lab of flat-lay and rendered pixels (catches a pattern's proportions "
    "shifting). delta_e00_no_shading_division: delta_e00 without dividing the shading out "
    "(how much of the raw difference is the photo's light and folds)."
)
COVERAGE_METHOD = (
    "IoU of garment_alpha > 0.5 with the expected region: (PersonAnalysis.upper_clothes of the "
    "input | a torso corridor, the band half the chest width (clamped to 0.7..1.0 x shoulder "
    "width) either side of the torso axis below the shoulder line), cut at the garment's hem "
    "depth below the shoulder line in torso lengths (shoulder line to hip line; from the "
    "analysed category and length: top cropped 0.7 / regular 1.1 / long 1.35, outerwear "
    "0.8 / 1.1 / 1.6); a dress is not cut and adds lower_clothes. Minus face | hair | hands "
    "(always in front), minus the arms for a sleeveless garment and minus the forearms (arm "
    "pixels nearer the elbow-wrist bone than the shoulder-elbow bone) for a short-sleeved "
    "one. upper_clothes is the current top, so a fitted garment on a bulky current top (the "
    "astronaut's suit) loses IoU by design."
)


# --------------------------------------------------------------------------- inputs


def load_photos() -> dict[str, np.ndarray]:
    """Real photos shipped inside installed packages (no shopper's photo)."""
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise RuntimeError(f"cannot read {path}")
    return {
        "astronaut": skimage.data.astronaut(),
        "grace_hopper": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
        FIGURE: draw_figure(),
    }


FIGURE = "figure"  # the synthetic full-body input: reported apart from the real photos


class CompositeSpy:
    """Wraps ``pipeline.composite`` to keep the last CompositeResult (masks, shading)."""

    def __init__(self) -> None:
        self.last = None
        self._orig = pipeline_mod.composite

    def __enter__(self):
        def spy(*args, **kwargs):
            self.last = self._orig(*args, **kwargs)
            return self.last

        pipeline_mod.composite = spy
        return self

    def __exit__(self, *exc):
        pipeline_mod.composite = self._orig


# --------------------------------------------------------------------------- metrics


def pck(ref: np.ndarray, found: np.ndarray, size: tuple[int, int]) -> dict[str, object]:
    """PCK of ``found`` against ``ref`` (33 x 4 landmarks) over ref's visible landmarks."""
    h, w = size
    thr = PCK_THRESHOLD * max(h, w)
    x, y, v = ref[:, 0], ref[:, 1], ref[:, 3]
    vis = (v >= P.VISIBLE) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
    err = np.linalg.norm(found[:, :2] - ref[:, :2], axis=1)
    ok = err[vis] <= thr
    return {
        "pck": float(ok.mean()) if vis.any() else 0.0,
        "n_visible": int(vis.sum()),
        "threshold_px": round(thr, 2),
        "max_error_px": round(float(err[vis].max()), 2) if vis.any() else None,
        "median_error_px": round(float(np.median(err[vis])), 2) if vis.any() else None,
        "missed": [int(i) for i in np.nonzero(vis)[0][~ok]],
    }


def psnr(a: np.ndarray, b: np.ndarray, sel: np.ndarray) -> tuple[float, bool, int]:
    """PSNR over ``sel``; ``(dB, identical, pixels)``; identical -> PSNR_CAP."""
    n = int(sel.sum())
    if n == 0:
        return float("nan"), False, 0
    d = a[sel].astype(np.float64) - b[sel].astype(np.float64)
    mse = float(np.mean(d * d))
    if mse == 0.0:
        return PSNR_CAP, True, n
    return min(PSNR_CAP, 10.0 * np.log10(255.0**2 / mse)), False, n


def identity(photo, out, pa: P.PersonAnalysis, alpha, cleared) -> dict[str, object]:
    h, w = photo.shape[:2]
    outside = (alpha < 0.01) & ~cleared
    r = max(1, int(round(FAR_FRACTION * max(h, w))))
    near = cv2.dilate((pa.mask >= 0.5).astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8))
    hands = pa.hands["left"] | pa.hands["right"]
    keep = (near == 0) | pa.face | pa.hair | hands
    db_out, same_out, n_out = psnr(photo, out, outside)
    db_id, same_id, n_id = psnr(photo, out, outside & keep)
    db_all, _, _ = psnr(photo, out, alpha < 0.01)
    prot = pa.face | pa.hair | hands
    return {
        "psnr_outside_db": round(db_out, 2),
        "psnr_outside_identical": same_out,
        "psnr_outside_pixels": n_out,
        "psnr_identity_db": round(db_id, 2),
        "psnr_identity_identical": same_id,
        "psnr_identity_pixels": n_id,
        "psnr_outside_with_cleared_db": round(db_all, 2),
        "cleared_pixels": int(cleared.sum()),
        "face_hair_hands_identical": bool(np.array_equal(photo[prot], out[prot])),
    }


def kmeans_lab(lab: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(centres k x 3, weights k)`` of Lab pixels ``N x 3`` by cv2.kmeans (seeded)."""
    cv2.setRNGSeed(1234)
    data = lab.astype(np.float32)
    k = max(1, min(k, len(data)))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.05)
    _c, labels, centres = cv2.kmeans(data, k, None, crit, 3, cv2.KMEANS_PP_CENTERS)
    weights = np.bincount(labels.ravel(), minlength=k) / len(data)
    return centres.astype(np.float64), weights


def _assign(lab: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.stack([deltaE_ciede2000(lab, np.broadcast_to(c, lab.shape)) for c in centres], 1)
    idx = d.argmin(axis=1)
    return idx, d[np.arange(len(lab)), idx]


def colour(flat, out, alpha, protect, shading, pattern: str) -> dict[str, object]:
    rng = np.random.default_rng(0)
    fm = cv2.erode(flat.mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    flat_rgb = flat.image[..., :3][fm]
    if len(flat_rgb) > 60_000:
        flat_rgb = flat_rgb[rng.choice(len(flat_rgb), 60_000, replace=False)]
    flat_lab = rgb2lab(flat_rgb[None].astype(np.float64) / 255.0)[0]
    centres, w_flat = kmeans_lab(flat_lab, 3 if pattern == "solid" else 4)

    sel = (alpha > 0.9) & ~protect
    if sel.sum() < 50:
        return {"delta_e00": None, "note": "fewer than 50 rendered garment pixels"}
    idx_px = np.flatnonzero(sel.ravel())
    if len(idx_px) > 40_000:
        idx_px = np.sort(rng.choice(idx_px, 40_000, replace=False))
    raw = out.reshape(-1, 3)[idx_px].astype(np.float64)
    shade = shading.ravel()[idx_px].astype(np.float64)
    div = np.clip(raw / np.maximum(shade, 1e-3)[:, None], 0, 255)
    res: dict[str, object] = {}
    for key, rgb in (("", div), ("_no_shading_division", raw)):
        lab = rgb2lab(rgb[None] / 255.0)[0]
        assign, de = _assign(lab, centres)
        res[f"delta_e00{key}"] = round(float(de.mean()), 3)
        if key:
            continue
        res["delta_e00_p95"] = round(float(np.percentile(de, 95)), 3)
        share = np.bincount(assign, minlength=len(centres)) / len(assign)
        per = []
        for c in range(len(centres)):
            if share[c] > 0:
                m = lab[assign == c].mean(axis=0)
                per.append(float(deltaE_ciede2000(centres[c], m)))
            else:
                per.append(0.0)
        res["delta_e00_clusters"] = round(float(np.dot(share, per)), 3)
        gm_flat = flat_lab.mean(axis=0)
        res["delta_e00_global"] = round(float(deltaE_ciede2000(gm_flat, lab.mean(axis=0))), 3)
        res["clusters"] = [
            {
                "lab": [round(float(x), 1) for x in centres[c]],
                "flat_share": round(float(w_flat[c]), 3),
                "rendered_share": round(float(share[c]), 3),
                "delta_e00": round(per[c], 3),
            }
            for c in range(len(centres))
        ]
    res["rendered_pixels"] = int(sel.sum())
    return res


def _forearm(pa: P.PersonAnalysis, side: str) -> np.ndarray:
    """Arm pixels nearer the elbow-wrist bone than the shoulder-elbow one."""
    s, e, wr = (
        (P.L_SHOULDER, P.L_ELBOW, P.L_WRIST)
        if side == "left"
        else (P.R_SHOULDER, P.R_ELBOW, P.R_WRIST)
    )
    h, w = pa.size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)

    def dist(a, b):
        ab = b - a
        t = ((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / max(float(ab @ ab), 1e-6)
        t = np.clip(t, 0, 1)
        return np.hypot(xs - (a[0] + t * ab[0]), ys - (a[1] + t * ab[1]))

    lm = pa.landmarks
    return pa.arms[side] & (dist(lm[e, :2], lm[wr, :2]) < dist(lm[s, :2], lm[e, :2]))


# Hem depth in torso lengths below the shoulder line (hip line = 1.0) by (category, length)
# as the garment analysis reports it; a dress reaches past the frame of a half-body photo.
HEM_DEPTH = {
    ("top", "cropped"): 0.7,
    ("top", "regular"): 1.1,
    ("top", "long"): 1.35,
    ("outerwear", "cropped"): 0.8,
    ("outerwear", "regular"): 1.1,
    ("outerwear", "long"): 1.6,
}


def torso_axes(pa: P.PersonAnalysis) -> tuple[np.ndarray, np.ndarray, float]:
    """``(u, v, length)``: per pixel, distance across the torso axis and distance along it
    below the shoulder line, in pixels; the shoulder-line-to-hip-line length."""
    h, w = pa.size
    mid_s = (pa.point(P.L_SHOULDER) + pa.point(P.R_SHOULDER)) / 2
    axis = (pa.point(P.L_HIP) + pa.point(P.R_HIP)) / 2 - mid_s
    length = max(float(np.linalg.norm(axis)), 1.0)
    down = axis / length
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xs - mid_s[0], ys - mid_s[1]
    return np.abs(dx * down[1] - dy * down[0]), dx * down[0] + dy * down[1], length


def torso_corridor(pa: P.PersonAnalysis) -> np.ndarray:
    """The torso band: half the chest width (clamped to 0.7..1.0 x the shoulder width)
    either side of the torso axis, below the shoulder line."""
    u, v, _length = torso_axes(pa)
    m = pa.measurements
    half = 0.5 * min(max(m.chest_width, 0.7 * m.shoulder_width), m.shoulder_width)
    return (v >= 0) & (u <= half)


def expected_region(
    pa: P.PersonAnalysis, category: str, sleeve: str | None, length: str | None
) -> np.ndarray:
    if category == "bottom":
        return expected_bottom(pa, length)
    exp = pa.upper_clothes | torso_corridor(pa)
    if category == "dress":
        exp |= pa.lower_clothes
    else:
        _u, v, torso = torso_axes(pa)
        exp &= v <= HEM_DEPTH.get((category, length or "regular"), 1.1) * torso
    exp &= ~(pa.face | pa.hair | pa.hands["left"] | pa.hands["right"])
    if sleeve == "sleeveless":
        exp &= ~(pa.arms["left"] | pa.arms["right"])
    elif sleeve == "short":
        exp &= ~(_forearm(pa, "left") | _forearm(pa, "right"))
    return exp


BOTTOM_HEM = {"cropped": 0.45, "regular": 0.6, "long": 1.0}  # in leg lengths below the hips


def expected_bottom(pa: P.PersonAnalysis, length: str | None) -> np.ndarray:
    """A bottom's expected region: the current lower clothes (less the shoes: heel to toe)
    from the waist down to the hem depth of its length class, in leg lengths below the hip
    line; a skirt (regular) also spans the gap between the legs, row by row."""
    _u, v, torso = torso_axes(pa)
    legs = max(pa.measurements.leg_length, 1.45 * torso)
    exp = pa.lower_clothes.copy()
    if length == "regular":
        rows = exp.any(axis=1)
        cols = np.arange(exp.shape[1])[None, :]
        first = np.where(rows, exp.argmax(axis=1), 0)[:, None]
        last = np.where(rows, exp.shape[1] - 1 - exp[:, ::-1].argmax(axis=1), -1)[:, None]
        exp = (cols >= first) & (cols <= last)
    exp &= v <= torso + BOTTOM_HEM.get(length or "long", 1.0) * legs
    for heel, toe in ((P.L_HEEL, P.L_FOOT), (P.R_HEEL, P.R_FOOT)):
        if pa.visible(heel) and pa.visible(toe):
            shoe = np.zeros(pa.size, np.uint8)
            a, b = np.round(pa.point(heel)).astype(int), np.round(pa.point(toe)).astype(int)
            cv2.line(
                shoe, tuple(a), tuple(b), 1, max(2, int(0.12 * pa.measurements.shoulder_width))
            )
            exp &= shoe == 0
    return exp & ~(pa.hands["left"] | pa.hands["right"])


def coverage(pa: P.PersonAnalysis, alpha, category, sleeve, length) -> dict[str, object]:
    exp = expected_region(pa, category, sleeve, length)
    got = alpha > 0.5
    union = int((exp | got).sum())
    inter = int((exp & got).sum())
    return {
        "coverage_iou": round(inter / union, 4) if union else 0.0,
        "expected_pixels": int(exp.sum()),
        "garment_pixels": int(got.sum()),
        "garment_outside_expected": round(float((got & ~exp).sum()) / max(1, got.sum()), 4),
        "expected_uncovered": round(float((exp & ~got).sum()) / max(1, exp.sum()), 4),
    }


# --------------------------------------------------------------------------- run


def run_pair(pipe, checker, photo, pa_in_redetect, flat, pattern, refine):
    with CompositeSpy() as spy:
        t0 = time.perf_counter()
        res = pipe.run(photo, [GarmentInput(flat.image)], TryOnOptions(refine=refine))
        elapsed = time.perf_counter() - t0
    comp = spy.last
    pa = res.person
    row: dict[str, object] = {
        "status": "ok",
        "seconds": round(elapsed, 3),
        "category": res.garments[0].category,
        "sleeve": res.garments[0].sleeve,
        "length": res.garments[0].length,
        "refined": res.refined,
        "warnings": [r for r, _m in res.warnings],
    }
    try:
        pa_out = checker.analyze(res.image)
        row["pose"] = pck(pa.landmarks, pa_out.landmarks, pa.size)
    except InvalidInputError as exc:
        row["pose"] = {"pck": 0.0, "error": f"{exc.reason}: {exc}"}
    row["pose"]["pck_input_redetect"] = pck(pa.landmarks, pa_in_redetect.landmarks, pa.size)["pck"]
    row["identity"] = identity(photo, res.image, pa, res.garment_alpha, comp.cleared)
    row["colour"] = colour(flat, res.image, res.garment_alpha, comp.protect, comp.shading, pattern)
    row["coverage"] = coverage(pa, res.garment_alpha, row["category"], row["sleeve"], row["length"])
    return row, res.image


def headline(row) -> dict[str, float | None]:
    if row["status"] != "ok":
        return dict.fromkeys(GOALS)
    return {
        "pck": row["pose"]["pck"],
        "psnr_identity_db": row["identity"]["psnr_identity_db"],
        "delta_e00": row["colour"].get("delta_e00"),
        "coverage_iou": row["coverage"]["coverage_iou"],
    }


def passes(metric: str, value) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return False
    op, goal = GOALS[metric]
    return value >= goal if op == ">=" else value <= goal


def aggregate(rows: list[dict]) -> dict[str, object]:
    ok = [headline(r) for r in rows if r["status"] == "ok"]
    out: dict[str, object] = {
        "pairs": len(rows),
        "ok": len(ok),
        "refused": sum(r["status"] == "refused" for r in rows),
        "failed": sum(r["status"] == "error" for r in rows),
    }
    for m, (op, goal) in GOALS.items():
        vals = [h[m] for h in ok if h[m] is not None]
        if not vals:
            out[m] = {"goal": f"{op} {goal}", "n": 0}
            continue
        worst = min(vals) if op == ">=" else max(vals)
        mean = float(np.mean(vals))
        out[m] = {
            "goal": f"{op} {goal}",
            "n": len(vals),
            "mean": round(mean, 4),
            "min": round(min(vals), 4),
            "max": round(max(vals), 4),
            "worst": round(worst, 4),
            "mean_passes": passes(m, mean),
            "pairs_passing": sum(passes(m, v) for v in vals),
            "all_pass": all(passes(m, v) for v in vals),
        }
    return out


# --------------------------------------------------------------------------- report


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _fmt(v, spec: str) -> str:
    if v is None:
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width or 0))
    return format(v, spec)


def print_table(mode: str, rows: list[dict], agg: dict) -> None:
    print(f"\nrefine={mode}")
    head = (
        f"{'photo':<13} {'garment':<25} {'status':<8} {'PCK':>6} {'PSNRout':>8} {'PSNRid':>7}"
        f" {'dE00':>6} {'dEclu':>6} {'IoU':>6}  note"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        h = headline(r)
        note = ""
        if r["status"] != "ok":
            note = r.get("reason", "")
        else:
            note = (
                ""
                if all(passes(m, h[m]) for m in GOALS)
                else "fails: " + ",".join(m for m in GOALS if not passes(m, h[m]))
            )
        print(
            f"{r['photo']:<13} {r['garment']:<25} {r['status']:<8} {_fmt(h['pck'], '6.3f')}"
            f" {_fmt(r.get('identity', {}).get('psnr_outside_db'), '8.2f')}"
            f" {_fmt(h['psnr_identity_db'], '7.2f')} {_fmt(h['delta_e00'], '6.2f')}"
            f" {_fmt(r.get('colour', {}).get('delta_e00_clusters'), '6.2f')}"
            f" {_fmt(h['coverage_iou'], '6.3f')}  {note}"
        )
    print("real photos:")
    print_aggregate(agg)


def print_aggregate(agg: dict) -> None:
    print(f"aggregate over {agg['ok']} pairs ({agg['refused']} refused, {agg['failed']} failed):")
    for m in GOALS:
        a = agg[m]
        if not a.get("n"):
            print(f"  {m:<18} no data")
            continue
        print(
            f"  {m:<18} mean {a['mean']:8.3f}  min {a['min']:8.3f}  max {a['max']:8.3f}"
            f"  goal {a['goal']:<8} mean {'PASS' if a['mean_passes'] else 'FAIL'},"
            f" {a['pairs_passing']}/{a['n']} pairs pass"
        )


def _fit(img: np.ndarray, w: int, h: int, bg=(255, 255, 255)) -> np.ndarray:
    s = min(w / img.shape[1], h / img.shape[0])
    nw, nh = max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    canvas = np.full((h, w, 3), bg, np.uint8)
    y0, x0 = (h - nh) // 2, (w - nw) // 2
    canvas[y0 : y0 + nh, x0 : x0 + nw] = small
    return canvas


def _caption(lines: list[tuple[str, tuple[int, int, int]]], w: int, h: int) -> np.ndarray:
    cap = np.full((h, w, 3), 255, np.uint8)
    for i, (text, col) in enumerate(lines):
        cv2.putText(cap, text, (4, 14 + 15 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.4, col, 1, cv2.LINE_AA)
    return cap


def contact_sheet(photos, flats, garments, rows, images, tile_w=200, tile_h=234) -> np.ndarray:
    """Rows: flat-lays, then one per photo; columns: garments; a caption under each tile."""
    label_w, cap_h = 110, 50
    green, red, black = (0, 130, 0), (200, 0, 0), (0, 0, 0)
    by = {(r["photo"], r["garment"]): r for r in rows}
    lines_out = []

    def row_strip(label: str, tiles: list[np.ndarray]) -> np.ndarray:
        lab = np.full((tile_h + cap_h, label_w, 3), 255, np.uint8)
        cv2.putText(lab, label, (4, tile_h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, black, 1)
        return np.concatenate([lab, *tiles], axis=1)

    tiles = []
    for gid, *_ in garments:
        t = _fit(flats[gid].image[..., :3], tile_w, tile_h)
        tiles.append(np.concatenate([t, _caption([(gid[:26], black)], tile_w, cap_h)], axis=0))
    lines_out.append(row_strip("flat-lays", tiles))
    for pname, photo in photos.items():
        tiles = []
        for gid, *_ in garments:
            r = by[(pname, gid)]
            if r["status"] != "ok":
                t = _fit(photo, tile_w, tile_h)
                t = (0.35 * t + 0.65 * 255).astype(np.uint8)
                cv2.putText(t, r["status"].upper(), (8, tile_h // 2 - 10), 0, 0.6, red, 2)
                cv2.putText(t, r.get("reason", "")[:24], (8, tile_h // 2 + 14), 0, 0.4, red, 1)
                cap = _caption([(r.get("reason", "")[:28], red)], tile_w, cap_h)
            else:
                t = _fit(images[(pname, gid)], tile_w, tile_h)
                h = headline(r)

                def c(m, h=h):
                    return green if passes(m, h[m]) else red

                cap = _caption(
                    [
                        (f"PCK {h['pck']:.2f}  PSNR {h['psnr_identity_db']:.1f}", black),
                        (f"dE {_fmt(h['delta_e00'], '.2f')}  IoU {h['coverage_iou']:.2f}", black),
                        (
                            " ".join(
                                ("ok" if passes(m, h[m]) else "X") + ":" + k
                                for m, k in zip(GOALS, ("pck", "psnr", "dE", "iou"), strict=True)
                            ),
                            c("pck") if all(passes(m, h[m]) for m in GOALS) else red,
                        ),
                    ],
                    tile_w,
                    cap_h,
                )
            tiles.append(np.concatenate([t, cap], axis=0))
        lines_out.append(row_strip(pname, tiles))
    sheet = np.concatenate(lines_out, axis=0)
    # Thin grid lines between tiles.
    for i in range(1, len(lines_out)):
        sheet[i * (tile_h + cap_h) - 1, :] = 180
    for j in range(len(garments) + 1):
        sheet[:, label_w + j * tile_w - 1] = 180
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer garments (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"), help="output directory")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    machine = describe_machine()
    photos = load_photos()
    garments = [g for g in GARMENTS if not args.quick or g[0] in QUICK_GARMENTS]
    flats = {
        gid: draw_garment(kind, pattern, color=col, color2=col2, seed=seed)
        for gid, kind, pattern, col, col2, seed in garments
    }
    refine_fn = make_refine_fn()
    modes = [("off", False)] + ([("on", True)] if refine_fn is not None else [])
    analyzer, checker = P.PersonAnalyzer(), P.PersonAnalyzer()
    pipe = TryOnPipeline(analyzer, refine_fn)
    redetect = {name: checker.analyze(photo) for name, photo in photos.items()}

    results: dict[str, object] = {}
    images: dict[tuple[str, str], np.ndarray] = {}
    try:
        for mode, refine in modes:
            rows = []
            for pname, photo in photos.items():
                for gid, kind, pattern, *_ in garments:
                    base = {"photo": pname, "garment": gid, "kind": kind, "pattern": pattern}
                    try:
                        row, img = run_pair(
                            pipe, checker, photo, redetect[pname], flats[gid], pattern, refine
                        )
                        if mode == "off":
                            images[(pname, gid)] = img
                    except InvalidInputError as exc:
                        row = {"status": "refused", "reason": exc.reason, "message": str(exc)}
                    except Exception as exc:  # a metric or pipeline fault: record, go on
                        row = {"status": "error", "reason": type(exc).__name__, "message": str(exc)}
                    rows.append({**base, **row})
            agg = aggregate([r for r in rows if r["photo"] != FIGURE])
            agg_fig = aggregate([r for r in rows if r["photo"] == FIGURE])
            print_table(mode, rows, agg)
            print("figure (synthetic full body), separately:")
            print_aggregate(agg_fig)
            results[mode] = {"pairs": rows, "aggregate": agg, "aggregate_figure": agg_fig}
    finally:
        analyzer.close()
        checker.close()
    elapsed = time.perf_counter() - t0
    print(
        f"machine: {machine['cpu_model']}, {machine['cpu_usable']}/{machine['cpu_count']} cores;"
        f" refiner {'available: ran refine off and on' if refine_fn else 'NOT available (services.refiner.classical missing): refine off only'}"
    )
    print(f"total {elapsed:.1f} s{' (quick)' if args.quick else ''}")

    args.out.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(photos, flats, garments, results["off"]["pairs"], images)
    png = args.out / "quality_tryon.png"
    cv2.imwrite(str(png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    doc = {
        "benchmark": "quality_tryon",
        "quick": args.quick,
        "elapsed_seconds": round(elapsed, 3),
        "machine": machine,
        "refiner_available": refine_fn is not None,
        "refine_modes": [m for m, _ in modes],
        "photos": {k: list(v.shape) for k, v in photos.items()},
        "garments": [
            {"id": g, "kind": k, "pattern": p, "color": c, "color2": c2, "seed": s}
            for g, k, p, c, c2, s in garments
        ],
        "goals": {m: f"{op} {v}" for m, (op, v) in GOALS.items()},
        "method": {
            "pose": POSE_METHOD,
            "pose_normalisation": f"threshold = {PCK_THRESHOLD} x max(image width, height) px",
            "identity": IDENTITY_METHOD,
            "colour": COLOUR_METHOD,
            "coverage": COVERAGE_METHOD,
            "contact_sheet": "refine=off outputs; caption: PCK, PSNR identity, dE00, IoU",
            "bottom_coverage": (
                "bottoms: the input's lower_clothes (a skirt: each row spanned from its first "
                "to its last pixel) down to the hip line + 0.45 (cropped) / 0.6 (regular) / "
                "1.0 (long) leg lengths, minus shoes (heel-toe line) and hands"
            ),
        },
        "results": results,
    }
    path = args.out / "quality_tryon.json"
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n", encoding="utf-8")
    print(f"wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
