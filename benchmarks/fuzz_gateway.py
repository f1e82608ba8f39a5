"""Fuzz the storefront gateway against its own OpenAPI document with schemathesis.

Starts the real services in this process (TryOnService, AnimateService and an
ExperimentService with one experiment, on a free loopback port), the gateway in front of
them (uvicorn on a free loopback port, short clips), waits until the gallery is registered,
makes two real clips through it (one finished, one refused), then runs the ``schemathesis
run`` command against ``/openapi.json`` with every check (server errors, status codes,
content types, headers and bodies against the schema, negative data rejected, positive
data accepted, unsupported methods, auth when on) in the coverage, fuzzing and stateful
phases. It writes a summary to ``--out``/fuzz_gateway.json: operations, test cases, failures
by check and by operation, and every answer the gateway gave by operation and status (from
its access log); schemathesis' own output goes to fuzz_gateway.log. Exits non-zero when
schemathesis found a failure.

    .venv/bin/python benchmarks/fuzz_gateway.py                     # 100 examples/operation
    .venv/bin/python benchmarks/fuzz_gateway.py --max-examples 20 --max-time 120

The configuration (:data:`CONFIG`) says where the document cannot be checked literally:
positive-data acceptance also takes 413 and 422 (a schema cannot say "a photo with a person
in it", so schema-valid bytes are refused with the service's reason, e.g.
IMAGE_UNRECOGNIZED), and two schemathesis limits with multipart forms are worked around per
operation (explained there). Half of the path parameters come from real ids (the two
clips, the gallery, the stack's experiment) so that operations answer more than 404.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXPERIMENTS = """\
[[experiment]]
id = "pdp-clip"
[[experiment.variant]]
name = "still"
output = "still"
[[experiment.variant]]
name = "clip"
output = "still+clip"
"""

# schemathesis.toml. Positive data: which statuses count as accepting schema-valid data
# (see above). Stateful links: the document's own, plus those from Location headers; the
# inference that copies ids between bodies is off, because it pastes a gallery garment_id
# into forms that carry a flat_lay and still labels them schema-valid. Dictionaries: ids
# of real clips and the stack's experiment, used for half of the path parameters so that
# the operations of a finished or failed clip and an assignment are reached, not only 404s.
CONFIG = """\
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "413", "422", "429"]

[phases.stateful.inference]
algorithms = ["location-headers"]

[dictionaries.clips]
values = {clips}

[dictionaries.experiments]
values = ["pdp-clip"]

[dictionaries.garments]
values = {garments}

[parameters]
"path.clip_id" = {{ dictionary = "clips", probability = 0.5 }}
"path.name" = {{ dictionary = "experiments", probability = 0.5 }}
"path.garment_id" = {{ dictionary = "garments", probability = 0.5 }}

# The try-on form: a garment_id excludes flat_lay and category (dependentSchemas). The
# coverage phase does not apply dependentSchemas, and the fuzzing phase's ids taken from
# earlier responses are pasted into forms that carry a flat_lay; both still label such
# forms schema-valid, which the gateway refuses with 400 GARMENT_SOURCE_CONFLICT /
# GARMENT_HINT_CONFLICT, as documented. So: no pasted ids for this operation, and 400 is
# an accepted answer in the coverage phase only.
[[operations]]
include-name = "POST /v1/tryon"
phases.fuzzing.extra-data-sources.responses = false
phases.coverage.checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "400", "401", "403", "404", "409", "413", "422", "429"
]

