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

    settings = load_settings()
    apps = []  # the MediaService is always hosted; service issues add their apps here
    if args.service not in ("media",):
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from services.demo import run_demo

    return run_demo(args.out)


def _cmd_stack(args: argparse.Namespace) -> int:
    from services.stack import run_stack

    return run_stack(kafka_port=args.kafka_port, grpc_port=args.grpc_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="drape",
        description="Drape: virtual try-on stills and product clips (gRPC services and tools).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="run the main job on the embedded default; results in --out")
    p.add_argument("--out", default="out", help="output directory (default: out)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("serve", help="run one gRPC service until SIGTERM")
    p.add_argument("service", nargs="?", default="media", help="service to run (default: media)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("stack", help="run the local stack: Kafka broker + services, until Ctrl-C")
    p.add_argument("--kafka-port", type=int, default=9092)
    p.add_argument("--grpc-port", type=int, default=50051)
    p.set_defaults(func=_cmd_stack)

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
