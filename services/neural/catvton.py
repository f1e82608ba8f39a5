"""The CatVTON network: an SD1.5 inpainting UNet whose self-attention sees the masked person
and the garment side by side (Chong et al., "CatVTON: Concatenation Is All You Need for
Virtual Try-On with Diffusion Models", ICLR 2025).

No garment encoder and no text encoder: the person (masked) and the garment are encoded by
the VAE, concatenated along the image height, and denoised together, so the UNet's
self-attention (``attn1``) carries the garment into the person half. The cross-attention
(``attn2``) is skipped: its processor returns its input unchanged, which is how the released
attention weights were trained (the transformer block then adds that input to its residual).

Weight directory (``<model_dir>/catvton/<version>/``, kind ``tryon-catvton``)::

    unet/config.json, unet/diffusion_pytorch_model.safetensors
        an SD1.5 inpainting UNet (in_channels 9), e.g. runwayml/stable-diffusion-inpainting
    vae/config.json, vae/diffusion_pytorch_model.safetensors
        the SD VAE (CatVTON uses stabilityai/sd-vae-ft-mse)
    scheduler/scheduler_config.json
        DDIM, as in the base model
    attention/model.safetensors        (optional)
        CatVTON's trained self-attention weights (the release's <variant>/attention folder,
        e.g. mix-48k-1024); keys ``<i>.<param>`` where ``i`` counts the UNet's modules whose
        name contains ``attn1`` in ``named_modules()`` order, attention processors included
        (CatVTON's processors are modules). Absent: the UNet's own weights are used.
    onnx/unet_step.onnx, onnx/vae_decoder.onnx      (optional, ``drape models export``)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from services.neural import diffusion as D
from services.neural.repository import LoadedModel, ModelRepositoryError

KIND = "tryon-catvton"
REQUIRED = (
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
)
ATTENTION = "attention/model.safetensors"
ONNX_UNET = "onnx/unet_step.onnx"
ONNX_VAE_DECODER = "onnx/vae_decoder.onnx"
# The released weights concatenate person and garment along the latent height (dim -2).
CONCAT_DIM = -2
# CatVTON's recommended sampling: DDIM with eta 1, guidance 2.5 (the paper's setting).
ETA = 1.0


class SelfAttention(torch.nn.Module):
    """The standard attention, as a module: CatVTON's released checkpoint numbers the
    ``attn1`` modules with their processors counted, so ours must be modules too."""

    def __init__(self) -> None:
        super().__init__()
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.inner = AttnProcessor2_0()

    def forward(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                temb=None, *args, **kwargs):  # fmt: skip
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class SkipCrossAttention(torch.nn.Module):
    """Cross-attention switched off: returns its (normalised) input, as CatVTON trained."""

    def forward(self, attn, hidden_states, *args, **kwargs):
        return hidden_states


def prepare_unet(unet) -> None:
    """Self-attention kept, cross-attention skipped (in place)."""
    procs = {}
    for name in unet.attn_processors:
        procs[name] = SelfAttention() if name.endswith("attn1.processor") else SkipCrossAttention()
    unet.set_attn_processor(procs)


def attention_modules(unet) -> list[torch.nn.Module]:
    """The modules CatVTON's attention checkpoint indexes, in its order."""
    return [m for name, m in unet.named_modules() if "attn1" in name]


def load_attention(unet, path: Path) -> int:
    """Load CatVTON's self-attention weights into ``unet`` (after :func:`prepare_unet`).

    Returns:
        How many distinct attention parameters were set.

    Raises:
        ModelRepositoryError: a key that indexes no module or names no parameter, a shape
            mismatch, or an ``attn1`` parameter the file does not set.
    """
    from safetensors.torch import load_file

    modules = attention_modules(unet)
    state = load_file(str(path))
    done: set[int] = set()
    for key, value in state.items():
        index, _, rest = key.partition(".")
        if not index.isdigit() or int(index) >= len(modules):
            raise ModelRepositoryError(
                path, f"{path}: key {key!r} indexes no attn1 module ({len(modules)} in the UNet)"
            )
        params = dict(modules[int(index)].named_parameters())
        if rest not in params:
            raise ModelRepositoryError(path, f"{path}: key {key!r} names no parameter")
        param = params[rest]
        if tuple(param.shape) != tuple(value.shape):
            raise ModelRepositoryError(
                path,
                f"{path}: {key} has shape {tuple(value.shape)}, the UNet {tuple(param.shape)}",
            )
        with torch.no_grad():
            param.copy_(value.to(param.dtype))
        done.add(id(param))
    wanted = {id(p) for m in modules for p in m.parameters()}
    if missing := len(wanted - done):
        raise ModelRepositoryError(
            path,
            f"{path} sets {len(done)} of the {len(wanted)} attn1 parameters; {missing} missing",
        )
    return len(done)


class CatVTONStep(torch.nn.Module):
    """``(sample [B,9,h,w], timestep [B]) -> noise [B,4,h,w]``: the graph that is exported.
    The cross-attention is skipped, so its input is a dummy that the graph drops."""

    def __init__(self, unet) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        dim = self.unet.config.cross_attention_dim
        dummy = torch.zeros(sample.shape[0], 1, dim, dtype=sample.dtype, device=sample.device)
        return self.unet(sample, timestep, encoder_hidden_states=dummy, return_dict=False)[0]


