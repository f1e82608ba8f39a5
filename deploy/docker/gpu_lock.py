"""Write requirements-gpu.lock: requirements.lock with the CUDA builds swapped in.

The GPU set is the CPU lock minus ``REMOVED`` plus ``ADDED``. The added pins were checked to
exist and to be each other's declared dependencies with ``pip index versions`` and
``pip install --dry-run --report`` (metadata only, nothing installed) against the registry;
shared packages stay at the CPU lock's versions. Re-run after changing requirements.lock:

    python deploy/docker/gpu_lock.py          # rewrite requirements-gpu.lock
    python deploy/docker/gpu_lock.py --check  # exit 1 when it is stale (tests do this)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CPU_LOCK = ROOT / "requirements.lock"
GPU_LOCK = ROOT / "requirements-gpu.lock"

# torch's CPU wheel and the CPU ONNX Runtime (which writes the same package as onnxruntime-gpu).
REMOVED = {"torch", "onnxruntime"}
ADDED = {
    # torch 2.13.0, the registry's CUDA 13 build, and everything it declares on Linux
    "torch": "2.13.0",
    "cuda-toolkit": "13.0.3.0",
    "cuda-bindings": "13.5.0",
    "cuda-pathfinder": "1.9.1",
    "nvidia-cublas": "13.1.1.3",
    "nvidia-cuda-cupti": "13.0.85",
    "nvidia-cuda-nvrtc": "13.0.88",
    "nvidia-cuda-runtime": "13.0.96",
    "nvidia-cudnn-cu13": "9.20.0.48",
    "nvidia-cufft": "12.0.0.61",
    "nvidia-cufile": "1.15.1.6",
    "nvidia-curand": "10.4.0.35",
    "nvidia-cusolver": "12.0.4.66",
    "nvidia-cusparse": "12.6.3.3",
    "nvidia-cusparselt-cu13": "0.8.1",
    "nvidia-nccl-cu13": "2.29.7",
    "nvidia-nvjitlink": "13.5.37",
    "nvidia-nvshmem-cu13": "3.4.5",
    "nvidia-nvtx": "13.0.85",
    "triton": "3.7.1",
    # ONNX Runtime with the CUDA and TensorRT execution providers, CUDA 13 like torch
    "onnxruntime-gpu": "1.31.1",
    # TensorRT 11.4 for CUDA 13: NVIDIA wheel stubs (tensorrt, -cu13, -cu13-libs) fetch the
    # real wheels from NVIDIA's own index when installed; -bindings is a registry wheel
    "tensorrt": "11.4.0.106",
    "tensorrt-cu13": "11.4.0.106",
    "tensorrt-cu13-libs": "11.4.0.106",
    "tensorrt-cu13-bindings": "11.4.0.106",
}

HEADER = """\
# The GPU dependency set, for the drape-gpu image (deploy/docker/Dockerfile.gpu) and GPU
# machines: requirements.lock with the CUDA builds. Written by deploy/docker/gpu_lock.py (do
# not edit by hand; re-run it after changing requirements.lock). Install it like the CPU
# lock, `pip install --no-deps -r requirements-gpu.lock`: no resolver run, exact versions.
#
# Differences from requirements.lock, and why:
# - torch==2.13.0: the registry's CUDA 13 build (not +cpu), with every library it declares
#   (cuda-toolkit 13.0.3 and its nvidia-* parts, cudnn, cusparselt, nccl, nvshmem, triton).
# - onnxruntime-gpu==1.31.1 in place of onnxruntime (both write the onnxruntime package;
#   never install the two together): CUDA and TensorRT execution providers, CUDA 13.
# - tensorrt==11.4.0.106 (with tensorrt-cu13, -libs, -bindings): the TensorRT Python API for
#   `drape models build-engine` and ONNX Runtime's TensorRT provider. tensorrt, tensorrt-cu13
#   and tensorrt-cu13-libs are NVIDIA wheel stubs: installing them fetches the real wheel
#   from NVIDIA's own index (keep build isolation on), so the install must reach it.
"""


def _name(line: str) -> str:
    return re.sub(r"[-_.]+", "-", line.split("==", 1)[0]).lower()


def render(cpu_lock: str) -> str:
    """The GPU lock's text for the CPU lock's text ``cpu_lock``."""
    pins = {}
    for line in cpu_lock.splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            pins[_name(line)] = line.strip()
    for name in REMOVED:
        pins.pop(name, None)
    for name, version in ADDED.items():
        pins[name] = f"{name}=={version}"
    body = "\n".join(pins[k] for k in sorted(pins))
    return HEADER + body + "\n"


def main(argv: list[str]) -> int:
    text = render(CPU_LOCK.read_text())
    if "--check" in argv:
        if not GPU_LOCK.exists() or GPU_LOCK.read_text() != text:
            print(f"{GPU_LOCK.name} is stale: run python deploy/docker/gpu_lock.py")
            return 1
        return 0
    GPU_LOCK.write_text(text)
    print(f"wrote {GPU_LOCK.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
