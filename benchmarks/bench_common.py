"""Benchmark of the shared serving library (``services.common``).

In the style of nanoGPT's ``bench.py``: build the inputs once, run every measurement a few
times to warm caches, codec tables and gRPC connections, then time ``M`` runs and report
the median and the 95th percentile. Nothing here needs a GPU or model weights.

Measured:

* ``decode_image`` of a real photo (``skimage.data.astronaut()``, 512 x 512, JPEG q90) and
  of a 12-megapixel upscale of it (4000 x 3000, JPEG q90);
* the header-only refusal of a PNG whose IHDR claims 50000 x 50000 pixels, to show that a
  decompression bomb costs a header parse (microseconds), not gigabytes;
* ``MediaService.InspectImage`` round trips over a real channel to an in-process server,
  without and with ``return_normalized`` (PNG re-encode);
* ``encode_mp4`` of 48 frames 512 x 512 at 24 fps, and ``decode_video`` of the result.

Usage::

    python benchmarks/bench_common.py [--quick] [--out DIR]

The figures describe one machine on one day; they belong in the closing notes of a change,
never in assertions in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import platform
import struct
import sys
import time
import zlib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import cv2
import grpc
import numpy as np
import skimage.data
from PIL import Image

from drape.common.v1 import common_pb2, media_service_pb2, media_service_pb2_grpc
from services.common.config import load_settings
from services.common.errors import InvalidInputError
from services.common.images import ImageLimits, decode_image
from services.common.server import create_server
from services.common.video import decode_video, encode_mp4

# (warm-up, measured) iterations per measurement. Chosen so the full run stays well under
# a minute on 2 cores; the slow, multi-frame cases get few runs, the microsecond ones many
# (their spread is dominated by scheduler noise, so more samples steady the p95).
DEFAULT_ITERS = {
    "decode_jpeg_512": (10, 200),
    "decode_jpeg_12mp": (3, 30),
    "refuse_png_bomb": (500, 10_000),
    "grpc_inspect_512": (50, 1000),
    "grpc_inspect_512_normalized_png": (5, 60),
    "encode_mp4_48x512": (2, 20),
    "decode_video_48x512": (3, 40),
}
QUICK_ITERS = {
    "decode_jpeg_512": (2, 15),
    "decode_jpeg_12mp": (1, 3),
    "refuse_png_bomb": (50, 500),
    "grpc_inspect_512": (5, 50),
    "grpc_inspect_512_normalized_png": (1, 8),
    "encode_mp4_48x512": (1, 2),
    "decode_video_48x512": (1, 3),
}

# Per-unit scale from seconds; each measurement picks the unit its figures are read in.
UNITS = {"s": 1.0, "ms": 1e3, "us": 1e6}


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    """CPU model name from /proc/cpuinfo; falls back to ``platform`` off Linux / on ARM."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                # x86 says "model name"; some ARM kernels only give "Hardware"/"Model".
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def run_pinned_child(script: str, quick: bool, tail: int = 3000) -> dict[str, object]:
    """Run ``script --one-core-child OUT [--quick]`` pinned to core 0 (``taskset``; unpinned
    where it is missing) with one OpenMP/OpenBLAS/MKL thread, and return the JSON it wrote,
    plus ``pinned`` and ``command``; ``{"error": ...}`` when the child failed."""
    import shutil
    import subprocess
    import tempfile

    taskset = shutil.which("taskset")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "one_core.json"
        cmd = [sys.executable, str(Path(script).resolve()), "--one-core-child", str(out)]
        if quick:
            cmd.append("--quick")
        if taskset:
            cmd = [taskset, "-c", "0", *cmd]
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            return {"error": f"child exited {proc.returncode}: {proc.stderr[-tail:]}"}
        doc = json.loads(out.read_text(encoding="utf-8"))
    doc["pinned"] = bool(taskset)
    doc["command"] = " ".join(cmd[:3] if taskset else cmd[:1]) + " ... --one-core-child"
    return doc


def describe_machine() -> dict[str, object]:
    """What the figures were measured on, so numbers from two runs can be compared."""
    try:
        usable = len(os.sched_getaffinity(0))  # the cores this process may actually use
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 0
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "cpu_usable": usable,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "grpcio": grpc.__version__,
        "pillow": Image.__version__,
        "av": _version("av"),
        "opencv": cv2.__version__,
    }


# --------------------------------------------------------------------------- timing


