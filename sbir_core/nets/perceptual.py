"""EfficientNet-Lite0 as a two-level perceptual encoder for the `cgan` backend: a mid-level map
(stages 1-5, 112 channels at stride 16) and the high-level pooled 1280-d feature. The split is fixed
here, not taken from `backbone.TRUNK_BLOCKS` (which other backends move to suit their caching)."""
from __future__ import annotations

import torch
from torch import nn

from .backbone import FEATURE_DIM, lite0

MID_BLOCKS = 11          # blocks[:11] = stages 1-5
MID_CHANNELS = 112


class MidHighEncoder(nn.Module):
    """(B, 3, H, W) -> pooled (B, 1280); `mid` and `high` expose the two levels the loss compares."""

    def __init__(self, net: nn.Module | None = None):
        super().__init__()
        net = net if net is not None else lite0()
        self.conv_stem, self.bn0, self.act = net._conv_stem, net._bn0, net._swish
        self.mid_blocks = nn.ModuleList(net._blocks[:MID_BLOCKS])
        self.high_blocks = nn.ModuleList(net._blocks[MID_BLOCKS:])
        self.conv_head, self.bn1 = net._conv_head, net._bn1

    def mid(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.conv_stem(x)))
        for b in self.mid_blocks:
            x = b(x)
        return x                                                   # (B, 112, H/16, W/16)

    def high(self, m: torch.Tensor) -> torch.Tensor:
        for b in self.high_blocks:
            m = b(m)
        return self.act(self.bn1(self.conv_head(m))).mean(dim=(2, 3))   # (B, 1280)

    def mid_parameters(self):
        return [p for m in (self.conv_stem, self.bn0, self.mid_blocks) for p in m.parameters()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.high(self.mid(x))                             # (B, FEATURE_DIM)


__all__ = ["MidHighEncoder", "MID_BLOCKS", "MID_CHANNELS", "FEATURE_DIM"]
