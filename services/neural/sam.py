"""Segment Anything (Kirillov et al., "Segment Anything", ICCV 2023), written for Drape.

Why not ``import segment_anything``: the package imports torchvision at import time, and no
torchvision build works beside the CPU torch this project locks. The network is small and
fully described by the paper and the released checkpoints, so it is implemented here with
the checkpoint's parameter names (``image_encoder.*``, ``prompt_encoder.*``,
``mask_decoder.*``): the official ``sam_vit_b_01ec64.pth`` / ``vit_l`` / ``vit_h`` files load
with ``strict=True``. The prompt path (prompt encoder + mask decoder) is also exported to
ONNX (:class:`SamDecoder`), the way the official release ships its browser model.

Architecture, as published: a ViT image encoder (16x16 patches, absolute position
embedding, windowed attention with decomposed relative positions and a few global blocks,
a convolutional neck to 256 channels at 1/16 resolution); a prompt encoder (random Fourier
position features of the points and box corners plus learned per-label embeddings); a
two-way transformer mask decoder (tokens attend to the image and the image to the tokens,
two layers), upscaled 4x by transposed convolutions and read out by per-mask hypernetwork
MLPs, with an IoU head scoring each mask.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# Normalisation of the released models (ImageNet mean and std on the 0..255 scale).
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
KIND = "garment-sam"


@dataclasses.dataclass(frozen=True)
class SamConfig:
    """Sizes of a SAM model. :meth:`vit_b` is the released base model."""

    img_size: int = 1024
    patch_size: int = 16
    encoder_dim: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    prompt_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden: int = 256

    @classmethod
    def vit_b(cls) -> SamConfig:
        return cls()

    @classmethod
    def vit_l(cls) -> SamConfig:
        return cls(encoder_dim=1024, encoder_depth=24, encoder_heads=16,
                   global_attn_indexes=(5, 11, 17, 23))  # fmt: skip

    @classmethod
    def vit_h(cls) -> SamConfig:
        return cls(encoder_dim=1280, encoder_depth=32, encoder_heads=16,
                   global_attn_indexes=(7, 15, 23, 31))  # fmt: skip

    @classmethod
    def tiny(cls) -> SamConfig:
        """A toy SAM for CI (64 px input, 4x4 image tokens)."""
        return cls(img_size=64, encoder_dim=32, encoder_depth=2, encoder_heads=2,
                   global_attn_indexes=(1,), window_size=2, prompt_dim=32, decoder_heads=2,
                   decoder_mlp_dim=64, iou_head_hidden=32)  # fmt: skip

    @property
    def embed_size(self) -> int:
        return self.img_size // self.patch_size


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of a ``B,C,H,W`` map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


# ----------------------------------------------------------------------- image encoder


def _rel_pos(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """Relative-position embeddings ``[q_size, k_size, C]`` from a ``[2*size-1, C]`` table
    (resized linearly when the table was trained at another size)."""
    n = 2 * max(q_size, k_size) - 1
    if table.shape[0] != n:
        table = F.interpolate(table.T[None], size=n, mode="linear")[0].T
    q = torch.arange(q_size)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size)[None, :] * max(q_size / k_size, 1.0)
    rel = (q - k) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[rel.long()]


class EncoderAttention(nn.Module):
    def __init__(self, dim: int, heads: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size[0] - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size[1] - 1, dim // heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, h * w, -1).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        # Decomposed relative positions (MViTv2, Li et al. 2022): a height and a width term.
        rh, rw = _rel_pos(h, h, self.rel_pos_h), _rel_pos(w, w, self.rel_pos_w)
        rq = q.reshape(b * self.heads, h, w, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", rq, rh)
        rel_w = torch.einsum("bhwc,wkc->bhwk", rq, rw)
        attn = (attn.view(-1, h, w, h, w) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).view(
            -1, h * w, h * w
        )
        x = attn.softmax(dim=-1) @ v
        x = x.view(b, self.heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(x)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, grid: int) -> None:
        super().__init__()
        self.window = window
        size = (window, window) if window else (grid, grid)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EncoderAttention(dim, heads, size)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, dim * 4, nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window:
            b, h, w, c = x.shape
            s = self.window
            ph, pw = (s - h % s) % s, (s - w % s) % s
            x = F.pad(x, (0, 0, 0, pw, 0, ph))
            hp, wp = h + ph, w + pw
            x = x.view(b, hp // s, s, wp // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s, s, c)
            x = self.attn(x)
            x = x.view(b, hp // s, wp // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
            x = x[:, :h, :w].contiguous()
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoder(nn.Module):
    """``[B,3,S,S]`` normalised, padded image -> ``[B,prompt_dim,S/16,S/16]`` embeddings."""

    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        grid = cfg.embed_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.encoder_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, cfg.encoder_dim))
        self.blocks = nn.ModuleList(
            EncoderBlock(cfg.encoder_dim, cfg.encoder_heads,
                         0 if i in cfg.global_attn_indexes else cfg.window_size, grid)
            for i in range(cfg.encoder_depth)
        )  # fmt: skip
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.encoder_dim, cfg.prompt_dim, 1, bias=False),
            LayerNorm2d(cfg.prompt_dim),
            nn.Conv2d(cfg.prompt_dim, cfg.prompt_dim, 3, padding=1, bias=False),
            LayerNorm2d(cfg.prompt_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))


# ---------------------------------------------------------------------- prompt encoder


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of normalised coordinates (Tancik et al., NeurIPS 2020)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, features))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``[..., 2]`` coordinates in [0, 1] -> ``[..., 2*features]``."""
        c = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        c = 2 * math.pi * c
        return torch.cat([torch.sin(c), torch.cos(c)], dim=-1)

    def grid(self, size: int) -> torch.Tensor:
        """``[C,size,size]`` encoding of the image-embedding grid's cell centres."""
        centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        return self.encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        dim = cfg.prompt_dim
        self.img_size = cfg.img_size
        self.embed_size = cfg.embed_size
        self.pe_layer = PositionEmbeddingRandom(dim // 2)
        # Labels 0 and 1: negative and positive points; 2 and 3: a box's two corners.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        c = cfg.mask_in_chans
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, c // 4, 2, stride=2), LayerNorm2d(c // 4), nn.GELU(),
            nn.Conv2d(c // 4, c, 2, stride=2), LayerNorm2d(c), nn.GELU(),
            nn.Conv2d(c, dim, 1),
        )  # fmt: skip
        self.no_mask_embed = nn.Embedding(1, dim)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[B,N,2]`` pixel coordinates in the padded input frame and ``[B,N]`` labels
        (-1 padding, 0 negative, 1 positive, 2/3 box corners) -> ``[B,N,dim]``."""
        pe = self.pe_layer.encode((coords + 0.5) / self.img_size)
        lab = labels[..., None]
        out = pe * (lab != -1) + self.not_a_point_embed.weight * (lab == -1)
        for i, emb in enumerate(self.point_embeddings):
            out = out + emb.weight * (lab == i)
        return out

    def dense_pe(self) -> torch.Tensor:
        return self.pe_layer.grid(self.embed_size)[None]

    def no_mask(self, batch: int) -> torch.Tensor:
        s = self.embed_size
        return self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, s, s)


# ------------------------------------------------------------------------ mask decoder


class TokenAttention(nn.Module):
    """Attention with an optional down-projection of queries, keys and values."""

    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = (
            self._split(self.q_proj(q)),
            self._split(self.k_proj(k)),
            self._split(self.v_proj(v)),
        )
        attn = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        out = attn.softmax(dim=-1) @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.self_attn = TokenAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = TokenAttention(dim, heads, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = TokenAttention(dim, heads, 2)
        self.skip_first_pe = skip_first_pe

    def forward(self, queries, keys, query_pe, key_pe):
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        d = cfg.prompt_dim
        self.layers = nn.ModuleList(
            TwoWayBlock(d, cfg.decoder_heads, cfg.decoder_mlp_dim, i == 0)
            for i in range(cfg.decoder_depth)
        )
        self.final_attn_token_to_image = TokenAttention(d, cfg.decoder_heads, 2)
        self.norm_final_attn = nn.LayerNorm(d)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        keys = image.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        q, k = queries + tokens, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class MLP(nn.Module):
    def __init__(self, dim_in: int, hidden: int, dim_out: int, layers: int) -> None:
        super().__init__()
        dims = [dim_in] + [hidden] * (layers - 1)
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims, [*dims[1:], dim_out], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    NUM_MASKS = 4  # one single-mask output plus three for ambiguous prompts

    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        d = cfg.prompt_dim
        self.transformer = TwoWayTransformer(cfg)
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(self.NUM_MASKS, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, 2, stride=2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, 2, stride=2), nn.GELU(),
        )  # fmt: skip
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(d, d, d // 8, 3) for _ in range(self.NUM_MASKS)
        )
        self.iou_prediction_head = MLP(d, cfg.iou_head_hidden, self.NUM_MASKS, 3)

    def forward(self, image, image_pe, sparse, dense):
        """Returns ``(masks [B,4,4h,4w] logits, iou [B,4])``."""
        b = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], 0)
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1), sparse], dim=1)
        src = image + dense
        _, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe.expand(b, -1, -1, -1), tokens)
        src = src.transpose(1, 2).reshape(b, c, h, w)
        up = self.output_upscaling(src)
        hyper = torch.stack(
            [mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        _, cu, hu, wu = up.shape
        masks = (hyper @ up.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
        return masks, self.iou_prediction_head(hs[:, 0])


class Sam(nn.Module):
    """The whole model, with the released checkpoints' parameter names."""

    def __init__(self, cfg: SamConfig) -> None:
        super().__init__()
        self.config = cfg
        self.image_encoder = ImageEncoder(cfg)
        self.prompt_encoder = PromptEncoder(cfg)
        self.mask_decoder = MaskDecoder(cfg)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), False)

    def preprocess(self, rgb: np.ndarray) -> tuple[torch.Tensor, float]:
        """Resize the long side to ``img_size``, normalise, pad bottom/right.

        Returns:
            ``([1,3,S,S] tensor, scale from the original to the input frame)``.
        """
        s = self.config.img_size
        h, w = rgb.shape[:2]
        scale = s / max(h, w)
        nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
        small = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(small).permute(2, 0, 1).float().to(self.pixel_mean.device)
        x = (x - self.pixel_mean) / self.pixel_std
        return F.pad(x, (0, s - nw, 0, s - nh))[None], scale


