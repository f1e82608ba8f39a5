"""Soak: does a storm of oversized calls leave memory behind in a real server process?

Starts ``drape serve SERVICE`` as a child process on loopback, measures its resident set
(``VmRSS`` in ``/proc/PID/status``) after a few small valid calls (the baseline), then sends
``--rounds`` rounds of ``--concurrency`` callers x ``--per-caller`` calls, each carrying a
body over the image limit but under the message limit (``--body-mib``, default the image
limit + 8 MiB: what issue 12 item 5 used), and reads the RSS after each round, then after
``--settle`` seconds with no traffic, then after a few small valid calls again. The peak
(``VmHWM``, reset after start-up) is reported too: what a storm costs while it lasts.

The RPC is ``MediaService.InspectImage`` (``--service media``; every server hosts it) or
``TryOnService.TryOn`` with an oversized ``person`` (``--service tryon``, which loads the
person models first). Bodies are serialized once and sent as raw bytes, so the client side
costs no protobuf copies per call.

Usage::

    python benchmarks/soak_memory.py [--service media|tryon] [--rounds 6] [--concurrency 32]
        [--per-caller 2] [--body-mib 40] [--settle 5] [--out DIR] [--env KEY=VALUE ...]

Prints a table and writes ``soak_memory.json`` (in ``--out``, default ``out/bench``). The
figures describe one machine on one day; they are never asserted in tests.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "proto"))

from drape.common.v1 import common_pb2, media_service_pb2  # noqa: E402

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024
    return out


def _small_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (256, 256, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _requests(service: str, body_bytes: int) -> tuple[str, bytes, str, bytes]:
    """``(method, oversized request, method, small valid request)`` as serialized bytes."""
    # Not a decodable image: the size check must refuse it before any decoding, and the
    # bytes are random so no layer can compress or deduplicate them.
    big = np.random.default_rng(1).integers(0, 255, body_bytes, np.uint8).tobytes()
    small = _small_png()
    if service == "tryon":
        sys.path.insert(0, str(ROOT / "proto"))
        from drape.tryon.v1 import tryon_service_pb2 as T

        bad = T.TryOnRequest(
            person=common_pb2.Image(data=big),
            garments=[T.Garment(flat_lay=common_pb2.Image(data=small))],
        )
    else:
        bad = media_service_pb2.InspectImageRequest(image=common_pb2.Image(data=big))
    ok = media_service_pb2.InspectImageRequest(image=common_pb2.Image(data=small))
    method = (
        "/drape.tryon.v1.TryOnService/TryOn"
        if service == "tryon"
        else "/drape.common.v1.MediaService/InspectImage"
    )
    return (
        method,
        bad.SerializeToString(),
        "/drape.common.v1.MediaService/InspectImage",
        ok.SerializeToString(),
    )


def _outcome(fn, payload: bytes) -> str:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        fn(payload, timeout=120)
        return "OK"
    except grpc.RpcError as err:
        reason = ""
        st = rpc_status.from_call(err)
        for detail in st.details if st else ():
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info):
                reason = info.reason
        return f"{err.code().name}/{reason or '-'}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--service", choices=("media", "tryon"), default="media")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--per-caller", type=int, default=2)
    ap.add_argument("--body-mib", type=float, default=0, help="0: the image limit + 8 MiB")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--label", default="", help="a name for this run in the JSON")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    args = ap.parse_args()

    from services.common.config import Settings

    # The image limit the server will use (its default unless set in the environment).
    default = Settings.__dataclass_fields__["max_image_bytes"].default
    image_limit = int(
        dict(kv.split("=", 1) for kv in args.env).get(
            "DRAPE_MAX_IMAGE_BYTES", os.environ.get("DRAPE_MAX_IMAGE_BYTES", default)
        )
    )
    body = int(args.body_mib * MiB) if args.body_mib else image_limit + 8 * MiB
    method, bad, ok_method, ok = _requests(args.service, body)
    port = _free_port()
    env = {
        **os.environ,
        "DRAPE_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "DRAPE_METRICS_PORT": "-1",
        "DRAPE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'proto'}",
    }
    env.update(kv.split("=", 1) for kv in args.env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", args.service],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 64 * MiB)]
    )
    result: dict = {}
    try:
        health = health_pb2_grpc.HealthStub(channel)
        t0 = time.monotonic()
        while True:
            try:
                st = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                if st == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 300:
                raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        big_fn = channel.unary_unary(method)
        ok_fn = channel.unary_unary(ok_method)
        for _ in range(20):
            assert _outcome(ok_fn, ok) == "OK"
        time.sleep(1.0)
        # Reset the peak (VmHWM) so that it shows the storms, not the model loading.
        with contextlib.suppress(OSError):
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        base = _status(proc.pid)
        print(
            f"{args.service}: body {body / MiB:.1f} MiB, baseline RSS {base['VmRSS'] / MiB:.0f} MiB"
        )
        rounds = []
        pool = cf.ThreadPoolExecutor(args.concurrency)
        for r in range(args.rounds):
            t = time.monotonic()
            futs = [
                pool.submit(_outcome, big_fn, bad)
                for _ in range(args.concurrency * args.per_caller)
            ]
            codes = collections.Counter(f.result() for f in futs)
            st = _status(proc.pid)
            rounds.append(
                {
                    "round": r + 1,
                    "seconds": round(time.monotonic() - t, 2),
                    "rss_mib": round(st["VmRSS"] / MiB, 1),
                    "above_baseline_mib": round((st["VmRSS"] - base["VmRSS"]) / MiB, 1),
                    "outcomes": dict(codes),
                }
            )
            print(
                f"  round {r + 1}: {rounds[-1]['seconds']:.1f} s, RSS {rounds[-1]['rss_mib']:.0f} MiB "
                f"(+{rounds[-1]['above_baseline_mib']:.0f}), {dict(codes)}"
            )
        pool.shutdown()
        time.sleep(args.settle)
        settled = _status(proc.pid)
        for _ in range(20):
            assert _outcome(ok_fn, ok) == "OK"
        time.sleep(1.0)
        after_ok = _status(proc.pid)
        result = {
            "label": args.label,
            "service": args.service,
            "method": method,
            "body_mib": round(body / MiB, 2),
            "rounds_n": args.rounds,
            "concurrency": args.concurrency,
            "per_caller": args.per_caller,
            "settle_seconds": args.settle,
            "server_env": dict(kv.split("=", 1) for kv in args.env),
            "baseline_rss_mib": round(base["VmRSS"] / MiB, 1),
            "rounds": rounds,
            "settled_rss_mib": round(settled["VmRSS"] / MiB, 1),
            "settled_above_baseline_mib": round((settled["VmRSS"] - base["VmRSS"]) / MiB, 1),
            "after_valid_calls_rss_mib": round(after_ok["VmRSS"] / MiB, 1),
            "peak_rss_mib": round(after_ok["VmHWM"] / MiB, 1),
            "machine": {
                "python": platform.python_version(),
                "grpc": grpc.__version__,
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
            },
        }
        print(
            f"  settled after {args.settle:g} s: RSS {result['settled_rss_mib']:.0f} MiB "
            f"(+{result['settled_above_baseline_mib']:.0f}); after valid calls "
            f"{result['after_valid_calls_rss_mib']:.0f} MiB; peak {result['peak_rss_mib']:.0f} MiB"
        )
    finally:
        channel.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"soak_memory{'_' + args.label if args.label else ''}.json"
    (args.out / name).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
