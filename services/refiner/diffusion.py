"""Refiner ``diffusion`` backend: low-strength inpainting of the garment's seams only.

The composite's garment edge (a band a little over 1 % of the image's long side, both sides
of the contour) is re-noised to a low level and denoised by a Stable Diffusion inpainting UNet
whose mask is that band and whose masked image is the rest of the composite (SDEdit, Meng et
al., ICLR 2022, restricted to a mask). The result is blended in with a weight that falls to
zero at the band's edge; then the face, hair and hands (the protect mask) and everything
outside the garment and its band are copied back bit-exactly from the original photo, as the
classical refiner does. The garment's interior is the composite's.

No text encoder: SD's UNet is conditioned on the CLIP text embedding of the empty prompt,
which is a constant. The operator computes it once, anywhere, and puts it in the model
directory, so Drape needs no tokenizer or text model at run time.

Weight directory (``<model_dir>/sd-inpainting/<version>/``, kind ``refiner-sd-inpainting``)::

    unet/config.json, unet/diffusion_pytorch_model.safetensors   SD1.5 inpainting UNet (9 ch)
    vae/config.json, vae/diffusion_pytorch_model.safetensors     the SD VAE
    scheduler/scheduler_config.json                             DDIM
    text_embeds/empty.safetensors       key "prompt_embeds": [1, 77, 768], the CLIP ViT-L/14
                                        text encoder's last hidden state for "" (SD1.5)
"""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np
import torch

from services.common.context import CancelToken
from services.neural import diffusion as D
from services.neural.repository import LoadedModel, ModelRepositoryError
from services.refiner.classical import RefineResult, check_inputs, restore

BACKEND = "diffusion"
KIND = "refiner-sd-inpainting"
EMBEDS = "text_embeds/empty.safetensors"
REQUIRED = (
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
    EMBEDS,
)
# Seam band half-width as a fraction of the long side (at least 4 px): wider than the
# classical refiner's, since the VAE sees the image at 1/8 resolution.
_BAND_FRAC = 0.012
_BAND_MIN_PX = 4
# The working crop around the band is scaled to at most this long side.
MAX_SIDE = 768


class InpaintStep(torch.nn.Module):
    """``(sample [B,9,h,w], timestep [B]) -> noise``, conditioned on the empty prompt."""

    def __init__(self, unet, prompt_embeds: torch.Tensor) -> None:
        super().__init__()
        self.unet = unet
        self.register_buffer("prompt_embeds", prompt_embeds)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        ctx = self.prompt_embeds.expand(sample.shape[0], -1, -1).to(sample.dtype)
        return self.unet(sample, timestep, encoder_hidden_states=ctx, return_dict=False)[0]


