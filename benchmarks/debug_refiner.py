"""Before/after contact sheet of the classical refiner, with its figures.

Two real photos (``skimage.data.astronaut()`` and matplotlib's ``grace_hopper.jpg``) get a
synthetic garment on the torso: a striped heather-grey knit whose folds and light come from
the photo itself (the "correctly lit" truth), pasted instead with a deliberately wrong light
(a blue cast, linear gains 0.85 / 1.0 / 1.2, and 1.5x too bright), no grain and an aliased
edge. Each row of ``DIR/refiner.png`` shows: the photo, the truth, the mis-lit composite,
the refined result, the change (|refined - composite| x 4) and 4x crops of the seam before
and after. The script prints, per photo, the white-balance angle and the mean CIEDE2000 to
the truth before and after, the gains the refiner chose, and the time per stage on a
768 x 1024 composite.

Usage::

    python benchmarks/debug_refiner.py [--out DIR] [--quick]

Not a ``bench_*`` script: ``run_all.py`` does not run it. The figures describe one machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import skimage.data
from PIL import Image, ImageDraw
from skimage.color import deltaE_ciede2000, rgb2lab

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.refiner.classical import refine, to_linear, to_srgb255  # noqa: E402

# Wrong light of the pasted garment, in linear RGB: a blue cast, 50 % too bright.
CAST = np.array([0.85, 1.0, 1.2], np.float32)
OVEREXPOSURE = 1.5
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def grace_hopper() -> np.ndarray:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.asarray(Image.open(path).convert("RGB"))


def tee_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """A T-shirt-like silhouette in ``box`` (x0, y0, x1, y1) as a 0..1 alpha, drawn at 4x
    and area-downsampled: the 1 px anti-aliasing of a warped, pasted cut-out."""
    h, w = shape
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    pts = [
        (x0 + 0.30 * bw, y0),
        (x0 + 0.42 * bw, y0 + 0.06 * bh),
        (x0 + 0.58 * bw, y0 + 0.06 * bh),
        (x0 + 0.70 * bw, y0),
        (x1, y0 + 0.18 * bh),
        (x1 - 0.08 * bw, y0 + 0.38 * bh),
        (x1 - 0.14 * bw, y0 + 0.30 * bh),
        (x1 - 0.14 * bw, y1),
        (x0 + 0.14 * bw, y1),
        (x0 + 0.14 * bw, y0 + 0.30 * bh),
        (x0 + 0.08 * bw, y0 + 0.38 * bh),
        (x0, y0 + 0.18 * bh),
    ]
    big = Image.new("L", (w * 4, h * 4), 0)
    ImageDraw.Draw(big).polygon([(4 * x, 4 * y) for x, y in pts], fill=255)
    small = big.resize((w, h), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


def knit_albedo(shape: tuple[int, int], kind: str = "knit", seed: int = 1) -> np.ndarray:
    """Linear-RGB albedo with a fine fibre texture: ``"knit"`` is heather grey with navy
    stripes, ``"red"`` a plain red jersey."""
    h, w = shape
    rng = np.random.default_rng(seed)
    yy = np.mgrid[0:h, 0:w][0]
    alb = np.empty((h, w, 3), np.float32)
    if kind == "red":
        alb[:] = (0.55, 0.04, 0.04)
    else:
        alb[:] = (0.42, 0.42, 0.42)
        stripe = (yy // max(4, h // 60)) % 5 == 0
        alb[stripe] = (0.05, 0.07, 0.20)
    fibre = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.0)
    return alb * (1.0 + 0.12 * fibre)[..., None]


def scene_light(person: np.ndarray) -> np.ndarray:
    """The photo's light colour, read off its brightest near-neutral backdrop pixels (the
    test's ground truth; the refiner estimates it its own way)."""
    lin = to_linear(person).reshape(-1, 3)
    y = lin @ LUMA
    chroma = lin / np.maximum(y, 1e-6)[:, None]
    cos = chroma.sum(1) / (np.sqrt(3) * np.linalg.norm(chroma, axis=1) + 1e-9)
    near = (cos > np.cos(np.radians(10))) & (y > 0.2) & (lin.max(1) < 0.95)
    light = np.median(chroma[near], axis=0)
    return (light / (light @ LUMA)).astype(np.float32)


def make_case(person: np.ndarray, box: tuple[int, int, int, int], kind: str = "knit"):
    """(truth, mis-lit composite, alpha) for a garment of ``kind`` in ``box``."""
    h, w = person.shape[:2]
    alpha = tee_mask((h, w), box)
    # Folds and light: the photo's broad light fall-off (its luminance blurred far beyond any
    # detail, so the old clothes' badges do not print through) times a few soft folds.
    y = cv2.GaussianBlur(to_linear(person) @ LUMA, (0, 0), 0.08 * h)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    folds = 1.0 + 0.12 * np.sin(2 * np.pi * (xx / (0.11 * w) + 0.8 * np.sin(yy / (0.09 * h))))
    shade = np.clip(y / np.percentile(y[alpha > 0.5], 90), 0.5, 1.1) * folds
    shade = shade[..., None]
    garment = knit_albedo((h, w), kind) * scene_light(person) * shade

    def paste(garment_lin: np.ndarray) -> np.ndarray:
        g = to_srgb255(garment_lin)
        out = g * alpha[..., None] + person.astype(np.float32) * (1 - alpha[..., None])
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    return paste(garment), paste(garment * CAST * OVEREXPOSURE), alpha


