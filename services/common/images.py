"""Image decoding with limits, and encoding of results.

Every service decodes uploads through :func:`decode_image`, so every service refuses the
same things with the same reasons. The order of checks matters: size in bytes first, then
the header (format, dimensions, pixel count) *before* any pixel is decoded, so a
decompression bomb costs a header parse, not gigabytes.
"""

from __future__ import annotations

import dataclasses
import io
import warnings

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from services.common.errors import InvalidInputError

# Truncated files are refused, never silently padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# We enforce our own (configurable) pixel limit before decoding; Pillow's global guard would
# otherwise raise its own error with another wording for some sizes.
Image.MAX_IMAGE_PIXELS = None

# Container formats accepted on input (Pillow format names). Others Pillow can parse
# (ICO, PSD, EPS, ...) are refused: less attack surface, and none is a photo format.
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
# Formats an output can be written in (see drape.common.v1.ImageFormat).
OUTPUT_FORMATS = ("PNG", "JPEG", "WEBP")


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """What :func:`decode_image` accepts.

    Attributes:
        max_bytes: largest encoded size.
        max_pixels: largest width x height, checked from the header.
    """

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 50_000_000

    @classmethod
    def from_settings(cls, settings) -> ImageLimits:
        """Limits from a :class:`services.common.config.Settings`."""
        return cls(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)