@dataclasses.dataclass
class CatVTON:
    """The loaded network: UNet step, VAE, scheduler config, on one device and dtype."""

    model: LoadedModel
    unet: torch.nn.Module
    vae: torch.nn.Module
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype
    step: D.UNetStep
    decoder: D.Decoder
    runtime: str

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (VAE factor times UNet downsampling)."""
        return self.vae_scale * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @torch.no_grad()
    def generate(
        self,
        person: torch.Tensor,
        mask: torch.Tensor,
        garment: torch.Tensor,
        steps: int,
        guidance: float,
        generator: torch.Generator,
        token=None,
        progress: D.StepProgress | None = None,
    ) -> torch.Tensor:
        """Repaint the masked part of ``person`` wearing ``garment``.

        Args:
            person: ``1,3,H,W`` in [-1, 1].
            mask: ``1,1,H,W``, 1 where the garment goes.
            garment: ``1,3,H,W`` in [-1, 1], the garment on white, fitted into ``H x W``.
            steps: denoising steps.
            guidance: classifier-free guidance (the unconditional branch sees no garment).
            generator: seeded noise.
            token: checked between steps.
            progress: after each step.

        Returns:
            ``1,3,H,W`` in [-1, 1]: the person half, decoded.
        """
        mask = (mask >= 0.5).to(self.dtype)
        masked = person * (1 - mask)
        masked_lat = D.encode(self.vae, masked)
        garment_lat = D.encode(self.vae, garment)
        mask_lat = torch.nn.functional.interpolate(mask, size=masked_lat.shape[-2:], mode="nearest")
        both = torch.cat([masked_lat, garment_lat], dim=CONCAT_DIM)
        cond = torch.cat([torch.cat([mask_lat, torch.zeros_like(mask_lat)], CONCAT_DIM), both], 1)
        no_garment = torch.cat([masked_lat, torch.zeros_like(garment_lat)], dim=CONCAT_DIM)
        uncond = torch.cat([cond[:, :1], no_garment], 1)
        scheduler = D.make_scheduler(self.scheduler_config)
        scheduler.set_timesteps(steps, device=self.device)
        noise = torch.randn(
            both.shape, generator=generator, device=generator.device, dtype=torch.float32
        ).to(self.device, self.dtype)
        latents = noise * scheduler.init_noise_sigma
        latents = D.denoise(
            self.step, scheduler, latents, scheduler.timesteps, cond, uncond, guidance,
            generator, ETA, token, progress,
        )  # fmt: skip
        person_half = latents.split(latents.shape[CONCAT_DIM] // 2, dim=CONCAT_DIM)[0]
        return D.decode(self.decoder, person_half, self.vae.config.scaling_factor)


def load(
    model: LoadedModel,
    device: torch.device,
    dtype: torch.dtype,
    runtime: str = "torch",
    providers: tuple[str, ...] = ("cpu",),
) -> CatVTON:
    """Build CatVTON from a verified model directory (see the module docstring).

    Raises:
        ModelRepositoryError: a UNet that is not a 9-channel inpainting UNet, a bad
            attention file, or missing ONNX graphs for ``runtime="onnxruntime"``.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel

    # low_cpu_mem_usage needs `accelerate`, which Drape does not install.
    opts = {"local_files_only": True, "use_safetensors": True, "low_cpu_mem_usage": False}
    unet = UNet2DConditionModel.from_pretrained(model.file("unet"), torch_dtype=dtype, **opts)
    if unet.config.in_channels != 9 or unet.config.out_channels != 4:
        raise ModelRepositoryError(
            model.file("unet/config.json"),
            f"{model.file('unet/config.json')}: in/out channels "
            f"{unet.config.in_channels}/{unet.config.out_channels}; CatVTON needs an SD "
            "inpainting UNet with 9 input and 4 output channels",
        )
    prepare_unet(unet)
    if model.has(ATTENTION):
        load_attention(unet, model.file(ATTENTION))
    vae = AutoencoderKL.from_pretrained(model.file("vae"), torch_dtype=dtype, **opts)
    unet = unet.to(device).eval()
    vae = vae.to(device).eval()
    if runtime == "onnxruntime":
        from services.neural.runtime import create_session

        cache = model.path / "onnx" / "trt_cache"
        fp16 = dtype == torch.float16
        step = D.OrtStep(
            create_session(model.file(ONNX_UNET), providers, cache, fp16), ["sample", "timestep"]
        )
        decoder = D.OrtStep(
            create_session(model.file(ONNX_VAE_DECODER), providers, cache, fp16), ["latents"]
        )
    else:
        step, decoder = CatVTONStep(unet), D.VaeDecoder(vae)
    return CatVTON(
        model=model,
        unet=unet,
        vae=vae,
        scheduler_config=D.load_scheduler_config(model.file("scheduler/scheduler_config.json")),
        device=device,
        dtype=dtype,
        step=step,
        decoder=decoder,
        runtime=runtime,
    )
