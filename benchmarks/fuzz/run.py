"""Run the fuzz targets one after another and summarise them (``make fuzz``).

Each target runs in its own process for ``--seconds`` (libFuzzer ``-max_total_time``) from a
fresh corpus of its seeds, under the harness's ``-timeout`` and ``-rss_limit_mb``. Its log
goes to ``out/fuzz/<target>.log``; crash, timeout and out-of-memory inputs to
``out/fuzz/<target>/``. The summary (per target: seconds, executions, coverage, features,
corpus, findings) is printed and written to ``--out``/fuzz.json. Exits non-zero when any
target found something.

    .venv/bin/python benchmarks/fuzz/run.py --seconds 600
    .venv/bin/python benchmarks/fuzz/run.py --seconds 30 images   # one target, briefly
    .venv/bin/python benchmarks/fuzz/run.py --libfuzzer="-timeout=5 -rss_limit_mb=1024"
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TARGETS = ("images", "video", "requests")
# libFuzzer's status lines: "#1234  pulse  cov: 567 ft: 890 corp: 12/3456b ..."
STATUS_RE = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
FINDING_RE = re.compile(r"(ERROR: libFuzzer: \S+|Uncaught Python exception|==\d+== ERROR)")


def run_target(name: str, seconds: int, extra: list[str]) -> dict:
    """Fuzz ``name`` for ``seconds``; its figures as a dict."""
    work = ROOT / "out" / "fuzz" / name
    shutil.rmtree(work / "corpus", ignore_errors=True)  # every run starts from the seeds
    log = ROOT / "out" / "fuzz" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / f"fuzz_{name}.py"), f"-max_total_time={seconds}", *extra]
    t0 = time.monotonic()
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, cwd=HERE, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.monotonic() - t0
    text = log.read_text(errors="replace")
    last = inited = None
    for line in text.splitlines():
        m = STATUS_RE.match(line)
        if m:
            last = m
            if m.group(2) == "INITED":
                inited = m
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", text, re.M))
    findings = sorted({m.group(1) for m in FINDING_RE.finditer(text)})
    return {
        "target": name,
        "seconds": round(wall, 1),
        "executions": int(stats.get("number_of_executed_units") or (last and last.group(1)) or 0),
        "seeds_coverage": int(inited.group(3)) if inited else None,
        "coverage": int(last.group(3)) if last else None,
        "features": int(last.group(4)) if last else None,
        "corpus": int(last.group(5)) if last else None,
        "peak_rss_mb": int(stats["peak_rss_mb"]) if "peak_rss_mb" in stats else None,
        "slowest_unit_s": int(stats["slowest_unit_time_sec"])
        if "slowest_unit_time_sec" in stats
        else None,
        "exit_code": rc,
        "findings": findings,
        "artifacts": sorted(str(p.relative_to(ROOT)) for p in work.glob("*-*") if p.is_file()),
        "log": str(log.relative_to(ROOT)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (default: all)")
    ap.add_argument("--seconds", type=int, default=600, help="per target (default 600)")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"), help="where fuzz.json goes")
    ap.add_argument(
        "--libfuzzer",
        default="",
        help='more libFuzzer options, as one argument: --libfuzzer="-max_len=65536"',
    )
    args = ap.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        ap.error(f"unknown target(s) {', '.join(sorted(unknown))}; known: {', '.join(TARGETS)}")
    extra = args.libfuzzer.split()
    results = []
    for name in args.targets or TARGETS:
        print(f"fuzz {name}: {args.seconds} s ...", flush=True)
        r = run_target(name, args.seconds, extra)
        results.append(r)
        print(
            f"  {r['executions']} executions in {r['seconds']} s, coverage {r['coverage']}"
            f" (seeds {r['seeds_coverage']}), features {r['features']}, corpus {r['corpus']},"
            f" peak RSS {r['peak_rss_mb']} MB, findings: {', '.join(r['findings']) or 'none'}",
            flush=True,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz.json").write_text(json.dumps({"targets": results}, indent=2) + "\n")
    return 1 if any(r["findings"] or r["exit_code"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
