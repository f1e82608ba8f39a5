"""Speed of a still with a registered garment and with a new one, on one core and under load.

The storefront's path: a garment is analysed once (``RegisterGarment``) and tried on by many
shoppers, each call naming it by ``garment_id``. This script measures that path against a
garment never seen before (full analysis each call, the learned U²-Net-p cut-out of
:mod:`services.common.analysis.saliency` included), on the inputs of ``speed_tryon.py``: the
Grace Hopper photo resized and centre-cropped to 768 x 1024 (the same code), and a red
T-shirt drawn by :mod:`services.tryon.flatlays` (768 x 768). A still is try-on + refine.

Measured:

* **one core, in process**: a child under ``taskset -c 0`` with ``OMP_NUM_THREADS=1`` (and
  the OpenBLAS/MKL equivalents), ``cv2.setNumThreads(1)`` and ONNX Runtime on one thread
  (the :class:`~services.common.analysis.saliency.SaliencyModel` default). Warm-up, then
  ``n`` timed ``TryOnPipeline.run`` calls, median and p95, end to end and per stage
  (``TryOnResult.timings``):

  - ``registered``: ``analyze_garment`` once beforehand, then ``GarmentInput(image=None,
    analysis=...)`` (the garment stage only hands the analysis over). Each run gets its own
    ``copy.deepcopy`` of the analysis, made untimed, as ``GarmentRegistry.get`` hands the
    server a copy; the copy is timed on its own (``registered_copy``);
  - ``new_garment``: the flat-lay analysed in every run. Each run gets a fresh flat-lay (the
    blue channel of the shirt's colour moved by one level per run), so no content cache
    could answer, although ``TryOnPipeline.run`` keeps none;
  - ``saliency_u2netp_320``: ``SaliencyModel`` alone on the flat-lay (resize to 320 x 320,
    normalise, one ONNX Runtime run, min-max), and how often one analysis calls it (a second
    look on a plain backdrop calls it twice).

* **load over gRPC** (all cores, 2 on the reference machine): ``drape serve tryon`` in its
  own process on a free loopback port (so client threads do not share the server's GIL; they
  share its cores), the default settings except no metrics server, text logs and no drain
  delay. The garment is registered once with ``RegisterGarment``; then, per ``N`` in 1, 2,
  4, 8, ``N`` client threads each loop ``TryOn`` (``garment_id``, person JPEG q90 in, JPEG
  q90 out, refine on) for a warm-up, then a measured window. Reported per ``N``: stills/s
  (calls answered OK inside the window / its length), p50 and p95 latency of those calls,
  calls refused (``RESOURCE_EXHAUSTED`` once more than ``DRAPE_MAX_CONCURRENT_RPCS`` are in
  flight: refused, not queued; the refused client waits ``REFUSED_BACKOFF_S`` before its
  next call, as a client backing off would), the server-side stage medians
  (``ResponseMeta.timings``; waiting for the person analyzer's lock counts in ``person``)
  and the CPU the server and this client process used, in cores. The server reads the
  environment as ever, so ``DRAPE_MAX_CONCURRENT_RPCS=8 python ...`` measures another limit;
  the limit in force is printed and written.

Targets of issue 10 (reported, never asserted): registered <= 250 ms median on one core, a
new garment <= 700 ms, >= 4 stills/s on 2 cores with registered garments.

Usage::

    python benchmarks/speed_tryon_registered.py [--quick] [--out DIR] [--skip-load]

Writes ``DIR/speed_tryon_registered.json`` (default ``out/bench``). The figures describe one
machine on one day and its load (the load average is written with them); they belong in the
closing notes of a change, never in assertions in tests.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The one-core child must limit its thread pools before NumPy/OpenCV load them.
if "--one-core-child" in sys.argv:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from bench_common import describe_machine, run_pinned_child  # noqa: E402

# The photo preparation, statistics and table of speed_tryon.py, so the figures compare.
from speed_tryon import encode, photo_768x1024, print_table, stage_stats, stats  # noqa: E402

NOTE = (
    "grace_hopper.jpg resized and centre-cropped to 768x1024 (as speed_tryon.py); red "
    "T-shirt flat-lay 768x768 (flatlays.draw_garment); refine on"
)
TARGETS_MS = {"registered": 250.0, "new_garment": 700.0}
TARGET_STILLS_PER_S = 4.0
# (warm-up, measured) runs in the one-core child.
DEFAULT_ITERS = {"still": (2, 7), "saliency": (2, 10), "copy": (3, 30)}
QUICK_ITERS = {"still": (1, 2), "saliency": (1, 3), "copy": (1, 5)}
# Load: calls in flight, and (warm-up, measured) seconds per N.
IN_FLIGHT = (1, 2, 4, 8)
DEFAULT_WINDOW_S = (4.0, 20.0)
QUICK_WINDOW_S = (1.0, 3.0)
REFUSED_BACKOFF_S = 0.05
SERVER_START_TIMEOUT_S = 240.0
TSHIRT_RGB = (200, 40, 40)


def tshirt(blue: int = TSHIRT_RGB[2]) -> np.ndarray:
    """The drawn red T-shirt (768 x 768); ``blue`` varies its colour by a level or so."""
    from services.tryon.flatlays import draw_garment

    return draw_garment("tshirt", "solid", color=(*TSHIRT_RGB[:2], blue)).image


def prepared_runs(prepare, fn, iters: tuple[int, int]):
    """Warm up, collect garbage, then ``n`` timed ``fn(prepare(i))`` calls (the preparation
    untimed); ``fn`` returns stage timings. Returns ``(totals, stages)``."""
    warmup, n = iters
    for i in range(warmup):
        fn(prepare(i))
    gc.collect()
    totals, stages = [], []
    for i in range(warmup, warmup + n):
        arg = prepare(i)
        t0 = time.perf_counter()
        st = fn(arg)
        totals.append(time.perf_counter() - t0)
        stages.append(st)
    return totals, stages


def with_samples(results: list[dict], totals: list[float]) -> list[dict]:
    """Keep each run's end-to-end time (ms, in order) with the first measurement, so a slow
    start or a bimodal spread shows in the JSON."""
    results[0]["samples_ms"] = [round(t * 1e3, 1) for t in totals]
    return results


# --------------------------------------------------------------------------- one core


def one_core_child(path: Path, iters: dict[str, tuple[int, int]]) -> int:
    """The in-process measurements (run in the pinned child); JSON to ``path``."""
    from services.common.analysis import saliency as S
    from services.common.analysis.garment import analyze_garment
    from services.common.analysis.person import PersonAnalyzer
    from services.tryon.pipeline import GarmentInput, TryOnOptions, TryOnPipeline
    from services.tryon.server import make_refine_fn

    cv2.setNumThreads(1)
    refine_fn = make_refine_fn()
    if refine_fn is None:
        raise RuntimeError("the refiner is not installed: a still is try-on + refine")
    person = photo_768x1024()
    # The server's default configuration: classical + learned cut-out, no SAM segmenter.
    pipe = TryOnPipeline(PersonAnalyzer(), refine_fn)
    opts = TryOnOptions(refine=True)
    results: list[dict] = []
    try:
        model = S.default_model()  # loaded (digest checked) here, not in the first timed run
        # Registration, done once beforehand (timed once, for the record).
        t0 = time.perf_counter()
        registered = analyze_garment(tshirt())
        register_s = time.perf_counter() - t0

        def run_registered(analysis):
            return pipe.run(person, [GarmentInput(None, analysis=analysis)], opts).timings

        totals, stages = prepared_runs(
            lambda _i: copy.deepcopy(registered), run_registered, iters["still"]
        )
        results += with_samples(stage_stats("registered", totals, stages, NOTE), totals)
        totals, _ = prepared_runs(
            lambda _i: None, lambda _: copy.deepcopy(registered), iters["copy"]
        )
        results.append(stats("registered_copy", totals, "copy.deepcopy of the analysis"))

        # A new flat-lay each run: blue 40, 41, ... (drawn untimed).
        def run_new(flat):
            return pipe.run(person, [GarmentInput(flat)], opts).timings

        totals, stages = prepared_runs(
            lambda i: tshirt(TSHIRT_RGB[2] + 1 + i), run_new, iters["still"]
        )
        results += with_samples(
            stage_stats("new_garment", totals, stages, NOTE + "; new flat-lay each run"), totals
        )

        flat = tshirt()
        totals, _ = prepared_runs(lambda _i: flat, lambda f: model(f), iters["saliency"])
        results.append(
            stats("saliency_u2netp_320", totals, "768x768 flat-lay -> 320x320, one ORT thread")
        )
        calls = []

        def counting(rgb):
            calls.append(rgb.shape)
            return model(rgb)

        analyze_garment(flat, saliency=counting)
        ort_threads = model._session.get_session_options().intra_op_num_threads
    finally:
        pipe.analyzer.close()
    doc = {
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cv2_threads": cv2.getNumThreads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "ort_intra_op_threads": ort_threads,
        "registration_seconds": round(register_s, 4),
        "saliency_calls_per_analysis": len(calls),
        "measurements": results,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


def bench_one_core(quick: bool) -> dict[str, object]:
    """Run :func:`one_core_child` in a child pinned to core 0 (unpinned without taskset)."""
    return run_pinned_child(__file__, quick, tail=3000)


# --------------------------------------------------------------------------- load


def free_port() -> int:
    """A loopback port free right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # After the ")" closing the command name, utime and stime are fields 12 and 13.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class ServerProcess:
    """``drape serve tryon`` on ``127.0.0.1:port``, its log in a temporary file."""

    def __init__(self, port: int) -> None:
        self.port = port
        fd, self.log_path = tempfile.mkstemp(prefix="drape-serve-", suffix=".log")
        drape = Path(sys.executable).with_name("drape")
        cmd = [str(drape)] if drape.exists() else [sys.executable, "-m", "services.cli"]
        env = dict(
            os.environ,
            DRAPE_GRPC_ADDRESS=f"127.0.0.1:{port}",
            DRAPE_METRICS_PORT="-1",
            DRAPE_LOG_FORMAT="text",
            DRAPE_LOG_LEVEL="WARNING",
            DRAPE_DRAIN_DELAY_SECONDS="0",
        )
        self.proc = subprocess.Popen(
            [*cmd, "serve", "tryon"], cwd=ROOT, env=env, stdout=fd, stderr=subprocess.STDOUT
        )
        os.close(fd)  # the child holds its own copy

    def wait_serving(self, channel, timeout: float) -> float:
        """Poll the health service until the try-on service is SERVING; seconds taken."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(channel)
        req = health_pb2.HealthCheckRequest(service="drape.tryon.v1.TryOnService")
        t0 = time.monotonic()
        while time.monotonic() < t0 + timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log_tail()}")
            try:
                if health.Check(req, timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return time.monotonic() - t0
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not SERVING after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        return Path(self.log_path).read_text(encoding="utf-8", errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        os.unlink(self.log_path)


def closed_loop(stub, request, n: int, window: tuple[float, float], server_pid: int) -> dict:
    """``n`` threads loop ``TryOn`` for ``window`` = (warm-up, measured) seconds."""
    import grpc

    warm_s, measure_s = window
    records: list[tuple[float, float, str, dict[str, float]]] = []
    lock = threading.Lock()
    start = time.perf_counter()
    t_from, t_to = start + warm_s, start + warm_s + measure_s

    def worker() -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= t_to:
                return
            try:
                resp = stub.TryOn(request, timeout=120)
                code, st = "OK", {t.stage: t.seconds for t in resp.meta.timings}
            except grpc.RpcError as exc:
                code, st = exc.code().name, {}
            t1 = time.perf_counter()
            with lock:
                records.append((t0, t1, code, st))
            if code == "RESOURCE_EXHAUSTED":
                time.sleep(REFUSED_BACKOFF_S)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, t_from - time.perf_counter()))
    srv0, cli0 = cpu_seconds(server_pid), self_cpu_seconds()
    time.sleep(max(0.0, t_to - time.perf_counter()))
    srv1, cli1 = cpu_seconds(server_pid), self_cpu_seconds()
    load1 = os.getloadavg()[0]
    for t in threads:
        t.join()

    inside = [r for r in records if t_from <= r[1] <= t_to]
    ok = [r for r in inside if r[2] == "OK"]
    codes: dict[str, int] = {}
    for r in inside:
        codes[r[2]] = codes.get(r[2], 0) + 1
    lat = np.asarray([r[1] - r[0] for r in ok], np.float64) * 1e3
    stage_names: list[str] = []
    for r in ok:
        stage_names += [k for k in r[3] if k not in stage_names]
    stages = {
        k: round(float(np.median([r[3].get(k, 0.0) for r in ok])) * 1e3, 1) for k in stage_names
    }
    return {
        "in_flight": n,
        "window_seconds": measure_s,
        "ok": len(ok),
        "codes": codes,
        "stills_per_second": len(ok) / measure_s,
        "refused_per_second": codes.get("RESOURCE_EXHAUSTED", 0) / measure_s,
        "latency_ms": {
            "p50": float(np.median(lat)) if len(lat) else None,
            "p95": float(np.percentile(lat, 95)) if len(lat) else None,
            "mean": float(lat.mean()) if len(lat) else None,
        },
        "server_stage_median_ms": stages,
        "server_cpu_cores": round((srv1 - srv0) / measure_s, 2),
        "client_cpu_cores": round((cli1 - cli0) / measure_s, 2),
        "loadavg_1min_at_end": round(load1, 2),
    }


def bench_load(quick: bool) -> dict[str, object]:
    """Register the garment on a ``drape serve tryon`` process, then closed-loop load."""
    import grpc

    from drape.common.v1 import common_pb2
    from drape.tryon.v1 import tryon_service_pb2 as pb
    from drape.tryon.v1 import tryon_service_pb2_grpc as pb_grpc
    from services.common.config import load_settings

    settings = load_settings()  # what the server reads too (same environment)
    window = QUICK_WINDOW_S if quick else DEFAULT_WINDOW_S
    person_jpeg = encode(photo_768x1024(), "JPEG")
    garment_png = encode(tshirt(), "PNG")
    port = free_port()
    server = ServerProcess(port)
    doc: dict[str, object] = {
        "server": "drape serve tryon (own process), 127.0.0.1",
        "settings": {
            "max_concurrent_rpcs": settings.max_concurrent_rpcs,
            "max_watch_streams": settings.max_watch_streams,
            "rpc_worker_threads": settings.max_concurrent_rpcs + settings.max_watch_streams + 8,
            "garment_cache_size": settings.garment_cache_size,
            "garment_segmenter": settings.garment_segmenter,
        },
        "refused_backoff_seconds": REFUSED_BACKOFF_S,
        "window_seconds": {"warmup": window[0], "measured": window[1]},
    }
    try:
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 << 20)]
        )
        with channel:
            doc["server_ready_seconds"] = round(
                server.wait_serving(channel, SERVER_START_TIMEOUT_S), 1
            )
            stub = pb_grpc.TryOnServiceStub(channel)
            t0 = time.perf_counter()
            reg = stub.RegisterGarment(
                pb.RegisterGarmentRequest(flat_lay=common_pb2.Image(data=garment_png)), timeout=120
            )
            doc["register_seconds"] = round(time.perf_counter() - t0, 3)
            doc["garment_id"] = reg.garment_id
            doc["register_timings_ms"] = {
                t.stage: round(t.seconds * 1e3, 1) for t in reg.meta.timings
            }
            req = pb.TryOnRequest(
                person=common_pb2.Image(data=person_jpeg),
                garments=[pb.Garment(garment_id=reg.garment_id)],
                refine=True,
                output_format=common_pb2.IMAGE_FORMAT_JPEG,
                quality=90,
            )
            resp = stub.TryOn(req, timeout=120)  # checked once, outside the timing
            if (resp.image.width, resp.image.height) != (768, 1024) or not resp.refined:
                raise RuntimeError(
                    f"unexpected answer {resp.image.width}x{resp.image.height}, "
                    f"refined={resp.refined}"
                )
            doc["request"] = (
                f"person JPEG q90 {len(person_jpeg) / 1024:.0f} KB + garment_id in, JPEG q90 "
                f"{len(resp.image.data) / 1024:.0f} KB out, refine on"
            )
            doc["runs"] = [closed_loop(stub, req, n, window, server.proc.pid) for n in IN_FLIGHT]
    finally:
        server.stop()
    return doc


# --------------------------------------------------------------------------- report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"), help="output directory")
    parser.add_argument("--skip-load", action="store_true", help="one-core measurements only")
    parser.add_argument("--one-core-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    iters = QUICK_ITERS if args.quick else DEFAULT_ITERS
    if args.one_core_child is not None:
        return one_core_child(args.one_core_child, iters)

    machine = describe_machine()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    one = bench_one_core(args.quick)
    load = None if args.skip_load else bench_load(args.quick)
    elapsed = time.perf_counter() - t0
    load_after = os.getloadavg()

    print(
        f"machine: {machine['cpu_model']}, {machine['cpu_usable']}/{machine['cpu_count']} cores, "
        f"Python {machine['python']}, numpy {machine['numpy']}, opencv {machine['opencv']}, "
        f"grpcio {machine['grpcio']}"
    )
    print(
        "load average (1/5/15 min): before "
        + "/".join(f"{x:.2f}" for x in load_before)
        + ", after "
        + "/".join(f"{x:.2f}" for x in load_after)
    )
    print(f"input: {NOTE}")
    targets: dict[str, object] = {}
    if "error" in one:
        print(f"\none core: FAILED: {one['error']}")
    else:
        print(
            f"\none core ({'taskset -c 0' if one['pinned'] else 'NOT pinned: no taskset'}, "
            f"affinity {one['affinity']}, cv2 threads {one['cv2_threads']}, "
            f"OMP_NUM_THREADS={one['omp_num_threads']}, ORT threads {one['ort_intra_op_threads']}; "
            f"registration once: {one['registration_seconds'] * 1e3:.0f} ms; U²-Net-p calls per "
            f"analysis: {one['saliency_calls_per_analysis']}):"
        )
        print_table(one["measurements"])
        by = {m["name"]: m for m in one["measurements"]}
        for key, goal in TARGETS_MS.items():
            med = by[f"{key}_end_to_end"]["median"]
            targets[key] = {"target_ms": goal, "median_ms": round(med, 1), "met": med <= goal}
            print(
                f"target {key}: median {med:.0f} ms vs <= {goal:.0f} ms -> "
                f"{'met' if med <= goal else 'MISSED'}"
            )
    if load is not None:
        s = load["settings"]
        print(
            f"\nload over gRPC ({load['server']}; max_concurrent_rpcs {s['max_concurrent_rpcs']}, "
            f"{s['rpc_worker_threads']} RPC threads; ready in {load['server_ready_seconds']} s; "
            f"RegisterGarment {load['register_seconds'] * 1e3:.0f} ms; {load['request']}; "
            f"{load['window_seconds']['measured']:.0f} s measured per N after "
            f"{load['window_seconds']['warmup']:.0f} s warm-up):"
        )
        header = (
            f"{'N':>3} {'stills/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'ok':>5} {'refused':>8} "
            f"{'srv cpu':>8} {'cli cpu':>8}  server stage medians (ms)"
        )
        print(header)
        print("-" * len(header))
        for r in load["runs"]:
            lat = r["latency_ms"]
            p50 = f"{lat['p50']:.0f}" if lat["p50"] is not None else "-"
            p95 = f"{lat['p95']:.0f}" if lat["p95"] is not None else "-"
            other = sum(v for k, v in r["codes"].items() if k not in ("OK", "RESOURCE_EXHAUSTED"))
            print(
                f"{r['in_flight']:>3} {r['stills_per_second']:>9.2f} {p50:>8} {p95:>8} "
                f"{r['ok']:>5} {r['codes'].get('RESOURCE_EXHAUSTED', 0):>8} "
                f"{r['server_cpu_cores']:>8.2f} {r['client_cpu_cores']:>8.2f}  "
                + " ".join(f"{k} {v:.0f}" for k, v in r["server_stage_median_ms"].items())
                + (f"  other errors {other}" if other else "")
            )
        best = max(load["runs"], key=lambda r: r["stills_per_second"])
        met = best["stills_per_second"] >= TARGET_STILLS_PER_S
        targets["throughput"] = {
            "target_stills_per_second": TARGET_STILLS_PER_S,
            "best_stills_per_second": round(best["stills_per_second"], 2),
            "at_in_flight": best["in_flight"],
            "cores": machine["cpu_usable"],
            "met": met,
        }
        print(
            f"target throughput: best {best['stills_per_second']:.2f} stills/s (N="
            f"{best['in_flight']}) on {machine['cpu_usable']} cores vs >= "
            f"{TARGET_STILLS_PER_S:.0f} -> {'met' if met else 'MISSED'}"
        )
    print(f"total {elapsed:.1f} s{' (quick)' if args.quick else ''}")

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "speed_tryon_registered.json"
    doc = {
        "benchmark": "speed_tryon_registered",
        "quick": args.quick,
        "elapsed_seconds": round(elapsed, 3),
        "machine": machine,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "input": {"width": 768, "height": 1024, "note": NOTE},
        "one_core": one,
        "load": load,
        "targets": targets,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0 if "error" not in one else 1


if __name__ == "__main__":
    sys.exit(main())
