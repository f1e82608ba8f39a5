"""``make demo``: the main job on the embedded default, end to end over real gRPC.

Try-on over gRPC: the two real photos that ship in installed packages wearing five garments
drawn in code, then bottoms and top + bottom outfits (untucked and tucked) on the full-body
studio figure of :mod:`services.tryon.figures`; stills in ``out/tryon/`` and a contact sheet
in ``out/demo_contact_sheet.png``. Then the media checks: sample photos and awkward files
inspected and normalised as every service decodes uploads, broken files and a decompression
bomb refused with their reasons, a contact sheet and a metrics scrape in ``out/demo/``.
"""

from __future__ import annotations

import io
import json
import os
import struct
import urllib.request
import zlib
from pathlib import Path

import grpc
import numpy as np
from grpc_status import rpc_status
from PIL import Image, ImageDraw

from drape.common.v1 import common_pb2, media_service_pb2, media_service_pb2_grpc
from services.common.config import load_settings
from services.common.server import create_server


def sample_inputs() -> dict[str, bytes]:
    """The demo's inputs: real photos from installed packages and made-up edge cases."""
    import matplotlib
    from skimage import data

    out: dict[str, bytes] = {}
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=92)
    out["astronaut.jpg"] = buf.getvalue()
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    out["grace_hopper.jpg"] = hopper.read_bytes()
    # The same photo as a phone would store it: pixels sideways, EXIF says "rotate 90° CW".
    img = Image.open(hopper).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    out["grace_hopper_exif_rotated.jpg"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).convert("CMYK").save(buf, "JPEG", quality=90)
    out["astronaut_cmyk.jpg"] = buf.getvalue()
    out["truncated.jpg"] = out["astronaut.jpg"][: len(out["astronaut.jpg"]) // 2]
    out["not_an_image.txt"] = b"sku,colour\nSKU-1,navy\n"
    # A decompression bomb: a 69-byte PNG whose header claims 50 000 x 50 000 pixels.
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: (  # noqa: E731
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    )
    out["bomb_50000x50000.png"] = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )
    return out


# The answer each sample must get: None = accepted, else the refusal reason.
EXPECTED = {
    "truncated.jpg": "IMAGE_TRUNCATED",
    "not_an_image.txt": "IMAGE_UNRECOGNIZED",
    "bomb_50000x50000.png": "IMAGE_TOO_MANY_PIXELS",
}


def run_demo(out_dir: str = "out") -> int:
    """Run the demo; returns 0 when every sample got the expected answer."""
    out = Path(out_dir)
    (out / "demo").mkdir(parents=True, exist_ok=True)
    settings = load_settings(
        env={},
        grpc_address="127.0.0.1:0",
        metrics_port=0,
        log_level="WARNING",
        metrics_variants=("control",),
    )
    from services.animate.server import AnimateApp
    from services.tryon.server import TryOnApp

    server, port = create_server(
        "127.0.0.1:0", TryOnApp(settings), AnimateApp(settings), settings=settings
    )
    server.start()
    if not server.wait_ready(120):
        print("demo: the server did not become ready")
        return 1
    ok = True
    tiles: list[tuple[str, np.ndarray]] = []
    report = []
    try:
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        ) as ch:
            ok &= _tryon_demo(ch, out)
            from services.animate.demo import animate_demo

            ok &= animate_demo(ch, out)  # one try-on still as a product clip
            stub = media_service_pb2_grpc.MediaServiceStub(ch)
            print(f"{'input':32} {'answer':58}")
            for name, data in sample_inputs().items():
                req = media_service_pb2.InspectImageRequest(
                    request_id=f"demo-{name}",
                    image=common_pb2.Image(data=data),
                    return_normalized=True,
                    experiment=common_pb2.Experiment(experiment_id="demo", variant="control"),
                )
                try:
                    r = stub.InspectImage(req, timeout=30)
                except grpc.RpcError as err:
                    st = rpc_status.from_call(err)
                    reason = _reason(st)
                    line = f"refused {err.code().name} {reason}"
                    ok &= EXPECTED.get(name) == reason
                    report.append({"input": name, "code": err.code().name, "reason": reason})
                else:
                    ok &= EXPECTED.get(name) is None
                    line = (
                        f"{r.source_format} {r.source_mode} {r.source_width}x{r.source_height}"
                        f" exif={r.exif_orientation} -> {r.width}x{r.height} ({r.meta.timings[0].seconds * 1000:.1f} ms)"
                    )
                    pixels = np.asarray(Image.open(io.BytesIO(r.normalized.data)).convert("RGB"))
                    Image.fromarray(pixels).save(out / "demo" / (Path(name).stem + ".png"))
                    tiles.append((name, pixels))
                    report.append(
                        {
                            "input": name,
                            "format": r.source_format,
                            "mode": r.source_mode,
                            "size": [r.width, r.height],
                            "exif_orientation": r.exif_orientation,
                            "request_id": r.meta.request_id,
                            "trace_id": r.meta.trace_id,
                        }
                    )
                print(f"{name:32} {line}")
        scrape = (
            urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5)
            .read()
            .decode()
        )
        (out / "demo" / "metrics.txt").write_text(scrape)
        lines = [ln for ln in scrape.splitlines() if ln.startswith("drape_rpc_requests_total")]
        print("\n".join(lines))
    finally:
        server.stop(0)
    contact_sheet(tiles).save(out / "demo" / "media_contact_sheet.png")
    (out / "demo" / "report.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'demo_contact_sheet.png'} and {out / 'demo'}{os.sep}")
    return 0 if ok else 1


