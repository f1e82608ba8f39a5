"""What the diffusion backends share: images in and out of the VAE's latent space, one UNet
step as a callable (eager torch, or an exported graph on ONNX Runtime), and the denoising
loop with classifier-free guidance, progress per step and cancellation between steps.

The latent convention is Stable Diffusion's (Rombach et al., "High-Resolution Image
Synthesis with Latent Diffusion Models", CVPR 2022): images in [-1, 1], latents =
``vae.encode(x).mean * scaling_factor``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from services.common.context import CancelToken

# progress(step, total): called after each denoising step.
StepProgress = Callable[[int, int], None]


class UNetStep(Protocol):
    """One UNet evaluation: ``(sample [B,C,h,w], timestep [B]) -> noise prediction``."""

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor: ...


class Decoder(Protocol):
    """VAE decoding: ``latents [B,4,h,w] (already divided by the scaling factor) -> image in
    [-1, 1]``."""

    def __call__(self, latents: torch.Tensor) -> torch.Tensor: ...


class VaeDecoder(torch.nn.Module):
    """The VAE's decoder alone (the graph that is exported to ONNX)."""

    def __init__(self, vae) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents, return_dict=False)[0]


class OrtStep:
    """A :class:`UNetStep` (or any tensors-in, one-tensor-out graph) on ONNX Runtime.

    Args:
        session: an ``onnxruntime.InferenceSession`` whose inputs are named as in
            :mod:`services.neural.export`.
        input_names: the graph inputs, in call order.
    """

    def __init__(self, session, input_names: Sequence[str]) -> None:
        self.session = session
        self.input_names = list(input_names)
        self._dtypes = {
            i.name: (np.float16 if i.type == "tensor(float16)" else np.float32)
            for i in session.get_inputs()
        }

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        feed = {
            name: t.detach().to("cpu", torch.float32).numpy().astype(self._dtypes[name])
            for name, t in zip(self.input_names, tensors, strict=True)
        }
        out = self.session.run(None, feed)[0]
        return torch.from_numpy(out.astype(np.float32)).to(tensors[0].device, tensors[0].dtype)


def load_scheduler_config(path: Path) -> dict:
    """The scheduler's JSON config (``scheduler/scheduler_config.json``)."""
    return json.loads(Path(path).read_text())


def make_scheduler(config: dict):
    """A fresh DDIM scheduler per call: schedulers keep per-run state (the timesteps)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(config)


def to_tensor(images: np.ndarray, device, dtype) -> torch.Tensor:
    """``[N,]H,W,3`` uint8 RGB -> ``N,3,H,W`` in [-1, 1]."""
    arr = images if images.ndim == 4 else images[None]
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    return (t.to(device=device, dtype=torch.float32) / 127.5 - 1.0).to(dtype)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``N,3,H,W`` in [-1, 1] -> ``N,H,W,3`` uint8 RGB (rounded, clipped)."""
    x = ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).round()
    return x.permute(0, 2, 3, 1).to("cpu", torch.uint8).numpy()


@torch.no_grad()
def encode(vae, images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> scaled latents (the posterior mean: deterministic)."""
    posterior = vae.encode(images.to(vae.dtype)).latent_dist
    return posterior.mean * vae.config.scaling_factor


@torch.no_grad()
def decode(decoder: Decoder, latents: torch.Tensor, scaling_factor: float) -> torch.Tensor:
    """Scaled latents -> images in [-1, 1], one image at a time (peak memory of one)."""
    return torch.cat([decoder(latents[i : i + 1] / scaling_factor) for i in range(len(latents))])


def _step_kwargs(scheduler, generator: torch.Generator | None, eta: float) -> dict:
    params = inspect.signature(scheduler.step).parameters
    out = {}
    if "eta" in params:
        out["eta"] = eta
    if "generator" in params:
        out["generator"] = generator
    return out


@torch.no_grad()
def denoise(
    unet: UNetStep,
    scheduler,
    latents: torch.Tensor,
    timesteps: Sequence[torch.Tensor],
    cond: torch.Tensor,
    uncond: torch.Tensor | None = None,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
    token: CancelToken | None = None,
    progress: StepProgress | None = None,
) -> torch.Tensor:
    """Run the reverse diffusion from ``latents`` over ``timesteps``.

    The UNet input is ``cat([latents, cond], dim=1)``: ``cond`` carries the extra input
    channels of an inpainting UNet (mask and masked-image latents). With ``uncond`` and
    ``guidance > 1`` the conditional and unconditional inputs go through the UNet as one
    batch of two and are combined by classifier-free guidance (Ho & Salimans, "Classifier-
    Free Diffusion Guidance", 2022): ``eps = eps_u + guidance * (eps_c - eps_u)``.

    Args:
        unet: one UNet evaluation.
        scheduler: a diffusers scheduler whose ``set_timesteps`` was called.
        latents: the starting noisy latents ``[B,4,h,w]``.
        timesteps: the timesteps to run, in order.
        cond: extra channels, ``[B,k,h,w]`` (``k`` may be 0).
        uncond: the unconditional extra channels for guidance, or None.
        guidance: classifier-free guidance scale; at or below 1 the unconditional branch
            is skipped.
        generator: noise of stochastic steps (DDIM with ``eta > 0``).
        eta: DDIM's eta (0: deterministic).
        token: checked before every step.
        progress: called after every step with ``(done, total)``.

    Returns:
        The denoised latents.

    Raises:
        CancelledError, DeadlineExceededError: from ``token``, between steps.
    """
    token = token or CancelToken()
    cfg = uncond is not None and guidance > 1.0
    kwargs = _step_kwargs(scheduler, generator, eta)
    total = len(timesteps)
    for i, t in enumerate(timesteps):
        token.check(f"denoising step {i + 1}/{total}")
        x = scheduler.scale_model_input(latents, t)
        if cfg:
            inp = torch.cat([torch.cat([x, uncond], 1), torch.cat([x, cond], 1)])
        else:
            inp = torch.cat([x, cond], 1)
        tt = torch.full((inp.shape[0],), float(t), device=inp.device, dtype=torch.float32)
        eps = unet(inp, tt)
        if cfg:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        latents = scheduler.step(eps, t, latents, **kwargs).prev_sample
        if progress is not None:
            progress(i + 1, total)
    return latents