# The clip form: a `motion` mutated into an empty array sends no motion part at all, which
# is a valid form on the wire (the default motion), yet it stays labelled schema-violating
# (schemathesis cannot re-validate a form holding a binary part). The fuzzing phase may
# see 202 for it; the coverage phase keeps the default check.
[[operations]]
include-name = "POST /v1/clips"
phases.fuzzing.checks.negative_data_rejection.expected-statuses = [
  "202", "400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"
]
"""


def start_stack(work: Path, **gateway_overrides):
    """The services and the gateway, started; returns ``(grpc_server, channel, gateway)``."""
    import grpc

    from services.animate.server import AnimateApp
    from services.common.config import load_settings
    from services.common.server import create_server
    from services.experiments.server import ExperimentsApp
    from services.gateway.server import ThreadedGateway
    from services.tryon.server import TryOnApp

    defs = work / "experiments.toml"
    defs.write_text(EXPERIMENTS)
    overrides = {
        "gateway_clip_seconds": 1.0,
        "gateway_clip_fps": 8.0,
        "gateway_clip_max_side": 256,
        **gateway_overrides,
    }
    settings = load_settings(
        env={},
        grpc_address="127.0.0.1:0",
        metrics_port=-1,
        log_level="WARNING",
        experiments_file=str(defs),
        experiments_db=f"sqlite:///{work / 'experiments.db'}",
        **overrides,
    )
    apps = (TryOnApp(settings), AnimateApp(settings), ExperimentsApp(settings))
    server, port = create_server("127.0.0.1:0", *apps, settings=settings)
    server.start()
    if not server.wait_ready(180):
        raise RuntimeError(f"the services did not become ready: {server.load_error}")
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 256 << 20)]
    )
    gateway = ThreadedGateway(settings, "127.0.0.1:0", channel=channel).start()
    deadline = time.monotonic() + 120
    while not gateway.app.state.gateway.gallery.ready:
        if time.monotonic() > deadline:
            raise RuntimeError("the gallery was not registered")
        time.sleep(0.1)
    return server, channel, gateway


def make_clips(url: str) -> list[str]:
    """Two real clips through the gateway: one of a try-on still (SUCCEEDED) and one of a
    photo without a person (FAILED, NO_PERSON_DETECTED); returns their ids once done."""
    import base64
    import io

    import numpy as np
    import requests
    from PIL import Image
    from skimage import data

    def jpeg(pixels) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=90)
        return buf.getvalue()

    garments = requests.get(f"{url}/v1/garments", timeout=60).json()["garments"]
    r = requests.post(
        f"{url}/v1/tryon",
        files={"photo": ("a.jpg", jpeg(data.astronaut()), "image/jpeg")},
        data={"garment_id": garments[0]["id"]},
        timeout=120,
    )
    r.raise_for_status()
    still = base64.b64decode(r.json()["still"]["data"])
    ramp = np.linspace(40, 220, 256, dtype=np.uint8)
    landscape = np.dstack([np.tile(ramp, (192, 1))] * 3)  # a sky-like gradient, no one in it
    ids = []
    for image in (still, jpeg(landscape)):
        r = requests.post(f"{url}/v1/clips", files={"still": ("s.jpg", image)}, timeout=60)
        r.raise_for_status()
        ids.append(r.json()["id"])
    for clip_id in ids:  # wait for both to finish
        with requests.get(f"{url}/v1/clips/{clip_id}/events", stream=True, timeout=300) as ev:
            for _ in ev.iter_lines():
                pass
    return ids


def run_schemathesis(
    url: str,
    report: Path,
    max_examples: int,
    max_time: int | None,
    seed: int,
    extra: list[str] = (),
    timeout: float | None = None,
    clips: list[str] = (),
    garments: list[str] = (),
) -> tuple[int, str]:
    """``schemathesis run`` against ``url``/openapi.json; returns (exit code, output)."""
    report = report.resolve()
    config = report.with_suffix(".toml")
    config.write_text(
        CONFIG.format(
            clips=json.dumps(list(clips) or ["unknown-clip"]),
            garments=json.dumps(list(garments) or ["0" * 64]),
        )
    )
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--request-timeout",
        "120",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *extra,
    ]
    if max_time:
        cmd += ["--max-time", str(max_time)]
    env = {**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"}
    # In the report's folder: schemathesis keeps a crash cache under its working directory.
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=report.parent
    )
    return proc.returncode, proc.stdout + proc.stderr


def summarise(report: dict) -> dict:
    """The figures of schemathesis' JSON report: operations, test cases, phases, failures
    and errors by kind, warnings."""
    return {
        "schemathesis_version": report.get("schemathesis_version"),
        "operations": report.get("operations", {}),
        "test_cases": report.get("test_cases", {}),
        "phases": {k: v.get("status") for k, v in report.get("phases", {}).items()},
        "failures": [
            {k: f.get(k) for k in ("code", "title", "count", "operations")}
            for f in report.get("failures", [])
        ],
        "errors": report.get("errors", []),
        "warnings": {k: v for k, v in report.get("warnings", {}).items() if v},
        "stop_reason": report.get("stop_reason"),
    }


class StatusCounter(logging.Handler):
    """Counts the gateway's answers by operation and status, from its access log."""

    def __init__(self, paths: list[str]) -> None:
        super().__init__(logging.INFO)
        self.routes = [
            (re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$"), path) for path in paths
        ]
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() != "http":
            return
        path = getattr(record, "path", "")
        route = next((name for rx, name in self.routes if rx.match(path)), "(other)")
        self.counts[f"{getattr(record, 'method', '')} {route}"][str(record.status)] += 1

    def table(self) -> dict[str, dict[str, int]]:
        return {op: dict(sorted(c.items())) for op, c in sorted(self.counts.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-examples", type=int, default=100, help="test cases per operation")
    ap.add_argument("--max-time", type=int, default=0, help="seconds for the whole run (0: none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="out/bench")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drape-fuzz-gw-") as tmp:
        work = Path(tmp)
        server, channel, gateway = start_stack(work)
        try:
            from services.gateway.openapi import openapi_document

            counter = StatusCounter(
                list(openapi_document(gateway.app.state.gateway.settings)["paths"])
            )
            gw_log = logging.getLogger("drape.gateway")
            gw_log.setLevel(logging.INFO)
            gw_log.addHandler(counter)
            clips = make_clips(gateway.url)
            counter.counts.clear()  # count schemathesis' requests only
            garments = [g.garment_id for g in gateway.app.state.gateway.gallery.items]
            t0 = time.monotonic()
            report_path = out / "fuzz_gateway_schemathesis.json"
            rc, text = run_schemathesis(
                gateway.url,
                report_path,
                args.max_examples,
                args.max_time or None,
                args.seed,
                clips=clips,
                garments=garments,
            )
            wall = time.monotonic() - t0
        finally:
            gateway.stop()
            channel.close()
            server.stop(0)
    (out / "fuzz_gateway.log").write_text(text)
    print(text[-6000:])
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    summary = {
        "command": " ".join(
            ["benchmarks/fuzz_gateway.py", f"--max-examples {args.max_examples}"]
            + ([f"--max-time {args.max_time}"] if args.max_time else [])
            + [f"--seed {args.seed}"]
        ),
        "schemathesis_exit_code": rc,
        "seconds": round(wall, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        **summarise(report),
        "requests": sum(sum(c.values()) for c in counter.counts.values()),
        "server_errors": sum(
            n for c in counter.counts.values() for status, n in c.items() if int(status) >= 500
        ),
        "statuses": counter.table(),
    }
    (out / "fuzz_gateway.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2)[:4000])
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
