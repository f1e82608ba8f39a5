"""GPU benchmark of the neural backends at their real sizes, with random weights.

Timings do not depend on the weight values, so the real-size architectures are built from
their configs (no weights needed): the SD1.5-inpainting UNet of the try-on backend (CatVTON
design) at 1024 x 768 (person and garment stacked: 256 x 96 latents, batch 2 for guidance),
and the animation backend's denoising UNet with motion modules on a 24-frame window at
512 x 768 (96 x 64 latents, batch 2). Measured, each as median and p95 after warm-up:

* one denoising step: eager torch fp32, fp16, bf16; ONNX Runtime CUDA (fp16 graph);
  TensorRT (an fp16 engine from the same graph) where ``tensorrt`` is importable;
* one still (30 steps + VAE encodes and decode) and one 24-frame clip window (25 steps,
  reference UNet once, 24 VAE decodes), eager fp16;
* peak GPU memory (``torch.cuda.max_memory_allocated``) of each.

Usage::

    python benchmarks/gpu_backends.py [--quick] [--out DIR] [--skip-onnx]
    python benchmarks/gpu_backends.py --tiny --device cpu   # code check only, not a measurement

On a machine without CUDA it refuses (exit status 2) unless ``--tiny`` is given: CPU
figures of these networks mean nothing for a GPU deployment.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.neural import configs  # noqa: E402

STEPS_STILL = 30
STEPS_CLIP = 25


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name: str, fn: Callable[[], object], device, warmup: int, runs: int) -> dict:
    """Median and p95 seconds of ``fn`` after ``warmup`` calls, and its peak GPU memory."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        samples.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    row = {"name": name, "median_s": float(np.median(samples)),
           "p95_s": float(np.percentile(samples, 95)), "runs": runs, "peak_gib": peak}  # fmt: skip
    print(f"  {name:<48} {row['median_s'] * 1e3:10.1f} ms  p95 {row['p95_s'] * 1e3:9.1f} ms"
          f"  peak {peak:6.2f} GiB", flush=True)  # fmt: skip
    return row


def describe(device: torch.device) -> dict:
    import platform

    import diffusers
    import onnxruntime

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "diffusers": diffusers.__version__, "onnxruntime": onnxruntime.__version__,
           "device": str(device)}  # fmt: skip
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(0)
        out |= {"gpu": p.name, "gpu_memory_gib": round(p.total_memory / 2**30, 1),
                "cuda": torch.version.cuda}  # fmt: skip
    return out


def bench_tryon_unet(args, device, rows: list) -> None:
    from diffusers import UNet2DConditionModel

    from services.neural import catvton, export
    from services.neural.runtime import create_session

    tiny = args.tiny
    cfg = configs.tiny_unet_config() if tiny else configs.sd15_unet_config()
    h, w = (64, 48) if tiny else (1024, 768)
    f = 2 if tiny else 8
    print(f"try-on UNet (CatVTON step), {h}x{w}, latents {2 * h // f}x{w // f}, batch 2")
    base = UNet2DConditionModel(**cfg).eval()
    catvton.prepare_unet(base)
    shape = (2, 9, 2 * h // f, w // f)
    t = torch.full((2,), 500.0, device=device)
    dtypes = (
        [torch.float32] if device.type == "cpu" else [torch.float32, torch.float16, torch.bfloat16]
    )
    for dt in dtypes:
        step = catvton.CatVTONStep(base.to(device, dt))
        x = torch.randn(shape, device=device, dtype=dt)
        with torch.no_grad():
            rows.append(measure(f"tryon unet step eager {str(dt)[6:]}",
                                lambda s=step, x=x: s(x, t), device, args.warmup, args.runs))  # fmt: skip
    if args.skip_onnx:
        return
    with tempfile.TemporaryDirectory() as tmp:
        dt = torch.float16 if device.type == "cuda" else torch.float32
        step = catvton.CatVTONStep(base.to(device, dt))
        path = Path(tmp) / "unet_step.onnx"
        export.export(
            step, (torch.randn(shape, device=device, dtype=dt), t), path, export.UNET_STEP
        )
        providers = ("cuda",) if device.type == "cuda" else ("cpu",)
        session = create_session(path, providers)
        feed = {"sample": np.random.randn(*shape).astype(np.float16 if dt == torch.float16 else np.float32),
                "timestep": np.full((2,), 500.0, np.float32)}  # fmt: skip
        rows.append(measure(f"tryon unet step onnxruntime {providers[0]} {str(dt)[6:]}",
                            lambda s=session: s.run(None, feed), device, args.warmup, args.runs))  # fmt: skip
        del session  # free its GPU memory before TensorRT builds
        trt_row = bench_tensorrt(path, shape, device, args)
        if trt_row:
            rows.append(trt_row)


def bench_tensorrt(path: Path, shape, device, args) -> dict | None:
    """An fp16 engine from the graph, run with TensorRT's own runtime (10.x API)."""
    from services.neural import tensorrt as T

    try:
        trt = T.import_tensorrt()
    except T.TensorRTUnavailable as exc:
        print(f"  tensorrt: skipped ({str(exc).split(';')[0]})")
        return None
    profiles = {"sample": (shape, shape, shape), "timestep": ((2,), (2,), (2,))}
    engine_file = T.build_engine(path, profiles, "fp16")
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_file.read_bytes())
    ctx = engine.create_execution_context()
    x = torch.randn(shape, device=device, dtype=torch.float16)
    t = torch.full((2,), 500.0, device=device)
    out = torch.empty((shape[0], 4, *shape[2:]), device=device, dtype=torch.float16)
    ctx.set_input_shape("sample", shape)
    ctx.set_input_shape("timestep", (2,))
    for name, tensor in (("sample", x), ("timestep", t), ("noise_pred", out)):
        ctx.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.current_stream().cuda_stream
    return measure("tryon unet step tensorrt fp16", lambda: ctx.execute_async_v3(stream),
                   device, args.warmup, args.runs)  # fmt: skip


