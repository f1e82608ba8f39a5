"""``torch.onnx.export`` of each network, with named inputs and outputs and dynamic shapes
where they vary, and the parity check of a graph on ONNX Runtime (CPU) against torch.

Graphs (files under ``<model dir>/onnx/``, added to the manifest with their SHA-256):

=================  ===========================================  ==========================
graph              inputs                                       outputs
=================  ===========================================  ==========================
unet_step          sample [batch,C,height,width], timestep      noise_pred [batch,4,h,w]
                   [batch]
vae_decoder        latents [batch,4,height,width] (unscaled)    image [batch,3,8h,8w]
pose_guider        pose [batch,3,height,width]                  features [batch,320,h/8,w/8]
sam_decoder        image_embeddings [1,256,64,64], point_coords low_res_masks [1,4,256,256],
                   [1,points,2], point_labels [1,points]        iou_predictions [1,4]
=================  ===========================================  ==========================

The exporter is torch's ``dynamo=True`` path (the default since torch 2.9; ``onnxscript``
translates the graph). Weights over 2 GB go to a ``.onnx.data`` file next to the graph.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("drape.neural.export")

# Parity tolerance of float32 graphs on ONNX Runtime CPU against eager torch: the graphs
# differ only in kernel choice and operation order, a few float32 ulps per operation, so the
# outputs agree to about 1e-5 relative; 1e-4 absolute plus 1e-3 relative leaves room for the
# deepest graph (the UNet) without hiding a wrong operator (those differ by O(1)).
ATOL = 1e-4
RTOL = 1e-3


@dataclasses.dataclass(frozen=True)
class Graph:
    """How one network is exported."""

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    # Per input: axis -> symbolic name of the axes that vary.
    dynamic: dict[str, dict[int, str]]


UNET_STEP = Graph(
    "unet_step",
    ("sample", "timestep"),
    ("noise_pred",),
    {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"}},
)
VAE_DECODER = Graph(
    "vae_decoder", ("latents",), ("image",), {"latents": {0: "batch", 2: "height", 3: "width"}}
)
POSE_GUIDER = Graph(
    "pose_guider", ("pose",), ("features",), {"pose": {0: "batch", 2: "height", 3: "width"}}
)
SAM_DECODER = Graph(
    "sam_decoder",
    ("image_embeddings", "point_coords", "point_labels"),
    ("low_res_masks", "iou_predictions"),
    {"point_coords": {1: "points"}, "point_labels": {1: "points"}},
)


def _rename_dims(path: Path, graph: Graph) -> None:
    """Give the exporter's symbolic dimensions (``s0``, ``s17``...) the graph's names, in
    every value of the graph, so the ONNX file documents what varies."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    mapping: dict[str, str] = {}
    for vi in model.graph.input:
        axes = graph.dynamic.get(vi.name, {})
        for axis, name in axes.items():
            dim = vi.type.tensor_type.shape.dim[axis]
            if dim.dim_param:
                mapping.setdefault(dim.dim_param, name)
    for vi in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in vi.type.tensor_type.shape.dim:
            if dim.dim_param in mapping:
                dim.dim_param = mapping[dim.dim_param]
    onnx.save(model, str(path))


def export(
    module: torch.nn.Module, args: Sequence[torch.Tensor], path: Path | str, graph: Graph
) -> list[Path]:
    """Export ``module`` called on ``args`` to ``path``.

    Args:
        module: the network (eval mode is set here).
        args: example inputs, in ``graph.input_names`` order; their sizes along dynamic axes
            must not be 0 or 1 (torch.export specialises those).
        path: the ``.onnx`` file to write.
        graph: names and dynamic axes.

    Returns:
        The files written (the graph, and its ``.data`` file when there is one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    auto = torch.export.Dim.AUTO
    shapes = {
        name: {axis: auto for axis in graph.dynamic.get(name, {})} or None
        for name in graph.input_names
    }
    # The exporter prints its progress and warns about torchvision ops it cannot register;
    # neither is news to an operator running `drape models export`.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        with torch.no_grad():
            program = torch.onnx.export(
                module,
                tuple(args),
                str(path),
                input_names=list(graph.input_names),
                output_names=list(graph.output_names),
                dynamic_shapes=shapes,
                dynamo=True,
                external_data=True,
            )
    del program
    _rename_dims(path, graph)
    written = [path]
    data = path.with_name(path.name + ".data")
    if data.exists():
        written.append(data)
    log.info("exported", extra={"graph": graph.name, "path": str(path)})
    return written


def parity(
    module: torch.nn.Module,
    session,
    inputs: Sequence[torch.Tensor],
    graph: Graph,
) -> dict[str, float]:
    """Run ``module`` (torch) and ``session`` (ONNX Runtime) on the same inputs.

    Returns:
        Per output: the largest ``|onnx - torch| - RTOL * |torch|`` (at or below ``ATOL``
        means the graph passes).
    """
    with torch.no_grad():
        ref = module(*inputs)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    feed = {n: t.detach().cpu().numpy() for n, t in zip(graph.input_names, inputs, strict=True)}
    outs = session.run(list(graph.output_names), feed)
    errors = {}
    for name, r, o in zip(graph.output_names, refs, outs, strict=True):
        r = r.detach().float().cpu().numpy()
        if r.shape != o.shape:
            raise AssertionError(f"{graph.name}.{name}: torch {r.shape}, onnx {o.shape}")
        errors[name] = float(np.max(np.abs(o - r) - RTOL * np.abs(r)))
    return errors


def export_catvton(model_dir: Path, net, height: int = 1024, width: int = 768) -> list[Path]:
    """Export a loaded CatVTON's UNet step and VAE decoder into its model directory and add
    them to the manifest.

    Args:
        model_dir: the model's directory.
        net: :class:`services.neural.catvton.CatVTON` loaded with ``runtime="torch"``.
        height: example working height (the exported graph takes any multiple of 8).
        width: example working width.
    """
    from services.neural import catvton
    from services.neural import diffusion as D
    from services.neural.repository import add_to_manifest

    f = net.vae_scale
    lat_h, lat_w = height // f, width // f
    dev, dt = net.device, net.dtype
    sample = torch.randn(2, 9, 2 * lat_h, lat_w, device=dev, dtype=dt)
    timestep = torch.full((2,), 500.0, device=dev)
    files = export(
        catvton.CatVTONStep(net.unet), (sample, timestep), model_dir / catvton.ONNX_UNET, UNET_STEP
    )
    latents = torch.randn(2, 4, lat_h, lat_w, device=dev, dtype=dt)
    files += export(
        D.VaeDecoder(net.vae), (latents,), model_dir / catvton.ONNX_VAE_DECODER, VAE_DECODER
    )
    add_to_manifest(model_dir, [p.relative_to(model_dir).as_posix() for p in files])
    return files
