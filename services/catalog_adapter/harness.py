"""Running real adapter processes against a real broker: shared by the integration tests
and ``benchmarks/catalog_throughput.py``. Nothing here is mocked: adapters are
``python -m services.catalog_adapter`` subprocesses, the broker is Tansu.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from drape.catalog.v1 import events_pb2 as ev_pb
from services.common.kafka import (
    TOPIC_ASSET,
    TOPIC_PRODUCT,
    TOPIC_PRODUCT_DLQ,
    client_config,
    ensure_topics,
    free_port,
)

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = {TOPIC_PRODUCT: 4, TOPIC_ASSET: 4, TOPIC_PRODUCT_DLQ: 1}


def create_topics(bootstrap: str) -> None:
    """The catalog topics (product and asset with 4 partitions, DLQ with 1)."""
    ensure_topics(bootstrap, PARTITIONS)


def small_roster(directory: Path, side: int = 256) -> Path:
    """A rosters file whose two stock models are the built-in photos scaled to ``side``
    pixels (long side): fast enough for tests and benchmarks of the plumbing."""
    import cv2
    from PIL import Image

    from services.catalog_adapter.roster import builtin_photos

    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, rgb in builtin_photos().items():
        s = side / max(rgb.shape[:2])
        small = cv2.resize(
            rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA
        )
        path = directory / f"{name}.png"
        Image.fromarray(np.ascontiguousarray(small)).save(path)
        entries.append(f'  {{ id = "{name}", image = "{path.as_uri()}" }},')
    toml = directory / "rosters.toml"
    toml.write_text(
        'default_roster = "studio"\n\n[rosters.studio]\nmodels = [\n'
        + "\n".join(entries)
        + '\n]\n\n[merchants.acme]\ndefault_roster = "studio"\n'
    )
    return toml


class AdapterProcess:
    """One ``python -m services.catalog_adapter`` subprocess with its own metrics port.

    Args:
        bootstrap: the broker.
        store: the asset store directory.
        env: extra environment (settings). By default ``file://`` references are confined
            to the store's parent directory and loopback addresses may be fetched.
        log_path: where its stderr goes.
    """

    def __init__(self, bootstrap: str, store: Path, env: dict[str, str], log_path: Path):
        self.bootstrap, self.store, self.extra, self.log_path = bootstrap, store, env, log_path
        self.proc: subprocess.Popen | None = None
        self.metrics_port = 0

    def start(self) -> AdapterProcess:
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "DRAPE_CATALOG_ASSET_STORE": f"file://{self.store}",
            "DRAPE_METRICS_PORT": str(self.metrics_port),
            "DRAPE_METRICS_ADDRESS": "127.0.0.1",
            "DRAPE_LOG_FORMAT": "text",
            "DRAPE_GRACE_PERIOD_SECONDS": "20",
            # The tests' and benchmarks' references: files beside the store, HTTP servers
            # on loopback (both refused by default).
            "DRAPE_CATALOG_FETCH_FILE_ROOT": str(self.store.parent),
            "DRAPE_CATALOG_FETCH_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
            **self.extra,
        }
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.catalog_adapter", "--bootstrap", self.bootstrap],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=self._log,
        )
        return self

    def metrics(self) -> dict[str, float]:
        """Scraped ``drape_catalog_*`` samples, ``name{labels}`` -> value; {} when down."""
        try:
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2)
                .read()
                .decode()
            )
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            m = re.match(r"^(drape_catalog_[a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def assigned(self) -> int:
        return int(self.metrics().get("drape_catalog_assigned_partitions", -1))

    def rebalances(self) -> int:
        return int(self.metrics().get("drape_catalog_rebalances_total", 0))

    def kill(self) -> None:
        """SIGKILL: no drain, no commit, no goodbye."""
        self.proc.send_signal(signal.SIGKILL)
        self.wait(10)

    def terminate(self, timeout: float = 40) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._log.close()
        return code

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""


def wait_for(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_assigned(adapters: list[AdapterProcess], timeout: float = 60, min_rebalances=None):
    """Wait until every live adapter holds partitions and together they hold all four."""

    def ok():
        if min_rebalances is not None and any(
            a.rebalances() < r for a, r in zip(adapters, min_rebalances, strict=True)
        ):
            return False
        counts = [a.assigned() for a in adapters]
        return all(c > 0 for c in counts) and sum(counts) == PARTITIONS[TOPIC_PRODUCT]

    wait_for(ok, timeout, what="every adapter to be assigned partitions")


class TopicReader:
    """Reads a whole topic from the beginning (no consumer group), incrementally."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(
            **client_config(bootstrap=bootstrap),
            enable_auto_commit=False,
            reconnect_backoff_max_ms=1000,
        )
        parts = wait_for(
            lambda: self.consumer.partitions_for_topic(topic), 20, what=f"topic {topic}"
        )
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        self.records: list = []

    def poll(self, timeout_ms: int = 300) -> list:
        new = []
        for recs in self.consumer.poll(timeout_ms=timeout_ms).values():
            new.extend(recs)
        self.records.extend(new)
        return new

    def close(self) -> None:
        self.consumer.close()


def asset_events(records) -> tuple[list[ev_pb.AssetReady], list[ev_pb.JobFailed]]:
    """Decode catalog.asset.v1 records into (AssetReady list, JobFailed list)."""
    ready, failed = [], []
    for r in records:
        ev = ev_pb.AssetEvent.FromString(r.value)
        assert dict(r.headers)["drape-event-type"].decode() == ev.WhichOneof("event")
        if ev.HasField("asset_ready"):
            ready.append(ev.asset_ready)
        else:
            failed.append(ev.job_failed)
    return ready, failed


def wait_for_assets(
    reader: TopicReader, expected: set[tuple[str, str]], timeout: float
) -> list[ev_pb.AssetReady]:
    """Read until an AssetReady exists for every ``(event_id, model_id)`` in ``expected``."""
    deadline = time.monotonic() + timeout
    seen: set[tuple[str, str]] = set()
    while time.monotonic() < deadline:
        reader.poll()
        ready, _ = asset_events(reader.records)
        seen = {(a.event_id, a.model_id) for a in ready}
        if expected <= seen:
            return ready
    missing = sorted(expected - seen)
    raise TimeoutError(f"{len(missing)} of {len(expected)} assets never announced: {missing[:5]}")


class StuckClipRunner:
    """A clip step that never ends and ignores its cancel token: the worst case of a stuck
    job, for tests (``DRAPE_CATALOG_CLIP_RUNNER=services.catalog_adapter.harness:
    stuck_clip_runner``). Each call sleeps an hour."""

    backend = "stuck"
    version = "stuck"

    def make_clip(self, still_png, model, motion_template, token):
        time.sleep(3600)
        return []


def stuck_clip_runner(settings) -> StuckClipRunner:
    return StuckClipRunner()
