"""``make serve``: the whole local stack on this machine until Ctrl-C.

Starts the Kafka-protocol broker (Tansu, in memory), creates the catalog topics, and runs
every service's gRPC server in this process on one port with health, reflection and
metrics. Services register here as they land.
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


def run_stack(kafka_port: int = 9092, grpc_port: int = 50051) -> int:
    """Run broker + services; returns 0 after Ctrl-C/SIGTERM and a clean drain."""
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
        server.start()
        server.wait_ready(60)
        print(
            f"kafka    {broker.bootstrap}  topics: {TOPIC_PRODUCT}, {TOPIC_ASSET}, {TOPIC_PRODUCT_DLQ}"
        )
        print(f"grpc     127.0.0.1:{port}  services: {', '.join(server.service_names)}")
        print(f"metrics  http://127.0.0.1:{server.metrics_port}/metrics")
        print("Ctrl-C to stop")
        stop.wait()
        server.drain().wait()
    finally:
        broker.stop()
    return 0