def wb_angle(img: np.ndarray, truth: np.ndarray, core: np.ndarray) -> float:
    """Angle (degrees) between the mean linear colours of ``img`` and ``truth`` on ``core``."""
    a, b = to_linear(img)[core].mean(0), to_linear(truth)[core].mean(0)
    return float(
        np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))
    )


def mean_de(img: np.ndarray, truth: np.ndarray, core: np.ndarray) -> float:
    """Mean CIEDE2000 on ``core`` after a 2 px blur (colour, not grain)."""

    def lab(x):
        return rgb2lab(cv2.GaussianBlur(x, (0, 0), 2.0)[core].reshape(-1, 1, 3) / 255.0)

    return float(deltaE_ciede2000(lab(img), lab(truth)).mean())


def label(img: np.ndarray, text: str) -> np.ndarray:
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    draw.rectangle((0, 0, 8 + 6 * len(text), 14), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(pil)


def seam_crop(img: np.ndarray, alpha: np.ndarray, size: int) -> np.ndarray:
    """A 4x nearest-neighbour zoom of the garment's left edge at mid-height."""
    rows = np.flatnonzero((alpha > 0.5).any(1))
    r = int(rows[len(rows) * 2 // 3])
    c = int(np.flatnonzero(alpha[r] > 0.5)[0])
    half = size // 8
    r0 = int(np.clip(r - half, 0, img.shape[0] - 2 * half))
    c0 = int(np.clip(c - half, 0, img.shape[1] - 2 * half))
    crop = img[r0 : r0 + 2 * half, c0 : c0 + 2 * half]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_NEAREST)


def run_case(name: str, person: np.ndarray, box, protect_box) -> tuple[np.ndarray, dict]:
    truth, comp, alpha = make_case(person, box)
    protect = np.zeros(alpha.shape, bool)
    x0, y0, x1, y1 = protect_box
    protect[y0:y1, x0:x1] = True
    res = refine(comp, person, alpha, protect, seed=0)
    core = cv2.erode((alpha > 0.99).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    # Colour identity: a red garment already in the scene's light must keep its colour.
    red, _, _ = make_case(person, box, "red")
    red_refined = refine(red, person, alpha, protect, seed=0).image
    figs = {
        "de_identity_red": mean_de(red_refined, red, core),
        "wb_angle_before": wb_angle(comp, truth, core),
        "wb_angle_after": wb_angle(res.image, truth, core),
        "de_truth_before": mean_de(comp, truth, core),
        "de_truth_after": mean_de(res.image, truth, core),
        "stats": res.stats,
    }
    diff = np.clip(np.abs(res.image.astype(int) - comp.astype(int)) * 4, 0, 255).astype(np.uint8)
    h = person.shape[0]
    row = [
        label(person, f"{name}: photo"),
        label(truth, "truth (scene light)"),
        label(comp, "composite: blue, 1.5x"),
        label(res.image, "refined"),
        label(diff, "|refined-comp| x4"),
        np.vstack(
            [
                label(seam_crop(comp, alpha, h // 2), "seam before x4"),
                label(seam_crop(res.image, alpha, h - h // 2), "seam after x4"),
            ]
        ),
    ]
    return np.hstack(row), figs


def time_stages(person: np.ndarray, quick: bool) -> dict[str, float]:
    """Median seconds per stage of ``refine`` on a 768 x 1024 (W x H) composite."""
    big = cv2.resize(person, (768, 1024), interpolation=cv2.INTER_CUBIC)
    _, comp, alpha = make_case(big, (150, 560, 620, 1000))
    runs = [refine(comp, big, alpha, None, seed=i) for i in range(2 if quick else 12)]
    names = list(runs[0].stages)
    out = {n: statistics.median(r.stages[n] for r in runs[1:] or runs) for n in names}
    out["total"] = statistics.median(sum(r.stages.values()) for r in runs[1:] or runs)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    ap.add_argument("--quick", action="store_true", help="fewer timing runs")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    cases = [
        ("astronaut", skimage.data.astronaut(), (120, 290, 370, 512), (150, 40, 310, 190)),
        ("grace_hopper", grace_hopper(), (20, 330, 500, 600), (150, 100, 380, 330)),
    ]
    rows, width = [], 0
    for name, person, box, protect_box in cases:
        t0 = time.perf_counter()
        row, figs = run_case(name, person, box, protect_box)
        s = figs["stats"]
        print(
            f"{name:13s} WB angle {figs['wb_angle_before']:5.2f} -> {figs['wb_angle_after']:5.2f}"
            f" deg | CIEDE2000 to truth {figs['de_truth_before']:5.2f} ->"
            f" {figs['de_truth_after']:5.2f} | wb {s['wb_gains']} exposure"
            f" {s['exposure_gain']} contrast {s['contrast_gain']} noise added"
            f" {s['noise_sigma_added']} | red garment in correct light: CIEDE2000 change"
            f" {figs['de_identity_red']:.2f} | {time.perf_counter() - t0:.2f} s"
        )
        rows.append(row)
        width = max(width, row.shape[1])
    sheet = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
    path = args.out / "refiner.png"
    Image.fromarray(sheet).save(path)
    print(f"wrote {path} ({sheet.shape[1]} x {sheet.shape[0]})")

    stages = time_stages(skimage.data.astronaut(), args.quick)
    print(
        "768x1024 per stage (median ms): "
        + ", ".join(f"{k} {v * 1e3:.1f}" for k, v in stages.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
