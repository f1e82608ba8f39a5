"""``drape garments register`` and the garment-id side of ``drape tryon``.

In process, registered analyses must outlive the command, so the CLI keeps them in a local
file store (the same layout a deployment's shared ``DRAPE_GARMENT_STORE`` has): ``--store``,
else ``DRAPE_GARMENT_STORE`` when set, else ``$XDG_CACHE_HOME/drape`` (``~/.cache/drape``).
With ``--server ADDR`` the commands call a running ``TryOnService`` instead, whose own
cache (and shared store) then holds the ids.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

CATEGORIES = ["top", "bottom", "dress", "outerwear"]
SLEEVES = ["sleeveless", "short", "three-quarter", "long"]
LENGTHS = ["cropped", "waist", "hip", "thigh", "knee", "calf", "ankle", "floor"]


def default_store(settings) -> str:
    """The CLI's garment store URI (see the module docstring)."""
    if settings.garment_store:
        return settings.garment_store
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache, "drape").absolute().as_uri()


def _store_uri(arg: str | None, settings) -> str:
    if not arg:
        return default_store(settings)
    return arg if arg.startswith(("file://", "s3://")) else Path(arg).absolute().as_uri()


def cli_registry(args: argparse.Namespace, settings):
    """The registry of an in-process command: the settings' cache size and segmenter, the
    ``--store`` (or default) store."""
    from services.tryon import registry as R

    store = R.open_garment_store(_store_uri(args.store, settings), settings)
    version = R.analysis_version(R.segmenter_name(settings))
    return R.GarmentRegistry(settings.garment_cache_size, store, version)


def hint_enums(category: str | None, sleeve: str | None, length: str | None) -> tuple:
    """The contract's enum numbers of the CLI's hint words (0 where absent)."""
    from drape.tryon.v1 import tryon_service_pb2 as pb

    return (
        pb.GarmentCategory.Value(f"GARMENT_CATEGORY_{category.upper()}") if category else 0,
        pb.SleeveLength.Value(f"SLEEVE_LENGTH_{sleeve.upper().replace('-', '_')}") if sleeve else 0,
        pb.GarmentLength.Value(f"GARMENT_LENGTH_{length.upper()}") if length else 0,
    )


def add_commands(sub) -> None:
    """Add ``garments`` (``register``) to the ``drape`` subcommands."""
    p = sub.add_parser("garments", help="register a garment once, try it on by id")
    gsub = p.add_subparsers(dest="garments_command", metavar="ACTION", required=True)
    r = gsub.add_parser(
        "register",
        help="analyse a flat-lay once; prints its garment_id (for drape tryon --garment-id)",
    )
    r.add_argument("flatlay", help="garment flat-lay image (JPEG, PNG, WebP, BMP, TIFF)")
    r.add_argument("--category", choices=CATEGORIES, help="category hint")
    r.add_argument("--sleeve", choices=SLEEVES, help="sleeve hint")
    r.add_argument("--length", choices=LENGTHS, help="length hint (needs --category)")
    add_location_args(r)
    r.set_defaults(func=cmd_register)


def add_location_args(p: argparse.ArgumentParser) -> None:
    """``--server`` and ``--store``, shared by ``garments register`` and ``tryon``."""
    p.add_argument("--server", metavar="ADDR",
                   help="call TryOnService at host:port instead of running in process")  # fmt: skip
    p.add_argument("--store", metavar="DIR_OR_URI",
                   help="in process: where registered analyses are kept (a directory, file:// "
                        "or s3://; default DRAPE_GARMENT_STORE, else ~/.cache/drape)")  # fmt: skip


def channel(address: str, settings):
    """A channel to ``address`` with the DRAPE_CLIENT_* TLS, mTLS and token settings."""
    from services.common.security import client_channel

    n = settings.max_message_bytes
    opts = [("grpc.max_receive_message_length", n), ("grpc.max_send_message_length", n)]
    return client_channel(address, settings, opts)


def rpc_failure(err) -> int:
    """Print a failed call's status and reason; the exit status."""
    from services.catalog_adapter.runners import rpc_error

    exc = rpc_error(err)
    print(f"drape: {err.code().name} {exc.reason}: {err.details()}", file=sys.stderr)
    return 1


