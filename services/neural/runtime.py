"""Where neural backends run: torch device and dtype, and ONNX Runtime sessions.

The settings name the device (``DRAPE_NEURAL_DEVICE``), the precision
(``DRAPE_NEURAL_DTYPE``), the engine that runs the exported graphs (``DRAPE_NEURAL_RUNTIME``:
eager torch or ONNX Runtime) and the ONNX Runtime execution providers in order of preference
(``DRAPE_ORT_PROVIDERS``: ``tensorrt``, ``cuda``, ``cpu``). A provider that this onnxruntime
build lacks is a start-up error naming the setting: a GPU deployment that silently ran on
the CPU would miss every latency goal without anyone noticing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from services.common.errors import ConfigError

# Our names for ONNX Runtime execution providers.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def torch_device(preference: str = "auto"):
    """The torch device for ``DRAPE_NEURAL_DEVICE`` (``auto``, ``cpu`` or ``cuda``).

    Raises:
        ConfigError: ``cuda`` asked for where torch sees no CUDA device.
    """
    import torch

    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "DRAPE_NEURAL_DEVICE",
            f"cuda was asked for but torch {torch.__version__} sees no CUDA device",
        )
    return torch.device(preference)


def torch_dtype(preference: str, device) -> Any:
    """The torch dtype for ``DRAPE_NEURAL_DTYPE`` on ``device``.

    ``auto`` is float16 on CUDA (diffusion UNets and VAEs are trained to run in it) and
    float32 on a CPU.

    Raises:
        ConfigError: float16 on a CPU (most CPU kernels lack it; use bfloat16 or float32).
    """
    import torch

    if preference == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if preference == "float16" and device.type == "cpu":
        raise ConfigError(
            "DRAPE_NEURAL_DTYPE", "float16 needs a CUDA device; on a CPU use float32 or bfloat16"
        )
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[
        preference
    ]


def provider_list(
    names: Sequence[str],
    cache_dir: Path | None = None,
    fp16: bool = False,
    available: Sequence[str] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """ONNX Runtime ``providers`` for a session, from our names in order of preference.

    Args:
        names: e.g. ``("tensorrt", "cuda", "cpu")``.
        cache_dir: where the TensorRT provider keeps its engine and timing caches (next to
            the ONNX files in the model repository, so a restart does not rebuild).
        fp16: let the TensorRT provider choose float16 kernels.
        available: the providers of this onnxruntime build (default: asked from it).

    Raises:
        ConfigError: DRAPE_ORT_PROVIDERS names an unknown provider, none at all, or one
            this onnxruntime build lacks.
    """
    import onnxruntime as ort

    available = list(ort.get_available_providers() if available is None else available)
    if not names:
        raise ConfigError("DRAPE_ORT_PROVIDERS", "no execution provider given")
    out: list[tuple[str, dict[str, Any]]] = []
    for name in names:
        if name not in PROVIDERS:
            raise ConfigError(
                "DRAPE_ORT_PROVIDERS",
                f"unknown execution provider {name!r}; expected some of {', '.join(PROVIDERS)}",
            )
        full = PROVIDERS[name]
        if full not in available:
            raise ConfigError(
                "DRAPE_ORT_PROVIDERS",
                f"{name} ({full}) is not in this onnxruntime build "
                f"(available: {', '.join(available)}); install onnxruntime-gpu for cuda and "
                "tensorrt, or remove it from the list",
            )
        options: dict[str, Any] = {}
        if name == "tensorrt":
            options = {"trt_fp16_enable": bool(fp16)}
            if cache_dir is not None:
                cache = str(Path(cache_dir))
                options |= {
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": cache,
                    "trt_timing_cache_enable": True,
                    "trt_timing_cache_path": cache,
                }
        elif name == "cuda":
            options = {"device_id": 0}
        out.append((full, options))
    return out


def create_session(
    onnx_path: Path | str,
    providers: Sequence[str] = ("cpu",),
    cache_dir: Path | None = None,
    fp16: bool = False,
    threads: int = 0,
):
    """An ONNX Runtime session on the configured execution providers.

    Args:
        onnx_path: the graph (its ``.onnx.data`` side file, if any, next to it).
        providers: our provider names, in order of preference.
        cache_dir: TensorRT engine and timing caches.
        fp16: TensorRT may pick float16 kernels.
        threads: intra-op threads on the CPU provider (0: onnxruntime's choice).

    Returns:
        ``onnxruntime.InferenceSession``.

    Raises:
        ConfigError: see :func:`provider_list`.
        ModelRepositoryError: the graph file is missing.
    """
    import onnxruntime as ort

    from services.neural.repository import ModelRepositoryError

    path = Path(onnx_path)
    if not path.is_file():
        raise ModelRepositoryError(
            path, f"{path} is missing; export it with `drape models export {path.parent.parent}`"
        )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(
        str(path), sess_options=opts, providers=provider_list(providers, cache_dir, fp16)
    )
