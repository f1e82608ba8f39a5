"""End-to-end throughput of the catalog adapter: Kafka in, try-on stills in the asset store,
AssetReady events out, with 1 and 2 adapter processes on one machine.

Everything is real: a Tansu broker on loopback, ``python -m services.catalog_adapter``
subprocesses in one consumer group (embedded try-on + refiner, filesystem store), product
events published with ``acks=all``. The roster is the two built-in public-domain photos
scaled to ``--side`` pixels (long side; 256 by default, the size the integration tests
use; ``--side 512`` is the photos' own size); each event has one different garment
flat-lay (256 px), so every event makes two new stills (nothing is reused).

Measured, per adapter count (1, then 2):

* **throughput**: adapters started and joined; then, per run, ``--events`` new events are
  published at once and the clock runs from the first send to the last AssetReady read
  back from ``catalog.asset.v1``. One warm-up run, then ``--runs`` measured runs: events
  per second (median, and each run), and the p50/p95 per-event latency (publish to its
  last AssetReady).
* **backlog drain**: ``--backlog`` events (200) published while no adapter runs; then the
  adapters start, and the clock runs from their start to the last AssetReady (start-up,
  model load, group join included), with the time from start to join reported apart.

Usage::

    python benchmarks/catalog_throughput.py [--quick] [--out DIR] [--side 256]

Writes ``DIR/catalog_throughput.json`` (default ``out/bench``). The machine is shared and
has 2 cores: two adapters compete with each other (and anything else running) for them.
The figures describe one machine on one day; they belong in closing notes, never in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from services.catalog_adapter.harness import (  # noqa: E402
    AdapterProcess,
    TopicReader,
    asset_events,
    create_topics,
    small_roster,
    wait_assigned,
)
from services.catalog_adapter.publish import draw_sample_garment, publish, sample_event  # noqa: E402
from services.common.kafka import TOPIC_ASSET, TansuBroker  # noqa: E402

MODELS = 2


class Catalog:
    """Distinct garments on disk, handed out in order so no two events share one."""

    def __init__(self, directory: Path) -> None:
        self.dir, self.next = directory, 0
        directory.mkdir(parents=True, exist_ok=True)

    def events(self, n: int, prefix: str):
        out = []
        for _ in range(n):
            i = self.next
            self.next += 1
            path = self.dir / f"g{i:05d}.png"
            Image.fromarray(draw_sample_garment(i, 256)).save(path)
            out.append(sample_event(i, path.as_uri(), prefix=prefix))
        return out


def drain(reader: TopicReader, events, t_sent: dict[str, float], timeout: float):
    """Read AssetReady until every event has all its stills; per-event latencies."""
    want = {e.event_id for e in events}
    done: dict[str, float] = {}
    counts: dict[str, int] = {}
    seen = 0
    deadline = time.monotonic() + timeout
    while len(done) < len(want):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(want) - len(done)} events not done after {timeout} s")
        reader.poll(100)
        ready, _ = asset_events(reader.records[seen:])
        seen = len(reader.records)
        now = time.perf_counter()
        for a in ready:
            if a.event_id in want:
                counts[a.event_id] = counts.get(a.event_id, 0) + 1
                if counts[a.event_id] >= MODELS and a.event_id not in done:
                    done[a.event_id] = now
    return {k: done[k] - t_sent.get(k, 0.0) for k in want}, max(done.values())


def start_adapters(n, bootstrap, work: Path, roster: Path, tag: str) -> list[AdapterProcess]:
    env = {"DRAPE_CATALOG_ROSTERS_FILE": str(roster), "DRAPE_CATALOG_GROUP_ID": f"bench-{tag}"}
    return [
        AdapterProcess(bootstrap, work / f"store-{tag}", env, work / f"{tag}-{i}.log").start()
        for i in range(n)
    ]


def bench_count(n: int, args, work: Path, roster: Path) -> dict:
    catalog = Catalog(work / f"garments-{n}")
    result: dict = {"adapters": n}
    with TansuBroker() as broker:
        create_topics(broker.bootstrap)
        adapters = start_adapters(n, broker.bootstrap, work, roster, f"tp{n}")
        reader = TopicReader(broker.bootstrap, TOPIC_ASSET)
        try:
            wait_assigned(adapters, timeout=120)
            runs = []
            for r in range(args.warmup + args.runs):
                events = catalog.events(args.events, f"r{n}-{r}")
                t0 = time.perf_counter()
                sent = {e.event_id: t0 for e in events}
                publish(events, broker.bootstrap)
                lat, t_last = drain(reader, events, sent, timeout=60 + 10 * args.events)
                wall = t_last - t0
                if r >= args.warmup:
                    lats = sorted(lat.values())
                    runs.append(
                        {
                            "events": len(events),
                            "seconds": round(wall, 3),
                            "events_per_s": round(len(events) / wall, 2),
                            "latency_p50_s": round(statistics.median(lats), 3),
                            "latency_p95_s": round(lats[int(0.95 * (len(lats) - 1))], 3),
                        }
                    )
                    print(f"  {n} adapter(s) run {r - args.warmup + 1}: {runs[-1]}", flush=True)
            result["throughput_runs"] = runs
            result["events_per_s_median"] = statistics.median(x["events_per_s"] for x in runs)
        finally:
            reader.close()
            for a in adapters:
                a.terminate()

    # Backlog: publish first, then start the adapters on it.
    with TansuBroker() as broker:
        create_topics(broker.bootstrap)
        events = catalog.events(args.backlog, f"backlog{n}")
        publish(events, broker.bootstrap)
        reader = TopicReader(broker.bootstrap, TOPIC_ASSET)
        t0 = time.perf_counter()
        adapters = start_adapters(n, broker.bootstrap, work, roster, f"bl{n}")
        try:
            t_join = None
            while t_join is None:
                if all(a.assigned() > 0 for a in adapters):
                    t_join = time.perf_counter()
                time.sleep(0.1)
            _lat, t_last = drain(reader, events, {}, timeout=120 + 5 * args.backlog)
        finally:
            reader.close()
            for a in adapters:
                a.terminate()
    result["backlog"] = {
        "events": args.backlog,
        "drain_s_from_start": round(t_last - t0, 2),
        "start_to_join_s": round(t_join - t0, 2),
        "drain_s_after_join": round(t_last - t_join, 2),
        "events_per_s_after_join": round(args.backlog / (t_last - t_join), 2),
    }
    print(f"  {n} adapter(s) backlog: {result['backlog']}", flush=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--quick", action="store_true", help="fewer, smaller runs")
    ap.add_argument("--side", type=int, default=256, help="stock-model photo long side (px)")
    ap.add_argument("--events", type=int, default=60, help="events per throughput run")
    ap.add_argument("--runs", type=int, default=3, help="measured throughput runs")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up throughput runs")
    ap.add_argument("--backlog", type=int, default=200, help="backlog size")
    args = ap.parse_args()
    if args.quick:
        args.events, args.runs, args.backlog = 20, 1, 40
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drape-catalog-bench-") as tmp:
        work = Path(tmp)
        roster = small_roster(work / "roster", args.side)
        results = []
        for n in (1, 2):
            print(f"catalog throughput with {n} adapter process(es)", flush=True)
            results.append(bench_count(n, args, work, roster))
    doc = {
        "benchmark": "catalog_throughput",
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "note": "shared machine; adapters compete for the same cores",
        },
        "config": {
            "stock_model_side_px": args.side,
            "garment_px": 256,
            "models_per_roster": MODELS,
            "events_per_run": args.events,
            "warmup_runs": args.warmup,
            "measured_runs": args.runs,
            "backlog": args.backlog,
            "workers_per_adapter": 1,
        },
        "results": results,
    }
    path = out / "catalog_throughput.json"
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for r in results:
        b = r["backlog"]
        print(
            f"{r['adapters']} adapter(s): {r['events_per_s_median']:.2f} events/s (median of "
            f"{args.runs}); backlog of {b['events']}: {b['drain_s_from_start']:.1f} s from start "
            f"({b['drain_s_after_join']:.1f} s after join)"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
