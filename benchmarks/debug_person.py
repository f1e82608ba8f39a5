"""Debug sheet of the person analysis on the real photos that ship in installed packages:
landmarks, face, hair, skin, arms, hands and the clothes worn now, overlaid.

Usage: python benchmarks/debug_person.py [--out DIR] [--quick]   (writes DIR/person.png)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import matplotlib
import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.common.analysis.person import PersonAnalyzer  # noqa: E402

COLOURS = {
    "face": (255, 220, 0),
    "hair": (160, 0, 255),
    "skin": (255, 120, 160),
    "upper_clothes": (0, 200, 255),
    "lower_clothes": (0, 255, 120),
    "arms": (255, 80, 0),
    "hands": (255, 255, 255),
}


def photos() -> dict[str, np.ndarray]:
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return {
        "astronaut": data.astronaut(),
        "grace_hopper": np.asarray(Image.open(hopper).convert("RGB")),
    }


def overlay(rgb: np.ndarray, pa) -> np.ndarray:
    panels = [rgb.copy()]
    for name, colour in COLOURS.items():
        m = getattr(pa, name)
        if isinstance(m, dict):
            m = m["left"] | m["right"]
        p = rgb.copy()
        p[m] = (0.35 * p[m] + 0.65 * np.array(colour)).astype(np.uint8)
        cv2.putText(p, name, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        panels.append(p)
    lmk = rgb.copy()
    for x, y, _z, v in pa.landmarks:
        c = (0, 255, 0) if v >= 0.5 else (255, 0, 0)
        cv2.circle(lmk, (int(x), int(y)), 4, c, -1)
    m = pa.measurements
    txt = f"{pa.framing} {pa.facing} sh={m.shoulder_width:.0f} ch={m.chest_width:.0f} wa={m.waist_width:.0f}"
    cv2.putText(lmk, txt, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2)
    panels.insert(1, lmk)
    return np.concatenate(panels, axis=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="out/debug")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    analyzer = PersonAnalyzer()
    rows = []
    for name, rgb in photos().items():
        pa = analyzer.analyze(rgb)
        row = overlay(rgb, pa)
        rows.append(cv2.resize(row, (row.shape[1] * 300 // row.shape[0], 300)))
        print(name, pa.framing, pa.facing, pa.measurements, pa.warnings)
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out / "person.png")
    print(f"wrote {out / 'person.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
