"""Graceful shutdown of a real server process: SIGTERM lets an in-flight call finish,
refuses new work, and the process exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

from helpers import call

HELPERS = Path(__file__).resolve().parent / "helpers.py"


def start_probe_process(grace: float) -> tuple[subprocess.Popen, int]:
    env = {
        **os.environ,
        "DRAPE_GRPC_ADDRESS": "127.0.0.1:0",
        "DRAPE_METRICS_PORT": "-1",
        "DRAPE_GRACE_PERIOD_SECONDS": str(grace),
        "DRAPE_LOG_FORMAT": "json",
        "DRAPE_DRAIN_DELAY_SECONDS": "0.2",
    }
    proc = subprocess.Popen(
        [sys.executable, str(HELPERS)], env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("msg") == "listening":
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return proc, int(rec["port"])
    proc.kill()
    raise RuntimeError("probe server did not start")


def test_sigterm_lets_in_flight_call_finish():
    proc, port = start_probe_process(grace=10)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            result: dict = {}

            def slow():
                try:
                    result["value"] = call(channel, "Sleep", b"2", timeout=20)
                except grpc.RpcError as err:  # pragma: no cover - the failure we test against
                    result["error"] = err.code()

            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.5)  # the call is in flight
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            # New work is refused while draining.
            with grpc.insecure_channel(f"127.0.0.1:{port}") as fresh:
                try:
                    call(fresh, "Echo", b"x", timeout=2)
                    refused = None
                except grpc.RpcError as err:
                    refused = err.code()
            assert refused in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            t.join(20)
            assert result == {"value": b"slept 2.00"}
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_grace_period_bounds_shutdown():
    proc, port = start_probe_process(grace=0.5)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            errors: list = []

            def very_slow():
                try:  # "Block" ignores cancellation: a handler stuck in native code
                    call(channel, "Block", b"30", timeout=60)
                except grpc.RpcError as err:
                    errors.append(err.code())

            t = threading.Thread(target=very_slow)
            t.start()
            time.sleep(0.5)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            # drain delay 0.2 s + grace 0.5 s + start-up of the exit; not the 30 s call.
            assert time.monotonic() - t0 < 5
            t.join(10)
            assert errors and errors[0] in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    finally:
        if proc.poll() is None:
            proc.kill()