def measure(
    name: str,
    fn: Callable[[], object],
    iters: tuple[int, int],
    unit: str = "ms",
    note: str = "",
) -> dict[str, object]:
    """Run ``fn`` ``warmup`` times untimed, then ``n`` times timed.

    Args:
        name: stable identifier of the measurement (a JSON key for comparisons).
        fn: the work; its result is discarded.
        iters: ``(warmup, n)``.
        unit: ``"s"``, ``"ms"`` or ``"us"``; the unit median and p95 are reported in.
        note: a few words on the input, printed in the table.

    Returns:
        ``{name, unit, median, p95, n, min, mean, note}``.
    """
    warmup, n = iters
    for _ in range(warmup):
        fn()
    # Collect garbage left by set-up and warm-up now, so a collection is not timed below.
    gc.collect()
    samples = np.empty(n, dtype=np.float64)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t0
    scale = UNITS[unit]
    return {
        "name": name,
        "unit": unit,
        "median": float(np.median(samples)) * scale,
        "p95": float(np.percentile(samples, 95)) * scale,
        "n": n,
        "min": float(samples.min()) * scale,
        "mean": float(samples.mean()) * scale,
        "note": note,
    }


# --------------------------------------------------------------------------- inputs


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    """Encode RGB pixels as a baseline JPEG, as a phone or browser upload would arrive."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width x height`` RGB pixels.

    Only the header is honest about nothing: the IDAT holds a few compressed bytes. A
    decoder that trusted the header would allocate width*height*3 bytes (7.5 GB here).
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        # Length, type, data, CRC-32 over type + data (PNG spec, section 5.3).
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    # IHDR: width, height, bit depth 8, colour type 2 (RGB), compression, filter, interlace.
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def moving_gradient(frames: int = 48, size: int = 512) -> np.ndarray:
    """``frames x size x size x 3`` uint8: a diagonal gradient sliding a few pixels a frame.

    Motion matters: a static clip lets x264 code every P-frame as a skip, which would
    flatter the encoder far beyond what a real try-on clip gets.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        shift = 6.0 * t
        out[t, ..., 0] = ((x + shift) * 255.0 / size) % 256
        out[t, ..., 1] = ((y + 0.5 * shift) * 255.0 / size) % 256
        out[t, ..., 2] = ((x + y - shift) * 127.5 / size) % 256
    return out


def _kb(data: bytes) -> str:
    return f"{len(data) / 1024:.0f} KB"


# --------------------------------------------------------------------------- benchmarks


def bench_images(iters: dict[str, tuple[int, int]]) -> list[dict[str, object]]:
    """decode_image on a real photo, a 12 MP upscale, and the refusal of a PNG bomb."""
    photo = skimage.data.astronaut()  # 512 x 512 RGB, bundled with scikit-image
    small = jpeg_bytes(photo)
    # cv2.resize takes (width, height). Cubic: an upscale that still looks like a photo,
    # so the JPEG has realistic entropy rather than flat blocks.
    big = jpeg_bytes(cv2.resize(photo, (4000, 3000), interpolation=cv2.INTER_CUBIC))
    bomb = png_bomb()
    limits = ImageLimits()  # the defaults a server runs with: 32 MiB, 50 MP

    # Check once, outside the timed loop, that the refusal is the one we mean to time: a
    # benchmark of the wrong code path would silently report a meaningless number.
    try:
        decode_image(bomb, limits)
    except InvalidInputError as exc:
        if exc.reason != "IMAGE_TOO_MANY_PIXELS":
            raise RuntimeError(f"PNG bomb refused for the wrong reason: {exc}") from exc
    else:
        raise RuntimeError("a 50000 x 50000 PNG was accepted; the pixel limit is not applied")

    def refuse() -> None:
        with contextlib.suppress(InvalidInputError):
            decode_image(bomb, limits)

    return [
        measure(
            "decode_jpeg_512",
            lambda: decode_image(small, limits),
            iters["decode_jpeg_512"],
            note=f"astronaut 512x512 q90, {_kb(small)}",
        ),
        measure(
            "decode_jpeg_12mp",
            lambda: decode_image(big, limits),
            iters["decode_jpeg_12mp"],
            note=f"4000x3000 q90, {_kb(big)}",
        ),
        measure(
            "refuse_png_bomb",
            refuse,
            iters["refuse_png_bomb"],
            unit="us",
            note=f"IHDR 50000x50000, {len(bomb)} B",
        ),
    ]


