"""The ``drape`` command line. Each service adds its subcommands in :func:`build_parser`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from services.common.config import Settings, load_settings
from services.common.errors import ConfigError, DrapeError


def _cmd_config(args: argparse.Namespace) -> int:
    if args.markdown:
        print("| setting | environment variable | default | meaning |")
        print("|---|---|---|---|")
        for name, env, default, help_ in Settings.describe():
            print(f"| `{name}` | `{env}` | `{default or '(empty)'}` | {help_} |")
        return 0
    settings = load_settings()
    for env, value in settings.redacted().items():
        print(f"{env}={value}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from services.common.server import exit_now, serve

    if args.service == "gateway":
        from services.gateway.server import run_gateway

        overrides = {}
        if args.address:
            overrides["gateway_address"] = args.address
        if args.upstream:
            overrides["gateway_upstream"] = args.upstream
        return run_gateway(load_settings(**overrides))
    if args.address or args.upstream:
        print("drape serve: --address and --upstream are for the gateway", file=sys.stderr)
        return 2
    settings = load_settings()
    apps = []  # the MediaService is always hosted
    if args.service == "tryon":
        from services.tryon.server import TryOnApp

        apps.append(TryOnApp(settings))
    elif args.service == "refiner":
        from services.refiner.server import RefinerApp

        apps.append(RefinerApp(settings))
    elif args.service == "animate":
        from services.animate.server import AnimateApp

        apps.append(AnimateApp(settings))
    elif args.service == "experiments":
        from services.experiments.server import ExperimentsApp

        apps.append(ExperimentsApp(settings))
    elif args.service == "catalog":
        from services.catalog_adapter.batch_server import CatalogApp

        apps.append(CatalogApp(settings))
    elif args.service != "media":
        print(f"drape serve: unknown service {args.service!r}", file=sys.stderr)
        return 2
    exit_now(serve(*apps, settings=settings))
    return 0  # not reached


def _cmd_inspect(args: argparse.Namespace) -> int:
    from services.common.images import ImageLimits, decode_image

    settings = load_settings()
    data = open(args.image, "rb").read()  # noqa: SIM115 - read whole, closed by GC at exit
    img = decode_image(data, ImageLimits.from_settings(settings), field=args.image)
    print(
        f"{args.image}: {img.source_format} {img.source_mode} {img.source_size[0]}x{img.source_size[1]}"
        f" orientation={img.exif_orientation} -> {img.width}x{img.height}x{img.pixels.shape[2]}"
    )
    return 0


def _cmd_tryon(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PIL import Image
    from tqdm import tqdm

    from services.common.analysis.person import PersonAnalyzer
    from services.common.images import ImageLimits, decode_image, encode_image
    from services.tryon.pipeline import GarmentInput, TryOnOptions, TryOnPipeline
    from services.tryon.server import load_segmenter, make_refine_fn

    settings = load_settings()
    limits = ImageLimits.from_settings(settings)

    def read(path: str, field: str):
        with open(path, "rb") as fh:
            return decode_image(fh.read(), limits, field=field)

    cats = args.category or []
    if len(cats) > len(args.garments):
        print("drape tryon: more --category values than garments", file=sys.stderr)
        return 2
    ids = args.garment_id or []
    if not (args.garments or ids):
        print("drape tryon: give a GARMENT flat-lay or --garment-id", file=sys.stderr)
        return 2
    if args.server:
        if args.animate or args.debug_dir:
            print("drape tryon: --animate and --debug-dir run in process only", file=sys.stderr)
            return 2
        from services.tryon.cli import tryon_remote

        return tryon_remote(args, settings)
    garments = []
    if ids:  # registered with `drape garments register`: kept in the local store
        from services.tryon import registry as R
        from services.tryon.cli import cli_registry

        registry = cli_registry(args, settings)
        for i, gid in enumerate(ids):
            field = f"--garment-id[{i}]"
            analysis = registry.get(R.check_garment_id(gid, field))
            if analysis is None:
                raise R.unknown_id(gid, field)
            garments.append(GarmentInput(None, analysis=analysis))
    person = read(args.person, args.person).rgb()
    garments = [
        GarmentInput(read(g, g).pixels, cats[i] if i < len(cats) else None)
        for i, g in enumerate(args.garments)
    ] + garments
    stages = ["person", *(["garment"] if len(garments) == 1 else [f"garment{i}" for i in range(len(garments))]),
              "warp", "composite", "refine"]  # fmt: skip
    bar = tqdm(total=len(stages), desc="try-on", unit="stage", disable=args.quiet)

    def progress(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    refine_fn = None if args.no_refine else make_refine_fn()
    pipe = TryOnPipeline(PersonAnalyzer(), refine_fn=refine_fn, segmenter=load_segmenter(settings))
    options = TryOnOptions(refine=not args.no_refine, debug=bool(args.debug_dir), tuck=args.tuck)
    try:
        result = pipe.run(person, garments, options, progress=progress)
        bar.update(bar.total - bar.n)
    finally:
        bar.close()
    out = Path(args.output)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(out.suffix.lower(), "PNG")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_image(result.image, fmt))
    if args.debug_dir:
        d = Path(args.debug_dir)
        d.mkdir(parents=True, exist_ok=True)
        for name, img in result.debug.items():
            Image.fromarray(img).save(d / f"{name}.png")
    for reason, message in result.warnings:
        print(f"warning: {reason}: {message}", file=sys.stderr)
    cats_found = ", ".join(f"{g.category}/{g.sleeve or '-'}/{g.length}" for g in result.garments)
    timing = " ".join(f"{k}={v * 1000:.0f}ms" for k, v in result.timings.items())
    print(f"{out}: {cats_found}; {timing}")
    if args.animate:  # try-on, then the clip of the still, in this process
        from services.animate.cli import animate_still

        return animate_still(
            result.image, args.animate, args.clip or str(out.with_suffix(".mp4")),
            quiet=args.quiet, settings=settings, analyzer=pipe.analyzer,
        )  # fmt: skip
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from services.demo import run_demo

    return run_demo(args.out)


def _cmd_catalog(args: argparse.Namespace) -> int:
    settings = load_settings()
    bootstrap = args.bootstrap or settings.kafka_bootstrap_servers
    if args.action == "run":
        from services.catalog_adapter.main import run_adapter

        return run_adapter(settings, bootstrap=bootstrap)
    if args.action in ("batch", "status"):
        from services.catalog_adapter import batch_server as B

        return (B.run_batch_cli if args.action == "batch" else B.run_status_cli)(args, settings)
    if args.action == "replay-dlq":
        return _replay_dlq(args, settings, bootstrap)
    from services.catalog_adapter.publish import publish, read_events, write_samples
    from services.common.kafka import TOPIC_ASSET, TOPIC_PRODUCT, TOPIC_PRODUCT_DLQ, ensure_topics

    path = args.events
    if args.sample:
        path = write_samples(args.sample_dir, args.sample)
        print(f"wrote {args.sample} sample events and their flat-lays: {path}")
    if not path:
        print("drape catalog publish: give EVENTS.jsonl or --sample N", file=sys.stderr)
        return 2
    events = read_events(path)
    if args.ensure_topics:
        ensure_topics(bootstrap, {TOPIC_PRODUCT: 4, TOPIC_ASSET: 4, TOPIC_PRODUCT_DLQ: 1}, settings)
    n = publish(events, bootstrap, settings)
    print(f"published {n} events to {TOPIC_PRODUCT} on {bootstrap}")
    return 0


def _replay_dlq(args: argparse.Namespace, settings, bootstrap: str) -> int:
    from services.catalog_adapter.batch_server import _parse_time
    from services.catalog_adapter.publish import (
        dead_letter_filter,
        read_dead_letters,
        replay_dead_letters,
    )

    since = _parse_time(args.since) if args.since else None
    records = read_dead_letters(bootstrap, settings)
    chosen = [r for r in records if dead_letter_filter(args.reason, since)(r)]
    counts: dict[str, int] = {}
    for r in chosen:
        reason = dict(r.headers or []).get("drape-dlq-reason", b"?").decode(errors="replace")
        counts[reason] = counts.get(reason, 0) + 1
    for reason, n in sorted(counts.items()):
        print(f"{reason:32} {n:>8}")
    if args.dry_run:
        print(f"would replay {len(chosen)} of {len(records)} dead letters")
        return 0
    n = replay_dead_letters(chosen, bootstrap, settings)
    print(f"replayed {n} of {len(records)} dead letters to catalog.product.v1 on {bootstrap}")
    return 0


def _cmd_stack(args: argparse.Namespace) -> int:
    from services.stack import run_stack

    return run_stack(
        kafka_port=args.kafka_port, grpc_port=args.grpc_port, gateway_port=args.gateway_port
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drape",
        description="Drape: virtual try-on stills and product clips (gRPC services and tools).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="run the main job on the embedded default; results in --out")
    p.add_argument("--out", default="out", help="output directory (default: out)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("tryon", help="dress the person in a photo in one or two flat-lay garments")
    p.add_argument("person", help="shopper photo (JPEG, PNG, WebP, BMP, TIFF)")
    p.add_argument(
        "garments",
        nargs="*",
        metavar="GARMENT",
        help="flat-lay image(s): a garment, or a top and a bottom",
    )
    p.add_argument("--garment-id", action="append", metavar="ID",
                   help="a garment registered with `drape garments register` (repeatable; "
                        "instead of or beside a flat-lay)")  # fmt: skip
    p.add_argument("-o", "--output", required=True, help="output still (.png, .jpg or .webp)")
    p.add_argument("--category", action="append", choices=["top", "bottom", "dress", "outerwear"],
                   help="override the detected category, once per garment in order")  # fmt: skip
    p.add_argument("--no-refine", action="store_true", help="skip the refiner")
    p.add_argument("--tuck", choices=["untucked", "tucked"], default="untucked",
                   help="outfits: the top's hem over (default) or inside the bottom")  # fmt: skip
    p.add_argument("--debug-dir", help="write masks, landmarks, warp grids and the stages here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--animate", metavar="MOTION",
                   help="then make a clip of the still with this motion (see `drape motions`)")  # fmt: skip
    p.add_argument("--clip", help="with --animate: the clip's path (default: OUTPUT with .mp4)")
    from services.tryon.cli import add_commands as add_garments_commands
    from services.tryon.cli import add_location_args

    add_location_args(p)  # --server, --store
    p.set_defaults(func=_cmd_tryon)

    add_garments_commands(sub)  # drape garments register

    from services.animate.cli import add_commands as add_animate_commands

    add_animate_commands(sub)  # drape animate, drape motions

    from services.neural.cli import add_commands as add_models_commands

    add_models_commands(sub)  # drape models manifest|verify|export|build-engine

    from services.experiments.cli import add_commands as add_experiments_commands

    add_experiments_commands(sub)  # drape experiments report|assign|import-*|ingest|demo

    p = sub.add_parser("serve", help="run one gRPC service, or the HTTP gateway, until SIGTERM")
    p.add_argument("service", nargs="?", default="media",
                   choices=["media", "tryon", "refiner", "animate", "catalog", "experiments",
                            "gateway"],
                   help="service to run (default: media; every server also hosts media); "
                        "gateway: the storefront HTTP/JSON gateway and demo page")  # fmt: skip
    p.add_argument("--address", help="gateway: HOST:PORT to listen on "
                   "(default: DRAPE_GATEWAY_ADDRESS)")  # fmt: skip
    p.add_argument("--upstream", help="gateway: the gRPC server it calls, HOST:PORT "
                   "(default: DRAPE_GATEWAY_UPSTREAM)")  # fmt: skip
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "stack", help="run the local stack: Kafka broker + services + gateway, until Ctrl-C"
    )
    p.add_argument("--kafka-port", type=int, default=9092)
    p.add_argument("--grpc-port", type=int, default=50051)
    p.add_argument("--gateway-port", type=int, default=8080, help="the HTTP gateway and page")
    p.set_defaults(func=_cmd_stack)

    p = sub.add_parser("catalog", help="catalog adapter: run the consumer, publish events, "
                       "run batches, replay dead letters")  # fmt: skip
    p.add_argument("action", choices=["run", "publish", "batch", "status", "replay-dlq"],
                   help="run: consume catalog.product.v1 until SIGTERM; publish: send events; "
                        "batch: run a manifest on the CatalogService (drape serve catalog) with "
                        "a progress bar; status: a batch's state and report; replay-dlq: "
                        "re-publish dead letters to catalog.product.v1")  # fmt: skip
    p.add_argument(
        "events", nargs="?", metavar="EVENTS|MANIFEST|BATCH",
        help="publish: events file, one ProductUpserted JSON a line; batch: a manifest (that "
             "JSONL, or CSV with merchant_id,sku,image_uri...); status: the batch id",
    )  # fmt: skip
    p.add_argument("--server", help="batch/status: CatalogService address "
                   "(default: DRAPE_CATALOG_SERVICE_ADDRESS)")  # fmt: skip
    p.add_argument("--publish", action="store_true",
                   help="batch: also publish asset events and dead letters to Kafka")  # fmt: skip
    p.add_argument("--force", action="store_true",
                   help="batch: remake assets that already exist")  # fmt: skip
    p.add_argument("--dry-run", action="store_true",
                   help="batch: check and plan only; replay-dlq: list, send nothing")  # fmt: skip
    p.add_argument("--request-id", help="batch: idempotency key (the same key: the same batch)")
    p.add_argument("--merchant", help="batch: instead of a manifest, every recorded product "
                   "of this merchant (with --changed-since)")  # fmt: skip
    p.add_argument("--changed-since", metavar="TIME",
                   help="batch --merchant: products changed at or after this ISO 8601 time")  # fmt: skip
    p.add_argument("--reason", help="replay-dlq: only dead letters with this reason")
    p.add_argument("--since", metavar="TIME",
                   help="replay-dlq: only dead letters failed at or after this ISO 8601 time")  # fmt: skip
    p.add_argument("--all", action="store_true", help="status: list every product")
    p.add_argument("--quiet", action="store_true", help="batch: no progress bar")
    p.add_argument("--bootstrap", help="Kafka brokers (default: DRAPE_KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--sample", type=int, default=0, metavar="N",
                   help="publish: draw N sample garments and publish events for them")  # fmt: skip
    p.add_argument("--sample-dir", default="out/catalog_samples",
                   help="publish --sample: where the flat-lays and events file go")  # fmt: skip
    p.add_argument("--ensure-topics", action="store_true",
                   help="publish: create the catalog topics first when missing")  # fmt: skip
    p.set_defaults(func=_cmd_catalog)

    p = sub.add_parser("config", help="print the effective settings (secrets redacted)")
    p.add_argument(
        "--markdown", action="store_true", help="print the settings reference table instead"
    )
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser(
        "inspect", help="decode an image file as every service would and describe it"
    )
    p.add_argument("image", help="image file")
    p.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"drape: configuration error: {exc}", file=sys.stderr)
        return 2
    except DrapeError as exc:
        print(f"drape: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(
            f"drape: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}", file=sys.stderr
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
