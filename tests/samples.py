"""Image and video inputs for tests, made in code: valid ones of every unusual kind and
broken ones of every kind a client has sent us. Nothing here is downloaded."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def gradient(width: int = 64, height: int = 48) -> np.ndarray:
    """An RGB test card whose corners differ, so rotations and flips are detectable."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    g = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    b = np.full_like(r, 60)
    return np.dstack([r, g, b])


def encode(pixels: np.ndarray | Image.Image, fmt: str, **kw) -> bytes:
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg(width: int = 64, height: int = 48) -> bytes:
    return encode(gradient(width, height), "JPEG", quality=90)


def png(width: int = 64, height: int = 48) -> bytes:
    return encode(gradient(width, height), "PNG")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` (8-bit RGB) with one tiny IDAT: a
    decompression bomb as far as any decoder that trusts the header is concerned."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def png_16bit() -> bytes:
    """A 16-bit grayscale PNG: a ramp from 0 to 65535 along x."""
    ramp = np.linspace(0, 65535, 32).astype(np.uint16)
    arr = np.tile(ramp, (8, 1))
    return encode(Image.fromarray(arr), "PNG")


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG of pure cyan (C=255, M=Y=K=0)."""
    img = Image.new("CMYK", (40, 30), (255, 0, 0, 0))
    return encode(img, "JPEG", quality=95)


def palette_png_with_transparency() -> bytes:
    """A palette PNG: left half index 0 (fully transparent), right half index 1 (red)."""
    img = Image.new("P", (20, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    for x in range(10, 20):
        for y in range(10):
            img.putpixel((x, y), 1)
    return encode(img, "PNG", transparency=0)


def exif_rotated_jpeg(orientation: int = 6) -> bytes:
    """A 64x48 gradient JPEG stored as is, with an EXIF orientation tag (6 = the viewer
    must rotate 90 degrees clockwise, so the upright image is 48x64)."""
    img = Image.fromarray(gradient(64, 48))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[: int(len(data) * keep)]


def random_bytes(n: int = 4096, seed: int = 7) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


TEXT_FILE = b"name,sku,price\nlinen shirt,SKU-123,49.90\n" * 20


def jpeg_scan_bomb(extra_scans: int = 300) -> bytes:
    """A small progressive JPEG whose last scan is repeated: cheap to send, and each
    repeated scan makes a decoder revisit every coefficient."""
    base = encode(gradient(64, 64), "JPEG", progressive=True, quality=80)
    last_scan = base[base.rfind(b"\xff\xda") : -2]  # up to, not including, EOI
    return base[:-2] + last_scan * extra_scans + b"\xff\xd9"


def grayscale_png_with_transparency() -> bytes:
    """An 8-bit grayscale PNG whose value 0 is transparent (tRNS): left half 0, right 200."""
    arr = np.zeros((6, 12), np.uint8)
    arr[:, 6:] = 200
    return encode(Image.fromarray(arr), "PNG", transparency=0)