@dataclasses.dataclass(frozen=True)
class DecodedImage:
    """A decoded, oriented, normalised image.

    Attributes:
        pixels: ``uint8`` array, ``H x W x 3`` (RGB) or ``H x W x 4`` (RGBA, straight alpha).
        source_format: Pillow's format name, e.g. ``"JPEG"``.
        source_mode: pixel mode as stored, e.g. ``"CMYK"``, ``"I;16"``, ``"P"``.
        source_size: ``(width, height)`` as stored, before orientation.
        exif_orientation: EXIF orientation tag that was applied (1 when none).
    """

    pixels: np.ndarray
    source_format: str
    source_mode: str
    source_size: tuple[int, int]
    exif_orientation: int

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[2] == 4

    def rgb(self, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
        """The pixels as RGB, alpha composited over ``background``."""
        if not self.has_alpha:
            return self.pixels
        alpha = self.pixels[..., 3:4].astype(np.float32) / 255.0
        bg = np.asarray(background, np.float32)
        out = self.pixels[..., :3].astype(np.float32) * alpha + bg * (1.0 - alpha)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _refuse(reason: str, message: str, field: str, **meta: object) -> InvalidInputError:
    return InvalidInputError(
        reason, message, field=field, metadata={k: str(v) for k, v in meta.items()}
    )


def decode_image(
    data: bytes, limits: ImageLimits = ImageLimits(), field: str = "image"
) -> DecodedImage:
    """Decode an uploaded image under ``limits``.

    Args:
        data: the encoded file.
        limits: size limits.
        field: the request field the bytes came from, named in refusals.

    Returns:
        The decoded image: EXIF orientation applied; palette, grayscale, CMYK, 16-bit and
        float images converted to 8-bit RGB; images with any transparency to RGBA.

    Raises:
        InvalidInputError: with reason IMAGE_EMPTY, IMAGE_TOO_LARGE, IMAGE_UNRECOGNIZED,
            IMAGE_FORMAT_UNSUPPORTED, IMAGE_INVALID_DIMENSIONS, IMAGE_TOO_MANY_PIXELS,
            IMAGE_TOO_COMPLEX, IMAGE_TRUNCATED or IMAGE_CORRUPT.
    """
    try:
        return _decode(data, limits, field)
    except InvalidInputError:
        raise
    except MemoryError:
        raise _refuse("IMAGE_TOO_MANY_PIXELS", "the image is too large to decode", field) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure on untrusted bytes is bad input
        raise _refuse(
            "IMAGE_CORRUPT", f"the image cannot be decoded: {_short(exc)}", field
        ) from None


def _decode(data: bytes, limits: ImageLimits, field: str) -> DecodedImage:
    if not data:
        raise _refuse("IMAGE_EMPTY", "the image is empty (0 bytes)", field)
    if len(data) > limits.max_bytes:
        raise _refuse(
            "IMAGE_TOO_LARGE",
            f"the image is {len(data)} bytes; the limit is {limits.max_bytes}",
            field,
            size_bytes=len(data),
            limit_bytes=limits.max_bytes,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))  # lazy: parses the header only
    except UnidentifiedImageError:
        sniffed = _sniff(data)
        if sniffed == "PNG" and len(data) >= 24:
            w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            if data[12:16] == b"IHDR" and (w == 0 or h == 0):
                raise _refuse(
                    "IMAGE_INVALID_DIMENSIONS", f"the image is {w} x {h} pixels", field
                ) from None
        if sniffed:
            raise _refuse(
                "IMAGE_CORRUPT",
                f"the data starts like a {sniffed} file but its header cannot be parsed",
                field,
                format=sniffed,
            ) from None
        raise _refuse(
            "IMAGE_UNRECOGNIZED",
            "the bytes are not an image in a known format (expected "
            + ", ".join(ACCEPTED_FORMATS)
            + ")",
            field,
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # A recognised signature with a header that cannot be parsed (e.g. width 0).
        raise _refuse(
            "IMAGE_CORRUPT", f"the image header cannot be parsed: {_short(exc)}", field
        ) from None

    fmt = img.format or "unknown"
    if fmt not in ACCEPTED_FORMATS:
        raise _refuse(
            "IMAGE_FORMAT_UNSUPPORTED",
            f"{fmt} images are not accepted (expected {', '.join(ACCEPTED_FORMATS)})",
            field,
            format=fmt,
        )
    width, height = img.size
    if width <= 0 or height <= 0:
        raise _refuse("IMAGE_INVALID_DIMENSIONS", f"the image is {width} x {height} pixels", field)
    if width * height > limits.max_pixels:
        raise _refuse(
            "IMAGE_TOO_MANY_PIXELS",
            f"the image is {width} x {height} = {width * height} pixels; the limit is "
            f"{limits.max_pixels}",
            field,
            width=width,
            height=height,
            limit_pixels=limits.max_pixels,
        )

    _check_complexity(data, fmt, field)
    source_mode = img.mode
    try:
        img.load()
    except OSError as exc:
        text = str(exc).lower()
        if "truncated" in text or "premature end" in text or "unexpected end" in text:
            raise _refuse(
                "IMAGE_TRUNCATED", "the image data ends early (truncated file)", field
            ) from None
        raise _refuse(
            "IMAGE_CORRUPT", f"the image data cannot be decoded: {_short(exc)}", field
        ) from None
    except (SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise _refuse(
            "IMAGE_CORRUPT", f"the image data cannot be decoded: {_short(exc)}", field
        ) from None

    orientation = 1
    try:
        orientation = int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # a broken EXIF block: ignore orientation rather than refuse the photo
        orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    if orientation != 1:
        # Rotate/flip the pixels only. ImageOps.exif_transpose also rewrites the EXIF block,
        # which raises on malformed EXIF that the photo itself does not need.
        img = img.transpose(_ORIENTATION_OPS[orientation])

    pixels = _normalise(img)
    return DecodedImage(
        pixels=pixels,
        source_format=fmt,
        source_mode=source_mode,
        source_size=(width, height),
        exif_orientation=orientation,
    )


# EXIF orientation → the transpose that makes the image upright (EXIF 2.32, tag 0x0112).
_ORIENTATION_OPS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Decoding cost grows with the number of progressive scans (each one revisits every
# coefficient); cameras and encoders write at most a dozen or so. A file with thousands of
# tiny scans is a CPU bomb: a 1.7 MB 7000x7000 JPEG with 20 000 scans took 5 minutes.
MAX_JPEG_SCANS = 100
# Each PNG chunk is parsed in Python; real files have tens, bombs have millions.
MAX_PNG_CHUNKS = 10_000


def _check_complexity(data: bytes, fmt: str, field: str) -> None:
    """Refuse files whose structure would make decoding cost far more than their size."""
    if fmt == "JPEG":
        # 0xFFDA (start of scan) cannot occur in entropy-coded data (0xFF is stuffed as
        # 0xFF00 there), so counting it counts scans, plus any in an EXIF thumbnail.
        scans = data.count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS:
            raise _refuse(
                "IMAGE_TOO_COMPLEX",
                f"the JPEG has {scans} scans; at most {MAX_JPEG_SCANS} are accepted",
                field,
            )
    elif fmt == "PNG":
        count, pos = 0, 8
        while pos + 8 <= len(data):
            count += 1
            if count > MAX_PNG_CHUNKS:
                raise _refuse(
                    "IMAGE_TOO_COMPLEX",
                    f"the PNG has more than {MAX_PNG_CHUNKS} chunks",
                    field,
                )
            length = int.from_bytes(data[pos : pos + 4], "big")
            if data[pos + 4 : pos + 8] == b"IEND":
                break
            pos += 12 + length


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _sniff(data: bytes) -> str | None:
    """Format named by the file's signature, whether or not the rest parses."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


def _normalise(img: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> uint8 RGB or RGBA array."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img)
        # 16-bit samples scale by 1/257 (65535 -> 255, rounded); 32-bit "I" images from
        # 16-bit PNGs hold 0..65535 as well. Integer arithmetic: no float64 temporaries.
        wide = np.clip(arr, 0, 65535).astype(np.uint32)
        wide += 128
        wide //= 257
        return np.repeat(wide.astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32), copy=False)
        if arr.size and arr.max() <= 1.0:  # normalised floats
            arr *= 255.0
        arr += 0.5
        np.clip(arr, 0, 255, out=arr)
        return np.repeat(arr.astype(np.uint8)[..., None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif mode in ("PA", "LA") or (mode in ("L", "1") and "transparency" in img.info):
        img = img.convert("RGBA")
    elif mode in ("L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode == "LA" or mode == "RGB" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in mode else "RGB")
    if img.mode == "RGBA":
        arr = np.asarray(img)
        if arr[..., 3].min() == 255:  # alpha channel that hides nothing
            return np.ascontiguousarray(arr[..., :3])
        return np.ascontiguousarray(arr)
    return np.ascontiguousarray(np.asarray(img.convert("RGB")))


def encode_image(pixels: np.ndarray, fmt: str = "PNG", quality: int = 92) -> bytes:
    """Encode an ``H x W x 3|4`` uint8 array as PNG, JPEG or WebP.

    JPEG cannot carry alpha: RGBA is composited over white first.

    Raises:
        ValueError: for an unknown format or a bad array (a programming error, not input).
    """
    fmt = fmt.upper()
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {fmt!r}")
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"expected HxWx3|4 uint8, got {pixels.shape} {pixels.dtype}")
    if fmt == "JPEG" and pixels.shape[2] == 4:
        pixels = DecodedImage(pixels, "", "", (0, 0), 1).rgb()
    img = Image.fromarray(pixels)
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, "PNG", compress_level=6)
    elif fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality, optimize=True)
    else:
        img.save(buf, "WEBP", quality=quality, method=4)
    return buf.getvalue()