class SamDecoder(nn.Module):
    """The prompt path as one graph (exported to ONNX): image embeddings and prompt points ->
    mask logits at 1/4 of the input frame and their predicted IoU.

    Inputs: ``image_embeddings [1,D,s,s]``, ``point_coords [1,N,2]`` (pixels in the
    ``img_size`` input frame), ``point_labels [1,N]`` (float: -1 padding, 0 negative,
    1 positive, 2 and 3 a box's top-left and bottom-right corners).
    Outputs: ``low_res_masks [1,4,4s,4s]``, ``iou_predictions [1,4]``.
    """

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder

    def forward(self, image_embeddings, point_coords, point_labels):
        sparse = self.prompt_encoder.embed_points(point_coords, point_labels)
        dense = self.prompt_encoder.no_mask(point_coords.shape[0])
        return self.mask_decoder(image_embeddings, self.prompt_encoder.dense_pe(), sparse, dense)


def prompt_arrays(
    points: np.ndarray, labels: np.ndarray, box: np.ndarray | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt points (original pixels) in the model's input frame, as the decoder wants them:
    a box becomes two corner points (labels 2, 3); without a box a padding point (-1) is
    appended, as the released model was trained."""
    pts = [np.asarray(points, np.float32).reshape(-1, 2) * scale]
    lab = [np.asarray(labels, np.float32).reshape(-1)]
    if box is not None:
        pts.append(np.asarray(box, np.float32).reshape(2, 2) * scale)
        lab.append(np.array([2, 3], np.float32))
    else:
        pts.append(np.zeros((1, 2), np.float32))
        lab.append(np.array([-1], np.float32))
    return torch.from_numpy(np.concatenate(pts))[None], torch.from_numpy(np.concatenate(lab))[None]


def load_sam(directory: Path) -> Sam:
    """A SAM from a model directory: ``config.json`` (``{"variant": "vit_b"}`` or explicit
    :class:`SamConfig` fields, and ``"weights"``: the checkpoint's file name, a released
    ``.pth`` or a ``.safetensors``).

    Raises:
        ModelRepositoryError: a bad config, or weights whose keys or shapes do not match.
    """
    from services.neural.repository import ModelRepositoryError

    cfg_path = Path(directory) / "config.json"
    raw = json.loads(cfg_path.read_text())
    variant = raw.pop("variant", None)
    weights = Path(directory) / raw.pop("weights", "model.safetensors")
    try:
        if variant is not None:
            cfg = {"vit_b": SamConfig.vit_b, "vit_l": SamConfig.vit_l, "vit_h": SamConfig.vit_h,
                   "tiny": SamConfig.tiny}[variant]()  # fmt: skip
        else:
            raw["global_attn_indexes"] = tuple(raw.get("global_attn_indexes", ()))
            cfg = SamConfig(**raw)
    except (KeyError, TypeError) as exc:
        raise ModelRepositoryError(cfg_path, f"{cfg_path}: invalid SAM config: {exc}") from None
    model = Sam(cfg)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelRepositoryError(weights, f"{weights} does not fit {cfg}: {exc}") from None
    return model.eval()
