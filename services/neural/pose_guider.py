"""AnimateAnyone's pose guider: a small convolutional encoder of skeleton maps whose output
is added to the denoising UNet's first feature map (Hu et al., "Animate Anyone: Consistent
and Controllable Image-to-Video Synthesis for Character Animation", CVPR 2024).

Four stages of 3x3 convolutions with SiLU, three of them halving the resolution (so the
features come out at the latent resolution, 1/8), then a zero-initialised 3x3 convolution to
the UNet's first width: at the start of training the guider adds nothing. Parameter names
(``conv_in``, ``blocks.<i>``, ``conv_out``) follow the open re-implementation's
``pose_guider`` checkpoint.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class PoseGuiderConfig:
    """Widths of the guider (the defaults are AnimateAnyone's)."""

    conditioning_channels: int = 3
    block_out_channels: tuple[int, ...] = (16, 32, 64, 128)
    embedding_channels: int = 320


class PoseGuider(nn.Module):
    """``[B,3,H,W]`` skeleton maps in [0, 1] -> ``[B,embedding,H/2^k,W/2^k]`` features."""

    def __init__(self, config: PoseGuiderConfig = PoseGuiderConfig()) -> None:
        super().__init__()
        self.config = config
        ch = config.block_out_channels
        self.conv_in = nn.Conv2d(config.conditioning_channels, ch[0], 3, padding=1)
        blocks = []
        for c_in, c_out in zip(ch[:-1], ch[1:], strict=True):
            blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(ch[-1], config.embedding_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        x = nn.functional.silu(self.conv_in(pose))
        for block in self.blocks:
            x = nn.functional.silu(block(x))
        return self.conv_out(x)
