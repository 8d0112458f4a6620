"""Networks of the `context` backend: cross-domain context prediction (Joshi, Sakhi, Velury 2019,
after Doersch, Gupta, Efros 2015). One encoder is shared by both patches and by both domains
(photo and edge map); late fusion concatenates the two patch codes and predicts the second patch's
position relative to the first (8 ways). Retrieval uses the encoder alone: its pooled features.
"""
from __future__ import annotations

import torch
from torch import nn

from .backbone import lite0

POSITIONS = 8   # the 8 neighbours of the centre cell of a 3x3 grid, row by row: (-1,-1) (-1,0) ... (1,1)


class AlexNetSmall(nn.Module):
    """The method's AlexNet-style encoder, scaled to 64 px patches and trained from scratch:
    5 conv layers (two max-pools), batch norm, ReLU. (B, 3, H, W) -> feature map (B, 256, H/8, W/8)."""

    dim = 256

    def __init__(self):
        super().__init__()

        def block(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*block(3, 64, 5, 2), nn.MaxPool2d(2),            # conv1 + pool1
                                  *block(64, 128, 3), nn.MaxPool2d(2),             # conv2 + pool2
                                  *block(128, 192, 3), *block(192, 192, 3),        # conv3, conv4
                                  *block(192, self.dim, 3))                        # conv5

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))                                # (B, 256)


class Lite0Encoder(nn.Module):
    """EfficientNet-Lite0 up to its head conv, from the ImageNet weights (or random). The stem and
    blocks[:frozen_blocks] keep ImageNet's weights and batch-norm statistics (a 2-core CPU cannot
    afford training them); the rest trains. (B, 3, H, W) -> feature map (B, 1280, H/32, W/32)."""

    dim = 1280

    def __init__(self, pretrained: bool = True, frozen_blocks: int = 5, image_size: int = 128):
        super().__init__()
        net = lite0(pretrained, image_size)
        self.conv_stem, self.bn0, self.act = net._conv_stem, net._bn0, net._swish
        self.blocks = nn.ModuleList(net._blocks)
        self.conv_head, self.bn1 = net._conv_head, net._bn1
        self.frozen_blocks = frozen_blocks
        self.frozen = nn.ModuleList([self.conv_stem, self.bn0, *self.blocks[:frozen_blocks]]) if pretrained \
            else nn.ModuleList()
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.frozen_runner = None     # training may run the frozen part elsewhere (ONNX Runtime: ~2x faster)

    def train(self, mode: bool = True) -> "Lite0Encoder":
        super().train(mode)
        self.frozen.eval()                       # frozen layers keep ImageNet's batch-norm statistics
        return self

    def frozen_part(self, x: torch.Tensor) -> torch.Tensor:
        """Stem + blocks[:frozen_blocks] (the untrained ImageNet part)."""
        x = self.act(self.bn0(self.conv_stem(x)))
        for b in self.blocks[:self.frozen_blocks if len(self.frozen) else 0]:
            x = b(x)
        return x

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen_runner is not None:
            x = self.frozen_runner(x)
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and not len(self.frozen)):
                x = self.frozen_part(x)
        for b in self.blocks[self.frozen_blocks if len(self.frozen) else 0:]:
            x = b(x)
        return self.act(self.bn1(self.conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))                                # (B, 1280)


def make_encoder(arch: str, frozen_blocks: int = 5) -> nn.Module:
    """'lite0' (ImageNet init), 'lite0_scratch' (same network, random init) or 'alexnet' (scratch)."""
    if arch == "lite0":
        return Lite0Encoder(True, frozen_blocks)
    if arch == "lite0_scratch":
        return Lite0Encoder(False)
    if arch == "alexnet":
        return AlexNetSmall()
    raise ValueError(f"unknown encoder {arch!r}; choose lite0, lite0_scratch or alexnet")


class ContextNet(nn.Module):
    """Shared encoder per patch, then late fusion: each patch's feature map pooled to 2x2 (some
    layout survives, as in Doersch's fc6 over pool5) -> a shared fc6 -> the two codes concatenated
    -> fc7 -> 8-way relative position of patch b with respect to patch a."""

    def __init__(self, encoder: nn.Module, code: int = 256, hidden: int = 512, dropout: float = 0.3):
        super().__init__()
        self.encoder = encoder
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc6 = nn.Sequential(nn.Flatten(), nn.Linear(encoder.dim * 4, code), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(nn.Linear(2 * code, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                  nn.Linear(hidden, POSITIONS))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        n = len(a)
        codes = self.fc6(self.pool(self.encoder.feature_map(torch.cat([a, b]))))    # (2B, code): one encoder pass
        return self.fuse(torch.cat([codes[:n], codes[n:]], dim=1))                  # (B, 8)