# The garments of the demo: drawn in code (kind, pattern, colour).
DEMO_GARMENTS = (
    ("tshirt", "stripes", (30, 90, 200)),
    ("longsleeve", "checks", (40, 140, 60)),
    ("tank", "solid", (230, 200, 40)),
    ("dress", "logo", (180, 30, 60)),
    ("jacket", "solid", (60, 60, 70)),
)


def _tryon_demo(channel, out: Path) -> bool:
    """The main job: each sample photo wearing each demo garment, over gRPC. Writes the
    stills to out/tryon/ and a contact sheet (photo, then one column per garment, the
    flat-lay above its results) to out/demo_contact_sheet.png."""
    from drape.tryon.v1 import tryon_service_pb2 as tpb
    from drape.tryon.v1 import tryon_service_pb2_grpc as tpb_grpc
    from services.common.images import encode_image
    from services.tryon.flatlays import draw_garment, draw_white_tee_on_sweep

    stub = tpb_grpc.TryOnServiceStub(channel)
    photos = sample_inputs()
    (out / "tryon").mkdir(parents=True, exist_ok=True)
    flats = {f"{k}_{pat}": draw_garment(k, pat, c).image for k, pat, c in DEMO_GARMENTS}
    # A white tee on a light-grey sweep: the colour cut-out alone cannot separate it, the
    # learned one (U²-Net-p) does.
    flats["white_tee_on_grey"] = draw_white_tee_on_sweep(size=(512, 512)).image
    rows = [[("flat-lay", None)] + [(name, img) for name, img in flats.items()]]
    ok = True
    print(f"{'photo':16} {'garment':18} {'category':24} {'ms':>6}")
    for photo_name in ("astronaut.jpg", "grace_hopper.jpg"):
        data = photos[photo_name]
        person = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        row = [(photo_name, person)]
        for name, flat in flats.items():
            req = tpb.TryOnRequest(
                request_id=f"demo-{photo_name}-{name}",
                person=common_pb2.Image(data=data),
                garments=[
                    tpb.Garment(
                        flat_lay=common_pb2.Image(data=encode_image(flat, "PNG")),
                        # The outline cannot tell a jacket from a shirt: a merchant says so.
                        category=tpb.GARMENT_CATEGORY_OUTERWEAR
                        if name.startswith("jacket")
                        else tpb.GARMENT_CATEGORY_UNSPECIFIED,
                    )
                ],
                experiment=common_pb2.Experiment(experiment_id="demo", variant="control"),
            )
            try:
                r = stub.TryOn(req, timeout=120)
            except grpc.RpcError as err:
                print(f"{photo_name:16} {name:18} refused {err.code().name} {err.details()}")
                ok = False
                row.append((name, np.zeros_like(person)))
                continue
            still = np.asarray(Image.open(io.BytesIO(r.image.data)).convert("RGB"))
            Image.fromarray(still).save(out / "tryon" / f"{Path(photo_name).stem}_{name}.png")
            g = r.garments[0]
            cat = f"{tpb.GarmentCategory.Name(g.category)[17:].lower()}/{tpb.SleeveLength.Name(g.sleeve_length)[14:].lower()}"
            ms = sum(t.seconds for t in r.meta.timings) * 1000
            print(f"{photo_name:16} {name:18} {cat:24} {ms:6.0f}")
            row.append((name, still))
        rows.append(row)
    ok &= _bottoms_demo(stub, out, rows)
    grid_sheet(rows).save(out / "demo_contact_sheet.png")
    return ok


