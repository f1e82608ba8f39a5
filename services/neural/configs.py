"""Component configs (real-size and tiny) and writers of random-weight model repositories.

No weights are reachable here, so tests and benchmarks build every network from a config
with random weights and save it in the layout an operator provides; the real loading and
inference code then runs on it. Timings do not depend on weight values, so the real-size
configs serve the GPU benchmarks; the tiny ones keep each CI test to seconds.

The real-size values are those of the published Stable Diffusion 1.5 (inpainting) configs.
"""

from __future__ import annotations

import json
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


def tiny_motion_unet_config(cross_attention_dim: int = 32) -> dict:
    """A denoising UNet with motion modules (diffusers ``UNetMotionModel``) at toy width."""
    return {
        "sample_size": 16,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlockMotion", "DownBlockMotion"],
        "up_block_types": ["UpBlockMotion", "CrossAttnUpBlockMotion"],
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "cross_attention_dim": cross_attention_dim,
        "norm_num_groups": 8,
        "num_attention_heads": 4,
        "motion_num_attention_heads": 2,
        "motion_max_seq_length": 32,
        "use_motion_mid_block": True,
    }


def sd15_motion_unet_config() -> dict:
    """AnimateAnyone's denoising UNet: SD1.5 with AnimateDiff v2 motion modules."""
    return {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlockMotion"] * 3 + ["DownBlockMotion"],
        "up_block_types": ["UpBlockMotion"] + ["CrossAttnUpBlockMotion"] * 3,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "norm_num_groups": 32,
        "num_attention_heads": 8,
        "motion_num_attention_heads": 8,
        "motion_max_seq_length": 32,
        "use_motion_mid_block": True,
    }


def animatediff_motion_key(key: str) -> str:
    """diffusers' motion-module name -> AnimateDiff's (the layout operators download)."""
    head, sep, rest = key.partition(".motion_modules.")
    index, _, tail = rest.partition(".")
    tail = "temporal_transformer." + tail
    for a, b in ((".attn1.", ".attention_blocks.0."), (".attn2.", ".attention_blocks.1."),
                 (".norm1.", ".norms.0."), (".norm2.", ".norms.1."), (".norm3.", ".ff_norm.")):  # fmt: skip
        tail = tail.replace(a, b)
    return f"{head}{sep}{index}.{tail}"


class _TinyImageEncoder(torch.nn.Module):
    """Stand-in for the CLIP image encoder graph at toy size: same inputs and outputs."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 16, kernel_size=32, stride=32)
        self.proj = torch.nn.Linear(16, dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.proj(self.patch(pixel_values).mean(dim=(2, 3)))


def write_animate_repository(
    model_dir: Path | str, name: str = "animate-anyone", version: str = "1", seed: int = 0
) -> Path:
    """A tiny random-weight AnimateAnyone directory in the open re-implementation's layout
    (see :mod:`services.animate.diffusion`), with its manifest."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel, UNetMotionModel

    from services.animate import diffusion as AD
    from services.neural import export
    from services.neural.pose_guider import PoseGuider, PoseGuiderConfig

    torch.manual_seed(seed)
    directory = Path(model_dir) / name / version
    directory.mkdir(parents=True, exist_ok=True)
    dim = 32
    cfg = {
        "reference_unet": tiny_unet_config(in_channels=4, cross_attention_dim=dim),
        "denoising_unet": tiny_motion_unet_config(dim),
        "pose_guider": {"block_out_channels": [8, 16], "embedding_channels": 32},
    }
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    torch.save(UNet2DConditionModel(**cfg["reference_unet"]).state_dict(),
               directory / "reference_unet.pth")  # fmt: skip
    den = UNetMotionModel(**cfg["denoising_unet"])
    state = den.state_dict()
    torch.save({k: v for k, v in state.items() if "motion_modules" not in k},
               directory / "denoising_unet.pth")  # fmt: skip
    motion = {}
    for k, v in state.items():
        if "motion_modules" in k and not k.endswith(".pos_embed.pe"):
            # Temporal layers start at zero output in AnimateDiff; random here so they act.
            motion[animatediff_motion_key(k)] = torch.randn_like(v) * 0.05 if v.ndim > 1 else v
    for k in [k for k in motion if ".attention_blocks.0.to_q." in k]:
        motion[k.replace("to_q.weight", "pos_encoder.pe")] = torch.zeros(1, 32, 8)
    torch.save(motion, directory / "motion_module.pth")
    guider = PoseGuider(PoseGuiderConfig(3, (8, 16), 32))
    torch.nn.init.normal_(guider.conv_out.weight, std=0.05)
    torch.save(guider.state_dict(), directory / "pose_guider.pth")
    AutoencoderKL(**tiny_vae_config()).save_pretrained(directory / "vae", safe_serialization=True)
    DDIMScheduler(**ddim_config()).save_pretrained(directory / "scheduler")
    graph = export.Graph("image_encoder", ("pixel_values",), ("image_embeds",), {})
    export.export(_TinyImageEncoder(dim), (torch.randn(1, 3, 224, 224),),
                  directory / "image_encoder" / "model.onnx", graph)  # fmt: skip
    write_manifest(directory, name, version, AD.KIND)
    return directory