def bench_compiled(args, device, rows: list) -> None:
    """The try-on UNet step through ``torch.compile`` (TorchInductor, Triton kernels), fp16.

    A compiled baseline that needs nothing beyond torch itself: where the ONNX Runtime CUDA
    or TensorRT wheels cannot be installed, it says how much an ahead-of-time graph compiler
    gains over eager on this GPU. The compile time is reported apart from the step time.
    """
    from diffusers import UNet2DConditionModel

    from services.neural import catvton

    tiny = args.tiny
    cfg = configs.tiny_unet_config() if tiny else configs.sd15_unet_config()
    h, w = (64, 48) if tiny else (1024, 768)
    f = 2 if tiny else 8
    dt = torch.float16 if device.type == "cuda" else torch.float32
    base = UNet2DConditionModel(**cfg).eval()
    catvton.prepare_unet(base)
    step = torch.compile(catvton.CatVTONStep(base.to(device, dt)))
    x = torch.randn((2, 9, 2 * h // f, w // f), device=device, dtype=dt)
    t = torch.full((2,), 500.0, device=device)
    with torch.no_grad():
        t0 = time.perf_counter()
        step(x, t)
        _sync(device)
        compile_s = time.perf_counter() - t0
        print(f"  torch.compile of the try-on UNet step: {compile_s:.1f} s (first call)")
        row = measure(f"tryon unet step torch.compile {str(dt)[6:]}",
                      lambda: step(x, t), device, args.warmup, args.runs)  # fmt: skip
    row["compile_s"] = compile_s
    rows.append(row)


def bench_tryon_still(args, device, rows: list) -> None:
    from diffusers import AutoencoderKL

    from services.neural import catvton
    from services.neural import diffusion as D
    from services.neural.repository import LoadedModel, ModelRef

    tiny = args.tiny
    dt = torch.float16 if device.type == "cuda" else torch.float32
    unet_cfg = configs.tiny_unet_config() if tiny else configs.sd15_unet_config()
    vae_cfg = configs.tiny_vae_config() if tiny else configs.sd_vae_config()
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**unet_cfg)
    catvton.prepare_unet(unet)
    unet = unet.to(device, dt).eval()
    vae = AutoencoderKL(**vae_cfg).to(device, dt).eval()
    net = catvton.CatVTON(
        model=LoadedModel(ModelRef("random", "0"), Path("."), catvton.KIND, {}),
        unet=unet, vae=vae, scheduler_config=configs.ddim_config(), device=device, dtype=dt,
        step=catvton.CatVTONStep(unet), decoder=D.VaeDecoder(vae), runtime="torch",
    )  # fmt: skip
    h, w = (64, 48) if tiny else (1024, 768)
    person = torch.rand(1, 3, h, w, device=device, dtype=dt) * 2 - 1
    garment = torch.rand(1, 3, h, w, device=device, dtype=dt) * 2 - 1
    mask = torch.zeros(1, 1, h, w, device=device, dtype=dt)
    mask[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    steps = 2 if tiny else STEPS_STILL
    print(f"try-on still, {h}x{w}, {steps} steps, guidance 2.5, {str(dt)[6:]}")
    rows.append(measure(
        f"tryon still ({steps} steps) eager {str(dt)[6:]}",
        lambda: net.generate(person, mask, garment, steps, 2.5, torch.Generator().manual_seed(0)),
        device, 1, max(2, args.runs // 5),
    ))  # fmt: skip


def bench_animate(args, device, rows: list) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNetMotionModel

    from services.animate import diffusion as AD
    from services.neural.pose_guider import PoseGuider, PoseGuiderConfig

    tiny = args.tiny
    frames = 4 if tiny else 24
    h, w = (32, 24) if tiny else (768, 512)
    dt = torch.float16 if device.type == "cuda" else torch.float32
    den_cfg = configs.tiny_motion_unet_config() if tiny else configs.sd15_motion_unet_config()
    ref_cfg = configs.tiny_unet_config(4) if tiny else configs.sd15_unet_config(4)
    vae_cfg = configs.tiny_vae_config() if tiny else configs.sd_vae_config()
    guider_cfg = PoseGuiderConfig(3, (8, 16), 32) if tiny else PoseGuiderConfig()
    dim = ref_cfg["cross_attention_dim"]
    net = AD.AnimateAnyone(
        model=None,
        reference_unet=UNet2DConditionModel(**ref_cfg).to(device, dt).eval(),
        denoising_unet=UNetMotionModel(**den_cfg).to(device, dt).eval(),
        pose_guider=PoseGuider(guider_cfg).to(device, dt).eval(),
        vae=AutoencoderKL(**vae_cfg).to(device, dt).eval(),
        # The CLIP image encoder runs once per clip (a few ms): a constant stands in for it.
        image_encoder=lambda rgb: torch.zeros(1, dim),
        scheduler_config=configs.ddim_config(), device=device, dtype=dt,
    )  # fmt: skip
    f = 2 if tiny else 8
    print(f"animation UNet, {frames}-frame window, {w}x{h}, latents {h // f}x{w // f}, batch 2")
    x = torch.randn(2, 4, frames, h // f, w // f, device=device, dtype=dt)
    ctx = torch.zeros(2 * frames, 1, dim, device=device, dtype=dt)
    still = (np.random.rand(h, w, 3) * 255).astype(np.uint8)
    poses = (np.random.rand(frames, h, w, 3) > 0.98).astype(np.uint8) * 255
    # Fill the reference bank once (as a clip does) so the step reads real features.
    net.render(still, poses[:1], AD.AnimateOptions(steps=1, window=1))
    net._pose = None
    with torch.no_grad():
        rows.append(measure(
            f"animate unet step ({frames} frames) eager {str(dt)[6:]}",
            lambda: net.denoising_unet(x, 500, encoder_hidden_states=ctx, return_dict=False),
            device, args.warmup, args.runs,
        ))  # fmt: skip
    steps = 2 if tiny else STEPS_CLIP
    opts = AD.AnimateOptions(steps=steps, guidance=3.5, window=frames, overlap=4)
    rows.append(measure(f"animate clip window ({frames} frames, {steps} steps) eager {str(dt)[6:]}",
                        lambda: net.render(still, poses, opts), device, 1,
                        max(2, args.runs // 5)))  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/bench", help="where gpu_backends.json goes")
    ap.add_argument("--quick", action="store_true", help="fewer runs")
    ap.add_argument(
        "--tiny", action="store_true", help="toy networks: a code check, not a measurement"
    )
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (only with --tiny)")
    ap.add_argument("--skip-onnx", action="store_true", help="no ONNX Runtime / TensorRT rows")
    ap.add_argument(
        "--compile", action="store_true", help="add a torch.compile row (try-on UNet step)"
    )
    args = ap.parse_args(argv)
    args.warmup, args.runs = (2, 5) if args.quick or args.tiny else (5, 20)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_backends.py: no CUDA device (torch "
              f"{torch.__version__} sees none). These are GPU measurements of the neural "
              "backends; run it on a CUDA machine. (--tiny --device cpu checks the code only.)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.device == "cpu" and not args.tiny:
        print("gpu_backends.py: real-size networks on a CPU say nothing about a GPU deployment;"
              " use --tiny for a code check", file=sys.stderr)  # fmt: skip
        return 2
    device = torch.device(args.device)
    torch.manual_seed(0)
    machine = describe(device)
    print(json.dumps(machine))
    rows: list[dict] = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "gpu_backends_tiny.json" if args.tiny else "gpu_backends.json"
    stages = [bench_tryon_unet, bench_tryon_still, bench_animate]
    if args.compile:
        stages.append(bench_compiled)
    for stage in stages:
        stage(args, device, rows)
        # Written after every stage, so a run cut short still leaves what it measured.
        (out / name).write_text(
            json.dumps({"machine": machine, "tiny": args.tiny, "rows": rows}, indent=2)
        )
    print("\n| measurement | median | p95 | peak GPU memory |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['median_s'] * 1e3:.1f} ms | {r['p95_s'] * 1e3:.1f} ms |"
              f" {r['peak_gib']:.2f} GiB |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
