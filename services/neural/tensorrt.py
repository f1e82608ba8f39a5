"""TensorRT engines built from the exported ONNX graphs.

An engine is serialized next to its graph in the model repository
(``onnx/<graph>.trt<major>.<precision>.plan``) with an optimization profile per dynamic
input (min, opt, max shapes) and a timing cache shared by the graphs of a model
(``onnx/timing.cache``), so a rebuild after an upgrade reuses the kernel timings.

Versions: TensorRT 8.6, 9.x and 10.x take the precision as builder flags (``FP16``,
``BF16``) on a weakly typed network. TensorRT 11 removed those flags: networks are strongly
typed and each tensor keeps the type the ONNX graph gives it, so an fp16 engine needs a
graph exported in fp16 (``drape models export --dtype float16``). :func:`precision_plan`
holds that decision in one place.

``tensorrt`` is not a dependency of Drape (its PyPI package is a stub that downloads the
real wheel from NVIDIA at install time); where it is not importable the builder says so and
nothing else is affected: ONNX Runtime's TensorRT execution provider, when present, builds
its own engines from the same graphs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from services.common.errors import ConfigError

Shape = tuple[int, ...]


class TensorRTUnavailable(ConfigError):
    """The ``tensorrt`` package cannot be imported here."""


def import_tensorrt():
    """``import tensorrt``, or a clear error saying what is missing.

    Raises:
        TensorRTUnavailable: naming the import failure and what to do.
    """
    try:
        import tensorrt  # noqa: PLC0415
    except ImportError as exc:
        raise TensorRTUnavailable(
            "tensorrt",
            f"the tensorrt Python package is not importable here ({exc}); TensorRT engines "
            "can only be built on a CUDA machine with TensorRT installed (e.g. pip install "
            "tensorrt-cu12 on a GPU host). Nothing else in Drape needs it: the ONNX graphs run "
            "on ONNX Runtime (DRAPE_ORT_PROVIDERS=cuda,cpu) without it.",
        ) from None
    return tensorrt


@dataclasses.dataclass(frozen=True)
class PrecisionPlan:
    """How a TensorRT version is told the precision."""

    strongly_typed: bool
    flags: tuple[str, ...]  # names of trt.BuilderFlag members to set
    note: str


def precision_plan(version: str, precision: str) -> PrecisionPlan:
    """The builder settings for ``precision`` (``fp32``, ``fp16``, ``bf16``) on TensorRT
    ``version`` (e.g. ``"10.13.0.35"``).

    Raises:
        ConfigError: a precision this version cannot build (bf16 before 9.0), or an unknown
            precision.
    """
    if precision not in ("fp32", "fp16", "bf16"):
        raise ConfigError("precision", f"unknown precision {precision!r}; use fp32, fp16 or bf16")
    major = int(version.split(".")[0])
    if major >= 11:
        return PrecisionPlan(
            True,
            (),
            f"TensorRT {major}: strongly typed; the ONNX graph's types decide ({precision})",
        )
    if precision == "fp32":
        return PrecisionPlan(False, (), "fp32: no precision flag")
    if precision == "bf16" and major < 9:
        raise ConfigError("precision", f"TensorRT {version} has no bf16 builder flag (9.0+)")
    return PrecisionPlan(False, (precision.upper(),), f"builder flag {precision.upper()}")


def engine_path(onnx_path: Path, version: str, precision: str) -> Path:
    """Where the engine of ``onnx_path`` goes: beside it, named by TensorRT major and
    precision (an engine only runs on the TensorRT version and GPU that built it)."""
    major = version.split(".")[0]
    return onnx_path.with_name(f"{onnx_path.stem}.trt{major}.{precision}.plan")


def check_profiles(onnx_path: Path, profiles: Mapping[str, tuple[Shape, Shape, Shape]]) -> None:
    """Every dynamic input of the graph needs a profile; each profile must match the
    input's rank and static sizes and have ``min <= opt <= max``.

    Raises:
        ConfigError: naming the input at fault.
    """
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = [d.dim_value if d.dim_value else None for d in vi.type.tensor_type.shape.dim]
        if None not in dims:
            continue
        if vi.name not in profiles:
            raise ConfigError("profiles", f"{onnx_path.name}: input {vi.name!r} is dynamic "
                              f"({dims}) and has no optimization profile")  # fmt: skip
        lo, opt, hi = (tuple(s) for s in profiles[vi.name])
        for shape in (lo, opt, hi):
            if len(shape) != len(dims) or any(
                d is not None and d != s for d, s in zip(dims, shape, strict=True)
            ):
                raise ConfigError("profiles", f"{onnx_path.name}: profile {shape} of {vi.name!r} "
                                  f"does not fit its shape {dims}")  # fmt: skip
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True)):
            raise ConfigError(
                "profiles", f"{vi.name!r}: need min <= opt <= max, got {lo} {opt} {hi}"
            )


def build_engine(
    onnx_path: Path | str,
    profiles: Mapping[str, tuple[Shape, Shape, Shape]],
    precision: str = "fp16",
    workspace_gib: float = 8.0,
    timing_cache: Path | None = None,
) -> Path:
    """Build and serialize a TensorRT engine from an ONNX graph.

    Args:
        onnx_path: the graph (its ``.data`` file beside it).
        profiles: per dynamic input ``(min, opt, max)`` shapes.
        precision: fp32, fp16 or bf16 (see :func:`precision_plan`).
        workspace_gib: builder scratch memory.
        timing_cache: read before and written after the build (default
            ``onnx/timing.cache`` beside the graph).

    Returns:
        The engine's path (:func:`engine_path`).

    Raises:
        TensorRTUnavailable: ``tensorrt`` is not importable.
        ConfigError: bad profiles or precision; the ONNX parser's or builder's errors.
    """
    onnx_path = Path(onnx_path)
    trt = import_tensorrt()
    check_profiles(onnx_path, profiles)
    plan = precision_plan(trt.__version__, precision)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif (
        hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
        and int(trt.__version__.split(".")[0]) < 10
    ):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError("onnx", f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    for flag in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profiles.items():
        profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
    config.add_optimization_profile(profile)
    cache_path = timing_cache or onnx_path.parent / "timing.cache"
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.exists() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigError("onnx", f"TensorRT could not build an engine from {onnx_path}")
    out = engine_path(onnx_path, trt.__version__, precision)
    out.write_bytes(bytes(serialized))
    cache_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    return out


def catvton_profiles(
    height: int = 1024, width: int = 768, vae_scale: int = 8
) -> dict[str, dict[str, tuple[Shape, Shape, Shape]]]:
    """Profiles of the try-on graphs: batch 1 (no guidance) to 2 (guidance), the working
    size from half to the configured one (the UNet sees person and garment stacked, so
    twice the latent height)."""
    h, w = height // vae_scale, width // vae_scale
    lo_h, lo_w = max(8, h // 2 // 8 * 8), max(8, w // 2 // 8 * 8)
    return {
        "unet_step": {
            "sample": ((1, 9, 2 * lo_h, lo_w), (2, 9, 2 * h, w), (2, 9, 2 * h, w)),
            "timestep": ((1,), (2,), (2,)),
        },
        "vae_decoder": {"latents": ((1, 4, lo_h, lo_w), (1, 4, h, w), (1, 4, h, w))},
    }
