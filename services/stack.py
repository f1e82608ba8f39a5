"""``make serve``: the whole local stack on this machine until Ctrl-C.

Starts the Kafka-protocol broker (Tansu, in memory), creates the catalog topics, and runs
every service's gRPC server in this process on one port with health, reflection and
metrics, and the storefront gateway (HTTP/JSON and the demo page) in front of it. Services
register here as they land.
"""

from __future__ import annotations

import signal
import threading

from services.common.config import load_settings
from services.common.kafka import (
    TOPIC_ASSET,
    TOPIC_PRODUCT,
    TOPIC_PRODUCT_DLQ,
    TansuBroker,
    ensure_topics,
)
from services.common.logs import configure_logging
from services.common.server import create_server

SAMPLE_DIR = "out/catalog_samples"  # the default of `drape catalog publish --sample-dir`


def run_stack(kafka_port: int = 9092, grpc_port: int = 50051, gateway_port: int = 8080) -> int:
    """Run broker + services + gateway; returns 0 after Ctrl-C/SIGTERM and a clean drain."""
    settings = load_settings(grpc_address=f"127.0.0.1:{grpc_port}")
    configure_logging(settings.log_level, "text")
    broker = TansuBroker(port=kafka_port).start()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        ensure_topics(broker.bootstrap, {TOPIC_PRODUCT: 4, TOPIC_ASSET: 4, TOPIC_PRODUCT_DLQ: 1})
        from services.animate.server import AnimateApp
        from services.refiner.server import RefinerApp
        from services.tryon.server import TryOnApp

        apps = (TryOnApp(settings), RefinerApp(settings), AnimateApp(settings))
        server, port = create_server(settings.grpc_address, *apps, settings=settings)
        gateway = _gateway(settings, port, gateway_port)  # binds now: a busy port fails early
        server.start()
        server.wait_ready(60)
        print(
            f"kafka    {broker.bootstrap}  topics: {TOPIC_PRODUCT}, {TOPIC_ASSET}, {TOPIC_PRODUCT_DLQ}"
        )
        print(f"grpc     127.0.0.1:{port}  services: {', '.join(server.service_names)}")
        print(f"metrics  http://127.0.0.1:{server.metrics_port}/metrics")
        adapter = _start_catalog_adapter(broker.bootstrap, port, server.metrics_port)
        gateway.start()
        print(f"gateway  {gateway.url}/v1/  OpenAPI: {gateway.url}/openapi.json")
        print(f"page     {gateway.url}/demo")
        print("Ctrl-C to stop")
        stop.wait()
        gateway.stop()  # the gateway and the adapter drain first: they call the services
        adapter.terminate()
        adapter.wait(settings.grace_period_seconds + 15)
        server.drain().wait()
    finally:
        broker.stop()
    return 0


def _gateway(settings, grpc_port: int, gateway_port: int):
    """The storefront gateway (unstarted, its port bound) to serve on a thread of this
    process, calling the stack's services (``drape serve gateway`` runs it on its own)."""
    import dataclasses

    from services.gateway.server import ThreadedGateway

    gw_settings = dataclasses.replace(settings, gateway_upstream=f"127.0.0.1:{grpc_port}")
    return ThreadedGateway(gw_settings, f"127.0.0.1:{gateway_port}")


def _start_catalog_adapter(bootstrap: str, grpc_port: int, metrics_port: int | None):
    """The catalog adapter as its own process (as deployed), calling the stack's
    TryOnService over gRPC; assets land in ``DRAPE_CATALOG_ASSET_STORE`` (out/assets)."""
    import os
    import subprocess
    import sys

    adapter_metrics = (metrics_port or 9464) + 1
    # `drape catalog publish --sample` writes its flat-lays here and sends file:// events;
    # the local stack lets the adapter read that one directory (file:// is off by default).
    samples = os.path.abspath(os.environ.get("DRAPE_CATALOG_FETCH_FILE_ROOT", SAMPLE_DIR))
    os.makedirs(samples, exist_ok=True)
    env = {
        **os.environ,
        "DRAPE_CATALOG_FETCH_FILE_ROOT": samples,
        "DRAPE_CATALOG_PIPELINE": os.environ.get("DRAPE_CATALOG_PIPELINE", "grpc"),
        "DRAPE_CATALOG_TRYON_ADDRESS": f"127.0.0.1:{grpc_port}",
        "DRAPE_METRICS_PORT": str(adapter_metrics),
        "DRAPE_LOG_FORMAT": "text",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.catalog_adapter", "--bootstrap", bootstrap], env=env
    )
    print(
        f"catalog  adapter pid {proc.pid}, metrics http://127.0.0.1:{adapter_metrics}/metrics;"
        " try: drape catalog publish --sample 10"
    )
    return proc