# Bottoms and outfits on the full-body studio figure (no full-body photo ships in any
# installed package): (name, [(kind, pattern, colour), ...], tucked).
DEMO_OUTFITS = (
    ("trousers", [("trousers", "solid", (150, 100, 60))], False),
    ("shorts", [("shorts", "checks", (40, 130, 60))], False),
    ("skirt", [("skirt", "solid", (160, 30, 60))], False),
    (
        "tee+trousers",
        [("tshirt", "stripes", (30, 60, 160)), ("trousers", "solid", (40, 40, 40))],
        False,
    ),
    ("tucked", [("longsleeve", "solid", (200, 60, 40)), ("skirt", "solid", (30, 30, 80))], True),
)


def _bottoms_demo(stub, out: Path, rows: list) -> bool:
    """Bottoms, and top + bottom outfits (untucked and tucked), on the studio figure."""
    from drape.tryon.v1 import tryon_service_pb2 as tpb
    from services.common.images import encode_image
    from services.tryon.figures import draw_figure
    from services.tryon.flatlays import draw_garment

    figure = draw_figure()
    flat_row: list[tuple[str, np.ndarray | None]] = [("flat-lays", None)]
    row: list[tuple[str, np.ndarray | None]] = [("figure (drawn)", figure)]
    ok = True
    for name, items, tucked in DEMO_OUTFITS:
        flats = [draw_garment(k, pat, c).image for k, pat, c in items]
        flat_row.append((name, np.concatenate(flats, axis=0) if len(flats) > 1 else flats[0]))
        req = tpb.TryOnRequest(
            request_id=f"demo-figure-{name}",
            person=common_pb2.Image(data=encode_image(figure, "PNG")),
            garments=[
                tpb.Garment(flat_lay=common_pb2.Image(data=encode_image(f, "PNG"))) for f in flats
            ],
            tuck=tpb.TUCK_STYLE_TUCKED if tucked else tpb.TUCK_STYLE_UNTUCKED,
            experiment=common_pb2.Experiment(experiment_id="demo", variant="control"),
        )
        try:
            r = stub.TryOn(req, timeout=120)
        except grpc.RpcError as err:
            print(f"{'figure':16} {name:18} refused {err.code().name} {err.details()}")
            row.append((name, np.zeros_like(figure)))
            ok = False
            continue
        still = np.asarray(Image.open(io.BytesIO(r.image.data)).convert("RGB"))
        Image.fromarray(still).save(out / "tryon" / f"figure_{name.replace('+', '_')}.png")
        ms = sum(t.seconds for t in r.meta.timings) * 1000
        print(f"{'figure':16} {name:18} {'tucked' if tucked else 'untucked':24} {ms:6.0f}")
        row.append((name, still))
    rows += [flat_row, row]
    return ok


def grid_sheet(rows: list[list[tuple[str, np.ndarray | None]]], cell: int = 240) -> Image.Image:
    """Rows of captioned tiles, each fitted into a ``cell`` x ``cell`` square."""
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cols * (cell + 6) + 6, len(rows) * (cell + 24) + 6), "white")
    draw = ImageDraw.Draw(sheet)
    for i, row in enumerate(rows):
        for j, (caption, px) in enumerate(row):
            x, y = 6 + j * (cell + 6), 6 + i * (cell + 24)
            if px is not None:
                img = Image.fromarray(px)
                img.thumbnail((cell, cell), Image.Resampling.LANCZOS)
                sheet.paste(img, (x + (cell - img.width) // 2, y + (cell - img.height) // 2))
            draw.text((x, y + cell + 4), caption[:36], fill="black")
    return sheet


def _reason(st) -> str:
    from google.rpc import error_details_pb2

    for d in st.details if st else ():
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            return info.reason
    return ""


def contact_sheet(tiles: list[tuple[str, np.ndarray]], height: int = 256) -> Image.Image:
    """Tiles side by side at one height, each captioned with its name."""
    scaled = []
    for name, px in tiles:
        img = Image.fromarray(px)
        w = max(1, round(img.width * height / img.height))
        scaled.append((name, img.resize((w, height), Image.Resampling.LANCZOS)))
    width = sum(im.width for _, im in scaled) + 8 * (len(scaled) + 1)
    sheet = Image.new("RGB", (max(width, 8), height + 32), "white")
    draw = ImageDraw.Draw(sheet)
    x = 8
    for name, im in scaled:
        sheet.paste(im, (x, 4))
        draw.text((x, height + 10), name[:40], fill="black")
        x += im.width + 8
    return sheet
