"""Try-on ``diffusion`` backend: CatVTON's concatenation design on Drape's person analysis.

person photo ─► person analysis ─► garment mask ─┐
garment(s) ──► garment analysis ─► cut-out ──────┴► crop to the working size ─► CatVTON
                                                   (mask + masked person | garment, denoised
                                                   together) ─► decode ─► paste in the mask

The network (:mod:`services.neural.catvton`) repaints only the masked region; the result is
pasted back through a feathered version of the mask, so every pixel outside it, and the
face, hair and hands inside it, stay the photo's own, bit for bit. The mask is Drape's own
(no human-parsing model): the clothes the person wears now where the new garment goes, the
arms for tops and dresses, the torso between the relevant landmarks, dilated, minus face,
hair and hands. An outfit (top and bottom) is two passes, bottom first.

Same entry point and result type as the geometric :class:`~services.tryon.pipeline.TryOnPipeline`
(``run(person, garments, options, token, progress)``), plus the diffusion parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cv2
import numpy as np
import torch

from services.common.analysis import person as P
from services.common.context import CancelToken
from services.common.errors import ConfigError, InvalidInputError
from services.neural import catvton
from services.neural import diffusion as D
from services.tryon.pipeline import (
    UPPER,
    GarmentInput,
    RefineFn,
    StageTimer,
    TryOnOptions,
    TryOnResult,
    analyze_inputs,
    check_garments,
    stage_timer,
)

BACKEND = "diffusion"
MAX_GUIDANCE = 30.0
# Mask dilation as a fraction of the shoulder width: CatVTON was trained on coarse,
# generously dilated "agnostic" masks, and a garment wider than the old clothes needs room.
_DILATE_FRAC = 0.08
# Margin of the working crop around person and mask, as a fraction of their box.
_CROP_MARGIN = 0.08
# Feather of the paste, as a fraction of the crop's long side.
_FEATHER_FRAC = 0.006


@dataclasses.dataclass(frozen=True)
class DiffusionParams:
    """Diffusion options of one request (None: the deployment's default)."""

    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None


@dataclasses.dataclass
class DiffusionTryOnResult(TryOnResult):
    """A :class:`TryOnResult` with the seed that was used."""

    seed: int = 0
    steps: int = 0


def check_params(params: DiffusionParams, max_steps: int) -> None:
    """Validate the diffusion options before any heavy work.

    Raises:
        InvalidInputError: OPTION_OUT_OF_RANGE (fields ``diffusion.steps``,
            ``diffusion.guidance_scale``).
    """
    if params.steps is not None and not 1 <= params.steps <= max_steps:
        raise InvalidInputError(
            "OPTION_OUT_OF_RANGE",
            f"diffusion steps must be 1-{max_steps}, got {params.steps}",
            field="diffusion.steps",
        )
    g = params.guidance
    if g is not None and not (np.isfinite(g) and 0.0 <= g <= MAX_GUIDANCE):
        raise InvalidInputError(
            "OPTION_OUT_OF_RANGE",
            f"guidance_scale must be 0-{MAX_GUIDANCE:g}, got {g}",
            field="diffusion.guidance_scale",
        )


def garment_region(pa: P.PersonAnalysis, category: str) -> tuple[np.ndarray, np.ndarray]:
    """Where a garment of ``category`` will be painted, and what must be kept.

    Returns:
        ``(mask, protect)``: bool ``H x W`` masks. ``mask`` excludes ``protect`` (face,
        hair, hands).
    """
    h, w = pa.size
    lm = pa.landmarks
    rows = np.arange(h)[:, None]
    shoulder_y = float(min(lm[P.L_SHOULDER, 1], lm[P.R_SHOULDER, 1]))
    hip_y = float(max(lm[P.L_HIP, 1], lm[P.R_HIP, 1]))
    if not (pa.visible(P.L_HIP) or pa.visible(P.R_HIP)):
        hip_y = float(h)
    knee_y = float(max(lm[P.L_KNEE, 1], lm[P.R_KNEE, 1]))
    ankle_y = float(max(lm[P.L_ANKLE, 1], lm[P.R_ANKLE, 1]))
    torso_len = max(hip_y - shoulder_y, 1.0)
    arms = pa.arms["left"] | pa.arms["right"]
    if category in ("top", "outerwear"):
        band = (rows >= shoulder_y - 0.1 * torso_len) & (rows <= hip_y + 0.1 * torso_len)
        mask = pa.upper_clothes | arms | (pa.torso & band)
    elif category == "dress":
        band = (rows >= shoulder_y - 0.1 * torso_len) & (rows <= max(knee_y, hip_y + torso_len))
        mask = pa.upper_clothes | pa.lower_clothes | arms | (pa.torso & band)
    else:  # bottom
        band = (rows >= hip_y - 0.2 * torso_len) & (rows <= min(float(h), ankle_y + 0.05 * h))
        mask = pa.lower_clothes | (pa.torso & band)
    k = max(3, int(_DILATE_FRAC * pa.measurements.shoulder_width) | 1)
    mask = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    protect = pa.face | pa.hair | pa.hands["left"] | pa.hands["right"]
    return (mask > 0) & ~protect, protect


def crop_box(
    boxes: list[tuple[int, int, int, int]], aspect: float, margin: float = _CROP_MARGIN
) -> tuple[int, int, int, int]:
    """The smallest box of height/width ``aspect`` holding ``boxes`` plus a margin; it may
    extend past the image (the overhang is padded)."""
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[2] for b in boxes)
    y1 = max(b[3] for b in boxes)
    bw, bh = (x1 - x0) * (1 + 2 * margin), (y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if bh / max(bw, 1) > aspect:
        bw = bh / aspect
    else:
        bh = bw * aspect
    return (round(cx - bw / 2), round(cy - bh / 2), round(cx + bw / 2), round(cy + bh / 2))


def _extract(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``image[box]`` with the overhang filled by edge replication."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    px0, py0, px1, py1 = max(0, -x0), max(0, -y0), max(0, x1 - w), max(0, y1 - h)
    inner = image[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    if px0 or py0 or px1 or py1:
        inner = cv2.copyMakeBorder(inner, py0, py1, px0, px1, cv2.BORDER_REPLICATE)
    return inner


def fit_garment(rgba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The cut-out on white, scaled to fit ``size = (H, W)`` and centred (padded white)."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = (rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)
    H, W = size
    s = min(W / rgb.shape[1], H / rgb.shape[0])
    nw, nh = max(1, round(rgb.shape[1] * s)), max(1, round(rgb.shape[0] * s))
    small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    out = np.full((H, W, 3), 255, np.uint8)
    y, x = (H - nh) // 2, (W - nw) // 2
    out[y : y + nh, x : x + nw] = small
    return out


class DiffusionTryOnPipeline:
    """Try-on on the ``diffusion`` backend (CatVTON design).

    Args:
        analyzer: the person analyzer (shared with the geometric pipeline).
        net: the loaded network.
        size: working ``(height, width)``, multiples of ``net.multiple``.
        steps: default denoising steps.
        guidance: default classifier-free guidance.
        max_steps: most steps a request may ask for.
        refine_fn: the refiner, as for the geometric pipeline.
    """

    def __init__(
        self,
        analyzer: P.PersonAnalyzer,
        net: catvton.CatVTON,
        size: tuple[int, int] = (1024, 768),
        steps: int = 30,
        guidance: float = 2.5,
        max_steps: int = 100,
        refine_fn: RefineFn | None = None,
    ) -> None:
        m = net.multiple
        for setting, value in (("DRAPE_TRYON_DIFFUSION_HEIGHT", size[0]),
                               ("DRAPE_TRYON_DIFFUSION_WIDTH", size[1])):  # fmt: skip
            if value % m:
                raise ConfigError(setting, f"{value} is not a multiple of {m} (VAE x UNet)")
        self.analyzer = analyzer
        self.net = net
        self.size = size
        self.steps = steps
        self.guidance = guidance
        self.max_steps = max_steps
        self.refine_fn = refine_fn

    @property
    def backend_version(self) -> str:
        """``diffusion/<model>/<version>`` for the response."""
        return f"{BACKEND}/{self.net.model.version_label}"

    @classmethod
    def from_settings(
        cls, settings, analyzer: P.PersonAnalyzer, refine_fn: RefineFn | None = None
    ) -> DiffusionTryOnPipeline:
        """Verify and load the configured model (``DRAPE_TRYON_DIFFUSION_MODEL``).

        Raises:
            ModelRepositoryError: a missing or corrupted model directory (names the path).
            ConfigError: an unusable device, dtype, provider or working size.
        """
        from services.neural.repository import ModelRef, open_model
        from services.neural.runtime import torch_device, torch_dtype

        ref = ModelRef.parse(settings.tryon_diffusion_model, "DRAPE_TRYON_DIFFUSION_MODEL")
        model = open_model(
            settings.model_dir, ref, catvton.KIND, catvton.REQUIRED, "DRAPE_TRYON_DIFFUSION_MODEL"
        )
        device = torch_device(settings.neural_device)
        net = catvton.load(
            model,
            device,
            torch_dtype(settings.neural_dtype, device),
            settings.neural_runtime,
            settings.ort_providers,
        )
        return cls(
            analyzer,
            net,
            (settings.tryon_diffusion_height, settings.tryon_diffusion_width),
            settings.diffusion_steps,
            settings.diffusion_guidance,
            settings.diffusion_max_steps,
            refine_fn,
        )

    def run(
        self,
        person: np.ndarray,
        garments: list[GarmentInput],
        options: TryOnOptions | None = None,
        token: CancelToken | None = None,
        progress: Callable[[str], None] | None = None,
        diffusion: DiffusionParams | None = None,
    ) -> DiffusionTryOnResult:
        """Dress the person in ``garments`` with the diffusion network.

        Args:
            person: ``H x W x 3`` uint8 RGB shopper photo.
            garments: one garment, or a top and a bottom.
            options: as for the geometric pipeline (``tuck`` is not used).
            token: checked between stages and between denoising steps.
            progress: called with each stage's name, and ``"denoise i/n"`` after each step.
            diffusion: steps, guidance and seed; None fields take the defaults.

        Raises:
            InvalidInputError: as the geometric pipeline (person and garment refusals,
                NO_GARMENTS, TOO_MANY_GARMENTS, GARMENT_CATEGORY_CONFLICT), and
                OPTION_OUT_OF_RANGE for the diffusion options.
            CancelledError, DeadlineExceededError: between stages and steps.
        """
        options = options or TryOnOptions()
        token = token or CancelToken()
        params = diffusion or DiffusionParams()
        check_garments(garments)
        check_params(params, self.max_steps)
        steps = params.steps or self.steps
        guidance = self.guidance if params.guidance is None else float(params.guidance)
        seed = (
            int(params.seed)
            if params.seed is not None
            else int(np.random.default_rng().integers(2**31))
        )
        timings: dict[str, float] = {}
        stage = stage_timer(timings, token, progress)
        pa, analyses = analyze_inputs(self.analyzer, person, garments, options.selection, stage)

        image = person.copy()
        alpha_all = np.zeros(pa.size, np.float32)
        protect_all = np.zeros(pa.size, bool)
        # Bottom first, so the top's hem is painted over the bottom's waistband.
        for n, ga in enumerate(sorted(analyses, key=lambda a: a.category in UPPER)):
            with stage("mask"):
                mask, protect = garment_region(pa, ga.category)
                if not mask.any():
                    raise InvalidInputError(
                        "POSE_UNSUPPORTED",
                        f"no region of the photo can take a {ga.category}",
                        field="person",
                    )
                ys, xs = np.nonzero(mask)
                mbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
                box = crop_box([pa.box, mbox], self.size[0] / self.size[1])
            with StageTimer(timings, "diffusion" if len(analyses) == 1 else f"diffusion{n}"):
                generated = self._generate(
                    image, mask, ga, box, steps, guidance, seed + n, token, progress
                )
            with stage("paste"):
                alpha = self._paste_alpha(mask, protect, box)
                blend = image * (1 - alpha[..., None]) + generated * alpha[..., None]
                out = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
                image = np.where(alpha[..., None] > 0, out, image)
                alpha_all = np.maximum(alpha_all, alpha)
                protect_all |= protect
        refined = False
        if options.refine and self.refine_fn is not None:
            with stage("refine"):
                image = self.refine_fn(image, person, alpha_all, protect_all)
                refined = True
        return DiffusionTryOnResult(
            image=image,
            garment_alpha=alpha_all,
            person=pa,
            garments=analyses,
            timings=timings,
            warnings=list(pa.warnings),
            refined=refined,
            backend=BACKEND,
            backend_version=self.backend_version,
            seed=seed,
            steps=steps,
        )

    def _generate(self, image, mask, ga, box, steps, guidance, seed, token, progress):
        """Run the network on the working crop; the result at full size (valid in ``box``)."""
        H, W = self.size
        x0, y0, x1, y1 = box
        crop = cv2.resize(_extract(image, box), (W, H), interpolation=cv2.INTER_AREA)
        mcrop = _extract(mask.astype(np.uint8), box)
        mcrop = cv2.resize(mcrop, (W, H), interpolation=cv2.INTER_NEAREST)
        garment = fit_garment(ga.rgba, (H, W))
        net = self.net
        dev, dt = net.device, net.dtype
        generator = torch.Generator("cpu").manual_seed(seed)

        def step_progress(i: int, total: int) -> None:
            if progress:
                progress(f"denoise {i}/{total}")

        out = net.generate(
            D.to_tensor(crop, dev, dt),
            torch.from_numpy(mcrop.astype(np.float32))[None, None].to(dev, dt),
            D.to_tensor(garment, dev, dt),
            steps,
            guidance,
            generator,
            token,
            step_progress,
        )
        result = D.to_uint8(out)[0]
        result = cv2.resize(result, (x1 - x0, y1 - y0), interpolation=cv2.INTER_CUBIC)
        full = np.zeros_like(image)
        h, w = image.shape[:2]
        sx0, sy0 = max(0, x0), max(0, y0)
        sx1, sy1 = min(w, x1), min(h, y1)
        full[sy0:sy1, sx0:sx1] = result[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
        return full

    @staticmethod
    def _paste_alpha(mask: np.ndarray, protect: np.ndarray, box) -> np.ndarray:
        """The mask feathered inwards: 1 well inside, falling to 0 at its edge; 0 outside
        the mask and on protected pixels, exactly."""
        side = max(box[2] - box[0], box[3] - box[1])
        sigma = max(0.8, _FEATHER_FRAC * side)
        inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
        alpha = np.clip(inside / (2.0 * sigma), 0.0, 1.0).astype(np.float32)
        alpha[protect | ~mask] = 0.0
        return alpha
