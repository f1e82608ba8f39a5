"""Run every benchmark script in this directory, one subprocess each; ``make bench`` calls it.

Scripts are found by name: ``bench_*.py``, ``speed_*.py``, ``quality_*.py`` and
``catalog_*.py``, run in that order (alphabetically within a group). Each gets the same
Python interpreter and ``--out DIR`` (and ``--quick`` when given here), so its JSON lands
next to the others. A separate process per script keeps one benchmark's threads, caches and
imported models from skewing the next one's figures, and a crash from stopping the rest.

Usage::

    python benchmarks/run_all.py [--out out/bench] [--quick]

Exits 1 when any script failed (or none was found), 0 otherwise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PATTERNS = ("bench_*.py", "speed_*.py", "quality_*.py", "catalog_*.py")


def discover(directory: Path = HERE) -> list[Path]:
    """The benchmark scripts in ``directory``, grouped by pattern, each listed once."""
    found: list[Path] = []
    for pattern in PATTERNS:
        for path in sorted(directory.glob(pattern)):
            if path.is_file() and path not in found:
                found.append(path)
    return found


def run_one(script: Path, out: Path, quick: bool) -> tuple[int, float]:
    """Run one script to completion, its output streaming to ours; ``(exit code, seconds)``."""
    cmd = [sys.executable, str(script), "--out", str(out)]
    if quick:
        cmd.append("--quick")
    shown = " ".join([script.relative_to(ROOT).as_posix(), *cmd[2:]])
    print(f"\n=== python {shown}", flush=True)
    t0 = time.perf_counter()
    # cwd is the repository root so scripts that read relative paths behave as under make.
    rc = subprocess.run(cmd, cwd=ROOT, check=False).returncode
    return rc, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("out/bench"), help="directory for every JSON result"
    )
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    args = parser.parse_args(argv)

    scripts = discover()
    if not scripts:
        print(f"no benchmark scripts ({', '.join(PATTERNS)}) in {HERE}", file=sys.stderr)
        return 1
    # Resolve now: the scripts run from the repository root, which may not be our cwd.
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    outcomes = [(script, *run_one(script, out, args.quick)) for script in scripts]

    print("\n=== summary")
    for script, rc, seconds in outcomes:
        status = "ok" if rc == 0 else f"FAILED (exit {rc})"
        print(f"  {script.name:<32} {status:<18} {seconds:7.1f} s")
    failed = [script.name for script, rc, _ in outcomes if rc != 0]
    print(f"results in {out}")
    if failed:
        print(f"{len(failed)} of {len(outcomes)} failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(outcomes)} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
