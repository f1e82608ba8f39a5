"""Prometheus metrics: per-RPC RED metrics, in-flight gauges and per-stage histograms.

Each server owns a :class:`Metrics` with its own registry (several servers can live in one
test process) and serves it on its own port. Names follow Prometheus conventions: base
units (``_seconds``), ``_total`` counters.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# 5 ms to 10 min: a health check and a batch of clips on one scale.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

NO_VARIANT = "none"
OTHER_VARIANT = "other"


class Metrics:
    """The metric families of one process.

    Args:
        service: value of the ``service`` label on build info, e.g. ``"tryon"``.
        variants: experiment variants allowed as label values; others count as ``other``.
        registry: where to register; a fresh one by default.
        experiments: live experiment ids allowed as ``experiment`` label values of the
            ``drape_experiment_*`` families; others count as ``other``.
    """

    def __init__(
        self,
        service: str = "drape",
        variants: tuple[str, ...] = (),
        registry: CollectorRegistry | None = None,
        experiments: tuple[str, ...] = (),
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.variants = frozenset(variants)
        self.experiments = frozenset(experiments)
        # Experiments: (live experiments + "other") x (listed variants + "other"), so the
        # label sets stay bounded whatever ids requests carry.
        self.assignments = Counter(
            "drape_experiment_assignments",
            "Units assigned to a variant (Assign calls and requests assigned automatically).",
            ["experiment", "variant"],
            registry=self.registry,
        )
        self.exposures = Counter(
            "drape_experiment_exposures",
            "Exposures recorded (ReportExposure), by experiment and variant.",
            ["experiment", "variant"],
            registry=self.registry,
        )
        rpc = ["grpc_service", "grpc_method"]
        self.requests = Counter(
            "drape_rpc_requests",
            "RPCs finished, by status code and experiment variant.",
            rpc + ["grpc_code", "variant"],
            registry=self.registry,
        )
        self.errors = Counter(
            "drape_rpc_errors",
            "RPCs that ended in an error, by status code and ErrorInfo reason.",
            rpc + ["grpc_code", "reason"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "drape_rpc_duration_seconds",
            "RPC wall time from the handler's start to its last response.",
            rpc,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "drape_rpc_in_flight", "RPCs being served now.", rpc, registry=self.registry
        )
        self.stage_duration = Histogram(
            "drape_stage_duration_seconds",
            "Wall time of one pipeline stage.",
            ["stage", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.build = Gauge(
            "drape_build_info",
            "Always 1; labels say what runs.",
            ["service", "version"],
            registry=self.registry,
        )
        from services.common import __version__

        self.build.labels(service=service, version=__version__).set(1)
        self._http = None

    def variant_label(self, variant: str) -> str:
        """Bounded label value for an experiment variant."""
        if not variant:
            return NO_VARIANT
        return variant if variant in self.variants else OTHER_VARIANT

    def experiment_labels(self, experiment: str, variant: str) -> dict[str, str]:
        """Bounded ``experiment`` and ``variant`` label values: an experiment not in the
        live list is ``other`` (and so is its variant); variants as :meth:`variant_label`."""
        if not experiment:
            return {"experiment": NO_VARIANT, "variant": NO_VARIANT}
        if experiment not in self.experiments:
            return {"experiment": OTHER_VARIANT, "variant": OTHER_VARIANT}
        return {"experiment": experiment, "variant": self.variant_label(variant)}

    @contextlib.contextmanager
    def stage(self, name: str, backend: str = "") -> Iterator[None]:
        """Time a pipeline stage into ``drape_stage_duration_seconds``, even if it raises."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stage_duration.labels(stage=name, backend=backend).observe(
                time.perf_counter() - t0
            )

    def serve(self, port: int, address: str = "0.0.0.0") -> int:
        """Start the ``/metrics`` HTTP server; returns the bound port (useful with 0)."""
        httpd, _thread = start_http_server(port, addr=address, registry=self.registry)
        self._http = httpd
        return int(httpd.server_port)

    def close(self) -> None:
        httpd, self._http = self._http, None  # idempotent, also when called from two threads
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