def cmd_register(args: argparse.Namespace) -> int:
    from drape.common.v1 import common_pb2
    from drape.tryon.v1 import tryon_service_pb2 as pb
    from services.common.config import load_settings
    from services.tryon import hints as H

    settings = load_settings()
    data = Path(args.flatlay).read_bytes()
    cat, sleeve, length = hint_enums(args.category, args.sleeve, args.length)
    if args.server:
        import grpc

        from drape.tryon.v1 import tryon_service_pb2_grpc as pb_grpc

        req = pb.RegisterGarmentRequest(
            flat_lay=common_pb2.Image(data=data), category=cat, sleeve=sleeve, length=length
        )
        with channel(args.server, settings) as ch:
            try:
                resp = pb_grpc.TryOnServiceStub(ch).RegisterGarment(req, timeout=120)
            except grpc.RpcError as err:
                return rpc_failure(err)
        gid, a, cached, version = (
            resp.garment_id,
            resp.analysis,
            resp.cached,
            resp.meta.backend_version,
        )
    else:
        from services.common.images import ImageLimits
        from services.tryon import registry as R
        from services.tryon.server import garment_pb, load_segmenter

        hints = H.hints_from_proto(cat, sleeve, length)
        registry = cli_registry(args, settings)
        reg = R.register_garment(
            registry, data, hints, ImageLimits.from_settings(settings), load_segmenter(settings)
        )
        gid, a, cached, version = (
            reg.garment_id,
            garment_pb(reg.analysis),
            reg.cached,
            registry.version,
        )
    print(gid)
    b = a.box
    print(
        f"category={pb.GarmentCategory.Name(a.category).removeprefix('GARMENT_CATEGORY_').lower()}"
        f"{' (hint)' if a.category_from_request else ''}"
        f" sleeve={pb.SleeveLength.Name(a.sleeve_length).removeprefix('SLEEVE_LENGTH_').lower()}"
        f" length={pb.GarmentLength.Name(a.garment_length).removeprefix('GARMENT_LENGTH_').lower()}"
        f" box={b.x},{b.y},{b.width},{b.height} confidence={a.confidence:.2f}"
        f" cached={'yes' if cached else 'no'} analysis={version}"
    )
    return 0


def tryon_remote(args: argparse.Namespace, settings) -> int:
    """``drape tryon --server``: the same request over gRPC; writes the still."""
    import grpc

    from drape.common.v1 import common_pb2
    from drape.tryon.v1 import tryon_service_pb2 as pb
    from drape.tryon.v1 import tryon_service_pb2_grpc as pb_grpc

    cats = args.category or []
    garments = [
        pb.Garment(
            flat_lay=common_pb2.Image(data=Path(g).read_bytes()),
            category=hint_enums(cats[i] if i < len(cats) else None, None, None)[0],
        )
        for i, g in enumerate(args.garments)
    ]
    garments += [pb.Garment(garment_id=gid) for gid in args.garment_id or []]
    out = Path(args.output)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(out.suffix.lower(), "PNG")
    req = pb.TryOnRequest(
        person=common_pb2.Image(data=Path(args.person).read_bytes()),
        garments=garments,
        refine=not args.no_refine,
        tuck=pb.TUCK_STYLE_TUCKED if args.tuck == "tucked" else pb.TUCK_STYLE_UNTUCKED,
        output_format=common_pb2.ImageFormat.Value(f"IMAGE_FORMAT_{fmt}"),
    )
    with channel(args.server, settings) as ch:
        try:
            resp = pb_grpc.TryOnServiceStub(ch).TryOn(req, timeout=300)
        except grpc.RpcError as err:
            return rpc_failure(err)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(resp.image.data)
    for w in resp.meta.warnings:
        print(f"warning: {w.reason}: {w.message}", file=sys.stderr)
    found = ", ".join(
        pb.GarmentCategory.Name(g.category).removeprefix("GARMENT_CATEGORY_").lower()
        for g in resp.garments
    )
    timing = " ".join(f"{t.stage}={t.seconds * 1000:.0f}ms" for t in resp.meta.timings)
    print(f"{out}: {found}; {timing}")
    return 0
