"""``make demo-experiment``: a simulated storefront experiment, end to end.

"Does showing the try-on clip lower returns?" Shoppers are assigned over gRPC
(``ExperimentService.Assign``) to ``still`` (control: a try-on still only) or ``clip``
(still plus clip); each exposure is reported (``ReportExposure``: stored, and published on
``experiment.exposure.v1`` of a real Tansu broker on loopback); orders go to
``commerce.order.v1`` and are ingested from Kafka; returns come in as a CSV import. The
simulation has a built-in effect: an attributed order is returned with probability
:data:`RETURN_RATE` by variant. Then ``drape experiments report`` writes the table, the
HTML report and the cumulative return-rate plot to the output directory.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np

EXPERIMENT = "clip-returns-demo"
RETURN_RATE = {"still": 0.26, "clip": 0.19}  # the built-in effect
BUY_RATE = 0.45
PRODUCTS = 200
DAYS = 21

DEFINITION = f"""\
[[experiment]]
id = "{EXPERIMENT}"
description = "Does showing the try-on clip on the product page lower returns?"
unit = "shopper"
start = {{start}}
attribution_window_hours = 168
salt = "demo"

[[experiment.variant]]
name = "still"
weight = 1
output = "still"

[[experiment.variant]]
name = "clip"
weight = 1
output = "still+clip"
motion_template = "idle-sway-upper"
"""


def run_demo(out: Path, shoppers: int = 5000, seed: int = 7) -> int:
    """Run the simulation; returns the exit status of the report command."""
    from drape.common.v1 import common_pb2
    from drape.experiments.v1 import events_pb2 as ev_pb
    from drape.experiments.v1 import experiment_service_pb2 as pb
    from drape.experiments.v1 import experiment_service_pb2_grpc as pb_grpc
    from services.common.config import load_settings
    from services.common.kafka import TansuBroker, client_config, ensure_topics
    from services.common.server import create_server
    from services.experiments import cli as ecli
    from services.experiments.ingest import (
        EXPOSURE_TOPIC,
        ORDER_TOPIC,
        RETURN_TOPIC,
        KafkaIngestor,
        import_returns_csv,
        to_timestamp,
    )
    from services.experiments.server import ExperimentsApp
    from services.experiments.store import open_store

    if shoppers < 10:
        raise SystemExit("drape experiments demo: --shoppers must be at least 10")
    rng = np.random.default_rng(seed)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # Far enough back that every return (up to 10 days after its order) lies in the past.
    start = now - dt.timedelta(days=DAYS + 18)
    defs = out / "experiments.toml"
    defs.write_text(DEFINITION.replace("{start}", start.strftime("%Y-%m-%dT%H:%M:%SZ")))
    db = f"sqlite:///{out / 'experiments.db'}"
    t0 = time.perf_counter()
    with TansuBroker() as broker:
        ensure_topics(broker.bootstrap, {EXPOSURE_TOPIC: 2, ORDER_TOPIC: 2, RETURN_TOPIC: 1})
        settings = load_settings(
            env={},
            experiments_file=str(defs),
            experiments_db=db,
            experiments_publish_exposures=True,
            kafka_bootstrap_servers=broker.bootstrap,
            metrics_port=-1,
            metrics_experiments=(EXPERIMENT,),
            metrics_variants=tuple(RETURN_RATE),
            log_level="WARNING",
        )
        server, port = create_server("127.0.0.1:0", ExperimentsApp(settings), settings=settings)
        server.start()
        if not server.wait_ready(60):
            raise SystemExit(f"experiment service did not start: {server.load_error}")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        stub = pb_grpc.ExperimentServiceStub(channel)
        start_ms = int(start.timestamp() * 1000)
        # Per shopper: views (product, time) drawn up front, so the run is reproducible
        # whatever order the threads take.
        plans = []
        for i in range(shoppers):
            k = int(rng.integers(1, 4))
            products = rng.choice(PRODUCTS, size=k, replace=False)
            # Views within 3 days, the order within 4 days of the last view: every bought
            # product is inside the 7-day attribution window, so the report should find
            # the built-in rates.
            first = start_ms + 3_600_000 + int(rng.integers(0, DAYS * 86_400_000))
            times = np.sort(first + rng.integers(0, 3 * 86_400_000, size=k))
            plans.append((f"shopper-{i:06d}", products, times, rng.random(), rng.random(size=k)))

        def visit(plan):
            unit, products, times, _buy, _ = plan
            tags = common_pb2.Experiment(experiment_id=EXPERIMENT, unit_id=unit)
            r = stub.Assign(pb.AssignRequest(experiment=tags), timeout=30)
            tags.variant = r.variant  # what the storefront shows, checked by the service
            for p, t in zip(products, times, strict=True):
                stub.ReportExposure(
                    pb.ReportExposureRequest(
                        request_id=f"{unit}-{p}-{t}",
                        experiment=tags,
                        product_id=f"sku-{p:04d}",
                        time=to_timestamp(int(t)),
                    ),
                    timeout=30,
                )
            return r.variant

        with ThreadPoolExecutor(4) as pool:
            variants = list(pool.map(visit, plans))
        t_rpc = time.perf_counter() - t0
        channel.close()
        server.stop(5)

        # Orders (Kafka) and returns (CSV) with the built-in effect.
        from kafka import KafkaProducer

        producer = KafkaProducer(acks="all", **client_config(None, broker.bootstrap))
        returns_csv = out / "returns.csv"
        n_orders = n_returns = 0
        with open(returns_csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["order_id", "product_id", "quantity", "time"])
            for (unit, products, times, buy, line_draws), variant in zip(
                plans, variants, strict=True
            ):
                if buy >= BUY_RATE:
                    continue
                k = max(1, int(line_draws[0] * len(products) + 0.5))
                bought = products[:k]
                order_ms = int(times[k - 1] + rng.integers(60_000, 4 * 86_400_000))
                oid = f"order-{unit}"
                msg = ev_pb.OrderPlaced(order_id=oid, unit_id=unit, time=to_timestamp(order_ms))
                for p in bought:
                    msg.lines.add(product_id=f"sku-{p:04d}", quantity=1)
                producer.send(ORDER_TOPIC, key=unit.encode(), value=msg.SerializeToString())
                n_orders += 1
                if rng.random() < RETURN_RATE[variant]:
                    p = bought[int(rng.integers(0, len(bought)))]
                    ret = dt.datetime.fromtimestamp(
                        (order_ms + int(rng.integers(86_400_000, 10 * 86_400_000))) / 1000, dt.UTC
                    )
                    w.writerow([oid, f"sku-{p:04d}", 1, ret.strftime("%Y-%m-%dT%H:%M:%SZ")])
                    n_returns += 1
        producer.flush(30)
        producer.close()

        store = open_store(db)
        try:
            ing = KafkaIngestor(store, broker.bootstrap, "drape-experiments-demo")
            stats = ing.run(threading.Event(), idle_exit=3.0)
            ing.close()
            import_returns_csv(returns_csv, store)
        finally:
            store.close()
    print(
        f"simulated {shoppers} shoppers over gRPC in {t_rpc:.1f} s; {n_orders} orders via "
        f"{ORDER_TOPIC}, {n_returns} returns via {returns_csv.name}; ingested "
        f"{stats.exposures} exposure events (duplicates of the stored ones are ignored) and "
        f"{stats.orders} orders from Kafka"
    )
    print(f"built-in effect: return probability {RETURN_RATE}\n")
    args = ecli.build_args(
        db,
        str(defs),
        "report",
        EXPERIMENT,
        "--html",
        str(out / "report.html"),
        "--png",
        str(out / "report.png"),
    )
    return ecli.cmd_report(args)
