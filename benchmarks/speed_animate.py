"""Speed and memory of a product clip on the embedded ``skeletal`` backend.

The headline case is the issue's: a 4 s, 24 fps, 512 x 768 (W x H) clip of a real photo
(``skimage.data.astronaut()``, 512 x 512, scaled to cover and centre-cropped) performing
``upper-gestures``. As in ``bench_common.py``: warm up untimed, then time ``n`` runs and
report the median and the 95th percentile.

Measured:

* ``AnimatePipeline.run`` end to end (analysis of the still, retargeting, render, H.264
  encode, WebP preview, poster) and per stage; render split into set-up (layers, meshes,
  ARAP factorisation, background inpainting), per-frame deformation and per-frame drawing;
* peak memory: ``VmHWM`` of this process (the benchmark runs alone in its process) and the
  ``tracemalloc`` peak of one run (Python/NumPy allocations);
* a table over clip length (2, 4, 8 s) and size (256 x 384, 512 x 768, 768 x 1152), one
  run after a warm-up each, to show how the cost grows.

Usage::

    python benchmarks/speed_animate.py [--quick] [--out DIR]

Writes ``DIR/speed_animate.json`` (default ``out/bench``). The goal of the issue: the 4 s
clip in <= 2 s (2x faster than real time) on 2 cores with peak memory <= 1 GB.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import describe_machine  # noqa: E402
from speed_tryon import stats, vm_hwm_mib  # noqa: E402

from services.animate.motions import MotionLibrary  # noqa: E402
from services.animate.pipeline import AnimatePipeline, ClipOptions  # noqa: E402
from services.common.analysis.person import PersonAnalyzer  # noqa: E402

MOTION = "upper-gestures"
DEFAULT_ITERS = (2, 7)
QUICK_ITERS = (1, 3)
GOAL_SECONDS = 2.0
GOAL_MIB = 1024


def run_once(pipe, still, motion, seconds, size, poster=True):
    opts = ClipOptions(fps=24, width=size[0], height=size[1], duration=seconds, poster=poster)
    t0 = time.perf_counter()
    clip = pipe.run(still, motion, opts)
    total = time.perf_counter() - t0
    st = clip.stats
    stages = dict(clip.timings)
    stages.update(
        render_setup=st.setup_seconds,
        deform_per_frame=st.deform_seconds / clip.frame_count,
        draw_per_frame=st.draw_seconds / clip.frame_count,
    )
    return total, stages, clip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    args = ap.parse_args(argv)
    warmup, n = QUICK_ITERS if args.quick else DEFAULT_ITERS
    still = data.astronaut()
    motion = MotionLibrary().get(MOTION)
    pipe = AnimatePipeline(PersonAnalyzer())
    for _ in range(warmup):
        run_once(pipe, still, motion, 4.0, (512, 768))
    gc.collect()
    totals, stages = [], []
    for _ in range(n):
        t, st, clip = run_once(pipe, still, motion, 4.0, (512, 768))
        totals.append(t)
        stages.append(st)
    results = [stats("clip_4s_24fps_512x768_end_to_end", totals, f"astronaut, {MOTION}")]
    for k in stages[0]:
        r = stats(f"stage_{k}", [s[k] for s in stages])
        results.append(r)
    tracemalloc.start()
    run_once(pipe, still, motion, 4.0, (512, 768))
    _cur, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    hwm = vm_hwm_mib()
    table = []
    for seconds in (2.0, 4.0, 8.0):
        for size in ((256, 384), (512, 768), (768, 1152)):
            if args.quick and (seconds == 8.0 or size[0] == 768):
                continue
            run_once(pipe, still, motion, min(seconds, 1.0), size, poster=False)  # warm
            t, st, c = run_once(pipe, still, motion, seconds, size, poster=False)
            table.append({
                "seconds": seconds, "size": f"{size[0]}x{size[1]}", "frames": c.frame_count,
                "wall_s": round(t, 3), "x_real_time": round(seconds / t, 2),
                "ms_per_frame_render": round(st["render"] / c.frame_count * 1e3, 2),
                "encode_s": round(st["encode"], 3),
            })  # fmt: skip
    hwm_all = vm_hwm_mib()
    machine = describe_machine()
    print(f"machine: {machine['cpu_model']}, {machine['cpu_usable']}/{machine['cpu_count']} cores")
    print(f"{'measurement':<42} {'median':>9} {'p95':>9}  unit  n")
    for r in results:
        unit = "ms"
        print(f"{r['name']:<42} {r['median']:9.1f} {r['p95']:9.1f}  {unit}  {r['n']}")
    med = results[0]["median"] / 1e3
    print(
        f"4 s clip: {med:.2f} s wall = {4.0 / med:.2f}x real time (goal >= 2x, <= {GOAL_SECONDS} s)"
    )
    print(f"peak RSS (VmHWM) after the 4 s runs: {hwm:.0f} MiB; after the size table: "
          f"{hwm_all:.0f} MiB (goal <= {GOAL_MIB} MiB); tracemalloc peak of one run "
          f"{traced / 2**20:.0f} MiB")  # fmt: skip
    print(f"{'seconds':>7} {'size':>9} {'frames':>6} {'wall s':>7} {'x real':>6} "
          f"{'ms/frame':>8} {'encode s':>8}")  # fmt: skip
    for row in table:
        print(f"{row['seconds']:7.0f} {row['size']:>9} {row['frames']:6} {row['wall_s']:7.2f} "
              f"{row['x_real_time']:6.2f} {row['ms_per_frame_render']:8.2f} {row['encode_s']:8.2f}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "speed_animate", "quick": args.quick, "machine": machine,
        "measurements": results, "vm_hwm_mib": hwm, "vm_hwm_mib_after_table": hwm_all,
        "tracemalloc_peak_mib": traced / 2**20, "scaling": table,
        "goal": {"seconds": GOAL_SECONDS, "peak_mib": GOAL_MIB},
    }  # fmt: skip
    path = args.out / "speed_animate.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
