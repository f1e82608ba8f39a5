"""Contact sheet of garment analysis, for looking at (not a test, not a timing).

Draws every garment kind on every backdrop with :mod:`services.tryon.flatlays`, runs
:func:`services.common.analysis.garment.analyze_garment` on each, and writes one PNG grid:
a row per kind, a column per backdrop. Each tile shows the flat-lay with the found mask's
outline (blue), the true landmarks (green), the found ones (red, joined to the truth by a
line) and a caption with the found category / sleeve / length; the caption is red when it
differs from the truth, and a refusal is written across the tile.

Usage::

    python benchmarks/debug_garments.py [--out DIR] [--quick] [--pattern P] [--seed N]

The sheet goes to ``DIR/garments.png`` (default ``out/debug/garments.png``). ``--quick``
draws smaller tiles. ``benchmarks/run_all.py`` passes ``--out`` and ``--quick``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.analysis.garment import analyze_garment  # noqa: E402
from services.common.errors import InvalidInputError  # noqa: E402
from services.tryon.flatlays import BACKGROUNDS, KINDS, PATTERNS, draw_garment  # noqa: E402

GREEN = (0, 170, 0)
RED = (230, 0, 0)
BLUE = (0, 90, 255)


def _checkerboard(h: int, w: int) -> np.ndarray:
    cells = (np.indices((h, w)).sum(axis=0) // 12) % 2
    return np.repeat((170 + 40 * cells).astype(np.uint8)[..., None], 3, axis=2)


def tile(kind: str, background: str, pattern: str, seed: int, size: int) -> tuple[np.ndarray, bool]:
    """One annotated tile and whether the analysis agreed with the truth."""
    flat = draw_garment(kind, pattern, size=(size, size), background=background, seed=seed)
    img = flat.image
    if img.shape[2] == 4:
        a = img[..., 3:4].astype(np.float32) / 255.0
        img = (img[..., :3] * a + _checkerboard(size, size) * (1 - a)).astype(np.uint8)
    canvas = np.ascontiguousarray(img.copy())
    ok = True
    try:
        found = analyze_garment(flat.image)
    except InvalidInputError as exc:
        cv2.putText(canvas, exc.reason, (8, size // 2), 0, 0.5, RED, 1, cv2.LINE_AA)
        return canvas, False
    x0, y0, x1, y1 = found.bbox
    full = np.zeros((size, size), np.uint8)
    full[y0:y1, x0:x1] = found.mask >= 0.5
    contours, _ = cv2.findContours(full, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, BLUE, 1, cv2.LINE_AA)
    inter = np.logical_and(full, flat.mask).sum()
    iou = inter / max(1, np.logical_or(full, flat.mask).sum())
    for name, (tx, ty) in flat.landmarks.items():
        cv2.circle(canvas, (round(tx), round(ty)), 3, GREEN, -1, cv2.LINE_AA)
        if name in found.landmarks:
            fx, fy = found.landmarks[name]
            p = (round(fx + x0), round(fy + y0))
            cv2.line(canvas, (round(tx), round(ty)), p, RED, 1, cv2.LINE_AA)
            cv2.circle(canvas, p, 2, RED, -1, cv2.LINE_AA)
        else:
            ok = False
    for name in set(found.landmarks) - set(flat.landmarks):
        fx, fy = found.landmarks[name]
        cv2.drawMarker(canvas, (round(fx + x0), round(fy + y0)), RED, cv2.MARKER_CROSS, 8)
        ok = False
    got = (found.category, found.sleeve, found.length)
    want = (flat.category, flat.sleeve, flat.length)
    ok = ok and got == want
    text = f"{found.category}/{found.sleeve or '-'}/{found.length} IoU {iou:.3f}"
    cv2.putText(canvas, text, (6, 16), 0, 0.42, (0, 0, 0) if got == want else RED, 1, 16)
    return canvas, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/debug"), help="output directory")
    parser.add_argument("--quick", action="store_true", help="smaller tiles")
    parser.add_argument("--pattern", default="solid", choices=PATTERNS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    size = 256 if args.quick else 384
    t0 = time.perf_counter()
    rows, disagreements = [], 0
    for kind in KINDS:
        tiles = []
        for background in BACKGROUNDS:
            img, ok = tile(kind, background, args.pattern, args.seed, size)
            disagreements += not ok
            tiles.append(np.pad(img, ((2, 2), (2, 2), (0, 0)), constant_values=90))
        rows.append(np.hstack(tiles))
    sheet = np.vstack(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "garments.png"
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    n = len(KINDS) * len(BACKGROUNDS)
    print(
        f"{path}: {n} garments ({args.pattern}, seed {args.seed}), {disagreements} with a "
        f"wrong class or missing landmark, {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
