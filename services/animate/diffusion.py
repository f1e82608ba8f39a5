"""Animate ``diffusion`` backend: the AnimateAnyone design (Hu et al., "Animate Anyone:
Consistent and Controllable Image-to-Video Synthesis for Character Animation", CVPR 2024).

still ─► VAE ─► reference UNet (once, t = 0) ──► self-attention features (the "bank")
still ─► image encoder (CLIP, ONNX) ─► cross-attention context ───────┐       │ read by
skeleton maps ─► pose guider ─► added after the denoising UNet's conv_in ┐    ▼
noise [F frames] ─► denoising UNet (spatial layers + temporal motion modules) ─► DDIM
                    in sliding windows of ``window`` frames overlapping by ``overlap``,
                    the windows' noise predictions averaged per step ─► VAE, frame by frame

* Reference attention: every spatial self-attention (``attn1``) of the denoising UNet
  attends to its own tokens *and* the reference UNet's tokens at the same layer, written once
  per clip; that is how the still's appearance reaches every frame.
* The motion modules are AnimateDiff's temporal transformers (Guo et al., ICLR 2024), here
  diffusers' ``UNetMotionModel``.
* Classifier-free guidance: the unconditional branch has a zero image embedding (the
  reference features and poses stay), as in the open re-implementation.

Weight directory (``<model_dir>/animate-anyone/<version>/``, kind ``animate-anyone``), laid
out like the open re-implementation's release (Moore-AnimateAnyone)::

    config.json            {"reference_unet": {...}, "denoising_unet": {...},
                            "pose_guider": {...}}: the networks' constructor arguments
                           (UNet2DConditionModel, UNetMotionModel, PoseGuiderConfig)
    reference_unet.pth     UNet2DConditionModel state dict
    denoising_unet.pth     the denoising UNet's spatial weights (UNet3D / diffusers names)
    motion_module.pth      AnimateDiff motion-module weights (``...motion_modules.N.
                           temporal_transformer.transformer_blocks.0.attention_blocks.0...``
                           names, converted on load); every motion parameter of the model
                           must be set by it, else the load fails (a silent skip flickers)
    pose_guider.pth        PoseGuider state dict (conv_in, blocks.N, conv_out)
    vae/, scheduler/       SD VAE (sd-vae-ft-mse) and DDIM config, diffusers layout
    image_encoder/model.onnx   the CLIP image encoder as ONNX: input ``pixel_values``
                           [1,3,224,224] (CLIP-normalised), output ``image_embeds`` [1,D];
                           exported once from sd-image-variations' image_encoder, so no
                           text/vision framework is needed at run time
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

from services.common.context import CancelToken
from services.neural import diffusion as D
from services.neural.pose_guider import PoseGuider, PoseGuiderConfig
from services.neural.repository import LoadedModel, ModelRepositoryError

BACKEND = "diffusion"
KIND = "animate-anyone"
REQUIRED = (
    "config.json",
    "reference_unet.pth",
    "denoising_unet.pth",
    "motion_module.pth",
    "pose_guider.pth",
    "vae/config.json",
    "vae/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
    "image_encoder/model.onnx",
)
# CLIP's input normalisation (Radford et al. 2021) and size.
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
CLIP_SIZE = 224


@dataclasses.dataclass
class AnimateOptions:
    """Options of one clip.

    Attributes:
        steps: denoising steps.
        guidance: classifier-free guidance scale (at or below 1: no unconditional branch).
        seed: the noise.
        window: frames the denoising UNet sees at once (its motion modules' context).
        overlap: frames shared by neighbouring windows (their predictions are averaged).
        size: working ``(height, width)``; None: the still's size rounded to the UNet's
            multiple.
    """

    steps: int = 25
    guidance: float = 3.5
    seed: int = 0
    window: int = 24
    overlap: int = 4
    size: tuple[int, int] | None = None


def windows(n: int, window: int, overlap: int) -> list[range]:
    """Frame ranges covering ``0..n-1``: ``window`` long, neighbours sharing ``overlap``
    frames; the last one is moved back to end at ``n`` (never shorter than the others)."""
    if n <= window:
        return [range(n)]
    stride = max(1, window - overlap)
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] + window < n:
        starts.append(n - window)
    return [range(s, s + window) for s in starts]


# ------------------------------------------------------------------ reference attention


class _Bank:
    """Self-attention inputs written by the reference UNet, read by the denoising UNet."""

    def __init__(self) -> None:
        self.features: dict[str, torch.Tensor] = {}


class _Write:
    def __init__(self, bank: _Bank, key: str) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.bank, self.key, self.inner = bank, key, AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):  # fmt: skip
        self.bank.features[self.key] = hidden_states
        return self.inner(attn, hidden_states, None, attention_mask, temb)


class _Read:
    def __init__(self, bank: _Bank, key: str) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.bank, self.key, self.inner = bank, key, AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs):  # fmt: skip
        ref = self.bank.features[self.key]
        frames = hidden_states.shape[0] // ref.shape[0]
        context = torch.cat([hidden_states, ref.repeat_interleave(frames, dim=0)], dim=1)
        return self.inner(attn, hidden_states, context, attention_mask, temb)


def _spatial_key(processor_name: str) -> str | None:
    """``down_blocks.0.attentions.0.transformer_blocks.0`` for a spatial ``attn1``."""
    if "motion_modules" in processor_name or not processor_name.endswith("attn1.processor"):
        return None
    return processor_name[: -len(".attn1.processor")]


def connect(reference_unet, denoising_unet, bank: _Bank) -> int:
    """Install the writers and readers; returns how many layers are connected.

    Raises:
        ValueError: a spatial layer of the denoising UNet without a
            reference counterpart (the two UNets must share the SD block structure).
    """
    ref_procs = {}
    for name in reference_unet.attn_processors:
        key = _spatial_key(name)
        ref_procs[name] = _Write(bank, key) if key else reference_unet.attn_processors[name]
    reference_unet.set_attn_processor(ref_procs)
    written = {k for k in map(_spatial_key, reference_unet.attn_processors) if k}
    den_procs, n = {}, 0
    for name, proc in denoising_unet.attn_processors.items():
        key = _spatial_key(name)
        if key is None:
            den_procs[name] = proc
            continue
        if key not in written:
            raise ValueError(f"denoising layer {key} has no reference layer")
        den_procs[name] = _Read(bank, key)
        n += 1
    denoising_unet.set_attn_processor(den_procs)
    return n


# ---------------------------------------------------------------------- checkpoints


_MOTION_RENAMES = (
    (".temporal_transformer.", "."),
    (".attention_blocks.0.", ".attn1."),
    (".attention_blocks.1.", ".attn2."),
    (".norms.0.", ".norm1."),
    (".norms.1.", ".norm2."),
    (".ff_norm.", ".norm3."),
)


def convert_motion_key(key: str) -> str | None:
    """AnimateDiff's motion-module name -> diffusers' (None for the fixed sinusoidal
    position tables, which diffusers computes)."""
    if ".pos_encoder." in key:
        return None
    for a, b in _MOTION_RENAMES:
        key = key.replace(a, b)
    return key


def load_motion_modules(unet, path) -> int:
    """Load ``motion_module.pth`` into ``unet``; every motion parameter must be set.

    Returns:
        Motion-module tensors loaded.

    Raises:
        ModelRepositoryError: a motion parameter of the model not in the file (a silent
            skip leaves random temporal layers: flicker), a key the model does not have, or
            a shape mismatch.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    # The sinusoidal position tables are computed, not learned: not expected from the file.
    params = {
        k: v
        for k, v in unet.state_dict().items()
        if "motion_modules" in k and not k.endswith(".pos_embed.pe")
    }
    loaded = set()
    for key, value in state.items():
        new = convert_motion_key(key)
        if new is None:
            continue
        if new not in params:
            raise ModelRepositoryError(path, f"{path}: {key} ({new}) is not a motion parameter")
        if tuple(params[new].shape) != tuple(value.shape):
            raise ModelRepositoryError(
                path, f"{path}: {key} is {tuple(value.shape)}, the model {tuple(params[new].shape)}"
            )
        params[new].copy_(value)
        loaded.add(new)
    missing = sorted(set(params) - loaded)
    if missing:
        raise ModelRepositoryError(
            path,
            f"{path} leaves {len(missing)} of {len(params)} motion-module tensors unset "
            f"(e.g. {missing[0]}); the temporal layers would be random and the clip flicker",
        )
    return len(loaded)


def _load_strict(module: torch.nn.Module, path, skip: Callable[[str], bool] = lambda k: False):
    state = torch.load(path, map_location="cpu", weights_only=True)
    want = {k for k in module.state_dict() if not skip(k)}
    got = set(state)
    if want - got or got - want:
        missing, extra = sorted(want - got), sorted(got - want)
        raise ModelRepositoryError(
            path, f"{path}: {len(missing)} keys missing (e.g. {missing[:1]}), "
            f"{len(extra)} unexpected (e.g. {extra[:1]})",
        )  # fmt: skip
    module.load_state_dict(state, strict=False)


# ------------------------------------------------------------------------- the model


@dataclasses.dataclass
class AnimateAnyone:
    """The loaded networks."""

    model: LoadedModel | None
    reference_unet: torch.nn.Module
    denoising_unet: torch.nn.Module
    pose_guider: PoseGuider
    vae: torch.nn.Module
    image_encoder: Callable[[np.ndarray], torch.Tensor]
    scheduler_config: dict
    device: torch.device
    dtype: torch.dtype
    bank: _Bank = dataclasses.field(default_factory=_Bank)

    def __post_init__(self) -> None:
        self.layers = connect(self.reference_unet, self.denoising_unet, self.bank)
        self._pose: torch.Tensor | None = None
        self.denoising_unet.conv_in.register_forward_hook(self._add_pose)

    def _add_pose(self, module, args, output):
        return output if self._pose is None else output + self._pose.to(output.dtype)

    @property
    def version_label(self) -> str:
        return f"{BACKEND}/{self.model.version_label}" if self.model else f"{BACKEND}/unversioned"

    @property
    def multiple(self) -> int:
        vae = 2 ** (len(self.vae.config.block_out_channels) - 1)
        unet = 2 ** (len(self.denoising_unet.config.block_out_channels) - 1)
        return max(vae * unet, vae * self.pose_guider.downsample)

    @torch.no_grad()
    def render(
        self,
        still: np.ndarray,
        pose_maps: np.ndarray,
        options: AnimateOptions,
        token: CancelToken | None = None,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> np.ndarray:
        """Frames of the still's person following ``pose_maps``.

        Args:
            still: ``H x W x 3`` uint8 RGB.
            pose_maps: ``F x H x W x 3`` uint8 skeleton drawings, one per frame.
            options: steps, guidance, seed, window, overlap, working size.
            token: checked before every window of every step and every decoded frame.
            progress: ``(done, total, stage)`` after each denoising step ("denoise") and each
                decoded frame ("decode").

        Returns:
            ``F x H x W x 3`` uint8 frames, the still's size.
        """
        token = token or CancelToken()
        F_, H0, W0 = pose_maps.shape[0], still.shape[0], still.shape[1]
        m = self.multiple
        H, W = options.size or (max(m, round(H0 / m) * m), max(m, round(W0 / m) * m))
        dev, dt = self.device, self.dtype
        still_w = cv2.resize(still, (W, H), interpolation=cv2.INTER_AREA)
        poses = np.stack([cv2.resize(p, (W, H), interpolation=cv2.INTER_AREA) for p in pose_maps])
        cfg = options.guidance > 1.0
        # 1. Reference features and the image embedding, once per clip.
        ref_latents = D.encode(self.vae, D.to_tensor(still_w, dev, dt))
        embeds = self.image_encoder(still).to(dev, dt)[:, None]  # [1,1,D]
        context = torch.cat([torch.zeros_like(embeds), embeds]) if cfg else embeds
        self.bank.features.clear()
        self.reference_unet(ref_latents.repeat(len(context), 1, 1, 1),
                            torch.zeros(len(context), device=dev), context)  # fmt: skip
        # 2. Pose features of every frame.
        pose_t = torch.from_numpy(poses).permute(0, 3, 1, 2).to(dev, dt) / 255.0
        pose_feats = torch.cat([self.pose_guider(pose_t[i : i + 8]) for i in range(0, F_, 8)])
        # 3. Denoising in overlapping windows.
        scheduler = D.make_scheduler(self.scheduler_config)
        scheduler.set_timesteps(options.steps, device=dev)
        generator = torch.Generator("cpu").manual_seed(int(options.seed))
        h, w = ref_latents.shape[-2:]
        latents = torch.randn((1, 4, F_, h, w), generator=generator).to(dev, dt)
        latents = latents * scheduler.init_noise_sigma
        wins = windows(F_, options.window, options.overlap)
        total = len(scheduler.timesteps)
        for i, t in enumerate(scheduler.timesteps):
            eps = torch.zeros_like(latents)
            count = torch.zeros((1, 1, F_, 1, 1), device=dev, dtype=dt)
            for win in wins:
                token.check(f"denoising step {i + 1}/{total}")
                idx = list(win)
                x = scheduler.scale_model_input(latents[:, :, idx], t)
                x = x.repeat(len(context), 1, 1, 1, 1)
                self._pose = pose_feats[idx].repeat(len(context), 1, 1, 1)
                try:
                    # One context per frame: UNetMotionModel folds frames into the batch.
                    ctx = context.repeat_interleave(len(idx), dim=0)
                    out = self.denoising_unet(x, t, encoder_hidden_states=ctx,
                                              return_dict=False)[0]  # fmt: skip
                finally:
                    self._pose = None
                if cfg:
                    u, c = out.chunk(2)
                    out = u + options.guidance * (c - u)
                eps[:, :, idx] += out
                count[:, :, idx] += 1
            latents = scheduler.step(eps / count, t, latents).prev_sample
            if progress:
                progress(i + 1, total, "denoise")
        # 4. VAE decoding frame by frame (peak memory of one frame).
        frames = []
        decoder = D.VaeDecoder(self.vae)
        for f in range(F_):
            token.check(f"decoding frame {f + 1}/{F_}")
            img = D.decode(decoder, latents[:, :, f], self.vae.config.scaling_factor)
            frames.append(cv2.resize(D.to_uint8(img)[0], (W0, H0), interpolation=cv2.INTER_CUBIC))
            if progress:
                progress(f + 1, F_, "decode")
        return np.stack(frames)


class OnnxImageEncoder:
    """The CLIP image encoder graph on ONNX Runtime: still -> ``[1, D]`` embedding."""

    def __init__(self, session) -> None:
        self.session = session

    def __call__(self, rgb: np.ndarray) -> torch.Tensor:
        x = cv2.resize(rgb, (CLIP_SIZE, CLIP_SIZE), interpolation=cv2.INTER_CUBIC)
        x = ((x.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)[None]
        (out,) = self.session.run(["image_embeds"], {"pixel_values": np.ascontiguousarray(x)})
        return torch.from_numpy(out)


def load(
    model: LoadedModel, device: torch.device, dtype: torch.dtype, providers=("cpu",)
) -> AnimateAnyone:
    """Build the networks from a verified model directory (see the module docstring).

    Raises:
        ModelRepositoryError: a bad config, checkpoint keys that do not match, or motion
            modules that do not cover the model.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNetMotionModel

    from services.neural.runtime import create_session

    cfg_path = model.file("config.json")
    try:
        cfg = json.loads(cfg_path.read_text())
        ref = UNet2DConditionModel(**cfg["reference_unet"])
        den = UNetMotionModel(**cfg["denoising_unet"])
        pg = cfg.get("pose_guider", {})
        guider = PoseGuider(PoseGuiderConfig(
            pg.get("conditioning_channels", 3), tuple(pg.get("block_out_channels", (16, 32, 64, 128))),
            pg.get("embedding_channels", den.config.block_out_channels[0]),
        ))  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelRepositoryError(cfg_path, f"{cfg_path}: {exc}") from None
    _load_strict(ref, model.file("reference_unet.pth"))
    _load_strict(den, model.file("denoising_unet.pth"), skip=lambda k: "motion_modules" in k)
    with torch.no_grad():
        load_motion_modules(den, model.file("motion_module.pth"))
    _load_strict(guider, model.file("pose_guider.pth"))
    opts = {"local_files_only": True, "use_safetensors": True, "low_cpu_mem_usage": False}
    vae = AutoencoderKL.from_pretrained(model.file("vae"), torch_dtype=dtype, **opts)
    encoder = OnnxImageEncoder(create_session(model.file("image_encoder/model.onnx"), providers))
    return AnimateAnyone(
        model=model,
        reference_unet=ref.to(device, dtype).eval(),
        denoising_unet=den.to(device, dtype).eval(),
        pose_guider=guider.to(device, dtype).eval(),
        vae=vae.to(device).eval(),
        image_encoder=encoder,
        scheduler_config=D.load_scheduler_config(model.file("scheduler/scheduler_config.json")),
        device=device,
        dtype=dtype,
    )


# --------------------------------------------------------- the animate service's backend


class DiffusionAnimateBackend:
    """AnimateAnyone behind the animate service's backend interface
    (:class:`services.animate.backends.Backend`): skeleton maps drawn from the retargeted
    target poses, the clip rendered by :meth:`AnimateAnyone.render`, frames yielded in order."""

    name = BACKEND

    def __init__(self, net: AnimateAnyone, options: AnimateOptions | None = None) -> None:
        self.net = net
        self.options = options or AnimateOptions()
        self.version = net.version_label

    def render(self, still, analysis, targets, options, token, progress, stats):
        from services.animate.debug import draw_pose

        t0 = time.perf_counter()
        h, w = still.shape[:2]
        maps = np.stack(
            [draw_pose(np.zeros((h, w, 3), np.uint8), pts, thickness=max(2, h // 128))
             for pts in targets.points]
        )  # fmt: skip
        opts = dataclasses.replace(self.options, seed=int(options.seed))
        stats.setup_seconds += time.perf_counter() - t0
        t1 = time.perf_counter()
        frames = self.net.render(still, maps, opts, token,
                                 lambda d, n, s: progress(d, n, s) if s == "decode" else None)  # fmt: skip
        stats.draw_seconds += time.perf_counter() - t1
        yield from frames


def register(settings) -> DiffusionAnimateBackend:
    """Load ``DRAPE_ANIMATE_DIFFUSION_MODEL`` and register it as the animate service's
    ``diffusion`` backend (call from the service's start-up; a missing or corrupted model
    raises and keeps health NOT_SERVING).

    Raises:
        ModelRepositoryError: missing or corrupted files (names the path).
    """
    from services.animate import backends
    from services.neural.repository import ModelRef, open_model
    from services.neural.runtime import torch_device, torch_dtype

    setting = "DRAPE_ANIMATE_DIFFUSION_MODEL"
    ref = ModelRef.parse(settings.animate_diffusion_model, setting)
    model = open_model(settings.model_dir, ref, KIND, REQUIRED, setting)
    device = torch_device(settings.neural_device)
    net = load(model, device, torch_dtype(settings.neural_dtype, device), settings.ort_providers)
    backend = DiffusionAnimateBackend(
        net, AnimateOptions(steps=settings.diffusion_steps, guidance=settings.diffusion_guidance)
    )
    backends.BACKENDS[BACKEND] = lambda: backend
    return backend