def seam_band(alpha: np.ndarray, band_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels within ``band_px`` of the garment's contour (alpha 0.5), and a weight that is
    1 on the contour and falls smoothly to 0 at the band's edge (exactly 0 outside)."""
    inside = (alpha >= 0.5).astype(np.uint8)
    to_out = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    to_in = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
    d = np.where(inside > 0, to_out, to_in) - 0.5
    band = d <= band_px
    t = np.clip(d / band_px, 0.0, 1.0)
    weight = (0.5 + 0.5 * np.cos(np.pi * t)).astype(np.float32)  # raised cosine
    weight[~band] = 0.0
    return band, weight


@dataclasses.dataclass
class DiffusionRefiner:
    """The loaded SD inpainting components."""

    model: LoadedModel
    unet: torch.nn.Module
    vae: torch.nn.Module
    scheduler_config: dict
    step: D.UNetStep
    decoder: D.Decoder
    device: torch.device
    dtype: torch.dtype
    strength: float = 0.3
    steps: int = 20
    max_side: int = MAX_SIDE

    @property
    def version_label(self) -> str:
        return f"{BACKEND}/{self.model.version_label}"

    @property
    def multiple(self) -> int:
        vae = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return vae * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @classmethod
    def from_settings(cls, settings) -> DiffusionRefiner:
        """Verify and load ``DRAPE_REFINER_DIFFUSION_MODEL``.

        Raises:
            ModelRepositoryError: missing or corrupted files (names the path).
            ConfigError: unusable device or dtype.
        """
        from services.neural.repository import ModelRef, open_model
        from services.neural.runtime import torch_device, torch_dtype

        setting = "DRAPE_REFINER_DIFFUSION_MODEL"
        ref = ModelRef.parse(settings.refiner_diffusion_model, setting)
        model = open_model(settings.model_dir, ref, KIND, REQUIRED, setting)
        device = torch_device(settings.neural_device)
        net = load(model, device, torch_dtype(settings.neural_dtype, device))
        net.strength = settings.refiner_diffusion_strength
        net.steps = settings.refiner_diffusion_steps
        return net

    @torch.no_grad()
    def refine(
        self,
        composite: np.ndarray,
        person: np.ndarray,
        garment_alpha: np.ndarray,
        protect_mask: np.ndarray | None = None,
        strength: float = 1.0,
        seed: int = 0,
        token: CancelToken | None = None,
        progress: D.StepProgress | None = None,
    ) -> RefineResult:
        """Repair the garment's seams (same contract as the classical ``refine``).

        Args:
            composite, person, garment_alpha, protect_mask: as for the classical refiner.
            strength: 0..1, scales the denoising strength (``DRAPE_REFINER_DIFFUSION_STRENGTH``
                at 1); 0 returns the composite with only the restore step applied.
            seed: the noise; the result is deterministic for a seed.
            token: checked between denoising steps.
            progress: after each denoising step.

        Returns:
            A :class:`RefineResult`; outside the garment and its band, and on protected
            pixels, bit-identical to ``person``.

        Raises:
            InvalidInputError: as the classical refiner (sizes, empty mask, strength).
        """
        t0 = time.perf_counter()
        stages: dict[str, float] = {}
        alpha, protect = check_inputs(composite, person, garment_alpha, protect_mask, strength)
        h, w = composite.shape[:2]
        band_px = max(_BAND_MIN_PX, round(_BAND_FRAC * max(h, w)))
        band, weight = seam_band(alpha, band_px)
        band &= ~protect
        weight[protect] = 0.0
        keep = (~band & (alpha <= 0.0)) | protect
        out = composite.copy()
        denoise_strength = float(strength) * self.strength
        n_run = int(round(self.steps * denoise_strength))
        stats: dict[str, object] = {"band_px": band_px, "strength": float(strength),
                                    "denoise_strength": denoise_strength, "steps_run": n_run}  # fmt: skip
        stages["check"] = time.perf_counter() - t0
        if n_run > 0 and band.any():
            t1 = time.perf_counter()
            ys, xs = np.nonzero(band)
            m = 4 * band_px
            x0, y0 = max(0, int(xs.min()) - m), max(0, int(ys.min()) - m)
            x1, y1 = min(w, int(xs.max()) + 1 + m), min(h, int(ys.max()) + 1 + m)
            gen = self._inpaint(composite[y0:y1, x0:x1], band[y0:y1, x0:x1], n_run, seed,
                                token, progress)  # fmt: skip
            wroi = weight[y0:y1, x0:x1, None]
            roi = composite[y0:y1, x0:x1].astype(np.float32)
            blend = roi * (1 - wroi) + gen.astype(np.float32) * wroi
            out[y0:y1, x0:x1] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
            stages["inpaint"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        restore(out, person, keep)
        stages["restore"] = time.perf_counter() - t2
        return RefineResult(image=out, stages=stages, stats=stats)

    def _inpaint(self, crop, band, n_run, seed, token, progress) -> np.ndarray:
        """SD inpainting of ``band`` in ``crop`` from a partly noised start; crop-sized."""
        h, w = crop.shape[:2]
        m = self.multiple
        s = min(1.0, self.max_side / max(h, w))
        W, H = max(m, round(w * s / m) * m), max(m, round(h * s / m) * m)
        small = cv2.resize(crop, (W, H), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(band.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST)
        dev, dt = self.device, self.dtype
        image = D.to_tensor(small, dev, dt)
        mask_t = torch.from_numpy(mask.astype(np.float32))[None, None].to(dev, dt)
        x0 = D.encode(self.vae, image)
        masked = D.encode(self.vae, image * (1 - mask_t))
        # Max-pooled, so a band thinner than a latent pixel still marks it.
        mask_lat = torch.nn.functional.adaptive_max_pool2d(mask_t, x0.shape[-2:])
        scheduler = D.make_scheduler(self.scheduler_config)
        scheduler.set_timesteps(self.steps, device=dev)
        timesteps = scheduler.timesteps[self.steps - n_run :]
        generator = torch.Generator("cpu").manual_seed(int(seed))
        noise = torch.randn(x0.shape, generator=generator).to(dev, dt)
        latents = scheduler.add_noise(x0, noise, timesteps[:1])
        cond = torch.cat([mask_lat, masked], 1)
        latents = D.denoise(self.step, scheduler, latents, timesteps, cond, None, 1.0,
                            generator, 0.0, token, progress)  # fmt: skip
        img = D.to_uint8(D.decode(self.decoder, latents, self.vae.config.scaling_factor))[0]
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)


def load(model: LoadedModel, device: torch.device, dtype: torch.dtype) -> DiffusionRefiner:
    """Build the refiner from a verified model directory.

    Raises:
        ModelRepositoryError: a UNet that is not a 9-channel inpainting UNet, or an
            empty-prompt embedding whose width is not the UNet's cross-attention width.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import load_file

    opts = {"local_files_only": True, "use_safetensors": True, "low_cpu_mem_usage": False}
    unet = UNet2DConditionModel.from_pretrained(model.file("unet"), torch_dtype=dtype, **opts)
    if unet.config.in_channels != 9:
        raise ModelRepositoryError(
            model.file("unet/config.json"),
            f"{model.file('unet/config.json')}: in_channels {unet.config.in_channels}; the "
            "diffusion refiner needs an SD inpainting UNet (9 input channels)",
        )
    vae = AutoencoderKL.from_pretrained(model.file("vae"), torch_dtype=dtype, **opts)
    embeds = load_file(str(model.file(EMBEDS))).get("prompt_embeds")
    if embeds is None or embeds.ndim != 3 or embeds.shape[-1] != unet.config.cross_attention_dim:
        got = None if embeds is None else tuple(embeds.shape)
        raise ModelRepositoryError(
            model.file(EMBEDS),
            f"{model.file(EMBEDS)}: 'prompt_embeds' is {got}; expected [1, 77, "
            f"{unet.config.cross_attention_dim}]",
        )
    unet, vae = unet.to(device).eval(), vae.to(device).eval()
    step = InpaintStep(unet, embeds.to(device, dtype))
    return DiffusionRefiner(
        model=model,
        unet=unet,
        vae=vae,
        scheduler_config=D.load_scheduler_config(model.file("scheduler/scheduler_config.json")),
        step=step,
        decoder=D.VaeDecoder(vae),
        device=device,
        dtype=dtype,
    )
