"""Fuzz target: image decoding, as every service decodes a shopper photo or a garment flat-lay.

``decode_image`` under the production limits (``ImageLimits()``: 32 MiB, 50 MP), then what
the services do with the result: ``.rgb()`` (try-on person and flat-lays, refiner,
animate still) and the MediaService's checks of the normalised pixels. Pillow's Python
parsers (PNG chunks, TIFF IFDs, JPEG markers, EXIF, BMP headers, WebP/RIFF) are instrumented
for coverage; its C decoders are not (no sanitizer build).

    .venv/bin/python benchmarks/fuzz/fuzz_images.py -max_total_time=600
    .venv/bin/python benchmarks/fuzz/fuzz_images.py out/fuzz/images/crash-...  # replay
"""

from __future__ import annotations

import io
import sys

import atheris
import numpy as np

with atheris.instrument_imports(include=["PIL", "services.common.images"]):
    from PIL import Image

    from services.common.images import ImageLimits, decode_image

    Image.init()  # imports every format plugin now, so that they are instrumented too

import _harness  # noqa: E402 - after the instrumented imports

LIMITS = ImageLimits()


def one_input(data: bytes) -> None:
    """Decode ``data``; raise only on a finding (see :mod:`_harness`)."""
    out: list = []
    err = _harness.refused(lambda: out.append(decode_image(data, LIMITS, field="image.data")))
    if err is not None:
        if not err.reason.startswith("IMAGE_"):
            raise _harness.Finding(f"decode_image refused with {err.reason}: {err}")
        return
    img = out[0]
    px = img.pixels
    if px.dtype != np.uint8 or px.ndim != 3 or px.shape[2] not in (3, 4):
        raise _harness.Finding(f"pixels are {px.shape} {px.dtype}")
    if not (px.flags["C_CONTIGUOUS"] and img.width >= 1 and img.height >= 1):
        raise _harness.Finding(f"pixels are {img.width} x {img.height}, not contiguous")
    if img.width * img.height > LIMITS.max_pixels:
        raise _harness.Finding(f"{img.width} x {img.height} decoded over the pixel limit")
    if sorted((img.width, img.height)) != sorted(img.source_size):
        raise _harness.Finding(f"size {img.width} x {img.height} from {img.source_size}")
    if not 1 <= img.exif_orientation <= 8:
        raise _harness.Finding(f"orientation {img.exif_orientation}")
    rgb = img.rgb()
    if rgb.shape != (img.height, img.width, 3) or rgb.dtype != np.uint8:
        raise _harness.Finding(f"rgb() is {rgb.shape} {rgb.dtype}")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def seeds() -> list[bytes]:
    """Small files of every accepted format and the modes and features the decoder handles
    (made here, nothing read from disk), plus a few it refuses."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    rgba = Image.fromarray(rng.integers(0, 256, (12, 16, 4), dtype=np.uint8))
    grey = rgb.convert("L")
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 0
    i16 = Image.fromarray(rng.integers(0, 65536, (12, 16), dtype=np.uint16))
    flt = Image.fromarray(rng.random((12, 16), dtype=np.float32))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    out = [
        _save(rgb, "PNG"),
        _save(rgba, "PNG"),
        _save(grey, "PNG"),
        _save(grey.convert("LA"), "PNG"),
        _save(pal, "PNG"),
        _save(pal_t, "PNG"),
        _save(rgb.convert("1"), "PNG"),
        _save(i16, "PNG"),
        _save(rgb, "PNG", exif=exif),
        _save(rgb, "JPEG", quality=80),
        _save(rgb, "JPEG", quality=80, progressive=True),
        _save(rgb, "JPEG", quality=80, exif=exif),
        _save(grey, "JPEG"),
        _save(rgb.convert("CMYK"), "JPEG"),
        _save(rgb, "WEBP", quality=70),
        _save(rgba, "WEBP", lossless=True),
        _save(rgb, "BMP"),
        _save(pal, "BMP"),
        _save(grey, "BMP"),
        _save(rgb, "TIFF"),
        _save(rgb, "TIFF", compression="tiff_lzw"),
        _save(rgb, "TIFF", compression="packbits"),
        _save(rgba, "TIFF", compression="tiff_adobe_deflate"),
        _save(rgb.convert("CMYK"), "TIFF"),
        _save(i16, "TIFF"),
        _save(flt, "TIFF"),
        _save(rgb, "TIFF", exif=exif),
        _save(rgb, "GIF"),  # a refused format
        _save(rgb, "ICO"),  # a refused format
    ]
    out.append(out[9][: len(out[9]) // 2])  # a truncated JPEG
    out.append(out[0][:40])  # a PNG cut inside its first chunk
    return out


if __name__ == "__main__":
    sys.exit(_harness.main("images", one_input, seeds))
