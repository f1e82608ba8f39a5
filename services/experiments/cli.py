"""``drape experiments …``: report, assign, imports, Kafka ingestion, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.common.config import load_settings
from services.common.errors import ConfigError


def add_commands(sub) -> None:
    """Add ``experiments`` to the ``drape`` subcommands."""
    p = sub.add_parser("experiments", help="A/B experiments: report, assign, import orders")
    p.add_argument("--db", help="experiment store URL (default: DRAPE_EXPERIMENTS_DB)")
    p.add_argument("--definitions", help="definitions file (default: DRAPE_EXPERIMENTS_FILE)")
    esub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    r = esub.add_parser("report", help="per-variant return rates, differences, SRM, MDE")
    r.add_argument("experiment", metavar="EXP")
    r.add_argument("--html", metavar="OUT", help="also write a self-contained HTML report")
    r.add_argument("--png", metavar="OUT", help="also write the cumulative return-rate plot")
    r.add_argument("--json", action="store_true", help="print the numbers as JSON instead")
    r.set_defaults(func=cmd_report)

    a = esub.add_parser("assign", help="the variant of units (same hash as the Assign RPC)")
    a.add_argument("experiment", metavar="EXP")
    a.add_argument("units", metavar="UNIT", nargs="+")
    a.set_defaults(func=cmd_assign)

    for name, what in (("import-orders", "orders"), ("import-returns", "returns")):
        i = esub.add_parser(name, help=f"import {what} from CSV")
        i.add_argument("csv", metavar="CSV")
        i.set_defaults(func=cmd_import, what=what)

    g = esub.add_parser(
        "ingest",
        help="consume experiment.exposure.v1, commerce.order.v1 and commerce.return.v1 into the store",
    )
    g.add_argument("--bootstrap", help="brokers (default: DRAPE_KAFKA_BOOTSTRAP_SERVERS)")
    g.add_argument("--group", default="drape-experiments", help="consumer group")
    g.add_argument("--idle-exit", type=float, metavar="S",
                   help="stop after S seconds with nothing to read (default: run until Ctrl-C)")  # fmt: skip
    g.set_defaults(func=cmd_ingest)

    m = esub.add_parser("migrate", help="apply the store's pending schema migrations")
    m.set_defaults(func=cmd_migrate)

    d = esub.add_parser("demo", help="simulate a storefront experiment; report and plot in --out")
    d.add_argument("--out", default="out/experiment", help="output directory")
    d.add_argument("--shoppers", type=int, default=5000, help="simulated shoppers")
    d.add_argument("--seed", type=int, default=7)
    d.set_defaults(func=cmd_demo)


def _settings(args):
    overrides = {}
    if args.db:
        overrides["experiments_db"] = args.db
    if args.definitions:
        overrides["experiments_file"] = args.definitions
    return load_settings(**overrides)


def _assigner(settings):
    from services.experiments.assignment import Assigner

    a = Assigner.from_settings(settings)
    if not a.experiments:
        raise ConfigError(
            "DRAPE_EXPERIMENTS_FILE", "no experiment definitions: set it or pass --definitions"
        )
    return a


def cmd_report(args: argparse.Namespace) -> int:
    from services.experiments.report import build_report, plot_png, to_html, to_json, to_text
    from services.experiments.store import open_store

    settings = _settings(args)
    exp = _assigner(settings).get(args.experiment, "EXP")
    store = open_store(settings.experiments_db)
    try:
        rep = build_report(store, exp)
    finally:
        store.close()
    print(json.dumps(to_json(rep), indent=2) if args.json else to_text(rep))
    if args.html or args.png:
        png = plot_png(rep)
        if args.png:
            Path(args.png).parent.mkdir(parents=True, exist_ok=True)
            Path(args.png).write_bytes(png)
            print(f"plot: {args.png}", file=sys.stderr)
        if args.html:
            Path(args.html).parent.mkdir(parents=True, exist_ok=True)
            Path(args.html).write_text(to_html(rep, png), encoding="utf-8")
            print(f"report: {args.html}", file=sys.stderr)
    return 0


def cmd_assign(args: argparse.Namespace) -> int:
    assigner = _assigner(_settings(args))
    for unit in args.units:
        a = assigner.assign(args.experiment, unit, field="EXP", unit_field="UNIT")
        print(f"{unit}\t{a.variant.name}\t{a.bucket:.6f}\t{a.variant.recipe.fingerprint()}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from services.experiments.ingest import import_orders_csv, import_returns_csv
    from services.experiments.store import open_store

    settings = _settings(args)
    store = open_store(settings.experiments_db)
    try:
        fn = import_orders_csv if args.what == "orders" else import_returns_csv
        n = fn(args.csv, store)
    finally:
        store.close()
    print(f"imported {n} {args.what} rows from {args.csv}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    import signal
    import threading

    from services.experiments.ingest import KafkaIngestor
    from services.experiments.store import open_store

    settings = _settings(args)
    store = open_store(settings.experiments_db)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ing = KafkaIngestor(
        store, args.bootstrap or settings.kafka_bootstrap_servers, args.group, settings
    )
    try:
        st = ing.run(stop, idle_exit=args.idle_exit)
    except KeyboardInterrupt:
        st = ing.stats
    finally:
        ing.close()
        store.close()
    print(
        f"stored {st.exposures} exposures, {st.orders} orders, {st.returns} returns; "
        f"skipped {dict(st.skipped) or 0}"
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from services.experiments.store import open_store

    store = open_store(_settings(args).experiments_db)
    try:
        print(f"schema version {store.schema_version()}")
    finally:
        store.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from services.experiments.demo import run_demo

    return run_demo(Path(args.out), shoppers=args.shoppers, seed=args.seed)


def build_args(db: str, definitions: str, *argv: str) -> argparse.Namespace:
    """Parse ``drape experiments --db DB --definitions FILE ARGV…`` (for the demo)."""
    parser = argparse.ArgumentParser(prog="drape")
    add_commands(parser.add_subparsers())
    return parser.parse_args(["experiments", "--db", db, "--definitions", definitions, *argv])
