"""Component configs (real-size and tiny) and writers of random-weight model repositories.

No weights are reachable here, so tests and benchmarks build every network from a config
with random weights and save it in the layout an operator provides; the real loading and
inference code then runs on it. Timings do not depend on weight values, so the real-size
configs serve the GPU benchmarks; the tiny ones keep each CI test to seconds.

The real-size values are those of the published Stable Diffusion 1.5 (inpainting) configs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from services.neural.repository import write_manifest


def sd15_unet_config(in_channels: int = 9) -> dict:
    """The SD1.5 UNet (``in_channels`` 9: the inpainting variant CatVTON builds on)."""
    return {
        "sample_size": 64,
        "in_channels": in_channels,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }


def sd_vae_config() -> dict:
    """The SD VAE (8x downsampling, 4 latent channels)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    }


def tiny_unet_config(in_channels: int = 9, cross_attention_dim: int = 32) -> dict:
    """A UNet with the SD block structure at toy width (about 1 M parameters)."""
    return {
        "sample_size": 16,
        "in_channels": in_channels,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": 8,
        "norm_num_groups": 8,
    }


def tiny_vae_config() -> dict:
    """A VAE with the SD structure at toy width (2x downsampling)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 2,
        "up_block_types": ["UpDecoderBlock2D"] * 2,
        "block_out_channels": [16, 32],
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 8,
        "sample_size": 64,
        "scaling_factor": 0.18215,
    }


def ddim_config() -> dict:
    """SD1.5's noise schedule, sampled with DDIM."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "epsilon",
        "timestep_spacing": "leading",
    }


def _save_unet_vae_scheduler(directory: Path, unet_cfg: dict, vae_cfg: dict) -> tuple:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    unet = UNet2DConditionModel(**unet_cfg)
    vae = AutoencoderKL(**vae_cfg)
    unet.save_pretrained(directory / "unet", safe_serialization=True)
    vae.save_pretrained(directory / "vae", safe_serialization=True)
    DDIMScheduler(**ddim_config()).save_pretrained(directory / "scheduler")
    return unet, vae


def write_catvton_repository(
    model_dir: Path | str,
    name: str = "catvton",
    version: str = "1",
    tiny: bool = True,
    seed: int = 0,
    attention: bool = True,
) -> Path:
    """A random-weight CatVTON directory with its manifest (see :mod:`services.neural.catvton`).

    Args:
        model_dir: repository root.
        name: model name.
        version: model version.
        tiny: toy widths (tests) or the real SD1.5 sizes (benchmarks).
        seed: weight initialisation.
        attention: also write ``attention/model.safetensors`` in the release's key layout.

    Returns:
        The model directory.
    """
    from safetensors.torch import save_file

    from services.neural import catvton

    torch.manual_seed(seed)
    directory = Path(model_dir) / name / version
    unet_cfg = tiny_unet_config() if tiny else sd15_unet_config()
    unet, _ = _save_unet_vae_scheduler(
        directory, unet_cfg, tiny_vae_config() if tiny else sd_vae_config()
    )
    if attention:
        catvton.prepare_unet(unet)
        state = {}
        for i, module in enumerate(catvton.attention_modules(unet)):
            for pname, p in module.named_parameters():
                state[f"{i}.{pname}"] = torch.randn_like(p) * 0.05
        (directory / "attention").mkdir(parents=True, exist_ok=True)
        save_file(state, str(directory / catvton.ATTENTION))
    write_manifest(directory, name, version, catvton.KIND)
    return directory


def write_sd_inpainting_repository(
    model_dir: Path | str,
    name: str = "sd-inpainting",
    version: str = "1",
    tiny: bool = True,
    seed: int = 0,
) -> Path:
    """A random-weight SD inpainting directory for the diffusion refiner, with the
    empty-prompt embedding file (see :mod:`services.refiner.diffusion`)."""
    from safetensors.torch import save_file

    from services.refiner import diffusion as refiner_diffusion

    torch.manual_seed(seed)
    directory = Path(model_dir) / name / version
    unet_cfg = tiny_unet_config() if tiny else sd15_unet_config()
    _save_unet_vae_scheduler(directory, unet_cfg, tiny_vae_config() if tiny else sd_vae_config())
    dim = unet_cfg["cross_attention_dim"]
    (directory / "text_embeds").mkdir(parents=True, exist_ok=True)
    save_file({"prompt_embeds": torch.randn(1, 77, dim)}, str(directory / refiner_diffusion.EMBEDS))
    write_manifest(directory, name, version, refiner_diffusion.KIND)
    return directory