def bench_grpc(iters: dict[str, tuple[int, int]]) -> list[dict[str, object]]:
    """InspectImage round trips to an in-process server over a real TCP channel."""
    photo = jpeg_bytes(skimage.data.astronaut())
    # No metrics HTTP server: it would bind a port and adds nothing to a call's cost.
    settings = load_settings(env={}, metrics_port=-1)
    server, port = create_server("127.0.0.1:0", settings=settings)
    server.start()
    try:
        if not server.wait_ready(timeout=30):
            raise RuntimeError(f"server did not become ready: {server.load_error!r}")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            stub = media_service_pb2_grpc.MediaServiceStub(channel)
            plain = media_service_pb2.InspectImageRequest(image=common_pb2.Image(data=photo))
            normalized = media_service_pb2.InspectImageRequest(
                image=common_pb2.Image(data=photo),
                return_normalized=True,
                output_format=common_pb2.IMAGE_FORMAT_PNG,
            )
            # One call of each outside the timing, to check the answers are real ones.
            resp = stub.InspectImage(normalized, timeout=30)
            if (resp.width, resp.height) != (512, 512) or not resp.normalized.data:
                raise RuntimeError(f"unexpected InspectImage response: {resp.width}x{resp.height}")
            png_size = len(resp.normalized.data)
            return [
                measure(
                    "grpc_inspect_512",
                    lambda: stub.InspectImage(plain, timeout=30),
                    iters["grpc_inspect_512"],
                    note=f"JPEG {_kb(photo)} in, metadata out",
                ),
                measure(
                    "grpc_inspect_512_normalized_png",
                    lambda: stub.InspectImage(normalized, timeout=30),
                    iters["grpc_inspect_512_normalized_png"],
                    note=f"+ PNG re-encode, {png_size / 1024:.0f} KB out",
                ),
            ]
    finally:
        server.stop(0)


def bench_video(iters: dict[str, tuple[int, int]]) -> list[dict[str, object]]:
    """H.264 encode of a 2 s, 512 x 512 clip and decode of the result."""
    frames = moving_gradient()
    clip = encode_mp4(frames, fps=24)
    decoded = decode_video(clip)
    if decoded.frame_count != len(frames):
        raise RuntimeError(f"decoded {decoded.frame_count} frames of {len(frames)}")
    return [
        measure(
            "encode_mp4_48x512",
            lambda: encode_mp4(frames, fps=24),
            iters["encode_mp4_48x512"],
            note="48 frames 24 fps, x264 veryfast crf 20",
        ),
        measure(
            "decode_video_48x512",
            lambda: decode_video(clip),
            iters["decode_video_48x512"],
            note=f"the clip above, {_kb(clip)}",
        ),
    ]


# --------------------------------------------------------------------------- report


def print_report(machine: dict[str, object], results: list[dict[str, object]]) -> None:
    """A fixed-width table, readable in a terminal and pasteable into notes."""
    print(
        f"machine: {machine['cpu_model']}, {machine['cpu_usable']}/{machine['cpu_count']} cores, "
        f"Python {machine['python']}, numpy {machine['numpy']}, grpcio {machine['grpcio']}, "
        f"pillow {machine['pillow']}, av {machine['av']}"
    )
    rows = [
        f"{r['name']:<33} {r['median']:>10.3f} {r['p95']:>10.3f} {r['unit']:<4} "
        f"{r['n']:>6}  {r['note']}"
        for r in results
    ]
    header = f"{'measurement':<33} {'median':>10} {'p95':>10} {'unit':<4} {'n':>6}  input"
    print(header)
    print("-" * max(len(line) for line in [header, *rows]))
    print("\n".join(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument(
        "--out", type=Path, default=None, help="directory for bench_common.json (none: no file)"
    )
    args = parser.parse_args(argv)
    iters = QUICK_ITERS if args.quick else DEFAULT_ITERS

    machine = describe_machine()
    t0 = time.perf_counter()
    results = [*bench_images(iters), *bench_grpc(iters), *bench_video(iters)]
    elapsed = time.perf_counter() - t0
    print_report(machine, results)
    print(f"total {elapsed:.1f} s{' (quick)' if args.quick else ''}")

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "bench_common.json"
        doc = {
            "benchmark": "bench_common",
            "quick": args.quick,
            "elapsed_seconds": round(elapsed, 3),
            "machine": machine,
            "measurements": results,
        }
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
